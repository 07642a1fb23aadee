"""A built-in demo piece, so the first command works with no audio file and no microphone.

`demo_music` synthesises a few seconds of music in numpy, deterministically: a
plucked-string melody (Karplus-Strong: a noise burst through a delay line with a
low-pass in the loop, which rings at the delay's pitch like a guitar string)
over a drum pattern (a kick as a falling sine, a hi-hat as filtered noise). The
notes are known, so the pitch model's output can be checked by ear and eye; but not
to the cent: a string's delay line is a whole number of samples and its loop's
two-tap average shortens the period by half a sample, so at 16 kHz the strings ring
sharp of the named notes (A4 at 450.7 Hz, +41 cents; C4 at 264.5 Hz, +19), and a tuner reads
them so.
"""

from __future__ import annotations

import numpy as np

#: (MIDI note, start beat, length in beats) of the melody: an A-minor arpeggio figure.
MELODY: tuple[tuple[int, float, float], ...] = (
    (57, 0.0, 1.0), (60, 1.0, 1.0), (64, 2.0, 1.0), (69, 3.0, 1.0),
    (67, 4.0, 1.0), (64, 5.0, 1.0), (62, 6.0, 1.0), (60, 7.0, 1.0),
    (57, 8.0, 2.0), (64, 10.0, 2.0), (69, 12.0, 4.0),
)
TEMPO_BPM = 120.0


def midi_to_hz(note: float) -> float:
    return 440.0 * 2.0 ** ((note - 69.0) / 12.0)


def _pluck(freq: float, n: int, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """One Karplus-Strong string: a delay line of round(sample_rate / freq) samples, averaged each pass (it
    rings at sample_rate / (delay - 0.5): the average moves the waveform half a sample per pass)."""
    delay = max(2, int(round(sample_rate / freq)))
    line = rng.uniform(-1.0, 1.0, delay)
    out = np.empty(n)
    for start in range(0, n, delay):
        stop = min(start + delay, n)
        out[start:stop] = line[: stop - start]
        # the loop's two-tap average: a gentle low-pass, so high partials die first
        line = 0.996 * 0.5 * (line + np.roll(line, -1))
    return out


def demo_music(sample_rate: int = 16000, seconds: float = 8.0) -> np.ndarray:
    """``seconds`` of the demo piece at ``sample_rate``, float32 in [-1, 1]."""
    rng = np.random.default_rng(0)
    n = int(round(seconds * sample_rate))
    beat = 60.0 / TEMPO_BPM
    mix = np.zeros(n)
    for note, start, length in MELODY:
        s, e = int(start * beat * sample_rate), int((start + length) * beat * sample_rate)
        if s >= n:
            break
        mix[s : min(e, n)] += 0.5 * _pluck(midi_to_hz(note), min(e, n) - s, sample_rate, rng)
    t_kick = np.arange(int(0.25 * sample_rate)) / sample_rate
    kick = np.sin(2 * np.pi * np.cumsum(50.0 + 100.0 * np.exp(-t_kick / 0.03)) / sample_rate) * np.exp(-t_kick / 0.12)
    hat = np.diff(rng.standard_normal(int(0.05 * sample_rate) + 1)) * np.exp(-np.arange(int(0.05 * sample_rate)) / (0.01 * sample_rate))
    for k in range(int(seconds / (beat / 2)) + 1):
        s = int(k * beat / 2 * sample_rate)
        drum = kick if k % 2 == 0 else 0.15 * hat
        e = min(s + len(drum), n)
        if s < n:
            mix[s:e] += 0.6 * drum[: e - s]
    return (0.8 * mix / max(np.abs(mix).max(), 1e-9)).astype(np.float32)


def demo_signal(sample_rate: int, seconds: float) -> np.ndarray:
    """A deterministic test signal: a rising chirp, a chord, a noise burst, silence (``edgetag features --demo``)."""
    t = np.arange(int(sample_rate * seconds)) / sample_rate
    quarter = len(t) // 4
    top_hz = 0.8 * sample_rate / 2
    chirp_hz = 100.0 * (top_hz / 100.0) ** (t / (seconds / 4))  # exponential sweep over the first quarter
    chirp = 0.5 * np.sin(2 * np.pi * np.cumsum(chirp_hz) / sample_rate)
    chord = sum(0.2 * np.sin(2 * np.pi * f * t) for f in (261.63, 329.63, 392.0))
    noise = 0.3 * np.random.default_rng(0).standard_normal(len(t))
    signal = np.concatenate([chirp[:quarter], chord[quarter : 2 * quarter], noise[2 * quarter : 3 * quarter]])
    return np.concatenate([signal, np.zeros(len(t) - len(signal))]).astype(np.float32)
