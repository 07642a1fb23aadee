"""Teacher outputs for the trainer: each cached teacher's scores and embeddings for every
entry of a split, found in the `TeacherCache` by content (see `edgetag.training.trainer`,
"Data"), and the alignment facts a crop needs (frame-0 offsets, which student frames have a
teacher frame next to them)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from edgetag.runtime import audio
from edgetag.training.cache import CacheWindows, TeacherCache
from edgetag.training.config import ConfigError, TrainConfig
from edgetag.training.data import content_hash
from edgetag.training.evaluate import _KNOWN_TEACHER_OFFSETS
from torch import Tensor


@dataclass
class TeacherTrack:
    """One teacher's outputs for every entry of a split: per-entry arrays at ``rate`` frames/s."""

    identity: str
    rate: float
    scores: list[np.ndarray] | None = None
    embeddings: list[np.ndarray] | None = None
    offset: float = 0.0
    """Time (s) of the centre of teacher frame 0 (CREPE: 0.032, its causal frames start at sample 0)."""


def teacher_offset(identity: str) -> float:
    """Frame-0 centre of a cached teacher, by name prefix (the table `evaluate` uses), else 0."""
    name = identity.split("@", 1)[0]
    return next((v for prefix, v in _KNOWN_TEACHER_OFFSETS.items() if name.startswith(prefix)), 0.0)


def near_teacher_frames(n_teacher: int, teacher_rate: float, student_rate: float, n_student: int,
                         student_offset: float, teacher_offset: float) -> Tensor:
    """[n_student] bool: a teacher frame lies within half a student hop of the student frame.

    A teacher run at a coarser hop than the student (e.g. CREPE every 100 ms, a student
    every 10 ms) gives real targets to only the student frames next to a teacher frame;
    nearest-neighbour alignment would copy each teacher frame onto its neighbours up to
    half a teacher hop away, which is wrong wherever the target moves (pitch glides,
    note changes). With a teacher at least as dense as the student this is all True.
    """
    t_s = student_offset + torch.arange(n_student, dtype=torch.float64) / student_rate
    pos = (t_s - teacher_offset) * teacher_rate
    nearest = torch.floor(pos + 0.5).clamp(0, max(n_teacher - 1, 0))
    gap = (pos - nearest).abs() / teacher_rate  # seconds to the nearest existing teacher frame
    return (gap <= 0.5 / student_rate + 1e-9) & torch.tensor(n_teacher > 0)



def _match_identity(wanted: str, identities: set[str]) -> str:
    if wanted in identities:
        return wanted
    hits = sorted(i for i in identities if i.split("@", 1)[0] == wanted)
    if len(hits) == 1:
        return hits[0]
    if not hits:
        raise ConfigError(
            f"teacher {wanted!r} has no outputs in the teacher cache; cached teachers: "
            f"{', '.join(sorted(identities)) or 'none'} (run `edgetag teach` first)"
        )
    raise ConfigError(f"teacher {wanted!r} is ambiguous in the cache ({', '.join(hits)}): give the full identity")


def teacher_tracks(config: TrainConfig, manifest: Any, entries: list[Any], n_labels: int, split: str) -> tuple[list[TeacherTrack], list[TeacherTrack]]:
    """Cached teacher scores (mapped to the dataset's labels) and embeddings for ``entries``."""
    t = config.teacher
    index = CacheWindows(TeacherCache(t.cache_dir, part="trainer-read"))  # type: ignore[arg-type]
    kd = config.method not in ("labels", "mean_teacher")
    score_ids = [_match_identity(w, index.identities) for w in t.teachers] if kd else []
    emb_names = t.embedding_teachers if t.embedding_teachers is not None else t.teachers
    emb_ids = [_match_identity(w, index.identities) for w in emb_names] if config.regulariser != "none" else []
    collected = _collect_outputs(config, index, manifest, entries, n_labels, split, list(dict.fromkeys(score_ids + emb_ids)))
    score_tracks = []
    for ident in score_ids:
        rate, scores, _ = collected[ident]
        mapped = [_dataset_columns(s, t.label_columns, n_labels, ident) for s in scores]
        score_tracks.append(TeacherTrack(ident, rate, scores=mapped, offset=teacher_offset(ident)))
    emb_tracks = []
    for ident in emb_ids:
        rate, _, embs = collected[ident]
        if any(e is None for e in embs):
            raise ConfigError(f"teacher {ident} stored no embeddings, but the {config.regulariser} regulariser needs them")
        emb_tracks.append(TeacherTrack(ident, rate, embeddings=[e for e in embs if e is not None], offset=teacher_offset(ident)))
    return score_tracks, emb_tracks


def _collect_outputs(config: TrainConfig, index: CacheWindows, manifest: Any, entries: list[Any], n_labels: int, split: str,
                     identities: list[str]) -> dict[str, tuple[float, list[np.ndarray], list[np.ndarray | None]]]:
    """Per teacher identity: its frame rate, and its scores and embeddings for each entry, read
    from the cached windows that tile the entry (an entry without them is an error)."""
    t = config.teacher
    rates = list(dict.fromkeys([config.frontend_config().sample_rate, *t.sample_rates, 16000, 22050, 44100, 48000, 8000, 32000]))
    verified_rate: dict[str, int] = {}
    hashes_rate: dict[str, int] = {}
    collected: dict[str, tuple[float, list[np.ndarray], list[np.ndarray | None]]] = {}
    missing: dict[str, list[str]] = {}
    for ident in identities:
        all_scores, all_embs, rate = [], [], None
        for entry in entries:
            path = manifest.resolve(entry)

            def window_hash(start: Any, end: Any, path: Path = path, ident: str = ident) -> Iterator[str]:
                """Content hashes of the window at the teacher's rate (once known), else at each candidate rate."""
                order = ([verified_rate[ident]] if ident in verified_rate else []) + [r for r in rates if r != verified_rate.get(ident)]
                for sr in order:
                    try:
                        wave = audio.load_audio(path, sr, start, end)  # looked up per call: tests patch it
                    except (audio.AudioError, OSError, ValueError):  # a window the file cannot give (e.g. past its end)
                        return
                    h = content_hash(wave, sr, start, end)
                    hashes_rate[h] = sr
                    yield h

            # the hashes the cache recorded for this path (``teacher.verify_audio = false``) ...
            chain = None if t.verify_audio else index.chain(ident, entry.path, entry.start, entry.end)
            if chain is None:
                # ... or, verifying or for audio another file also holds bit for bit (the cache
                # stores it once, under one of the paths), the windows found by content.
                chain = index.chain(ident, entry.path, entry.start, entry.end, window_hash)
            if chain is None:
                if t.partial:  # this teacher has nothing for this row: an empty track, masked in every crop
                    all_scores.append(np.zeros((0, n_labels), np.float32))
                    all_embs.append(None)
                else:
                    missing.setdefault(ident, []).append(entry.path)
                continue
            parts_s, parts_e = [], []
            for key, meta in chain:
                verified_rate[ident] = hashes_rate.get(meta["audio_sha256"], verified_rate.get(ident, rates[0]))
                out = index.cache.get(key)
                if out is None:
                    raise ConfigError(f"teacher cache entry for {entry.path} ({ident}) is unreadable (bad shard); re-run `edgetag teach`")
                n_teacher = out.scores.shape[-1] if out.scores is not None else (
                    max(t.label_columns) + 1 if t.label_columns else n_labels)
                parts_s.append(out.dense_scores(n_teacher))
                if out.embeddings is not None:
                    parts_e.append(np.asarray(out.embeddings, dtype=np.float32))
                rate = float(meta["frame_rate"])
            all_scores.append(np.concatenate(parts_s, axis=0))
            all_embs.append(np.concatenate(parts_e, axis=0) if parts_e else None)
        if rate is None and entries:  # even a partial teacher must cover something
            missing.setdefault(ident, []).append(entries[0].path)
        collected[ident] = (rate or 1.0, all_scores, all_embs)
    if missing:
        ident, paths = next(iter(missing.items()))
        raise ConfigError(
            f"{len(paths)} {split} segment(s) have no cached outputs of teacher {ident} "
            f"(e.g. {paths[0]}), or the audio changed since they were cached; "
            "run `edgetag teach` over the same manifest first"
        )
    return collected


def _dataset_columns(s: np.ndarray, label_columns: list[int] | None, n_labels: int, ident: str) -> np.ndarray:
    """A teacher's scores [frames, teacher labels] as [frames, dataset labels] (``teacher.label_columns``)."""
    if label_columns is not None:
        if len(label_columns) != n_labels:
            raise ConfigError(f"teacher.label_columns: {len(label_columns)} columns for {n_labels} dataset labels")
        if max(label_columns) >= s.shape[1]:
            raise ConfigError(f"teacher.label_columns: column {max(label_columns)} but teacher {ident} has {s.shape[1]} scores")
        s = s[:, label_columns]
    elif s.shape[1] != n_labels:
        raise ConfigError(
            f"teacher {ident} has {s.shape[1]} labels, the data {n_labels}: set teacher.label_columns "
            "(the teacher's column for each dataset label)"
        )
    return np.ascontiguousarray(s, dtype=np.float32)
