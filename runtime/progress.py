"""A one-line progress indicator on stderr for long jobs (``edgetag tag`` on long files).

Standard library only. It draws only on a terminal (a pipe or a log file gets
nothing, so scripts see clean stderr), only for jobs long enough to be worth it,
at most ``1 / interval_s`` times a second, and erases itself when done, so the
output that follows starts on a clean line.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from typing import IO

from edgetag.runtime.model_card import printable

#: Audio shorter than this (seconds) gets no progress line: it is done before one would help.
MIN_AUDIO_S = 30.0


def clock(seconds: float, long: bool = False, digits: int = 1) -> str:
    """``seconds`` as ``12.3`` (``long=False``), or as ``m:ss.s`` / ``h:mm:ss`` for long files; ``digits``
    after the point (none in ``h:mm:ss``)."""
    if not long:
        return f"{seconds:.{digits}f}"
    if seconds >= 3600:
        h, rest = divmod(int(seconds), 3600)
        return f"{h}:{rest // 60:02d}:{rest % 60:02d}"
    m, s = divmod(seconds, 60.0)
    if round(s, digits) >= 60.0:  # 59.96 s would print as 60.0
        m, s = m + 1, 0.0
    return f"{int(m)}:{s:0{3 + digits if digits else 2}.{digits}f}"


def is_terminal(stream: IO[str] | None) -> bool:
    """Whether ``stream`` is a terminal (False for pipes, files, and streams without ``isatty``)."""
    try:
        return bool(stream is not None and stream.isatty())
    except (AttributeError, ValueError, OSError):  # a closed or replaced stream
        return False


class Progress:
    """``label  42 %  2:03.0 / 4:55.2  38x real time``, redrawn in place on ``stream`` (default stderr).

    ``total_s``: seconds of audio in the job; `update` takes the seconds done.
    ``enabled``: None decides (``stream`` is a terminal and ``total_s >= min_total_s``).
    """

    def __init__(self, label: str, total_s: float, *, stream: IO[str] | None = None, enabled: bool | None = None,
                 min_total_s: float = MIN_AUDIO_S, interval_s: float = 0.1) -> None:
        self.stream = sys.stderr if stream is None else stream
        self.label = printable(label)  # a file name is text from outside: no terminal escapes
        self.total_s = max(0.0, float(total_s))
        self.long = self.total_s >= 60.0
        if enabled is None:
            enabled = is_terminal(self.stream) and self.total_s >= min_total_s
        self.enabled = enabled
        self.interval_s = interval_s
        self._start = time.monotonic()
        self._last_draw = -float("inf")
        self._drawn = False
        if self.enabled:
            self.update(0.0, force=True)

    def update(self, done_s: float, *, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._last_draw < self.interval_s:
            return
        self._last_draw = now
        done = min(max(0.0, done_s), self.total_s)
        percent = 100.0 * done / self.total_s if self.total_s else 100.0
        line = f"{self.label}  {percent:3.0f} %  {clock(done, self.long)} / {clock(self.total_s, self.long)}"
        elapsed = now - self._start
        if elapsed > 0.5 and done > 0:
            line += f"  {done / elapsed:.0f}x real time"
        width = self._columns() - 1  # the last column would wrap on some terminals
        if len(line) > width:  # keep the numbers, shorten the label
            keep = max(0, width - (len(line) - len(self.label)) - 3)
            line = ("..." + self.label[len(self.label) - keep:] if keep else "") + line[len(self.label):]
            line = line[:width]
        self._write("\r\x1b[K" + line)
        self._drawn = True

    def _columns(self) -> int:
        """The width of the terminal the line goes to (stdout may be a pipe while stderr is the terminal)."""
        try:
            return os.get_terminal_size(self.stream.fileno()).columns or 80
        except (AttributeError, ValueError, OSError):
            return shutil.get_terminal_size((80, 24)).columns

    def close(self) -> None:
        """Erase the line (the job's own output comes next); a no-op when nothing was drawn."""
        if self._drawn:
            self._write("\r\x1b[K")
            self._drawn = False
        self.enabled = False

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # the terminal went away: progress is not worth an error
            self.enabled = False

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
