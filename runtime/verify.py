"""On-device self-check: a model file proves that it computes, on this CPU, what it computed at export.

Every exported model carries a **test vector** in its card (``test_vector``):

- ``features``: a few frames of real front-end features (float16 in the
  card, so the values fed are exactly the stored ones): one window plus two
  hops for window models, `STATEFUL_FRAMES` frames for stateful ones;
- ``reference_scores``: the scores of the **fp32** model on those frames,
  one row per decision, streamed through the runtime's `Engine` (stateful
  models frame by frame with their state carried);
- ``precision`` and ``tolerance``: how far this file's scores may lie from
  the fp32 reference (`tolerance_for`): 1e-4 for fp32 files, and for int8 or
  fp16 files the difference measured at export plus a margin;
- ``verified``: the CPU, ONNX Runtime version and difference of the export's
  own check.

`verify_model` streams the features through a fresh `Engine` on this CPU
and compares. int8 files quantized by edgetag keep their weights in 7 bits,
so their integer arithmetic is exact on every CPU (see
`edgetag.export.quantize`) and the difference measured here should equal the
export's; a CPU whose int8 kernels saturate, a damaged runtime or a file
from elsewhere shows up as a larger one. Needs numpy and onnxruntime only.
"""

from __future__ import annotations

import base64
import datetime as _dt
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

#: Frames in a stateful model's test vector (each 10 ms frame of the pitch model is a decision).
STATEFUL_FRAMES = 32
#: fp32 files: the same graph on another CPU differs by float rounding only (about 1e-6 in a score).
FP32_TOLERANCE = 1e-4


class VerificationError(ValueError):
    """A test vector that is missing, malformed or does not fit the model."""


@dataclass
class VerifyResult:
    precision: str
    max_abs_diff: float
    tolerance: float
    n_decisions: int
    n_frames: int
    recorded: dict[str, Any]

    @property
    def passed(self) -> bool:
        return bool(np.isfinite(self.max_abs_diff)) and self.max_abs_diff <= self.tolerance


# ------------------------------------------------------------------------------ encoding
def encode_array(array: np.ndarray, dtype: str) -> dict[str, Any]:
    data = np.ascontiguousarray(array, dtype=np.dtype(dtype).newbyteorder("<"))
    return {"dtype": dtype, "shape": list(data.shape), "base64": base64.b64encode(data.tobytes()).decode("ascii")}


def decode_array(entry: Any, what: str) -> np.ndarray:
    if not isinstance(entry, dict) or entry.get("dtype") not in ("float16", "float32"):
        raise VerificationError(f"test vector {what}: expected {{dtype: float16|float32, shape, base64}}")
    try:
        shape = tuple(int(d) for d in entry["shape"])
        raw = base64.b64decode(entry["base64"], validate=True)
    except (KeyError, TypeError, ValueError) as exc:
        raise VerificationError(f"test vector {what}: malformed ({exc})") from None
    dtype = np.dtype(entry["dtype"]).newbyteorder("<")
    if any(d < 0 for d in shape) or int(np.prod(shape)) * dtype.itemsize != len(raw):
        raise VerificationError(f"test vector {what}: {len(raw)} bytes do not hold {entry['dtype']} {list(shape)}")
    return np.frombuffer(raw, dtype=dtype).reshape(shape).astype(np.float32)


# ------------------------------------------------------------------------------ CPU facts
#: The instruction-set features that decide which int8 kernels ONNX Runtime runs, per architecture,
#: as numpy's CPUID-based dispatcher names them (true under emulation too, unlike /proc/cpuinfo).
_INT8_FEATURES = {
    "x86_64": ("AVX2", "AVX512F", "AVX512BW", "AVX512VNNI"),
    "aarch64": ("ASIMD", "ASIMDDP", "SVE"),
}
#: /proc/cpuinfo flags numpy does not report, added when /proc/cpuinfo describes this CPU.
_EXTRA_FLAGS = ("avx_vnni", "amx_int8", "i8mm")
_DOT_PRODUCT = {"AVX512VNNI", "ASIMDDP", "avx_vnni", "amx_int8", "i8mm"}


def _cpu_features() -> dict[str, bool]:
    try:
        from numpy._core._multiarray_umath import __cpu_features__
    except ImportError:  # numpy < 2
        from numpy.core._multiarray_umath import __cpu_features__
    return dict(__cpu_features__)


def cpu_description() -> str:
    """Machine, CPU model and its int8-relevant SIMD features.

    Features come from the CPU itself (CPUID, through numpy), so an emulated
    CPU (qemu-user's ``-cpu Haswell``) is described as what it is; the model
    name and the few flags numpy does not know come from /proc/cpuinfo, and
    only when its flags agree with CPUID (under qemu-user it is the host's).
    """
    machine = platform.machine().lower().replace("amd64", "x86_64").replace("arm64", "aarch64")
    features = _cpu_features()
    found = [f for f in _INT8_FEATURES.get(machine, ()) if features.get(f)]
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        lines = []
    model = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), "")
    flags = set(next((line.split(":", 1)[1].split() for line in lines if line.startswith(("flags", "Features"))), []))
    same_cpu = bool(flags) and all((f.lower() in flags or f.lower().replace("512", "512_") in flags) == bool(features.get(f))
                                   for f in ("AVX2", "AVX512F", "ASIMD"))
    if same_cpu:
        found += [f for f in _EXTRA_FLAGS if f in flags]
    else:
        model = "(emulated or virtualised: /proc/cpuinfo describes another CPU)" if flags else ""
    dot = "" if _DOT_PRODUCT & set(found) else ", no int8 dot product"
    return f"{machine} {model}".strip() + f", {' '.join(found) or 'no SIMD features found'}{dot}"


# ------------------------------------------------------------------------------ running
def stream_scores(model: Any, features: np.ndarray) -> np.ndarray:
    """Scores [decisions, n_labels] of ``features`` [frames, n_bins] streamed through a fresh `Engine`."""
    from edgetag.runtime.engine import Engine

    decisions = Engine(model).push_frames(np.ascontiguousarray(features, np.float32))
    if not decisions:
        return np.zeros((0, model.card.n_labels), np.float32)
    return np.stack([d.scores for d in decisions]).astype(np.float32)


def vector_frames(card: Any) -> int:
    """Frames a test vector holds: one window and two hops (window models), or `STATEFUL_FRAMES`."""
    if card.streaming_mode == "window":
        return card.window_frames + 2 * card.hop_frames
    return max(STATEFUL_FRAMES, card.frames_per_call, card.hop_frames)


def pick_frames(features: list[np.ndarray], frames: int) -> np.ndarray:
    """The loudest span of ``frames`` frames of the longest clip (deterministic); `make_test_vector` picks its storage."""
    clip = max(features, key=len)
    if len(clip) < frames:
        raise VerificationError(f"a test vector needs {frames} frames of features; the longest clip has {len(clip)}")
    energy = np.convolve(clip.mean(axis=1), np.ones(frames), mode="valid")
    start = int(np.argmax(energy))
    return np.array(clip[start : start + frames], dtype=np.float32)


def tolerance_for(precision: str, measured: float) -> float:
    """The tolerance recorded for a file of ``precision`` whose export CPU measured ``measured``.

    fp32: `FP32_TOLERANCE` (or twice the measured difference, if larger).
    Other precisions: the export's difference to the fp32 reference plus a
    quarter of it plus 1e-3, room for float rounding on another CPU, not for a
    kernel that computes something else (the int8 saturation this guards
    against moved scores by 0.1 to 0.5).
    """
    if precision == "fp32":
        return max(FP32_TOLERANCE, 2 * measured)
    return 1.25 * measured + 1e-3


def make_test_vector(model: Any, features: np.ndarray, precision: str,
                     reference_scores: np.ndarray | None = None) -> dict[str, Any]:
    """A card's ``test_vector`` for ``model`` (an `OnnxModel`) on ``features``.

    ``reference_scores``: the fp32 model's scores on the same features (None:
    ``model`` is the fp32 model and its own scores are the reference).
    """
    import onnxruntime

    if not np.isfinite(features).all():
        raise VerificationError("test vector features contain NaN or Inf")
    # float16 when the values survive it (half the bytes in the card), else float32
    storage = "float16" if np.abs(features).max(initial=0.0) < 65504 else "float32"
    features = features.astype(storage).astype(np.float32)
    scores = stream_scores(model, features)
    if not len(scores):
        raise VerificationError(f"{len(features)} frames give no decision: a test vector needs at least one")
    reference = scores if reference_scores is None else np.asarray(reference_scores, np.float32)
    if reference.shape != scores.shape:
        raise VerificationError(f"reference scores {list(reference.shape)} vs this model's {list(scores.shape)}")
    measured = float(np.max(np.abs(scores.astype(np.float64) - reference)))
    if not np.isfinite(measured):
        raise VerificationError("the model's scores on the test vector are not finite")
    tolerance = tolerance_for(precision, measured)
    return {
        "features": encode_array(features, storage),
        "reference_scores": encode_array(reference, "float32"),
        "reference": "scores of the fp32 model on these features, streamed by edgetag's Engine on ONNX Runtime CPU",
        "precision": precision,
        "tolerance": tolerance,
        "verified": {
            "cpu": cpu_description(),
            "onnxruntime": onnxruntime.__version__,
            "max_abs_diff": measured,
            "date": _dt.date.today().isoformat(),
        },
    }


def verify_model(model: Any) -> VerifyResult:
    """Run the card's test vector on this CPU through a fresh engine; `VerifyResult` (raise if none is recorded)."""
    vector = model.card.test_vector
    if not vector:
        raise VerificationError(
            f"{getattr(model, 'path', 'this model')} carries no test vector (exported before edgetag recorded one): "
            "export it again with `edgetag export` to verify it"
        )
    features = decode_array(vector.get("features"), "features")
    reference = decode_array(vector.get("reference_scores"), "reference_scores")
    n_bins, n_labels = model.card.frontend.n_bins, model.card.n_labels
    if features.ndim != 2 or features.shape[1] != n_bins:
        raise VerificationError(f"test vector features are {list(features.shape)}, the model takes [frames, {n_bins}]")
    if reference.ndim != 2 or reference.shape[1] != n_labels:
        raise VerificationError(f"test vector scores are {list(reference.shape)}, the model has {n_labels} labels")
    try:
        tolerance = float(vector["tolerance"])
    except (KeyError, TypeError, ValueError):
        raise VerificationError("test vector: no numeric tolerance") from None
    scores = stream_scores(model, features)
    if not len(reference) or scores.shape != reference.shape:
        diff = float("inf")  # a vector that checks nothing, or decisions that do not line up, fail
    else:
        diff = float(np.max(np.abs(scores.astype(np.float64) - reference))) if scores.size else 0.0
    return VerifyResult(
        precision=str(vector.get("precision", "?")),
        max_abs_diff=diff if np.isfinite(diff) else float("inf"),
        tolerance=tolerance,
        n_decisions=len(reference),
        n_frames=len(features),
        recorded=dict(vector.get("verified", {})),
    )
