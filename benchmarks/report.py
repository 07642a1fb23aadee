"""``edgetag bench``: one report of latency, cost and accuracy (issue 7).

Run it as ``edgetag bench [--quick] [--out DIR] [--models ...] [--threads N] [--no-mic]``
or call `run_bench` (returns the JSON-able result) and `write_report` from Python.

It reuses the existing pieces rather than re-measuring them its own way:

1. front ends: `edgetag.benchmarks.frontend.run_frontend_benchmark` (edgetag vs
   kaldi-native-fbank vs librosa vs torch) and its `format_report`;
2. models: each student (``mobilenet`` width 0.5 window 100, ``causal_cnn``,
   ``crnn``; 64 bins; random weights unless ``--checkpoint``) is saved as a
   `StudentCheckpoint`, exported with `export_onnx` (parity-verified), then
   `quantize_int8` and `convert_fp16` (their gates run with ``accept_drop``, so
   a drop is reported, not fatal). Each backend -- PyTorch eager
   (`runtime.torch_backend`), ORT fp32 / int8 / fp16 (`runtime.model.load_model`)
   -- is measured in a fresh subprocess (fair peak RSS) on the same feature
   inputs: warm-up calls, then per-hop latency of ``model.run`` (one hop = one
   decision: a window for window students, a chunk of ``hop_frames`` frames with
   the state carried for stateful ones). Teachers: `run_teacher_benchmark`
   for the CPU cost, `count_macs` hooks on the teacher modules for MACs;
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
    checkpoint: str | None = None
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


def bench_students(settings: BenchSettings, work: Path, say: Callable[[str], None]) -> dict[str, Any]:
    import torch
    from edgetag.export.onnx_export import export_onnx
    from edgetag.export.quantize import convert_fp16, quantize_int8
    from edgetag.runtime.frontend import compute_features
    from edgetag.training.checkpoint import load_checkpoint, save_checkpoint
    from edgetag.training.students import count_parameters, macs_per_second

    torch.set_num_threads(settings.threads)
    trt_reason = _import_error("tensorrt")
    if trt_reason is None:
        import onnxruntime

        if "TensorrtExecutionProvider" not in onnxruntime.get_available_providers():
            trt_reason = "onnxruntime has no TensorrtExecutionProvider"
    if settings.checkpoint:
        ckpts = [load_checkpoint(settings.checkpoint)]
        weights_note = (f"trained checkpoint {settings.checkpoint} (bench prepares no labelled split: the accuracy "
                        "column is agreement with fp32; the task metric comes from the evaluation command)")
    else:
        ckpts = [_build_checkpoint(kind, settings) for kind in settings.models]
        weights_note = "random weights (no trained checkpoint given): the task metric is replaced by agreement with fp32"
    students = []
    for ckpt in ckpts:
        kind = ckpt.kind
        folder = work / kind
        folder.mkdir(parents=True, exist_ok=True)
        rate = ckpt.frontend.sample_rate
        eval_feats = [compute_features(eval_signal(settings.eval_seconds, rate, settings.seed + i), ckpt.frontend)
                      for i in range(settings.eval_clips)]
        calib_feats = [compute_features(eval_signal(settings.calib_seconds, rate, settings.seed + 1000), ckpt.frontend)]
        feats_path = folder / "eval_features.npz"
        np.savez(feats_path, **{f"clip{i:03d}": f for i, f in enumerate(eval_feats)})
        ckpt_path = save_checkpoint(ckpt, folder / f"{kind}.pt")
        frame_rate = ckpt.frontend.sample_rate / ckpt.frontend.hop_length
        info: dict[str, Any] = {
            "student": kind, "params": count_parameters(ckpt.student), "student_params": ckpt.params,
            "macs_per_second": macs_per_second(ckpt.student, frame_rate, ckpt.hop_frames),
            "streaming_mode": ckpt.student.streaming_mode, "window_frames": ckpt.window_frames,
            "hop_frames": ckpt.hop_frames, "decision_interval_ms": 1e3 * ckpt.hop_frames / frame_rate,
            "weights": weights_note, "files": {}, "gates": {}, "rows": [],
        }
        say(f"{kind}: exporting to ONNX (parity-checked), int8 and fp16")
        t0 = time.perf_counter()
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
        results: dict[str, dict[str, Any]] = {}
        for key, label, backend, precision in BACKENDS:
            if key not in settings.backends:
                continue
            row: dict[str, Any] = {"student": kind, "backend": key, "label": label, "precision": precision}
            if key == "tensorrt":
                row["status"] = f"not available ({trt_reason or 'no TensorRT engine built by this benchmark'})"
                info["rows"].append(row)
                continue
            path = info["files"].get(key)
            if path is None:
                row["status"] = f"not available ({info['gates'].get(key, {}).get('error', 'not built')})"
                info["rows"].append(row)
                continue
            say(f"{kind} / {label}: timing in a {'fresh subprocess' if settings.subprocess_workers else 'this process'}")
            spec = {"key": f"{kind}-{key}", "model_path": path, "backend": backend, "threads": settings.threads,
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
            row["metric_name"] = "agreement with ORT fp32: ROC-AUC of scores vs fp32 decisions at per-label median"
        students.append(info)
        gc.collect()
    return {"students": students, "weights": weights_note, "tensorrt": trt_reason or "available"}


# ------------------------------------------------------------------------- teachers
def bench_teachers(settings: BenchSettings, say: Callable[[str], None]) -> dict[str, Any]:
    from edgetag.benchmarks import teachers as tb

    result = tb.run_teacher_benchmark(list(settings.teachers), seconds=settings.teacher_seconds,
                                      crepe_full_seconds=settings.crepe_full_seconds,
                                      repeats=settings.teacher_repeats, warmup=1, seed=settings.seed, log=say)
    if settings.teacher_macs:
        import torch
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
                    with torch.inference_mode():
                        hooked = count_macs(teacher, wave)
                    row["macs_per_second_hooks"] = hooked / audio_s
                    # The hooks only see nn.Conv/Linear/GRU module calls; a teacher that runs its weights through
                    # functional ops (edgetag's CREPE port runs F.conv1d) is undercounted, so the table uses
                    # torch's FlopCounterMode (aten conv/matmul FLOPs / 2), which sees every call.
                    try:
                        from torch.utils.flop_counter import FlopCounterMode

                        with torch.inference_mode(), FlopCounterMode(display=False) as counter:
                            teacher(wave)
                        row["macs_per_second"] = counter.get_total_flops() / 2 / audio_s
                        row["macs_note"] = (f"torch FlopCounterMode / 2 on {audio_s:.2f} s "
                                            f"(count_macs hooks: {hooked / audio_s / 1e6:.3g} M/s)")
                    except Exception:  # noqa: BLE001 - fall back to the hooks
                        row["macs_per_second"] = hooked / audio_s
                        row["macs_note"] = f"count_macs hooks (conv/linear/GRU modules) on {audio_s:.2f} s"
                    del teacher
                except Exception as exc:  # noqa: BLE001
                    row["macs_per_second"] = None
                    row["macs_note"] = f"n/a ({type(exc).__name__}: {exc})"
                gc.collect()
    result["format_report"] = tb.format_report(result)
    result["torchcrepe"] = _import_error("torchcrepe") or "importable"
    return result


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
        if settings.models or settings.checkpoint:
            t0 = time.perf_counter()
            result["models"] = bench_students(settings, work, say)
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
