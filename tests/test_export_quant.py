"""INT8 plans: which layers are quantized, and that ONNX Runtime fuses every quantized layer.

Structural guarantees only (no timings): a tiny hand-built MobileNet-style graph (single-channel
stem, depthwise, HardSwish, squeeze-excite, pointwise, Gemm) and a plain ReLU conv stack (the
``plain_cnn`` student's layout) are quantized with each plan and the graph ONNX Runtime actually
runs (``optimized_model_filepath``) is inspected.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxruntime.quantization")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from edgetag.export.quantize import (  # noqa: E402
    INT8_PLANS,
    _quantize_plan,
    measure_latency_ms,
    plan_activations,
    plan_layers,
)
from edgetag.runtime.verify import cpu_description  # noqa: E402

H, W = 16, 24


def _model(path):
    rng = np.random.default_rng(0)
    inits, nodes = [], []

    def conv(name, x, cin, cout, k, group=1, stride=1):
        w = (rng.standard_normal((cout, cin // group, k, k)) * 0.3).astype(np.float32)
        inits.extend([numpy_helper.from_array(w, f"{name}.w"), numpy_helper.from_array(rng.standard_normal(cout).astype(np.float32) * 0.1, f"{name}.b")])
        nodes.append(helper.make_node("Conv", [x, f"{name}.w", f"{name}.b"], [name], name=name, group=group,
                                      kernel_shape=[k, k], pads=[k // 2] * 4, strides=[stride, stride]))
        return name

    def op(kind, inputs, name, **kw):
        nodes.append(helper.make_node(kind, inputs, [name], name=name, **kw))
        return name

    x = op("HardSwish", [conv("stem", "x", 1, 16, 3, stride=2)], "stem_act")
    x = op("Relu", [conv("expand", x, 16, 32, 1)], "expand_act")
    x = op("HardSwish", [conv("dw", x, 32, 32, 3, group=32)], "dw_act")
    inits.append(numpy_helper.from_array(np.array([2, 3], np.int64), "hw"))
    s = op("ReduceMean", [x, "hw"], "se_pool", keepdims=1)
    s = op("Relu", [conv("se_reduce", s, 32, 8, 1)], "se_act")
    s = op("HardSigmoid", [conv("se_expand", s, 8, 32, 1)], "se_gate")
    x = op("Mul", [x, s], "se_out")
    x = conv("project", x, 32, 16, 1)
    x = op("Flatten", [op("GlobalAveragePool", [x], "pool")], "flat")
    inits.extend([numpy_helper.from_array(rng.standard_normal((16, 4)).astype(np.float32), "fc.w"),
                  numpy_helper.from_array(np.zeros(4, np.float32), "fc.b")])
    op("Gemm", [x, "fc.w", "fc.b"], "logits")
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, H, W])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 4])], inits)
    model = onnx.shape_inference.infer_shapes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9))
    onnx.save(model, str(path))
    return model


@pytest.fixture(scope="module")
def quantized(tmp_path_factory):
    folder = tmp_path_factory.mktemp("quant")
    fp32 = folder / "m.onnx"
    model = _model(fp32)
    rng = np.random.default_rng(1)
    feeds = [{"x": rng.standard_normal((1, 1, H, W)).astype(np.float32)} for _ in range(8)]
    out = {"fp32": fp32, "model": model, "feeds": feeds}
    for plan in INT8_PLANS:
        assert _quantize_plan(fp32, folder / f"{plan}.onnx", feeds, plan, per_channel=True)
        out[plan] = folder / f"{plan}.onnx"
    return out


def _optimized(path, tmp_path):
    """The graph ONNX Runtime runs on the CPU provider, after all its optimisations."""
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / f"{path.stem}.opt.onnx")
    options.log_severity_level = 3
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return onnx.load(options.optimized_model_filepath)


def _float_convs_on_dequantized_input(model) -> list[str]:
    made_by = {o: n for n in model.graph.node for o in n.output}
    return [n.name for n in model.graph.node if n.op_type in ("Conv", "Gemm", "MatMul", "FusedConv")
            and any(made_by.get(i) is not None and made_by[i].op_type == "DequantizeLinear" for i in n.input)]


def test_plan_layers_classifies_mobilenet_layers(quantized) -> None:
    q_all, kept_all = plan_layers(quantized["model"], "all")
    assert set(q_all) == {"stem", "expand", "dw", "se_reduce", "se_expand", "project", "logits"} and not kept_all
    q_pw, kept_pw = plan_layers(quantized["model"], "pointwise")
    assert set(q_pw) == {"expand", "project", "logits"}
    assert set(kept_pw) == {"stem", "dw", "se_reduce", "se_expand"}


def test_only_planned_compute_layers_quantized_with_uint8_activations(quantized, tmp_path) -> None:
    for plan in INT8_PLANS:
        model = onnx.load(str(quantized[plan]))
        made_by = {o: n for n in model.graph.node for o in n.output}
        weight_dq = {n.name for n in model.graph.node if n.op_type in ("Conv", "Gemm", "MatMul")
                     and made_by.get(n.input[1]) is not None and made_by[n.input[1]].op_type == "DequantizeLinear"}
        assert weight_dq == set(plan_layers(quantized["model"], plan)[0]), plan
        activation_types = {numpy_helper.to_array(t).dtype for t in model.graph.initializer
                            if t.name.endswith("_zero_point") and len(t.dims) == 0}
        assert activation_types == {np.dtype(np.uint8)}, plan  # u8 activations (ORT's x86 u8s8 kernels)
        # HardSwish, squeeze-excite Mul, pools: never quantized ops (each would cost a DQ/Q pair)
        ops = Counter(n.op_type for n in _optimized(quantized[plan], tmp_path).graph.node)
        assert not {"QLinearMul", "QLinearAdd", "QLinearSigmoid", "QLinearGlobalAveragePool"} & set(ops), ops


@pytest.mark.parametrize("plan", list(INT8_PLANS))
def test_ort_fuses_every_quantized_layer(quantized, tmp_path, plan) -> None:
    """After ORT's optimisations no quantized layer is left as DequantizeLinear -> float Conv/Gemm."""
    optimized = _optimized(quantized[plan], tmp_path)
    ops = Counter(n.op_type for n in optimized.graph.node)
    assert _float_convs_on_dequantized_input(optimized) == [], ops
    quantized_convs = [n for n in plan_layers(quantized["model"], plan)[0] if n != "logits"]
    assert ops["QLinearConv"] == len(quantized_convs), ops
    assert ops["QGemm"] + ops["QLinearMatMul"] == 1, ops
    float_convs = ops["Conv"] + ops["FusedConv"]
    assert float_convs == (0 if plan == "all" else 4), ops  # pointwise: stem, depthwise and both SE convs stay fp32
    # the quantized model still computes the same thing (loosely: int8 noise)
    fp32 = ort.InferenceSession(str(quantized["fp32"]), providers=["CPUExecutionProvider"])
    q = ort.InferenceSession(str(quantized[plan]), providers=["CPUExecutionProvider"])
    feed = quantized["feeds"][0]
    ref, got = fp32.run(None, feed)[0], q.run(None, feed)[0]
    assert np.corrcoef(ref.ravel(), got.ravel())[0, 1] > 0.9


def test_latency_helpers(quantized) -> None:
    """Smoke only: the helpers run and return one positive median per model (no speed assertion)."""
    times = measure_latency_ms([quantized["fp32"], quantized["all"]], quantized["feeds"], rounds=1, per_round=2)
    assert set(times) == {str(quantized["fp32"]), str(quantized["all"])} and all(t > 0 for t in times.values())
    assert isinstance(cpu_description(), str) and cpu_description()


def _plain_model(path):
    """stem (1 channel) -> Relu -> two dense 3x3 convs with Relu -> pool -> Gemm -> Relu (embedding) -> Gemm."""
    rng = np.random.default_rng(2)
    inits, nodes = [], []

    def conv(name, x, cin, cout, stride=1):
        inits.extend([numpy_helper.from_array((rng.standard_normal((cout, cin, 3, 3)) * 0.3).astype(np.float32), f"{name}.w"),
                      numpy_helper.from_array((rng.standard_normal(cout) * 0.1).astype(np.float32), f"{name}.b")])
        nodes.append(helper.make_node("Conv", [x, f"{name}.w", f"{name}.b"], [name], name=name,
                                      kernel_shape=[3, 3], pads=[1] * 4, strides=[stride, stride]))
        return name

    def relu(x):
        nodes.append(helper.make_node("Relu", [x], [f"{x}_act"], name=f"{x}_act"))
        return f"{x}_act"

    x = relu(conv("c3", relu(conv("c2", relu(conv("stem", "x", 1, 16, 2)), 16, 24, 2)), 24, 24))
    nodes.append(helper.make_node("GlobalAveragePool", [x], ["pool"], name="pool"))
    nodes.append(helper.make_node("Flatten", ["pool"], ["flat"], name="flat"))
    for name, (n_in, n_out) in {"emb": (24, 8), "logits": (8, 4)}.items():
        inits.extend([numpy_helper.from_array(rng.standard_normal((n_in, n_out)).astype(np.float32), f"{name}.w"),
                      numpy_helper.from_array(np.zeros(n_out, np.float32), f"{name}.b")])
    nodes.append(helper.make_node("Gemm", ["flat", "emb.w", "emb.b"], ["emb"], name="emb"))
    relu("emb")
    nodes.append(helper.make_node("Gemm", ["emb_act", "logits.w", "logits.b"], ["logits"], name="logits"))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, H, W])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 4]),
                               helper.make_tensor_value_info("emb_act", TensorProto.FLOAT, [1, 8])], inits)
    model = onnx.shape_inference.infer_shapes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9))
    onnx.save(model, str(path))
    return model


def test_dense_chain_folds_conv_relus_so_int8_layers_chain(tmp_path) -> None:
    """Plan 'dense-chain' on a plain conv stack: the Relus after the dense convs (not the stem's, not the
    embedding's) are folded, and ONNX Runtime runs the two int8 convs back to back, without the
    DequantizeLinear -> QuantizeLinear pair plan 'pointwise' leaves between them (the Q after a
    float Relu of uint8 input counts as a pair too)."""
    fp32 = tmp_path / "plain.onnx"
    model = _plain_model(fp32)
    assert plan_activations(model, "dense-chain") == ["c2_act", "c3_act"]
    assert plan_activations(model, "pointwise") == []
    assert plan_activations(_model(tmp_path / "mobile.onnx"), "dense-chain") == ["expand_act"]
    rng = np.random.default_rng(3)
    feeds = [{"x": rng.standard_normal((1, 1, H, W)).astype(np.float32)} for _ in range(8)]

    def requantizations(plan):
        assert _quantize_plan(fp32, tmp_path / f"{plan}.onnx", feeds, plan, per_channel=True)
        optimized = _optimized(tmp_path / f"{plan}.onnx", tmp_path)
        made_by = {o: n for n in optimized.graph.node for o in n.output}
        ops = Counter(n.op_type for n in optimized.graph.node)
        assert ops["QLinearConv"] == 2 and _float_convs_on_dequantized_input(optimized) == [], ops
        def dequantized(name):  # a float tensor that was uint8 just before (DequantizeLinear, maybe then Relu)
            node = made_by.get(name)
            if node is not None and node.op_type == "Relu":
                node = made_by.get(node.input[0])
            return node is not None and node.op_type == "DequantizeLinear"

        return sum(n.op_type == "QuantizeLinear" and dequantized(n.input[0]) for n in optimized.graph.node), optimized

    pairs_pointwise, _ = requantizations("pointwise")
    pairs_chain, chained = requantizations("dense-chain")
    assert pairs_pointwise == 2 and pairs_chain == 1  # the pair left is the embedding's (a Relu after a Gemm)
    relus = {n.name for n in onnx.load(str(tmp_path / "dense-chain.onnx")).graph.node if n.op_type == "Relu"}
    assert "emb_act" in relus and not {"c2_act", "c3_act"} & relus  # folded: the conv ReLUs; kept: the embedding's
    made_by = {o: n for n in chained.graph.node for o in n.output}
    assert any(n.op_type == "QLinearConv" and made_by[n.input[0]].op_type == "QLinearConv" for n in chained.graph.node)
    ref = ort.InferenceSession(str(fp32), providers=["CPUExecutionProvider"]).run(None, feeds[0])
    got = ort.InferenceSession(str(tmp_path / "dense-chain.onnx"), providers=["CPUExecutionProvider"]).run(None, feeds[0])
    assert np.corrcoef(ref[0].ravel(), got[0].ravel())[0, 1] > 0.9
    assert np.corrcoef(ref[1].ravel(), got[1].ravel())[0, 1] > 0.9


def test_dense_chain_leaves_a_relu_whose_conv_output_is_read_twice(tmp_path) -> None:
    """A conv output that also feeds a residual Add: ONNX Runtime's quantizer keeps that Relu, so the plan
    does not count it as folded; a model with nothing to fold makes the named plan fail with a clear line."""
    model = _plain_model(tmp_path / "plain.onnx")
    graph = model.graph
    # c3 = Conv(c2_act) now also read by an Add with c2_act (same shape: 24 channels, stride 1)
    graph.node.append(helper.make_node("Add", ["c3", "c2_act"], ["residual"], name="residual"))
    assert plan_activations(model, "dense-chain") == ["c2_act"]
    from edgetag.export.errors import ExportError
    from edgetag.export.quantize import _quantize_plans

    no_relu = _plain_model(tmp_path / "plain2.onnx")
    for node in no_relu.graph.node:
        if node.op_type == "Relu" and node.name in ("c2_act", "c3_act"):
            node.op_type = "Sigmoid"
    onnx.save(no_relu, str(tmp_path / "sigmoid.onnx"))
    feeds = [{"x": np.random.default_rng(4).standard_normal((1, 1, H, W)).astype(np.float32)} for _ in range(4)]
    messages = []
    with pytest.raises(ExportError, match="use plan 'pointwise'"):
        _quantize_plans(tmp_path / "sigmoid.onnx", tmp_path / "out.onnx", feeds, ["dense-chain"], True, messages.append)
    assert any("would equal plan 'pointwise'" in m for m in messages)
