"""How far a pitch model's reading is from steady tones: the tuner's error table.

    python benchmarks/tuner_sines.py [--model pitch --model pitch-int8 --model new.onnx] [--amplitude 0.3]

For each frequency (55 Hz to 1.5 kHz by default, on and off the semitone grid) a 3 s tone at
``--amplitude`` peak is streamed through the model as ``edgetag listen`` runs it (the Python API,
one ONNX Runtime thread, default post-processing); the error is the median over the middle second
(1-2 s) of the voiced decisions' f0 against the true f0, in cents, and ``voiced`` is the share of
those decisions the model calls voiced. Each model has two columns: the stream's reading (the bins
and the frame's period, `edgetag.runtime.pitch.decode_with_audio`: what ``tag``, ``listen`` and the
API print) and the bins alone (`edgetag.runtime.pitch.decode`). ``--timbre sine`` (default) is a
pure sine; ``saw`` a band-limited sawtooth (every harmonic at 1/k), as most instruments are richer
than a sine. Models side by side in one run; the table is Markdown. How readings follow real
timbres detuned off the note grid: `benchmarks/tuner_detune.py`.
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


def readings(model: str, f0: float, amplitude: float, timbre: str) -> list[tuple[float, float]]:
    """[stream, bins only]: (median error in cents over the middle second, share voiced there) of one tone."""
    import edgetag
    from edgetag.runtime.pitch import reading

    tagger = edgetag.load(model)
    out = tagger.push(tone(f0, 3.0, amplitude, timbre), sample_rate=SAMPLE_RATE)
    middle = [d for d in out if 1.0 < d.t <= 2.0]
    result = []
    for read in (lambda d: d.pitch, lambda d: reading(d.scores)):
        voiced = [r.f0_hz for r in map(read, middle) if r is not None and r.voiced]
        result.append((float(np.median(1200 * np.log2(np.asarray(voiced) / f0))), len(voiced) / len(middle))
                      if voiced else (float("nan"), 0.0))
    return result


def table(models: list[str], frequencies: list[float], amplitude: float, timbre: str) -> str:
    columns = [f"{m}{suffix}" for m in models for suffix in (": stream, cents (voiced)", ": bins only")]
    lines = ["| f0 (Hz) | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
    worst = [0.0] * len(columns)
    for f0 in frequencies:
        cells = [cell for m in models for cell in readings(m, f0, amplitude, timbre)]
        for i, (cents, share) in enumerate(cells):
            worst[i] = max(worst[i], abs(cents) if share else float("inf"))
        lines.append(f"| {f0:g} | " + " | ".join(f"{cents:+.1f} ({share:.0%})" if share else "unvoiced"
                                                  for cents, share in cells) + " |")
    lines.append("| worst \\|cents\\| | " + " | ".join(f"{w:.1f}" if np.isfinite(w) else "(some unvoiced)"
                                                for w in worst) + " |")
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
