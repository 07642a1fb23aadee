"""Writing decisions: JSON lines, CSV, onset/offset events, and a live terminal view.

- `JsonlWriter`: one object per decision, ``{"t", "scores": {label: score},
  "latency_ms"?}`` (plus ``"file"`` when tagging several files).
- `CsvWriter`: a header ``t,latency_ms,<labels...>`` then one row per decision.
- `PitchJsonlWriter`, `PitchCsvWriter`: the same for pitch models, with the
  decoded pitch (f0, confidence, voiced, note, cents, MIDI) in each decision.
- `EventWriter`: onset/offset lines (text, or JSON objects in jsonl mode).
- `LiveView`: a rich ``Live`` display: top tags with bars, input level in
  dBFS, latency p50/p99, overflows and drops.
"""

from __future__ import annotations

import csv
import json
import math
from typing import IO, Sequence

import numpy as np
from edgetag.runtime.engine import Decision
from edgetag.runtime.pitch import PitchReader
from edgetag.runtime.postprocess import Event, top_k


class JsonlWriter:
    """``scores=False`` leaves the per-label ``"scores"`` out of each decision."""

    def __init__(self, out: IO[str], labels: Sequence[str], *, file: str | None = None, scores: bool = True) -> None:
        self.out, self.labels, self.file, self.scores = out, tuple(labels), file, scores

    def decision(self, d: Decision, scores: np.ndarray | None = None) -> None:
        self._write(d, {}, d.scores if scores is None else scores)

    def _write(self, d: Decision, fields: dict, scores: np.ndarray) -> None:
        obj: dict = {"t": round(d.t, 6), **fields}
        if self.scores:
            obj["scores"] = {label: round(float(s), 6) for label, s in zip(self.labels, scores)}
        if d.latency_s is not None:
            obj["latency_ms"] = round(d.latency_s * 1e3, 3)
        if self.file is not None:
            obj["file"] = self.file
        self.out.write(json.dumps(obj) + "\n")
        self.out.flush()

    def event(self, e: Event) -> None:
        obj = e.to_dict()
        if isinstance(obj.get("score"), float) and math.isnan(obj["score"]):
            obj["score"] = None
        if self.file is not None:
            obj["file"] = self.file
        self.out.write(json.dumps(obj) + "\n")
        self.out.flush()

    def summary(self, summary: dict) -> None:
        obj = {"summary": summary}
        if self.file is not None:
            obj["file"] = self.file
        self.out.write(json.dumps(obj) + "\n")
        self.out.flush()


class CsvWriter:
    """``scores=False`` leaves the per-label columns out (for pitch models, which have others)."""

    extra_columns: tuple[str, ...] = ()

    def __init__(self, out: IO[str], labels: Sequence[str], *, file: str | None = None, header: bool = True,
                 scores: bool = True) -> None:
        self.out, self.labels, self.file, self.scores = out, tuple(labels), file, scores
        self.writer = csv.writer(out, lineterminator="\n")
        if header:
            self.writer.writerow((["file"] if file is not None else []) + ["t", "latency_ms", *self.extra_columns,
                                                                          *(self.labels if scores else ())])
            out.flush()

    def decision(self, d: Decision, scores: np.ndarray | None = None) -> None:
        values = d.scores if scores is None else scores
        latency = "" if d.latency_s is None else f"{d.latency_s * 1e3:.3f}"
        row = ([self.file] if self.file is not None else []) + [f"{d.t:.6f}", latency, *self._extra(values)]
        self.writer.writerow(row + ([f"{float(s):.6f}" for s in values] if self.scores else []))
        self.out.flush()

    def _extra(self, scores: np.ndarray) -> list[str]:
        return []

    def event(self, e: Event) -> None:  # events go to the events stream, not the table
        pass

    def summary(self, summary: dict) -> None:
        pass


class EventWriter:
    """Onset/offset lines as text: ``   12.340  onset   dog  (0.812)``."""

    def __init__(self, out: IO[str], *, file: str | None = None) -> None:
        self.out, self.file = out, file

    def decision(self, d: Decision, scores=None) -> None:
        pass

    def event(self, e: Event) -> None:
        prefix = f"{self.file}: " if self.file else ""
        self.out.write(prefix + e.line() + "\n")
        self.out.flush()

    def summary(self, summary: dict) -> None:
        pass


def format_summary(summary: dict, file: str | None = None, rows: int | None = None) -> str:
    """A clip summary as text: the top labels, then every label's mean and max score (or the first ``rows``)."""
    lines = [f"clip summary{f' of {file}' if file else ''}: {summary['decisions']} decisions; "
             f"top: {', '.join(summary['top'])}"]
    width = max((len(label) for label in summary["mean"]), default=5)
    lines.append(f"  {'label':{width}s}   mean    max")
    ordered = summary["top"] + sorted((lb for lb in summary["mean"] if lb not in summary["top"]),
                                      key=lambda lb: -summary["mean"][lb])
    for label in ordered[:rows]:
        lines.append(f"  {label:{width}s}  {summary['mean'][label]:.3f}  {summary['max'][label]:.3f}")
    return "\n".join(lines)


class LiveView:
    """A rich Live display of the last decision, the input level, latency and losses."""

    def __init__(self, labels: Sequence[str], thresholds: Sequence[float], *, source: str, k: int = 8,
                 console=None) -> None:
        from rich.console import Console
        from rich.live import Live

        self.labels, self.thresholds = tuple(labels), np.asarray(thresholds)
        self.k = min(k, len(self.labels))
        self.source = source
        self.console = console or Console()
        self.scores = np.zeros(len(self.labels), np.float32)
        self.t = 0.0
        self.stats = None
        self.latency = (float("nan"), float("nan"))
        self.compute = (float("nan"), float("nan"))
        self._live = Live(self._render(), console=self.console, refresh_per_second=10, transient=False)

    def __enter__(self) -> LiveView:
        self._live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._live.update(self._render())
        self._live.__exit__(*exc)

    def decision(self, d: Decision, scores: np.ndarray | None = None) -> None:
        self.scores = d.scores if scores is None else scores
        self.t = d.t

    def event(self, e: Event) -> None:
        pass

    def summary(self, summary: dict) -> None:
        pass

    def refresh(self, stats, latency: tuple[float, float], compute: tuple[float, float]) -> None:
        self.stats, self.latency, self.compute = stats, latency, compute
        self._live.update(self._render())

    def _render(self):
        from rich.table import Table
        from rich.text import Text

        table = Table(title=f"edgetag listen: {self.source}   t = {self.t:7.2f} s", expand=False)
        table.add_column("tag")
        table.add_column("score", justify="right")
        table.add_column("", min_width=30)
        for label, score in top_k(self.scores, self.labels, self.k):
            on = score >= self.thresholds[self.labels.index(label)]
            bar = "█" * int(round(30 * max(0.0, min(1.0, score))))
            table.add_row(label, f"{score:.2f}", Text(bar, style="bold green" if on else "cyan"))
        level = -math.inf if self.stats is None else self.stats.level_dbfs
        meter_len = 0 if not math.isfinite(level) else int(round(30 * max(0.0, min(1.0, (level + 60) / 60))))
        table.add_row("input", "-inf dBFS" if not math.isfinite(level) else f"{level:.0f} dBFS",
                      Text("▮" * meter_len, style="yellow"))
        table.add_row("latency", f"p50 {self.latency[0]:.1f} ms", f"p99 {self.latency[1]:.1f} ms")
        table.add_row("compute", f"p50 {self.compute[0]:.2f} ms", f"p99 {self.compute[1]:.2f} ms")
        if self.stats is not None:
            s = self.stats
            style = "bold red" if (s.overflows or s.dropped_samples or s.nonfinite_samples) else "dim"
            table.add_row("losses", Text(f"{s.overflows} overflows", style=style),
                          Text(f"{s.dropped_samples} dropped, {s.nonfinite_samples} NaN", style=style))
        return table


class PitchJsonlWriter(JsonlWriter):
    """`JsonlWriter` for pitch models: each object also carries ``"pitch"`` (f0, note, cents, confidence, voiced).

    ``reader``: the stream's shared `edgetag.runtime.pitch.PitchReader` (default: its own)."""

    def __init__(self, out: IO[str], labels: Sequence[str], *, file: str | None = None, scores: bool = True,
                 reader: PitchReader | None = None) -> None:
        super().__init__(out, labels, file=file, scores=scores)
        self.read = reader or PitchReader()

    def decision(self, d: Decision, scores: np.ndarray | None = None) -> None:
        s = d.scores if scores is None else scores
        self._write(d, {"pitch": self.read(s).to_dict()}, s)


class PitchCsvWriter(CsvWriter):
    """`CsvWriter` for pitch models: the decoded pitch in columns after ``t`` and ``latency_ms``."""

    extra_columns = ("f0_hz", "confidence", "voiced", "note", "cents", "midi")

    def __init__(self, out: IO[str], labels: Sequence[str], *, file: str | None = None, header: bool = True,
                 scores: bool = True, reader: PitchReader | None = None) -> None:
        self.read = reader or PitchReader()
        super().__init__(out, labels, file=file, header=header, scores=scores)

    def _extra(self, scores: np.ndarray) -> list[str]:
        r = self.read(scores)
        return [f"{r.f0_hz:.3f}", f"{r.confidence:.4f}", str(int(r.voiced)), r.note, f"{r.cents:.1f}", str(r.midi)]


class TunerView(LiveView):
    """A tuner for pitch models: the note in big letters, a cents needle from -50 to +50, f0, confidence.

    Same interface as `LiveView` (decision / refresh / context manager), so `listen` can
    use either. Frames below the voicing threshold show as unvoiced (the last note stays,
    dimmed). ``width`` is the number of cells of the cents bar.
    """

    BIG_DIGITS = {  # 3x5 block glyphs for the note name (letters A-G, '#', digits, '-')
        "A": ["▄█▄", "█ █", "███", "█ █", "█ █"], "B": ["██▄", "█ █", "██▄", "█ █", "██▀"],
        "C": ["▄██", "█  ", "█  ", "█  ", "▀██"], "D": ["██▄", "█ █", "█ █", "█ █", "██▀"],
        "E": ["███", "█  ", "██ ", "█  ", "███"], "F": ["███", "█  ", "██ ", "█  ", "█  "],
        "G": ["▄██", "█  ", "█ █", "█ █", "▀██"], "#": ["   ", "█▀█", "▀█▀", "█▄█", "   "],
        "0": ["███", "█ █", "█ █", "█ █", "███"], "1": [" █ ", "██ ", " █ ", " █ ", "███"],
        "2": ["███", "  █", "███", "█  ", "███"], "3": ["███", "  █", " ██", "  █", "███"],
        "4": ["█ █", "█ █", "███", "  █", "  █"], "5": ["███", "█  ", "███", "  █", "███"],
        "6": ["███", "█  ", "███", "█ █", "███"], "7": ["███", "  █", "  █", "  █", "  █"],
        "8": ["███", "█ █", "███", "█ █", "███"], "9": ["███", "█ █", "███", "  █", "███"],
        "-": ["   ", "   ", "███", "   ", "   "],
    }

    def __init__(self, labels: Sequence[str], thresholds: Sequence[float], *, source: str, k: int = 8,
                 console=None, reader: PitchReader | None = None, width: int = 41) -> None:
        self.read = reader or PitchReader()
        self.width = max(11, width | 1)  # odd: a centre cell for 0 cents
        self.reading = None
        self.last_voiced = None
        super().__init__(labels, thresholds, source=source, k=k, console=console)

    def decision(self, d: Decision, scores: np.ndarray | None = None) -> None:
        super().decision(d, scores)
        self.reading = self.read(self.scores)
        if self.reading.voiced:
            self.last_voiced = self.reading

    def big(self, text: str) -> list[str]:
        """Five text rows drawing ``text`` with block glyphs."""
        glyphs = [self.BIG_DIGITS.get(ch, ["   "] * 5) for ch in text]
        return ["  ".join(g[row] for g in glyphs) for row in range(5)]

    def cents_bar(self, cents: float | None) -> str:
        """``-50 [.....|..◆..] +50``: the needle's cell for ``cents`` (None: no needle)."""
        cells = ["·"] * self.width
        mid = self.width // 2
        cells[mid] = "|"
        if cents is not None and math.isfinite(cents):
            pos = mid + int(round(max(-50.0, min(50.0, cents)) / 50.0 * mid))
            cells[pos] = "◆"
        return f"-50 {''.join(cells)} +50"

    def _render(self):
        from rich.table import Table
        from rich.text import Text

        table = Table(title=f"edgetag tuner: {self.source}   t = {self.t:7.2f} s", expand=False, show_header=False)
        table.add_column("what")
        table.add_column("value")
        r = getattr(self, "reading", None)
        shown = r if (r is not None and r.voiced) else getattr(self, "last_voiced", None)
        voiced = r is not None and r.voiced
        style = "bold green" if voiced and abs(r.cents) <= 5 else ("bold yellow" if voiced else "dim")
        note = shown.note if shown is not None else "--"
        table.add_row("note", Text("\n".join(self.big(note)), style=style))
        table.add_row("cents", Text(self.cents_bar(shown.cents if voiced else None), style=style))
        if r is None:
            table.add_row("f0", "-")
        else:
            table.add_row("f0", f"{r.f0_hz:8.2f} Hz  {r.note} {r.cents:+5.1f} cents" if voiced else
                          Text(f"unvoiced (best guess {r.f0_hz:.1f} Hz)", style="dim"))
        conf = 0.0 if r is None else r.confidence
        table.add_row("confidence", Text(f"{conf:4.2f} " + "█" * int(round(20 * max(0.0, min(1.0, conf)))),
                                         style="green" if voiced else "dim"))
        table.add_row("voicing", Text("VOICED" if voiced else "unvoiced", style="bold green" if voiced else "dim"))
        level = -math.inf if self.stats is None else self.stats.level_dbfs
        table.add_row("input", "-inf dBFS" if not math.isfinite(level) else f"{level:.0f} dBFS")
        table.add_row("latency", f"p50 {self.latency[0]:.1f} ms  p99 {self.latency[1]:.1f} ms")
        if self.stats is not None:
            s = self.stats
            bad = s.overflows or s.dropped_samples or s.nonfinite_samples
            table.add_row("losses", Text(f"{s.overflows} overflows, {s.dropped_samples} dropped, "
                                         f"{s.nonfinite_samples} NaN", style="bold red" if bad else "dim"))
        return table


def make_writer(fmt: str, out, labels, file=None, header: bool = True, *, reader=None, scores: bool = True):
    """The decision writer for ``fmt`` (jsonl, csv or events); with a pitch model's ``reader``
    (`edgetag.runtime.pitch.PitchReader`), one that also writes the decoded pitch."""
    if fmt == "jsonl":
        if reader:
            return PitchJsonlWriter(out, labels, file=file, scores=scores, reader=reader)
        return JsonlWriter(out, labels, file=file, scores=scores)
    if fmt == "csv":
        if reader:
            return PitchCsvWriter(out, labels, file=file, header=header, scores=scores, reader=reader)
        return CsvWriter(out, labels, file=file, header=header, scores=scores)
    return EventWriter(out, file=file)
