"""The decision pipeline of a stream: what ``edgetag tag`` and ``edgetag listen`` do with each decision."""

from __future__ import annotations

from edgetag.runtime.pitch import NoteTracker
from edgetag.runtime.postprocess import Hysteresis, Smoother


class DecisionPipeline:
    """What happens to each decision of a stream, shared by ``edgetag tag`` and ``edgetag listen``.

    Scores are smoothed (`edgetag.runtime.postprocess.Smoother`, ``smooth`` decisions), added to ``summary``
    (a `ClipSummary` or `edgetag.runtime.pitch.PitchSummary`, optional), turned
    into events (a tag crossing its threshold with ``margin`` of hysteresis, or,
    for a pitch model whose stream decoder is ``reader``, notes starting and
    ending), and handed to every writer: each decision, or (``events_only``) the events.
    """

    def __init__(self, labels, thresholds, writers, *, smooth: int = 1, margin: float = 0.1,
                 events_only: bool = False, summary=None, reader=None) -> None:
        self.smoother = Smoother(smooth)
        if reader is not None:
            self.event_detector = NoteTracker(margin=margin, reader=reader)
        else:
            self.event_detector = Hysteresis(labels, thresholds, margin)
        self.writers = list(writers)
        self.events_only = events_only
        self.summary = summary
        self.last_t = 0.0

    def __call__(self, decision) -> None:
        scores = self.smoother(decision.scores)
        self.last_t = decision.t
        if self.summary is not None:
            self.summary.add(scores)
        events = self.event_detector.update(decision.t, scores)
        for writer in self.writers:
            if self.events_only:
                for event in events:
                    writer.event(event)
            else:
                writer.decision(decision, scores)

    def finish(self) -> None:
        """End of stream: events still open are closed (and written, with ``events_only``)."""
        events = self.event_detector.finish(self.last_t)
        if self.events_only:
            for writer in self.writers:
                for event in events:
                    writer.event(event)
