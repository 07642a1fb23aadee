"""Student decisions lined up with a cached teacher's windows, over a manifest split.

The one alignment between an exported model's streaming decisions and a
teacher whose windows are longer than the student's (musicnn: 2.99 s windows,
the music-tag student: a decision every 100 ms on the last 1 s). Used by the
music-tag recipe's agreement measure (``training/recipes/musictag/run.py``)
and by threshold calibration (`edgetag.training.thresholds`), so both compare
the same decisions with the same teacher windows.

Every entry of the split runs as ``edgetag tag`` runs it (`edgetag.training.evaluate.run_model`);
a decision is stamped at its last frame's centre, and belongs to a teacher
window ``[t0, t0 + 1 / frame_rate)`` when its whole window lies inside it.
Per teacher window the result keeps the mean of those decisions (and, for
per-decision measures, each of them); per track, the sum of every decision
and every teacher window over the track's chunks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


def inside(times: np.ndarray, start: float, end: float, window_s: float) -> np.ndarray:
    """Decisions (stamped at their last frame's centre) whose whole window lies in [start, end)."""
    return (times - window_s >= start - 1e-6) & (times <= end + 1e-6)


@dataclass
class TeacherWindows:
    """A split's student decisions aligned with the teacher's windows (see the module docstring)."""

    student: np.ndarray
    """float [W, C]: mean of the student decisions inside each teacher window."""
    teacher: np.ndarray
    """float [W, C]: the teacher's scores for the student's labels, per window."""
    track: np.ndarray
    """[W] the manifest path of each window's track."""
    package: np.ndarray
    """[W] each window's ``package`` column ("" when the manifest has none)."""
    decisions: np.ndarray
    """float32 [D, C]: every student decision inside a teacher window (the rows averaged into ``student``)."""
    decision_window: np.ndarray
    """int64 [D]: the window (row of ``student``/``teacher``) each decision lies in."""
    track_sums: dict[str, list[Any]] = field(default_factory=dict)
    """Per track: [sum of all its decisions, their count, sum of its teacher windows, their count]."""
    missing: int = 0
    """Entries without student decisions or without cached teacher windows."""
    unreadable: int = 0
    """Entries whose audio could not be read."""
    teacher_identity: str = ""
    """The cached teacher's identity (``name@hash``)."""

    def __len__(self) -> int:
        return len(self.student)

    def track_means(self) -> tuple[np.ndarray, np.ndarray]:
        """Per track: (mean decision [T, C], mean teacher window [T, C]) over all of the track's chunks."""
        student = np.stack([a[0] / a[1] for a in self.track_sums.values()])
        teacher = np.stack([a[2] / a[3] for a in self.track_sums.values()])
        return student, teacher


def teacher_columns(spec: str | Sequence[int] | None, n_labels: int) -> list[int]:
    """The teacher's column for each of the student's ``n_labels`` labels.

    None: the first ``n_labels`` columns (the music-tag recipe's ``teacher.label_columns``:
    MTT's 50 tags lead the MTT + MSD ensemble). A string: comma-separated columns and
    ranges, ``"0-49"`` or ``"0,2,5-9"``.
    """
    if spec is None:
        return list(range(n_labels))
    if isinstance(spec, str):
        columns: list[int] = []
        try:
            for part in (p.strip() for p in spec.split(",") if p.strip()):
                lo, dash, hi = part.partition("-")
                columns += list(range(int(lo), int(hi) + 1)) if dash else [int(lo)]
        except ValueError:
            raise ValueError(f"teacher columns {spec!r}: expected comma-separated columns and ranges, e.g. 0-49") from None
    else:
        columns = [int(c) for c in spec]
    if len(columns) != n_labels:
        raise ValueError(f"teacher columns: {len(columns)} columns for the model's {n_labels} labels")
    if any(c < 0 for c in columns):
        raise ValueError("teacher columns must be >= 0")
    return columns


def align(model: Any, manifest: str | Path, root: str | Path | None, cache: str | Path, teacher: str, split: str,
          columns: Sequence[int] | None = None) -> TeacherWindows:
    """Run ``model`` (a loaded `edgetag.runtime.model.OnnxModel`) over ``split`` and line its
    decisions up with ``teacher``'s windows in the cache at ``cache``.

    ``columns``: the teacher's column for each of the model's labels (default the first
    ``n_labels``; see `teacher_columns`). Raises ValueError when no entry of the split has
    both decisions and cached teacher windows (a wrong split, cache or teacher name).
    """
    from edgetag.training.cache import TeacherCacheLookup
    from edgetag.training.data import SkipReport, iter_audio, load_manifest
    from edgetag.training.evaluate import _features, run_model

    card = model.card
    columns = list(range(card.n_labels)) if columns is None else list(columns)
    window_s = card.window_frames * card.frontend.hop_length / card.frontend.sample_rate
    lookup = TeacherCacheLookup(cache, teacher)
    data = load_manifest(manifest, root=root).select(split)
    win_s: list[np.ndarray] = []
    win_t: list[np.ndarray] = []
    win_track: list[str] = []
    win_package: list[str] = []
    decisions: list[np.ndarray] = []
    decision_window: list[np.ndarray] = []
    tracks: dict[str, list[Any]] = {}
    report = SkipReport()
    missing = 0
    n_teacher = max(columns) + 1
    for entry, audio in iter_audio(data, card.frontend.sample_rate, report=report):
        run = run_model(model, _features(audio, card.frontend))
        got = lookup.get(entry, n_teacher)
        if got is None or len(got.scores) == 0 or len(run) == 0:
            missing += 1
            continue
        if got.scores.shape[1] < n_teacher:
            raise ValueError(f"teacher {lookup.identity} has {got.scores.shape[1]} scores per window; "
                             f"the model's labels need column {n_teacher - 1}")
        teacher_rows = got.scores[:, columns]
        for t0, row in zip(got.times, teacher_rows):
            sel = inside(run.centre_times, float(t0), float(t0) + 1.0 / got.frame_rate, window_s)
            if sel.any():
                decision_window.append(np.full(int(sel.sum()), len(win_s), np.int64))
                decisions.append(run.scores[sel])
                win_s.append(run.scores[sel].mean(0))
                win_t.append(row)
                win_track.append(entry.path)
                win_package.append(str(entry.extra.get("package", "")))
        acc = tracks.setdefault(entry.path, [0.0, 0, 0.0, 0])
        acc[0] += run.scores.sum(0)
        acc[1] += len(run)
        acc[2] += teacher_rows.sum(0)
        acc[3] += len(teacher_rows)
    if not win_s:
        raise ValueError(f"no {split} entry of {manifest} had both student decisions and cached windows of teacher "
                         f"{teacher!r} in {cache} ({missing} entries without them, {report.n_skipped} unreadable)")
    return TeacherWindows(
        student=np.stack(win_s), teacher=np.stack(win_t), track=np.asarray(win_track), package=np.asarray(win_package),
        decisions=np.concatenate(decisions).astype(np.float32), decision_window=np.concatenate(decision_window),
        track_sums=tracks, missing=missing, unreadable=report.n_skipped, teacher_identity=lookup.identity)
