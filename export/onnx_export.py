"""Students to self-describing ONNX files, verified against PyTorch at export.

`export_onnx` writes one ONNX file (no external data, opset >= 17) whose
metadata carries the model card (`edgetag.runtime.model_card`) under
``edgetag.model_card``, then checks the file and fails the export (raises
`ParityError` / `ExportError`, never a warning) when:

- ONNX Runtime and PyTorch disagree on real inputs (front-end features of
  calibration audio, computed with the checkpoint's own front end by
  `edgetag.runtime.frontend.compute_features`) by more than ``atol`` (1e-4)
  on the logits, batched and unbatched;
- for stateful students, ONNX Runtime run chunk by chunk with its state
  tensors fed back (chunks of one frame, and of random sizes) differs from the
  offline whole-sequence PyTorch run by more than ``stream_atol`` (1e-5) on
  any frame's logits;
- the written file does not load with `edgetag.runtime.model.load_model`
  (card validation and card-vs-graph check).

A causal-conv student's streaming graph is then rewritten time-major
(`edgetag.export.stream_layout`: MatMuls instead of per-channel Convs, states
``[batch, context, channels]``), checked against the traced graph on the same
features streamed call by call, and then against PyTorch with the checks above;
where either check fails the traced graph is written (with a note).

Graph layout (format version 1 of the card): input ``features`` float32
``[batch, frames, n_bins]``; output ``logits`` ``[batch, n_labels]`` (window
students: frames fixed to ``window_frames``) or ``[batch, frames, n_labels]``
(stateful students, frames dynamic); states ``{name}_in`` / ``{name}_out``
``[batch, *shape]`` in `Student.state_specs` order (the card's shapes: a causal-conv
student's are time-major, ``[context, channels]``, as above); ``embedding``, what the
student's classifier reads (`Student.embed`: ``[batch, size]`` or
``[batch, frames, size]``), located in the traced graph by
`edgetag.export.embedding` and checked against ``student.embed`` like the logits. The student is exported in
eval mode; batch norms are folded into the preceding convolutions by the
exporter's optimiser (`export_onnx` checks none are left in the graph).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from edgetag.export.embedding import add_embedding_output
from edgetag.export.errors import ExportError, ParityError
from edgetag.export.inputs import _as_feature_list, demo_audio, features_of, verification_frames, windows_of
from edgetag.export.model_file import _ort_session, check_frames_per_call
from edgetag.export.stream_layout import TIME_MAJOR, to_time_major
from edgetag.runtime.sealing import seal, set_card
from edgetag.runtime.clip import run_chunks
from edgetag.runtime.frontend import FrontendConfig
from edgetag.runtime.model import OnnxModel
from edgetag.runtime.model_card import (
    INPUT_NAME,
    OUTPUT_NAME,
    ModelCard,
    StateTensor,
)


#: Default ONNX opset (>= 17 required: LayerNorm-era ops, GRU with layout).
DEFAULT_OPSET = 18
#: Parity tolerances: fp32 ORT vs PyTorch, and streaming vs offline (the design's 1e-5).
LOGITS_ATOL = 1e-4
STREAM_ATOL = 1e-5
#: Frames per stateful parity sequence (longer clips are cut).
_SEQUENCE_FRAMES = 192


@dataclass
class ParityReport:
    """What the export checks measured (max abs differences on logits)."""

    batched_max_abs: float = 0.0
    single_max_abs: float = 0.0
    stream_chunk1_max_abs: float | None = None
    stream_random_max_abs: float | None = None
    stream_state_max_abs: float | None = None
    embedding_max_abs: float | None = None
    n_inputs: int = 0
    """Windows (window mode) or sequences (stateful mode) checked."""
    n_frames: int = 0

    def lines(self) -> list[str]:
        out = [
            (
                f"ORT vs PyTorch on {self.n_inputs} real input(s) ({self.n_frames} frames): "
                f"max abs {self.batched_max_abs:.3g} batched, {self.single_max_abs:.3g} one by one"
            )
        ]
        if self.embedding_max_abs is not None:
            out.append(f"embedding (ORT vs PyTorch student.embed): max abs {self.embedding_max_abs:.3g}")
        if self.stream_chunk1_max_abs is not None:
            out.append(
                f"streaming ORT vs offline PyTorch: max abs {self.stream_chunk1_max_abs:.3g} (chunks of 1), "
                f"{self.stream_random_max_abs:.3g} (random chunks); final state {self.stream_state_max_abs:.3g}"
            )
        return out


@dataclass
class ExportResult:
    path: Path
    card: ModelCard
    parity: ParityReport
    size_bytes: int
    extra: dict[str, Any] = field(default_factory=dict)


# ------------------------------------------------------------------------------- helpers
def _require_torch() -> Any:
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - the export extra carries torch
        raise ImportError("exporting needs torch and onnx: pip install 'edgetag[export]'") from exc
    return torch


def config_hash(checkpoint: Any) -> str:
    """SHA-256 (first 16 hex digits) of everything that defines the model but its weights.

    Student kind and parameters, front end, task, labels, thresholds, window
    and hop, and the training config hash the trainer recorded (if any).
    """
    payload = {
        "kind": checkpoint.kind,
        "params": checkpoint.params,
        "n_bins": checkpoint.student.n_bins,
        "n_labels": checkpoint.student.n_labels,
        "frontend": checkpoint.frontend.to_dict(),
        "task": checkpoint.task,
        "labels": list(checkpoint.labels),
        "thresholds": [float(t) for t in checkpoint.thresholds],
        "window_frames": checkpoint.window_frames,
        "hop_frames": checkpoint.hop_frames,
        "training_config_hash": checkpoint.provenance.get("config_hash"),
    }
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def weights_hash(student: Any) -> str:
    """SHA-256 (first 16 hex digits) of the student's state dict, in key order."""
    digest = hashlib.sha256()
    for key, value in student.state_dict().items():
        digest.update(key.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def build_card(
    checkpoint: Any,
    *,
    name: str | None = None,
    precision: str = "fp32",
    extra_provenance: dict[str, Any] | None = None,
    extra_metrics: dict[str, float] | None = None,
    frames_per_call: int | None = None,
) -> ModelCard:
    """The model card of a checkpoint (validated on construction).

    ``frames_per_call``: a stateful student's new frames per model call (None: the checkpoint's, 1);
    `check_frames_per_call` says what it allows.
    """
    from edgetag.training.students import count_parameters, macs_per_second

    student = checkpoint.student
    frontend: FrontendConfig = checkpoint.frontend
    stateful = student.streaming_mode == "stateful"
    window = checkpoint.window_frames
    if frames_per_call is not None:
        check_frames_per_call(student.streaming_mode, frames_per_call)
        window = frames_per_call
    if not stateful and window != student.window_frames:
        raise ExportError(
            f"checkpoint window_frames {window} differs from the student's window_frames {student.window_frames}"
        )
    provenance = dict(checkpoint.provenance)
    provenance.setdefault("config_hash", config_hash(checkpoint))
    provenance["export"] = {
        "config_hash": config_hash(checkpoint),
        "weights_hash": weights_hash(student),
        "student_kind": checkpoint.kind,
        "student_params": dict(checkpoint.params),
        "precision": precision,
        "exported_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        **(extra_provenance or {}),
    }
    metrics = {str(k): float(v) for k, v in checkpoint.metrics.items()}
    metrics.update({str(k): float(v) for k, v in (extra_metrics or {}).items()})
    return ModelCard(
        name=name or f"edgetag-{checkpoint.kind}",
        task=checkpoint.task,  # type: ignore[arg-type]
        labels=tuple(checkpoint.labels),
        frontend=frontend,
        streaming_mode=student.streaming_mode,
        window_frames=window,
        hop_frames=checkpoint.hop_frames,
        thresholds=tuple(float(t) for t in checkpoint.thresholds),
        states=tuple(StateTensor(s.name, tuple(int(d) for d in s.shape)) for s in student.state_specs()),
        provenance=provenance,
        metrics=metrics,
        parameters=int(count_parameters(student)),
        macs_per_second=float(macs_per_second(student, frontend.frame_rate, checkpoint.hop_frames)),
    )


# --------------------------------------------------------------------- parity inputs
def sequences_of(features: Sequence[np.ndarray], frames: int = _SEQUENCE_FRAMES) -> list[np.ndarray]:
    """Clips cut into sequences of at most ``frames`` frames [frames, n_bins]."""
    return [feats[i : i + frames] for feats in features for i in range(0, feats.shape[0], frames)]


# -------------------------------------------------------------------------- conversion
def _wrap(student: Any) -> Any:
    torch = _require_torch()

    class WindowGraph(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, features: Any) -> Any:
            return self.inner(features)

    class StreamGraph(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, features: Any, *states: Any) -> Any:
            logits, new_states = self.inner.forward_stream(features, *states)
            return (logits, *new_states)

    wrapper = StreamGraph(student) if student.streaming_mode == "stateful" else WindowGraph(student)
    return wrapper.eval()


def _to_onnx(student: Any, window_frames: int, opset: int) -> Any:
    """Trace the eval-mode student with the dynamo exporter; returns an `onnx.ModelProto`."""
    torch = _require_torch()
    from torch.export import Dim

    specs = student.state_specs()
    batch = Dim("batch", min=1, max=65536)
    wrapper = _wrap(student)
    # batch 2 (and >= 2 frames) so that the tracer does not specialise sizes of 1
    if student.streaming_mode == "stateful":
        frames = Dim("frames", min=1, max=1 << 20)
        args = (torch.zeros(2, 5, student.n_bins), *student.initial_state(2))
        dynamic_shapes: Any = ({0: batch, 1: frames}, tuple({0: batch} for _ in specs))
    else:
        args = (torch.zeros(2, window_frames, student.n_bins),)
        dynamic_shapes = ({0: batch},)
    input_names = [INPUT_NAME] + [f"{s.name}_in" for s in specs]
    output_names = [OUTPUT_NAME] + [f"{s.name}_out" for s in specs]
    import contextlib
    import io
    import warnings

    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        try:
            program = torch.onnx.export(
                wrapper,
                args,
                dynamo=True,
                external_data=False,
                opset_version=opset,
                input_names=input_names,
                output_names=output_names,
                dynamic_shapes=dynamic_shapes,
                optimize=True,
                verbose=False,
            )
        except Exception as exc:  # the exporter raises many types
            raise ExportError(f"torch.onnx.export failed: {type(exc).__name__}: {str(exc)[:2000]}") from exc
    return program.model_proto


def _strip_debug_info(model: Any) -> None:
    """Drop the tracer's per-node metadata (source stack traces): it is most of a small model's bytes."""
    for node in model.graph.node:
        del node.metadata_props[:]
        node.doc_string = ""
    for value in [*model.graph.value_info, *model.graph.input, *model.graph.output, *model.graph.initializer]:
        del value.metadata_props[:]
    del model.graph.metadata_props[:]


def _fix_io_shapes(model: Any, card: ModelCard) -> None:
    """Declare the graph's I/O shapes as the card implies (symbolic batch / frames).

    The tracer sometimes records the example's frame count on an output and
    on intermediate values (e.g. after a GRU); ONNX Runtime then warns on
    every call, and a stale static shape could mislead a graph optimiser. The
    intermediate annotations are dropped (ONNX Runtime infers them again) and
    the I/O shapes are those of the card.
    """
    del model.graph.value_info[:]
    frames: Any = "frames" if card.streaming_mode == "stateful" else card.window_frames
    out_frames = [frames] if card.streaming_mode == "stateful" else []
    wanted = {
        INPUT_NAME: ["batch", frames, card.frontend.n_bins],
        OUTPUT_NAME: ["batch", *out_frames, card.n_labels],
    }
    for state in card.states:
        wanted[state.input_name] = ["batch", *state.shape]
        wanted[state.output_name] = ["batch", *state.shape]
    for value in [*model.graph.input, *model.graph.output]:
        if value.name not in wanted:
            continue
        dims = value.type.tensor_type.shape.dim
        target = wanted[value.name]
        if len(dims) != len(target):
            raise ExportError(f"graph {value.name!r} has rank {len(dims)}, expected {len(target)}")
        for dim, want in zip(dims, target):
            if isinstance(want, str):
                dim.dim_param = want
            else:
                dim.dim_value = int(want)


def _student_embedding(model: Any, card: ModelCard, student: Any) -> dict[str, Any]:
    """Add the ``embedding`` output to the traced graph (in place); the card's record of it."""
    record = add_embedding_output(model, card).embedding
    if record["size"] != getattr(student, "embedding_dim", record["size"]):
        raise ExportError(f"the graph's classifier reads {record['size']} features, the student's "
                          f"embedding_dim is {student.embedding_dim}: the embedding was not found")
    return {**record, "student": f"{type(student).__name__}.embed"}


# ------------------------------------------------------------------------ verification
def _torch_logits(student: Any, batch: np.ndarray) -> np.ndarray:
    torch = _require_torch()
    with torch.no_grad():
        return student(torch.from_numpy(np.ascontiguousarray(batch))).numpy()


def _torch_embedding(student: Any, batch: np.ndarray) -> np.ndarray:
    torch = _require_torch()
    with torch.no_grad():
        return student.embed(torch.from_numpy(np.ascontiguousarray(batch))).numpy()


def _torch_stream_states(student: Any, seq: np.ndarray) -> list[np.ndarray]:
    torch = _require_torch()
    with torch.no_grad():
        _, states = student.forward_stream(torch.from_numpy(seq[None]), *student.initial_state(1))
    return [s.numpy() for s in states]


def _random_chunks(n: int, rng: np.random.Generator, largest: int = 17) -> list[int]:
    sizes = []
    while n > 0:
        size = int(min(n, rng.integers(1, largest + 1)))
        sizes.append(size)
        n -= size
    return sizes


def verify_onnx(
    student: Any,
    model: str | Path | bytes,
    card: ModelCard,
    features: Sequence[np.ndarray],
    *,
    atol: float = LOGITS_ATOL,
    stream_atol: float = STREAM_ATOL,
    max_inputs: int = 16,
    seed: int = 0,
) -> ParityReport:
    """Compare ONNX Runtime with PyTorch on real features; raise `ParityError` beyond tolerance."""
    onnx_model = OnnxModel.from_session(_ort_session(model), card)
    time_major = card.provenance.get("export", {}).get("stream_layout") == TIME_MAJOR

    def offline_run(batch: np.ndarray) -> np.ndarray:  # zero initial state for stateful models
        return onnx_model.run(np.ascontiguousarray(batch, np.float32))[0]

    report = ParityReport()
    rng = np.random.default_rng(seed)

    def check(diff: float, limit: float, what: str) -> None:
        if not np.isfinite(diff) or diff > limit:
            raise ParityError(
                f"export check failed: {what}: max abs difference {diff:.3g} exceeds {limit:g} "
                "(the ONNX graph does not compute what the PyTorch student computes)"
            )

    def diff_of(a: np.ndarray, b: np.ndarray, what: str) -> float:
        if a.shape != b.shape:
            raise ParityError(f"export check failed: {what}: ONNX output shape {list(a.shape)} != PyTorch {list(b.shape)}")
        return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))))

    if card.streaming_mode == "window":
        windows = windows_of(features, card.window_frames)
        if len(windows) > max_inputs:
            windows = windows[np.sort(rng.choice(len(windows), max_inputs, replace=False))]
        expected = _torch_logits(student, windows)
        report.batched_max_abs = diff_of(offline_run(windows), expected, "logits, batched windows")
        check(report.batched_max_abs, atol, "logits on a batch of real windows (fp32)")
        single = max(diff_of(offline_run(w[None]), expected[i : i + 1], "logits") for i, w in enumerate(windows))
        report.single_max_abs = single
        check(single, atol, "logits on single real windows (fp32)")
        if card.embedding:
            report.embedding_max_abs = diff_of(onnx_model.embed(np.ascontiguousarray(windows, np.float32))[0],
                                               _torch_embedding(student, windows), "embedding")
            check(report.embedding_max_abs, atol, "embedding on a batch of real windows (fp32)")
        report.n_inputs, report.n_frames = len(windows), int(windows.shape[0] * windows.shape[1])
        return report

    seqs = sequences_of(features)[: max(1, max_inputs // 4)]
    # batched offline: sequences cut to a common length
    common = min(s.shape[0] for s in seqs)
    batch = np.stack([s[:common] for s in seqs]).astype(np.float32)
    expected_batch = _torch_logits(student, batch)
    report.batched_max_abs = diff_of(offline_run(batch), expected_batch, "logits, batched sequences")
    check(report.batched_max_abs, atol, "logits on a batch of real sequences, whole-sequence run (fp32)")
    if card.embedding:
        report.embedding_max_abs = diff_of(onnx_model.embed(batch)[0], _torch_embedding(student, batch), "embedding")
        check(report.embedding_max_abs, atol, "embedding on a batch of real sequences (fp32)")
    single = chunk1 = rand = state_diff = 0.0
    for seq in seqs:
        expected = _torch_logits(student, seq[None])[0]
        single = max(single, diff_of(offline_run(seq[None])[0], expected, "logits"))
        check(single, atol, "logits on a real sequence, whole-sequence run (fp32)")
        got1, states1 = run_chunks(onnx_model, seq, [1] * seq.shape[0])
        chunk1 = max(chunk1, diff_of(got1, expected, "streamed logits"))
        check(chunk1, stream_atol, "ONNX streamed in chunks of 1 frame vs PyTorch offline whole sequence")
        gotr, statesr = run_chunks(onnx_model, seq, _random_chunks(seq.shape[0], rng))
        rand = max(rand, diff_of(gotr, expected, "streamed logits"))
        check(rand, stream_atol, "ONNX streamed in random chunks vs PyTorch offline whole sequence")
        for ref, a, b in zip(_torch_stream_states(student, seq), states1, statesr):
            if time_major:  # PyTorch's state is [batch, channels, context]
                ref = np.swapaxes(ref, 1, 2)
            state_diff = max(state_diff, diff_of(a, ref, "state"), diff_of(b, ref, "state"))
        check(state_diff, atol, "final streaming state vs PyTorch")
    report.single_max_abs, report.stream_chunk1_max_abs, report.stream_random_max_abs = single, chunk1, rand
    report.stream_state_max_abs = state_diff
    report.n_inputs, report.n_frames = len(seqs), int(sum(s.shape[0] for s in seqs))
    return report


# ------------------------------------------------------------------------------ export
def export_onnx(
    checkpoint: Any,
    path: str | Path,
    calibration_features: Any = None,
    *,
    calibration_audio: Sequence[np.ndarray] | None = None,
    name: str | None = None,
    opset: int = DEFAULT_OPSET,
    atol: float = LOGITS_ATOL,
    stream_atol: float = STREAM_ATOL,
    seed: int = 0,
    frames_per_call: int | None = None,
    log: Callable[[str], None] | None = None,
) -> ExportResult:
    """Export a `StudentCheckpoint` to one verified, self-describing ONNX file.

    Args:
        checkpoint: `edgetag.training.checkpoint.StudentCheckpoint`.
        path: Output ``.onnx`` file.
        calibration_features: Real inputs for the parity checks: front-end
            features ``[frames, n_bins]`` per clip (a list, or one array).
        calibration_audio: Waveforms at the front end's rate, used instead
            (features computed with the checkpoint's front end). With
            neither, a deterministic demo signal goes through the front end.
        atol, stream_atol: Parity tolerances (1e-4 logits, 1e-5 streaming).
        frames_per_call: Stateful students: new frames per model call in the card (None: 1). More
            frames per call cost less CPU per second of audio (fewer calls) and add a hop of latency each.

    Raises:
        ParityError: a parity check failed (the message shows the difference).
        ExportError: the exporter failed, or the file is refused by the runtime.
    """
    if opset < 17:
        raise ExportError(f"opset must be >= 17, got {opset}")
    import onnx

    say = log or (lambda _msg: None)
    student = checkpoint.student.eval()
    if calibration_features is None:
        audio = calibration_audio if calibration_audio is not None else [demo_audio(checkpoint.frontend.sample_rate)]
        calibration_features = features_of(audio, checkpoint.frontend)
    features = _as_feature_list(calibration_features, student.n_bins)

    card = build_card(checkpoint, name=name, frames_per_call=frames_per_call)
    model = _to_onnx(student, checkpoint.window_frames, opset)
    if model.graph.initializer and any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer):
        raise ExportError("exporter produced external data; expected a single file")
    _strip_debug_info(model)
    leftover_bn = sum(1 for n in model.graph.node if n.op_type == "BatchNormalization")
    _fix_io_shapes(model, card)
    embedding = _student_embedding(model, card, student)
    card = dataclasses.replace(card, embedding=embedding)
    model.producer_name = "edgetag"
    model.doc_string = f"edgetag {card.name}: {card.task}, {card.streaming_mode}, {card.n_labels} labels"
    set_card(model, card)

    data = model.SerializeToString()
    parity = verify_onnx(student, data, card, features, atol=atol, stream_atol=stream_atol, seed=seed)
    for line in parity.lines():
        say(line)
    extra_provenance: dict[str, Any] = {"opset": opset, "batchnorm_nodes_left": leftover_bn}
    layout_metrics: dict[str, float] = {}
    written_card = card
    try:
        rewritten, rewritten_card, layout_diff = to_time_major(model, card, features)
        if layout_diff is not None:  # the file written is checked against PyTorch like the traced graph
            rewritten_parity = verify_onnx(student, rewritten.SerializeToString(), rewritten_card, features, atol=atol,
                                           stream_atol=stream_atol, seed=seed)
    except (ExportError, ParityError) as exc:
        say(f"note: the streaming graph stays as traced (the time-major rewrite failed its check: {exc})")
    else:
        if layout_diff is not None:
            model, written_card, parity = rewritten, rewritten_card, rewritten_parity
            extra_provenance["stream_layout"] = TIME_MAJOR
            layout_metrics["export_layout_max_abs"] = layout_diff
            say(f"streaming graph rewritten time-major (MatMuls; states [context, channels]): max difference "
                f"{layout_diff:.2g} from the traced graph; against PyTorch:")
            for line in parity.lines():
                say(f"  {line}")
    metrics = {
        "export_parity_max_abs": max(parity.batched_max_abs, parity.single_max_abs),
        **layout_metrics,
    }
    if parity.stream_chunk1_max_abs is not None:
        metrics["export_stream_max_abs"] = max(parity.stream_chunk1_max_abs, parity.stream_random_max_abs or 0.0)
    card = build_card(
        checkpoint,
        name=name,
        extra_provenance=extra_provenance,
        extra_metrics=metrics,
        frames_per_call=frames_per_call,
    )
    card = dataclasses.replace(card, embedding=written_card.embedding, states=written_card.states)
    loaded = seal(model, card, path, verification_frames(features, card))
    if json.loads(loaded.to_json()) != json.loads(card.to_json()) | {"integrity": loaded.integrity,
                                                                      "test_vector": loaded.test_vector}:
        raise ExportError("export check failed: the card read back differs from the card written")
    size = Path(path).stat().st_size
    say(f"wrote {path} ({size} bytes, opset {opset}, {card.parameters} parameters); "
        f"test vector: {loaded.test_vector['features']['shape'][0]} frames, sha256 {loaded.integrity['sha256'][:16]}...")
    return ExportResult(path=Path(path), card=loaded, parity=parity, size_bytes=size, extra={"features": features})
