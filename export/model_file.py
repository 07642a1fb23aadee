"""Writing model files: the card in the metadata, one file, sealed with a digest and a test vector.

Sealing itself (card, integrity digest, test vector, one atomic write) is
`edgetag.runtime.sealing.seal`, shared with enrolment on a device; here
`reseal` seals an fp32 file from an older export, `record_metrics` adds
numbers measured later, `save_single_file` writes a graph that is sealed
afterwards, and `check_loads` reads a file back with the runtime's loader.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgetag.export.errors import ExportError
from edgetag.export.inputs import demo_audio, features_of, verification_frames
from edgetag.export.stream_layout import to_time_major
from edgetag.runtime.atomic import atomic_write
from edgetag.runtime.model_card import ModelCard
from edgetag.runtime.sealing import read_card, seal, set_card


def _ort_session(model: str | Path | bytes) -> Any:
    import onnxruntime as ort

    from edgetag.runtime.model import session_options

    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, sess_options=session_options(quiet=True), providers=["CPUExecutionProvider"])


def save_single_file(model: Any, path: str | Path) -> int:
    """Save an `onnx.ModelProto` as one file (weights inline); returns its size in bytes."""
    import onnx

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = model.SerializeToString()
    if len(data) >= 2**31:
        raise ExportError(f"model is {len(data)} bytes: over protobuf's 2 GiB single-file limit")
    onnx.checker.check_model(model)
    atomic_write(path, lambda handle: handle.write(data))  # a reader never sees half a model
    return len(data)


@dataclass
class SealedFile:
    """An edgetag ONNX file read for a change that keeps its test vector (`read_sealed_file`)."""

    data: bytes
    """The file as it was."""
    model: Any
    """Its `onnx.ModelProto`, to be changed."""
    card: ModelCard
    frames: np.ndarray
    """The test vector's features."""
    reference: np.ndarray
    """The test vector's reference scores (the fp32 model's)."""
    precision: str


def read_sealed_file(source: str | Path) -> SealedFile:
    """An edgetag ONNX file (any precision) and its test vector, for a change made to the file as it is
    (``--add-embedding``, ``--add-input-gain``); refuses a corrupt file, or one without a test vector."""
    import onnx

    from edgetag.runtime.model import load_model
    from edgetag.runtime.verify import decode_array

    load_model(source)  # refuses a corrupt or contradictory file before anything is written
    data = Path(source).read_bytes()
    model = onnx.load_from_string(data)
    card = read_card(model)
    vector = card.test_vector
    if not vector:
        raise ExportError(f"{source} has no test vector: reseal it first (`edgetag export {source} -o NEW.onnx`)")
    precision = str(vector.get("precision", card.provenance.get("export", {}).get("precision", "fp32")))
    return SealedFile(data, model, card, decode_array(vector["features"], "features"),
                      decode_array(vector["reference_scores"], "reference_scores"), precision)


#: Most new frames a stateful card may ask the runtime to gather per call (32 x 10 ms = 320 ms of added latency).
MAX_FRAMES_PER_CALL = 32


def check_frames_per_call(streaming_mode: str, frames_per_call: int) -> None:
    """Refuse a frames-per-call setting a model cannot take: window models run on their window."""
    if streaming_mode != "stateful":
        raise ExportError("--frames-per-call is for stateful (frame-by-frame) models; a window model runs on its "
                          "whole window every hop")
    if not 1 <= frames_per_call <= MAX_FRAMES_PER_CALL:
        raise ExportError(f"--frames-per-call must be 1 to {MAX_FRAMES_PER_CALL} (frames the runtime waits for before "
                          f"each model call; each adds one hop of latency), got {frames_per_call}")


def require_fp32(card: ModelCard, source: str | Path) -> None:
    """`ExportError` unless ``card`` is an fp32 file's: only those are resealed."""
    precision = card.provenance.get("export", {}).get("precision", "fp32")
    if precision != "fp32":
        raise ExportError(f"{source} is an {precision} file: reseal its fp32 model and quantize that again "
                          "(a test vector's reference scores come from the fp32 graph)")


#: Card metrics that time the model as its card runs it: stale once its frames per call change.
COST_METRICS = ("cpu_ms_per_s_audio_1thread",)


def reseal(source: str | Path, path: str | Path, features: Sequence[np.ndarray] | None = None,
           frames_per_call: int | None = None, say: Callable[[str], None] | None = None) -> ModelCard:
    """Give an existing fp32 edgetag ONNX file (from an older export) its digest and test vector.

    The graph is copied unchanged (no PyTorch parity check: there is no
    checkpoint), except that a causal-conv student's streaming graph traced
    channel-major is rewritten time-major (`edgetag.export.stream_layout`, checked
    against the source graph on ``features``; kept as it is where that check
    fails); ``features`` are real front-end
    features for the checks and the test vector (None: the demo signal through
    the card's front end). ``frames_per_call``: a
    stateful model's new frames per call, written into the card (the graph takes any
    number). Writes ``path`` (which may be ``source``) atomically; ``say`` hears why a rewrite was not kept.
    """
    import dataclasses

    import onnx

    from edgetag.runtime.model import load_model

    load_model(source)  # refuses a corrupt or contradictory file before anything is written
    model = onnx.load(str(source))
    card = read_card(model)
    require_fp32(card, source)
    if frames_per_call is not None:
        check_frames_per_call(card.streaming_mode, frames_per_call)
        stale = sorted(k for k in card.metrics if k in COST_METRICS) if frames_per_call != card.frames_per_call else []
        if stale:  # measured at the old frames per call: no longer this file's cost
            if say is not None:
                say(f"note: {', '.join(stale)} dropped from the card (measured at {card.frames_per_call} frame(s) "
                    f"per call, not {frames_per_call}); measure it again (the pitch recipe's evaluate_pitch.py)")
            card = dataclasses.replace(card, metrics={k: v for k, v in card.metrics.items() if k not in stale})
        card = dataclasses.replace(card, window_frames=frames_per_call)
    if features is None:
        features = features_of([demo_audio(card.frontend.sample_rate)], card.frontend)
    try:
        model, card, layout_diff = to_time_major(model, card, list(features))
    except ExportError as exc:  # the rewrite would compute other values: the source graph is sealed as it is
        layout_diff = None
        if say is not None:
            say(f"note: the streaming graph stays as it is (the time-major rewrite failed its check: {exc})")
    if layout_diff is not None:
        card = dataclasses.replace(card, metrics={**card.metrics, "export_layout_max_abs": layout_diff})
    frames = verification_frames(list(features), card)
    if card.streaming_mode == "stateful" and card.frames_per_call > 1:
        check_chunked_calls(model.SerializeToString(), card, frames)
    return seal(model, card, path, frames)


#: Largest score difference allowed between N-frame and one-frame calls of a stateful model (float rounding).
CHUNKED_SCORES_ATOL = 1e-5


def check_chunked_calls(source: str | Path | bytes, card: ModelCard, frames: np.ndarray) -> float:
    """Raise `ExportError` unless ``frames`` streamed in calls of ``card.frames_per_call`` frames give the scores
    of one-frame calls (within `CHUNKED_SCORES_ATOL`); returns the largest difference."""
    import dataclasses

    from edgetag.runtime.model import OnnxModel
    from edgetag.runtime.verify import stream_scores

    session = _ort_session(source)
    gathered = stream_scores(OnnxModel.from_session(session, card), frames)
    single = stream_scores(OnnxModel.from_session(session, dataclasses.replace(card, window_frames=1)), frames)
    n = len(gathered)  # the last frames may wait for a whole call
    diff = float(np.max(np.abs(gathered - single[:n]))) if n else float("inf")
    if not n or diff > CHUNKED_SCORES_ATOL:
        raise ExportError(f"calls of {card.frames_per_call} frames give other scores than one-frame calls (max "
                          f"{diff:.3g} > {CHUNKED_SCORES_ATOL:g}): this graph does not stream in chunks")
    return diff


def record_metrics(path: str | Path, metrics: dict[str, float], provenance: dict[str, Any] | None = None,
                   thresholds: Sequence[float] | None = None, min_durations_s: tuple[float, float] | None = None,
                   drop: Sequence[str] = ()) -> ModelCard:
    """Add measured metrics (and provenance keys) to the card of an exported file, in place.

    For numbers measured after export (e.g. a recipe's held-out evaluation of the
    fp32 and int8 files) and for ``thresholds`` chosen after it (one per label,
    `edgetag.training.thresholds`); the graph is untouched and the file is replaced
    atomically. The card lies outside the integrity digest and the test vector holds
    scores, not decisions, so both stay valid. ``min_durations_s``: the events' minimum
    on/off durations for this model (`edgetag.runtime.pipeline.min_durations`). ``drop``: metrics removed
    from the card (ones that do not describe this file).
    """
    import dataclasses

    import onnx

    if isinstance(drop, str):
        raise TypeError(f"drop takes metric names, not one string: [{drop!r}]")
    dropped = set(drop)
    model = onnx.load(str(path))
    card = read_card(model)
    merged = {**card.provenance, **(provenance or {})}
    export = dict(merged.get("export", {}))
    if "metrics_of_fp32" in export:  # measured on this file now (or dropped): no longer the fp32 file's
        export["metrics_of_fp32"] = [k for k in export["metrics_of_fp32"] if k not in metrics and k not in dropped]
        merged["export"] = export
    card = dataclasses.replace(
        card,
        metrics={**{k: v for k, v in card.metrics.items() if k not in dropped},
                 **{str(k): float(v) for k, v in metrics.items()}},
        provenance=merged,
        # a wrong count or a value outside [0, 1] is refused here by the card's own validation
        thresholds=card.thresholds if thresholds is None else tuple(float(t) for t in thresholds),
        min_durations_s=card.min_durations_s if min_durations_s is None else tuple(map(float, min_durations_s)),
    )
    set_card(model, card)
    save_single_file(model, path)
    check_loads(path)
    return card


def check_loads(path: str | Path) -> ModelCard:
    """The file opens with the runtime's `load_model` (card + graph checks); its card."""
    from edgetag.runtime.model import load_model
    from edgetag.runtime.model_card import ModelCardError

    try:
        return load_model(path).card
    except (ModelCardError, ValueError) as exc:
        raise ExportError(f"export check failed: the written file is refused by the runtime: {exc}") from exc
