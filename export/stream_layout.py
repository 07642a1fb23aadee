"""A causal-convolution student's streaming graph, rewritten time-major (``[batch, frames, channels]``).

The exporter traces `edgetag.training.students.CausalConvStudent` channel-major, as PyTorch's
Conv1d computes: each block is a depthwise dilated Conv (``group = channels``) and a 1x1 Conv,
and its state ``[batch, channels, context]``. For the one to a few frames of a streaming call,
ONNX Runtime's Conv kernels cost far more than their arithmetic: the depthwise Conv runs as one
tiny product per channel, and a 1x1 Conv over two frames is a matrix product in disguise. The
same weights laid out time-major compute the block as

    taps_k = window[:, k * dilation : k * dilation + frames]             (Slice, k = 0 .. kernel - 1)
    h     += relu((sum_k taps_k * w_k) @ P.T + (P @ b_depthwise + b_pointwise))

with the state ``[batch, context, channels]`` (the last ``context`` frames of the window); the
last tap is the block's input itself (no Slice), the division by the features' std is folded into the
projection's weights (the mean is still subtracted: folding it too would cancel large terms in
float32 where a band's std is small), the classifier is a MatMul, and the ``embedding`` output is the
last block's sum itself (no Identity node). Measured with ONNX Runtime 1.32 on one thread of
the development VM: the six-block ``pitch-small`` of 2026-12-06 (112 channels, 2 frames per call)
184 -> 81 us per call, ``pitch`` (384 channels, 1 frame) 499 -> 328 us.

`time_major_stream` recognises the traced layout exactly (input normalisation, a 1x1 projection,
the blocks, a 1x1 classifier) and returns None for any other graph (CRNN students, window
students, a graph already time-major), which is then written as traced. `check_same_stream`
runs both graphs through ONNX Runtime on a stream, call by call with their states fed back,
and refuses a rewrite whose scores, embeddings or states differ.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from edgetag.export.errors import ExportError
from edgetag.runtime.model_card import EMBEDDING_NAME, INPUT_NAME, OUTPUT_NAME, ModelCard, StateTensor

#: Provenance record of a rewritten graph (``provenance.export.stream_layout``).
TIME_MAJOR = "time-major"
#: Largest difference allowed between the traced and the rewritten graph (float32 sums in another order), in
#: units of the larger of 1 and the output's largest value.
REWRITE_ATOL = 1e-4
_END = np.iinfo(np.int64).max
#: Clips, and frames of each, that `check_same_stream` streams through both graphs.
CHECK_CLIPS, CHECK_FRAMES = 4, 600


class _Graph:
    """Lookups over a traced graph: initializers, each tensor's producer and readers."""

    def __init__(self, model: Any) -> None:
        from onnx import numpy_helper

        self.weights = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
        self.producer = {out: n for n in model.graph.node for out in n.output}
        self.readers: dict[str, list[Any]] = {}
        for n in model.graph.node:
            for name in n.input:
                self.readers.setdefault(name, []).append(n)

    def only_reader(self, name: str, op: str) -> Any | None:
        readers = self.readers.get(name, [])
        return readers[0] if len(readers) == 1 and readers[0].op_type == op else None

    def reader(self, name: str, op: str) -> Any | None:
        found = [n for n in self.readers.get(name, []) if n.op_type == op]
        return found[0] if len(found) == 1 else None

    def weight(self, name: str) -> np.ndarray | None:
        w = self.weights.get(name)
        return None if w is None else np.asarray(w, np.float64)


def _attr(node: Any, name: str, default: Any) -> Any:
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _conv_weights(graph: _Graph, node: Any) -> tuple[np.ndarray | None, np.ndarray | None]:
    """A Conv's weight and bias (zeros where the exporter dropped an all-zero bias); None where not constant."""
    w = graph.weight(node.input[1])
    has_bias = len(node.input) > 2 and node.input[2]
    b = graph.weight(node.input[2]) if has_bias else (None if w is None else np.zeros(w.shape[0]))
    return w, b


def _pointwise(graph: _Graph, node: Any | None, c_in: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(weight [c_out, c_in], bias [c_out]) of a 1x1 Conv, else None."""
    if node is None or node.op_type != "Conv" or _attr(node, "group", 1) != 1:
        return None
    w, b = _conv_weights(graph, node)
    if (w is None or b is None or w.ndim != 3 or w.shape[1:] != (c_in, 1) or any(_attr(node, "pads", [0, 0]))
            or list(_attr(node, "strides", [1])) != [1]):
        return None
    return w[:, :, 0], b


@dataclasses.dataclass(frozen=True)
class _Block:
    state: StateTensor
    dilation: int
    depthwise: np.ndarray  # [channels, kernel]
    pointwise: np.ndarray  # [channels, channels]
    bias: np.ndarray  # [channels]: the pointwise bias with the depthwise one folded in


def _read_structure(model: Any, card: ModelCard) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray],
                                                         list[_Block], tuple[np.ndarray, np.ndarray]] | None:
    """The traced causal-conv student's parameters, or None when ``model`` is not one."""
    g = _Graph(model)
    sub = g.reader(INPUT_NAME, "Sub")  # the input's other reader, if any, is a Shape
    if sub is None or sub.input[0] != INPUT_NAME:
        return None
    div = g.only_reader(sub.output[0], "Div")
    mean, std = g.weight(sub.input[1]), g.weight(div.input[1]) if div is not None else None
    transpose = g.only_reader(div.output[0], "Transpose") if div is not None else None
    if mean is None or std is None or transpose is None or list(_attr(transpose, "perm", [])) != [0, 2, 1]:
        return None
    project_node = g.only_reader(transpose.output[0], "Conv")
    project = _pointwise(g, project_node, card.frontend.n_bins)
    if project is None:
        return None
    h, channels, blocks = project_node.output[0], project[0].shape[0], []
    for state in card.states:
        concat = g.reader(state.input_name, "Concat")
        if (concat is None or list(concat.input) != [state.input_name, h] or _attr(concat, "axis", 0) != 2
                or tuple(state.shape) != (channels, state.shape[1])):
            return None
        depthwise = g.reader(concat.output[0], "Conv")
        state_out = g.producer.get(state.output_name)
        if depthwise is None or state_out is None or state_out.op_type != "Slice" or state_out.input[0] != concat.output[0]:
            return None
        w, b = _conv_weights(g, depthwise)
        dilation = int(_attr(depthwise, "dilations", [1])[0])
        if (w is None or b is None or w.shape[:2] != (channels, 1) or _attr(depthwise, "group", 1) != channels
                or any(_attr(depthwise, "pads", [0, 0])) or list(_attr(depthwise, "strides", [1])) != [1]
                or (w.shape[2] - 1) * dilation != state.shape[1] or state.shape[1] == 0):
            return None
        pointwise_node = g.only_reader(depthwise.output[0], "Conv")
        pointwise = _pointwise(g, pointwise_node, channels)
        relu = g.only_reader(pointwise_node.output[0], "Relu") if pointwise is not None else None
        add = g.only_reader(relu.output[0], "Add") if relu is not None else None
        if pointwise is None or add is None or sorted(add.input) != sorted([h, relu.output[0]]):
            return None
        blocks.append(_Block(state, dilation, w[:, 0, :], pointwise[0], pointwise[0] @ b + pointwise[1]))
        h = add.output[0]
    classifier_node = g.reader(h, "Conv")
    classifier = _pointwise(g, classifier_node, channels)
    if classifier is None or classifier[0].shape[0] != card.n_labels:
        return None
    logits = g.producer.get(OUTPUT_NAME)
    if logits is None or logits.op_type != "Transpose" or logits.input[0] != classifier_node.output[0]:
        return None
    if card.embedding:
        embedding = g.producer.get(EMBEDDING_NAME)
        if embedding is None or embedding.op_type != "Transpose" or embedding.input[0] != h:
            return None
    return mean, std, project, blocks, classifier


def time_major_stream(model: Any, card: ModelCard) -> tuple[Any, ModelCard] | None:
    """``(model, card)`` rewritten time-major, or None when ``model`` is not a traced causal-conv student.

    The card's state shapes become ``[context, channels]`` and its provenance records the layout;
    everything else (names, outputs, labels, metadata) is kept. ``model`` is not modified.
    """
    if card.streaming_mode != "stateful" or not card.states:
        return None
    structure = _read_structure(model, card)
    if structure is None:
        return None
    from onnx import TensorProto, helper, numpy_helper

    mean, std, (w_project, b_project), blocks, (w_classifier, b_classifier) = structure
    nodes: list[Any] = []
    initializers: list[Any] = []

    def weight(name: str, value: np.ndarray, dtype: Any = np.float32) -> str:
        initializers.append(numpy_helper.from_array(np.ascontiguousarray(value, dtype), name))
        return name

    def node(op: str, inputs: list[str], output: str, **attrs: Any) -> str:
        nodes.append(helper.make_node(op, inputs, [output], name=f"tm/{output.removeprefix('tm/')}", **attrs))
        return output

    time_axis = weight("tm/time_axis", np.array([1]), np.int64)
    w_in = w_project.T
    x = node("Sub", [INPUT_NAME, weight("tm/feature_mean", mean)], "tm/centred")
    # the division folded into the projection: (x - mean) / std @ W = (x - mean) @ (W / std), one rounding
    # as before (folding the mean too would cancel terms of size mean / std in float32); a std of another
    # shape, zero or not finite is kept as traced
    if std.shape == (w_in.shape[0],) and np.all(np.isfinite(std)) and np.all(np.abs(std) > 1e-12):
        w_in = w_in / std[:, None]
    else:
        x = node("Div", [x, weight("tm/feature_std", std)], "tm/normalised")
    h = node("Add", [node("MatMul", [x, weight("tm/project_w", w_in)], "tm/project"),
                     weight("tm/project_b", b_project)], "tm/h0")
    states = []
    for i, block in enumerate(blocks):
        context, kernel = block.state.shape[1], block.depthwise.shape[1]
        window = node("Concat", [block.state.input_name, h], f"tm/window{i}", axis=1)
        taps = []
        for k in range(kernel):
            start, end = k * block.dilation, -(kernel - 1 - k) * block.dilation or _END
            # the last tap is the window's last `frames` rows: the block's input itself
            tap = h if k == kernel - 1 else node("Slice", [
                window, weight(f"tm/start{i}_{k}", np.array([start]), np.int64),
                weight(f"tm/end{i}_{k}", np.array([end]), np.int64), time_axis], f"tm/tap{i}_{k}")
            taps.append(node("Mul", [tap, weight(f"tm/depthwise{i}_{k}", block.depthwise[:, k])], f"tm/tapw{i}_{k}"))
        node("Slice", [window, weight(f"tm/keep{i}", np.array([-context]), np.int64),
                       weight(f"tm/end{i}", np.array([_END]), np.int64), time_axis], block.state.output_name)
        mixed = node("Sum", taps, f"tm/depthwise{i}") if len(taps) > 1 else taps[0]
        y = node("MatMul", [mixed, weight(f"tm/pointwise{i}_w", block.pointwise.T)], f"tm/pointwise{i}")
        y = node("Relu", [node("Add", [y, weight(f"tm/pointwise{i}_b", block.bias)], f"tm/biased{i}")], f"tm/relu{i}")
        last = i == len(blocks) - 1 and card.embedding  # the embedding output is the last block's sum itself
        h = node("Add", [h, y], EMBEDDING_NAME if last else f"tm/h{i + 1}")
        states.append(StateTensor(block.state.name, (context, block.pointwise.shape[0])))
    node("Add", [node("MatMul", [h, weight("tm/classifier_w", w_classifier.T)], "tm/classify"),
                 weight("tm/classifier_b", b_classifier)], OUTPUT_NAME)

    def value(name: str, dims: list[Any]) -> Any:
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, dims)

    inputs = [value(INPUT_NAME, ["batch", "frames", card.frontend.n_bins])]
    outputs = [value(OUTPUT_NAME, ["batch", "frames", card.n_labels])]
    for s in states:
        inputs.append(value(s.input_name, ["batch", *s.shape]))
        outputs.append(value(s.output_name, ["batch", *s.shape]))
    if card.embedding:
        outputs.append(value(EMBEDDING_NAME, ["batch", "frames", int(card.embedding["size"])]))
    order = [o.name for o in model.graph.output]
    if sorted(order) != sorted(o.name for o in outputs):
        return None
    outputs.sort(key=lambda o: order.index(o.name))
    graph = helper.make_graph(nodes, model.graph.name or "edgetag", inputs, outputs, initializers)
    rewritten = helper.make_model(graph, opset_imports=list(model.opset_import), producer_name=model.producer_name,
                                  doc_string=model.doc_string)
    rewritten.ir_version = model.ir_version
    rewritten.producer_version = model.producer_version
    for entry in model.metadata_props:
        rewritten.metadata_props.add(key=entry.key, value=entry.value)
    export = {**card.provenance.get("export", {}), "stream_layout": TIME_MAJOR}
    embedding = card.embedding and {**card.embedding, "layer": f"input of the final classifier (MatMul 'tm/classify'): "
                                                          f"tensor '{h}' from Add 'tm/{h.removeprefix('tm/')}'"}
    new_card = dataclasses.replace(card, states=tuple(states), embedding=embedding,
                                   provenance={**card.provenance, "export": export})
    return rewritten, new_card


def check_same_stream(before: bytes, card_before: ModelCard, after: bytes, card_after: ModelCard,
                      features: Sequence[np.ndarray], atol: float = REWRITE_ATOL) -> float:
    """Largest difference of scores, embeddings and states between the two graphs streamed over ``features``
    (the first `CHECK_FRAMES` frames of up to `CHECK_CLIPS` clips, each in calls of 1, then of 3 frames,
    states fed back; then the clips cut to one length as a batch); `ExportError` where a difference exceeds
    ``atol`` times the larger of 1 and that output's largest value (float32 sums in another order differ in
    proportion to the values: a feature band whose std is tiny makes large activations, in both graphs)."""
    from edgetag.export.model_file import _ort_session
    from edgetag.runtime.model import OnnxModel

    models = [OnnxModel.from_session(_ort_session(data), card)
              for data, card in ((before, card_before), (after, card_after))]
    worst, worst_scaled = 0.0, 0.0

    def compare(a: np.ndarray, b: np.ndarray) -> None:
        nonlocal worst, worst_scaled
        difference = _difference(a, b)
        worst = max(worst, difference)
        worst_scaled = max(worst_scaled, difference / max(1.0, float(np.max(np.abs(a))) if a.size else 1.0))

    for clip in list(features)[:CHECK_CLIPS]:
        clip = clip[:CHECK_FRAMES]
        for per_call in (1, 3):
            states = [m.initial_state(1) for m in models]
            for start in range(0, len(clip), per_call):
                chunk = np.ascontiguousarray(clip[None, start:start + per_call], np.float32)
                (logits_a, next_a), (logits_b, next_b) = (m.run(chunk, s) for m, s in zip(models, states))
                compare(logits_a, logits_b)
                for x, y in zip(next_a, next_b):
                    compare(np.swapaxes(x, 1, 2), y)
                if card_before.embedding:
                    (embedding_a, _), (embedding_b, _) = (m.embed(chunk, s) for m, s in zip(models, states))
                    compare(embedding_a, embedding_b)
                states = [next_a, next_b]
    clips = [c[:CHECK_FRAMES] for c in list(features)[:CHECK_CLIPS]]
    if len(clips) > 1:  # the clips as one batch, from the zero state
        common = min(len(c) for c in clips)
        batch = np.ascontiguousarray(np.stack([c[:common] for c in clips]), np.float32)
        (logits_a, states_a), (logits_b, states_b) = (m.run(batch) for m in models)
        compare(logits_a, logits_b)
        for x, y in zip(states_a, states_b):
            compare(np.swapaxes(x, 1, 2), y)
    if not np.isfinite(worst_scaled) or worst_scaled > atol:
        raise ExportError(f"the time-major rewrite of the streaming graph computes other values than the traced "
                          f"graph (max difference {worst:.3g}, {worst_scaled:.3g} of the outputs' scale > {atol:g})")
    return worst


def _difference(a: np.ndarray, b: np.ndarray) -> float:
    """Largest absolute difference of two outputs of one shape (inf for outputs of other shapes)."""
    return float(np.max(np.abs(a - b))) if a.shape == b.shape else float("inf")


def to_time_major(model: Any, card: ModelCard, features: Sequence[np.ndarray]) -> tuple[Any, ModelCard, float | None]:
    """``(model, card, largest difference)`` rewritten time-major and checked (`check_same_stream` over
    ``features``), or ``(model, card, None)`` unchanged when the graph is not a traced causal-conv student."""
    rewritten = time_major_stream(model, card)
    if rewritten is None:
        return model, card, None
    new_model, new_card = rewritten
    diff = check_same_stream(model.SerializeToString(), card, new_model.SerializeToString(), new_card, features)
    return new_model, new_card, diff
