"""Writing decisions: JSON lines, CSV, onset/offset events, and a live terminal view.

- `JsonlWriter`: one object per decision, ``{"t", "active": [labels on],
  "scores": {label: score}, "latency_ms"?}`` (plus ``"file"`` when tagging
  several files); ``active`` follows the events' hysteresis.
- `CsvWriter`: a header ``t,latency_ms,silent,skipped_s,<labels...>,active`` then one row per
  decision (``--scores none``: ``t,latency_ms,silent,skipped_s,active``).
- `PitchJsonlWriter`, `PitchCsvWriter`: the same for pitch models, with the
  decoded pitch (f0, confidence, voiced, note, cents, MIDI) in each decision.
- `EventCsvWriter`: onset/offset events as CSV (``t,event,label,score``);
  `EventWriter`: the same as text lines (JSON objects in jsonl mode).
- `SpanRecorder`, `format_summary`, `format_pitch_report`: the summary for
  people (``edgetag tag`` on a terminal): top tags and when they were on, or
  the notes played with their times.
- `LiveView`: a rich ``Live`` display: top tags with bars, input level in
  dBFS, latency p50/p99, overflows and drops.
"""

from __future__ import annotations

import csv
import json
import math
import textwrap
from dataclasses import dataclass
from typing import IO, Callable, Mapping, Sequence

import numpy as np
from edgetag.runtime.engine import Decision
from edgetag.runtime.pitch import PitchReader, cents_from, gated, within_note
from edgetag.runtime.postprocess import Event, top_k
from edgetag.runtime.tag_reliability import legend, mark

#: Returns the labels on at the current decision (pitch: the sounding note): the stream's event detector's
#: ``active_labels`` (`edgetag.runtime.postprocess.Hysteresis`, `edgetag.runtime.pitch.NoteTracker`).
ActiveLabels = Callable[[], Sequence[str]]
#: Columns the summaries for people fit in.
TEXT_WIDTH = 80
#: Keys of `Decision.extra` a jsonl decision carries when set: ``silent`` (below the level gate,
#: `edgetag.runtime.pipeline`) and ``skipped_s`` (audio skipped before it to catch up with real time,
#: `edgetag.runtime.engine.StreamRunner`).
DECISION_FLAGS = ("silent", "skipped_s")


class JsonlWriter:
    """``scores=False`` leaves the per-label ``"scores"`` out of each decision; once `bind_active` is
    called, each decision names its ``"active"`` labels."""

    def __init__(self, out: IO[str], labels: Sequence[str], *, file: str | None = None, scores: bool = True,
                 active: ActiveLabels | None = None) -> None:
        self.out, self.labels, self.file, self.scores = out, tuple(labels), file, scores
        self.active = active

    def bind_active(self, active: ActiveLabels) -> None:
        """Name in every decision what ``active()`` returns after it: the labels the events' hysteresis
        holds on (`edgetag.runtime.pipeline.DecisionPipeline` runs its event detector before the writers)."""
        self.active = active

    def decision(self, d: Decision, scores: np.ndarray | None = None) -> None:
        self._write(d, {}, d.scores if scores is None else scores)

    def _write(self, d: Decision, fields: dict, scores: np.ndarray) -> None:
        obj: dict = {"t": round(d.t, 6), **fields}
        if self.active is not None:
            obj["active"] = list(self.active())
        if self.scores:
            obj["scores"] = {label: round(float(s), 6) for label, s in zip(self.labels, scores)}
        if d.latency_s is not None:
            obj["latency_ms"] = round(d.latency_s * 1e3, 3)
        for key in DECISION_FLAGS:  # what the pipeline and the runner noted about this decision
            if key in d.extra:
                value = d.extra[key]
                obj[key] = round(value, 6) if isinstance(value, float) else value
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


def _flag_cell(key: str, value: object) -> str:
    """A CSV cell of a `DECISION_FLAGS` entry: ``silent`` 1 or 0; a number (``skipped_s``) or empty when not set."""
    if key == "silent":
        return str(int(bool(value)))
    return "" if value is None else f"{float(value):.6f}"


class CsvWriter:
    """``scores=False`` leaves the per-label columns out (for pitch models, which have others). The last column,
    ``active``, holds what is on at each decision, as jsonl's ``"active"``: a tagging model's labels, joined by
    ``;``, a pitch model's sounding note (see `bind_active`). After ``latency_ms`` come jsonl's
    `DECISION_FLAGS`: ``silent`` (1: below the level gate, its scores are shown but turn nothing on; else 0)
    and ``skipped_s`` (seconds of audio skipped before it to catch up with real time; empty when none)."""

    extra_columns: tuple[str, ...] = ()

    def __init__(self, out: IO[str], labels: Sequence[str], *, file: str | None = None, header: bool = True,
                 scores: bool = True, active: ActiveLabels | None = None) -> None:
        self.out, self.labels, self.file, self.scores = out, tuple(labels), file, scores
        self.active = active
        self.writer = csv.writer(out, lineterminator="\n")
        if header:
            self.writer.writerow((["file"] if file is not None else []) + [
                "t", "latency_ms", *DECISION_FLAGS, *self.extra_columns, *(self.labels if scores else ()), "active"])
            out.flush()

    def bind_active(self, active: ActiveLabels) -> None:
        """What the ``active`` column holds (see `JsonlWriter.bind_active`)."""
        self.active = active

    def decision(self, d: Decision, scores: np.ndarray | None = None) -> None:
        values = d.scores if scores is None else scores
        latency = "" if d.latency_s is None else f"{d.latency_s * 1e3:.3f}"
        flags = [_flag_cell(key, d.extra.get(key)) for key in DECISION_FLAGS]
        row = ([self.file] if self.file is not None else []) + [f"{d.t:.6f}", latency, *flags, *self._extra(d, values)]
        row += [f"{float(s):.6f}" for s in values] if self.scores else []
        row.append(";".join(self.active()) if self.active is not None else "")
        self.writer.writerow(row)
        self.out.flush()

    def _extra(self, d: Decision, scores: np.ndarray) -> list[str]:
        return []

    def event(self, e: Event) -> None:  # events go to the events stream, not the table
        pass

    def summary(self, summary: dict) -> None:
        pass


class EventWriter:
    """Onset/offset lines as text, for people: ``    12.340  onset   dog  (0.812)``; an offset without a score
    says why it came: ``(end)`` of the stream or ``(silence)``."""

    def __init__(self, out: IO[str], *, file: str | None = None) -> None:
        self.out, self.file = out, file

    def decision(self, d: Decision, scores=None) -> None:
        pass

    def event(self, e: Event) -> None:
        prefix = f"{self.file}: " if self.file else ""
        line = e.line() if math.isfinite(e.score) else f"{e.t:10.3f}  {e.kind:6s}  {e.label}  ({e.cause or 'end'})"
        self.out.write(prefix + line + "\n")
        self.out.flush()

    def summary(self, summary: dict) -> None:
        pass


class EventCsvWriter:
    """Onset/offset events as CSV: a header ``[file,]t,event,label,score``, then a row per event.

    ``label`` is a tag, or for pitch models a note; an offset that ends the stream or comes with silence has
    no score (an empty field, not NaN, which spreadsheets and CSV readers take as text; jsonl's ``"cause"``
    says which).
    """

    def __init__(self, out: IO[str], *, file: str | None = None, header: bool = True) -> None:
        self.out, self.file = out, file
        self.writer = csv.writer(out, lineterminator="\n")
        if header:
            self.writer.writerow((["file"] if file is not None else []) + ["t", "event", "label", "score"])
            out.flush()

    def decision(self, d: Decision, scores=None) -> None:
        pass

    def event(self, e: Event) -> None:
        score = f"{e.score:.6f}" if math.isfinite(e.score) else ""
        self.writer.writerow(([self.file] if self.file is not None else []) + [f"{e.t:.6f}", e.kind, e.label, score])
        self.out.flush()

    def summary(self, summary: dict) -> None:
        pass


@dataclass
class Span:
    """A label (pitch models: a note) on from ``start`` to ``end`` seconds; a note's mean ``cents`` and
    ``f0_hz`` over its voiced decisions (None when only its events were seen)."""

    label: str
    start: float
    end: float
    cents: float | None = None
    f0_hz: float | None = None


class SpanRecorder:
    """A writer that records when each label was on (pitch models: each note), for the summary for people.

    It follows the pipeline's events (``follows_events``): a span runs from an onset to its offset,
    each dated where its run began (a tag's onset where its score first held the threshold, before
    ``--min-on`` confirmed it; a note's at its first decision). The decisions it is given add each
    open note's tuning. At most ``max_spans`` spans are kept (the rest are counted, and still count
    in `on_s`), so a long file costs bounded memory.
    """

    follows_events = True

    def __init__(self, *, reader: PitchReader | None = None, max_spans: int = 10_000) -> None:
        self.read, self.max_spans = reader, max_spans
        self.spans: list[Span] = []  # closed spans, in the order they ended (for notes: in time order)
        self.more = 0  # closed spans not kept
        self.on_s: dict[str, float] = {}  # seconds on, per label, over every span
        self._open: dict[str, list] = {}  # label -> [start, cents sum, f0 sum, voiced decisions]
        self.last_t = 0.0

    def decision(self, d: Decision, scores: np.ndarray | None = None) -> None:
        self.last_t = d.t
        if self.read is not None and self._open:  # a note's tuning: its voiced decisions' cents and f0
            r = self.read(d.scores if scores is None else scores)
            if not r.voiced:
                return
            for note, state in self._open.items():  # (one note at a time)
                if within_note(r.f0_hz, note):  # vibrato across a note boundary is still that note
                    state[1] += cents_from(r.f0_hz, note)
                    state[2] += r.f0_hz
                    state[3] += 1

    def event(self, e: Event) -> None:
        self.last_t = max(self.last_t, e.t)
        if e.kind == "onset":
            self._open.setdefault(e.label, [e.t, 0.0, 0.0, 0])
        elif e.label in self._open:
            self._close(e.label, e.t)

    def summary(self, summary: dict) -> None:
        pass

    def finish(self) -> None:
        """End of the stream: what is still on ends at the last decision (as the events' last offsets do)."""
        for label in list(self._open):
            self._close(label, self.last_t)

    def spans_of(self, label: str) -> list[Span]:
        return [s for s in self.spans if s.label == label]

    def _close(self, label: str, t: float) -> None:
        start, cents, f0, n = self._open.pop(label)
        self.on_s[label] = self.on_s.get(label, 0.0) + (t - start)
        if len(self.spans) >= self.max_spans:
            self.more += 1
            return
        self.spans.append(Span(label, start, t, cents / n if n else None, f0 / n if n else None))


def _clock(seconds: float, long: bool, digits: int = 1) -> str:
    from edgetag.runtime.progress import clock

    return clock(seconds, long, digits)


def _span_list(spans: list[Span], long: bool, room: int) -> str:
    """``0.9-3.4, 5.0-8.0 +3``: as many spans as fit in ``room`` characters, then how many more."""
    text = ""
    for i, span in enumerate(spans):
        item = f"{', ' if text else ''}{_clock(span.start, long)}-{_clock(span.end, long)}"
        rest = len(spans) - i - 1
        if len(text) + len(item) + (len(f" +{rest}") if rest else 0) > room:
            return f"{text} +{len(spans) - i}" if text else f"+{len(spans)}"
        text += item
    return text


def count_of(n: int, noun: str) -> str:
    """``1 decision``, ``3 decisions``."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def format_summary(summary: dict, file: str | None = None, rows: int | None = None, *,
                   thresholds: dict[str, float] | None = None, spans: SpanRecorder | None = None,
                   duration_s: float | None = None, unreliable: Mapping[str, float] | None = None) -> str:
    """A clip summary as text: the top labels, then each label's mean and max score (the first ``rows``).

    Given the card's ``thresholds`` (by label) and the stream's ``spans``, the rows go on with every
    other label that was on at some point (longest first), and each row also says the
    threshold and when the label was on: its share of ``duration_s`` and its time spans (seconds,
    ``m:ss.s`` in files of a minute or more), as many as fit in `TEXT_WIDTH` columns. Tags in
    ``unreliable`` (label -> held-out ROC-AUC, `edgetag.runtime.tag_reliability`) are marked, and a
    last line explains the mark.
    """
    unreliable = unreliable or {}
    top = ", ".join(mark(label, unreliable) for label in summary["top"]) or "none"
    lines = [f"clip summary{f' of {file}' if file else ''}: {count_of(summary['decisions'], 'decision')}; top: {top}"]
    width = max([len("label"), *(len(mark(label, unreliable)) for label in summary["mean"])])
    detail = thresholds is not None and spans is not None
    long = (duration_s or 0.0) >= 60.0
    lines.append(f"  {'label':{width}s}   mean    max" + (f"   thr  on ({'m:ss' if long else 's'})" if detail else ""))
    ordered = summary["top"] + sorted((lb for lb in summary["mean"] if lb not in summary["top"]),
                                      key=lambda lb: -summary["mean"][lb])
    shown = ordered[:rows]
    if detail:
        # a tag that was on belongs in the summary even where its mean score is low (a voice tag's
        # threshold can be 0.03): after the top rows, the others that were on, longest first
        shown += sorted((lb for lb in ordered[len(shown):] if spans.on_s.get(lb, 0.0) > 0),
                        key=lambda lb: -spans.on_s[lb])
    for label in shown:
        row = f"  {mark(label, unreliable):{width}s}  {summary['mean'][label]:.3f}  {summary['max'][label]:.3f}"
        if detail:
            row += f"  {thresholds[label]:.2f}  "
            own = spans.spans_of(label)
            on = spans.on_s.get(label, 0.0)
            if not own and not on:
                row += "-"
            else:
                share = f"{100 * on / duration_s:.0f} %: " if duration_s else ""
                row += share + _span_list(own, long, max(12, TEXT_WIDTH - len(row) - len(share)))
        lines.append(row)
    note = legend(unreliable, [*summary["top"], *shown])
    lines += textwrap.wrap(note, TEXT_WIDTH, initial_indent="  ", subsequent_indent="    ") if note else []
    return "\n".join(lines)


def format_pitch_report(summary: dict, file: str | None = None, *, notes: SpanRecorder | None = None,
                        duration_s: float | None = None, max_notes: int = 40) -> str:
    """A `edgetag.runtime.pitch.PitchSummary` for people: voiced share, median f0 and note, the most frequent
    notes, then (given ``notes``) the notes played, each with its times, mean offset in cents and f0
    (the first ``max_notes``); lines fit in `TEXT_WIDTH` columns but for a long file name."""
    head = f"pitch summary{f' of {file}' if file else ''}: {summary['decisions']} decisions, " \
           f"{100 * summary['voiced_fraction']:.0f} % voiced"
    if summary["median_f0_hz"] is None:
        return head + "; no voiced decision"
    lines = [head, f"  median f0 {summary['median_f0_hz']:.1f} Hz ({summary['median_note']})"]
    frequent = ", ".join(f"{name} {100 * share:.0f} %" for name, share in summary["notes"].items())
    lines += textwrap.wrap(f"most frequent notes (share of voiced): {frequent}", TEXT_WIDTH - 2,
                           initial_indent="  ", subsequent_indent="    ")
    if notes is None:
        return "\n".join(lines)
    played = [s for s in notes.spans]
    total = len(played) + notes.more
    if not total:
        lines.append("  notes: none held long enough to count as one")
        return "\n".join(lines)
    long = (duration_s or 0.0) >= 60.0
    lines.append(f"  notes ({total}): start-end ({'m:ss' if long else 's'}), note, cents off the note, mean f0")
    for span in played[:max_notes]:
        when = f"{_clock(span.start, long, 2)}-{_clock(span.end, long, 2)}"  # decisions are 10 ms apart
        tuning = "" if span.cents is None else f"  {span.cents:+4.0f} ct  {span.f0_hz:7.1f} Hz"
        lines.append(f"    {when:>17s}  {span.label:4s}{tuning}".rstrip())
    if total > max_notes:
        lines.append(f"    ... {total - max_notes} more (every note: --events; every decision: --format csv)")
    return "\n".join(lines)


def _ms(value: float, digits: int) -> str:
    """Milliseconds for the live views; "-" before there is any (no decision yet), not "nan ms"."""
    return f"{value:.{digits}f} ms" if math.isfinite(value) else "-"


def score_bar(score: float, threshold: float, style: str, width: int = 30):
    """A score as a bar of ``width`` cells with the tag's threshold marked (``┃``), as rich Text."""
    from rich.text import Text

    filled = int(round(width * max(0.0, min(1.0, score))))
    mark = min(width - 1, max(0, int(round(width * max(0.0, min(1.0, threshold))))))
    bar = Text()
    for i in range(width):
        if i == mark:
            bar.append("┃", style="bold white")
        else:
            bar.append("█" if i < filled else " ", style=style)
    return bar


class LiveView:
    """A rich Live display of the last decision, the input level, latency and losses."""

    def __init__(self, labels: Sequence[str], thresholds: Sequence[float], *, source: str, k: int = 8,
                 console=None, sample_rate: int | None = None, unreliable: Mapping[str, float] | None = None) -> None:
        from rich.console import Console
        from rich.live import Live

        self.unreliable = unreliable or {}  # label -> held-out ROC-AUC: marked, explained under the table
        self.sample_rate = sample_rate  # for the catch-up row in seconds
        self.silent = False
        self.active: ActiveLabels | None = None  # see `bind_active`
        self.on: frozenset[str] = frozenset()
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

    def bind_active(self, active: ActiveLabels) -> None:
        """Show a tag as on when the stream's event detector holds it on (hysteresis, minimum durations),
        as jsonl's ``active`` and the events say; unbound, a tag is on while its score is at its threshold."""
        self.active = active

    def decision(self, d: Decision, scores: np.ndarray | None = None) -> None:
        self.scores = d.scores if scores is None else scores
        self.t = d.t
        self.silent = bool(d.extra.get("silent"))
        self.on = frozenset(self.active()) if self.active is not None else frozenset()

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

        table = Table(title=self._title("edgetag listen"), expand=False)
        table.add_column("tag")
        table.add_column("score", justify="right")
        table.add_column("", min_width=30)
        shown = top_k(self.scores, self.labels, self.k)
        if self.active is not None and not self.silent:
            # a tag that is on is shown even below the top k (a voice tag's threshold can be 0.03)
            listed = {label for label, _ in shown}
            shown += [(label, float(self.scores[self.labels.index(label)]))
                      for label in self.labels if label in self.on and label not in listed]
        for label, score in shown:
            threshold = float(self.thresholds[self.labels.index(label)])
            on = (label in self.on if self.active is not None else score >= threshold) and not self.silent
            table.add_row(mark(label, self.unreliable), f"{score:.2f}", score_bar(
                score, threshold, "dim" if self.silent else ("bold green" if on else "cyan")))
        table.caption = legend(self.unreliable, [label for label, _ in shown]) or None
        if self.silent:
            table.add_row("silence", Text("below the level gate", style="dim"), Text("no tag is on", style="dim"))
        level = -math.inf if self.stats is None else self.stats.level_dbfs
        meter_len = 0 if not math.isfinite(level) else int(round(30 * max(0.0, min(1.0, (level + 60) / 60))))
        table.add_row("input", "-inf dBFS" if not math.isfinite(level) else f"{level:.0f} dBFS",
                      Text("▮" * meter_len, style="yellow"))
        table.add_row("latency", f"p50 {_ms(self.latency[0], 1)}", f"p99 {_ms(self.latency[1], 1)}")
        table.add_row("compute", f"p50 {_ms(self.compute[0], 2)}", f"p99 {_ms(self.compute[1], 2)}")
        if self.stats is not None:
            s = self.stats
            style = "bold red" if (s.overflows or s.dropped_samples or s.nonfinite_samples) else "dim"
            table.add_row("losses", Text(f"{s.overflows} overflows", style=style),
                          Text(f"{s.dropped_samples} dropped, {s.nonfinite_samples} NaN", style=style))
            self._behind_row(table)
        return table

    def _title(self, what: str) -> str:
        # the time first, so a narrow terminal wraps the source, not "t =" away from its number
        return f"t = {self.t:7.2f} s   {what}: {self.source}"

    def _behind_row(self, table) -> None:
        """A red row once the worker had to skip audio to keep up with real time (`StreamRunner`)."""
        from rich.text import Text

        s = self.stats
        if not getattr(s, "catchups", 0):
            return
        skipped = (f"{s.lag_skipped_samples / self.sample_rate:.1f} s" if self.sample_rate
                   else f"{s.lag_skipped_samples} samples")
        table.add_row("behind", Text(f"{s.catchups} catch-up(s)", style="bold red"),
                      Text(f"{skipped} skipped to stay live", style="bold red"))


class PitchJsonlWriter(JsonlWriter):
    """`JsonlWriter` for pitch models: each object also carries ``"pitch"`` (f0, note, cents, confidence, voiced).

    ``reader``: the stream's shared `edgetag.runtime.pitch.PitchReader` (default: its own)."""

    def __init__(self, out: IO[str], labels: Sequence[str], *, file: str | None = None, scores: bool = True,
                 reader: PitchReader | None = None) -> None:
        super().__init__(out, labels, file=file, scores=scores)
        self.read = reader or PitchReader()

    def decision(self, d: Decision, scores: np.ndarray | None = None) -> None:
        s = d.scores if scores is None else scores
        self._write(d, {"pitch": gated(self.read(s), bool(d.extra.get("silent"))).to_dict()}, s)


class PitchCsvWriter(CsvWriter):
    """`CsvWriter` for pitch models: the decoded pitch in columns after ``t`` and ``latency_ms``."""

    extra_columns = ("f0_hz", "confidence", "voiced", "note", "cents", "midi", "clarity")

    def __init__(self, out: IO[str], labels: Sequence[str], *, file: str | None = None, header: bool = True,
                 scores: bool = True, reader: PitchReader | None = None) -> None:
        self.read = reader or PitchReader()
        super().__init__(out, labels, file=file, header=header, scores=scores)

    def _extra(self, d: Decision, scores: np.ndarray) -> list[str]:
        r = gated(self.read(scores), bool(d.extra.get("silent")))
        clarity = "" if r.clarity is None else f"{r.clarity:.4f}"  # empty: no period measured (silence)
        return [f"{r.f0_hz:.3f}", f"{r.confidence:.4f}", str(int(r.voiced)), r.note, f"{r.cents:.1f}", str(r.midi),
                clarity]


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
                 console=None, reader: PitchReader | None = None, width: int = 41, sample_rate: int | None = None) -> None:
        self.read = reader or PitchReader()
        self.width = max(11, width | 1)  # odd: a centre cell for 0 cents
        self.reading = None
        self.last_voiced = None
        super().__init__(labels, thresholds, source=source, k=k, console=console, sample_rate=sample_rate)

    def decision(self, d: Decision, scores: np.ndarray | None = None) -> None:
        super().decision(d, scores)
        self.reading = gated(self.read(self.scores), self.silent)
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

        table = Table(title=self._title("edgetag tuner"), expand=False, show_header=False)
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
        status = "VOICED" if voiced else ("unvoiced: silence (below the level gate)" if self.silent else "unvoiced")
        table.add_row("voicing", Text(status, style="bold green" if voiced else "dim"))
        level = -math.inf if self.stats is None else self.stats.level_dbfs
        table.add_row("input", "-inf dBFS" if not math.isfinite(level) else f"{level:.0f} dBFS")
        table.add_row("latency", f"p50 {_ms(self.latency[0], 1)}  p99 {_ms(self.latency[1], 1)}")
        table.add_row("compute", f"p50 {_ms(self.compute[0], 2)}  p99 {_ms(self.compute[1], 2)}")
        if self.stats is not None:
            s = self.stats
            bad = s.overflows or s.dropped_samples or s.nonfinite_samples
            table.add_row("losses", Text(f"{s.overflows} overflows, {s.dropped_samples} dropped, "
                                         f"{s.nonfinite_samples} NaN", style="bold red" if bad else "dim"))
            self._behind_row(table)
        return table


def make_writer(fmt: str, out, labels, file=None, header: bool = True, *, reader=None, scores: bool = True):
    """The decision writer for ``fmt``: jsonl, csv, events (CSV: ``--events --format csv``) or events-text
    (lines for people); with a pitch model's ``reader`` (`edgetag.runtime.pitch.PitchReader`), one that
    also writes the decoded pitch."""
    if fmt == "jsonl":
        if reader:
            return PitchJsonlWriter(out, labels, file=file, scores=scores, reader=reader)
        return JsonlWriter(out, labels, file=file, scores=scores)
    if fmt == "csv":
        if reader:
            return PitchCsvWriter(out, labels, file=file, header=header, scores=scores, reader=reader)
        return CsvWriter(out, labels, file=file, header=header, scores=scores)
    if fmt == "events":
        return EventCsvWriter(out, file=file, header=header)
    if fmt == "events-text":
        return EventWriter(out, file=file)
    raise ValueError(f"unknown output format {fmt!r}: jsonl, csv, events or events-text")
