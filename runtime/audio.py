"""Reading audio files for the front end: decode, downmix, resample, check.

The front end never resamples silently: audio at another rate is converted
here, explicitly, with soxr ("VHQ"), before any frame is computed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


class AudioError(ValueError):
    """Audio that cannot be used: unreadable, empty, non-finite or out of range."""


def resample(samples: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Resample mono float32 audio with soxr (very high quality); a no-op at equal rates."""
    if from_rate == to_rate:
        return samples
    if from_rate <= 0 or to_rate <= 0:
        raise AudioError(f"sample rates must be positive, got {from_rate} -> {to_rate}")
    try:
        import soxr
    except ImportError as exc:
        raise ImportError(
            f"audio at {from_rate} Hz must be resampled to {to_rate} Hz, which needs soxr: "
            "pip install 'edgetag[runtime]'"
        ) from exc
    return soxr.resample(samples, from_rate, to_rate, quality="VHQ").astype(np.float32, copy=False)


def to_mono(samples: np.ndarray) -> np.ndarray:
    """[frames, channels] -> [frames] by averaging the channels; 1-D passes through."""
    if samples.ndim == 1:
        return samples
    if samples.ndim != 2:
        raise AudioError(f"expected [samples] or [samples, channels] audio, got shape {samples.shape}")
    return samples.mean(axis=1, dtype=np.float64).astype(np.float32)


def check_finite(samples: np.ndarray, source: str) -> None:
    """Refuse NaN or infinite samples with the index of the first one."""
    bad = ~np.isfinite(samples)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise AudioError(f"{source}: sample {first} is {samples[first]} (non-finite audio cannot be analysed)")


def load_audio(
    path: str | Path,
    sample_rate: int,
    start: float | None = None,
    end: float | None = None,
) -> np.ndarray:
    """Decode ``path`` (any format libsndfile reads) to mono float32 at ``sample_rate``.

    ``start``/``end`` (seconds) select a segment; only that segment is read.
    """
    try:
        import soundfile as sf
    except ImportError as exc:
        raise ImportError("reading audio files needs soundfile: pip install 'edgetag[runtime]'") from exc
    path = Path(path)
    try:
        info = sf.info(str(path))
    except Exception as exc:  # libsndfile raises several types for unreadable files
        raise AudioError(f"{path}: cannot read audio ({exc})") from None
    first = 0 if start is None else int(round(start * info.samplerate))
    last = info.frames if end is None else int(round(end * info.samplerate))
    if first < 0 or last > info.frames or first >= last:
        raise AudioError(
            f"{path}: segment [{start}, {end}] s is outside the file's {info.frames / info.samplerate:.3f} s"
        )
    try:
        data, rate = sf.read(str(path), start=first, stop=last, dtype="float32", always_2d=True)
    except Exception as exc:
        raise AudioError(f"{path}: cannot decode audio ({exc})") from None
    if data.shape[0] == 0:
        raise AudioError(f"{path}: no samples in the selected segment")
    mono = to_mono(data)
    check_finite(mono, str(path))
    return resample(mono, rate, sample_rate)
