"""How far a pitch model's reading is from steady tones: the tuner's error table.

    python benchmarks/tuner_sines.py [--model pitch --model pitch-int8 --model new.onnx] [--amplitude 0.3]

For each frequency (55 Hz to 1.5 kHz by default, on and off the semitone grid) a 3 s tone at
``--amplitude`` peak is streamed through the model as ``edgetag listen`` runs it (the Python API,
one ONNX Runtime thread, default post-processing); the error is the median over the middle second
(1-2 s) of the voiced decisions' f0 against the true f0, in cents, and ``voiced`` is the share of
those decisions the model calls voiced. ``--timbre sine`` (default) is a pure sine; ``saw`` a
band-limited sawtooth (every harmonic at 1/k), as most instruments are richer than a sine.
Models side by side in one run; the table is Markdown.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

DEFAULT_FREQUENCIES = (55.0, 65.41, 82.41, 110.0, 146.83, 220.0, 261.63, 329.63, 440.0, 446.0, 659.26, 880.0,
                       1000.0, 1500.0)
SAMPLE_RATE = 16000


def tone(f0: float, seconds: float, amplitude: float, timbre: str) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    if timbre == "sine":
        x = np.sin(2 * np.pi * f0 * t)
    else:  # band-limited sawtooth: harmonics up to 7 kHz
        x = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, int(7000 // f0) + 1))
    return (amplitude * x / np.abs(x).max()).astype(np.float32)


def reading(model: str, f0: float, amplitude: float, timbre: str) -> tuple[float, float]:
    """(median error in cents over the middle second, share voiced there) of one tone."""
    import edgetag

    tagger = edgetag.load(model)
    out = tagger.push(tone(f0, 3.0, amplitude, timbre), sample_rate=SAMPLE_RATE)
    times = np.array([d.t for d in out])
    middle = [d for d, t in zip(out, times) if 1.0 < t <= 2.0]
    voiced = [d.pitch.f0_hz for d in middle if d.pitch is not None and d.pitch.voiced]
    if not voiced:
        return float("nan"), 0.0
    return float(np.median(1200 * np.log2(np.asarray(voiced) / f0))), len(voiced) / len(middle)


def table(models: list[str], frequencies: list[float], amplitude: float, timbre: str) -> str:
    head = "| f0 (Hz) | " + " | ".join(f"{m}: cents (voiced)" for m in models) + " |"
    lines = [head, "|---|" + "---|" * len(models)]
    worst = {m: 0.0 for m in models}
    for f0 in frequencies:
        cells = []
        for m in models:
            cents, share = reading(m, f0, amplitude, timbre)
            worst[m] = max(worst[m], abs(cents) if share else float("inf"))
            cells.append(f"{cents:+.1f} ({share:.0%})" if share else f"unvoiced ({share:.0%})")
        lines.append(f"| {f0:g} | " + " | ".join(cells) + " |")
    lines.append("| worst \\|cents\\| | " + " | ".join(f"{worst[m]:.1f}" if np.isfinite(worst[m]) else "(some unvoiced)"
                                                for m in models) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", action="append", help="pitch model: a built-in name or a file (repeat; default: pitch)")
    ap.add_argument("--frequency", type=float, action="append", help="Hz (repeat; default: 55 Hz to 1.5 kHz)")
    ap.add_argument("--amplitude", type=float, default=0.3, help="peak amplitude (default 0.3, about -10 dBFS)")
    ap.add_argument("--timbre", choices=("sine", "saw"), default="sine")
    args = ap.parse_args(argv)
    if not 0 < args.amplitude <= 1:
        ap.error(f"--amplitude must be in (0, 1], got {args.amplitude}")
    print(f"{args.timbre} tones, 3 s at peak {args.amplitude:g}; median over 1-2 s of the voiced decisions")
    print(table(args.model or ["pitch"], args.frequency or list(DEFAULT_FREQUENCIES), args.amplitude, args.timbre))
    return 0


if __name__ == "__main__":
    sys.exit(main())
