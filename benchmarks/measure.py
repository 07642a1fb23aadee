"""Pieces every section of ``edgetag bench`` measures with: the seeded test signal, the
latency statistics and the probe for optional packages."""

from __future__ import annotations

import importlib
from collections.abc import Sequence

import numpy as np


def spread(values: Sequence[float]) -> dict[str, float]:
    """Median, percentiles (p50/p90/p99/p99.9), quartiles, min and max."""
    a = np.asarray(values, np.float64)
    if not a.size:
        return {}
    p = np.percentile(a, [25, 50, 75, 90, 99, 99.9])
    return {"median": float(p[1]), "q1": float(p[0]), "q3": float(p[2]), "p50": float(p[1]), "p90": float(p[3]),
            "p99": float(p[4]), "p99_9": float(p[5]), "min": float(a.min()), "max": float(a.max()), "n": int(a.size)}


def import_error(module: str) -> str | None:
    """None when ``module`` imports, else the reason."""
    try:
        importlib.import_module(module)
        return None
    except Exception as exc:  # noqa: BLE001 - any failure means "not usable here"
        return f"{type(exc).__name__}: {exc}"


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
