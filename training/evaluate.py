"""Evaluate a student checkpoint on a manifest split: labels, teacher agreement, pitch.

``edgetag evaluate CHECKPOINT --data MANIFEST [--split test] [--teacher-cache DIR --teacher NAME]``

For each readable entry of the split the audio is loaded at the front end's
rate, turned into features by the same front end the runtime uses
(`edgetag.runtime.frontend.compute_features`) and run through the student:

- a window student (``MobileNetStudent``) is run on windows of
  ``window_frames`` frames every ``hop_frames`` frames, as the runtime does;
  a clip shorter than one window is tiled (repeated) up to the window length
  (counted as ``n_tiled``);
- a stateful student is run over the whole sequence: one output per frame.

Scores are probabilities (sigmoid for ``multi_label``, softmax for
``multi_class``); a clip's score is the mean (``--pool mean``) or maximum
(``--pool max``) over its windows or frames.

Reports (each a section of the JSON and of the printed table):

``labels``
    `edgetag.training.metrics.tagging_metrics` of clip scores against the
    manifest's labels for the checkpoint's label columns, missing labels
    masked (labels the checkpoint does not know are ignored), F1 at the
    checkpoint's thresholds. Left out when the split has no positive label.
``teacher``
    With ``--teacher-cache`` and ``--teacher``: `metrics.agreement` of the
    student's clip scores with the teacher's cached outputs pooled the same
    way (teacher binarised at ``--teacher-threshold``). The teacher's
    windows are looked up by their cache metadata (path, start, end, teacher
    name) and chained from the entry's start to its end, so no teacher needs
    loading. Needs the same label columns in student and teacher.
``teacher_frames``
    For stateful students: the same agreement frame by frame, teacher frames
    taken at the nearest time to each student frame (frame centres;
    ``--teacher-offset`` is the centre of teacher frame 0 in seconds, 0.032
    by default for ``crepe*`` teachers, else 0).
``pitch``
    When the student's labels are CREPE's 360 pitch bins
    (`edgetag.runtime.pitch.is_pitch_model`: ``pitch_bin_NNN`` or the teacher's
    ``31.70Hz`` names) and a teacher cache is given: raw pitch / chroma accuracy and
    voicing recall / false alarm of the student's f0 (the bins' weighted-argmax decoder,
    `edgetag.runtime.pitch.decode`, voiced where the top activation >= ``--voicing-threshold``)
    against the teacher's f0 decoded the same way, on the student's frames: the bins against the
    teacher's bins (a stream also reads each frame's period, `edgetag.runtime.pitch.SteadyTone`;
    ``training/recipes/pitch/evaluate_pitch.py`` scores both ways from audio).

For other callers (``edgetag bench``): `run_model` / `evaluate_model` score any loaded runtime model
(ONNX on any backend, or `training.torch_backend.TorchModel`) on features from `load_eval_clips`,
through the runtime's clip runner (`edgetag.runtime.clip.run_clip`) as this command runs the
checkpoint, so every backend is measured the way this command measures the checkpoint; `evaluate_teacher_cache` scores a teacher from its cached outputs, mapping
its output columns onto the split's labels.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from edgetag.runtime.clip import ClipRun, run_clip
from edgetag.runtime.model_card import scores_from_logits
from edgetag.runtime.pitch import is_pitch_model
from edgetag.training import metrics as M
from edgetag.training.cache import TeacherCacheLookup
from edgetag.training.data import Manifest, SkipReport, iter_audio, load_manifest
from edgetag.training.manifest_entry import ManifestEntry

log = logging.getLogger(__name__)

Pool = Literal["mean", "max"]

#: Teacher frame-0 centre (seconds) for teachers whose names start with these prefixes.
_KNOWN_TEACHER_OFFSETS = {"crepe": 512 / 16000, "reference-f0": 512 / 16000}


# ----------------------------------------------------------------------------- running the student
def _score_kind(scores: np.ndarray) -> str:
    """``probabilities`` when every score lies in [0, 1] (or there is none), else ``logits``."""
    return "probabilities" if scores.size == 0 or (scores.min() >= 0.0 and scores.max() <= 1.0) else "logits"


def _to_probabilities(scores: np.ndarray, task: str, kind: str) -> np.ndarray:
    if kind == "auto":
        kind = _score_kind(scores)
    return scores if kind == "probabilities" else scores_from_logits(scores, task)


def _pool(x: np.ndarray, pool: Pool) -> np.ndarray:
    return x.max(axis=0) if pool == "max" else x.mean(axis=0)


def run_model(model: Any, features: np.ndarray, batch: int = 64) -> ClipRun:
    """One clip through a loaded model (`runtime.model.OnnxModel`, `training.torch_backend.TorchModel`)
    the way this command scores it: `edgetag.runtime.clip.run_clip` with one output per frame for
    stateful models, and a clip shorter than one window tiled up to it.

    Window and hop come from the model card; scores from ``model.scores`` (the card's task), so an
    ONNX fp32/int8/fp16 file is measured exactly as `edgetag tag` would run it.
    """
    return run_clip(model, features, every_frame=True, tile_short=True, batch=batch)


def _features(samples: np.ndarray, config: Any) -> np.ndarray:
    try:
        from edgetag.runtime.frontend import compute_features

        return compute_features(samples.astype(np.float32), config)
    except ImportError:  # no compiled core: the torch front end computes the same numbers
        import torch
        from edgetag.training.frontend import TorchFrontend

        with torch.inference_mode():
            return TorchFrontend(config)(torch.from_numpy(samples[None].astype(np.float32)))[0].numpy()


def _nearest(src_times: np.ndarray, values: np.ndarray, dst_times: np.ndarray, rate: float) -> tuple[np.ndarray, np.ndarray]:
    """Values at the source time nearest each destination time; valid within half a source frame."""
    if len(src_times) == 0:
        return np.zeros((len(dst_times), values.shape[1]), values.dtype), np.zeros(len(dst_times), bool)
    order = np.argsort(src_times, kind="mergesort")
    st = src_times[order]
    j = np.clip(np.searchsorted(st, dst_times), 1, max(len(st) - 1, 1))
    lo = np.clip(j - 1, 0, len(st) - 1)
    hi = np.clip(j, 0, len(st) - 1)
    pick = np.where(np.abs(st[hi] - dst_times) < np.abs(st[lo] - dst_times), hi, lo)
    valid = np.abs(st[pick] - dst_times) <= 0.5 / rate + 1e-9
    return values[order[pick]], valid


def _decode_pitch(probs: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """(f0 Hz, voiced) per frame from the bins alone (`edgetag.runtime.pitch.decode`): features carry no audio."""
    from edgetag.runtime.pitch import decode

    f0, confidence = decode(np.asarray(probs, dtype=np.float32))
    return f0, confidence >= threshold


# ----------------------------------------------------------------------------- the evaluation
@dataclass
class Evaluation:
    """What `evaluate` measured, by section, plus counts."""

    sections: dict[str, dict[str, float]] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        def clean(v: Any) -> Any:
            if isinstance(v, float) and not math.isfinite(v):
                return None  # JSON has no NaN
            if isinstance(v, dict):
                return {k: clean(x) for k, x in v.items()}
            return v

        return clean({"info": self.info, "metrics": self.sections})

    def text(self) -> str:
        lines = [f"{k:<14} {v}" for k, v in self.info.items() if not isinstance(v, (dict, list))]
        for section, values in self.sections.items():
            lines.append(f"[{section}]")
            for k, v in values.items():
                if isinstance(v, float):
                    lines.append(f"  {k:<22} {'n/a' if not math.isfinite(v) else f'{v:.4f}'}")
                else:
                    lines.append(f"  {k:<22} {v}")
        return "\n".join(lines)


def _split_of(data: str | os.PathLike[str] | Manifest, root: str | os.PathLike[str] | None,
              split: str | None) -> Manifest:
    """The manifest (loaded unless given) cut to ``split`` (None: every entry); refuses an absent split."""
    manifest = data if isinstance(data, Manifest) else load_manifest(data, root=root)
    if split is not None:
        if split not in manifest.splits():
            raise ValueError(f"split {split!r} is not in the manifest (splits: {', '.join(sorted(manifest.splits())) or 'none'})")
        manifest = manifest.select(split)
    return manifest


def _label_targets(entries: Sequence[ManifestEntry], labels: Sequence[str]) -> tuple[np.ndarray, np.ndarray, int]:
    """Targets and mask over the checkpoint's labels (entries' other labels ignored, counted)."""
    y = np.zeros((len(entries), len(labels)), np.float32)
    m = np.ones_like(y)
    known = set(labels)
    unknown: set[str] = set()
    for i, e in enumerate(entries):
        unknown |= e.mentioned_labels - known
        for j, name in enumerate(labels):
            state = e.label_state(name)
            if state is None:
                m[i, j] = 0.0
            else:
                y[i, j] = float(state)
    return y, m, len(unknown)


@dataclass
class _SplitScores:
    """What one pass of the student over the split gathers: its clip scores, the teacher's where the
    cache has them (rows ``teacher_rows`` of the student's), frame pairs for a stateful student, counts."""

    teacher_kind: str
    entries: list[ManifestEntry] = field(default_factory=list)
    clip_scores: list[np.ndarray] = field(default_factory=list)
    teacher_clip: list[np.ndarray] = field(default_factory=list)
    teacher_rows: list[int] = field(default_factory=list)
    frame_student: list[np.ndarray] = field(default_factory=list)
    frame_teacher: list[np.ndarray] = field(default_factory=list)
    n_tiled: int = 0
    n_no_teacher: int = 0
    n_empty: int = 0
    teacher_width_error: str | None = None


def evaluate(
    checkpoint: str | os.PathLike[str],
    data: str | os.PathLike[str] | Manifest,
    *,
    root: str | os.PathLike[str] | None = None,
    split: str | None = "test",
    teacher_cache: str | os.PathLike[str] | None = None,
    teacher: str | None = None,
    pool: Pool = "mean",
    teacher_threshold: float = 0.5,
    teacher_kind: Literal["auto", "probabilities", "logits"] = "auto",
    teacher_offset: float | None = None,
    voicing_threshold: float = 0.5,
    progress: bool = False,
) -> Evaluation:
    """Run a student checkpoint over a manifest split and measure it (see the module docstring)."""
    from edgetag.training.checkpoint import load_checkpoint
    from edgetag.training.torch_backend import TorchModel

    if (teacher_cache is None) != (teacher is None):
        raise ValueError("--teacher-cache and --teacher go together")
    ckpt = load_checkpoint(checkpoint)
    student = TorchModel.from_checkpoint(ckpt, checkpoint)
    manifest = _split_of(data, root, split)
    lookup = TeacherCacheLookup(teacher_cache, teacher) if teacher_cache is not None and teacher is not None else None
    if lookup is not None and teacher_offset is None:
        teacher_offset = next((v for p, v in _KNOWN_TEACHER_OFFSETS.items() if lookup.name.startswith(p)), 0.0)
    pitch = is_pitch_model(ckpt.labels)

    report = SkipReport()
    scored = _SplitScores(teacher_kind=teacher_kind)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(manifest), unit="clip", desc="evaluate", dynamic_ncols=True)
    try:
        for entry, audio in iter_audio(manifest, ckpt.frontend.sample_rate, report=report):
            if bar is not None:
                bar.update(1)
            _score_entry(scored, entry, audio, student, ckpt, lookup, pool, teacher_offset)
    finally:
        if bar is not None:
            bar.close()

    result = Evaluation()
    result.info = _run_info(checkpoint, ckpt, split, len(manifest), scored, report, pool)
    if not scored.entries:
        return result
    scores = np.stack(scored.clip_scores)
    y, m, n_unknown = _label_targets(scored.entries, ckpt.labels)
    if n_unknown:
        result.info["labels_not_in_checkpoint"] = n_unknown
    if not pitch and (y * m).sum() > 0:
        thresholds = np.asarray(ckpt.thresholds, dtype=np.float64) if len(ckpt.thresholds) == len(ckpt.labels) else 0.5
        result.sections["labels"] = M.tagging_metrics(y, scores, m, thresholds, ckpt.task)
    if lookup is not None:
        _teacher_sections(result, scored, lookup, scores, pitch, teacher_threshold, voicing_threshold)
    return result


def _score_entry(scored: _SplitScores, entry: ManifestEntry, audio: np.ndarray, student: Any, ckpt: Any,
                 lookup: TeacherCacheLookup | None, pool: Pool, teacher_offset: float | None) -> None:
    """Run the student on one entry's audio and add its clip score, and the teacher's from the cache."""
    run = run_model(student, _features(audio, ckpt.frontend))
    if len(run) == 0:
        scored.n_empty += 1
        return
    scored.n_tiled += run.tiled
    scored.entries.append(entry)
    scored.clip_scores.append(_pool(run.scores, pool))
    if lookup is None:
        return
    got = lookup.get(entry, ckpt.student.n_labels)
    if got is None or len(got.scores) == 0:
        scored.n_no_teacher += 1
        return
    if got.scores.shape[1] != ckpt.student.n_labels:
        scored.teacher_width_error = (
            f"teacher {lookup.identity} has {got.scores.shape[1]} outputs, the student {ckpt.student.n_labels}: "
            "agreement needs the same label columns"
        )
        return
    if scored.teacher_kind == "auto":  # decided on the first entry, then kept for all
        scored.teacher_kind = _score_kind(got.scores)
    t_probs = _to_probabilities(got.scores, ckpt.task, scored.teacher_kind)
    scored.teacher_clip.append(_pool(t_probs, pool))
    scored.teacher_rows.append(len(scored.entries) - 1)
    if ckpt.student.streaming_mode == "stateful":
        # teacher frame i is centred at times[i] + offset: matched with the student's frame centres
        aligned, valid = _nearest(got.times + float(teacher_offset or 0.0), t_probs, run.centre_times, got.frame_rate)
        scored.frame_student.append(run.scores[valid])
        scored.frame_teacher.append(aligned[valid])


def _run_info(checkpoint: str | os.PathLike[str], ckpt: Any, split: str | None, n_entries: int,
              scored: _SplitScores, report: SkipReport, pool: Pool) -> dict[str, Any]:
    """The ``info`` of an evaluation: what was run on what, and how many entries were read, tiled or skipped."""
    info: dict[str, Any] = {
        "checkpoint": str(checkpoint),
        "student": ckpt.kind,
        "task": ckpt.task,
        "split": split or "all",
        "entries": n_entries,
        "evaluated": len(scored.entries),
        "skipped": report.n_skipped,
        "pool": pool,
    }
    if scored.n_tiled:
        info["tiled_short_clips"] = scored.n_tiled
    if scored.n_empty:
        info["no_frames"] = scored.n_empty
    if report.n_skipped:
        info["skip_reasons"] = dict(report.by_reason)
    return info


def _teacher_sections(result: Evaluation, scored: _SplitScores, lookup: TeacherCacheLookup, scores: np.ndarray,
                      pitch: bool, teacher_threshold: float, voicing_threshold: float) -> None:
    """The ``teacher`` section, and ``teacher_frames`` or ``pitch`` for a stateful student, with their info."""
    result.info["teacher"] = lookup.identity
    result.info["teacher_scores"] = scored.teacher_kind
    if scored.n_no_teacher:
        result.info["teacher_missing"] = scored.n_no_teacher
    if scored.teacher_width_error:
        result.info["teacher_error"] = scored.teacher_width_error
        log.warning("%s", scored.teacher_width_error)
    if scored.teacher_clip:
        result.sections["teacher"] = M.agreement(scores[scored.teacher_rows], np.stack(scored.teacher_clip),
                                                 teacher_threshold)
    if scored.frame_student and sum(len(f) for f in scored.frame_student):
        fs, ft = np.concatenate(scored.frame_student), np.concatenate(scored.frame_teacher)
        if pitch:
            est_f0, est_v = _decode_pitch(fs, voicing_threshold)
            ref_f0, ref_v = _decode_pitch(ft, voicing_threshold)
            result.sections["pitch"] = M.pitch_metrics(np.where(ref_v, ref_f0, 0.0), est_f0, est_voicing=est_v)
        else:
            result.sections["teacher_frames"] = M.agreement(fs, ft, teacher_threshold)


# ----------------------------------------------------------------------------- any runtime model / a teacher cache
@dataclass
class EvalClips:
    """A labelled split's features, computed once and shared by every model that uses the same front end."""

    entries: list[ManifestEntry]
    features: list[np.ndarray]
    frontend: Any
    labels: tuple[str, ...]
    """The manifest's label vocabulary."""
    info: dict[str, Any] = field(default_factory=dict)


def load_eval_clips(
    data: str | os.PathLike[str] | Manifest,
    frontend: Any,
    *,
    root: str | os.PathLike[str] | None = None,
    split: str | None = "test",
) -> EvalClips:
    """Read a manifest split and compute its features with ``frontend`` (the runtime's front end).

    Refuses a split that is absent or has no label at all (no task metric can come from it).
    """
    manifest = _split_of(data, root, split)
    if not any(e.positives for e in manifest.entries):
        raise ValueError(f"the evaluation split {split or 'all'!r} has no positive label: a task metric needs labels "
                         "(a `labels` column naming each clip's tags)")
    report = SkipReport()
    entries, feats = [], []
    for entry, audio in iter_audio(manifest, frontend.sample_rate, report=report):
        entries.append(entry)
        feats.append(_features(audio, frontend))
    info: dict[str, Any] = {"split": split or "all", "entries": len(manifest), "read": len(entries),
                            "skipped": report.n_skipped}
    if report.n_skipped:
        info["skip_reasons"] = dict(report.by_reason)
    return EvalClips(entries, feats, frontend, tuple(manifest.labels), info)


def _labels_section(entries: Sequence[ManifestEntry], scores: np.ndarray, labels: Sequence[str], thresholds: Any,
                    task: str, what: str) -> dict[str, float]:
    """`tagging_metrics` over ``labels``; refuses labels that do not overlap the split's."""
    split_labels = set().union(*(e.mentioned_labels for e in entries)) if entries else set()
    if not split_labels & set(labels):
        raise ValueError(f"{what} has labels {', '.join(labels[:12])}{' ...' if len(labels) > 12 else ''}; the evaluation "
                         f"split has {', '.join(sorted(split_labels)[:12]) or 'none'}: no label in common")
    y, m, _ = _label_targets(entries, labels)
    if (y * m).sum() == 0:
        raise ValueError(f"the evaluation split has no positive example of any label of {what}")
    return M.tagging_metrics(y, scores, m, thresholds, task)


def evaluate_model(model: Any, clips: EvalClips, *, pool: Pool = "mean") -> Evaluation:
    """The ``labels`` section of `evaluate` for a loaded runtime model (ONNX on any backend, or `TorchModel`).

    Same windows, tiling, pooling and metrics as `evaluate` on the checkpoint (see `run_model`), so a
    checkpoint and its fp32 export give the same numbers, and int8/fp16 files show their real task drop.
    """
    card = model.card
    if card.frontend != clips.frontend:
        raise ValueError(f"{card.name}: its front end differs from the one the evaluation features were computed with")
    unknown = [name for name in card.labels if name not in clips.labels]
    probs = []
    n_tiled = 0
    for feats in clips.features:
        run = run_model(model, feats)
        if len(run) == 0:
            raise ValueError(f"{card.name}: a clip of the evaluation split gives no frames")
        n_tiled += run.tiled
        probs.append(_pool(run.scores, pool))
    result = Evaluation()
    result.info = {**clips.info, "model": card.name, "task": card.task, "pool": pool, "evaluated": len(probs)}
    if n_tiled:
        result.info["tiled_short_clips"] = n_tiled
    if unknown:
        result.info["labels_not_in_manifest"] = unknown
    thresholds = np.asarray(card.thresholds, dtype=np.float64) if len(card.thresholds) == card.n_labels else 0.5
    result.sections["labels"] = _labels_section(clips.entries, np.stack(probs), list(card.labels), thresholds,
                                                card.task, f"model {card.name}")
    return result


def evaluate_teacher_cache(
    teacher_cache: str | os.PathLike[str],
    teacher: str,
    clips: EvalClips,
    labels: Sequence[str],
    label_columns: Sequence[int],
    *,
    pool: Pool = "mean",
    task: str = "multi_label",
    teacher_kind: Literal["auto", "probabilities", "logits"] = "auto",
) -> Evaluation:
    """A teacher as a tagger of the split: its cached outputs, column ``label_columns[i]`` scoring ``labels[i]``.

    The outputs were computed by ``edgetag teach`` on these manifest entries (no teacher is loaded);
    a clip's score is its windows' scores pooled as for the students. Entries without cached outputs
    are left out and counted (``teacher_missing``), so check ``evaluated`` against the students'.
    """
    if len(labels) != len(label_columns):
        raise ValueError(f"{len(labels)} labels but {len(label_columns)} label columns: one teacher column per label")
    lookup = TeacherCacheLookup(teacher_cache, teacher)
    cols = np.asarray(label_columns, dtype=np.int64)
    entries, scores = [], []
    n_missing = 0
    width = int(cols.max()) + 1
    for entry in clips.entries:
        try:
            got = lookup.get(entry, width)
        except (IndexError, ValueError) as exc:  # top-k caches scatter into `width` columns
            raise ValueError(f"teacher {lookup.identity}: cached outputs do not fit label columns < {width} ({exc})") from None
        if got is None or len(got.scores) == 0:
            n_missing += 1
            continue
        if got.scores.shape[1] <= int(cols.max()):
            raise ValueError(f"teacher {lookup.identity} has {got.scores.shape[1]} outputs; label column {int(cols.max())} "
                             "does not exist")
        if teacher_kind == "auto":  # decided on the first entry, then kept for all
            teacher_kind = _score_kind(got.scores)
        probs = _to_probabilities(got.scores, task, teacher_kind)
        entries.append(entry)
        scores.append(_pool(probs, pool)[cols])
    result = Evaluation()
    result.info = {**clips.info, "teacher": lookup.identity, "teacher_scores": teacher_kind, "pool": pool,
                   "evaluated": len(entries), "label_columns": [int(c) for c in cols]}
    if n_missing:
        result.info["teacher_missing"] = n_missing
    if not entries:
        raise ValueError(f"teacher cache {teacher_cache} has no outputs of {teacher} for any entry of the evaluation split")
    result.sections["labels"] = _labels_section(entries, np.stack(scores), list(labels), 0.5, task, f"teacher {teacher}")
    return result


def default_output(checkpoint: str | os.PathLike[str], split: str | None) -> Path:
    """``CHECKPOINT.eval-SPLIT.json`` next to the checkpoint."""
    p = Path(checkpoint)
    return p.with_name(f"{p.stem}.eval-{split or 'all'}.json")


def write_json(result: Evaluation, path: str | os.PathLike[str]) -> Path:
    from edgetag.runtime.atomic import atomic_write

    text = json.dumps(result.to_dict(), indent=2, sort_keys=False) + "\n"
    return atomic_write(path, lambda handle: handle.write(text.encode()))
