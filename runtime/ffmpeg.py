"""Audio that libsndfile cannot read (MP4/M4A, WebM/Matroska, raw AAC, ...), decoded by an ffmpeg subprocess.

`edgetag.runtime.audio` asks here when libsndfile refuses a file. `container_kind`
says whether the file is a container ffmpeg decodes (by its first bytes, else
its extension); `decode_blocks` runs ``ffmpeg`` with the audio piped out as raw
float32 PCM, mono, at the model's rate, and yields it in blocks, so memory
stays bounded by one block whatever the file's length. ffmpeg does the
downmix (the mean of two stereo channels, as edgetag's own downmix) and the
resampling (its default resampler, not soxr: the samples differ from
libsndfile + soxr by the resamplers' difference, which the models do not
notice). Without ffmpeg, `missing_ffmpeg_hint` says how to get it.

Standard library and numpy only; ffmpeg is found on ``PATH``
(``EDGETAG_FFMPEG`` names another binary; set empty, it turns this path off).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

#: Extensions of containers and codecs libsndfile does not read, and what they are called in messages.
CONTAINER_EXTENSIONS: dict[str, str] = {
    ".m4a": "MP4/M4A", ".m4b": "MP4/M4A", ".mp4": "MP4", ".m4v": "MP4", ".mov": "QuickTime", ".3gp": "3GP",
    ".aac": "AAC", ".adts": "AAC", ".webm": "WebM", ".mkv": "Matroska", ".mka": "Matroska",
    ".wma": "WMA", ".asf": "ASF", ".ac3": "AC-3", ".eac3": "E-AC-3", ".amr": "AMR", ".opus": "Opus",
    ".mp3": "MP3",  # read by libsndfile >= 1.1; ffmpeg decodes it where an older libsndfile cannot
}
#: ffmpeg's stderr lines kept for the error message (the last one usually says it all).
_STDERR_LINES = 20


def container_kind(path: str | os.PathLike[str]) -> str | None:
    """What ``path`` is, if ffmpeg should decode it: ``"MP4/M4A"``, ``"WebM/Matroska"``, ... (None: not one of them).

    The first bytes decide (a renamed file is still found); the extension is the fallback.
    """
    try:
        with open(path, "rb") as fh:
            head = fh.read(16)
    except OSError:
        head = b""
    if head[4:8] == b"ftyp" or head[4:8] in (b"moov", b"mdat", b"wide", b"free", b"skip"):
        return "MP4/M4A"
    if head[:4] == b"\x1a\x45\xdf\xa3":  # EBML: WebM and Matroska
        return "WebM/Matroska"
    if head[:4] == b"\x30\x26\xb2\x75":  # ASF header GUID: WMA
        return "WMA/ASF"
    if head[:4] == b"ADIF" or (len(head) >= 2 and head[0] == 0xFF and head[1] & 0xF6 == 0xF0):  # AAC (ADIF or ADTS)
        return "AAC"
    if head[:2] == b"\x0b\x77":
        return "AC-3"
    if head[:5] == b"#!AMR":
        return "AMR"
    return CONTAINER_EXTENSIONS.get(Path(path).suffix.lower())


def ffmpeg_binary() -> str | None:
    """The ffmpeg to run: ``EDGETAG_FFMPEG`` when set (empty: none), else ``ffmpeg`` on ``PATH``; None if absent."""
    named = os.environ.get("EDGETAG_FFMPEG")
    if named is not None:
        return shutil.which(named) if named else None
    return shutil.which("ffmpeg")


def missing_ffmpeg_hint(kind: str) -> str:
    """What to do when a file needs ffmpeg and there is none (or ``EDGETAG_FFMPEG`` names none that runs)."""
    named = os.environ.get("EDGETAG_FFMPEG")
    if named is not None:
        why = "EDGETAG_FFMPEG is empty, which turns ffmpeg off" if not named else \
            f"EDGETAG_FFMPEG names {named!r}, which is not an executable found here"
        return (f"it is {kind} audio, which libsndfile cannot read, and {why}: unset it (or name the ffmpeg "
                "binary) to decode it through ffmpeg, or convert it first (`ffmpeg -i FILE FILE.flac`)")
    return (f"it is {kind} audio, which libsndfile cannot read: install ffmpeg (Debian/Ubuntu `sudo apt install "
            "ffmpeg`, macOS `brew install ffmpeg`, or from ffmpeg.org) and edgetag decodes it through ffmpeg, or "
            "convert it first (`ffmpeg -i FILE FILE.flac`)")


def decode_blocks(path: str | os.PathLike[str], sample_rate: int, *, block_frames: int, binary: str,
                  on_error: Callable[[str, float], Exception],
                  warn: Callable[[str], None] | None = None) -> Iterator[np.ndarray]:
    """The first audio stream of ``path`` as mono float32 at ``sample_rate``, in blocks of ``block_frames`` samples.

    ffmpeg runs in its own session, so a Ctrl-C at the terminal reaches edgetag only: edgetag
    stops it (at the end, on an error, or when the generator is closed) and no ffmpeg message
    follows an interrupted run. ``on_error(message, seconds_decoded)`` makes the exception raised
    when ffmpeg fails; ``warn`` receives what ffmpeg reported on a run that still succeeded
    (damaged frames it skipped).
    """
    location = "file:" + str(Path(path).resolve())  # "file:": a name with a colon or a leading "-" stays a name
    command = [binary, "-nostdin", "-hide_banner", "-loglevel", "error", "-i", location, "-map", "0:a:0",
               "-ac", "1", "-ar", str(int(sample_rate)), "-f", "f32le", "-c:a", "pcm_f32le", "pipe:1"]
    try:
        proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True)
    except OSError as exc:
        raise on_error(f"cannot run ffmpeg ({binary}): {exc}", 0.0) from None
    errors: deque[str] = deque(maxlen=_STDERR_LINES)
    # stderr is drained by a thread: ffmpeg blocked on a full stderr pipe would never finish stdout
    drain = threading.Thread(target=_collect_lines, args=(proc.stderr, errors), daemon=True)
    drain.start()
    block_bytes = 4 * max(1, int(block_frames))
    decoded = 0
    carry = b""  # a partial float32 left over by a short read
    try:
        assert proc.stdout is not None
        while True:
            data = proc.stdout.read(block_bytes)
            if not data:
                break
            data = carry + data
            whole = len(data) // 4 * 4
            carry = data[whole:]
            if not whole:
                continue
            block = np.frombuffer(data[:whole], dtype="<f4").astype(np.float32)  # native order, writable
            decoded += len(block)
            yield block
        code = proc.wait()
        drain.join(timeout=5)
        last = next((line for line in reversed(errors) if line.strip()), "")
        last = last.removeprefix(location + ": ")  # ffmpeg names the input as it was given: the path is in our message
        if code != 0:
            raise on_error(f"ffmpeg failed (exit status {code}){': ' + last if last else ''}", decoded / sample_rate)
        if decoded == 0:
            raise on_error("ffmpeg found no audio in it", 0.0)
        if last and warn is not None:
            warn(f"{path}: ffmpeg reported problems while decoding ({len(errors)} line(s)), the last: {last}")
    finally:
        if proc.poll() is None:  # closed early (an error downstream, Ctrl-C, enough samples): stop ffmpeg now
            proc.kill()
        proc.wait()
        drain.join(timeout=5)  # ffmpeg is gone: its stderr is at its end
        for stream in (proc.stdout, proc.stderr):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass


def _collect_lines(stream, lines: deque[str]) -> None:
    try:
        for raw in iter(stream.readline, b""):
            lines.append(raw.decode("utf-8", "replace").rstrip())
    except (OSError, ValueError):  # closed under us at the end
        pass
