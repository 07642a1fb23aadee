"""The model worker of ``edgetag bench``: one backend of one student timed in its own process.

`measure_backend` does the timing; `run_worker` starts it as
``python -m edgetag.benchmarks.worker SPEC.json RESULT.json`` (a fresh process, so that
its peak RSS is its own) with the thread pools pinned, or calls it in this process.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from edgetag.runtime.clip import call_inputs

#: Thread pools pinned in the model worker processes (set in their environment before numpy loads).
THREAD_ENV_VARS: tuple[str, ...] = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def _peak_rss_mb() -> float:
    """Peak resident set of this process, MB: VmHWM (reset by exec, unlike ru_maxrss, which a
    subprocess inherits from its parent through fork + exec on Linux), else ru_maxrss."""
    with contextlib.suppress(OSError, ValueError), open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def measure_backend(spec: dict[str, Any]) -> dict[str, Any]:
    """Load one model and time ``model.run`` per call, as a stream calls it, on the given features
    (see `edgetag.benchmarks.report`).

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
        from edgetag.training.torch_backend import TorchModel

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
    # the model calls a stream makes: one per decision (window), one per frames_per_call frames (stateful)
    per_clip = [call_inputs(card, c) for c in clips]
    call_frames = hop if card.streaming_mode == "window" else max(1, card.frames_per_call)
    n_calls = sum(len(f) for f in per_clip)
    if not n_calls:
        raise ValueError("evaluation clips are shorter than one model call (a window, or a stateful call's frames)")

    def one_pass(record: list[int] | None, scores: list[np.ndarray] | None, limit: int | None = None) -> int:
        done = 0
        for feeds in per_clip:
            states = model.initial_state(1)
            for c, x in enumerate(feeds):
                if limit is not None and done >= limit:
                    return done
                s0 = time.perf_counter_ns()
                logits, states = model.run(x, states) if card.streaming_mode == "stateful" else model.run(x)
                s1 = time.perf_counter_ns()
                if record is not None:
                    record.append(s1 - s0)
                if scores is not None:
                    if card.streaming_mode == "window":
                        scores.append(model.scores(logits[0][None])[0])
                    else:  # the call's decision frames: every hop-th frame of the stream, as the engine takes them
                        first = (hop - 1 - (c * call_frames) % hop) % hop
                        scores.extend(model.scores(logits[0, first::hop]))
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
        "call_seconds": call_frames * card.frontend.hop_length / card.frontend.sample_rate,
        "streaming_mode": card.streaming_mode,
        "pid": os.getpid(),
    }


def run_worker(spec: dict[str, Any], in_process: bool, tmp: Path) -> dict[str, Any]:
    """`measure_backend` of ``spec`` in this process, or in a fresh worker process."""
    if in_process:
        return measure_backend(spec)
    spec_path = tmp / f"spec-{spec['key']}.json"
    out_path = tmp / f"result-{spec['key']}.json"
    spec_path.write_text(json.dumps(spec), encoding="utf-8")
    env = dict(os.environ)
    env.update({v: str(spec["threads"]) for v in THREAD_ENV_VARS})
    proc = subprocess.run([sys.executable, "-m", "edgetag.benchmarks.worker", str(spec_path), str(out_path)],
                          check=False, env=env, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"worker for {spec['key']} failed: {proc.stderr.strip()[-800:]}")
    return json.loads(out_path.read_text(encoding="utf-8"))


def main(spec_path: str, out_path: str) -> int:
    """The worker process: measure the backend ``spec_path`` describes, write the result to ``out_path``."""
    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    res = measure_backend(spec)
    Path(out_path).write_text(json.dumps(res), encoding="utf-8")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python -m edgetag.benchmarks.worker SPEC.json RESULT.json")
    sys.exit(main(sys.argv[1], sys.argv[2]))
