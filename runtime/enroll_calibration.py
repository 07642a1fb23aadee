"""Enrolment's numbers: example embeddings, prototypes and the open-set threshold of each label.

See `edgetag.runtime.enroll` for the method; numpy only.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np


class EnrollmentError(ValueError):
    """Enrolment input that cannot make a model (too few, silent or short clips, bad names, no embedding)."""

#: Largest logit per unit of cosine similarity; smaller when thresholds spread (see `head_constants`).
MAX_SCALE = 10.0
#: Card thresholds stay within sigmoid(+-this): [0.2, 0.8] (hysteresis margins of 0.1 keep working).
THRESHOLD_LOGIT_SPAN = math.log(0.8 / 0.2)
#: Quantiles of the calibration rule (see the module docstring).
POSITIVE_QUANTILE = 0.10
NEGATIVE_QUANTILE = 0.99


def unit_rows(rows: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (float32)."""
    norms = np.linalg.norm(rows, axis=-1, keepdims=True)
    return (rows / np.maximum(norms, 1e-12)).astype(np.float32)


@dataclass
class ClipEmbedding:
    """An example clip: its pooled unit embedding and the unit embeddings of the decisions pooled."""

    source: str
    vector: np.ndarray
    decisions: np.ndarray


@dataclass
class LabelStats:
    """What calibration measured for one label (cosine similarities of decisions)."""

    threshold: float
    positive_quantile: float
    negative_quantile: float
    positives: int
    negatives: int
    true_accept: float
    """Fraction of the leave-one-out positive decisions at or above the threshold."""
    false_accept: float
    """Fraction of the negative decisions at or above the threshold."""
    separable: bool
    background_accept: float = 0.0
    """Fraction of the background's decisions at or above the threshold."""
    other_labels_accept: float = 0.0
    """Fraction of the other labels' example decisions at or above the threshold."""
    closest_other_label: str = ""
    """The other label whose example decisions this label accepts most ("" when it accepts none)."""
    raised_to_background: bool = False
    """The threshold was raised to the one calibrated against the background alone (see `calibrate`)."""


def choose_threshold(positives: np.ndarray, negatives: np.ndarray) -> LabelStats:
    """The open-set threshold of one label (see the module docstring)."""
    pos_q = float(np.quantile(positives, POSITIVE_QUANTILE))
    neg_q = float(np.quantile(negatives, NEGATIVE_QUANTILE)) if len(negatives) else -1.0
    separable = pos_q > neg_q
    if separable:
        threshold = 0.5 * (pos_q + neg_q)
    else:  # overlap: the candidate with the most true accepts minus false accepts
        candidates = np.unique(np.concatenate([positives, negatives]))
        tpr = (positives[None, :] >= candidates[:, None]).mean(axis=1)
        fpr = (negatives[None, :] >= candidates[:, None]).mean(axis=1)
        threshold = float(candidates[int(np.argmax(tpr - fpr))])
    return LabelStats(
        threshold=threshold, positive_quantile=pos_q, negative_quantile=neg_q,
        positives=len(positives), negatives=len(negatives),
        true_accept=float((positives >= threshold).mean()),
        false_accept=float((negatives >= threshold).mean()) if len(negatives) else 0.0,
        separable=separable,
    )


@dataclass
class Enrollment:
    """Enrolled labels: their example embeddings and calibrated thresholds."""

    labels: list[str]
    examples: list[list[ClipEmbedding]]
    stats: list[LabelStats] = field(default_factory=list)
    loo_accuracy: float = float("nan")
    """Leave-one-out nearest-prototype accuracy of the examples' clip embeddings."""

    def prototypes(self) -> np.ndarray:
        """Unit prototypes [K, D]."""
        return unit_rows(np.stack([np.mean([c.vector for c in clips], axis=0) for clips in self.examples]))

    def counts(self) -> list[int]:
        return [len(clips) for clips in self.examples]


def calibrate(enrollment: Enrollment, background: np.ndarray) -> Enrollment:
    """Per-label thresholds and the leave-one-out accuracy (``background``: unit decision embeddings [n, D]).

    A label's negatives are the background's decisions and the other labels' example decisions. Where a
    label overlaps another, the overlap rule can settle below the threshold the background alone calls
    for; the threshold is then raised to that one, so that no label (one added later, say) can make it
    accept more of the background than that calibration allows (the other label's sounds stay accepted
    by both: the overlap is reported).

    With a single example a label has no leave-one-out positives: its own
    decisions stand for them (optimistic; the command requires `MIN_EXAMPLES`).
    """
    protos = enrollment.prototypes()
    sums = [np.sum([c.vector for c in clips], axis=0) for clips in enrollment.examples]
    stats, hits, total = [], 0, 0
    for k, clips in enumerate(enrollment.examples):
        positives = []
        for clip in clips:
            rest = sums[k] - clip.vector if len(clips) > 1 else clip.vector
            loo = unit_rows(rest[None])[0]
            positives.append(clip.decisions @ loo)
            # leave-one-out nearest prototype: this clip against the others' prototypes
            others = protos.copy()
            others[k] = loo
            hits += int(np.argmax(others @ clip.vector) == k)
            total += 1
        pos = np.concatenate(positives)
        on_background = background @ protos[k]
        on_others = {enrollment.labels[j]: np.concatenate([c.decisions @ protos[k] for c in other])
                     for j, other in enumerate(enrollment.examples) if j != k}
        label = choose_threshold(pos, np.concatenate([on_background, *on_others.values()]))
        floor = choose_threshold(pos, on_background).threshold
        if floor > label.threshold:
            label = dataclasses.replace(label, threshold=floor, raised_to_background=True)
        stats.append(_with_accepts(label, pos, on_background, on_others))
    return dataclasses.replace(enrollment, stats=stats, loo_accuracy=hits / max(total, 1))


def _with_accepts(stats: LabelStats, positives: np.ndarray, on_background: np.ndarray,
                  on_others: dict[str, np.ndarray]) -> LabelStats:
    """``stats`` with every accept rate measured at its threshold."""
    t = stats.threshold
    rates = {name: float((sims >= t).mean()) for name, sims in on_others.items() if len(sims)}
    others = np.concatenate(list(on_others.values())) if on_others else np.zeros(0)
    negatives = np.concatenate([on_background, others])
    closest = max(rates, key=rates.get) if rates and max(rates.values()) > 0 else ""
    return dataclasses.replace(
        stats,
        true_accept=float((positives >= t).mean()),
        false_accept=float((negatives >= t).mean()) if len(negatives) else 0.0,
        background_accept=float((on_background >= t).mean()) if len(on_background) else 0.0,
        other_labels_accept=float((others >= t).mean()) if len(others) else 0.0,
        closest_other_label=closest,
    )


def head_constants(thresholds: Sequence[float]) -> tuple[float, float]:
    """(scale, center) of the head: center the mean threshold, scale so every card threshold is in [0.2, 0.8]."""
    center = float(np.mean(thresholds))
    spread = float(np.max(np.abs(np.asarray(thresholds) - center)))
    scale = MAX_SCALE if spread * MAX_SCALE <= THRESHOLD_LOGIT_SPAN else THRESHOLD_LOGIT_SPAN / spread
    return scale, center


def card_threshold(similarity: float, scale: float, center: float) -> float:
    return float(1.0 / (1.0 + math.exp(-scale * (similarity - center))))
