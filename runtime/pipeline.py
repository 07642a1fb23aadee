"""The decision pipeline of a stream: what ``edgetag tag`` and ``edgetag listen`` do with each decision."""

from __future__ import annotations

import math

import numpy as np
from edgetag.runtime.pitch import NoteTracker
from edgetag.runtime.postprocess import Hysteresis, Smoother, decisions_for

#: The level gate when a card sets none: a decision whose audio is quieter than this (RMS, dB re full
#: scale) is silence. A microphone in a quiet room sits near -70 to -90 dBFS, quiet music near -40.
DEFAULT_LEVEL_GATE_DBFS = -60.0


def min_durations(card) -> tuple[float, float]:
    """The card's ``min_durations_s`` (on, off) in seconds, else (0, 0): the plain hysteresis.

    The built-in music-tags cards hold (1, 2): a tag describes a texture that lasts, and on 6 h of test
    music this takes onsets from 24.4 to 4.5 per minute (0.5 s / 1 s: 11.2; `benchmarks/thresholds_effect.py`).
    A model of short sounds (an enrolled doorbell) keeps none.
    """
    durations = getattr(card, "min_durations_s", None)
    return (0.0, 0.0) if durations is None else (float(durations[0]), float(durations[1]))


def level_gate(card) -> float:
    """The card's level gate (``level_gate_dbfs``), else `DEFAULT_LEVEL_GATE_DBFS`."""
    gate = getattr(card, "level_gate_dbfs", None)
    return DEFAULT_LEVEL_GATE_DBFS if gate is None else float(gate)


class DecisionPipeline:
    """What happens to each decision of a stream, shared by ``edgetag tag`` and ``edgetag listen``.

    Scores are smoothed (`edgetag.runtime.postprocess.Smoother`, ``smooth`` decisions), added to ``summary``
    (a `ClipSummary` or `edgetag.runtime.pitch.PitchSummary`, optional), turned
    into events (a tag crossing its threshold with ``margin`` of hysteresis, or,
    for a pitch model whose stream decoder is ``reader``, notes starting and
    ending; a tag only after ``min_on_s`` above its threshold and off after ``min_off_s`` below,
    counted in decisions of ``interval_s``), and handed to every writer: each decision, or (``events_only``) the events;
    a writer whose ``follows_events`` is true gets both (the summary's spans: their times and their notes' tuning).

    The level gate: a decision whose audio (`Decision.level_dbfs`) is below ``gate_dbfs`` is
    silence: ``decision.extra["silent"]`` says so, every tag or note still on ends there, no event
    starts, the summary counts it with zero scores (silence adds no tag to it), and writers still
    get the model's scores (what the model said stays visible) and show it as silence. ``gate_dbfs=None`` (or
    -inf): no gate.
    """

    def __init__(self, labels, thresholds, writers, *, smooth: int = 1, margin: float = 0.1,
                 events_only: bool = False, summary=None, reader=None, gate_dbfs: float | None = None,
                 min_on_s: float = 0.0, min_off_s: float = 0.0, interval_s: float = 1.0) -> None:
        self.gate_dbfs = -math.inf if gate_dbfs is None else float(gate_dbfs)
        self.silent_decisions = 0
        self.smoother = Smoother(smooth)
        self.reader = reader
        # checked for every model (a pitch model's notes take no minimum durations: a bad one is still an error)
        min_on, min_off = decisions_for(min_on_s, interval_s), decisions_for(min_off_s, interval_s)
        if reader is not None:
            self.event_detector = NoteTracker(margin=margin, reader=reader)
        else:
            self.event_detector = Hysteresis(labels, thresholds, margin, min_on=min_on, min_off=min_off)
        self.writers = list(writers)
        self.events_only = events_only
        self.summary = summary
        self.last_t = 0.0

    def __call__(self, decision) -> None:
        level = getattr(decision, "level_dbfs", None)
        silent = level is not None and level < self.gate_dbfs
        scores = self.smoother(decision.scores)
        if silent:
            decision.extra["silent"] = True
            self.silent_decisions += 1
        if self.reader is not None:  # decoded first with the decision's audio (silence: no period to measure)
            self.reader(scores, None if silent else getattr(decision, "audio", None))
        heard = np.zeros_like(scores) if silent else scores  # what the tags and notes follow
        self.last_t = decision.t
        if self.summary is not None:
            self.summary.add(heard)  # silence counts as a decision with no tag (and no pitch)
        # silence ends whatever was on at once (hysteresis would hold a tag whose threshold is below its margin)
        if silent:
            events = self.event_detector.finish(decision.t, cause="silence")
        elif self.reader is not None:  # a note struck again shows in its audio's level
            events = self.event_detector.update(decision.t, heard, audio=getattr(decision, "audio", None))
        else:
            events = self.event_detector.update(decision.t, heard)
        for writer in self.writers:
            follows = getattr(writer, "follows_events", False)  # events and decisions, whatever events_only
            if self.events_only or follows:
                for event in events:
                    writer.event(event)
            if not self.events_only or follows:
                writer.decision(decision, scores)

    def finish(self) -> None:
        """End of stream: events still open are closed (and written, with ``events_only``, and to the
        writers that follow events: a writer whose ``follows_events`` is true gets them beside the decisions)."""
        events = self.event_detector.finish(self.last_t)
        for writer in self.writers:
            if self.events_only or getattr(writer, "follows_events", False):
                for event in events:
                    writer.event(event)
