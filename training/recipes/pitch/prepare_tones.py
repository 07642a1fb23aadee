#!/usr/bin/env python3
"""Synthetic tones with an exact f0, for the pitch recipe's ``reference-f0`` targets.

    python3 training/recipes/pitch/prepare_tones.py --out /work/data/pitch [--n-train 300]

A tuner is judged on steady tones, and a student distilled from CREPE on renders and real audio
has heard few pure ones, least of all low sines (the shipped student called a 110 Hz sine
unvoiced). Each 4 s clip here is a sequence of notes and rests: f0 drawn log-uniformly from 40 Hz
to 1.9 kHz off the semitone grid, held steady, with vibrato (4-7 Hz, 10-60 cents) or gliding up
to an octave; timbres from a pure sine through harmonic series of random slope, odd harmonics
only, to a random smooth spectral envelope; 5-50 ms attacks, 10-100 ms releases; peaks from
-45 to -3 dBFS; white or pink noise at 5-40 dB SNR under 40 % of the clips (the rests then hold
noise alone). Every clip gets ``X.f0.npy`` (float32 Hz, 0 = no note) at the centres of 1024-sample
frames every 10 ms, ``(160 j + 512) / 16000`` s, as the renders' annotations, and a row in
``tones.jsonl`` (train split, ``source: tone``, ``score_f0: true``, paths relative to OUT's parent).
They are training material only: the tuner is measured on separate steady tones
(``benchmarks/tuner_sines.py``) and the recipe's evaluation is unchanged.

Deterministic for a given ``--seed``; each clip draws from its own random stream, so asking for
more clips never changes the ones already written. Nothing here is copied from a dataset: the
tones are made from their parameters.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

SAMPLE_RATE = 16000
HOP = 160
FRAME = 1024
F0_RANGE_HZ = (40.0, 1900.0)
NYQUIST_MARGIN_HZ = 7000.0  # partials above this are left out (the front end's bands end near 5.7 kHz)


def _f0_curve(rng: np.random.Generator, n: int) -> np.ndarray:
    """Per-sample f0 of one note: steady, with vibrato, or a glide."""
    lo, hi = np.log2(F0_RANGE_HZ[0]), np.log2(F0_RANGE_HZ[1])
    f0 = 2.0 ** rng.uniform(lo, hi)
    t = np.arange(n) / SAMPLE_RATE
    kind = rng.choice(["steady", "vibrato", "glide"], p=[0.6, 0.2, 0.2])
    cents = np.zeros(n)
    if kind == "vibrato":
        cents = rng.uniform(10, 60) * np.sin(2 * np.pi * rng.uniform(4, 7) * t + rng.uniform(0, 2 * np.pi))
    elif kind == "glide":
        target = np.clip(np.log2(f0) + rng.uniform(-1, 1), lo, hi)
        cents = 1200 * (target - np.log2(f0)) * np.clip(t / max(t[-1], 1e-9), 0, 1)
    return f0 * 2.0 ** (cents / 1200)


def _partials(rng: np.random.Generator, f0_max: float) -> np.ndarray:
    """Amplitudes of harmonics 1..K for one timbre (harmonic 1 first)."""
    k = np.arange(1, max(1, int(NYQUIST_MARGIN_HZ // f0_max)) + 1, dtype=np.float64)
    timbre = rng.choice(["sine", "slope", "odd", "envelope"], p=[0.35, 0.4, 0.15, 0.1])
    if timbre == "sine":
        return np.ones(1)
    if timbre == "slope":
        return k ** -rng.uniform(0.5, 2.5)
    if timbre == "odd":
        return np.where(k % 2 == 1, k ** -rng.uniform(0.8, 2.0), 0.0)
    # a smooth random envelope over log frequency: a few broad resonances
    centres = rng.uniform(np.log2(150), np.log2(4000), size=3)
    logf = np.log2(k * f0_max)
    env = sum(np.exp(-0.5 * ((logf - c) / rng.uniform(0.3, 1.0)) ** 2) for c in centres)
    env[0] = max(env[0], 0.05)  # the fundamental is never missing: its f0 must be the one heard
    return env / env.max()


def _note(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(samples, per-sample f0) of one note."""
    f0 = _f0_curve(rng, n)
    amps = _partials(rng, float(f0.max()))
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
    x = np.zeros(n)
    for h, a in enumerate(amps, start=1):
        if a > 0:
            x += a * np.sin(h * phase + rng.uniform(0, 2 * np.pi))
    attack = min(n // 2, int(rng.uniform(0.005, 0.05) * SAMPLE_RATE))  # a note cut short by the clip's end
    release = min(n - attack, int(rng.uniform(0.01, 0.1) * SAMPLE_RATE))  # keeps both within it
    env = np.ones(n)
    env[:attack] = np.linspace(0, 1, attack, endpoint=False)
    if release:
        env[n - release:] = np.linspace(1, 0, release)
    return x * env, f0


def _noise(rng: np.random.Generator, n: int) -> np.ndarray:
    white = rng.standard_normal(n)
    if rng.random() < 0.5:
        return white
    spectrum = np.fft.rfft(white)  # pink: 1/f power
    spectrum /= np.sqrt(np.maximum(np.arange(len(spectrum)), 1))
    pink = np.fft.irfft(spectrum, n)
    return pink / (pink.std() + 1e-12)


def make_clip(seed: int, index: int, seconds: float) -> tuple[np.ndarray, np.ndarray, dict]:
    """(float32 samples, per-sample f0 with 0 in rests, description) of clip ``index``."""
    rng = np.random.default_rng([seed, index])
    n = int(seconds * SAMPLE_RATE)
    x, f0 = np.zeros(n), np.zeros(n)
    pos, notes = 0, 0
    while pos < n:
        length = min(n - pos, int(rng.uniform(0.3, 1.2) * SAMPLE_RATE))
        if rng.random() < 0.8:
            x[pos:pos + length], f0[pos:pos + length] = _note(rng, length)
            notes += 1
        pos += length
    peak_db = rng.uniform(-45, -3)
    x *= 10 ** (peak_db / 20) / max(np.abs(x).max(), 1e-9)
    snr_db = None
    if rng.random() < 0.4 and notes:
        snr_db = float(rng.uniform(5, 40))
        tonal_rms = np.sqrt(np.mean(x[f0 > 0] ** 2))
        x += _noise(rng, n) * tonal_rms * 10 ** (-snr_db / 20)
    x = np.clip(x, -1, 1)
    return x.astype(np.float32), f0, {"notes": notes, "peak_dbfs": round(float(peak_db), 1), "snr_db": snr_db}


def f0_at_frame_centres(f0_per_sample: np.ndarray) -> np.ndarray:
    """The f0 at the centre of every 10 ms 1024-sample frame (0 where no note sounds there)."""
    n_frames = 0 if len(f0_per_sample) < FRAME else 1 + (len(f0_per_sample) - FRAME) // HOP
    centres = np.arange(n_frames) * HOP + FRAME // 2
    return f0_per_sample[centres].astype(np.float32)


def main(argv: list[str] | None = None) -> int:
    import soundfile as sf

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="/work/data/pitch", help="data directory (tones/ and tones.jsonl go here)")
    ap.add_argument("--root", default=None, help="manifest paths are relative to this (default: OUT's parent)")
    ap.add_argument("--n-train", type=int, default=300)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    out = Path(args.out).resolve()
    root = Path(args.root).resolve() if args.root else out.parent
    folder = out / "tones"
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(args.n_train):
        wav = folder / f"train-{i:04d}.wav"
        side = wav.with_suffix(".f0.npy")
        x, f0, info = make_clip(args.seed, i, args.seconds)
        if not (wav.is_file() and side.is_file()):
            sf.write(str(wav), x, SAMPLE_RATE, subtype="FLOAT")
            np.save(side, f0_at_frame_centres(f0))
        rows.append({"path": str(wav.relative_to(root)), "labels": [], "split": "train", "source": "tone",
                     "f0": str(side.relative_to(root)), "score_f0": True, **info})
    (out / "tones.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    print(f"{len(rows)} tones ({args.seconds:g} s) -> {out / 'tones.jsonl'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
