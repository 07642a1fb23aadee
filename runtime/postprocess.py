"""Post-processing of decisions: smoothing over time, hysteresis events, top-k.

All of it works on score vectors (one float per label, in the model card's
label order), one vector per decision, so it is the same for live and
offline runs. Needs only numpy.
"""

from __future__ import annotations

import math
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
    cause: str = ""
    """Why an offset without a score (NaN) came: ``"end"`` of the stream or ``"silence"`` (the level gate)."""

    def to_dict(self) -> dict:
        out = {"t": round(self.t, 6), "event": self.kind, "label": self.label, "score": round(self.score, 6)}
        if self.cause:
            out["cause"] = self.cause
        return out

    def line(self) -> str:
        return f"{self.t:10.3f}  {self.kind:6s}  {self.label}  ({self.score:.3f})"


class Hysteresis:
    """Per-label on/off state: on when score >= threshold, off when score < threshold - margin.

    The margin is at most half the threshold (off below ``threshold - min(margin, threshold / 2)``):
    a tag whose threshold is below the margin (`music-tags-voices`' voice tags: 0.03 to 0.06) would
    otherwise never turn off, since no score is below zero.

    With ``min_on`` / ``min_off`` (decisions, default 1) that state is debounced: a label turns
    on only once the hysteresis has held it on for ``min_on`` decisions in a row, and off once
    it has held it off for ``min_off`` in a row. So a blip shorter than ``min_on`` is no event
    and a gap shorter than ``min_off`` does not split one: scores that wander around a threshold
    on steady music would otherwise flicker on and off several times a minute. Each event is
    stamped at the decision where its run began (when the sound started, not when the rule was
    satisfied), so it is reported up to ``min_on - 1`` decisions late but dated right; with
    both at 1 it is the plain hysteresis.

    ``update(t, scores)`` returns the events of that decision; ``finish(t)``
    closes the labels still on (an ``offset`` at the end of the stream).
    """

    def __init__(self, labels: Sequence[str], thresholds: Sequence[float], margin: float = 0.1,
                 *, min_on: int = 1, min_off: int = 1) -> None:
        if len(labels) != len(thresholds):
            raise ValueError(f"{len(thresholds)} thresholds for {len(labels)} labels")
        if margin < 0:
            raise ValueError(f"hysteresis margin must be >= 0, got {margin}")
        for name, n in (("min_on", min_on), ("min_off", min_off)):
            if int(n) != n or n < 1:
                raise ValueError(f"{name} must be a whole number of decisions >= 1, got {n!r}")
        n_labels = len(labels)
        self.labels = tuple(labels)
        self.on_at = np.asarray(thresholds, dtype=np.float64)
        self.off_below = self.on_at - np.minimum(margin, self.on_at / 2)
        self.min_on, self.min_off = int(min_on), int(min_off)
        self.active = np.zeros(n_labels, dtype=bool)  # the debounced state: what events and ``active`` follow
        self._held = np.zeros(n_labels, dtype=bool)  # the plain hysteresis state
        self._run = np.zeros(n_labels, dtype=np.int64)  # decisions ``_held`` has kept its value
        self._since = np.zeros(n_labels)  # the first decision of that run

    def update(self, t: float, scores: np.ndarray) -> list[Event]:
        scores = np.asarray(scores, dtype=np.float64)
        held = np.where(self._held, scores >= self.off_below, scores >= self.on_at)
        changed = held != self._held
        self._since = np.where(changed, t, self._since)
        self._run = np.where(changed, 1, self._run + 1)
        self._held = held
        turn_on = ~self.active & held & (self._run >= self.min_on)
        turn_off = self.active & ~held & (self._run >= self.min_off)
        events = [Event(float(self._since[i]), self.labels[i], "onset", float(scores[i])) for i in np.flatnonzero(turn_on)]
        events += [Event(float(self._since[i]), self.labels[i], "offset", float(scores[i])) for i in np.flatnonzero(turn_off)]
        self.active = (self.active | turn_on) & ~turn_off
        return events

    def active_labels(self) -> tuple[str, ...]:
        """The labels on now, in card order: what each decision's ``active`` names (jsonl, the Python API)."""
        return tuple(self.labels[i] for i in np.flatnonzero(self.active))

    def finish(self, t: float, cause: str = "end") -> list[Event]:
        """Close every label still on at ``t`` (``cause``: the ``"end"`` of the stream, or ``"silence"``: at once,
        whatever ``min_off``)."""
        events = [Event(t, self.labels[i], "offset", float("nan"), cause) for i in np.flatnonzero(self.active)]
        self.active[:] = False
        self._held[:] = False
        self._run[:] = 0
        return events


def decisions_for(seconds: float, interval_s: float) -> int:
    """A duration in seconds as a whole number of decisions ``interval_s`` apart (at least 1)."""
    if not (math.isfinite(seconds) and seconds >= 0):
        raise ValueError(f"a minimum duration must be a finite number of seconds >= 0, got {seconds!r}")
    if not (math.isfinite(interval_s) and interval_s > 0):
        raise ValueError(f"the decision interval must be > 0 s, got {interval_s!r}")
    return max(1, math.ceil(seconds / interval_s - 1e-9))


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
            # no decision (or only silent ones, which count as zeros), no tags: a list of zero-score
            # labels would read as a result
            "top": [label for label, score in top_k(self.mean, self.labels, k) if score > 0],
        }
