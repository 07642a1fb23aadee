"""Training batches, rebuilt exactly on resume: which example fills each position of a step
(`Sampler`), and the crops, teacher targets, augmentations and mixup that make a `Batch`
(`BatchMaker`). Every random draw comes from a generator seeded by (seed, step, position)
or (seed, step, rank); see `edgetag.training.trainer`, "Determinism and resuming"."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from edgetag.training import losses as L
from edgetag.training.augment import Augmenter
from edgetag.training.config import ConfigError, TrainConfig
from edgetag.training.teacher_tracks import near_teacher_frames
from edgetag.training.train_data import Split
from torch import Tensor


def _seed(*parts: object) -> int:
    """A 63-bit seed derived from ``parts`` (stable across processes and Python versions)."""
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def _generator(*parts: object) -> torch.Generator:
    return torch.Generator().manual_seed(_seed(*parts))


class Sampler:
    """Which example fills global batch position ``p`` of step ``s``: a pure function of (seed, s, p)."""

    def __init__(self, n: int, batch: int, seed: int, weights: np.ndarray | None = None) -> None:
        if n == 0:
            raise ConfigError("the training split has no readable entries")
        self.n, self.batch, self.seed = n, batch, seed
        self.weights = None if weights is None else torch.from_numpy(weights.astype(np.float64))
        self._perms: dict[int, Tensor] = {}

    def indices(self, step: int) -> list[int]:
        if self.weights is not None:
            g = _generator(self.seed, "balanced", step)
            return torch.multinomial(self.weights, self.batch, replacement=True, generator=g).tolist()
        out = []
        for g_pos in range(step * self.batch, (step + 1) * self.batch):
            epoch, i = divmod(g_pos, self.n)
            perm = self._perms.get(epoch)
            if perm is None:
                perm = torch.randperm(self.n, generator=_generator(self.seed, "epoch", epoch))
                self._perms = {epoch: perm}  # only the current epoch is kept
            out.append(int(perm[i]))
        return out

    def state(self) -> dict[str, Any]:
        return {"n": self.n, "batch": self.batch, "seed": self.seed, "balanced": self.weights is not None}


def balanced_weights(targets: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per-example weight: mean of 1/frequency over its positive labels (no positive: its own class)."""
    pos = (targets > 0.5) & (mask > 0)
    counts = pos.sum(0).astype(np.float64)
    none = ~pos.any(1)
    w = np.zeros(len(targets))
    for i in range(len(targets)):
        if none[i]:
            w[i] = 1.0 / none.sum()
        else:
            w[i] = float(np.mean(1.0 / counts[pos[i]]))
    return w / w.sum()


@dataclass
class Batch:
    features: Tensor  # [B, W, F] (augmented, the student's view)
    clean: Tensor  # [B, W, F] (the EMA teacher's view)
    targets: Tensor  # [B, C]
    mask: Tensor  # [B, C]
    valid: Tensor  # [B, W] frames of real audio
    teacher: Tensor | None  # [B, C] (window student) or [B, W, C]
    embeddings: list[Tensor]  # per embedding teacher [B, D_k]
    teacher_ok: Tensor | None = None  # [B, W] float: frames with a teacher frame within half a hop (frame mode)


class BatchMaker:
    """The batch of a step from its positions and example indices (`make`), augmented or not."""

    def __init__(self, config: TrainConfig, split: Split, frontend: Any, window: int, silence: np.ndarray, frame_mode: bool) -> None:
        self.config, self.split, self.frontend = config, split, frontend
        if config.teacher.partial and split.score_tracks and not frame_mode:
            raise ConfigError("teacher.partial needs frame-level targets (a frame-output student); "
                              "clip-level targets average a teacher over the crop, which a missing teacher cannot join")
        self.window, self.silence, self.frame_mode = window, silence, frame_mode
        self.augmenter = Augmenter(config.augment, frontend)
        self.student_rate = frontend.frame_rate
        self.centre = frontend.win_length / (2.0 * frontend.sample_rate)
        self.last_generator_state: Tensor | None = None
        self.last_teacher_ok: Tensor | None = None

    def _example(self, idx: int, gen: torch.Generator | None) -> tuple[Tensor, Tensor, Tensor | None, list[Tensor]]:
        """One crop: (features [W, F], valid frames [W], teacher target [C] or [W, C] or None, embeddings).

        In frame mode `last_teacher_ok` is set to the crop's [W] mask of frames that have a
        teacher frame within half a student hop (all True for a teacher as dense as the student).
        """
        s, w = self.split, self.window
        feats = s.features[idx]
        n = feats.shape[0]
        offset = int(torch.randint(0, n - w + 1, (1,), generator=gen)) if (gen is not None and n > w) else 0
        crop = feats[offset : offset + w]
        real = crop.shape[0]
        if real < w:
            crop = np.concatenate([crop, np.broadcast_to(self.silence, (w - real, crop.shape[1]))], axis=0)
        x = torch.from_numpy(np.ascontiguousarray(crop))
        valid = torch.zeros(w, dtype=torch.bool)
        valid[:real] = True
        t0 = offset / self.student_rate + self.centre
        teacher = None
        self.last_teacher_ok = None
        if s.score_tracks and self.config.teacher.partial:
            teacher, self.last_teacher_ok = self._partial_targets(idx, w, t0)
        elif s.score_tracks:
            per = []
            near = torch.ones(w, dtype=torch.bool)
            for track in s.score_tracks:
                scores = track.scores[idx]  # type: ignore[index]
                aligned, ok = L.align_teacher_frames(torch.from_numpy(scores), track.rate, self.student_rate, w,
                                                     student_offset=t0, teacher_offset=track.offset)
                per.append(aligned if self.frame_mode else masked_time_mean(aligned, ok & valid))
                near &= ok & near_teacher_frames(scores.shape[0], track.rate, self.student_rate, w, t0, track.offset)
            teacher = torch.stack(per).mean(0)
            if self.frame_mode:
                self.last_teacher_ok = near
        embs = []
        for track in s.embedding_tracks:
            aligned, ok = L.align_teacher_frames(torch.from_numpy(track.embeddings[idx]), track.rate, self.student_rate, w,  # type: ignore[index]
                                                 student_offset=t0, teacher_offset=track.offset)
            embs.append(masked_time_mean(aligned, ok & valid))
        return x, valid, teacher, embs

    def _partial_targets(self, idx: int, w: int, t0: float) -> tuple[Tensor, Tensor]:
        """``teacher.partial``: per frame, the mean of the teachers with a frame near it ([W, C]), and which
        frames have any ([W]); a teacher without outputs for this row (an empty track) adds nothing."""
        total, count = None, torch.zeros(w)
        for track in self.split.score_tracks:
            scores = track.scores[idx]  # type: ignore[index]
            if scores.shape[0] == 0:
                continue
            aligned, ok = L.align_teacher_frames(torch.from_numpy(scores), track.rate, self.student_rate, w,
                                                 student_offset=t0, teacher_offset=track.offset)
            near = (ok & near_teacher_frames(scores.shape[0], track.rate, self.student_rate, w, t0, track.offset)).float()
            total = aligned * near[:, None] if total is None else total + aligned * near[:, None]
            count += near
        if total is None:  # no teacher covers this row
            total = torch.zeros(w, self._n_teacher_labels())
        return total / count.clamp_min(1.0)[:, None], count > 0

    def _n_teacher_labels(self) -> int:
        for track in self.split.score_tracks:
            for scores in track.scores or []:
                if scores.shape[0]:
                    return int(scores.shape[1])
        raise ValueError("no teacher has outputs for any row")

    def make(self, step: int, positions: list[int], indices: list[int], rank: int, augment: bool = True) -> Batch:
        feats, cleans, valids, teachers, embs, oks = [], [], [], [], [], []
        seed = self.config.optim.seed
        for pos, idx in zip(positions, indices):
            gen = _generator(seed, "example", step, pos) if augment else None
            x, valid, teacher, e = self._example(idx, gen)
            near = self.last_teacher_ok
            clean = x
            if augment:
                # The time shift also moves the frame targets and the EMA teacher's clean view,
                # so per-frame targets and the consistency loss stay aligned with the student's view.
                frame_t = teacher if (teacher is not None and self.frame_mode) else None
                xa, (valid_a, frame_t, clean_a, near_a) = self.augmenter.example(
                    x[None], [valid[None], None if frame_t is None else frame_t[None], x[None],
                              None if near is None else near[None]], gen
                )
                x, valid, clean = xa[0], valid_a[0], clean_a[0]  # type: ignore[index]
                if frame_t is not None:
                    teacher = frame_t[0]
                if near_a is not None:
                    near = near_a[0]
                self.last_generator_state = gen.get_state()
            oks.append(near)
            cleans.append(clean)
            feats.append(x)
            valids.append(valid)
            teachers.append(teacher)
            embs.append(e)
        s = self.split
        batch = Batch(
            features=torch.stack(feats),
            clean=torch.stack(cleans),
            targets=torch.from_numpy(s.targets[indices]),
            mask=torch.from_numpy(s.mask[indices]),
            valid=torch.stack(valids),
            teacher=torch.stack(teachers) if teachers and teachers[0] is not None else None,  # type: ignore[arg-type]
            embeddings=[torch.stack([e[k] for e in embs]) for k in range(len(s.embedding_tracks))],
            teacher_ok=torch.stack(oks).float() if oks and oks[0] is not None else None,  # type: ignore[arg-type]
        )
        if augment and self.config.augment.mixup_alpha > 0:
            gen = _generator(seed, "mixup", step, rank)
            # teacher_ok mixes like a target: a mixed frame's KD weight is the share of it that had a teacher frame.
            extras = [batch.clean, batch.teacher, batch.teacher_ok, *batch.embeddings]
            f, t, m, mixed = self.augmenter.batch(batch.features, batch.targets, batch.mask, extras, gen)
            batch.features, batch.targets, batch.mask = f, t, m
            batch.clean, batch.teacher, batch.teacher_ok = mixed[0], mixed[1], mixed[2]  # type: ignore[assignment]
            batch.embeddings = list(mixed[3:])  # type: ignore[arg-type]
        return batch



def masked_time_mean(x: Tensor, ok: Tensor) -> Tensor:
    """Mean over frames ``[W, D] -> [D]`` of the frames where ``ok`` (all frames if none)."""
    if not bool(ok.any()):
        return x.mean(0)
    return x[ok].mean(0)
