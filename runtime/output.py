"""Writing decisions: JSON lines, CSV, onset/offset events, and a live terminal view.

- `JsonlWriter`: one object per decision, ``{"t", "scores": {label: score},
  "latency_ms"?}`` (plus ``"file"`` when tagging several files).
- `CsvWriter`: a header ``t,latency_ms,<labels...>`` then one row per decision.
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
from edgetag.runtime.postprocess import Event, top_k


class JsonlWriter:
    def __init__(self, out: IO[str], labels: Sequence[str], *, file: str | None = None) -> None:
        self.out, self.labels, self.file = out, tuple(labels), file

    def decision(self, d: Decision, scores: np.ndarray | None = None) -> None:
        obj: dict = {"t": round(d.t, 6), "scores": {
            label: round(float(s), 6) for label, s in zip(self.labels, d.scores if scores is None else scores)
        }}
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
    def __init__(self, out: IO[str], labels: Sequence[str], *, file: str | None = None, header: bool = True) -> None:
        self.out, self.labels, self.file = out, tuple(labels), file
        self.writer = csv.writer(out, lineterminator="\n")
        if header:
            self.writer.writerow((["file"] if file is not None else []) + ["t", "latency_ms", *self.labels])
            out.flush()

    def decision(self, d: Decision, scores: np.ndarray | None = None) -> None:
        values = d.scores if scores is None else scores
        latency = "" if d.latency_s is None else f"{d.latency_s * 1e3:.3f}"
        row = ([self.file] if self.file is not None else []) + [f"{d.t:.6f}", latency]
        self.writer.writerow(row + [f"{float(s):.6f}" for s in values])
        self.out.flush()

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


def format_summary(summary: dict, file: str | None = None) -> str:
    lines = [f"clip summary{f' of {file}' if file else ''}: {summary['decisions']} decisions; "
             f"top: {', '.join(summary['top'])}"]
    width = max((len(label) for label in summary["mean"]), default=5)
    lines.append(f"  {'label':{width}s}   mean    max")
    for label in summary["top"] + [lb for lb in summary["mean"] if lb not in summary["top"]]:
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
