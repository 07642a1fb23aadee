"""What calibrated thresholds change: how often tags turn on, agreement with the teacher, events per minute.

    python benchmarks/thresholds_effect.py --model runtime/models/music-tags.onnx \\
        --data /work/data/musictag/manifest.jsonl --root /work/data/edgetag-audio \\
        --teacher-cache /work/data/musictag/cache --teacher musicnn-mtt+musicnn-msd --split test \\
        --json thresholds_effect.json

The model file runs once; its decisions are judged under two threshold sets,
``before`` (every tag at ``--before``, 0.5: the card before calibration) and
``after`` (the card's thresholds). Reported per set:

* decisions with >= 1 tag on (score >= threshold, no smoothing), over every
  decision of every track, and with the runtime's hysteresis (the tag view's
  ``active``: on at the threshold, off below threshold - margin), without
  minimum durations and with each ``--min-durations`` pair (first ``--margin``);
* against the teacher (the decisions inside a teacher window, aligned as
  `edgetag.training.teacher_windows` aligns them, each taking that window's
  tags at 0.5): the share of decisions where the teacher gives >= 1 tag that
  have >= 1 of the *same* tags on; the share of decisions where the teacher
  gives none that have some tag on; micro precision / recall / F1 over
  (decision, tag) pairs;
* events per minute of music: onsets of ``edgetag tag --events`` (the
  runtime's `Smoother` and `Hysteresis`, run over each whole track decision by
  decision) for each ``--smooth`` and ``--margin``, and the same with each pair of
  ``--min-durations`` (the runtime's ``--min-on`` / ``--min-off``: an onset only
  after the score has stayed at or above the threshold for ``min_on`` s, an
  offset only after it has stayed below the off level for ``min_off`` s). Over all
  tracks, and over the *steady* ones: tracks where the teacher gives one tag
  in at least 80 % of their windows (one texture throughout, which the
  teacher tags), where an onset is mostly a flicker.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np


def _any_on(scores: np.ndarray, thresholds: np.ndarray) -> float:
    return float((scores >= thresholds).any(axis=1).mean())


def hysteresis_states(scores: np.ndarray, thresholds: np.ndarray, margin: float, min_on: int = 1,
                      min_off: int = 1) -> np.ndarray:
    """[n, C] bool: each tag's state after each decision, by the runtime's own `Hysteresis` (with its
    minimum runs, in decisions)."""
    from edgetag.runtime.postprocess import Hysteresis

    labels = [str(i) for i in range(scores.shape[1])]
    detector = Hysteresis(labels, thresholds, margin, min_on=min_on, min_off=min_off)
    states = np.zeros(scores.shape, bool)
    for i, row in enumerate(scores):
        detector.update(0.0, row)
        states[i] = detector.active
    return states


def _any_active(tracks: dict[str, np.ndarray], thresholds: np.ndarray, margin: float, min_on: int = 1,
                min_off: int = 1) -> float:
    """Share of all decisions with >= 1 tag in the hysteresis state (unsmoothed scores, each track from its start)."""
    return round(float(np.mean(np.concatenate(
        [hysteresis_states(s, thresholds, margin, min_on, min_off).any(1) for s in tracks.values()]))), 4)


def onsets(states: np.ndarray) -> int:
    """Off-to-on changes in a track's [n, C] states."""
    return int(np.diff(states.astype(np.int8), axis=0, prepend=0).clip(0).sum())


def smoothed(scores: np.ndarray, length: int) -> np.ndarray:
    """The runtime's `Smoother` over a track's decisions (what ``--smooth`` does)."""
    from edgetag.runtime.postprocess import Smoother

    smoother = Smoother(length)
    return np.stack([smoother(row) for row in scores]) if len(scores) else scores


def track_scores(model: Any, manifest: str, root: str | None, split: str) -> dict[str, np.ndarray]:
    """Every decision of each whole track of ``split`` (entries that are chunks of one file are joined:
    the file runs once, from its start, as ``edgetag tag FILE`` runs it)."""
    from edgetag.runtime.audio import load_audio
    from edgetag.training.data import load_manifest
    from edgetag.training.evaluate import _features, run_model

    data = load_manifest(manifest, root=root).select(split)
    out: dict[str, np.ndarray] = {}
    for entry in data.entries:
        if entry.path in out:
            continue
        audio = load_audio(data.resolve(entry), model.card.frontend.sample_rate)
        out[entry.path] = run_model(model, _features(audio, model.card.frontend)).scores
    return out


def steady_tracks(track: np.ndarray, tags: np.ndarray, share: float = 0.8) -> list[str]:
    """Tracks where one tag is on in >= ``share`` of the teacher's windows (music the teacher tags, throughout)."""
    return [str(name) for name in np.unique(track) if (tags[track == name].mean(0) >= share).any()]


def _rates(counts: dict[str, int], tracks: dict[str, np.ndarray], names: list[str], interval: float) -> dict[str, Any]:
    """Onsets per minute over ``names`` (all together, median and largest per track)."""
    if not names:
        return {"tracks": 0}
    minutes = sum(len(tracks[n]) for n in names) * interval / 60
    rates = [counts[n] / (len(tracks[n]) * interval / 60) for n in names]
    return {"tracks": len(names), "minutes": round(minutes, 1), "onsets_per_minute": round(sum(counts[n] for n in names) / minutes, 2),
            "median_track": round(float(np.median(rates)), 2), "max_track": round(float(np.max(rates)), 2)}


def measure(args: argparse.Namespace) -> dict[str, Any]:
    from edgetag.runtime.model import load_model
    from edgetag.runtime.postprocess import decisions_for
    from edgetag.training.teacher_windows import align
    from edgetag.training.thresholds import binary_stats

    model = load_model(args.model, threads=1)
    card = model.card
    sets = {"before": np.full(card.n_labels, args.before), "after": np.asarray(card.thresholds, np.float64)}
    interval = card.decision_interval_s
    aligned = align(model, args.data, args.root, args.teacher_cache, args.teacher, args.split)
    teacher = (aligned.teacher >= 0.5)[aligned.decision_window]
    tracks = track_scores(model, args.data, args.root, args.split)
    every = np.concatenate(list(tracks.values()))
    minutes = len(every) * interval / 60
    steady = steady_tracks(aligned.track, aligned.teacher >= 0.5)
    groups = {"all": list(tracks), "steady": steady}
    result: dict[str, Any] = {
        "model": str(args.model), "split": args.split, "tracks": len(tracks), "decisions": len(every),
        "minutes": round(minutes, 2), "aligned_decisions": len(aligned.decisions),
        "decisions_teacher_tags_something": round(float(teacher.any(1).mean()), 4),
        "steady_tracks": {n: [card.labels[c] for c in np.flatnonzero(
            np.mean(aligned.teacher[aligned.track == n] >= 0.5, 0) >= 0.8)] for n in steady}, "sets": {}}
    for name, thresholds in sets.items():
        on = aligned.decisions >= thresholds
        tp, n_on, n_pos = int((on & teacher).sum()), int(on.sum()), int(teacher.sum())
        tagged = teacher.any(1)
        row: dict[str, Any] = {
            "any_on": round(_any_on(every, thresholds), 4),
            "any_active_hysteresis": _any_active(tracks, thresholds, args.margin[0]),
            # the same debounced by each --min-durations pair (what ``active`` follows by default)
            "any_active_min_durations": {f"minon{on:g}_minoff{off:g}": _any_active(
                tracks, thresholds, args.margin[0], decisions_for(on, interval), decisions_for(off, interval))
                for on, off in args.min_durations},
            "teacher_tagged_same_tag_on": round(float((on & teacher).any(1)[tagged].mean()), 4),
            "teacher_untagged_any_on": round(float(on.any(1)[~tagged].mean()), 4),
            "micro_precision": round(tp / n_on, 4) if n_on else None,
            "micro_recall": round(tp / n_pos, 4) if n_pos else None,
            "micro_f1": round(2 * tp / (n_on + n_pos), 4) if n_on + n_pos else None,
            "on_share_per_tag": {card.labels[c]: round(float(v), 4) for c, v in enumerate((every >= thresholds).mean(0))
                                 if v >= 0.01},
            # tags the teacher gives somewhere in the split: [positive windows, F1, precision, recall] over decisions
            "per_tag": {card.labels[c]: [int((aligned.teacher[:, c] >= 0.5).sum()), *(
                None if v is None else round(v, 3) for v in binary_stats(teacher[:, c], aligned.decisions[:, c], thresholds[c])[:3])]
                for c in range(card.n_labels) if teacher[:, c].any()},
            "events_per_minute": {},
        }
        for smooth in args.smooth:
            per_track = {path: smoothed(sc, smooth) for path, sc in tracks.items()}
            for margin in args.margin:
                counts = {n: onsets(hysteresis_states(sc, thresholds, margin)) for n, sc in per_track.items()}
                key = f"smooth{smooth}_margin{margin:g}"
                row["events_per_minute"][key] = {g: _rates(counts, tracks, names, interval) for g, names in groups.items()}
                row.setdefault("steady_track_onsets", {})[key] = {n: counts[n] for n in steady}
                for min_on, min_off in args.min_durations:
                    runs = (decisions_for(min_on, interval), decisions_for(min_off, interval))
                    counts = {n: onsets(hysteresis_states(sc, thresholds, margin, *runs)) for n, sc in per_track.items()}
                    row["events_per_minute"][f"{key}_minon{min_on:g}_minoff{min_off:g}"] = {
                        g: _rates(counts, tracks, names, interval) for g, names in groups.items()}
        result["sets"][name] = row
    return result


def _duration_pair(text: str) -> tuple[float, float]:
    on, sep, off = text.partition(",")
    try:
        return float(on), float(off if sep else on)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected MIN_ON,MIN_OFF in seconds, got {text!r}") from None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="edgetag ONNX file (its card's thresholds are 'after')")
    ap.add_argument("--data", required=True, help="manifest")
    ap.add_argument("--root", help="directory the manifest's paths are relative to")
    ap.add_argument("--teacher-cache", required=True)
    ap.add_argument("--teacher", required=True)
    ap.add_argument("--split", default="test")
    ap.add_argument("--before", type=float, default=0.5, help="every tag's threshold before calibration (default 0.5)")
    ap.add_argument("--smooth", type=int, nargs="+", default=[1, 10], help="moving averages (decisions) to count events with")
    ap.add_argument("--margin", type=float, nargs="+", default=[0.1], help="hysteresis margins (the first also for 'active')")
    ap.add_argument("--min-durations", type=_duration_pair, nargs="*", default=[(0.5, 1.0)], metavar="ON,OFF",
                    help="minimum on,off seconds for the modelled debounce (default 0.5,1)")
    ap.add_argument("--json", type=Path, help="write the result here")
    args = ap.parse_args(argv)
    result = measure(args)
    text = json.dumps(result, indent=1)
    if args.json:
        args.json.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
