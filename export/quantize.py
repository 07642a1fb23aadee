"""INT8 and FP16 versions of an exported model, gated on the task metric.

- INT8 (`quantize_int8`): ONNX Runtime static quantization in QDQ format,
  per-channel int8 weights in 7 bits (`SATURATION_FREE_WEIGHTS`: the one
  format whose integer arithmetic is exact on x86 with or without VNNI and on
  ARM64, so the gate measured here holds on the user's CPU), uint8
  activations with ranges calibrated on real
  front-end features (at least 100 windows: window students see windows,
  stateful students see chunks of frames together with the state tensors the
  fp32 model carries at that point of the stream, so state ranges are
  realistic). Only Conv / MatMul / Gemm are quantized (and, in plan
  ``dense-chain``, the Relus folded into them; uint8 activations:
  with int8 ones ONNX Runtime's x86 build leaves many convs as
  DequantizeLinear -> float Conv, weights dequantized on every run, which
  made int8 ~10x slower than fp32). ``plan="auto"`` (the default) builds each
  plan of `INT8_PLANS` (every conv, or only dense convs: int8 depthwise
  and single-channel stem convs are slower than MLAS's fp32 NCHWc kernels;
  or dense convs with their ReLUs folded in, for students made of them),
  measures them against fp32 on single-thread ONNX Runtime CPU sessions and
  keeps the fastest that passes the gate; the measured ratio goes into the
  card (``int8_latency_ratio_vs_fp32``) and a warning is printed when int8
  is still slower than fp32 on this CPU.
- FP16 (`convert_fp16`): every float initializer stored as float16 and cast
  back to float32 in the graph (a ``Cast`` per weight); inputs, outputs and
  states stay float32. On ONNX Runtime's CPU provider the arithmetic then
  runs in float32 on fp16-rounded weights (the file is half the size);
  GPU/TensorRT builds compute in fp16 themselves (see `export.tensorrt`).

Gate (both): the task metric on a held-out split, computed on clips as the
runtime would see them, may drop at most ``max_relative_drop`` (1 %)
relative to the fp32 model, else `QuantizationGateError` carries both numbers
(``accept_drop=True`` keeps the file and reports the drop). The metric:

- multi-label with targets: macro ROC-AUC over labels that have positives
  and negatives (masked entries left out), numpy only;
- multi-class with targets: top-1 accuracy;
- no targets: agreement with the fp32 model's binarised outputs (scores
  above the card's thresholds, or the argmax for multi-class).

Every file written here is sealed like an fp32 export (`edgetag.export.model_file.seal`):
an integrity digest and a test vector holding the fp32 file's features and
reference scores, with the tolerance of its precision (``edgetag verify``).

Each report also gives the signal-to-quantization-noise ratio
``10 log10(sum(ref^2) / sum((ref - q)^2))`` in dB for every graph output
(logits and states), both models fed identical inputs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from edgetag.export.errors import ExportError
from edgetag.export.gate import (
    MAX_RELATIVE_DROP,
    FeedReader,
    QuantizationGateError,
    QuantReport,
    _finish_card,
    _gate,
    _gate_message,
    input_feeds,
)
from edgetag.export.model_file import _ort_session, check_loads, save_single_file
from edgetag.runtime.sealing import read_card
from edgetag.runtime.verify import cpu_description

MIN_CALIBRATION_WINDOWS = 100
_MAX_CALIBRATION_FEEDS = 600


# --------------------------------------------------------------------------------- INT8
def quantize_int8(
    fp32_path: str | Path,
    out_path: str | Path,
    calibration_features: Sequence[np.ndarray],
    eval_features: Sequence[np.ndarray],
    eval_targets: np.ndarray | None = None,
    eval_mask: np.ndarray | None = None,
    *,
    max_relative_drop: float = MAX_RELATIVE_DROP,
    accept_drop: bool = False,
    min_windows: int = MIN_CALIBRATION_WINDOWS,
    per_channel: bool = True,
    plan: str = "auto",
    measure_latency: bool = True,
    log: Callable[[str], None] | None = None,
) -> QuantReport:
    """Static QDQ int8 quantization of an exported fp32 file, calibrated and gated on real features.

    ``calibration_features`` and ``eval_features``: front-end features
    [frames, n_bins] per clip, from disjoint splits. ``eval_targets``:
    clip-level targets [n_clips, n_labels] (or None: agreement with fp32).
    ``plan``: which layers become int8 (see `INT8_PLANS`); ``"auto"`` builds
    every plan and keeps the fastest (single-thread ONNX Runtime CPU, measured
    here) among those that pass the gate. ``measure_latency``: time the result
    against fp32 and record ``int8_latency_ratio_vs_fp32`` in the card
    (``plan="auto"`` always measures).
    """
    import onnx

    if plan != "auto" and plan not in INT8_PLANS:
        raise ValueError(f"unknown int8 plan {plan!r}: one of auto, {', '.join(INT8_PLANS)}")
    say = log or (lambda _msg: None)
    fp32_path, out_path = Path(fp32_path), Path(out_path)
    card = read_card(onnx.load(str(fp32_path)))
    fp32_session = _ort_session(fp32_path)
    feeds = _calibration_feeds(fp32_session, card, calibration_features, min_windows)
    plans = list(INT8_PLANS) if plan == "auto" else [plan]
    candidates = _quantize_plans(fp32_path, out_path, feeds, plans, per_channel, say)
    chosen, report, timings = _keep_fastest_passing(
        fp32_path, out_path, candidates, feeds, card, eval_features, eval_targets, eval_mask,
        max_relative_drop, accept_drop, measure_latency, fp32_session, say,
    )
    try:
        weight_range = check_saturation_free(out_path)
    except ExportError:
        out_path.unlink(missing_ok=True)
        raise
    extra = _int8_card_notes(chosen, per_channel, len(feeds), weight_range)
    metrics = _record_latency(report, timings, fp32_path, candidates, chosen)
    _finish_card(out_path, card, "int8", report, extra, metrics, fp32_path=fp32_path, eval_features=eval_features)
    report.size_bytes = out_path.stat().st_size
    check_loads(out_path)
    for line in report.lines():
        say(line)
    return report


def _calibration_feeds(fp32_session: Any, card: Any, calibration_features: Sequence[np.ndarray],
                       min_windows: int) -> list[dict[str, np.ndarray]]:
    """The model's input feeds for the calibration features (at most 600); refuses fewer than ``min_windows``."""
    feeds = input_feeds(fp32_session, card, calibration_features, limit=_MAX_CALIBRATION_FEEDS)
    if len(feeds) < min_windows:
        raise ExportError(
            f"int8 calibration needs at least {min_windows} windows of real audio features, got {len(feeds)} "
            "(give more or longer calibration audio)"
        )
    return feeds


def _quantize_plans(fp32_path: Path, out_path: Path, feeds: Sequence[dict[str, np.ndarray]], plans: list[str],
                    per_channel: bool, say: Callable[[str], None]) -> list[tuple[str, Path]]:
    """(plan, file) of every plan that quantizes something: ``out_path`` itself for one plan, else a hidden
    file beside it. The fp32 file is shape-inferred first when ONNX Runtime's pre-processing manages."""
    tmp_dir = out_path.parent
    tmp_dir.mkdir(parents=True, exist_ok=True)
    prepped = tmp_dir / f".{out_path.name}.prep.onnx"
    candidates: list[tuple[str, Path]] = []
    try:
        try:
            from onnxruntime.quantization.shape_inference import quant_pre_process

            quant_pre_process(str(fp32_path), str(prepped), skip_symbolic_shape=False)
            source = prepped
        except Exception:  # noqa: BLE001 - pre-processing is an optimisation; quantize the export as is
            source = fp32_path
        import onnx

        graph = onnx.load(str(source))
        for name in plans:
            if name == "pointwise" and any(kept == "all" for kept, _ in candidates) \
                    and not plan_layers(graph, "pointwise")[1]:  # it keeps no layer in float: plan 'all' again
                say("int8: plan 'pointwise' would equal plan 'all' here (no depthwise, stem or squeeze-excitation "
                    "conv to keep in float); skipped")
                continue
            target = out_path if len(plans) == 1 else tmp_dir / f".{out_path.name}.{name}.onnx"
            if _quantize_plan(source, target, feeds, name, per_channel):
                candidates.append((name, target))
            elif name == "dense-chain":
                say("int8: plan 'dense-chain' would equal plan 'pointwise' here (no Relu alone after a dense conv); skipped")
            else:
                say(f"int8: plan {name!r} quantizes nothing in this model; skipped")
    finally:
        prepped.unlink(missing_ok=True)
    if not candidates:
        if plans == ["dense-chain"]:
            raise ExportError("int8 plan 'dense-chain': no Relu alone after a dense conv in this model to fold; "
                              "use plan 'pointwise' (the same layers) or 'auto'")
        raise ExportError("int8: no layer of this model can be quantized (no Conv, MatMul or Gemm)")
    return candidates


def _keep_fastest_passing(
    fp32_path: Path, out_path: Path, candidates: list[tuple[str, Path]], feeds: Sequence[dict[str, np.ndarray]],
    card: Any, eval_features: Sequence[np.ndarray], eval_targets: np.ndarray | None, eval_mask: np.ndarray | None,
    max_relative_drop: float, accept_drop: bool, measure_latency: bool, fp32_session: Any, say: Callable[[str], None],
) -> tuple[str, QuantReport, dict[str, float]]:
    """Gate the candidates fastest first and move the first that passes (or, with ``accept_drop``, the
    fastest) to ``out_path``; the other files are removed, and ``out_path`` too when none is kept.

    Returns (plan kept, its gate report, p50 latency in ms per file, empty when not measured).
    """
    chosen = ""
    try:
        timings: dict[str, float] = {}
        if len(candidates) > 1 or measure_latency:
            timings = measure_latency_ms([fp32_path] + [p for _, p in candidates], feeds)
        ranked = sorted(candidates, key=lambda c: timings.get(str(c[1]), 0.0))
        failed: list[tuple[str, Path, QuantReport]] = []
        for name, path in ranked:  # fastest first; the first plan that passes the gate is kept
            report = _gate(
                "int8", fp32_path, path, card, eval_features, eval_targets, eval_mask,
                max_relative_drop, True, len(feeds), fp32_session,
            )
            if not report.accepted_drop:
                chosen = name
                break
            failed.append((name, path, report))
            if len(ranked) > 1:
                say(f"int8: plan {name!r} fails the gate ({_gate_message(report, max_relative_drop)}); trying the next")
        else:
            if not accept_drop:
                best = min(failed, key=lambda f: f[2].relative_drop)[2]
                raise QuantizationGateError(_gate_message(best, max_relative_drop) + "; use --accept-drop to keep it")
            chosen, path, report = failed[0]  # the fastest, kept beyond the gate as asked
        if path != out_path:
            path.replace(out_path)
            report.path = out_path
    finally:
        for _, path in candidates:
            if path != out_path:
                path.unlink(missing_ok=True)
        if not chosen:
            out_path.unlink(missing_ok=True)
    return chosen, report, timings


def _int8_card_notes(chosen: str, per_channel: bool, n_feeds: int, weight_range: tuple[int, int] | None) -> dict[str, Any]:
    """What the card says about the int8 file: its format, plan, calibration and where it is exact."""
    lo, hi = SATURATION_FREE_WEIGHTS
    return {
        "quantization": f"onnxruntime static QDQ, {'per-channel' if per_channel else 'per-tensor'} int8 weights in 7 bits "
        f"[{lo}, {hi}] (reduce_range), uint8 activations (MinMax), plan {chosen!r}: {INT8_PLANS[chosen]}",
        "calibration_windows": n_feeds,
        "int8_plan": chosen,
        "int8": {
            "format": "QDQ: QuantizeLinear/DequantizeLinear around the quantized layers; ONNX Runtime fuses them into "
                      "QLinearConv / QGemm (u8s8 kernels)",
            "activations": "uint8, asymmetric, per tensor, MinMax calibration",
            "weights": f"int8, symmetric, {'per output channel' if per_channel else 'per tensor'}, 7-bit range [{lo}, {hi}]",
            "weight_range": list(weight_range) if weight_range else None,
            "exact_on": "every CPU: products of uint8 and 7-bit weights cannot saturate the int16 pair sums of x86 "
                        "kernels without VNNI; VNNI and ARM64 kernels accumulate in int32",
            "onnxruntime": _ort_version(),
            "verified_on": cpu_description(),
        },
    }


def _record_latency(report: QuantReport, timings: dict[str, float], fp32_path: Path,
                    candidates: list[tuple[str, Path]], chosen: str) -> dict[str, float]:
    """The card's latency metrics of the kept plan against fp32 (none when not measured); the report
    gets every file's latency, and a warning when int8 is slower than fp32 on this CPU."""
    metrics: dict[str, float] = {}
    if timings:
        fp32_ms, int8_ms = timings[str(fp32_path)], timings[str(dict(candidates)[chosen])]
        ratio = int8_ms / fp32_ms
        metrics = {"int8_latency_ratio_vs_fp32": ratio, "int8_latency_ms_p50": int8_ms, "fp32_latency_ms_p50": fp32_ms}
        report.latency_ms = {"fp32": fp32_ms, **{n: timings[str(p)] for n, p in candidates}}
        report.plan = chosen
        if ratio > 1.0 + LATENCY_TOLERANCE:
            report.latency_warning = (
                f"int8 is {ratio:.2f}x slower than fp32 on this CPU ({cpu_description()}; ONNX Runtime, 1 thread, "
                f"p50 {int8_ms:.3f} ms vs {fp32_ms:.3f} ms): ship fp32 or fp16 here"
            )
    return metrics


#: Which layers each int8 plan quantizes (activations uint8, weights int8, ONNX Runtime fuses
#: every quantized layer into QLinearConv / QGemm; everything else stays float32).
INT8_PLANS: dict[str, str] = {
    "all": "every Conv, MatMul and Gemm",
    "pointwise": "1x1 / dense Conv (reduction >= 16, spatial > 1), MatMul and Gemm; depthwise, stem and squeeze-excite convs stay float32",
    "dense-chain": "as 'pointwise', and the Relu that alone reads a dense conv's output folded into its uint8 range, so "
                   "that consecutive int8 convs pass uint8 tensors (no DequantizeLinear / QuantizeLinear pair between "
                   "them); Relus after Gemm / MatMul stay float",
}
#: ``int8_latency_ratio_vs_fp32`` above 1 + this prints the "slower than fp32" warning.
LATENCY_TOLERANCE = 0.05
_MIN_REDUCTION = 16


def _attr(node: Any, name: str, default: Any) -> Any:
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _layer_kind(node: Any, weights: dict[str, Any], shapes: dict[str, list[int]]) -> str:
    """``depthwise`` (grouped), ``stem`` (reduction C_in*k < 16), ``squeeze_excite`` (1x1 spatial input), ``dense`` or the op type."""
    if node.op_type != "Conv":
        return node.op_type
    w = weights.get(node.input[1])
    if w is None:
        return "dynamic_weight"
    if int(_attr(node, "group", 1)) > 1:
        return "depthwise"
    if int(np.prod(w.dims[1:])) < _MIN_REDUCTION:
        return "stem"
    shape = shapes.get(node.input[0])
    if shape and len(shape) >= 3 and all(d == 1 for d in shape[2:]):
        return "squeeze_excite"
    return "dense"


def plan_layers(model: Any, plan: str) -> tuple[list[str], list[str]]:
    """(quantized, float) node names of the Conv/MatMul/Gemm nodes of ``model`` under ``plan``."""
    weights = {i.name: i for i in model.graph.initializer}
    shapes = {
        v.name: [d.dim_value if d.HasField("dim_value") else -1 for d in v.type.tensor_type.shape.dim]
        for v in [*model.graph.value_info, *model.graph.input]
    }
    quantized, kept = [], []
    for node in model.graph.node:
        if node.op_type not in ("Conv", "MatMul", "Gemm"):
            continue
        kind = _layer_kind(node, weights, shapes)
        wanted = plan == "all" or kind in ("dense", "MatMul", "Gemm")
        (quantized if wanted else kept).append(node.name)
    return quantized, kept


def plan_activations(model: Any, plan: str) -> list[str]:
    """Relu nodes of ``model`` that ``plan`` quantizes (nodes must be named, as `_quantize_plan` names them):
    under ``dense-chain``, each Relu that is the only reader of a quantized Conv's output, neither tensor a
    graph output. ONNX Runtime's quantizer then drops the Relu (a uint8 range starting at zero clips the
    same) and the Conv's uint8 output goes straight to the next int8 layer; where the Conv's output has other
    readers (a residual Add) the quantizer keeps the Relu, so it is not folded here either. Not a Relu after
    a Gemm: a student's embedding output is such a Relu, and it stays the float tensor fp32 gives."""
    if plan != "dense-chain":
        return []
    quantized_convs = {n.name for n in model.graph.node if n.op_type == "Conv"} & set(plan_layers(model, plan)[0])
    made_by = {o: n for n in model.graph.node for o in n.output}
    readers: dict[str, int] = {}
    for node in model.graph.node:
        for name in node.input:
            readers[name] = readers.get(name, 0) + 1
    outputs = {o.name for o in model.graph.output}
    return [n.name for n in model.graph.node
            if n.op_type == "Relu" and n.name and made_by.get(n.input[0]) is not None
            and made_by[n.input[0]].name in quantized_convs and readers.get(n.input[0]) == 1
            and n.input[0] not in outputs and n.output[0] not in outputs]


def _quantize_plan(source: Path, target: Path, feeds: Sequence[dict[str, np.ndarray]], plan: str, per_channel: bool) -> bool:
    """Quantize ``source`` into ``target`` under ``plan``; False when the plan selects no layer, or (plan
    ``dense-chain``) no Relu to fold, where it would write plan ``pointwise``'s file."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    model = onnx.load(str(source))
    for i, node in enumerate(model.graph.node):  # nodes_to_exclude works by name
        if not node.name:
            node.name = f"node_{i}_{node.op_type}"
    quantized, kept = plan_layers(model, plan)
    if not quantized:
        return False
    activations = plan_activations(model, plan)
    if plan == "dense-chain" and not activations:
        return False  # the same file as plan 'pointwise'
    other_relus = [n.name for n in model.graph.node if n.op_type == "Relu" and n.name not in activations]
    named = target.with_name(f"{target.name}.in.onnx")
    onnx.save(model, str(named))
    try:
        quantize_static(
            str(named),
            str(target),
            FeedReader(feeds),
            quant_format=QuantFormat.QDQ,
            per_channel=per_channel,
            # uint8 activations: ONNX Runtime's x86 kernels are u8s8; with int8 activations it leaves
            # many convs as DequantizeLinear -> float Conv (weights dequantized on every run).
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            # only the compute layers (and, in plan 'dense-chain', the Relus folded into them): a quantized
            # HardSwish / Mul / Add / pool costs a DQ+Q pair each
            op_types_to_quantize=["Conv", "MatMul", "Gemm"] + (["Relu"] if activations else []),
            nodes_to_exclude=kept + (other_relus if activations else []),
            # 7-bit weights: see SATURATION_FREE_WEIGHTS; the int8 result is then the same on every CPU
            reduce_range=True,
            extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
        )
    finally:
        named.unlink(missing_ok=True)
    return True


#: Range of every int8 weight edgetag writes. ONNX Runtime's x86 int8 kernels multiply uint8
#: activations by int8 weights with ``vpmaddubsw``, which adds each pair of products into a
#: *saturating* int16, on every x86 CPU without VNNI (SSE4.1, AVX2, AVX-512 without VNNI). With
#: 8-bit weights a pair can reach 2 * 255 * 127 = 64770 and is clipped to 32767, so such CPUs
#: compute another network; VNNI CPUs (vpdpbusd, int32 sums) and ARM64 (SDOT/UDOT/SMMLA, or
#: widening multiplies) do not. With weights in [-64, 64] a pair stays within 2 * 255 * 64 = 32640:
#: the integer arithmetic is exact, and the same, on every CPU ONNX Runtime runs on.
SATURATION_FREE_WEIGHTS = (-64, 64)


def int8_weight_range(model: Any) -> tuple[int, int] | None:
    """(min, max) over the int8 weight initializers that feed a DequantizeLinear; None when there are none."""
    import onnx
    from onnx import numpy_helper

    weights = {i.name: i for i in model.graph.initializer if i.data_type == onnx.TensorProto.INT8}
    found: tuple[int, int] | None = None
    for node in model.graph.node:
        if node.op_type == "DequantizeLinear" and node.input[0] in weights:
            values = numpy_helper.to_array(weights[node.input[0]])
            if values.size:
                low, high = int(values.min()), int(values.max())
                found = (low, high) if found is None else (min(found[0], low), max(found[1], high))
    return found


def check_saturation_free(path: Path) -> tuple[int, int] | None:
    """Refuse an int8 file whose weights leave `SATURATION_FREE_WEIGHTS` (it would compute differently on x86 without VNNI)."""
    import onnx

    found = int8_weight_range(onnx.load(str(path)))
    lo, hi = SATURATION_FREE_WEIGHTS
    if found is not None and (found[0] < lo or found[1] > hi):
        raise ExportError(
            f"int8 weights span [{found[0]}, {found[1]}], outside [{lo}, {hi}]: ONNX Runtime's u8s8 kernels would "
            "saturate on x86 CPUs without VNNI and compute another network there (quantize with reduce_range)"
        )
    return found


def measure_latency_ms(
    paths: Sequence[Path], feeds: Sequence[dict[str, np.ndarray]], rounds: int = 9, per_round: int = 15
) -> dict[str, float]:
    """p50 latency (ms) of each model on single-thread ONNX Runtime CPU sessions, interleaved round by round."""
    import time

    import onnxruntime as ort

    from edgetag.runtime.model import session_options

    sessions = {}
    for path in paths:  # timed as the runtime runs them
        sessions[str(path)] = ort.InferenceSession(str(path), sess_options=session_options(1, quiet=True),
                                                   providers=["CPUExecutionProvider"])
    sample = [feeds[i] for i in np.linspace(0, len(feeds) - 1, min(len(feeds), 8)).astype(int)]
    times: dict[str, list[float]] = {k: [] for k in sessions}
    for session in sessions.values():
        for feed in sample[:3]:
            session.run(None, feed)
    for r in range(rounds):
        order = list(sessions.items())
        if r % 2:
            order.reverse()
        for key, session in order:
            for j in range(per_round):
                feed = sample[j % len(sample)]
                start = time.perf_counter()
                session.run(None, feed)
                times[key].append(time.perf_counter() - start)
    return {k: 1e3 * float(np.median(v)) for k, v in times.items()}


# --------------------------------------------------------------------------------- FP16
def to_fp16_weights(model: Any, min_elements: int = 16) -> int:
    """Store float32 initializers (of ``min_elements`` or more) as float16 with a Cast back to float32.

    Returns how many were converted. Tiny tensors (biases of a few values, scalars) stay float32:
    their Cast would cost more bytes than it saves.
    """
    import onnx
    from onnx import helper, numpy_helper

    converted = 0
    casts = []
    keep = []
    for init in model.graph.initializer:
        if init.data_type != onnx.TensorProto.FLOAT:
            keep.append(init)
            continue
        array = numpy_helper.to_array(init)
        if array.size < min_elements or not np.all(np.abs(array[np.isfinite(array)]) < 65504):
            keep.append(init)
            continue
        half = numpy_helper.from_array(array.astype(np.float16), name=f"{init.name}__fp16")
        keep.append(half)
        casts.append(helper.make_node("Cast", [half.name], [init.name], to=onnx.TensorProto.FLOAT, name=f"{init.name}__cast"))
        converted += 1
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)
    nodes = list(model.graph.node)
    del model.graph.node[:]
    model.graph.node.extend(casts + nodes)
    return converted


def convert_fp16(
    fp32_path: str | Path,
    out_path: str | Path,
    eval_features: Sequence[np.ndarray],
    eval_targets: np.ndarray | None = None,
    eval_mask: np.ndarray | None = None,
    *,
    max_relative_drop: float = MAX_RELATIVE_DROP,
    accept_drop: bool = False,
    log: Callable[[str], None] | None = None,
) -> QuantReport:
    """FP16 weights (float32 inputs, outputs and states), gated like int8."""
    import onnx

    say = log or (lambda _msg: None)
    fp32_path, out_path = Path(fp32_path), Path(out_path)
    model = onnx.load(str(fp32_path))
    card = read_card(model)
    n = to_fp16_weights(model)
    save_single_file(model, out_path)
    fp32_session = _ort_session(fp32_path)
    report = _gate(
        "fp16", fp32_path, out_path, card, eval_features, eval_targets, eval_mask,
        max_relative_drop, accept_drop, 0, fp32_session,
    )
    _finish_card(out_path, card, "fp16", report, {"fp16": f"{n} float16 initializers cast to float32 in the graph; float32 I/O"},
                 fp32_path=fp32_path, eval_features=eval_features)
    report.size_bytes = out_path.stat().st_size
    check_loads(out_path)
    for line in report.lines():
        say(line)
    return report


def _ort_version() -> str:
    import onnxruntime

    return onnxruntime.__version__

