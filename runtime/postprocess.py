"""Post-processing of decisions: smoothing over time, hysteresis events, top-k.

All of it works on score vectors (one float per label, in the model card's
label order), one vector per decision, so it is the same for live and
offline runs. Needs only numpy.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Sequence

import numpy as np


class Smoother:
    """Moving average of the last ``length`` score vectors (``length=1``: no smoothing).

    At the start of a stream the average is over the vectors seen so far.
    """

    def __init__(self, length: int = 1) -> None:
        if length < 1:
            raise ValueError(f"smoothing length must be >= 1 decision, got {length}")
        self.length = length
        self._history: deque[np.ndarray] = deque(maxlen=length)
        self._sum: np.ndarray | None = None

    def __call__(self, scores: np.ndarray) -> np.ndarray:
        scores = np.asarray(scores, dtype=np.float64)
        if self.length == 1:
            return scores.astype(np.float32)
        if self._sum is None:
            self._sum = np.zeros_like(scores)
        if len(self._history) == self.length:
            self._sum -= self._history[0]
        self._history.append(scores)
        self._sum += scores
        return (self._sum / len(self._history)).astype(np.float32)

    def reset(self) -> None:
        self._history.clear()
        self._sum = None


@dataclass(frozen=True)
class Event:
    """A label switching on (``onset``) or off (``offset``) at time ``t`` seconds."""

    t: float
    label: str
    kind: str  # "onset" | "offset"
    score: float

    def to_dict(self) -> dict:
        return {"t": round(self.t, 6), "event": self.kind, "label": self.label, "score": round(self.score, 6)}

    def line(self) -> str:
        return f"{self.t:10.3f}  {self.kind:6s}  {self.label}  ({self.score:.3f})"


class Hysteresis:
    """Per-label on/off state: on when score >= threshold, off when score < threshold - margin.

    ``update(t, scores)`` returns the events of that decision; ``finish(t)``
    closes the labels still on (an ``offset`` at the end of the stream).
    """

    def __init__(self, labels: Sequence[str], thresholds: Sequence[float], margin: float = 0.1) -> None:
        if len(labels) != len(thresholds):
            raise ValueError(f"{len(thresholds)} thresholds for {len(labels)} labels")
        if margin < 0:
            raise ValueError(f"hysteresis margin must be >= 0, got {margin}")
        self.labels = tuple(labels)
        self.on_at = np.asarray(thresholds, dtype=np.float64)
        self.off_below = self.on_at - margin
        self.active = np.zeros(len(self.labels), dtype=bool)

    def update(self, t: float, scores: np.ndarray) -> list[Event]:
        scores = np.asarray(scores, dtype=np.float64)
        turn_on = ~self.active & (scores >= self.on_at)
        turn_off = self.active & (scores < self.off_below)
        events = [Event(t, self.labels[i], "onset", float(scores[i])) for i in np.flatnonzero(turn_on)]
        events += [Event(t, self.labels[i], "offset", float(scores[i])) for i in np.flatnonzero(turn_off)]
        self.active = (self.active | turn_on) & ~turn_off
        return events

    def active_labels(self) -> tuple[str, ...]:
        """The labels on now, in card order: what each decision's ``active`` names (jsonl, the Python API)."""
        return tuple(self.labels[i] for i in np.flatnonzero(self.active))

    def finish(self, t: float) -> list[Event]:
        events = [Event(t, self.labels[i], "offset", float("nan")) for i in np.flatnonzero(self.active)]
        self.active[:] = False
        return events


def top_k(scores: np.ndarray, labels: Sequence[str], k: int) -> list[tuple[str, float]]:
    """The ``k`` highest-scoring labels, best first (ties: card order)."""
    scores = np.asarray(scores)
    order = np.argsort(-scores, kind="stable")[: max(0, k)]
    return [(labels[i], float(scores[i])) for i in order]


@dataclass
class ClipSummary:
    """Mean and max score per label over a clip's decisions."""

    labels: tuple[str, ...]
    count: int = 0
    _sum: np.ndarray | None = None
    _max: np.ndarray | None = None

    def add(self, scores: np.ndarray) -> None:
        scores = np.asarray(scores, dtype=np.float64)
        if self._sum is None:
            self._sum, self._max = np.zeros_like(scores), np.full_like(scores, -np.inf)
        self._sum += scores
        self._max = np.maximum(self._max, scores)
        self.count += 1

    @property
    def mean(self) -> np.ndarray:
        return self._sum / self.count if self.count else np.zeros(len(self.labels))

    @property
    def max(self) -> np.ndarray:
        return self._max if self.count else np.zeros(len(self.labels))

    def to_dict(self, k: int = 5) -> dict:
        return {
            "decisions": self.count,
            "mean": {label: round(float(v), 6) for label, v in zip(self.labels, self.mean)},
            "max": {label: round(float(v), 6) for label, v in zip(self.labels, self.max)},
            # no decision, no tags: a list of zero-score labels would read as a result
            "top": [label for label, _ in top_k(self.mean, self.labels, k)] if self.count else [],
        }
