"""Front-end benchmark: edgetag's C++ front end side by side with the tools people use today.

Run it as::

    python -m edgetag.benchmarks.frontend [--seconds S] [--repeats R] [--json out.json]
                                          [--n-fft 512|1024] [--quick]

or call `run_frontend_benchmark` (and `format_report`) from Python.

What it measures, in one process, on one `FrontendConfig` (the ``default``
preset: 16 kHz, win 400, hop 160, 64 Slaney mel bands 50-8000 Hz, n_fft 512 or
1024) and one input signal (seeded noise plus tones, 60 s by default):

- edgetag streaming, 160- and 512-sample pushes, through ``push()`` (a new
  array per push) and ``push_into()`` (a reused output buffer);
- edgetag offline: ``compute_features`` on the whole signal;
- kaldi-native-fbank (knf) ``OnlineFbank`` streaming: ``accept_waveform`` per
  chunk, then ``get_frame`` for every ready frame and ``pop`` of the frames
  pulled (a stream that runs for hours must drop them); plus knf fed the
  whole signal in one call, as its offline cost;
- librosa offline: ``librosa.feature.melspectrogram(center=False)`` + log;
- torch offline: ``torch.stft(center=False)`` + mel matmul + log, one thread.

The rows are built in `edgetag.benchmarks.frontend_rows`. Every row computes the same features:
the script checks each row's output
against ``compute_features`` (max abs difference, in the table) and that every
row yields the same number of frames. Python call overhead is part of every
number, as it is for a user.

How the timing works: every row is one callable that processes the whole
signal; `time_call` times it (``perf_counter_ns``, garbage collector paused)
after an untimed ``setup`` (a fresh or reset stream). After warm-up runs,
repetitions go round-robin over the rows (row A, B, C, ..., then again), with
the starting row rotated each round, so machine noise on a shared machine
hits all rows alike. Each row reports the median and the min/max (and IQR in
the JSON) of its per-repetition µs per frame; ratios to edgetag are taken per
repetition (rows of the same round are neighbours in time) and summarised the
same way.
"""

from __future__ import annotations

import os
import sys

# Pin native thread pools to one thread. This has to happen before numpy (or
# torch) is imported: OpenMP / OpenBLAS / MKL read these variables once, when
# they load. A front end on a device shares the CPU with the model, and on a
# 2-core shared machine a library that borrows the second core would measure
# something else. When this module is imported by a process that has already
# loaded numpy, the variables come too late; `run_frontend_benchmark` then
# also limits the loaded pools with threadpoolctl (when installed) and torch
# with torch.set_num_threads(1), and the JSON records what was in effect.
THREAD_ENV_VARS: tuple[str, ...] = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
#: Whether numpy was loaded before this module set the variables (then they came too late for it).
NUMPY_LOADED_BEFORE_ENV = "numpy" in sys.modules
for _var in THREAD_ENV_VARS:
    os.environ[_var] = "1"

import argparse  # noqa: E402
import contextlib  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Iterator, Sequence  # noqa: E402
from importlib import metadata  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

from edgetag.benchmarks.frontend_rows import (  # noqa: E402
    OFFLINE_REFERENCE,
    REFERENCE_PUSH,
    STREAMING_REFERENCE,
    Row,
    build_rows,
    knf_options,
)
from edgetag.runtime.frontend import FrontendConfig, compute_features  # noqa: E402


# ------------------------------------------------------------------------ timing


def time_call(setup: Callable[[], None], run: Callable[[], int]) -> tuple[float, int]:
    """Seconds one ``run()`` takes (after an untimed ``setup()``), and the frames it returned.

    The garbage collector is paused during the call, as ``timeit`` does, so a
    collection triggered by one row is not charged to another.
    """
    setup()
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        start = time.perf_counter_ns()
        frames = run()
        elapsed = time.perf_counter_ns() - start
    finally:
        if gc_was_enabled:
            gc.enable()
    return elapsed * 1e-9, frames


def measure_round_robin(rows: Sequence[Row], repeats: int, warmup: int,
                        expected_frames: int) -> dict[str, list[float]]:
    """Seconds per repetition for every row, with the repetitions of all rows interleaved.

    ``warmup`` untimed rounds first (caches, lazy imports, allocator), then
    ``repeats`` timed rounds; round r starts at row r mod len(rows).
    """
    seconds: dict[str, list[float]] = {row.key: [] for row in rows}
    for round_index in range(warmup + repeats):
        start = round_index % len(rows)
        for row in [*rows[start:], *rows[:start]]:
            elapsed, frames = time_call(row.setup, row.run)
            if frames != expected_frames:
                raise RuntimeError(f"{row.label} produced {frames} frames, expected {expected_frames}")
            if round_index >= warmup:
                seconds[row.key].append(elapsed)
    return seconds


def spread(values: Sequence[float]) -> dict[str, float]:
    """Median, min, max and quartiles (inclusive method) of ``values``."""
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive") if len(values) > 1 else (values[0],) * 3
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "q1": q1, "q3": q3}


# ---------------------------------------------------------------- environment


@contextlib.contextmanager
def single_threaded() -> Iterator[dict[str, Any]]:
    """Limit torch and every loaded BLAS/OpenMP pool to one thread; yields what is in effect."""
    info: dict[str, Any] = {var: os.environ.get(var) for var in THREAD_ENV_VARS}
    info["env_set_before_numpy_import"] = not NUMPY_LOADED_BEFORE_ENV
    with contextlib.ExitStack() as stack:
        try:
            from threadpoolctl import threadpool_info, threadpool_limits

            stack.enter_context(threadpool_limits(limits=1))
        except ImportError:
            threadpool_info = None
        try:
            import torch

            previous = torch.get_num_threads()
            torch.set_num_threads(1)
            stack.callback(torch.set_num_threads, previous)
            info["torch_num_threads"] = torch.get_num_threads()
        except ImportError:
            info["torch_num_threads"] = None
        if threadpool_info is not None:
            info["threadpools"] = [
                {k: pool.get(k) for k in ("user_api", "internal_api", "num_threads", "version")}
                for pool in threadpool_info()
            ]
        yield info


def _version(dist: str) -> str | None:
    """Installed version of a distribution, or None."""
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def machine_info() -> dict[str, Any]:
    """CPU model, core counts, platform and library versions."""
    cpu_model = None
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu_model = line.split(":", 1)[1].strip()
                    break
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {
        "cpu_model": cpu_model or platform.processor() or None,
        "cpu_count": os.cpu_count(),
        "cpus_usable": affinity,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": {name: _version(dist) for name, dist in (
            ("edgetag", "edgetag"), ("numpy", "numpy"), ("torch", "torch"),
            ("librosa", "librosa"), ("kaldi_native_fbank", "kaldi-native-fbank"))},
    }


# ---------------------------------------------------------------------- signal


def make_signal(seconds: float, sample_rate: int, seed: int = 0) -> np.ndarray:
    """Seeded test signal, float32 in [-1, 1]: white noise plus three tones, slowly amplitude-modulated."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * sample_rate))
    t = np.arange(n) / sample_rate
    x = 0.05 * rng.standard_normal(n)
    for freq, amp in ((220.0, 0.2), (1000.0, 0.1), (3150.0, 0.05)):
        x += amp * np.sin(2 * np.pi * freq * t + rng.uniform(0, 2 * np.pi))
    x *= 0.6 + 0.4 * np.sin(2 * np.pi * 0.5 * t)
    return np.clip(x, -1.0, 1.0).astype(np.float32)


# ------------------------------------------------------------------ benchmark


def _ratio_entry(times_us: list[float], reference_us: list[float], reference: str) -> dict[str, Any]:
    """Per-repetition ratios row / reference (> 1: edgetag's reference row is faster)."""
    ratios = [t / r for t, r in zip(times_us, reference_us, strict=True)]
    return {"reference": reference, **spread(ratios), "per_repeat": ratios}


def _target(name: str, text: str, values: list[float], threshold: float, at_most: bool,
            unit: str) -> dict[str, Any]:
    """A target checked on the median, with how many single repetitions also meet it."""
    median = statistics.median(values)
    meets = (lambda v: v <= threshold) if at_most else (lambda v: v >= threshold)
    return {"name": name, "target": text, "measured": median, "unit": unit,
            "status": "PASS" if meets(median) else "MISS",
            "repeats_meeting": sum(meets(v) for v in values), "repeats": len(values)}

def run_frontend_benchmark(seconds: float = 60.0, repeats: int = 5, n_fft: int = 512, warmup: int = 1,
                           seed: int = 0, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Measure every row (see the module docstring) and return all numbers as a JSON-able dict.

    ``progress`` gets one-line status messages (e.g. ``print`` to stderr).
    """
    if repeats < 1 or warmup < 0 or seconds <= 0:
        raise ValueError("need repeats >= 1, warmup >= 0 and seconds > 0")
    say = progress or (lambda message: None)
    wall_start = time.perf_counter()
    load_before = os.getloadavg() if hasattr(os, "getloadavg") else None
    config = FrontendConfig.preset("default", n_fft=n_fft)
    signal = make_signal(seconds, config.sample_rate, seed)
    n_frames = config.num_frames(len(signal))
    audio_seconds = len(signal) / config.sample_rate

    with single_threaded() as threads:
        rows, skipped = build_rows(config, signal)
        say(f"checking that {len(rows)} rows compute the same features ...")
        agreement = max_abs_differences(rows, compute_features(signal, config))
        say(f"timing: {warmup} warm-up + {repeats} timed rounds over {len(rows)} rows, "
            f"{audio_seconds:g} s of audio ({n_frames} frames) each ...")
        seconds_per_rep = measure_round_robin(rows, repeats, warmup, n_frames)

    knf_frame_type = _knf_frame_type(config, signal)
    us = {key: [s / n_frames * 1e6 for s in secs] for key, secs in seconds_per_rep.items()}
    results = [_row_result(row, seconds_per_rep[row.key], us, n_frames, audio_seconds, agreement[row.key])
               for row in rows]
    return {
        "benchmark": "frontend",
        "config": config.to_dict(),
        "config_description": config.describe(),
        "signal": {"kind": "white noise 0.05 + tones 220/1000/3150 Hz, 0.5 Hz AM", "seed": seed,
                   "seconds": audio_seconds, "samples": len(signal), "frames": n_frames},
        "method": {"repeats": repeats, "warmup_rounds": warmup, "order": "round-robin, start rotated per round",
                   "timer": "time.perf_counter_ns, gc paused", "statistic": "median, [min, max], IQR",
                   "streaming_reference": STREAMING_REFERENCE, "offline_reference": OFFLINE_REFERENCE},
        "rows": results,
        "skipped": skipped,
        "targets": _targets(results, us),
        "knf_get_frame_type": knf_frame_type,
        "threads": threads,
        "machine": machine_info(),
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "wall_seconds": time.perf_counter() - wall_start,
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def max_abs_differences(rows: Sequence[Row], reference: np.ndarray) -> dict[str, float]:
    """Each row's max abs difference from ``reference`` (`compute_features`); refuses a row of another shape."""
    agreement = {}
    for row in rows:
        out = np.asarray(row.features(), dtype=np.float32)
        if out.shape != reference.shape:
            raise RuntimeError(f"{row.label}: output shape {out.shape}, expected {reference.shape}")
        agreement[row.key] = float(np.max(np.abs(out - reference)))
    return agreement


def _knf_frame_type(config: FrontendConfig, signal: np.ndarray) -> str | None:
    """The type knf's ``get_frame`` returns (module.name), or None without kaldi-native-fbank."""
    knf_frame_type = None
    with contextlib.suppress(ImportError):
        import kaldi_native_fbank as knf

        probe = knf.OnlineFbank(knf_options(config))
        probe.accept_waveform(float(config.sample_rate), signal[: config.win_length].tolist())
        knf_frame_type = f"{type(probe.get_frame(0)).__module__}.{type(probe.get_frame(0)).__name__}"
    return knf_frame_type


def _row_result(row: Row, seconds_per_repeat: list[float], us: dict[str, list[float]], n_frames: int,
                audio_seconds: float, max_abs_diff: float) -> dict[str, Any]:
    """One row of the result: its times per frame, real-time factor and ratio to its edgetag reference row."""
    ref = STREAMING_REFERENCE if row.mode == "streaming" else OFFLINE_REFERENCE
    median_s = statistics.median(seconds_per_repeat)
    return {
        "key": row.key, "label": row.label, "impl": row.impl, "mode": row.mode, "push": row.push,
        "n_fft": row.n_fft, "frames": n_frames, "note": row.note,
        "seconds_per_repeat": seconds_per_repeat,
        "us_per_frame": {**spread(us[row.key]), "per_repeat": us[row.key]},
        "x_realtime": audio_seconds / median_s,
        "ratio_to_edgetag": _ratio_entry(us[row.key], us[ref], ref) if ref in us else None,
        "max_abs_diff_vs_compute_features": max_abs_diff,
    }


def _targets(results: list[dict[str, Any]], us: dict[str, list[float]]) -> list[dict[str, Any]]:
    """The front end's targets: edgetag's streaming cost, and its speed-up over knf streaming and librosa."""
    by_key = {r["key"]: r for r in results}
    targets = [_target("edgetag_streaming_us_per_frame",
                       f"edgetag streaming, {REFERENCE_PUSH}-sample push(): <= 2 us/frame",
                       us[STREAMING_REFERENCE], 2.0, at_most=True, unit="us/frame")]
    for key, text, threshold in (
        (f"knf_stream_{REFERENCE_PUSH}", f"edgetag >= 8x faster than knf streaming ({REFERENCE_PUSH} pushes)", 8.0),
        ("librosa_offline", "edgetag >= 2x faster than librosa offline", 2.0),
    ):
        if key in by_key:
            ratio = by_key[key]["ratio_to_edgetag"]
            targets.append(_target(f"{key}_ratio", text, ratio["per_repeat"], threshold, at_most=False,
                                   unit=f"x (vs {ratio['reference']})"))
        else:
            targets.append({"name": f"{key}_ratio", "target": text, "status": "N/A",
                            "reason": "row skipped: library not installed"})
    return targets


# ---------------------------------------------------------------------- report


def _fmt_us(value: float) -> str:
    return f"{value:.2f}" if value < 100 else f"{value:.0f}"


def format_report(result: dict[str, Any]) -> str:
    """The human-readable table, targets and notes for a `run_frontend_benchmark` result."""
    header = ("row", "mode", "push", "FFT", "µs/frame median [min–max]", "× real time",
              "÷ edgetag [min–max]", "max|Δ|")
    lines: list[tuple[str, ...]] = []
    for r in result["rows"]:
        t = r["us_per_frame"]
        ratio = r["ratio_to_edgetag"]
        ratio_text = (f"{ratio['median']:.2f} [{ratio['min']:.2f}–{ratio['max']:.2f}]"
                      f" vs {f'push({REFERENCE_PUSH})' if ratio['reference'] == STREAMING_REFERENCE else 'offline'}"
                      if ratio else "–")
        fft = str(r["n_fft"]) + ("*" if r["n_fft"] != result["config"]["n_fft"] else "")
        lines.append((r["label"], r["mode"], str(r["push"] or "–"), fft,
                      f"{_fmt_us(t['median'])} [{_fmt_us(t['min'])}–{_fmt_us(t['max'])}]",
                      f"{r['x_realtime']:,.0f}×", ratio_text, f"{r['max_abs_diff_vs_compute_features']:.1e}"))
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]
    right = {2, 3, 4, 5, 6, 7}

    def fmt(cells: Sequence[str]) -> str:
        padded = (c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True)))
        return "  ".join(padded)

    s, m, th = result["signal"], result["method"], result["threads"]
    out = [
        f"edgetag front-end benchmark: {result['config_description']}",
        f"signal: {s['seconds']:g} s ({s['frames']} frames), {s['kind']}, seed {s['seed']}; "
        f"{m['repeats']} repeats after {m['warmup_rounds']} warm-up round(s), {m['order']}",
        f"machine: {result['machine']['cpu_model']}, {result['machine']['cpu_count']} cores; "
        f"threads: torch {th.get('torch_num_threads')}, "
        + ", ".join(f"{v}={th.get(v)}" for v in THREAD_ENV_VARS),
        "",
        fmt(header),
        fmt(["-" * w for w in widths]),
        *(fmt(line) for line in lines),
        "",
        "÷ edgetag: this row's time per frame over edgetag's (per repetition, median [min–max]); "
        "> 1 means edgetag is faster.",
        f"  streaming rows vs edgetag push({REFERENCE_PUSH}), offline rows vs edgetag compute_features.",
        "max|Δ|: max abs difference from edgetag compute_features over all frames "
        "(do the rows compute the same thing?).",
    ]
    if any(r["n_fft"] != result["config"]["n_fft"] for r in result["rows"]):
        out.append("*: knf pads the frame to the next power of two whatever the config says: less work than "
                   "the other rows, and features that differ (max|Δ|).")
    if result.get("knf_get_frame_type"):
        out.append(f"knf get_frame returns {result['knf_get_frame_type']} (float32, one call per frame).")
    for name, reason in result["skipped"].items():
        out.append(f"skipped {name}: {reason}")
    out += ["", "the front end's targets, judged on the median:"]
    for t in result["targets"]:
        if t["status"] == "N/A":
            out.append(f"  N/A   {t['target']}: {t['reason']}")
            continue
        measured = f"{t['measured']:.2f} µs/frame" if t["unit"] == "us/frame" else f"{t['measured']:.2f}×"
        out.append(f"  {t['status']:<5} {t['target']}: measured {measured} "
                   f"({t['repeats_meeting']}/{t['repeats']} repetitions meet it)")
    out.append("absolute µs depend on the CPU and on its load (below); the ratios are paired per round.")
    out.append(f"\nwall time {result['wall_seconds']:.1f} s; load average before/after "
               f"{_fmt_load(result['loadavg_before'])} / {_fmt_load(result['loadavg_after'])}")
    return "\n".join(out)


def _fmt_load(load: Sequence[float] | None) -> str:
    return "n/a" if load is None else " ".join(f"{v:.2f}" for v in load)


# ------------------------------------------------------------------------ main


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(
        prog="python -m edgetag.benchmarks.frontend",
        description="Time edgetag's front end next to kaldi-native-fbank, librosa and torch.stft.")
    parser.add_argument("--seconds", type=float, default=None, help="seconds of audio (default 60; 10 with --quick)")
    parser.add_argument("--repeats", type=int, default=None, help="timed rounds (default 5; 3 with --quick)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first (default 1)")
    parser.add_argument("--n-fft", type=int, choices=(512, 1024), default=512, help="FFT size (default 512)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the test signal")
    parser.add_argument("--json", metavar="PATH", help="also write every number to this JSON file")
    parser.add_argument("--quick", action="store_true", help="10 s of audio, 3 repeats")
    args = parser.parse_args(argv)
    seconds = args.seconds if args.seconds is not None else (10.0 if args.quick else 60.0)
    repeats = args.repeats if args.repeats is not None else (3 if args.quick else 5)

    result = run_frontend_benchmark(seconds=seconds, repeats=repeats, n_fft=args.n_fft, warmup=args.warmup,
                                    seed=args.seed, progress=lambda msg: print(msg, file=sys.stderr))
    print(format_report(result))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)
            f.write("\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
