"""Streaming end to end for ``edgetag bench``: the `Engine` on a file at full speed, and
``edgetag listen`` on the PulseAudio virtual microphone at real-time pace."""

from __future__ import annotations

import contextlib
import gc
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgetag.benchmarks.measure import eval_signal, import_error, spread


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
        decisions.extend(engine.flush())  # the end of the signal: frames short of a whole call
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
    reason = import_error("sounddevice") or import_error("soundfile")
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

