"""``edgetag bench``: one report of latency, cost and accuracy (issue 7).

Run it as ``edgetag bench [--quick] [--out DIR] [--models ...] [--threads N] [--no-mic]
[--checkpoint CKPT ...] [--model X.onnx ...] [--eval MANIFEST [--eval-split test]]
[--config TOML | --teacher-cache DIR --teacher NAME --label-columns L=C,...]``
or call `run_bench` (returns the JSON-able result) and `write_report` from Python.

The task metric (``--eval``): each student × backend file is scored on the labelled split by
`edgetag.training.evaluate.evaluate_model` (the runtime's windows, the evaluator's pooling and
metrics), a teacher from its cached outputs by `evaluate_teacher_cache`; without ``--eval`` there
is none and the report says so (agreement with fp32 is a separate column, never the metric).

It reuses the existing pieces rather than re-measuring them its own way:

1. front ends: `edgetag.benchmarks.frontend.run_frontend_benchmark` (edgetag vs
   kaldi-native-fbank vs librosa vs torch) and its `format_report`;
2. models: each student (``mobilenet`` width 0.5 window 100, ``causal_cnn``,
   ``crnn``; 64 bins; random weights unless ``--checkpoint``/``--model``) is saved as a
   `StudentCheckpoint`, exported with `export_onnx` (parity-verified), then
   `quantize_int8` and `convert_fp16` (their gates run with ``accept_drop``, so
   a drop is reported, not fatal). Each backend -- PyTorch eager
   (`runtime.torch_backend`), ORT fp32 / int8 / fp16 (`runtime.model.load_model`)
   -- is measured in a fresh subprocess (fair peak RSS) on the same feature
   inputs: warm-up calls, then per-hop latency of ``model.run`` (one hop = one
   decision: a window for window students, a chunk of ``hop_frames`` frames with
   the state carried for stateful ones). Teachers: `run_teacher_benchmark`
   for the CPU cost, `count_macs` (operator-level, functional calls included) for MACs;
3. streaming: the `Engine` on a file at full speed (160-sample pushes), checked
   against `offline_decisions`, and ``edgetag listen`` through the PulseAudio
   virtual microphone (`edgetag.benchmarks.virtual_mic`) at real-time pace;
4. what users run today: edgetag's CREPE ports (torchcrepe is not importable
   without torchaudio), the musicnn teacher, librosa and kaldi-native-fbank.

Output (``--out``, default ``./bench-report``): report.md, report.json and PNG plots.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import importlib.util
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

#: Thread pools pinned in the model worker processes (set in their environment before numpy loads).
THREAD_ENV_VARS: tuple[str, ...] = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
#: Students measured by default and their parameters (``window_frames`` of mobilenet is its window).
DEFAULT_STUDENTS: dict[str, dict[str, Any]] = {
    "mobilenet": {"width": 0.5, "window_frames": 100},
    "causal_cnn": {},
    "crnn": {},
}
#: Backends, in table order: (key, label, runtime backend, precision).
BACKENDS: tuple[tuple[str, str, str, str], ...] = (
    ("torch", "PyTorch eager fp32", "torch", "fp32"),
    ("ort-fp32", "ORT CPU fp32", "cpu", "fp32"),
    ("ort-int8", "ORT CPU int8 (QDQ)", "cpu", "int8"),
    ("ort-fp16", "ORT CPU fp16 weights", "cpu", "fp16"),
    ("tensorrt", "TensorRT", "tensorrt", "fp16"),
)
REFERENCE_BACKEND = "ort-fp32"
PACKAGES = ("edgetag", "numpy", "torch", "onnx", "onnxruntime", "onnxscript", "librosa", "kaldi-native-fbank",
            "matplotlib", "soundfile", "sounddevice", "threadpoolctl", "torchcrepe", "torchaudio", "tensorrt")
NOISE_NOTE = ("Timings come from a shared, noisy 2-core machine used by other engineers at the same time: "
              "compare rows of this run (the ratios), not absolute numbers across runs.")


@dataclass
class BenchSettings:
    """Everything that sets how much is measured; `for_mode` gives the full and ``--quick`` settings."""

    quick: bool = False
    threads: int = 1
    models: tuple[str, ...] = tuple(DEFAULT_STUDENTS)
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
                           teacher_seconds=3.0, teacher_repeats=2, engine_seconds=10.0)
        return replace(base, **{k: v for k, v in overrides.items() if v is not None})


# ------------------------------------------------------------------------------ helpers
def spread(values: Sequence[float]) -> dict[str, float]:
    """Median, percentiles (p50/p90/p99/p99.9), quartiles, min and max."""
    a = np.asarray(values, np.float64)
    if not a.size:
        return {}
    p = np.percentile(a, [25, 50, 75, 90, 99, 99.9])
    return {"median": float(p[1]), "q1": float(p[0]), "q3": float(p[2]), "p50": float(p[1]), "p90": float(p[3]),
            "p99": float(p[4]), "p99_9": float(p[5]), "min": float(a.min()), "max": float(a.max()), "n": int(a.size)}


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _import_error(module: str) -> str | None:
    """None when ``module`` imports, else the reason."""
    try:
        importlib.import_module(module)
        return None
    except Exception as exc:  # noqa: BLE001 - any failure means "not usable here"
        return f"{type(exc).__name__}: {exc}"


def machine_info(threads: int) -> dict[str, Any]:
    cpu_model = platform.processor() or None
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as f:
        for line in f:
            if line.lower().startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    return {
        "cpu_model": cpu_model,
        "logical_cores": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "threads": {"model_threads": threads, "torch_set_num_threads": threads, "ort_intra_op": threads,
                    "ort_inter_op": 1, **{v: os.environ.get(v) for v in THREAD_ENV_VARS},
                    "front_end_and_teacher_benchmarks": "1 (pinned by those benchmarks)"},
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "versions": {p: _version(p) for p in PACKAGES},
    }


def eval_signal(seconds: float, sample_rate: int, seed: int) -> np.ndarray:
    """Seeded varied clip: noise of random level, 1-4 random tones with random onsets, random AM."""
    rng = np.random.default_rng(10_000 + seed)
    n = round(seconds * sample_rate)
    t = np.arange(n) / sample_rate
    x = rng.uniform(0.005, 0.1) * rng.standard_normal(n)
    for _ in range(int(rng.integers(1, 5))):
        start, length = rng.uniform(0, seconds * 0.7), rng.uniform(0.3, seconds)
        on = (t >= start) & (t < start + length)
        x[on] += rng.uniform(0.05, 0.3) * np.sin(2 * np.pi * rng.uniform(80, 6000) * t[on])
    x *= 0.6 + 0.4 * np.sin(2 * np.pi * rng.uniform(0.1, 2.0) * t)
    return np.clip(x, -1, 1).astype(np.float32)


def _peak_rss_mb() -> float:
    """Peak resident set of this process, MB: VmHWM (reset by exec, unlike ru_maxrss, which a
    subprocess inherits from its parent through fork + exec on Linux), else ru_maxrss."""
    with contextlib.suppress(OSError, ValueError), open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


# ----------------------------------------------------------------- one backend, one process
def measure_backend(spec: dict[str, Any]) -> dict[str, Any]:
    """Load one model and time ``model.run`` per hop on the given features (see the module docstring).

    ``spec``: ``model_path``, ``backend`` ("torch" or an ORT backend), ``threads``, ``features``
    (an .npz of clips [frames, n_bins]), ``warmup``, ``runs``, ``scores_out`` (.npy path).
    """
    rss_start = _peak_rss_mb()
    threads = int(spec["threads"])
    t0 = time.perf_counter()
    if spec["backend"] == "torch":
        import torch

        torch.set_num_threads(threads)
        with contextlib.suppress(RuntimeError):
            torch.set_num_interop_threads(1)
        from edgetag.runtime.torch_backend import TorchModel

        model = TorchModel(spec["model_path"], threads=threads)
    else:
        from edgetag.runtime.model import load_model

        model = load_model(spec["model_path"], backend=spec["backend"], threads=threads)
    load_s = time.perf_counter() - t0
    rss_loaded = _peak_rss_mb()
    card = model.card
    with np.load(spec["features"]) as data:
        clips = [data[k].astype(np.float32) for k in sorted(data.files)]
    hop = max(1, card.hop_frames)

    def feeds_of(clip: np.ndarray) -> list[np.ndarray]:
        if card.streaming_mode == "window":
            w = card.window_frames
            return [np.ascontiguousarray(clip[None, e - w + 1 : e + 1]) for e in range(w - 1, len(clip), hop)]
        return [np.ascontiguousarray(clip[None, p : p + hop]) for p in range(0, len(clip) - hop + 1, hop)]

    per_clip = [feeds_of(c) for c in clips]
    n_calls = sum(len(f) for f in per_clip)
    if not n_calls:
        raise ValueError("evaluation clips are shorter than one hop/window")

    def one_pass(record: list[int] | None, scores: list[np.ndarray] | None, limit: int | None = None) -> int:
        done = 0
        for feeds in per_clip:
            states = model.initial_state(1)
            for x in feeds:
                if limit is not None and done >= limit:
                    return done
                s0 = time.perf_counter_ns()
                logits, states = model.run(x, states) if card.streaming_mode == "stateful" else model.run(x)
                s1 = time.perf_counter_ns()
                if record is not None:
                    record.append(s1 - s0)
                if scores is not None:
                    last = logits[0] if card.streaming_mode == "window" else logits[0, -1]
                    scores.append(model.scores(last[None])[0])
                done += 1
        return done

    warm = int(spec["warmup"])
    while warm > 0:
        warm -= one_pass(None, None, limit=warm)
    times: list[int] = []
    scores: list[np.ndarray] = []
    gc.collect()
    gc.disable()
    try:
        one_pass(times, scores)  # the first timed pass also gives the scores
        while len(times) < int(spec["runs"]):
            one_pass(times, None, limit=int(spec["runs"]) - len(times))
    finally:
        gc.enable()
    np.save(spec["scores_out"], np.stack(scores).astype(np.float32))
    return {
        "latency_ms": [t / 1e6 for t in times],
        "calls_per_pass": n_calls,
        "load_s": load_s,
        "peak_rss_mb": _peak_rss_mb(),
        "rss_before_load_mb": rss_start,
        "rss_after_load_mb": rss_loaded,
        "hop_seconds": hop * card.frontend.hop_length / card.frontend.sample_rate,
        "streaming_mode": card.streaming_mode,
        "pid": os.getpid(),
    }


def _run_worker(spec: dict[str, Any], in_process: bool, tmp: Path) -> dict[str, Any]:
    if in_process:
        return measure_backend(spec)
    spec_path = tmp / f"spec-{spec['key']}.json"
    out_path = tmp / f"result-{spec['key']}.json"
    spec_path.write_text(json.dumps(spec), encoding="utf-8")
    env = dict(os.environ)
    env.update({v: str(spec["threads"]) for v in THREAD_ENV_VARS})
    proc = subprocess.run([sys.executable, "-m", "edgetag.benchmarks.report", "--worker", str(spec_path), str(out_path)],
                          check=False, env=env, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"worker for {spec['key']} failed: {proc.stderr.strip()[-800:]}")
    return json.loads(out_path.read_text(encoding="utf-8"))


# ------------------------------------------------------------------------- students
def _build_checkpoint(kind: str, settings: BenchSettings):
    import torch
    from edgetag.runtime.frontend import FrontendConfig
    from edgetag.training.checkpoint import StudentCheckpoint
    from edgetag.training.students import build_student

    params = dict(settings.student_params.get(kind, {}))
    torch.manual_seed(settings.seed)
    student = build_student(kind, settings.n_bins, settings.n_labels, **params).eval()
    # window students: their window; stateful students get one hop of frames per call
    window = int(student.window_frames) if student.streaming_mode == "window" else settings.hop_frames
    frontend = FrontendConfig.preset("default")
    if frontend.n_bins != settings.n_bins:
        frontend = FrontendConfig.from_dict({**frontend.to_dict(), "n_bins": settings.n_bins})
    return StudentCheckpoint(
        student=student, kind=kind, params=params, frontend=frontend, task="multi_label",
        labels=[f"label_{i:02d}" for i in range(settings.n_labels)], thresholds=[0.5] * settings.n_labels,
        window_frames=window, hop_frames=settings.hop_frames,
        provenance={"weights": f"random (torch.manual_seed({settings.seed})), built by edgetag bench"},
    )


def _agreement(scores: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """ROC-AUC (and Pearson) of ``scores`` against the fp32 model's decisions.

    Random-weight students put most scores on one side of 0.5, so the fp32 decisions are taken at each
    label's median fp32 score (both classes present for every label).
    """
    from edgetag.training.metrics import agreement

    n = min(len(scores), len(reference))
    thresholds = np.median(reference[:n], axis=0)
    a = agreement(scores[:n], reference[:n], threshold=thresholds)
    return {"roc_auc": a["roc_auc"], "pearson": a["pearson"], "top1": a["top1"], "n_decisions": n,
            "max_abs_score_diff": float(np.max(np.abs(scores[:n] - reference[:n])))}


def _display_name(path: str, kind: str) -> str:
    """``kind run-folder`` for a trainer's ``run/student.pt``, else ``kind file-stem``: tells checkpoints apart."""
    p = Path(path)
    stem = p.parent.name if p.stem == "student" and p.parent.name else p.stem
    return f"{kind} {stem}"


def onnx_sibling(path: str | Path, precision: str) -> Path:
    """``X.onnx`` -> ``X.int8.onnx`` / ``X.fp16.onnx`` (the names `edgetag export` writes)."""
    p = Path(path)
    return p.with_name(f"{p.name[: -len('.onnx')] if p.name.endswith('.onnx') else p.stem}.{precision}.onnx")


@dataclass
class ModelSource:
    """One student to measure: a checkpoint (random or trained) or an exported ONNX file."""

    name: str
    kind: str
    ckpt: Any = None
    onnx: str | None = None
    card: Any = None
    """The ONNX file's model card (ONNX sources)."""

    @property
    def labels(self) -> list[str]:
        return list(self.ckpt.labels if self.ckpt is not None else self.card.labels)

    @property
    def frontend(self) -> Any:
        return self.ckpt.frontend if self.ckpt is not None else self.card.frontend


def model_sources(settings: BenchSettings) -> tuple[list[ModelSource], str]:
    """The students of this run and the weights note; random students when no checkpoint or model is given."""
    from edgetag.runtime.model import load_model
    from edgetag.training.checkpoint import load_checkpoint

    sources: list[ModelSource] = []
    for path in settings.checkpoints:
        if not Path(path).is_file():
            raise FileNotFoundError(f"--checkpoint {path}: no such file")
        ckpt = load_checkpoint(path)
        sources.append(ModelSource(_display_name(path, ckpt.kind), ckpt.kind, ckpt=ckpt))
    from edgetag.runtime.models import resolve_model

    for spec in settings.onnx_models:
        path = resolve_model(spec)  # a file, or a built-in model's name (music-tags, pitch, ...)
        card = load_model(path).card
        export = card.provenance.get("export")
        kind = str(export.get("student_kind", card.streaming_mode) if isinstance(export, dict) else card.streaming_mode)
        sources.append(ModelSource(_display_name(path, "onnx"), kind, onnx=str(path), card=card))
    names = [s.name for s in sources]
    for i, src in enumerate(sources):  # two runs with the same folder name: number them
        if names.count(src.name) > 1:
            src.name = f"{src.name} #{i + 1}"
    if sources:
        given = [*settings.checkpoints, *settings.onnx_models]
        note = "trained model(s) " + ", ".join(given)
        note += ("; task metric on the evaluation split" if settings.eval_manifest else
                 "; no --eval manifest, so no task metric (agreement with fp32 is shown separately)")
        return sources, note
    if settings.eval_manifest:
        raise ValueError("--eval scores trained students: pass --checkpoint CKPT and/or --model X.onnx "
                         "(random-weight students have no task to be measured on)")
    return ([ModelSource(kind, kind, ckpt=_build_checkpoint(kind, settings)) for kind in settings.models],
            "random weights (no trained checkpoint given): no task metric; agreement with fp32 is shown separately")


def _calibration_features(src: ModelSource, settings: BenchSettings,
                          eval_data: EvalData | None) -> tuple[list[np.ndarray], str]:
    """int8 calibration features and where they come from.

    With ``--eval``: real clips of the manifest's *other* splits (never the evaluation split, which
    would leak it into the quantiser), enough for ``min_calib_windows`` model inputs. Otherwise (or
    when those are too few) one seeded synthetic signal long enough for that many windows: a trained
    window student of 3 s windows needs ~150 s, where the default ``calib_seconds`` gives 7 windows.
    """
    from edgetag.runtime.frontend import compute_features

    fe = src.frontend
    window = int(src.ckpt.window_frames if src.ckpt is not None else src.card.window_frames)
    hop = max(1, int(src.ckpt.hop_frames if src.ckpt is not None else src.card.hop_frames))
    if eval_data is not None:
        from edgetag.training.data import iter_audio

        others = [e for e in eval_data.manifest.entries if e.split != settings.eval_split]
        feats, n_windows, used = [], 0, set()
        if settings.eval_split is not None and others:
            subset = replace(eval_data.manifest, entries=others[: 4 * settings.min_calib_windows])
            for entry, audio in iter_audio(subset, fe.sample_rate, log_summary=False):
                f = compute_features(audio, fe)
                feats.append(f)
                used.add(entry.split)
                n_windows += max(0, (len(f) - window) // hop + 1)
                if n_windows >= 2 * settings.min_calib_windows:
                    break
        if n_windows >= settings.min_calib_windows:
            return feats, (f"{len(feats)} clips of split(s) {', '.join(sorted(used))} of the --eval manifest "
                           "(not the eval split)")
    frames = window + (settings.min_calib_windows - 1) * hop
    seconds = max(settings.calib_seconds, (frames * fe.hop_length + fe.win_length) / fe.sample_rate + 0.1)
    return ([compute_features(eval_signal(seconds, fe.sample_rate, settings.seed + 1000), fe)],
            f"seeded synthetic signal, {seconds:.1f} s")


def _primary_metric(task: str) -> str:
    """The task metric the report leads with: mAP for multi-label tagging, accuracy for multi-class."""
    return "accuracy" if task == "multi_class" else "map"


def _check_eval_labels(sources: Sequence[ModelSource], manifest_labels: Sequence[str]) -> dict[str, list[str]]:
    """Refuse a student whose labels share nothing with the evaluation manifest; return the partial misses."""
    partial = {}
    for src in sources:
        missing = [name for name in src.labels if name not in manifest_labels]
        if len(missing) == len(src.labels):
            raise ValueError(f"{src.name}: none of its labels ({', '.join(src.labels[:8])}"
                             f"{' ...' if len(src.labels) > 8 else ''}) is in the evaluation manifest "
                             f"({', '.join(list(manifest_labels)[:8]) or 'no labels'}): wrong --eval for this model?")
        if missing:
            partial[src.name] = missing
    return partial


class EvalData:
    """The evaluation split's features, computed once per front-end configuration."""

    def __init__(self, settings: BenchSettings) -> None:
        from edgetag.training.data import load_manifest

        self.settings = settings
        self.manifest = load_manifest(settings.eval_manifest, root=settings.eval_root)
        split = settings.eval_split
        if split is not None and split not in self.manifest.splits():
            raise ValueError(f"--eval {settings.eval_manifest}: no split {split!r} "
                             f"(splits: {', '.join(sorted(self.manifest.splits())) or 'none'})")
        chosen = self.manifest.select(split) if split is not None else self.manifest
        if not any(e.positives for e in chosen.entries):  # checked now, not after minutes of timing
            raise ValueError(f"--eval {settings.eval_manifest}: split {split or 'all'!r} has no labels; "
                             "a task metric needs a labelled split")
        self._clips: dict[str, Any] = {}

    def clips(self, frontend: Any) -> Any:
        from edgetag.training.evaluate import load_eval_clips

        key = json.dumps(frontend.to_dict(), sort_keys=True)
        if key not in self._clips:
            self._clips[key] = load_eval_clips(self.manifest, frontend, split=self.settings.eval_split)
        return self._clips[key]


def _task_metric(evaluation: Any) -> dict[str, Any]:
    """The JSON row entry of one `Evaluation`: its ``labels`` metrics plus how many clips were scored."""
    d = evaluation.to_dict()
    return {**d["metrics"]["labels"], "evaluated": d["info"].get("evaluated"), "split": d["info"].get("split"),
            **({"teacher_missing": d["info"]["teacher_missing"]} if "teacher_missing" in d["info"] else {})}


def bench_students(settings: BenchSettings, work: Path, say: Callable[[str], None],
                   eval_data: EvalData | None = None) -> dict[str, Any]:
    import torch
    from edgetag.export.onnx_export import export_onnx
    from edgetag.export.quantize import convert_fp16, quantize_int8
    from edgetag.runtime.frontend import compute_features
    from edgetag.training.checkpoint import save_checkpoint
    from edgetag.training.students import count_parameters, macs_per_second

    torch.set_num_threads(settings.threads)
    trt_reason = _import_error("tensorrt")
    if trt_reason is None:
        import onnxruntime

        if "TensorrtExecutionProvider" not in onnxruntime.get_available_providers():
            trt_reason = "onnxruntime has no TensorrtExecutionProvider"
    sources, weights_note = model_sources(settings)
    partial_labels = _check_eval_labels(sources, eval_data.manifest.labels) if eval_data is not None else {}
    students = []
    for n_src, src in enumerate(sources):
        kind, name = src.kind, src.name
        folder = work / f"{n_src:02d}-{kind}"
        folder.mkdir(parents=True, exist_ok=True)
        fe = src.frontend
        rate = fe.sample_rate
        # synthetic clips for timing (every backend gets the same inputs); the task metric uses --eval
        eval_feats = [compute_features(eval_signal(settings.eval_seconds, rate, settings.seed + i), fe)
                      for i in range(settings.eval_clips)]
        calib_feats, calib_note = _calibration_features(src, settings, eval_data)
        feats_path = folder / "eval_features.npz"
        np.savez(feats_path, **{f"clip{i:03d}": f for i, f in enumerate(eval_feats)})
        frame_rate = fe.sample_rate / fe.hop_length
        if src.ckpt is not None:
            ckpt = src.ckpt
            info: dict[str, Any] = {
                "student": name, "kind": kind, "params": count_parameters(ckpt.student), "student_params": ckpt.params,
                "macs_per_second": macs_per_second(ckpt.student, frame_rate, ckpt.hop_frames),
                "streaming_mode": ckpt.student.streaming_mode, "window_frames": ckpt.window_frames,
                "hop_frames": ckpt.hop_frames, "task": ckpt.task,
            }
        else:
            card = src.card
            info = {"student": name, "kind": kind, "params": card.parameters or None, "student_params": {},
                    "macs_per_second": card.macs_per_second or None, "streaming_mode": card.streaming_mode,
                    "window_frames": card.window_frames, "hop_frames": card.hop_frames, "task": card.task,
                    "source": src.onnx}
        info.update({"decision_interval_ms": 1e3 * info["hop_frames"] / frame_rate, "weights": weights_note,
                     "files": {}, "gates": {}, "rows": []})
        info["int8_calibration"] = calib_note
        if name in partial_labels:
            info["labels_not_in_eval_manifest"] = partial_labels[name]
        t0 = time.perf_counter()
        if src.ckpt is None:
            # an exported model: measure the files as given; int8/fp16 only when their siblings exist
            info["files"] = {"ort-fp32": src.onnx}
            for key, precision in (("ort-int8", "int8"), ("ort-fp16", "fp16")):
                sib = onnx_sibling(src.onnx, precision)
                if sib.is_file():
                    info["files"][key] = str(sib)
                else:
                    info["gates"][key] = {"error": f"no {sib.name} next to {Path(src.onnx).name}", "missing_file": True}
            info["gates"]["torch"] = {"error": "an ONNX model was given, not a checkpoint", "missing_file": True}
            students.append(_measure_rows(info, settings, work, folder, feats_path, trt_reason, eval_data, say))
            continue
        ckpt_path = save_checkpoint(ckpt, folder / f"{kind}.pt")
        say(f"{name}: exporting to ONNX (parity-checked), int8 and fp16")
        export = export_onnx(ckpt, folder / f"{kind}.onnx", calibration_features=calib_feats, name=f"bench-{kind}")
        info["files"] = {"torch": str(ckpt_path), "ort-fp32": str(export.path)}
        info["export_parity_max_abs"] = max(export.parity.batched_max_abs, export.parity.single_max_abs)
        for key, fn in (("ort-int8", "int8"), ("ort-fp16", "fp16")):
            if key not in settings.backends:
                continue
            out = folder / f"{kind}.{fn}.onnx"
            try:
                if fn == "int8":
                    rep = quantize_int8(export.path, out, calib_feats, eval_feats, accept_drop=True,
                                        min_windows=settings.min_calib_windows)
                else:
                    rep = convert_fp16(export.path, out, eval_feats, accept_drop=True)
                info["files"][key] = str(out)
                info["gates"][key] = {"metric": rep.metric_name, "fp32": rep.fp32_metric, "value": rep.metric,
                                      "relative_drop": rep.relative_drop, "accepted_beyond_gate": rep.accepted_drop,
                                      "sqnr_db_logits": rep.sqnr_db.get("logits")}
            except Exception as exc:  # noqa: BLE001 - one failed conversion is a row, not a failed run
                info["gates"][key] = {"error": f"{type(exc).__name__}: {exc}"}
        info["export_seconds"] = time.perf_counter() - t0
        students.append(_measure_rows(info, settings, work, folder, feats_path, trt_reason, eval_data, say))
    return {"students": students, "weights": weights_note, "tensorrt": trt_reason or "available",
            "eval": eval_data.settings.eval_manifest if eval_data is not None else None}


def _load_for_eval(key: str, backend: str, path: str, threads: int) -> Any:
    if key == "torch":
        from edgetag.runtime.torch_backend import TorchModel

        return TorchModel(path, threads=threads)
    from edgetag.runtime.model import load_model

    return load_model(path, backend=backend, threads=threads)


def _measure_rows(info: dict[str, Any], settings: BenchSettings, work: Path, folder: Path, feats_path: Path,
                  trt_reason: str | None, eval_data: EvalData | None, say: Callable[[str], None]) -> dict[str, Any]:
    """Time every backend of one student (a worker each), then its task metric and agreement with fp32."""
    from edgetag.training.evaluate import evaluate_model

    name = info["student"]
    results: dict[str, dict[str, Any]] = {}
    for key, label, backend, precision in BACKENDS:
        if key not in settings.backends:
            continue
        row: dict[str, Any] = {"student": name, "backend": key, "label": label, "precision": precision}
        if key == "tensorrt":
            row["status"] = f"not available ({trt_reason or 'no TensorRT engine built by this benchmark'})"
            info["rows"].append(row)
            continue
        path = info["files"].get(key)
        if path is None:
            row["status"] = f"not available ({info['gates'].get(key, {}).get('error', 'not built')})"
            info["rows"].append(row)
            continue
        say(f"{name} / {label}: timing in a {'fresh subprocess' if settings.subprocess_workers else 'this process'}")
        spec = {"key": f"{folder.name}-{key}", "model_path": path, "backend": backend, "threads": settings.threads,
                "features": str(feats_path), "warmup": settings.warmup_runs, "runs": settings.timed_runs,
                "scores_out": str(folder / f"scores-{key}.npy")}
        try:
            res = _run_worker(spec, not settings.subprocess_workers, work)
        except Exception as exc:  # noqa: BLE001
            row["status"] = f"failed: {exc}"
            info["rows"].append(row)
            continue
        lat = spread(res["latency_ms"])
        row.update({
            "status": "ok", "file": path, "file_bytes": Path(path).stat().st_size,
            "latency_ms": lat, "latency_ms_runs": res["latency_ms"], "hop_seconds": res["hop_seconds"],
            "rtf": lat["median"] / 1e3 / res["hop_seconds"],
            "x_real_time": res["hop_seconds"] / (lat["median"] / 1e3),
            "peak_rss_mb": res["peak_rss_mb"], "rss_before_load_mb": res["rss_before_load_mb"],
            "load_s": res["load_s"], "subprocess": settings.subprocess_workers,
            "calls_per_pass": res["calls_per_pass"],
        })
        results[key] = np.load(spec["scores_out"])
        if eval_data is not None:
            say(f"{name} / {label}: task metric on the evaluation split")
            try:
                model = _load_for_eval(key, backend, path, settings.threads)
                clips = eval_data.clips(model.card.frontend)
                row["task_metric"] = _task_metric(evaluate_model(model, clips))
                row["task_metric"]["primary"] = _primary_metric(info["task"])
                del model
            except ValueError as exc:  # bad labels etc.: say so in the row, keep measuring
                row["task_metric"] = {"error": str(exc)}
        info["rows"].append(row)
    ref_rows = {r["backend"]: r for r in info["rows"]}
    ref = ref_rows.get(REFERENCE_BACKEND)
    for row in info["rows"]:
        if row.get("status") != "ok":
            continue
        if ref is not None and ref.get("status") == "ok":
            row["ratio_to_ort_fp32"] = row["latency_ms"]["median"] / ref["latency_ms"]["median"]
            row["ratio_p99_to_ort_fp32"] = row["latency_ms"]["p99"] / ref["latency_ms"]["p99"]
        if REFERENCE_BACKEND in results:
            row["agreement_vs_fp32"] = _agreement(results[row["backend"]], results[REFERENCE_BACKEND])
        row["agreement_name"] = "agreement with ORT fp32: ROC-AUC of scores vs fp32 decisions at per-label median"
    gc.collect()
    return info


# ------------------------------------------------------------------------- teachers
def bench_teachers(settings: BenchSettings, say: Callable[[str], None]) -> dict[str, Any]:
    from edgetag.benchmarks import teachers as tb

    result = tb.run_teacher_benchmark(list(settings.teachers), seconds=settings.teacher_seconds,
                                      crepe_full_seconds=settings.crepe_full_seconds,
                                      repeats=settings.teacher_repeats, warmup=1, seed=settings.seed, log=say)
    if settings.teacher_macs:
        from edgetag.training.students import count_macs

        with tempfile.TemporaryDirectory(prefix="edgetag-bench-teacher-") as tmp:
            for row in result["rows"]:
                if row.get("status") != "ok":
                    continue
                try:
                    teacher, _ = tb._build(row["teacher"], Path(tmp), None)
                    teacher.eval()
                    seconds = tb._input_seconds(teacher, 1.0)
                    wave = tb.bench_signal(seconds, teacher.sample_rate, settings.seed)
                    audio_s = wave.shape[1] / teacher.sample_rate
                    row["macs_per_second"] = count_macs(teacher, wave) / audio_s
                    row["macs_note"] = f"count_macs (torch FlopCounterMode / 2) on {audio_s:.2f} s"
                    del teacher
                except Exception as exc:  # noqa: BLE001
                    row["macs_per_second"] = None
                    row["macs_note"] = f"n/a ({type(exc).__name__}: {exc})"
                gc.collect()
    result["format_report"] = tb.format_report(result)
    result["torchcrepe"] = _import_error("torchcrepe") or "importable"
    return result


def teacher_task_metric(settings: BenchSettings, eval_data: EvalData | None, teachers: dict[str, Any] | None,
                        say: Callable[[str], None]) -> dict[str, Any]:
    """The teacher's task metric on the students' split, from its cached outputs (`evaluate_teacher_cache`).

    The teacher is not run again: ``edgetag teach`` already scored these manifest entries, and
    ``teacher_label_columns`` says which of its outputs scores which eval label. The result is
    also attached to the teacher's timed row (same name), which gives it MACs for the plot.
    """
    from edgetag.runtime.frontend import FrontendConfig
    from edgetag.training.evaluate import evaluate_teacher_cache

    name = settings.teacher_name
    if eval_data is None:
        return {"teacher": name, "status": "no --eval manifest: no task metric"}
    if not settings.teacher_label_columns:
        raise ValueError("a teacher task metric needs the label -> teacher column map (--label-columns or --config)")
    labels = [lab for lab, _ in settings.teacher_label_columns]
    missing = [lab for lab in labels if lab not in eval_data.manifest.labels]
    if missing:
        raise ValueError(f"--label-columns names labels the evaluation manifest does not have: {', '.join(missing)}")
    say(f"teacher {name}: task metric from the cache {settings.teacher_cache}")
    # only entries are used (no features): the default front end's clips are shared with the students
    clips = eval_data.clips(FrontendConfig.preset("default"))
    ev = evaluate_teacher_cache(settings.teacher_cache, name, clips, labels,
                                [col for _, col in settings.teacher_label_columns])
    out = {"teacher": name, "status": "ok", "identity": ev.info["teacher"], "cache": settings.teacher_cache,
           "label_columns": dict(settings.teacher_label_columns),
           "task_metric": {**_task_metric(ev), "primary": "map"}}
    for row in (teachers or {}).get("rows", []):
        if row.get("teacher") == name:
            row["task_metric"] = out["task_metric"]
    return out


# ------------------------------------------------------------------------- streaming
def bench_engine(model_path: str, threads: int, seconds: float, seed: int) -> dict[str, Any]:
    """The Engine on a file-like signal at full speed, 160-sample pushes; per-decision latency."""
    from edgetag.runtime.engine import Engine, offline_decisions
    from edgetag.runtime.model import load_model

    model = load_model(model_path, threads=threads)
    rate = model.card.frontend.sample_rate
    signal = eval_signal(seconds, rate, seed + 500)
    push = model.card.frontend.hop_length
    engine = Engine(model)
    for i in range(0, min(len(signal), 2 * rate), push):  # warm-up: 2 s, then reset
        engine.push(signal[i : i + push])
    engine.reset()
    lat, decisions = [], []
    gc.collect()
    gc.disable()
    t0 = time.perf_counter()
    try:
        for i in range(0, len(signal), push):
            s0 = time.perf_counter_ns()
            got = engine.push(signal[i : i + push])
            s1 = time.perf_counter_ns()
            if got:
                lat.append((s1 - s0) / 1e6)
                decisions.extend(got)
    finally:
        gc.enable()
    wall = time.perf_counter() - t0
    ref = offline_decisions(model, signal)
    n = min(len(ref), len(decisions))
    diff = float(max((np.max(np.abs(a.scores - b.scores)) for a, b in zip(decisions[:n], ref[:n])), default=float("nan")))
    return {"model": Path(model_path).name, "audio_seconds": len(signal) / rate, "push_samples": push,
            "decisions": len(decisions), "wall_seconds": wall, "decisions_per_second": len(decisions) / wall,
            "x_real_time": len(signal) / rate / wall, "latency_ms": spread(lat),
            "latency_ms_runs": lat, "max_abs_diff_vs_offline": diff, "offline_decisions": len(ref)}


def bench_mic(model_path: str, threads: int, seconds: float, seed: int, work: Path) -> dict[str, Any]:
    """``edgetag listen`` on the PulseAudio virtual microphone while a WAV plays into it."""
    from edgetag.benchmarks.virtual_mic import (
        VirtualMic,
        VirtualMicUnavailable,
        missing_tools,
    )

    missing = missing_tools()
    if missing:
        return {"status": f"skipped: {', '.join(missing)} not installed"}
    reason = _import_error("sounddevice") or _import_error("soundfile")
    if reason:
        return {"status": f"skipped: {reason}"}
    import soundfile as sf

    wav = work / "mic-input.wav"
    sf.write(str(wav), eval_signal(seconds + 1.0, 16000, seed + 700), 16000, subtype="PCM_16")
    try:
        mic = VirtualMic().start()
    except VirtualMicUnavailable as exc:
        return {"status": f"skipped: virtual microphone unavailable: {exc}"}
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "edgetag.runtime.cli", "listen", "--model", model_path, "--device", "pulse",
             "--format", "jsonl", "--duration", f"{seconds:g}", "--threads", str(threads)],
            env=mic.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            first = proc.stderr.readline()
            if "listening on" not in first:
                proc.kill()
                out, err = proc.communicate(timeout=30)
                return {"status": f"failed: {first.strip()} {err.strip()[-400:]}"}
            player = mic.play(wav)
            out, err = proc.communicate(timeout=seconds + 60)
            with contextlib.suppress(subprocess.TimeoutExpired):
                player.wait(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    finally:
        mic.stop()
    stats_line = next((line for line in err.splitlines() if " stats " in line), None)
    stats = json.loads(stats_line.split(" stats ", 1)[1]) if stats_line else {}
    lat = [o["latency_ms"] for o in map(json.loads, filter(str.strip, out.splitlines())) if "latency_ms" in o]
    return {"status": "ok" if proc.returncode == 0 else f"failed (exit {proc.returncode})",
            "model": Path(model_path).name, "seconds": seconds, "capture_to_decision_ms": spread(lat),
            "capture_to_decision_ms_runs": lat, "stats": stats,
            "drops": {k: stats.get(k) for k in ("overflows", "dropped_samples", "nonfinite_samples")}}


# ------------------------------------------------------------------------------ run
def run_bench(out_dir: str | Path, settings: BenchSettings | None = None,
              log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Measure everything `settings` asks for, write the report into ``out_dir`` and return the result."""
    settings = settings or BenchSettings.for_mode(quick=False)
    say = log or (lambda _m: None)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    wall0 = time.perf_counter()
    result: dict[str, Any] = {"benchmark": "edgetag bench", "settings": asdict(settings),
                              "machine": machine_info(settings.threads), "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                              "notes": [NOISE_NOTE], "sections_seconds": {}}
    missing: list[str] = []
    if settings.teacher_name and settings.teachers and settings.teacher_name not in settings.teachers:
        settings = replace(settings, teachers=(*settings.teachers, settings.teacher_name))  # timed too: MACs for the plot
        result["settings"] = asdict(settings)
    with tempfile.TemporaryDirectory(prefix="edgetag-bench-") as tmp_name:
        work = Path(tmp_name)
        if settings.frontend:
            t0 = time.perf_counter()
            say("front ends: run_frontend_benchmark")
            from edgetag.benchmarks.frontend import (
                format_report,
                run_frontend_benchmark,
            )

            fe = run_frontend_benchmark(seconds=settings.frontend_seconds, repeats=settings.frontend_repeats,
                                        warmup=1, seed=settings.seed, progress=say)
            fe["format_report"] = format_report(fe)
            result["frontend"] = fe
            result["sections_seconds"]["frontend"] = time.perf_counter() - t0
        eval_data = None
        if settings.eval_manifest:
            eval_data = EvalData(settings)  # read first: a bad manifest fails before minutes of timing
            result["eval"] = {"manifest": settings.eval_manifest, "split": settings.eval_split,
                              "entries": len(eval_data.manifest.select(settings.eval_split))
                              if settings.eval_split else len(eval_data.manifest),
                              "labels": list(eval_data.manifest.labels)}
        if settings.models or settings.checkpoints or settings.onnx_models:
            t0 = time.perf_counter()
            result["models"] = bench_students(settings, work, say, eval_data)
            result["sections_seconds"]["models"] = time.perf_counter() - t0
            for info in result["models"]["students"]:
                for f in info["files"].values():
                    dest = out_dir / "models" / Path(f).name
                    dest.parent.mkdir(exist_ok=True)
                    with contextlib.suppress(OSError):
                        shutil.copyfile(f, dest)
        if settings.teachers:
            t0 = time.perf_counter()
            try:
                result["teachers"] = bench_teachers(settings, say)
            except Exception as exc:  # noqa: BLE001
                result["teachers"] = {"error": f"{type(exc).__name__}: {exc}", "rows": []}
                missing.append(f"teachers: {exc}")
            result["sections_seconds"]["teachers"] = time.perf_counter() - t0
        if settings.teacher_cache and settings.teacher_name:
            t0 = time.perf_counter()
            result["teacher_metric"] = teacher_task_metric(settings, eval_data, result.get("teachers"), say)
            result["sections_seconds"]["teacher metric"] = time.perf_counter() - t0
        students = result.get("models", {}).get("students", [])
        t0 = time.perf_counter()
        result["engine"] = []
        for info in students:
            path = info["files"].get("ort-fp32")
            if path:
                say(f"streaming: Engine on {settings.engine_seconds:g} s at full speed ({info['student']} fp32)")
                result["engine"].append({"student": info["student"],
                                         **bench_engine(path, settings.threads, settings.engine_seconds, settings.seed)})
        result["sections_seconds"]["engine"] = time.perf_counter() - t0
        if settings.mic and students and students[0]["files"].get("ort-fp32"):
            t0 = time.perf_counter()
            say(f"streaming: virtual microphone, {settings.mic_seconds:g} s at real-time pace")
            try:
                result["mic"] = {"student": students[0]["student"],
                                 **bench_mic(students[0]["files"]["ort-fp32"], settings.threads,
                                             settings.mic_seconds, settings.seed, work)}
            except Exception as exc:  # noqa: BLE001
                result["mic"] = {"status": f"failed: {type(exc).__name__}: {exc}"}
            result["sections_seconds"]["mic"] = time.perf_counter() - t0
        elif not settings.mic:
            result["mic"] = {"status": "skipped (--no-mic)"}
    result["machine"]["load_average_after"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    result["missing"] = missing
    result["wall_seconds"] = time.perf_counter() - wall0
    from edgetag.benchmarks import report_format

    report_format.write_report(result, out_dir)
    return result


# ---------------------------------------------------------------------------- main
def _worker_main(spec_path: str, out_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    res = measure_backend(spec)
    Path(out_path).write_text(json.dumps(res), encoding="utf-8")
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--worker":
        sys.exit(_worker_main(sys.argv[2], sys.argv[3]))
    from edgetag.benchmarks.commands import main

    sys.exit(main(sys.argv[1:]))
