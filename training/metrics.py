"""Evaluation metrics in numpy: tagging, classification, pitch, and student-teacher agreement.

Tagging (``y_true`` ``[N, C]`` in {0, 1}, ``y_score`` ``[N, C]``, optional
``mask`` ``[N, C]`` with 0 for missing labels: each class uses only its
observed rows):

- `average_precision` / mAP: the step-wise area ``sum_n (R_n - R_{n-1}) P_n``
  over distinct score thresholds (scikit-learn's ``average_precision_score``);
- `roc_auc`: the Mann-Whitney statistic with ties counted one half (equal to
  scikit-learn's trapezoidal ``roc_auc_score``);
- `pr_auc`: the trapezoidal area under the precision-recall curve (scikit-learn's
  ``auc(recall, precision)``; it differs from AP by interpolating);
- `f1_scores`: per-class and macro F1 at per-class or global thresholds;
- `accuracy` for multi-class (argmax).

Macro averages skip classes where a metric is undefined (no positive for AP /
PR-AUC; only one class present for ROC-AUC) and report how many were skipped.

Pitch (`pitch_metrics`), with mir_eval's conventions (``mir_eval.melody``):
frequencies in Hz, a frequency <= 0 is unvoiced (a negative estimate is an
unvoiced frame carrying a pitch guess: its absolute value is used for pitch
accuracy), cents are ``1200 * log2(f / 10)`` (0 for f = 0). Raw pitch
accuracy is the fraction of reference-voiced frames whose estimate is non-zero
and within 50 cents (strictly less); raw chroma accuracy folds the difference
to the nearest octave first; voicing recall is the fraction of
reference-voiced frames estimated voiced, voicing false alarm the fraction of
reference-unvoiced frames estimated voiced.

Agreement (`agreement`): how well a student reproduces its teacher.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "accuracy",
    "agreement",
    "average_precision",
    "f1_scores",
    "hz_to_cents",
    "macro",
    "pitch_metrics",
    "pr_auc",
    "pr_curve",
    "roc_auc",
    "tagging_metrics",
    "track_bootstrap",
]


# ----------------------------------------------------------------------------- binary curves
def _binary_counts(y_true: np.ndarray, y_score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative true / false positives at each distinct threshold, highest score first."""
    order = np.argsort(-y_score, kind="mergesort")
    s, t = y_score[order], y_true[order]
    distinct = np.nonzero(np.diff(s))[0]
    ends = np.r_[distinct, len(s) - 1]
    tps = np.cumsum(t)[ends]
    fps = (ends + 1) - tps
    return tps.astype(np.float64), fps.astype(np.float64)


def _check_binary(y_true: np.ndarray, y_score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y_true = np.asarray(y_true).reshape(-1)
    y_score = np.asarray(y_score, dtype=np.float64).reshape(-1)
    if y_true.shape != y_score.shape:
        raise ValueError(f"y_true and y_score differ in length: {y_true.shape} vs {y_score.shape}")
    if not np.all(np.isfinite(y_score)):
        raise ValueError("y_score has NaN or Inf")
    return (y_true > 0.5).astype(np.int64), y_score


def pr_curve(y_true: np.ndarray, y_score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(precision, recall)`` at the distinct thresholds, highest first; empty if no positive."""
    y_true, y_score = _check_binary(y_true, y_score)
    if y_true.sum() == 0:
        return np.zeros(0), np.zeros(0)
    tps, fps = _binary_counts(y_true, y_score)
    return tps / (tps + fps), tps / tps[-1]


def average_precision(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """Average precision of one binary problem; NaN when there is no positive."""
    precision, recall = pr_curve(y_true, y_score)
    if len(precision) == 0:
        return float("nan")
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def pr_auc(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """Trapezoidal area under the PR curve, with the point (recall 0, precision 1); NaN without positives."""
    precision, recall = pr_curve(y_true, y_score)
    if len(precision) == 0:
        return float("nan")
    r = np.r_[0.0, recall]
    p = np.r_[1.0, precision]
    return float(np.trapezoid(p, r) if hasattr(np, "trapezoid") else np.trapz(p, r))


def _rankdata(x: np.ndarray) -> np.ndarray:
    """1-based ranks, ties given their average rank."""
    order = np.argsort(x, kind="mergesort")
    s = x[order]
    starts = np.r_[0, np.nonzero(np.diff(s))[0] + 1]
    ends = np.r_[starts[1:], len(s)]
    avg = (starts + ends + 1) / 2.0  # mean of ranks start+1 .. end
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = np.repeat(avg, ends - starts)
    return ranks


def roc_auc(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """Area under the ROC curve (ties count one half); NaN unless both classes are present."""
    y_true, y_score = _check_binary(y_true, y_score)
    n_pos = int(y_true.sum())
    n_neg = len(y_true) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = _rankdata(y_score)
    return float((ranks[y_true == 1].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


# ----------------------------------------------------------------------------- multi-label
def _check_matrix(y_true: np.ndarray, y_score: np.ndarray, mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    y_true = np.asarray(y_true)
    y_score = np.asarray(y_score, dtype=np.float64)
    if y_true.ndim == 1:
        y_true, y_score = y_true[:, None], y_score[:, None]
    if y_true.shape != y_score.shape or y_true.ndim != 2:
        raise ValueError(f"y_true and y_score must both be [N, C], got {y_true.shape} and {y_score.shape}")
    m = np.ones(y_true.shape, dtype=bool) if mask is None else (np.broadcast_to(np.asarray(mask), y_true.shape) > 0)
    return y_true, y_score, m


def per_class(fn: Any, y_true: np.ndarray, y_score: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """``fn(y_true[:, c], y_score[:, c])`` over the observed rows of each class."""
    y_true, y_score, m = _check_matrix(y_true, y_score, mask)
    return np.array([fn(y_true[m[:, c], c], y_score[m[:, c], c]) for c in range(y_true.shape[1])], dtype=np.float64)


def macro(values: np.ndarray) -> tuple[float, int]:
    """``(mean over defined (non-NaN) values, number of NaN values skipped)``; NaN if none is defined."""
    values = np.asarray(values, dtype=np.float64)
    ok = ~np.isnan(values)
    return (float(values[ok].mean()) if ok.any() else float("nan")), int((~ok).sum())


def track_bootstrap(y_true: np.ndarray, y_score: np.ndarray, track: np.ndarray, n: int = 200,
                    fn: Callable[[np.ndarray, np.ndarray], float] | None = None, seed: int = 0) -> list[float]:
    """95 % interval of the macro ``fn`` (default `roc_auc`) over classes when whole tracks are resampled.

    Rows of one track (a track's windows) are not independent, so whole tracks are drawn, with
    replacement, ``n`` times (seed ``seed``); each draw averages over the classes where ``fn`` is
    defined in it. ``[nan, nan]`` when no draw has one.
    """
    fn = roc_auc if fn is None else fn
    track = np.asarray(track)
    rows = [np.flatnonzero(track == t) for t in np.unique(track)]
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n):
        pick = np.concatenate([rows[i] for i in rng.integers(0, len(rows), len(rows))])
        values.append(macro(per_class(fn, y_true[pick], y_score[pick]))[0])
    if np.all(np.isnan(values)):
        return [float("nan"), float("nan")]
    lo, hi = np.nanpercentile(values, [2.5, 97.5])
    return [float(lo), float(hi)]


def f1_scores(
    y_true: np.ndarray,
    y_score: np.ndarray,
    thresholds: float | np.ndarray = 0.5,
    mask: np.ndarray | None = None,
    zero_division: float = 0.0,
) -> tuple[np.ndarray, float]:
    """Per-class F1 of ``y_score >= threshold`` (scalar or one per class) and their macro mean.

    A class with no positive and no predicted positive has F1 ``zero_division``
    (scikit-learn's convention, default 0).
    """
    y_true, y_score, m = _check_matrix(y_true, y_score, mask)
    thr = np.broadcast_to(np.asarray(thresholds, dtype=np.float64), (y_true.shape[1],))
    pred = y_score >= thr
    truth = y_true > 0.5
    tp = ((pred & truth) & m).sum(0).astype(np.float64)
    fp = ((pred & ~truth) & m).sum(0).astype(np.float64)
    fn = ((~pred & truth) & m).sum(0).astype(np.float64)
    denom = 2 * tp + fp + fn
    f1 = np.where(denom > 0, 2 * tp / np.maximum(denom, 1), zero_division)
    return f1, float(f1.mean()) if len(f1) else float("nan")


def accuracy(y_true: np.ndarray, y_score: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Multi-class accuracy of ``argmax(y_score)``.

    ``y_true`` is class indices ``[N]`` (negative: unlabelled) or one-hot ``[N, C]``
    (an all-zero row is unlabelled); ``mask`` ``[N]`` or ``[N, C]`` (the entry at the
    true class counts) drops examples. NaN with no labelled example.
    """
    y_score = np.asarray(y_score, dtype=np.float64)
    y_true = np.asarray(y_true)
    if y_true.ndim == 2:
        labelled = y_true.max(1) > 0
        idx = np.where(labelled, y_true.argmax(1), -1)
    else:
        idx = y_true.astype(np.int64)
        labelled = idx >= 0
    if mask is not None:
        mask = np.asarray(mask)
        if mask.ndim == 2:
            mask = mask[np.arange(len(idx)), np.maximum(idx, 0)]
        labelled &= mask > 0
    if not labelled.any():
        return float("nan")
    return float((y_score[labelled].argmax(1) == idx[labelled]).mean())


def tagging_metrics(
    y_true: np.ndarray,
    y_score: np.ndarray,
    mask: np.ndarray | None = None,
    thresholds: float | np.ndarray = 0.5,
    task: str = "multi_label",
) -> dict[str, float]:
    """The usual report: mAP, ROC-AUC, PR-AUC, macro F1 (and accuracy for multi-class),
    with the number of classes each macro average skipped (``*_skipped``). A split without one labelled
    positive (a pitch student's, whose targets are teacher bins) has none of them: only ``n_examples``
    (a macro F1 of 0 would read as a measured failure)."""
    out: dict[str, float] = {"n_examples": int(np.asarray(y_true).shape[0])}
    truth = np.asarray(y_true)
    if truth.ndim == 2:  # [N, C] targets (class indices [N] always name a class)
        truth, _, m = _check_matrix(y_true, y_score, mask)
        if not ((truth > 0.5) & m).any():
            return out
    ap, out["map_skipped"] = macro(per_class(average_precision, y_true, y_score, mask))
    out["map"] = ap
    out["roc_auc"], out["roc_auc_skipped"] = macro(per_class(roc_auc, y_true, y_score, mask))
    out["pr_auc"], out["pr_auc_skipped"] = macro(per_class(pr_auc, y_true, y_score, mask))
    _, out["macro_f1"] = f1_scores(y_true, y_score, thresholds, mask)
    if task == "multi_class":
        out["accuracy"] = accuracy(y_true, y_score, mask)
    return out


# ----------------------------------------------------------------------------- pitch
def hz_to_cents(freq: np.ndarray, base: float = 10.0) -> np.ndarray:
    """``1200 * log2(|f| / base)``, and 0 where f is 0 (mir_eval's ``hz2cents``)."""
    f = np.abs(np.asarray(freq, dtype=np.float64))
    out = np.zeros_like(f)
    nz = f > 0
    out[nz] = 1200.0 * np.log2(f[nz] / base)
    return out


def pitch_metrics(
    ref_hz: np.ndarray,
    est_hz: np.ndarray,
    est_voicing: np.ndarray | None = None,
    cent_tolerance: float = 50.0,
) -> dict[str, float]:
    """Raw pitch / chroma accuracy and voicing recall / false alarm, frame by frame.

    ``ref_hz`` and ``est_hz`` are per-frame f0 on the same time grid (Hz; <= 0
    unvoiced). ``est_voicing`` (bool, or a confidence already thresholded)
    overrides the voicing implied by ``est_hz > 0``; the estimate's pitch is
    then ``|est_hz|`` everywhere. A metric whose denominator is empty is NaN
    (mir_eval returns 0 there; NaN keeps "undefined" apart from "wrong").
    """
    ref = np.asarray(ref_hz, dtype=np.float64).reshape(-1)
    est = np.asarray(est_hz, dtype=np.float64).reshape(-1)
    if ref.shape != est.shape:
        raise ValueError(f"reference and estimate differ in length: {ref.shape} vs {est.shape}")
    ref_v = ref > 0
    est_v = est > 0 if est_voicing is None else np.asarray(est_voicing).reshape(-1).astype(bool)
    if est_v.shape != ref.shape:
        raise ValueError("est_voicing must have one value per frame")
    ref_c, est_c = hz_to_cents(ref), hz_to_cents(est)
    n_ref_v = int(ref_v.sum())
    n_ref_u = len(ref) - n_ref_v
    both = ref_v & (est_c != 0)
    diff = np.abs(ref_c - est_c)
    pitch_ok = both & (diff < cent_tolerance)
    folded = np.abs(diff - 1200.0 * np.floor(diff / 1200.0 + 0.5))
    chroma_ok = both & (folded < cent_tolerance)

    def ratio(num: int, den: int) -> float:
        return float(num) / den if den else float("nan")

    return {
        "raw_pitch_accuracy": ratio(int(pitch_ok.sum()), n_ref_v),
        "raw_chroma_accuracy": ratio(int(chroma_ok.sum()), n_ref_v),
        "voicing_recall": ratio(int((ref_v & est_v).sum()), n_ref_v),
        "voicing_false_alarm": ratio(int((~ref_v & est_v).sum()), n_ref_u),
        "n_frames": len(ref),
        "n_voiced": n_ref_v,
    }


# ----------------------------------------------------------------------------- agreement
def _pearson_per_class(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Column-wise correlation; NaN where either column is constant."""
    if len(a) == 0:
        return np.full(a.shape[1], np.nan)
    constant = np.all(a == a[:1], axis=0) | np.all(b == b[:1], axis=0)
    a = a - a.mean(0)
    b = b - b.mean(0)
    den = np.sqrt((a * a).sum(0) * (b * b).sum(0))
    num = (a * b).sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((den > 0) & ~constant, num / np.where(den > 0, den, 1.0), np.nan)


def agreement(
    student_scores: np.ndarray,
    teacher_scores: np.ndarray,
    threshold: float = 0.5,
    mask: np.ndarray | None = None,
) -> dict[str, float]:
    """How well student scores reproduce the teacher's, both ``[N, C]`` probabilities.

    - ``roc_auc`` / ``pr_auc`` / ``map``: the student's scores ranked against the
      teacher's decisions ``teacher >= threshold`` (macro over classes where
      they are defined; ``*_skipped`` counts the rest);
    - ``pearson``: mean over classes of the correlation between student and
      teacher scores (constant classes skipped);
    - ``top1``: fraction of rows where both have the same highest-scoring class.
    """
    s = np.asarray(student_scores, dtype=np.float64)
    t = np.asarray(teacher_scores, dtype=np.float64)
    if s.ndim == 1:
        s, t = s[:, None], t[:, None]
    if s.shape != t.shape:
        raise ValueError(f"student and teacher scores differ in shape: {s.shape} vs {t.shape}")
    binary = (t >= threshold).astype(np.int64)
    out: dict[str, float] = {}
    out["roc_auc"], out["roc_auc_skipped"] = macro(per_class(roc_auc, binary, s, mask))
    out["pr_auc"], out["pr_auc_skipped"] = macro(per_class(pr_auc, binary, s, mask))
    out["map"], out["map_skipped"] = macro(per_class(average_precision, binary, s, mask))
    if mask is None:
        out["pearson"], out["pearson_skipped"] = macro(_pearson_per_class(s, t))
    else:
        m = np.broadcast_to(np.asarray(mask), s.shape) > 0
        out["pearson"], out["pearson_skipped"] = macro(
            np.array([_pearson_per_class(s[m[:, c], c : c + 1], t[m[:, c], c : c + 1])[0] if m[:, c].sum() > 1 else np.nan for c in range(s.shape[1])])
        )
    out["top1"] = float((s.argmax(1) == t.argmax(1)).mean()) if len(s) else float("nan")
    out["n_examples"] = len(s)
    return out


@dataclass
class MetricTable:
    """Named metric rows, printable as an aligned text table."""

    rows: dict[str, dict[str, float]] = field(default_factory=dict)

    def text(self) -> str:
        lines = []
        for section, values in self.rows.items():
            lines.append(section)
            for k, v in values.items():
                lines.append(f"  {k:<24} {v:.4f}" if isinstance(v, float) else f"  {k:<24} {v}")
        return "\n".join(lines)
