"""Reading audio files: decode a segment, downmix, resample, check.

Used by the runtime (``edgetag tag``, ``edgetag features``) and by training
(manifests, teacher caches), so it needs only numpy, soundfile and soxr. The
front end never resamples silently: audio at another rate is converted here,
explicitly, before any frame is computed.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "AudioError",
    "AudioInfo",
    "AudioNotFoundError",
    "AudioReadError",
    "NonFiniteAudioError",
    "SegmentRangeError",
    "audio_info",
    "load_audio",
]

#: Resampling quality passed to soxr unless the caller asks otherwise.
DEFAULT_RESAMPLE_QUALITY = "HQ"
_QUALITIES = ("QQ", "LQ", "MQ", "HQ", "VHQ")
#: Frames decoded before a seek target and thrown away, per libsndfile format
#: (10 MPEG frames of 1152 samples; 4 were needed in our tests).
_SEEK_PREROLL = {"MP3": 10 * 1152}


class AudioError(Exception):
    """Base class of the audio errors; ``reason`` groups them in a `SkipReport`."""

    reason = "unreadable"


class AudioNotFoundError(AudioError, FileNotFoundError):
    """The audio file does not exist."""

    reason = "missing file"


class AudioReadError(AudioError):
    """libsndfile cannot open or decode the file, or it holds no audio."""

    reason = "unreadable"


class NonFiniteAudioError(AudioError, ValueError):
    """The decoded samples contain NaN or Inf."""

    reason = "non-finite samples"


class SegmentRangeError(AudioError, ValueError):
    """``start``/``end`` are invalid or outside the file."""

    reason = "segment out of range"


@dataclass(frozen=True)
class AudioInfo:
    """What the file header says (no decoding)."""

    sample_rate: int
    frames: int
    channels: int
    format: str
    subtype: str

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate if self.sample_rate else 0.0


def _open(path: Path):  # -> soundfile.SoundFile
    import soundfile as sf  # imported here: the runtime package must not need it at import

    if not path.exists():
        raise AudioNotFoundError(f"audio file not found: {path}")
    if not path.is_file():
        raise AudioReadError(f"not a regular file: {path}")
    try:
        f = sf.SoundFile(str(path))
    except (RuntimeError, OSError, TypeError, ValueError) as e:  # LibsndfileError is a RuntimeError
        raise AudioReadError(f"cannot decode {path}: {e}") from e
    size = path.stat().st_size
    if f.frames > size * _MAX_FRAMES_PER_BYTE:  # every reader of a header asks here, audio_info too
        frames, rate = int(f.frames), int(f.samplerate) or 1
        f.close()
        raise AudioReadError(
            f"{path}: its header claims {frames:,} frames ({frames / rate / 3600:,.1f} h) in {size:,} bytes, more than "
            "any codec packs: a corrupt or crafted header (re-encode the file, e.g. with ffmpeg)"
        )
    return f


def audio_info(path: str | os.PathLike[str]) -> AudioInfo:
    """Header information of an audio file.

    Raises:
        AudioNotFoundError, AudioReadError.
    """
    with _open(Path(path)) as f:
        return AudioInfo(int(f.samplerate), int(f.frames), int(f.channels), str(f.format), str(f.subtype))


#: Frames per byte of file beyond which a header's length is a lie: digital silence in FLAC, the
#: densest real case, packs a few hundred samples per byte.
_MAX_FRAMES_PER_BYTE = 10_000
#: Frames decoded per read: a header that lies about its length costs at most this much memory
#: beyond the audio the file really holds (libsndfile allocates a read's whole request up front).
_READ_BLOCK = 1 << 20


def _read_frames(f, n: int) -> np.ndarray:
    """Up to ``n`` frames [frames, channels] float32 from the current position, read in blocks until the stream ends.

    The buffer grows with what is decoded (doubling, then trimmed), never to a header's claim.
    """
    out = np.empty((min(n, _READ_BLOCK), f.channels), np.float32)
    got = 0
    while got < n:
        wanted = min(n - got, _READ_BLOCK)
        if got + wanted > len(out):
            grown = np.empty((min(n, max(2 * len(out), got + wanted)), f.channels), np.float32)
            grown[:got] = out[:got]
            out = grown
        block = f.read(wanted, dtype="float32", always_2d=True, out=out[got : got + wanted])
        got += len(block)
        if len(block) < wanted:  # a short read: the stream ended before the header said
            break
    return out[:got]


def load_audio(
    path: str | os.PathLike[str],
    sample_rate: int,
    start: float | None = None,
    end: float | None = None,
    *,
    quality: str = DEFAULT_RESAMPLE_QUALITY,
    end_tolerance: float = 0.01,
    context: float = 0.05,
) -> np.ndarray:
    """Decode ``[start, end)`` of an audio file as mono float32 at ``sample_rate``.

    Only the segment (plus ``context`` seconds each side when resampling) is
    decoded: the file is opened, seeked to the segment and read. Channels are
    averaged (not summed, so a centred mono source keeps its level). If the
    file's rate differs, the block is resampled with soxr at ``quality``
    (default ``"HQ"``) and trimmed. The context, and a block start on the
    resampler's period, make the result equal (to ~1e-6) to resampling the
    whole file and slicing it, so it does not depend on how a file is cut
    into segments.

    Precisely: with ``a = round(start * file_rate)`` and ``b = round(end *
    file_rate)`` (frames of the file), the result is the whole file,
    downmixed and resampled, over output samples ``round(a * r)`` to
    ``round(b * r)``, ``r = sample_rate / file_rate``; at the file's own rate,
    frames ``a`` to ``b``. Samples are not clipped: decoders (MP3 especially)
    and resampling can give values slightly beyond 1.0.

    Args:
        path: Audio file (any format libsndfile reads).
        sample_rate: Target rate in Hz (a positive integer).
        start: Segment start in seconds (None: 0).
        end: Segment end in seconds, exclusive (None: end of file). An end
            past the file by at most ``end_tolerance`` seconds is clamped
            (manifests often round durations); further is an error.
        quality: soxr quality: "QQ", "LQ", "MQ", "HQ" or "VHQ".
        context: Seconds of extra audio decoded each side for resampling.

    Raises:
        AudioNotFoundError: no such file.
        AudioReadError: libsndfile cannot open or decode it, it is empty, or
            it ends before the requested segment does.
        NonFiniteAudioError: NaN or Inf samples in what was read.
        SegmentRangeError: start/end invalid or outside the file.
    """
    import soxr

    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)) or sample_rate <= 0:
        raise ValueError(f"sample_rate must be a positive integer, got {sample_rate!r}")
    sample_rate = int(sample_rate)
    if quality not in _QUALITIES:
        raise ValueError(f"quality must be one of {_QUALITIES}, got {quality!r}")
    for name, t in (("start", start), ("end", end)):
        if t is not None and (isinstance(t, bool) or not math.isfinite(t) or t < 0):
            raise SegmentRangeError(f"{name} must be a finite number of seconds >= 0, got {t!r}")
    if start is not None and end is not None and end <= start:
        raise SegmentRangeError(f"end ({end} s) must be greater than start ({start} s)")

    path = Path(path)
    with _open(path) as f:
        sr_in = int(f.samplerate)
        n_total = int(f.frames)
        duration = n_total / sr_in if sr_in else 0.0
        if n_total <= 0 or sr_in <= 0:
            raise AudioReadError(f"{path} holds no audio frames")
        s0 = 0 if start is None else int(round(start * sr_in))
        if s0 >= n_total:
            raise SegmentRangeError(f"start {start} s is at or past the end of {path} ({duration:.3f} s)")
        if end is None:
            s1 = n_total
        else:
            s1 = int(round(end * sr_in))
            if s1 > n_total:
                if (s1 - n_total) / sr_in > end_tolerance:
                    raise SegmentRangeError(
                        f"end {end} s is past the end of {path} ({duration:.3f} s)"
                    )
                s1 = n_total
            if s1 <= s0:
                raise SegmentRangeError(f"segment [{start}, {end}) s of {path} is empty at {sr_in} Hz")

        # When resampling, decode `context` more on each side so the filter
        # sees real signal at the segment's edges, and start the block on a
        # multiple of the resampling period (sr_in / gcd) so its output grid
        # is the whole file's output grid.
        first, last = s0, s1
        if sr_in != sample_rate:
            period = sr_in // math.gcd(sr_in, sample_rate)
            ctx = max(0, int(round(context * sr_in)))
            first = (max(0, s0 - ctx) // period) * period
            last = min(n_total, s1 + ctx)
        # libsndfile's MP3 seek lands on the right sample, but frames that
        # borrow bits from earlier frames (the bit reservoir) decode wrong
        # for up to ~4 frames after it; decode a lead-in and drop it.
        lead = min(first, _SEEK_PREROLL.get(str(f.format), 0))
        try:
            if first - lead:
                f.seek(first - lead)
            block = _read_frames(f, last - first + lead)[lead:]
        except (RuntimeError, OSError, ValueError) as e:
            raise AudioReadError(f"cannot decode {path} at {first / sr_in:.3f} s: {e}") from e

    got = block.shape[0]
    if got < last - first:
        # The header promised more frames than the stream holds: a truncated
        # file, or libsndfile's MP3 length estimate (often a fraction of a
        # second long). Fine when reading to the end of the file; an error
        # when an explicit end lies past the real end.
        real_end = first + got
        if real_end <= s0 or (end is not None and (s1 - real_end) / sr_in > end_tolerance):
            raise AudioReadError(
                f"{path} ended early: header says {duration:.3f} s, decoded only up to "
                f"{real_end / sr_in:.3f} s (truncated or corrupt file, or an MP3 length estimate)"
            )
        n_total = last = real_end
        s1 = min(s1, real_end)

    finite = np.isfinite(block)
    if not finite.all():
        bad = int(np.size(finite) - np.count_nonzero(finite))
        first_bad = int(np.argmin(finite.all(axis=1)))
        raise NonFiniteAudioError(
            f"{path} has {bad} NaN/Inf sample(s), the first at {(first + first_bad) / sr_in:.3f} s"
        )

    # Average channels: keeps a mono source at the same level whatever the
    # channel count; the front end expects [-1, 1].
    mono = block.mean(axis=1, dtype=np.float32) if block.shape[1] > 1 else block[:, 0]
    if sr_in == sample_rate:
        out = mono[s0 - first : s1 - first]
    else:
        resampled = soxr.resample(mono, sr_in, sample_rate, quality)
        base = first * sample_rate // sr_in  # exact: first is a multiple of the period
        o0, o1 = _out_index(s0, sr_in, sample_rate), _out_index(s1, sr_in, sample_rate)
        if o1 <= o0:
            raise SegmentRangeError(f"segment [{start}, {end}) s of {path} is empty at {sample_rate} Hz")
        out = resampled[o0 - base : o1 - base]
    return np.ascontiguousarray(out, dtype=np.float32)


def _out_index(frame: int, sr_in: int, sr_out: int) -> int:
    """round(frame * sr_out / sr_in), half up, in exact integer arithmetic."""
    return (2 * frame * sr_out + sr_in) // (2 * sr_in)
