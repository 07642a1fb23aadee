"""`edgetag listen` as a person runs it: in a terminal, through the virtual microphone, with every built-in model.

The live view's acceptance test. For each built-in model, `edgetag listen --model NAME`
runs in a pseudo-terminal of 100x30 (its own session, the pty as its controlling
terminal, so Ctrl-C is the byte a keyboard sends). A small terminal emulator
(`Screen`: the cursor moves, erases and colours that rich's Live display uses)
keeps what the screen shows, and the view is read back from it:

1. nothing playing: the view says silence (the level gate): the tag view's
   "silence" row and no tag on, the tuner "unvoiced: silence";
2. music (the built-in demo clip) for the tag models, a steady 440 Hz tone for
   the pitch models, played into the null sink: the tag rows with their bars and
   threshold marks where the card puts them, or the tuner's note (in block
   letters), needle, f0 and cents; the input level above the gate; latency p50
   under the watchdog's bound (`edgetag.runtime.engine.MAX_LAG_S`); the compute
   and losses rows;
3. Ctrl-C: exit status 0 (or 130), no traceback, the final line with the
   decisions, latency, losses and catch-ups, and the stats JSON.

Needs PulseAudio (tests/virtual_mic.py); skips without it, fails where
EDGETAG_REQUIRE_VIRTUAL_MIC=1 (see the ``virtual_mic`` fixture in conftest.py).
"""

from __future__ import annotations

import codecs
import json
import math
import os
import re
import select
import subprocess
import sys
import time
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

if sys.platform == "win32":
    pytest.skip("pseudo-terminals are POSIX", allow_module_level=True)
pytest.importorskip("onnxruntime")
pytest.importorskip("rich")

import fcntl  # noqa: E402
import struct  # noqa: E402
import termios  # noqa: E402

from edgetag.runtime.engine import MAX_LAG_S  # noqa: E402
from edgetag.runtime.model import load_model  # noqa: E402
from edgetag.runtime.models import BUILTIN_MODELS, builtin_path  # noqa: E402
from edgetag.runtime.pipeline import level_gate  # noqa: E402
from edgetag.runtime.pitch import is_pitch_model, note_of  # noqa: E402

ROWS, COLS = 30, 100
RATE = 16000  # the virtual microphone's rate, and every built-in model's
BAR_CELLS = 30  # `edgetag.runtime.output.score_bar`'s width
TONE_HZ, TONE_NOTE = 440.0, "A4"
# Generous waits: a loaded 2-core machine can take seconds to import and load a model. They bound a hang;
# the test's own pace is set by the audio (about 1 s of silence and 2.5 s of sound per model).
START_S, VIEW_S, EXIT_S = 30.0, 20.0, 15.0
HOLD_S = 3.0  # seconds of audio the view must follow after the sound arrived: time for a lag to build up
# Makes the child the session leader's controlling terminal's owner, then becomes edgetag: so Ctrl-C typed
# into the pty (byte 0x03) reaches it as SIGINT, as from a keyboard. Popen's start_new_session did the setsid.
CTTY_SHIM = "import fcntl, os, sys, termios; fcntl.ioctl(0, termios.TIOCSCTTY, 0); os.execv(sys.argv[1], sys.argv[1:])"


# ------------------------------------------------------------------ a small terminal emulator
_TOKEN = re.compile(
    r"\x1b\[([0-9;?]*)([@-~])"          # CSI: cursor moves, erases, colours, modes
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)"  # OSC (a title, a hyperlink): ignored
    r"|\x1b[@-Z\\^_]"                    # other two-byte escapes: ignored
    r"|[\x00-\x1a\x1c-\x1f\x7f]"         # one control character (not ESC: an escape cut short waits)
    r"|[^\x00-\x1f\x7f\x1b]+"            # printable text
)


class Screen:
    """What a ``rows`` x ``cols`` terminal shows after the bytes fed to it, with each cell's foreground colour.

    Enough of a VT100 for rich's Live display and plain lines: printing with auto-wrap, CR, LF (scrolling),
    backspace, tab, cursor up/down/left/right/column/position, erase in line and display, and SGR colours.
    """

    def __init__(self, rows: int, cols: int) -> None:
        self.rows, self.cols = rows, cols
        self.text = [[" "] * cols for _ in range(rows)]
        self.fg = [[None] * cols for _ in range(rows)]
        self.row = self.col = 0
        self._wrap = False  # the cursor sits past the last column: the next character wraps
        self._fg: str | None = None
        self._rest = ""  # an escape sequence cut by the end of a read
        self._decode = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, data: bytes) -> None:
        text = self._rest + self._decode.decode(data)
        self._rest = ""
        i = 0
        while i < len(text):
            m = _TOKEN.match(text, i)
            if m is None:  # an ESC whose sequence is not complete yet (or garbage: dropped once long)
                if len(text) - i < 32:
                    self._rest = text[i:]
                    return
                i += 1
                continue
            token = m.group(0)
            if m.group(2) is not None:
                self._csi(m.group(1), m.group(2))
            elif token[0] == "\x1b":
                pass
            elif len(token) == 1 and (token < " " or token == "\x7f"):
                self._control(token)
            else:
                for ch in token:
                    self._put(ch)
            i = m.end()

    def _put(self, ch: str) -> None:
        if self._wrap:
            self.col, self._wrap = 0, False
            self._line_feed()
        self.text[self.row][self.col], self.fg[self.row][self.col] = ch, self._fg
        if self.col == self.cols - 1:
            self._wrap = True
        else:
            self.col += 1

    def _line_feed(self) -> None:
        if self.row == self.rows - 1:
            self.text = self.text[1:] + [[" "] * self.cols]
            self.fg = self.fg[1:] + [[None] * self.cols]
        else:
            self.row += 1

    def _control(self, ch: str) -> None:
        if ch == "\r":
            self.col, self._wrap = 0, False
        elif ch == "\n":
            self._wrap = False
            self._line_feed()
        elif ch == "\b":
            self.col, self._wrap = max(0, self.col - 1), False
        elif ch == "\t":
            self.col = min(self.cols - 1, (self.col // 8 + 1) * 8)

    def _erase(self, row: int, start: int, end: int) -> None:
        self.text[row][start:end] = [" "] * (end - start)
        self.fg[row][start:end] = [None] * (end - start)

    def _csi(self, params: str, final: str) -> None:
        if params.startswith("?"):  # private modes (the cursor shown or hidden): nothing on screen
            return
        args = [int(p) if p else 0 for p in params.split(";")] if params else []
        n = max(1, args[0]) if args else 1
        if final in "ABCDGHfJK":
            self._wrap = False
        if final == "A":
            self.row = max(0, self.row - n)
        elif final == "B":
            self.row = min(self.rows - 1, self.row + n)
        elif final == "C":
            self.col = min(self.cols - 1, self.col + n)
        elif final == "D":
            self.col = max(0, self.col - n)
        elif final == "G":
            self.col = min(self.cols - 1, n - 1)
        elif final in "Hf":
            self.row = min(self.rows - 1, max(1, args[0] if args else 1) - 1)
            self.col = min(self.cols - 1, max(1, args[1] if len(args) > 1 else 1) - 1)
        elif final == "K":
            mode = args[0] if args else 0
            start, end = {0: (self.col, self.cols), 1: (0, self.col + 1)}.get(mode, (0, self.cols))
            self._erase(self.row, start, end)
        elif final == "J":
            mode = args[0] if args else 0
            rows = {0: range(self.row + 1, self.rows), 1: range(0, self.row)}.get(mode, range(self.rows))
            for r in rows:
                self._erase(r, 0, self.cols)
            if mode == 0:
                self._erase(self.row, self.col, self.cols)
            elif mode == 1:
                self._erase(self.row, 0, self.col + 1)
        elif final == "m":
            self._sgr(args or [0])

    def _sgr(self, args: list[int]) -> None:
        i = 0
        while i < len(args):
            a = args[i]
            if a == 0 or a == 39:
                self._fg = None
            elif 30 <= a <= 37 or 90 <= a <= 97:
                self._fg = str(a)
            elif a == 38:  # 38;5;n or 38;2;r;g;b
                skip = 2 if i + 1 < len(args) and args[i + 1] == 5 else 4
                self._fg = ";".join(map(str, args[i : i + 1 + skip]))
                i += skip
            elif a in (48,):
                i += 2 if i + 1 < len(args) and args[i + 1] == 5 else 4
            i += 1

    def lines(self) -> list[str]:
        return ["".join(row).rstrip() for row in self.text]

    def dump(self) -> str:
        return "\n".join(self.lines()).rstrip()


# ------------------------------------------------------------------ the view, read back from the screen
_TITLE = re.compile(r"t =\s+(-?\d+\.\d+) s\s+edgetag (listen|tuner): ")
_MS = re.compile(r"p(50|99) (?:(\d+\.\d+) ms|-)")


@dataclass
class TagRow:
    label: str
    score: float
    bar: str  # the bar's cells
    on: bool  # drawn in green (the tag is on)


@dataclass
class View:
    kind: str  # "listen" (tags) or "tuner"
    t: float
    rows: dict[str, str] = field(default_factory=dict)  # a row's name -> the text of its other cells
    tags: list[TagRow] = field(default_factory=list)
    note: list[str] = field(default_factory=list)  # the tuner's note, five rows of block letters
    text: str = ""

    @property
    def silent(self) -> bool:
        return "silence" in self.rows or "silence" in self.rows.get("voicing", "")

    def ms(self, row: str) -> dict[str, float]:
        """p50 / p99 of the latency or compute row, in ms (nan while it shows "-")."""
        return {f"p{p}": float(v) if v else math.nan for p, v in _MS.findall(self.rows[row])}

    def level(self) -> float:
        m = re.match(r"(-inf|-?\d+) dBFS", self.rows["input"])
        assert m, self.text
        return -math.inf if m.group(1) == "-inf" else float(m.group(1))

    def losses(self) -> tuple[int, int, int]:
        m = re.search(r"(\d+) overflows.*?(\d+) dropped, (\d+) NaN", self.rows["losses"])
        assert m, self.text
        return int(m.group(1)), int(m.group(2)), int(m.group(3))


def read_view(screen: Screen) -> View | None:
    """The last complete view on the screen (its title through its bottom border), or None."""
    lines = screen.lines()
    starts = [i for i, line in enumerate(lines) if _TITLE.search(line)]
    if not starts:
        return None
    first = starts[-1]
    bottom = next((i for i in range(first + 1, len(lines)) if lines[i].lstrip().startswith("└")), None)
    if bottom is None:  # mid-redraw: rich erases the old view, then writes the new one top down
        return None
    m = _TITLE.search(lines[first])
    view = View(kind=m.group(2), t=float(m.group(1)), text="\n".join(lines[first : bottom + 1]))
    name = None
    for r in range(first + 1, bottom):
        line = lines[r]
        if not line.lstrip().startswith("│"):
            continue  # the title's second line, the header, the borders
        offset = len(line) - len(line.lstrip())
        seps = [offset + k for k, ch in enumerate(line.lstrip()) if ch == "│"]
        cells = [line[a + 1 : b] for a, b in zip(seps, seps[1:])]
        if cells[0].strip():
            name = cells[0].strip()
            view.rows.setdefault(name, "  ".join(c.strip() for c in cells[1:]))
        if name == "note":
            view.note.append(cells[1][1:].rstrip())
        if view.kind == "listen" and name not in (None, "silence", "input", "latency", "compute", "losses",
                                                  "behind") and cells[0].strip():
            a = seps[2] + 2  # the bar's first cell: after "│ "
            colours = [screen.fg[r][a + k] for k in range(BAR_CELLS) if line[a + k : a + k + 1] != "┃"]
            view.tags.append(TagRow(name, float(cells[1]), line[a : a + BAR_CELLS].ljust(BAR_CELLS),
                                    on=sum(c == "32" for c in colours) > len(colours) // 2))
    return view


# ------------------------------------------------------------------ edgetag listen in a pseudo-terminal
class Terminal:
    """A command running in a ``ROWS`` x ``COLS`` pseudo-terminal, its output fed to a `Screen`."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLS, 0, 0))
        self.fd = master
        self.screen = Screen(ROWS, COLS)
        self.raw = bytearray()
        self.eof = False
        try:
            self.proc = subprocess.Popen([sys.executable, "-c", CTTY_SHIM, *argv], stdin=slave, stdout=slave,
                                         stderr=slave, env=env, start_new_session=True, close_fds=True)
        finally:
            os.close(slave)

    @property
    def text(self) -> str:
        """Everything written so far, without escape sequences and CRs (for the lines after the view)."""
        return re.sub(r"\x1b\[[0-9;?]*[@-~]|\x1b\][^\x07]*\x07|\r", "", self.raw.decode("utf-8", "replace"))

    def pump(self, until: Callable[[], bool], timeout: float, what: str) -> None:
        """Read the output until ``until()`` holds; fails, showing the screen, after ``timeout`` s or at EOF."""
        deadline = time.monotonic() + timeout
        while not until():
            left = deadline - time.monotonic()
            if left <= 0 or self.eof:
                why = "edgetag's output ended" if self.eof else f"{timeout:g} s passed"
                pytest.fail(f"{why} before {what}; screen:\n{self.screen.dump()}\n--- output:\n{self.text[-3000:]}")
            self._read(min(left, 0.2))

    def _read(self, wait: float) -> None:
        if self.eof or not select.select([self.fd], [], [], wait)[0]:
            return
        try:
            data = os.read(self.fd, 65536)
        except OSError:  # EIO: every process holding the pty's other end has exited
            data = b""
        if not data:
            self.eof = True
            return
        self.raw += data
        self.screen.feed(data)

    def wait_view(self, want: Callable[[View], bool], timeout: float, what: str) -> View:
        """The first complete view on the screen for which ``want`` holds."""
        found: list[View] = []

        def check() -> bool:
            view = read_view(self.screen)
            if view is not None and want(view):
                found.append(view)
            return bool(found)

        self.pump(check, timeout, what)
        return found[0]

    def ctrl_c(self) -> None:
        os.write(self.fd, b"\x03")  # the terminal's line discipline sends SIGINT to the foreground group

    def finish(self, timeout: float) -> int:
        """Read to the end; the exit status (-SIGNAL when killed by one)."""
        self.pump(lambda: self.eof, timeout, "the end of the output after Ctrl-C")
        return self.proc.wait(timeout=timeout)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        os.close(self.fd)


def listen_env(base: dict[str, str]) -> dict[str, str]:
    """The virtual microphone's environment, as a colour terminal whose size only the pty gives."""
    env = {k: v for k, v in base.items() if k not in ("COLUMNS", "LINES", "NO_COLOR", "FORCE_COLOR",
                                                      "TTY_COMPATIBLE", "TTY_INTERACTIVE", "TERM")}
    env["TERM"] = "xterm-256color"
    return env


# ------------------------------------------------------------------ audio to play
def write_wav(path: Path, samples: np.ndarray) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes((np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2").tobytes())
    return path


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    """Music for the tag models (the built-in demo clip), a steady tone for the tuner; longer than a run."""
    from edgetag.runtime.demo import demo_music

    folder = tmp_path_factory.mktemp("listen_clips")
    t = np.arange(int(RATE * 15.0)) / RATE
    tone = 0.3 * np.sin(2 * np.pi * TONE_HZ * t) * np.clip(t / 0.01, 0, 1)  # a 10 ms fade in: no click
    return {"music": write_wav(folder / "music.wav", np.tile(demo_music(RATE), 2)),
            "tone": write_wav(folder / "tone.wav", tone)}


# ------------------------------------------------------------------ checks
def check_common(view: View, gate: float) -> None:
    """Rows every view has, in any state; the latency under the watchdog's bound once there is one."""
    for row in ("input", "latency", "compute", "losses"):
        assert row in view.rows, f"no {row} row:\n{view.text}"
    assert "nan" not in view.text, view.text
    latency, compute = view.ms("latency"), view.ms("compute")
    assert set(latency) == set(compute) == {"p50", "p99"}, view.text
    if not math.isnan(latency["p50"]):
        assert 0 <= latency["p50"] < MAX_LAG_S * 1e3, f"latency p50 over the watchdog's bound:\n{view.text}"
        assert latency["p50"] <= latency["p99"] and 0 < compute["p50"] <= compute["p99"], view.text
    overflows, dropped, nonfinite = view.losses()
    assert (overflows, dropped, nonfinite) == (0, 0, 0), view.text
    if "behind" in view.rows:  # the watchdog's row: only once it has skipped audio
        assert re.search(r"[1-9]\d* catch-up\(s\)", view.rows["behind"]), view.text
    if view.silent:
        assert view.level() < gate, view.text


def check_tags(view: View, card) -> None:
    """The top tags, best first, then any other tag that is on, each with its score as a bar and its card
    threshold marked (``┃``)."""
    thresholds = dict(zip(card.labels, card.thresholds))
    k = min(5, len(card.labels))  # --top-k's default
    top, more = view.tags[:k], view.tags[k:]
    assert len(top) == k and all(r.on and r.score <= top[-1].score for r in more), view.text
    assert [r.score for r in top] == sorted((r.score for r in top), reverse=True), view.text
    for row in view.tags:
        assert row.label in thresholds, view.text
        assert 0.0 <= row.score <= 1.0, view.text
        mark = min(BAR_CELLS - 1, max(0, round(BAR_CELLS * thresholds[row.label])))
        assert row.bar.count("┃") == 1 and row.bar.index("┃") == mark, f"{row.label}: no mark at {mark}\n{view.text}"
        filled = sum(ch == "█" for ch in row.bar) + (1 if mark < round(BAR_CELLS * row.score) else 0)
        assert abs(filled - BAR_CELLS * row.score) <= 1.0, f"{row.label}: bar of {filled} cells\n{view.text}"
        assert set(row.bar) <= {"█", " ", "┃"}, view.text
    if view.silent:
        assert not any(r.on for r in view.tags), view.text


def check_against_jsonl(view: View, decisions: list[dict], pitch: bool) -> None:
    """The view shows the decision of its time as listen's jsonl (``-o``) wrote it: the same scores, the tags
    on that its ``active`` names (the hysteresis, minimum durations included), the same pitch, the silence."""
    near = [d for d in decisions if abs(d["t"] - view.t) <= 0.005 + 1e-9]  # the title shows t to 10 ms
    assert near, f"no decision at t = {view.t:.2f} s in the jsonl:\n{view.text}"

    def same(d: dict) -> bool:
        if bool(d.get("silent")) != view.silent:
            return False
        if pitch:
            p = d["pitch"]
            if "VOICED" not in view.rows["voicing"]:
                return not p["voiced"] or view.silent
            f0, note = view.rows["f0"].split()[0], view.rows["f0"].split()[2]
            return p["voiced"] and p["note"] == note and abs(p["f0_hz"] - float(f0)) <= 0.006
        return all(abs(d["scores"][r.label] - r.score) <= 0.005 + 1e-6 and (r.label in d["active"]) == r.on
                   for r in view.tags)

    assert any(same(d) for d in near), f"the view:\n{view.text}\nthe jsonl at its time: {near}"


def big_letters(text: str) -> list[str]:
    """``text`` as the tuner draws it (`TunerView.big`), to compare with the screen."""
    from edgetag.runtime.output import TunerView

    glyphs = [TunerView.BIG_DIGITS.get(ch, ["   "] * 5) for ch in text]
    return ["  ".join(g[row] for g in glyphs).rstrip() for row in range(5)]


def check_tuner(view: View) -> None:
    for row in ("note", "cents", "f0", "confidence", "voicing"):
        assert row in view.rows, f"no {row} row:\n{view.text}"
    assert len(view.note) == 5, view.text
    bar = re.search(r"-50 ([·|◆]+) \+50", view.rows["cents"])
    assert bar and bar.group(1).count("|") + bar.group(1).count("◆") >= 1, view.text
    if "VOICED" in view.rows["voicing"]:
        m = re.match(r"(\d+\.\d+) Hz\s+([A-G]#?-?\d)\s+([+-]\d+\.\d) cents", view.rows["f0"])
        assert m, view.text
        f0, note, cents = float(m.group(1)), m.group(2), float(m.group(3))
        assert view.note == big_letters(note), view.text
        cells = bar.group(1)
        mid = len(cells) // 2
        needle = mid + round(max(-50.0, min(50.0, cents)) / 50.0 * mid)
        assert cells.index("◆") == needle, f"the needle is not at {cents:+.1f} cents:\n{view.text}"
        name, off, _ = note_of(f0)  # the f0 shown, the note and cents shown: one reading
        assert name == note and abs(off - cents) < 0.2, view.text
    else:
        assert "◆" not in view.rows["cents"], view.text


def final_stats(text: str) -> tuple[dict, int]:
    """The stats JSON line listen prints at exit, and the catch-ups of its summary line."""
    done = re.search(r"edgetag listen: stopped \(Ctrl-C\): (\d+) decisions over [\d.]+ s; compute p50 .*?; "
                     r"latency p50 .*?; overflows (\d+), .*?(\d+) catch-ups", text)
    assert done, f"no final summary line:\n{text[-3000:]}"
    stats = re.search(r"edgetag listen: stats (\{.*\})", text)
    assert stats, f"no stats line:\n{text[-3000:]}"
    return json.loads(stats.group(1)), int(done.group(3))


# ------------------------------------------------------------------ the test
@pytest.mark.slow
@pytest.mark.parametrize("name", list(BUILTIN_MODELS))
def test_listen_in_a_terminal(name: str, virtual_mic, clips, tmp_path) -> None:
    card = load_model(builtin_path(name), threads=1).card
    pitch = is_pitch_model(card)
    gate = level_gate(card)
    argv = [sys.executable, "-m", "edgetag.runtime.cli", "listen", "--model", name, "--device", "pulse"]
    # The int8 files run as a person types it (the live view because stdout is a terminal); the fp32 ones
    # also write every decision to a file (-o, which needs --format live), to check the view against them.
    jsonl = None if name.endswith("-int8") else tmp_path / "decisions.jsonl"
    if jsonl is not None:
        argv += ["--format", "live", "-o", str(jsonl)]
    term = Terminal(argv, listen_env(virtual_mic.env))
    player = None
    try:
        term.pump(lambda: "listening on" in term.text, START_S, "the 'listening on' line")
        assert f"with {card.name}" in term.text

        # 1. Nothing plays into the null sink: the first decisions are below the level gate.
        quiet = term.wait_view(lambda v: v.t > 0, VIEW_S, "a first decision")
        assert quiet.kind == ("tuner" if pitch else "listen"), quiet.text
        check_common(quiet, gate)
        assert quiet.silent and quiet.level() < gate, f"silence not shown as such:\n{quiet.text}"
        if pitch:
            check_tuner(quiet)
            assert "VOICED" not in quiet.rows["voicing"], quiet.text
        else:
            check_tags(quiet, card)

        # 2. Sound: wait for it to arrive, then for a full window of it (the tuner: a held note).
        player = virtual_mic.play(clips["tone" if pitch else "music"])
        heard: list[float] = []

        def sounding(v: View) -> bool:
            if v.silent or v.level() <= gate or (pitch and "VOICED" not in v.rows["voicing"]):
                return False
            heard.append(v.t)
            return v.t >= heard[0] + (1.0 if pitch else 2.0) and (not pitch or v.rows["f0"].split()[2] == TONE_NOTE)

        loud = term.wait_view(sounding, VIEW_S, "the played audio in the view")
        check_common(loud, gate)
        assert loud.t > quiet.t and loud.level() > gate, loud.text
        latency = loud.ms("latency")
        assert latency["p50"] < MAX_LAG_S * 1e3, loud.text
        if pitch:
            check_tuner(loud)
            cents = float(re.search(r"([+-]\d+\.\d) cents", loud.rows["f0"]).group(1))
            assert abs(cents) < 25, f"a {TONE_HZ:g} Hz tone read {cents:+.1f} cents off {TONE_NOTE}:\n{loud.text}"
        else:
            check_tags(loud, card)
        # it keeps up: a worker falling behind shows as latency growing from here
        late = term.wait_view(lambda v: v.t >= loud.t + HOLD_S, VIEW_S, f"{HOLD_S:g} s more audio in the view")
        check_common(late, gate)
        assert not late.silent and late.ms("latency")["p50"] < MAX_LAG_S * 1e3, late.text
        if pitch:
            check_tuner(late)
        else:
            check_tags(late, card)

        # 3. Ctrl-C: a clean stop, the last view left on screen, then the summary and the stats.
        term.ctrl_c()
        rc = term.finish(EXIT_S)
    finally:
        if player is not None and player.poll() is None:
            player.terminate()  # the next model's silence must be silent
            player.wait(timeout=10)
        term.close()
    text = term.text
    assert rc in (0, 130), f"exit status {rc}:\n{text[-3000:]}"
    assert "Traceback" not in text, text[-5000:]
    last = read_view(term.screen)
    assert last is not None and last.t >= late.t, term.screen.dump()
    check_common(last, gate)
    if jsonl is not None:
        decisions = [json.loads(line) for line in jsonl.read_text().splitlines() if line.startswith('{"t"')]
        assert len(decisions) == final_stats(text)[0]["decisions"]
        for view in (quiet, loud, late, last):
            check_against_jsonl(view, decisions, pitch)

    stats, catchups = final_stats(text)
    assert stats["status"] == "stopped (Ctrl-C)", stats
    assert 0 < stats["decisions"] <= stats["audio_s"] / card.decision_interval_s + 1, stats
    assert (stats["overflows"], stats["dropped_samples"], stats["nonfinite_samples"], stats["dropped_decisions"]) \
        == (0, 0, 0, 0), stats
    # the watchdog: half the decisions within its bound; none drifting far past it (a stalled scheduler on a
    # shared machine may hold one back, so twice the bound; a tuner that drifted once reached p99 6 s)
    assert stats["latency_ms_p50"] < MAX_LAG_S * 1e3 and stats["latency_ms_p99"] < 2 * MAX_LAG_S * 1e3, stats
    assert stats["compute_ms_p50"] > 0, stats
    assert stats.get("catchups", catchups) == catchups
    if catchups:  # said where a person sees it: the view's row and a warning line
        assert "behind" in last.rows and "behind real time" in text, text[-3000:]
    print(f"{name}: view latency p50 {loud.ms('latency')['p50']} then {late.ms('latency')['p50']} ms, "
          f"final {stats['latency_ms_p50']} / "
          f"{stats['latency_ms_p99']} ms (p50 / p99), compute p50 {stats['compute_ms_p50']} ms, "
          f"{stats['decisions']} decisions, {catchups} catch-ups, exit {rc}")


# ------------------------------------------------------------------ the views' rows, without a microphone
def _render(view) -> View:
    """``view`` drawn by rich on a colour terminal, read back through `Screen` as the pty test reads it."""
    import io

    from rich.console import Console

    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, color_system="standard", width=COLS)
    console.print(view._render())
    screen = Screen(ROWS, COLS)
    screen.feed(buffer.getvalue().replace("\n", "\r\n").encode())
    shown = read_view(screen)
    assert shown is not None, screen.dump()
    return shown


def test_live_view_shows_the_tags_the_hysteresis_holds_on_and_silence() -> None:
    from edgetag.runtime.engine import Decision
    from edgetag.runtime.output import LiveView
    from edgetag.runtime.sources import SourceStats

    view = LiveView(("low", "mid", "high"), (0.5, 0.5, 0.5), source="test", k=3, sample_rate=RATE)
    shown = _render(view)
    assert "nan" not in shown.text and "p50 -" in shown.rows["latency"], shown.text  # no decision yet

    view.bind_active(lambda: ("low",))  # low held on below its threshold (hysteresis); mid not on yet (--min-on)
    view.decision(Decision(2.0, 32000, np.array([0.45, 0.9, 0.1], np.float32)))
    view.refresh(SourceStats(level_dbfs=-20.0, catchups=2, lag_skipped_samples=RATE), (5.0, 9.0), (0.3, 0.5))
    shown = _render(view)
    assert {r.label: r.on for r in shown.tags} == {"low": True, "mid": False, "high": False}, shown.text
    assert all(r.bar.index("┃") == 15 for r in shown.tags), shown.text
    assert "2 catch-up(s)" in shown.rows["behind"] and "1.0 s skipped" in shown.rows["behind"], shown.text

    view.decision(Decision(2.1, 33600, np.array([0.45, 0.9, 0.1], np.float32), extra={"silent": True}))
    shown = _render(view)
    assert shown.silent and not any(r.on for r in shown.tags), shown.text


def test_tuner_view_says_silence_below_the_level_gate() -> None:
    from edgetag.runtime.engine import Decision
    from edgetag.runtime.output import TunerView
    from edgetag.runtime.pitch import PITCH_LABELS, bin_frequencies

    scores = np.exp(-0.5 * ((np.arange(360) - np.argmin(np.abs(bin_frequencies() - TONE_HZ))) / 1.5) ** 2)
    view = TunerView(PITCH_LABELS, [0.5] * 360, source="test")
    view.decision(Decision(1.0, 16000, scores.astype(np.float32)))
    shown = _render(view)
    assert "VOICED" in shown.rows["voicing"] and not shown.silent, shown.text
    check_tuner(shown)
    view.decision(Decision(1.01, 16160, scores.astype(np.float32), extra={"silent": True}))
    shown = _render(view)
    assert shown.silent and "unvoiced" in shown.rows["voicing"] and "◆" not in shown.rows["cents"], shown.text
