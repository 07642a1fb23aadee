"""``edgetag bench``: one report of latency, cost and accuracy.

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
2. models: each student (``mobilenet`` width 0.5 window 100, ``plain_cnn`` window 100,
   ``causal_cnn``, ``crnn``; 64 bins; random weights unless ``--checkpoint``/``--model``) is saved as a
   `StudentCheckpoint`, exported with `export_onnx` (parity-verified), then
   `quantize_int8` and `convert_fp16` (their gates run with ``accept_drop``, so
   a drop is reported, not fatal). Each backend -- PyTorch eager
   (`training.torch_backend`), ORT fp32 / int8 / fp16 (`runtime.model.load_model`)
   -- is measured in a fresh subprocess (fair peak RSS) on the same feature
   inputs: warm-up calls, then the latency of ``model.run`` per call, as a stream
   calls it (a window per decision for window students; a chunk of the card's
   ``frames_per_call`` frames, the state carried, for stateful ones). Teachers: `run_teacher_benchmark`
   for the CPU cost, `count_macs` (operator-level, functional calls included) for MACs;
3. streaming: the `Engine` on a file at full speed (160-sample pushes), checked
   against `offline_decisions`, and ``edgetag listen`` through the PulseAudio
   virtual microphone (`edgetag.benchmarks.virtual_mic`) at real-time pace;
4. what users run today: edgetag's CREPE ports (torchcrepe is not importable
   without torchaudio), the musicnn teacher, librosa and kaldi-native-fbank;
5. pitch trackers (``--peers``, or a pitch ``--eval`` manifest): edgetag's pitch models beside
   CREPE and the peers' own wheels (SwiftF0, FCPE, PESTO), cost, latency and RPA/RCA
   (`edgetag.benchmarks.pitch_rows`).

Output (``--out``, default ``./bench-report``): report.md, report.json and PNG plots.

Where the pieces live: `settings` (what to measure), `student_backends` (students × backends),
`worker` (one backend timed in its own process), `task_metric` (``--eval``), `streaming`
(Engine and virtual microphone), `measure` (signal and statistics) and `report_format` (the files).
"""

from __future__ import annotations

import contextlib
import gc
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from importlib import metadata
from pathlib import Path
from typing import Any

from edgetag.benchmarks.measure import import_error
from edgetag.benchmarks.pitch_rows import PitchEvalSet, bench_pitch_trackers, is_pitch_manifest
from edgetag.benchmarks.settings import BenchSettings
from edgetag.benchmarks.streaming import bench_engine, bench_mic
from edgetag.benchmarks.student_backends import bench_students
from edgetag.benchmarks.task_metric import EvalData, teacher_task_metric
from edgetag.benchmarks.worker import THREAD_ENV_VARS

PACKAGES = ("edgetag", "numpy", "torch", "onnx", "onnxruntime", "onnxscript", "librosa", "kaldi-native-fbank",
            "matplotlib", "soundfile", "sounddevice", "threadpoolctl", "torchcrepe", "torchaudio", "tensorrt",
            "swift-f0", "torchfcpe", "pesto-pitch")


def machine_note(machine: dict[str, Any]) -> str:
    """What the timings were measured on, from the machine itself (CPU, cores, load before and after)."""
    load = machine.get("load_average") or [None]
    after = machine.get("load_average_after") or [None]
    usable = machine.get("cpus_usable") or machine.get("logical_cores")
    text = f"Measured on {machine.get('cpu') or machine.get('cpu_model') or 'an unknown CPU'}, {usable} usable core(s)"
    if load[0] is not None:
        text += f", 1-minute load average {load[0]:.2f} at the start" + (f" and {after[0]:.2f} at the end" if after[0] is not None else "")
        if max(load[0], after[0] or 0.0) > 0.5 * (usable or 1):
            text += " (other processes were running: expect noise)"
    return text + (". Timings are noisy on any machine that does other work: compare rows of one run (the ratios), "
                   "not absolute numbers across runs.")


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def machine_info(threads: int) -> dict[str, Any]:
    cpu_model = platform.processor() or None
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as f:
        for line in f:
            if line.lower().startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    from edgetag.runtime.verify import cpu_description

    return {
        "cpu_model": cpu_model,
        "cpu": cpu_description(),
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


def bench_frontends(settings: BenchSettings, say: Callable[[str], None]) -> dict[str, Any]:
    """The front-end section: `run_frontend_benchmark` (edgetag vs kaldi-native-fbank, librosa, torch)."""
    say("front ends: run_frontend_benchmark")
    from edgetag.benchmarks.frontend import format_report, run_frontend_benchmark

    fe = run_frontend_benchmark(seconds=settings.frontend_seconds, repeats=settings.frontend_repeats,
                                warmup=1, seed=settings.seed, progress=say)
    fe["format_report"] = format_report(fe)
    return fe


def bench_teachers(settings: BenchSettings, say: Callable[[str], None]) -> dict[str, Any]:
    """The teacher section: CPU cost (`run_teacher_benchmark`) and MACs per second of audio."""
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
    result["torchcrepe"] = import_error("torchcrepe") or "importable"
    return result


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
                              "notes": [], "sections_seconds": {}}
    missing: list[str] = []
    if settings.teacher_name and settings.teachers and settings.teacher_name not in settings.teachers:
        settings = replace(settings, teachers=(*settings.teachers, settings.teacher_name))  # timed too: MACs for the plot
        result["settings"] = asdict(settings)
    with tempfile.TemporaryDirectory(prefix="edgetag-bench-") as tmp_name:
        work = Path(tmp_name)
        if settings.frontend:
            t0 = time.perf_counter()
            result["frontend"] = bench_frontends(settings, say)
            result["sections_seconds"]["frontend"] = time.perf_counter() - t0
        eval_data = pitch_eval = None
        if settings.eval_manifest and is_pitch_manifest(settings):
            # f0 sidecars, no labels: scored as RPA/RCA in the pitch section, not as tags
            pitch_eval = PitchEvalSet(settings)  # read first: a bad manifest fails before minutes of timing
            result["eval"] = {"manifest": settings.eval_manifest, "split": settings.eval_split, "kind": "pitch",
                              "entries": len(pitch_eval.clips)}
        elif settings.eval_manifest:
            eval_data = EvalData(settings)  # read first: a bad manifest fails before minutes of timing
            result["eval"] = {"manifest": settings.eval_manifest, "split": settings.eval_split,
                              "entries": len(eval_data.manifest.select(settings.eval_split))
                              if settings.eval_split else len(eval_data.manifest),
                              "labels": list(eval_data.manifest.labels)}
        # the given models, or the built-in ones (`student_backends.model_sources`)
        t0 = time.perf_counter()
        result["models"] = bench_students(settings, work, say, eval_data)
        result["sections_seconds"]["models"] = time.perf_counter() - t0
        _copy_model_files(result["models"]["students"], out_dir / "models")
        if settings.teachers and import_error("torch"):
            result["teachers"] = {"status": f"skipped: the teacher rows need torch ({import_error('torch')}; "
                                            "pip install 'edgetag[train]')", "rows": []}
            missing.append("teachers: need torch")
        elif settings.teachers:
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
        if settings.peers or pitch_eval is not None:
            t0 = time.perf_counter()
            try:
                result["pitch_trackers"] = bench_pitch_trackers(settings, students, pitch_eval, say)
            except Exception as exc:  # noqa: BLE001 - the other sections still report
                result["pitch_trackers"] = {"error": f"{type(exc).__name__}: {exc}", "rows": []}
                missing.append(f"pitch trackers: {exc}")
            result["sections_seconds"]["pitch trackers"] = time.perf_counter() - t0
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
    result["notes"].insert(0, machine_note(result["machine"]))
    result["missing"] = missing
    result["wall_seconds"] = time.perf_counter() - wall0
    from edgetag.benchmarks import report_format

    report_format.write_report(result, out_dir)
    return result


def _copy_model_files(students: list[dict[str, Any]], folder: Path) -> None:
    """Copy every measured model file into the report's ``models/`` folder (best effort)."""
    for info in students:
        for f in info["files"].values():
            dest = folder / Path(f).name
            dest.parent.mkdir(exist_ok=True)
            with contextlib.suppress(OSError):
                shutil.copyfile(f, dest)
