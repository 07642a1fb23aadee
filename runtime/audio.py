"""Reading audio files: decode a segment, downmix, resample, check.

Used by the runtime (``edgetag tag``, ``edgetag features``) and by training
(manifests, teacher caches), so it needs only numpy, soundfile and soxr. The
front end never resamples silently: audio at another rate is converted here,
explicitly, before any frame is computed. Containers libsndfile cannot read
(MP4/M4A, WebM, AAC, ...) are decoded by ffmpeg when it is installed
(`edgetag.runtime.ffmpeg`), and refused with a hint to install it when not.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from edgetag.runtime.downmix import DownmixCheck

__all__ = [
    "AudioError",
    "AudioInfo",
    "AudioNotFoundError",
    "AudioReadError",
    "AudioWarning",
    "DownmixCheck",
    "NonFiniteAudioError",
    "SegmentRangeError",
    "audio_info",
    "load_audio",
    "stream_audio",
]

#: Receives one-line warnings about a file (truncated, channels that cancel, float samples far past ±1);
#: None: `warnings.warn(AudioWarning)`.
Warn = Callable[[str], None]

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


class _FormatRefused(AudioReadError):
    """libsndfile cannot open the file at all: perhaps a container that ffmpeg decodes (`_ffmpeg_for`)."""


class NonFiniteAudioError(AudioError, ValueError):
    """The decoded samples contain NaN or Inf."""

    reason = "non-finite samples"


class SegmentRangeError(AudioError, ValueError):
    """``start``/``end`` are invalid or outside the file."""

    reason = "segment out of range"


class AudioWarning(UserWarning):
    """Audio that decodes but not as its file promised: truncated, or channels that cancel in the downmix."""


def _warner(warn: Warn | None) -> Warn:
    if warn is not None:
        return warn
    return lambda message: warnings.warn(message, AudioWarning, stacklevel=3)


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
        hint = " (audio from stdin: edgetag listen --stdin --rate R, raw PCM)" if str(path) == "-" else ""
        raise AudioNotFoundError(f"audio file not found: {path}{hint}")
    if not path.is_file():
        raise AudioReadError(f"not a regular file: {path}")
    try:
        f = sf.SoundFile(str(path))
    except (RuntimeError, OSError, TypeError, ValueError) as e:  # LibsndfileError is a RuntimeError
        raise _FormatRefused(f"cannot decode {path}: {e}") from e
    size = path.stat().st_size
    if f.frames > size * _MAX_FRAMES_PER_BYTE:  # every reader of a header asks here, audio_info too
        frames, rate = int(f.frames), int(f.samplerate) or 1
        f.close()
        raise AudioReadError(
            f"{path}: its header claims {frames:,} frames ({frames / rate / 3600:,.1f} h) in {size:,} bytes, more than "
            "any codec packs: a corrupt or crafted header (re-encode the file, e.g. with ffmpeg)"
        )
    return f


def _ffmpeg_for(path: Path, refused: _FormatRefused) -> str:
    """The ffmpeg binary that decodes ``path``, which libsndfile ``refused``.

    Raises ``refused`` itself when the file is no container ffmpeg is for (a damaged
    WAV stays libsndfile's error), and a hint to install ffmpeg when it is one and
    ffmpeg is missing.
    """
    from edgetag.runtime import ffmpeg

    kind = ffmpeg.container_kind(path)
    if kind is None:
        raise refused
    binary = ffmpeg.ffmpeg_binary()
    if binary is None:
        raise AudioReadError(f"{str(refused).rstrip('.')}; {ffmpeg.missing_ffmpeg_hint(kind)}") from None
    return binary


def _ffmpeg_blocks(path: Path, sample_rate: int, block_frames: int, warn: Warn, binary: str) -> Iterator[np.ndarray]:
    """``path`` decoded by ffmpeg: mono float32 blocks at ``sample_rate``, checked for NaN/Inf as libsndfile's are."""
    from edgetag.runtime.ffmpeg import decode_blocks

    def failed(message: str, seconds: float) -> AudioReadError:
        where = f" at {seconds:.3f} s" if seconds > 0 else ""
        return AudioReadError(f"cannot decode {path} through ffmpeg{where}: {message}")

    decoded = 0
    check = _SampleCheck(path, sample_rate, warn)
    for block in decode_blocks(path, sample_rate, block_frames=block_frames, binary=binary, on_error=failed,
                               warn=warn):
        check(block[:, None], decoded)
        decoded += len(block)
        yield block


def _load_with_ffmpeg(path: Path, sample_rate: int, start: float | None, end: float | None, binary: str,
                      end_tolerance: float, warn: Warn) -> np.ndarray:
    """`load_audio` of a file ffmpeg decodes: samples ``[round(start * rate), round(end * rate))`` of the
    whole file decoded to mono at ``sample_rate`` (decoded from its start, so a segment is exactly that
    slice of the whole; ffmpeg stops once the segment is read)."""
    s0 = 0 if start is None else int(round(start * sample_rate))
    s1 = None if end is None else int(round(end * sample_rate))
    parts: list[np.ndarray] = []
    got = 0
    blocks = _ffmpeg_blocks(path, sample_rate, STREAM_BLOCK, warn, binary)
    try:
        for block in blocks:
            lo, got = got, got + len(block)
            a, b = max(s0 - lo, 0), len(block) if s1 is None else min(s1 - lo, len(block))
            if b > a:
                parts.append(block[a:b])
            if s1 is not None and got >= s1:
                break
    finally:
        blocks.close()  # stops ffmpeg when the segment ended before the file
    if s0 >= got:
        raise SegmentRangeError(f"start {start} s is at or past the end of {path} ({got / sample_rate:.3f} s)")
    if s1 is not None and s1 > got and (s1 - got) / sample_rate > end_tolerance:
        raise SegmentRangeError(f"end {end} s is past the end of {path} ({got / sample_rate:.3f} s)")
    out = np.concatenate(parts) if parts else np.zeros(0, np.float32)
    if not len(out):
        raise SegmentRangeError(f"segment [{start}, {end}) s of {path} is empty at {sample_rate} Hz")
    return np.ascontiguousarray(out, dtype=np.float32)


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


def _read_into(f, out: np.ndarray) -> int:
    """Decode up to ``len(out)`` frames into ``out`` (float32 [n, channels], C-contiguous); returns how many.

    Calls libsndfile's ``sf_readf_float`` through soundfile's own binding rather than
    ``SoundFile.read``, which seeks to where it stopped after every read: a seek resets
    libsndfile's MP3 decoder, and the frames after it decode wrong (the bit reservoir is
    lost), so an MP3 read in blocks that way differs from one whole read by up to 0.3 at
    every block boundary. Sequential reads decode every block exactly as one read would.
    """
    import soundfile as sf

    snd, ffi = getattr(sf, "_snd", None), getattr(sf, "_ffi", None)
    if snd is None or ffi is None or not hasattr(f, "_file"):  # a soundfile without that binding: its public read
        return len(f.read(len(out), dtype="float32", always_2d=True, out=out))
    got = int(snd.sf_readf_float(f._file, ffi.cast("float *", out.ctypes.data), len(out)))
    code = snd.sf_error(f._file)
    if code:  # what soundfile would raise: libsndfile's own message, and the frames decoded before it
        raise _DecodeError(ffi.string(snd.sf_error_number(code)).decode("utf-8", "replace"), got)
    return got


class _DecodeError(RuntimeError):
    """libsndfile's error in a read, with the ``frames`` it decoded into the buffer before it (a FLAC that
    loses sync mid-block still gives the whole frames before the damage)."""

    def __init__(self, message: str, frames: int) -> None:
        super().__init__(message)
        self.frames = max(int(frames), 0)


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
        n_read = _read_into(f, out[got : got + wanted])
        got += n_read
        if n_read < wanted:  # a short read: the stream ended before the header said
            break
    return out[:got]


#: The largest Ogg page: a 27-byte header, 255 lacing values, 255 segments of 255 bytes.
_OGG_MAX_PAGE = 27 + 255 + 255 * 255
#: MP3 lengths in the header are libsndfile's estimate, often a fraction of a second long: only a
#: bigger shortfall is worth a warning.
_MP3_LENGTH_SLACK_S = 1.0


def _position(f, fallback: int) -> int:
    """Where libsndfile stopped (after a failed read its position is the last frame it decoded)."""
    try:
        return int(f.tell())
    except Exception:  # noqa: BLE001 - a stream in error may refuse even tell()
        return fallback


def _ogg_unfinished(path: Path) -> bool:
    """Whether an Ogg file lacks its end: no complete page ends the file, or the last one has no end-of-stream flag.

    An encoder always closes the stream with an end-of-stream page; a download or a copy cut short
    does not, and libsndfile then reports (and decodes) only what is there, without an error.
    """
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            fh.seek(max(0, size - _OGG_MAX_PAGE))
            tail = fh.read()
    except OSError:
        return False
    at = tail.find(b"OggS")
    while at >= 0:
        if at + 27 <= len(tail) and tail[at + 4] == 0:  # capture pattern, then stream structure version 0
            n_segments = tail[at + 26]
            if at + 27 + n_segments <= len(tail):
                end = at + 27 + n_segments + sum(tail[at + 27 : at + 27 + n_segments])
                if end == len(tail):
                    return not tail[at + 5] & 0x04  # header type flag 0x04: end of stream
        at = tail.find(b"OggS", at + 1)
    return True


def _truncation(path: Path, fmt: str, decoded: int, header: int, rate: int) -> str | None:
    """The warning for a file read to its end that stopped before its header said, or an unfinished Ogg stream."""
    short = header - decoded
    if short > 0 and not (fmt == "MPEG" and short / rate <= _MP3_LENGTH_SLACK_S):
        return (f"{path}: decoding stopped at {decoded / rate:.3f} s, but its header says {header / rate:.3f} s "
                "(a truncated or damaged file); using the audio up to there")
    if fmt == "OGG" and _ogg_unfinished(path):
        return (f"{path}: decoding stopped at {decoded / rate:.3f} s, where the Ogg stream ends without its "
                "end-of-stream page (a truncated file); using the audio up to there")
    return None


def _no_frames(path: Path, fmt: str) -> AudioReadError:
    if fmt == "OGG" and _ogg_unfinished(path):
        return AudioReadError(f"{path} holds no audio frames: its Ogg stream is cut short (a truncated file)")
    return AudioReadError(f"{path} holds no audio frames")


#: Input sample rates edgetag resamples from: a rate outside them is a mistake (a channel count or a kHz figure
#: given as the rate), and resampling 1 Hz audio to 16 kHz would make 16,000 samples of each one.
MIN_INPUT_RATE_HZ, MAX_INPUT_RATE_HZ = 1_000, 1_000_000


def check_input_rate(rate: int, what: str) -> None:
    """`ValueError` for a sample rate outside [`MIN_INPUT_RATE_HZ`, `MAX_INPUT_RATE_HZ`], naming ``what``."""
    if not MIN_INPUT_RATE_HZ <= rate <= MAX_INPUT_RATE_HZ:
        raise ValueError(f"{what} {rate} Hz is not an audio sample rate (edgetag takes {MIN_INPUT_RATE_HZ:,} Hz to "
                         f"{MAX_INPUT_RATE_HZ:,} Hz; in Hz, not kHz: 44100, not 44.1)")


#: Float audio whose samples pass this (40 dB above full scale, ±1) was most likely saved at integer scale.
LOUD_PEAK = 100.0


def loud_note(source: str, samples: np.ndarray, first_s: float, rate: int) -> str | None:
    """The one-line warning for float ``samples`` ([frames] or [frames, channels], starting ``first_s``
    seconds into ``source``) that pass `LOUD_PEAK`, or None when they stay within it."""
    if not len(samples) or not (samples.max() > LOUD_PEAK or samples.min() < -LOUD_PEAK):
        return None
    magnitude = np.abs(samples) if samples.ndim == 1 else np.abs(samples).max(axis=1)
    at = int(np.argmax(magnitude > LOUD_PEAK))
    peak = float(np.nanmax(magnitude))
    return (f"{source}: samples reach {peak:.3g} from {first_s + at / rate:.3f} s, {20 * math.log10(peak):.0f} dB "
            "above full scale (float audio is read as it is, full scale ±1; a float file saved at integer scale, "
            "±32768, reads this loud): results for audio this loud mean little; scale it to ±1")


#: Files already warned about as too loud (path and modification time): a training loop that reads
#: one file a segment at a time, epoch after epoch, hears it once.
_LOUD_WARNED: set[tuple[str, int]] = set()


class _SampleCheck:
    """A file's decoded blocks, checked in order: NaN/Inf raise `NonFiniteAudioError`; samples beyond
    `LOUD_PEAK` get one warning per file and process (float files are read as they are, not clipped)."""

    def __init__(self, path: Path, rate: int, warn: Warn) -> None:
        self.path, self.rate, self.warn = path, rate, warn
        self.loud_seen = False

    def __call__(self, block: np.ndarray, first: int) -> None:
        """``block`` [frames, channels], whose first frame is frame ``first`` of the file."""
        finite = np.isfinite(block)
        if not finite.all():
            bad = int(np.size(finite) - np.count_nonzero(finite))
            first_bad = int(np.argmin(finite.all(axis=1)))
            raise NonFiniteAudioError(
                f"{self.path} has {bad} NaN/Inf sample(s), the first at {(first + first_bad) / self.rate:.3f} s"
            )
        note = None if self.loud_seen else loud_note(str(self.path), block, first / self.rate, self.rate)
        if note is not None:
            self.loud_seen = True
            try:
                key = (str(self.path.resolve()), self.path.stat().st_mtime_ns)
            except OSError:
                key = (str(self.path), 0)
            if key not in _LOUD_WARNED:
                _LOUD_WARNED.add(key)
                self.warn(note)


def load_audio(
    path: str | os.PathLike[str],
    sample_rate: int,
    start: float | None = None,
    end: float | None = None,
    *,
    quality: str = DEFAULT_RESAMPLE_QUALITY,
    end_tolerance: float = 0.01,
    context: float = 0.05,
    warn: Warn | None = None,
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
        path: Audio file (any format libsndfile reads; MP4/M4A, WebM, AAC and other containers
            through ffmpeg when it is installed: mono at ``sample_rate`` from ffmpeg's downmix and
            resampler, a segment being that slice of the whole decoding).
        sample_rate: Target rate in Hz (a positive integer).
        start: Segment start in seconds (None: 0).
        end: Segment end in seconds, exclusive (None: end of file). An end
            past the file by at most ``end_tolerance`` seconds is clamped
            (manifests often round durations); further is an error.
        quality: soxr quality: "QQ", "LQ", "MQ", "HQ" or "VHQ".
        context: Seconds of extra audio decoded each side for resampling.
        warn: Called with a one-line warning when a read to the end of the file
            stops before its header said or where an Ogg stream lacks its end
            (truncated files: the audio up to there is returned), or when the
            channels cancel in the downmix, or when float samples pass ±`LOUD_PEAK` (once per file and
            process); None: ``warnings.warn`` with `AudioWarning`.

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
    warn = _warner(warn)
    try:
        opened = _open(path)
    except _FormatRefused as refused:  # not for libsndfile: ffmpeg's, if it is a container ffmpeg reads
        return _load_with_ffmpeg(path, sample_rate, start, end, _ffmpeg_for(path, refused), end_tolerance, warn)
    with opened as f:
        sr_in = int(f.samplerate)
        n_total = int(f.frames)
        fmt = str(f.format)
        duration = n_total / sr_in if sr_in else 0.0
        if n_total <= 0 or sr_in <= 0:
            raise _no_frames(path, fmt)
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
            raise AudioReadError(f"cannot decode {path} at {_position(f, first) / sr_in:.3f} s: {e} "
                                 "(a truncated or damaged file)") from e

    header_frames = n_total
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
    if last == n_total:  # read to the end: say so if the file stopped before it promised
        note = _truncation(path, fmt, n_total, header_frames, sr_in)
        if note:
            warn(note)

    _SampleCheck(path, sr_in, warn)(block, first)

    # Average channels: keeps a mono source at the same level whatever the
    # channel count; the front end expects [-1, 1].
    mono = block.mean(axis=1, dtype=np.float32) if block.shape[1] > 1 else block[:, 0]
    if block.shape[1] > 1:
        check = DownmixCheck(str(path), sr_in, warn)
        check.add(block, mono)
        check.finish()
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


#: Frames decoded per step of `stream_audio`: 1.5 s at 44.1 kHz, a few hundred kilobytes whatever the channels.
STREAM_BLOCK = 1 << 16


def stream_audio(
    path: str | os.PathLike[str],
    sample_rate: int,
    *,
    quality: str = DEFAULT_RESAMPLE_QUALITY,
    block_frames: int = STREAM_BLOCK,
    warn: Warn | None = None,
) -> Iterator[np.ndarray]:
    """A whole file as `load_audio` (``path``, ``sample_rate``) returns it, in consecutive blocks.

    Decoding, downmix and resampling (soxr's streaming resampler) go a block
    at a time, so memory stays bounded by ``block_frames`` whatever the
    file's length; the blocks joined are bit-identical to `load_audio`'s
    array. The file is opened (and its header checked) at the first
    ``next()``. A decoding error or NaN/Inf samples part-way raise
    `AudioReadError` / `NonFiniteAudioError` naming the time, after the
    blocks before them (a decoding error: after every frame decoded before
    it, the failing read's included); a truncated file ends early with the same warning
    `load_audio` gives. A container libsndfile cannot read comes from an ffmpeg
    subprocess (`edgetag.runtime.ffmpeg`), also a block at a time, the same
    samples as `load_audio` gives for it.
    """
    import soxr

    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)) or sample_rate <= 0:
        raise ValueError(f"sample_rate must be a positive integer, got {sample_rate!r}")
    if quality not in _QUALITIES:
        raise ValueError(f"quality must be one of {_QUALITIES}, got {quality!r}")
    if block_frames < 1:
        raise ValueError(f"block_frames must be >= 1, got {block_frames}")
    sample_rate = int(sample_rate)
    path = Path(path)
    warn = _warner(warn)
    try:
        opened = _open(path)
    except _FormatRefused as refused:  # ffmpeg decodes it, a block at a time, mono at sample_rate
        yield from _ffmpeg_blocks(path, sample_rate, block_frames, warn, _ffmpeg_for(path, refused))
        return
    with opened as f:
        sr_in, n_total, fmt, channels = int(f.samplerate), int(f.frames), str(f.format), int(f.channels)
        if n_total <= 0 or sr_in <= 0:
            raise _no_frames(path, fmt)
        resampler = None if sr_in == sample_rate else soxr.ResampleStream(
            sr_in, sample_rate, 1, dtype="float32", quality=quality)
        check = DownmixCheck(str(path), sr_in, warn) if channels > 1 else None
        check_samples = _SampleCheck(path, sr_in, warn)
        buffer = np.empty((min(block_frames, n_total), channels), np.float32)  # reused: nothing grows
        decoded = 0
        emitted = 0
        held = np.zeros(0, np.float32)  # one block of output kept back, so the end can trim it
        while decoded < n_total:
            wanted = min(block_frames, n_total - decoded)
            failed: AudioReadError | None = None
            try:
                block = buffer[: _read_into(f, buffer[:wanted])]
            except (RuntimeError, OSError, ValueError) as e:
                # the frames decoded before the damage are audio like any other: tagged, then the error
                block = buffer[: min(getattr(e, "frames", 0), wanted)]
                where = _position(f, decoded + len(block)) / sr_in
                failed = AudioReadError(f"cannot decode {path} at {where:.3f} s: {e} (a truncated or damaged file)")
                failed.__cause__ = e
            try:
                check_samples(block, decoded)
            except NonFiniteAudioError:
                if len(held):  # the block before decoded well: its samples first, then the error
                    yield held
                raise
            if failed is not None and not len(block):
                if len(held):
                    yield held
                raise failed
            decoded += len(block)
            # the same per-frame mean as load_audio, so the samples are the same bits
            mono = block.mean(axis=1, dtype=np.float32) if channels > 1 else block[:, 0].copy()
            if check is not None:
                check.add(block, mono)
            out = mono if resampler is None else resampler.resample_chunk(mono)
            if len(held):
                emitted += len(held)
                yield held
            held = out
            if failed is not None:  # (the resampler keeps its last few samples: the audio ends in damage)
                if len(held):
                    yield held
                raise failed
            if len(block) < wanted:  # a short read: the stream ended before the header said
                break
        if decoded == 0:
            raise AudioReadError(
                f"{path} ended early: header says {n_total / sr_in:.3f} s, decoded only up to 0.000 s "
                "(truncated or corrupt file, or an MP3 length estimate)"
            )
        if resampler is not None:
            held = np.concatenate([held, resampler.resample_chunk(np.zeros(0, np.float32), last=True)])
            # load_audio keeps output samples [0, round(decoded * r)) of the whole file's resampling
            held = held[: max(0, _out_index(decoded, sr_in, sample_rate) - emitted)]
        if len(held):
            yield held
        note = _truncation(path, fmt, decoded, n_total, sr_in)
        if note:
            warn(note)
        if check is not None:
            check.finish()


def _out_index(frame: int, sr_in: int, sr_out: int) -> int:
    """round(frame * sr_out / sr_in), half up, in exact integer arithmetic."""
    return (2 * frame * sr_out + sr_in) // (2 * sr_in)
