"""Audio sources for the streaming runtime: microphone, file, stdin.

Every source yields `Chunk`s: mono float32 samples at the model's rate, with
the monotonic time (``time.monotonic()``) at which the last sample was
captured when that means something (microphone, real-time paced file,
stdin), so the runner can measure capture-to-decision latency.

The microphone's audio callback does one thing: copy the block into a
bounded, preallocated `RingBuffer` (a lock, no allocation beyond the
copy). Everything else (downmix, resampling, front end, model) runs in the
thread that iterates `MicSource.chunks()`. Overflows reported by PortAudio
and blocks dropped because the ring was full are counted in `SourceStats`,
never silent. Waits on the ring use timeouts, so a device that stops
delivering ends the stream with a `SourceError` instead of a hang.

sounddevice and soxr are imported only when a source needs them.
"""

from __future__ import annotations

import math
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, BinaryIO, Callable, Iterator

import numpy as np

from edgetag.runtime.audio import loud_note


class SourceError(OSError):
    """An input that cannot be opened or that failed mid-stream; the message says what to do."""


@dataclass
class Chunk:
    samples: np.ndarray
    """float32 [n], mono, at the model's sample rate."""
    capture_end: float | None = None
    """time.monotonic() when the last sample was captured, or None (offline)."""


@dataclass
class SourceStats:
    overflows: int = 0
    """Input overflows reported by the audio driver (status.input_overflow)."""
    dropped_samples: int = 0
    """Samples lost because the ring buffer was full (the worker fell behind)."""
    dropped_blocks: int = 0
    nonfinite_samples: int = 0
    """NaN/Inf samples seen; the chunks holding them are skipped."""
    skipped_samples: int = 0
    """Samples not analysed because their chunk held NaN/Inf."""
    level_dbfs: float = -math.inf
    """RMS level of the last chunk, dB relative to full scale."""
    dropped_decisions: int = 0
    """Decisions dropped because the output was not read fast enough (its queue was full)."""
    catchups: int = 0
    """Times the worker fell behind real time by more than the bound and skipped audio to catch up."""
    lag_skipped_samples: int = 0
    """Samples skipped in those catch-ups (also counted in ``skipped_samples``)."""

    def summary(self) -> str:
        return (
            f"overflows {self.overflows}, dropped {self.dropped_samples} samples "
            f"({self.dropped_blocks} blocks), non-finite {self.nonfinite_samples} samples "
            f"({self.skipped_samples} skipped), {self.dropped_decisions} decisions dropped unread, "
            f"{self.catchups} catch-ups ({self.lag_skipped_samples} samples skipped behind real time)"
        )


def level_dbfs(samples: np.ndarray) -> float:
    """RMS level in dB relative to full scale (-inf for silence or no samples)."""
    if not len(samples):
        return -math.inf
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))
    return 20.0 * math.log10(rms) if rms > 0 else -math.inf


class RingBuffer:
    """A bounded FIFO of float32 frames [capacity, channels], preallocated.

    `write` never blocks and never allocates: a block that does not fit is
    dropped whole and counted. `read` waits (with a timeout) for data and
    returns everything available, with the capture time of its last frame.
    """

    def __init__(self, capacity: int, channels: int = 1) -> None:
        if capacity < 1:
            raise ValueError("ring buffer capacity must be >= 1")
        self.capacity = capacity
        self.channels = channels
        self._data = np.zeros((capacity, channels), np.float32)
        self._read = 0  # total frames read
        self._written = 0  # total frames written
        self._times: deque[tuple[int, float]] = deque(maxlen=4096)  # (written end, capture time of last frame)
        self._cond = threading.Condition(threading.Lock())
        self.dropped_frames = 0
        self.dropped_blocks = 0

    def write(self, block: np.ndarray, capture_end: float) -> bool:
        n = len(block)
        with self._cond:
            if self._written - self._read + n > self.capacity:
                self.dropped_frames += n
                self.dropped_blocks += 1
                return False
            start = self._written % self.capacity
            first = min(n, self.capacity - start)
            self._data[start : start + first] = block[:first]
            if first < n:
                self._data[: n - first] = block[first:]
            self._written += n
            self._times.append((self._written, capture_end))
            self._cond.notify()
        return True

    def read(self, timeout: float) -> tuple[np.ndarray, float] | None:
        """All frames available (waiting up to ``timeout`` s for some), or None."""
        with self._cond:
            if self._written == self._read and not self._cond.wait_for(
                lambda: self._written > self._read, timeout
            ):
                return None
            n = self._written - self._read
            start = self._read % self.capacity
            idx = (start + np.arange(n)) % self.capacity if start + n > self.capacity else slice(start, start + n)
            out = self._data[idx].copy()
            self._read += n
            capture = self._times[-1][1] if self._times else time.monotonic()
        return out, capture

    @property
    def available(self) -> int:
        with self._cond:
            return self._written - self._read


# ---------------------------------------------------------------- microphone
def import_sounddevice() -> Any:
    try:
        import sounddevice
    except ImportError as exc:
        raise SourceError(
            "microphone input needs sounddevice: pip install 'edgetag[mic]' (or use --file / --stdin)"
        ) from exc
    except OSError as exc:  # sounddevice raises OSError when the PortAudio library is missing
        raise SourceError(
            f"microphone input needs the PortAudio library ({exc}); install it "
            "(apt-get install libportaudio2) or use --file / --stdin"
        ) from exc
    return sounddevice


def describe_devices(sd: Any) -> str:
    """Lines listing every audio device, input ones marked."""
    try:
        devices = sd.query_devices()
    except Exception as exc:  # PortAudio errors
        return f"  (cannot list devices: {exc})"
    lines = []
    for i, d in enumerate(devices):
        kind = "input " if d["max_input_channels"] > 0 else "output"
        lines.append(
            f"  {i:3d}  {kind}  {d['name']}  ({d['max_input_channels']} in, "
            f"{d['max_output_channels']} out, {d['default_samplerate']:g} Hz)"
        )
    return "\n".join(lines) if lines else "  (no audio devices at all)"


def resolve_input_device(sd: Any, device: str | int | None) -> tuple[int, dict]:
    """Device index and info for a name (substring), an index or None (the default input)."""
    try:
        devices = sd.query_devices()
    except Exception as exc:
        raise SourceError(f"cannot list audio devices: {exc}; use --file or --stdin") from None
    inputs = [i for i, d in enumerate(devices) if d["max_input_channels"] > 0]
    if not inputs:
        raise SourceError(
            "no audio input device found. Devices:\n"
            + describe_devices(sd)
            + "\nTag a recording instead with --file FILE (or pipe raw PCM with --stdin)."
        )
    if device is None or device == "":
        try:
            index = sd.default.device[0]
        except Exception:
            index = -1
        if index is None or index < 0 or index not in inputs:
            index = inputs[0]
        return index, devices[index]
    if isinstance(device, int) or (isinstance(device, str) and device.strip().lstrip("-").isdigit()):
        index = int(device)
        if index not in inputs:
            what = "is not an input device" if 0 <= index < len(devices) else "does not exist"
            raise SourceError(
                f"audio device {index} {what}. Devices:\n{describe_devices(sd)}\n"
                "Pick an input device by index or name with --device, or use --file FILE."
            )
        return index, devices[index]
    matches = [i for i in inputs if str(device).lower() in devices[i]["name"].lower()]
    exact = [i for i in matches if devices[i]["name"].lower() == str(device).lower()]
    if exact:
        matches = exact[:1]
    if not matches:
        raise SourceError(
            f"no input device named {device!r}. Devices:\n{describe_devices(sd)}\n"
            "Pick an input device by index or name with --device, or use --file FILE."
        )
    if len(matches) > 1:
        names = ", ".join(f"{i} ({devices[i]['name']})" for i in matches)
        raise SourceError(f"--device {device!r} matches several input devices: {names}; give an index")
    return matches[0], devices[matches[0]]


class MicSource:
    """Live audio from a sounddevice input stream (see the module docstring).

    ``stream_factory`` (default ``sounddevice.InputStream``) lets tests drive
    the callback path with a fake device.
    """

    live = True
    """Audio arrives in real time whether or not it is consumed (`StreamRunner` drops, never waits)."""

    def __init__(
        self,
        sample_rate: int,
        device: str | int | None = None,
        *,
        block_ms: float = 10.0,
        ring_seconds: float = 5.0,
        stall_timeout: float = 2.0,
        stream_factory: Any = None,
        sd: Any = None,
        log: Any = None,
    ) -> None:
        self.sample_rate = sample_rate
        self.device_arg = device
        self.block_ms = block_ms
        self.ring_seconds = ring_seconds
        self.stall_timeout = stall_timeout
        self.stats = SourceStats()
        self.log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self._sd = sd
        self._factory = stream_factory
        self._stream = None
        self._ring: RingBuffer | None = None
        self._finished = threading.Event()
        self._callback_error: str | None = None
        self._stop = threading.Event()
        self.device_name = "?"
        self.device_rate = sample_rate
        self.channels = 1

    # -- setup
    def open(self) -> None:
        sd = self._sd or import_sounddevice()
        self._sd = sd
        index, info = resolve_input_device(sd, self.device_arg)
        self.device_name = f"{index}: {info['name']}"
        # Mono when the device takes it (it downmixes itself), else up to two channels averaged here.
        choices = [(c, r) for r in (self.sample_rate, int(round(info["default_samplerate"])))
                   for c in dict.fromkeys((1, max(1, min(int(info["max_input_channels"]), 2))))]
        error = None
        for channels, rate in choices:
            try:
                sd.check_input_settings(device=index, channels=channels, dtype="float32", samplerate=rate)
                break
            except Exception as exc:  # PortAudio says why in its own exception types
                error = exc
        else:
            raise SourceError(f"device {self.device_name} cannot record float32 audio: {error}")
        self.channels = channels
        from edgetag.runtime.downmix import DownmixCheck

        self._downmix = DownmixCheck(f"input device {self.device_name}", rate, lambda msg: self.log(f"warning: {msg}"))
        if rate != self.sample_rate:
            self.log(f"device {self.device_name} does not take {self.sample_rate} Hz; "
                     f"recording at {rate} Hz and resampling")
        self.device_rate = rate
        if rate != self.sample_rate:
            import soxr

            self._resampler = soxr.ResampleStream(rate, self.sample_rate, 1, dtype="float32", quality="HQ")
        else:
            self._resampler = None
        block = max(1, int(round(rate * self.block_ms / 1000)))
        self._ring = RingBuffer(max(4 * block, int(rate * self.ring_seconds)), self.channels)
        factory = self._factory or sd.InputStream
        try:
            self._stream = factory(
                device=index, channels=self.channels, samplerate=rate, dtype="float32",
                blocksize=block, latency="low", callback=self._callback,
                finished_callback=self._finished.set,
            )
            self._stream.start()
        except Exception as exc:
            raise SourceError(f"cannot open input device {self.device_name}: {exc}") from None

    # -- the audio thread: copy and count, nothing else
    def _callback(self, indata, frames, time_info, status) -> None:
        now = time.monotonic()
        if status and status.input_overflow:
            self.stats.overflows += 1
        try:
            delay = time_info.currentTime - time_info.inputBufferAdcTime
        except Exception:
            delay = -1.0
        capture_end = now - delay + (frames - 1) / self.device_rate if 0.0 < delay < 2.0 else now
        self._ring.write(indata, min(capture_end, now))

    # -- the worker side
    def chunks(self) -> Iterator[Chunk]:
        if self._stream is None:
            self.open()
        ring = self._ring
        last_data = time.monotonic()
        while not self._stop.is_set():
            got = ring.read(timeout=0.1)
            self.stats.dropped_samples = ring.dropped_frames
            self.stats.dropped_blocks = ring.dropped_blocks
            if got is None:
                if self._finished.is_set() or not self._stream_active():
                    if self._stop.is_set():
                        return
                    raise SourceError(
                        f"input device {self.device_name} stopped delivering audio "
                        "(unplugged or taken by another program?)"
                    )
                if time.monotonic() - last_data > self.stall_timeout:
                    raise SourceError(
                        f"no audio from input device {self.device_name} for {self.stall_timeout:g} s; "
                        "giving up (device gone or stalled)"
                    )
                continue
            last_data = time.monotonic()
            data, capture = got
            mono = data[:, 0] if data.shape[1] == 1 else data.mean(axis=1, dtype=np.float32)
            if data.shape[1] > 1:
                self._downmix.add(data, mono)  # anti-phase channels would average to silence: say so
            if self._resampler is not None:
                if not np.isfinite(mono).all():  # keep NaN out of the resampler's memory
                    yield Chunk(mono, capture)
                    continue
                mono = self._resampler.resample_chunk(mono)
            yield Chunk(np.ascontiguousarray(mono, np.float32), capture)

    def _stream_active(self) -> bool:
        try:
            return bool(self._stream.active)
        except Exception:
            return False

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        self._stop.set()
        stream, self._stream = self._stream, None
        if stream is not None:
            try:
                stream.abort() if hasattr(stream, "abort") else stream.stop()
            except Exception:
                pass
            try:
                stream.close()
            except Exception:
                pass

    def describe(self) -> str:
        rate = f"{self.device_rate} Hz" + (f" -> {self.sample_rate} Hz" if self.device_rate != self.sample_rate else "")
        return f"microphone {self.device_name} ({self.channels} ch, {rate})"


# ---------------------------------------------------------------- files
class FileSource:
    """An audio file (any format libsndfile reads), resampled to the model's rate.

    ``realtime=False`` delivers it as fast as the engine takes it; ``True``
    paces the chunks at the file's real duration (then latency is measured
    against when each chunk would have been captured). The file is decoded
    and resampled a block at a time (`edgetag.runtime.audio.stream_audio`), so
    an hour-long recording costs the memory of a few seconds; the samples
    are the same bits as decoding it whole. ``warn`` receives one-line
    warnings (a truncated file, channels that cancel in the downmix).
    """

    def __init__(self, path: str, sample_rate: int, *, realtime: bool = False, chunk_ms: float = 100.0,
                 warn: Callable[[str], None] | None = None) -> None:
        self.path = path
        self.sample_rate = sample_rate
        self.realtime = realtime
        self.live = realtime  # paced in real time, it behaves as a microphone
        self.chunk = max(1, int(sample_rate * chunk_ms / 1000))
        self.stats = SourceStats()
        self.warn = warn
        self._stop = threading.Event()
        self._blocks: Iterator[np.ndarray] | None = None
        self._first: np.ndarray | None = None

    def open(self) -> None:
        """Open the file and decode its first block, so a file that cannot be read fails here, before any decision."""
        from edgetag.runtime.audio import stream_audio

        self._blocks = stream_audio(self.path, self.sample_rate, warn=self.warn)
        self._first = next(self._blocks, np.zeros(0, np.float32))

    def _samples(self) -> Iterator[np.ndarray]:
        """The decoded blocks re-cut into ``chunk``-sample chunks (the last may be shorter)."""
        from edgetag.runtime.audio import AudioError

        pending = np.zeros(0, np.float32)
        blocks, first, self._first = self._blocks, self._first, None
        try:
            block = first
            while block is not None:
                pending = np.concatenate([pending, block]) if len(pending) else block
                n_whole = len(pending) // self.chunk * self.chunk
                for offset in range(0, n_whole, self.chunk):
                    yield pending[offset : offset + self.chunk]
                pending = pending[n_whole:]
                block = next(blocks, None)
        except AudioError as exc:  # part-way through the file: the run ends with this error
            raise SourceError(str(exc)) from None
        if len(pending):
            yield pending

    def chunks(self) -> Iterator[Chunk]:
        if self._blocks is None:
            self.open()
        start = time.monotonic()
        offset = 0
        for block in self._samples():
            if self._stop.is_set():
                return
            capture = None
            if self.realtime:
                capture = start + (offset + len(block)) / self.sample_rate
                delay = capture - time.monotonic()
                if delay > 0:
                    self._stop.wait(delay)
            offset += len(block)
            yield Chunk(block, capture)

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        blocks, self._blocks = self._blocks, None
        if blocks is not None and hasattr(blocks, "close"):
            try:
                blocks.close()  # closes the file now, not when the generator is collected
            except ValueError:  # still running in a worker that did not stop in time: it closes at its end
                pass

    def describe(self) -> str:
        return f"file {self.path}" + (" (real time)" if self.realtime else "")


# ---------------------------------------------------------------- stdin
PCM_FORMATS = {"s16le": np.dtype("<i2"), "f32le": np.dtype("<f4")}


class StdinSource:
    """Raw PCM from a byte stream (stdin): s16le or f32le, mono or interleaved channels, at ``rate``.

    Another rate than the model's is resampled (soxr, streaming). The end of
    the stream is a clean end; ``closed_early`` says whether it came before
    the caller asked to stop.
    """

    def __init__(
        self,
        sample_rate: int,
        rate: int,
        pcm: str = "s16le",
        *,
        channels: int = 1,
        stream: BinaryIO | None = None,
        chunk_ms: float = 20.0,
        warn: Callable[[str], None] | None = None,
    ) -> None:
        if pcm not in PCM_FORMATS:
            raise ValueError(f"unknown PCM format {pcm!r}; use one of {', '.join(PCM_FORMATS)}")
        if rate is None or rate <= 0:
            raise ValueError("--stdin needs --rate (the sample rate of the raw PCM)")
        if channels < 1:
            raise ValueError("channels must be >= 1")
        self.sample_rate = sample_rate
        self.rate = int(rate)
        self.pcm = pcm
        self.dtype = PCM_FORMATS[pcm]
        self.channels = channels
        if stream is None and sys.stdin is None:  # started with stdin closed (`<&-`)
            raise SourceError("--stdin: standard input is closed; pipe raw PCM into edgetag (e.g. `arecord ... | edgetag listen --stdin ...`)")
        self.stream = stream if stream is not None else sys.stdin.buffer
        self.frame_bytes = self.dtype.itemsize * channels
        self.read_bytes = max(1, int(self.rate * chunk_ms / 1000)) * self.frame_bytes
        self.stats = SourceStats()
        self.samples_read = 0
        self.leftover_bytes = 0
        self.eof = False
        self._stop = threading.Event()
        self._downmix = None
        self._warn = warn or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self._loud_seen = False  # float samples far past full scale: said once
        if channels > 1:
            from edgetag.runtime.downmix import DownmixCheck

            self._downmix = DownmixCheck("stdin", self.rate, self._warn)
        self._resampler = None
        if self.rate != sample_rate:
            import soxr

            self._resampler = soxr.ResampleStream(self.rate, sample_rate, 1, dtype="float32", quality="HQ")

    def open(self) -> None:
        pass

    def _convert(self, raw: bytes) -> np.ndarray:
        data = np.frombuffer(raw, dtype=self.dtype)
        if self.dtype.kind == "i":
            data = data.astype(np.float32) / 32768.0
        else:
            data = data.astype(np.float32)
            note = None if self._loud_seen else loud_note("stdin (f32le)", data, self.samples_read / self.rate,
                                                           self.rate)
            if note is not None:
                self._loud_seen = True
                self._warn(note)
        if self.channels > 1:
            frames = data.reshape(-1, self.channels)
            data = frames.mean(axis=1, dtype=np.float32)
            self._downmix.add(frames, data)  # anti-phase channels would average to silence: say so
        return data

    def chunks(self) -> Iterator[Chunk]:
        pending = b""
        read = getattr(self.stream, "read1", self.stream.read)
        while not self._stop.is_set():
            try:
                raw = read(self.read_bytes)
            except (OSError, ValueError) as exc:
                raise SourceError(f"reading stdin failed: {exc}") from None
            now = time.monotonic()
            if not raw:
                self.eof = True
                break
            raw = pending + raw
            usable = len(raw) - len(raw) % self.frame_bytes
            pending = raw[usable:]
            if not usable:
                continue
            samples = self._convert(raw[:usable])
            self.samples_read += len(samples)
            if self._resampler is not None and np.isfinite(samples).all():
                samples = self._resampler.resample_chunk(samples)
            yield Chunk(np.ascontiguousarray(samples, np.float32), now)
        self.leftover_bytes = len(pending)
        if self._resampler is not None:
            tail = self._resampler.resample_chunk(np.zeros(0, np.float32), last=True)
            if len(tail):
                yield Chunk(np.ascontiguousarray(tail, np.float32), time.monotonic())

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        pass

    def describe(self) -> str:
        rate = f"{self.rate} Hz" + (f" -> {self.sample_rate} Hz" if self.rate != self.sample_rate else "")
        return f"stdin ({self.pcm}, {self.channels} ch, {rate})"
