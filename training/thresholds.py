"""Per-tag decision thresholds calibrated on held-out audio against a cached teacher (``edgetag calibrate``).

A multi-label model's card holds one threshold per label: ``edgetag tag``,
``listen`` and `edgetag.load` turn a tag on when its score reaches it. A
distilled student's scores are compressed against the teacher's (on the
music-tag recipe's valid windows that the teacher tags, its median score
0.56, the student's is 0.31), so the teacher's own 0.5 leaves most tags off.
Here each tag gets the threshold that makes the student agree best with the
teacher on held-out music (none of it heard in training).

The rule, per tag (``RULE``):

* **reference**: the teacher's scores binarised at its own threshold
  (``teacher_threshold``, 0.5), per teacher window; each student decision
  whose window lies inside a teacher window takes that window's tag (the
  alignment of `edgetag.training.teacher_windows`, shared with the music-tag
  recipe's agreement measure). Thresholds are chosen on *decisions*, because
  the runtime applies them to each decision, not to a 3 s mean.
* **calibrated** (tags with at least ``min_positive_windows`` positive teacher
  windows from at least ``min_positive_tracks`` tracks): the threshold on the
  student's score that maximises F1 over the split's decisions; it is placed
  halfway between the two neighbouring distinct scores (not on a score seen),
  and among equal F1 the highest threshold wins (fewer tags on).
* **fallback** (every other tag: too few positives for an F1 optimum that
  means anything): the student's score quantile at which it is on as often as
  the teacher was on the split (for a tag the teacher never gave there: just
  above the student's highest score), clipped into [median of the calibrated
  thresholds, teacher threshold]. The quantile keeps a rare tag from firing
  more often than the teacher does; the floor keeps a tag whose scores are all
  tiny (``no voice`` peaks at 0.05) from turning on at a score that says
  nothing, at the level where calibrated tags say "the teacher agrees"; the
  cap is the threshold every tag had before calibration.

The graph is not touched: the thresholds, the rule and the per-tag held-out
F1 / precision / recall go into the card (`edgetag.export.model_file.record_metrics`),
which lies outside the integrity digest, and the test vector holds scores,
not decisions, so ``edgetag verify`` still passes.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

RULE = ("per tag, the threshold on the student's score that maximises F1 over the split's decisions (one every "
        "{decision_s:g} s) against "
        "the teacher's tags binarised at {teacher_threshold:g} (each decision whose window lies inside a teacher window "
        "takes that window's tag); halfway between neighbouring scores, ties to the higher threshold")
FALLBACK = ("tags with fewer than {min_positive_windows} positive teacher windows or {min_positive_tracks} tracks: the "
            "score quantile matching the teacher's positive rate on the split, clipped into [median of the calibrated "
            "thresholds, {teacher_threshold:g}]")
# 30 windows = 1.5 min of music the teacher tags. Chosen on the music-tag recipe's valid split alone, by fitting
# thresholds on random halves of its tracks and scoring them on the other half (means of 20 halvings): tags with
# fewer positive windows (2-28 there) kept an out-of-fold F1 of 0.00-0.13 with their F1 thresholds and were on
# 1-49 % of the time against the teacher's 0.1-1.6 %; tags with 31-93 kept 0.27-0.37. Below it, the F1 optimum
# follows a handful of windows.
MIN_POSITIVE_WINDOWS = 30
MIN_POSITIVE_TRACKS = 2  # windows of one track are not independent; one track deciding a threshold is overfitting
DECIMALS = 4  # stored thresholds are rounded (readable in `edgetag info`); statistics use the rounded values


@dataclass(frozen=True)
class TagThreshold:
    """One tag's chosen threshold and how it does on the split it was chosen on."""

    label: str
    threshold: float
    rule: str
    """``f1`` (calibrated) or ``fallback``."""
    positive_windows: int
    positive_tracks: int
    f1: float | None
    """On the split's decisions; None where undefined (no positive and nothing on)."""
    precision: float | None
    """None when the tag is never on."""
    recall: float | None
    """None when the teacher never gave the tag."""
    on_fraction: float
    """Share of the split's decisions with this tag on."""


def f1_threshold(positive: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    """(threshold, F1) of the rule ``scores >= threshold`` that maximises F1 against ``positive``.

    The threshold lies halfway between the lowest score taken and the next lower distinct score
    (the lowest score itself when every decision is taken), so a decision scored exactly like one
    seen is classed the same way; among equal F1 the higher threshold wins. Needs >= 1 positive.
    """
    positive = np.asarray(positive, dtype=bool)
    scores = np.asarray(scores, dtype=np.float64)
    if positive.shape != scores.shape or positive.ndim != 1:
        raise ValueError(f"positive {positive.shape} and scores {scores.shape} must be equal-length vectors")
    n_positive = int(positive.sum())
    if n_positive == 0:
        raise ValueError("F1 needs at least one positive")
    order = np.argsort(-scores, kind="stable")
    ranked, hits = scores[order], positive[order]
    tp = np.cumsum(hits)
    taken = np.arange(1, len(ranked) + 1)
    f1 = 2.0 * tp / (taken + n_positive)
    # only cut between distinct scores: equal scores are all taken or all left
    last_of_value = np.r_[ranked[1:] != ranked[:-1], True]
    f1 = np.where(last_of_value, f1, -1.0)
    k = int(np.argmax(f1))  # first maximum = highest threshold
    threshold = ranked[k] if k + 1 == len(ranked) else 0.5 * (ranked[k] + ranked[k + 1])
    return float(threshold), float(f1[k])


def rate_threshold(scores: np.ndarray, rate: float) -> float:
    """The lowest threshold at which at most ``rate`` of ``scores`` reach it (halfway between scores).

    ``rate`` 0: just above the highest score (nothing seen reaches it; 1.0 when that is 1.0).
    """
    ranked = np.sort(np.asarray(scores, dtype=np.float64))[::-1]
    if ranked.size == 0:
        raise ValueError("no scores")
    allowed = int(np.floor(rate * len(ranked) + 1e-9))  # decisions that may be on
    if allowed <= 0:
        return float(min(1.0, np.nextafter(ranked[0], np.inf)))
    if allowed >= len(ranked):
        return float(ranked[-1])
    # the allowed top scores are on; ties with the first one left out are left out with it
    first_off = ranked[allowed]
    above = ranked[ranked > first_off]
    if above.size == 0:
        return float(min(1.0, np.nextafter(first_off, np.inf)))
    return float(0.5 * (first_off + above[-1]))


def binary_stats(positive: np.ndarray, scores: np.ndarray, threshold: float) -> tuple[float | None, float | None, float | None, float]:
    """(F1, precision, recall, share on) of ``scores >= threshold`` against ``positive`` (None where undefined)."""
    positive = np.asarray(positive, dtype=bool)
    on = np.asarray(scores) >= threshold
    tp, n_on, n_pos = int((on & positive).sum()), int(on.sum()), int(positive.sum())
    precision = tp / n_on if n_on else None
    recall = tp / n_pos if n_pos else None
    f1 = 2.0 * tp / (n_on + n_pos) if n_on + n_pos else None
    return f1, precision, recall, n_on / max(1, len(on))


def choose_thresholds(
    scores: np.ndarray,
    positive: np.ndarray,
    positive_windows: Sequence[int],
    positive_tracks: Sequence[int],
    labels: Sequence[str],
    *,
    teacher_threshold: float = 0.5,
    min_positive_windows: int = MIN_POSITIVE_WINDOWS,
    min_positive_tracks: int = MIN_POSITIVE_TRACKS,
) -> list[TagThreshold]:
    """Each tag's threshold by `RULE` and `FALLBACK` (see the module docstring).

    ``scores`` [D, C]: the student's decisions; ``positive`` [D, C]: the teacher's tag of the
    window each decision lies in; ``positive_windows`` / ``positive_tracks`` [C]: how many
    teacher windows and tracks give each tag (what decides calibrated or fallback).
    Raises ValueError when no tag has enough positives to be calibrated.
    """
    scores = np.asarray(scores, dtype=np.float64)
    positive = np.asarray(positive, dtype=bool)
    if scores.shape != positive.shape or scores.ndim != 2 or scores.shape[1] != len(labels):
        raise ValueError(f"scores {scores.shape} and positive {positive.shape} must both be [decisions, {len(labels)}]")
    if len(scores) == 0:
        raise ValueError("no decisions to calibrate on")
    calibrated = [c for c in range(len(labels))
                  if positive_windows[c] >= min_positive_windows and positive_tracks[c] >= min_positive_tracks]
    if not calibrated:
        raise ValueError(f"no tag has >= {min_positive_windows} positive teacher windows from >= {min_positive_tracks} "
                         "tracks in this split: too little held-out music to calibrate on (use a larger split, "
                         "or lower --min-positive-windows / --min-positive-tracks)")
    chosen: dict[int, tuple[float, str]] = {}
    for c in calibrated:
        chosen[c] = (round(f1_threshold(positive[:, c], scores[:, c])[0], DECIMALS), "f1")
    floor = float(np.median([t for t, _ in chosen.values()]))
    cap = max(floor, teacher_threshold)
    for c in range(len(labels)):
        if c not in chosen:
            q = rate_threshold(scores[:, c], float(positive[:, c].mean()))
            chosen[c] = (round(float(np.clip(q, floor, cap)), DECIMALS), "fallback")
    out = []
    for c, label in enumerate(labels):
        threshold, rule = chosen[c]
        f1, precision, recall, on = binary_stats(positive[:, c], scores[:, c], threshold)
        out.append(TagThreshold(label, threshold, rule, int(positive_windows[c]), int(positive_tracks[c]),
                                f1, precision, recall, on))
    return out


@dataclass
class Calibration:
    """A model's calibrated thresholds and what they were chosen on."""

    tags: list[TagThreshold]
    teacher: str
    split: str
    packages: list[str]
    tracks: int
    windows: int
    decisions: int
    teacher_threshold: float
    min_positive_windows: int
    min_positive_tracks: int
    decision_s: float
    """Seconds between the model's decisions (what a threshold is applied to)."""

    @property
    def thresholds(self) -> list[float]:
        return [t.threshold for t in self.tags]

    def macro_f1(self) -> float:
        """Mean F1 over the calibrated tags, on the split they were chosen on (an in-sample figure)."""
        return float(np.mean([t.f1 or 0.0 for t in self.tags if t.rule == "f1"]))

    def provenance(self) -> dict[str, Any]:
        """The card's ``provenance.thresholds`` record: rule, data, and per tag one compact row."""
        def r(x: float | None) -> float | None:
            return None if x is None else round(x, 3)

        settings = {"teacher_threshold": self.teacher_threshold, "min_positive_windows": self.min_positive_windows,
                    "min_positive_tracks": self.min_positive_tracks, "decision_s": round(self.decision_s, 4)}
        return {
            "rule": RULE.format(**settings),
            "fallback": FALLBACK.format(**settings),
            "teacher": self.teacher,
            "split": self.split,
            "packages": self.packages,
            "tracks": self.tracks,
            "windows": self.windows,
            "decisions": self.decisions,
            "per_tag_columns": ["threshold", "rule", "positive_windows", "f1", "precision", "recall", "on_fraction"],
            # only the tags the teacher gave on the split: for the others F1 and recall are undefined
            # (their thresholds are the card's, all by the fallback)
            "per_tag": {t.label: [t.threshold, t.rule, t.positive_windows, r(t.f1), r(t.precision), r(t.recall),
                                  round(t.on_fraction, 4)] for t in self.tags if t.positive_windows},
        }

    def table(self) -> str:
        """One line per tag, calibrated tags first (for the terminal)."""
        def f(x: float | None) -> str:
            return "  n/a" if x is None else f"{x:5.2f}"

        width = max(len(t.label) for t in self.tags)
        lines = [f"{'tag':<{width}}  threshold  rule      windows+  tracks+   F1  prec.  recall  on"]
        for t in sorted(self.tags, key=lambda t: (t.rule != "f1", -t.positive_windows, t.label)):
            lines.append(f"{t.label:<{width}}  {t.threshold:9.4f}  {t.rule:<8}  {t.positive_windows:8d}  "
                         f"{t.positive_tracks:7d}  {f(t.f1)} {f(t.precision)}  {f(t.recall)}  {100 * t.on_fraction:5.1f} %")
        return "\n".join(lines)


def calibrate(
    model_path: str | Path,
    manifest: str | Path,
    cache: str | Path,
    teacher: str,
    *,
    root: str | Path | None = None,
    split: str = "valid",
    columns: str | Sequence[int] | None = None,
    teacher_threshold: float = 0.5,
    min_positive_windows: int = MIN_POSITIVE_WINDOWS,
    min_positive_tracks: int = MIN_POSITIVE_TRACKS,
) -> Calibration:
    """Thresholds for the multi-label model at ``model_path`` from ``split`` of ``manifest`` and the
    cached ``teacher`` in ``cache`` (nothing is written; see `write_thresholds`)."""
    from edgetag.runtime.model import load_model
    from edgetag.training.teacher_windows import align, teacher_columns

    if not 0.0 < teacher_threshold < 1.0:
        raise ValueError(f"--teacher-threshold must lie in (0, 1), got {teacher_threshold}")
    model = load_model(model_path, threads=1)
    card = model.card
    if card.task != "multi_label":
        raise ValueError(f"{model_path} is a {card.task} model: per-tag thresholds are calibrated for "
                         "multi-label models only (a multi-class model takes its best label)")
    aligned = align(model, manifest, root, cache, teacher, split, teacher_columns(columns, card.n_labels))
    window_positive = aligned.teacher >= teacher_threshold
    positive_tracks = [len(set(aligned.track[window_positive[:, c]])) for c in range(card.n_labels)]
    tags = choose_thresholds(
        aligned.decisions, window_positive[aligned.decision_window], window_positive.sum(0), positive_tracks,
        card.labels, teacher_threshold=teacher_threshold, min_positive_windows=min_positive_windows,
        min_positive_tracks=min_positive_tracks)
    return Calibration(
        tags=tags, teacher=aligned.teacher_identity, split=split,
        packages=sorted({p for p in aligned.package if p}), tracks=len(aligned.track_sums), windows=len(aligned),
        decisions=len(aligned.decisions), teacher_threshold=teacher_threshold,
        min_positive_windows=min_positive_windows, min_positive_tracks=min_positive_tracks,
        decision_s=card.decision_interval_s)


def write_thresholds(model_path: str | Path, calibration: Calibration) -> Any:
    """Write the calibrated thresholds and their record into the model's card, in place (graph untouched)."""
    from edgetag.export.model_file import record_metrics

    return record_metrics(model_path, {f"threshold_f1_{calibration.split}": calibration.macro_f1()},
                          {"thresholds": calibration.provenance()}, thresholds=calibration.thresholds)


def cmd_calibrate(args: argparse.Namespace) -> int:
    from edgetag.runtime.models import resolve_model

    for name in args.model:
        path = Path(resolve_model(name))
        calibration = calibrate(path, args.data, args.teacher_cache, args.teacher, root=args.root, split=args.split,
                                columns=args.teacher_columns, teacher_threshold=args.teacher_threshold,
                                min_positive_windows=args.min_positive_windows,
                                min_positive_tracks=args.min_positive_tracks)
        calibrated = sum(t.rule == "f1" for t in calibration.tags)
        print(f"{path}: {calibration.split} split ({', '.join(calibration.packages) or 'no package column'}), "
              f"{calibration.tracks} tracks, {calibration.windows} teacher windows, {calibration.decisions} decisions; "
              f"{calibrated} tags calibrated (F1), {len(calibration.tags) - calibrated} fallback")
        print(calibration.table())
        print(f"macro F1 over the calibrated tags on the {calibration.split} split (chosen there): "
              f"{calibration.macro_f1():.3f}")
        if args.dry_run:
            print("dry run: card not changed")
        else:
            write_thresholds(path, calibration)
            print(f"wrote the thresholds into {path}'s card (graph, digest and test vector unchanged)")
    return 0


def register_calibrate(sub: argparse._SubParsersAction) -> None:
    """Add ``calibrate``."""
    p = sub.add_parser(
        "calibrate",
        help="choose per-tag thresholds on held-out audio against a cached teacher and write them into the card",
        description=(
            "Run an edgetag multi-label model over a manifest split of held-out audio, line its decisions up "
            "with a cached teacher's windows (edgetag teach), and per tag choose the threshold that maximises "
            "F1 against the teacher's tags binarised at --teacher-threshold; tags with too few positives take "
            "a fallback (the score quantile matching the teacher's rate, clipped into [median of the "
            "calibrated thresholds, --teacher-threshold]). The thresholds, the rule and the per-tag F1, "
            "precision and recall are written into the model's card; the graph, its digest and its test "
            "vector are unchanged. Calibrate on a validation split, never on the split you report."
        ),
    )
    p.add_argument("model", nargs="+", help="edgetag ONNX file(s) or built-in name(s); each is updated in place")
    p.add_argument("--data", required=True, help="manifest (CSV or JSONL) holding the held-out split")
    p.add_argument("--root", help="directory the manifest's paths are relative to (default: the manifest's)")
    p.add_argument("--split", default="valid", help="manifest split to calibrate on (default valid)")
    p.add_argument("--teacher-cache", required=True, help="teacher cache directory (from 'edgetag teach')")
    p.add_argument("--teacher", required=True, help="teacher name or identity (name@hash) in the cache")
    p.add_argument("--teacher-columns", help="the teacher's column for each model label, e.g. 0-49 "
                   "(default: the first N columns, N = the model's labels)")
    p.add_argument("--teacher-threshold", type=float, default=0.5,
                   help="the teacher's tags are its scores >= this (default 0.5)")
    p.add_argument("--min-positive-windows", type=int, default=MIN_POSITIVE_WINDOWS,
                   help=f"teacher windows with the tag needed to calibrate it (default {MIN_POSITIVE_WINDOWS})")
    p.add_argument("--min-positive-tracks", type=int, default=MIN_POSITIVE_TRACKS,
                   help=f"tracks those windows must come from (default {MIN_POSITIVE_TRACKS})")
    p.add_argument("--dry-run", action="store_true", help="print the thresholds; do not change the card")
    p.set_defaults(func=cmd_calibrate)
