"""What an ``edgetag bench`` run measures: `BenchSettings`, the default students and the backends."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any


#: Students ``--models`` builds with random weights, and their parameters (``window_frames`` of a window student is its window).
DEFAULT_STUDENTS: dict[str, dict[str, Any]] = {
    "mobilenet": {"width": 0.5, "window_frames": 100},
    "plain_cnn": {"window_frames": 100},
    "causal_cnn": {},
    "crnn": {},
}
#: Backends, in table order: (key, label, runtime backend, precision); the backends and precisions
#: are keys of `edgetag.runtime.formats` (BACKENDS, FORMATS).
BACKENDS: tuple[tuple[str, str, str, str], ...] = (
    ("torch", "PyTorch eager fp32", "torch", "fp32"),
    ("ort-fp32", "ORT CPU fp32", "cpu", "fp32"),
    ("ort-int8", "ORT CPU int8 (QDQ)", "cpu", "int8"),
    ("ort-fp16", "ORT CPU fp16 weights", "cpu", "fp16"),
    ("tensorrt", "TensorRT", "tensorrt", "fp16"),
)
#: The backend every other one is compared with (latency ratios, score agreement).
REFERENCE_BACKEND = "ort-fp32"


@dataclass
class BenchSettings:
    """Everything that sets how much is measured; `for_mode` gives the full and ``--quick`` settings."""

    quick: bool = False
    threads: int = 1
    models: tuple[str, ...] = ()
    """Random-weight students to build (keys of `DEFAULT_STUDENTS`; needs torch): the students' cost
    before training. With no models, checkpoints or ONNX files the built-in models are measured."""
    student_params: dict[str, dict[str, Any]] = field(default_factory=lambda: {k: dict(v) for k, v in DEFAULT_STUDENTS.items()})
    checkpoints: tuple[str, ...] = ()
    """Trained student checkpoints (``.pt``); with ``onnx_models``, replace the random students."""
    onnx_models: tuple[str, ...] = ()
    """Exported edgetag models (``X.onnx``; ``X.int8.onnx`` / ``X.fp16.onnx`` beside it are measured too)."""
    # task metric (all None: no evaluation split, the metric column says so)
    eval_manifest: str | None = None
    eval_split: str | None = "test"
    eval_root: str | None = None
    teacher_cache: str | None = None
    teacher_name: str | None = None
    teacher_label_columns: tuple[tuple[str, int], ...] = ()
    """(eval label, teacher output column) pairs: the teacher's column scoring that label."""
    n_bins: int = 64
    n_labels: int = 50
    hop_frames: int = 10
    mic: bool = True
    # front ends
    frontend: bool = True
    frontend_seconds: float = 60.0
    frontend_repeats: int = 5
    # models
    backends: tuple[str, ...] = tuple(b[0] for b in BACKENDS)
    eval_clips: int = 8
    eval_seconds: float = 6.0
    calib_seconds: float = 12.0
    min_calib_windows: int = 100
    warmup_runs: int = 30
    timed_runs: int = 2000
    subprocess_workers: bool = True
    # teachers
    teachers: tuple[str, ...] = ("crepe-full", "crepe-tiny", "musicnn-mtt")
    teacher_seconds: float = 10.0
    crepe_full_seconds: float = 1.0
    teacher_repeats: int = 3
    teacher_macs: bool = True
    # pitch trackers (`pitch_rows`): peers from their own wheels, timed beside edgetag's pitch models
    peers: tuple[str, ...] = ()
    """Keys of `pitch_peers.PEERS` (swift-f0, fcpe, pesto); a missing package gives an explanatory row."""
    peer_repeats: int = 3
    # streaming
    engine_seconds: float = 60.0
    mic_seconds: float = 10.0
    seed: int = 0

    @classmethod
    def for_mode(cls, quick: bool, **overrides: Any) -> BenchSettings:
        base = cls()
        if quick:
            base = replace(base, quick=True, frontend_seconds=10.0, frontend_repeats=3, eval_clips=6,
                           eval_seconds=4.0, timed_runs=300, warmup_runs=20, teachers=("crepe-tiny", "musicnn-mtt"),
                           teacher_seconds=3.0, teacher_repeats=2, peer_repeats=2,
                           engine_seconds=10.0)
        return replace(base, **{k: v for k, v in overrides.items() if v is not None})

