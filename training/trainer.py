"""The trainer: one loop for every distillation method, on CPU, one GPU or many.

`train(config, run_dir)` runs a `TrainConfig` (see `edgetag.training.config`)
and leaves in ``run_dir``::

    config.yaml, config.json   the resolved config; config.sha256 its hash
    student.pt                 the product (`edgetag.training.checkpoint`), EMA weights when kept
    checkpoints/state-NNNNNNNN.pt  resumable training state (newest ``checkpoint.keep``)
    metrics.csv, eval.csv, metrics.jsonl   per-step and per-evaluation metrics
    features/                  features precomputed per segment (unless ``data.feature_cache``)

Data
    Every segment of the train (and valid) split is decoded at the front end's
    rate and turned into features once with `TorchFrontend` (float64 compute,
    float32 out), cached on disk by content hash and front-end config. A
    training example is a crop of ``data.segment_seconds`` (shorter segments
    are padded with the features of silence). Teacher outputs come from the
    `TeacherCache`: for each segment, the chain of cached windows that
    `fill_cache` wrote is found by path and bounds and *checked* against the
    content hash of the decoded audio (a stale cache is an error, not a silent
    mismatch). Teacher frames are aligned to the student's frames
    (`losses.align_teacher_frames`, nearest, frame centres; CREPE's frame 0 is
    centred at 32 ms); a window student gets their mean over the crop. A
    stateful student whose teacher ran at a coarser hop (CREPE every 100 ms,
    the student every 10 ms) gets KD targets only on the frames that have a
    teacher frame within half a student hop; the others are masked out.

Methods
    ``labels``: masked BCE / cross-entropy (missing labels count for nothing).
    ``kd``: plus soft targets with a temperature (per frame for stateful students).
    ``kd+conreg`` / ``kd+disreg``: plus the teacher-embedding regulariser on
    time-pooled embeddings. ``mean_teacher``: masked labels plus the
    consistency between the student (augmented view) and its EMA (clean view).
    ``reprogram``: masked labels, for a new label set, through a frozen pretrained
    student (``reprogram.base_checkpoint``) between a small learnt input transform
    and a linear output mapping, the only parameters trained (at most
    ``reprogram.max_trainable_parameters``; `edgetag.training.reprogram`).
    ``finetune``: the same model with every weight trained (reprogramming's baseline).
    These two take their student from the base, not from the ``student`` section
    (only ``student.decision_seconds`` applies; by default they decide as often as the base).

Determinism and resuming
    No randomness comes from a shared stream that a resume could not rebuild:
    the sampler's order for global batch position ``p`` of step ``s`` is a
    function of (seed, epoch) or (seed, s); each example's crop and
    augmentations draw from a generator seeded by (seed, s, p); mixup from one
    seeded by (seed, s, rank). Checkpoints (temporary file, fsync, rename)
    hold the model, EMA, regulariser, optimiser, scheduler, scaler, step and
    the torch / CUDA / numpy / python RNG states plus the generator states
    last used. A run killed at any point resumes from its newest readable
    checkpoint and ends with bit-identical weights to an uninterrupted run on
    CPU (tested). Metrics rows after the resumed step are dropped.

Distributed
    Under ``torchrun`` (WORLD_SIZE > 1) the trainer joins the process group
    (nccl on CUDA, gloo on CPU), wraps the model in DistributedDataParallel and
    gives rank r the slice ``[r*B/W, (r+1)*B/W)`` of each global batch of B
    positions. Batch normalisation uses global batch statistics (SyncBatchNorm
    on CUDA, an all-reduce implementation on CPU), so W processes compute the
    same step as one process on the global batch. Mixup pairs examples within
    each process's slice, and masked losses are normalised per process, so
    those two are the only parts that depend on the process count. Only rank 0
    writes checkpoints, metrics and the product; all ranks read the newest
    checkpoint on start (multi-node runs need ``run_dir`` on a shared
    file system).

Where the parts live
    `train_data` (features, splits), `teacher_tracks` (cached teacher outputs),
    `batches` (sampling, crops, augmentation), `train_model` (student, optimiser,
    evaluation), `train_state` (checkpoints, resume), `run_dir` (config and metrics
    files), `products` (student.pt) and `distributed`; this module runs the loop.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
import torch
from edgetag.runtime.atomic import hold_lock
from edgetag.training import losses as L
from edgetag.training.batches import Batch, BatchMaker, Sampler, balanced_weights
from edgetag.training.config import BASE_METHODS, ConfigError, TrainConfig, config_hash
from edgetag.training.distributed import Dist, init_distributed
from edgetag.training.products import export_student, save_product
from edgetag.training.run_dir import MetricsLog, prepare_run_dir
from edgetag.training.train_data import TrainData, load_train_data
from edgetag.training.train_model import TrainModel, build_train_model, clip_logits, evaluate_split, pool
from edgetag.training.train_state import latest_checkpoint, resume, save_state, state_path
from torch import Tensor


__all__ = ["TrainResult", "latest_checkpoint", "train"]

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    run_dir: Path
    student_path: Path | None
    state_path: Path | None
    steps: int
    resumed_from: int
    config_hash: str
    metrics: dict[str, float]
    trainable_parameters: int | None = None
    """Parameters of the student the optimiser moved (the product's card counts all of them)."""


class RunBusyError(OSError):
    """Another process is training in the same run folder."""


def train(
    config: TrainConfig,
    run_dir: str | os.PathLike[str],
    *,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
) -> TrainResult:
    """Train (or resume) the student of ``config`` in ``run_dir``; see the module docstring.

    ``on_step(step, metrics)`` is called on every rank after each optimiser step
    (and after that step's checkpoint is written): a hook for progress, tests
    and external stopping (an exception there stops the run like a kill).
    """
    run_dir = Path(run_dir)
    o = config.optim
    want_cuda = o.device == "cuda" or (o.device == "auto" and torch.cuda.is_available())
    if o.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("optim.device: cuda, but torch sees no CUDA device")
    dist_info = init_distributed(want_cuda)
    try:
        return _train(config, run_dir, dist_info, want_cuda, on_step)
    finally:
        dist_info.close()


def _say(config: TrainConfig, dist_info: Dist, line: str) -> None:
    """A line about the run from the main process: on stderr beside the progress bar, else to the log."""
    if not dist_info.main:
        return
    if config.logging.progress:
        print(line, file=sys.stderr, flush=True)
    else:
        log.info("%s", line)


def _lock_run_dir(run_dir: Path) -> IO[str]:
    """Make ``run_dir`` and hold it for this run: two runs in one folder would write every row and checkpoint
    twice. `RunBusyError` when another process trains there."""
    run_dir.mkdir(parents=True, exist_ok=True)
    return hold_lock(run_dir / ".run.lock", lambda holder: RunBusyError(
        f"another edgetag distill ({holder}) is training in {run_dir}: wait for it to finish, or give this run "
        "another --run-dir"))


@dataclass
class _Run:
    """What the loop and the end of one run share."""

    config: TrainConfig
    run_dir: Path
    dist: Dist
    device: torch.device
    amp: bool
    amp_dtype: torch.dtype
    digest: str
    data: TrainData
    model: TrainModel
    sampler: Sampler
    maker: BatchMaker
    logger: MetricsLog
    start_step: int

    def save_state(self, step: int) -> Path:
        """The resumable state after ``step`` optimiser steps (`train_state.save_state`)."""
        return save_state(self.run_dir, step, self.config.checkpoint.keep, self.digest, self.data.manifest_sha256,
                          self.dist.world, self.model, self.sampler.state(), self.maker.last_generator_state)

    def evaluate(self, model: torch.nn.Module, device: torch.device) -> dict[str, float]:
        """``model`` on the validation split (which the caller checks exists)."""
        return evaluate_split(model, self.data.valid, self.data.window, self.data.silence, self.config.data.task,  # type: ignore[arg-type]
                              device, self.model.frame_mode, self.maker)


def _train(config: TrainConfig, run_dir: Path, dist_info: Dist, use_cuda: bool,
           on_step: Callable[[int, dict[str, float]], None] | None) -> TrainResult:
    o = config.optim
    if o.batch_size % dist_info.world:
        raise ConfigError(f"optim.batch_size: {o.batch_size} does not split evenly over {dist_info.world} processes")
    device = torch.device(f"cuda:{dist_info.local_rank}" if use_cuda else "cpu")
    amp = bool(o.amp and device.type == "cuda")
    amp_dtype = torch.float16 if o.amp_dtype == "float16" else torch.bfloat16
    digest = config_hash(config)
    base = None
    if config.method in BASE_METHODS:  # a bad base checkpoint fails here, before any feature is computed
        from edgetag.training.reprogram import load_base

        base = load_base(config)
    # after the config's checks, so that a refused run makes no folder
    lock = _lock_run_dir(run_dir) if dist_info.main else None
    try:
        prepare_run_dir(run_dir, config, digest, dist_info)
        data = load_train_data(config, run_dir, dist_info)
        model = build_train_model(config, data, device, dist_info, use_cuda,
                                  fp16_scaling=amp and amp_dtype == torch.float16, base=base)
        total = sum(p.numel() for p in model.student.parameters())
        _say(config, dist_info, f"{config.method}: {model.trainable_parameters:,} of the student's {total:,} "
                                "parameters are trained")
        start_step = resume(run_dir, model, digest, data.manifest_sha256, config.data.manifest)
        if start_step:
            _say(config, dist_info, f"resuming at step {start_step} of {o.steps} from {run_dir / 'checkpoints'}")
        weights = balanced_weights(data.train.targets, data.train.mask) if config.sampling.class_balanced else None
        run = _Run(config, run_dir, dist_info, device, amp, amp_dtype, digest, data, model,
                   sampler=Sampler(len(data.train), o.batch_size, o.seed, weights),
                   maker=BatchMaker(config, data.train, data.frontend, data.window, data.silence, model.frame_mode),
                   logger=MetricsLog(run_dir, config, start_step, dist_info.main), start_step=start_step)
        last_state_path = _loop(run, on_step)
        return _finish(run, last_state_path)
    finally:
        if lock is not None:
            lock.close()


def _loop(run: _Run, on_step: Callable[[int, dict[str, float]], None] | None) -> Path | None:
    """The optimiser steps from ``run.start_step`` on, with their logging, evaluations and
    checkpoints; the path of the last checkpoint written (None if none)."""
    config, o, main = run.config, run.config.optim, run.dist.main
    bar = None
    if main and config.logging.progress:
        from tqdm import tqdm

        bar = tqdm(total=o.steps, initial=run.start_step, unit="step", desc="distill", dynamic_ncols=True)
    last_state_path: Path | None = None
    t_last = time.perf_counter()
    try:
        for step in range(run.start_step, o.steps):
            loss, parts, grad_norm, lr = _step(run, step)
            done = step + 1
            if not torch.isfinite(loss):
                raise FloatingPointError(f"loss is {float(loss)} at step {done}; lower optim.lr or check the data")
            now = time.perf_counter()
            metrics = _step_metrics(run, done, loss, parts, grad_norm, lr, now - t_last)
            t_last = now
            if done % config.logging.every == 0 or done == o.steps:
                run.logger.write("train", metrics)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{metrics['loss']:.4f}", lr=f"{lr:.2e}")
            if o.eval_every and done % o.eval_every == 0 and done < o.steps and run.data.valid is not None and main:
                run.logger.write("eval", {"step": done, **run.evaluate(run.model.averaged, run.device)})
            if config.checkpoint.every and done % config.checkpoint.every == 0 and done < o.steps and main:
                last_state_path = run.save_state(done)
            if on_step is not None:
                on_step(done, metrics)
    finally:
        if bar is not None:
            bar.close()
    return last_state_path


def _step(run: _Run, step: int) -> tuple[Tensor, dict[str, Tensor], Tensor | None, float]:
    """One optimiser step on this process's slice of the global batch of ``step``: the loss,
    its parts, the gradient norm (None without clipping) and the learning rate used."""
    o, rank = run.config.optim, run.dist.rank
    run.model.net.train()
    indices = run.sampler.indices(step)
    per_rank = o.batch_size // run.dist.world
    positions = list(range(rank * per_rank, (rank + 1) * per_rank))
    batch = run.maker.make(step, positions, [indices[p] for p in positions], rank)
    loss, parts = _losses(run, batch, step)
    grad_norm, lr = run.model.optimise(loss, o.grad_clip)
    return loss, parts, grad_norm, lr


def _losses(run: _Run, batch: Batch, step: int) -> tuple[Tensor, dict[str, Tensor]]:
    """The weighted loss of the method (see the module docstring, "Methods") and its parts."""
    config, device, m = run.config, run.device, run.model
    t, task = config.teacher, config.data.task
    feats = batch.features.to(device, non_blocking=True)
    valid = batch.valid.to(device)
    tmask = batch.mask.to(device)
    ttarg = batch.targets.to(device)
    embs = [e.to(device) for e in batch.embeddings]
    with torch.autocast(device_type=device.type, dtype=run.amp_dtype, enabled=run.amp):
        logits, reg_loss = m.net(feats, embs if m.regulariser is not None else None, valid)
    logits = logits.float()
    parts: dict[str, Tensor] = {}
    clip = clip_logits(logits, valid)
    loss = logits.new_zeros(())
    if t.label_enhance and batch.teacher is not None:
        # Teacher-student label enhancing: a confident teacher fills missing labels.
        probs = batch.teacher.to(device).float()
        probs = probs if t.score_kind == "probabilities" else torch.sigmoid(probs)
        if probs.dim() == 3:  # per-frame teacher: pool to the clip like the student
            probs = pool(probs, valid)
        ttarg, tmask = L.enhance_labels(ttarg, tmask, probs, t.label_enhance_hi, t.label_enhance_lo)
    if t.label_weight > 0:
        parts["label"] = L.label_loss(task, clip, ttarg, tmask)
        loss = loss + t.label_weight * parts["label"]
    if batch.teacher is not None and t.kd_weight > 0:
        parts["kd"] = _kd_loss(run, batch, logits, valid)
        loss = loss + t.kd_weight * parts["kd"]
    if m.regulariser is not None:
        parts["embedding"] = reg_loss.float()
        loss = loss + t.embedding_weight * parts["embedding"]
    if config.method == "mean_teacher" and m.ema is not None:
        m.ema.module.eval()
        with torch.no_grad(), torch.autocast(device_type=device.type, dtype=run.amp_dtype, enabled=run.amp):
            teacher_logits = m.ema.module(batch.clean.to(device)).float()
        cmask = valid.float().unsqueeze(-1) if m.frame_mode else None
        parts["consistency"] = L.consistency_loss(logits, teacher_logits, task, cmask)
        rampup = L.sigmoid_rampup(step, t.consistency_rampup_steps)
        loss = loss + t.consistency_weight * rampup * parts["consistency"]
    return loss, parts


def _kd_loss(run: _Run, batch: Batch, logits: Tensor, valid: Tensor) -> Tensor:
    """Soft-target distillation from ``batch.teacher``; per frame for a stateful student, where
    a sparse teacher's frames without a teacher frame next to them count for nothing."""
    t, task, device = run.config.teacher, run.config.data.task, run.device
    teacher = batch.teacher.to(device)  # type: ignore[union-attr]
    kd = L.kd_multiclass if task == "multi_class" else L.kd_multilabel
    if run.model.frame_mode:
        kmask = valid.float()
        if batch.teacher_ok is not None:  # sparse teacher: only frames next to a teacher frame
            kmask = kmask * batch.teacher_ok.to(device)
        kmask = kmask if task == "multi_class" else kmask.unsqueeze(-1)
    else:
        kmask = None
    return kd(logits, teacher, t.temperature, t.score_kind, kmask)


def _step_metrics(run: _Run, done: int, loss: Tensor, parts: dict[str, Tensor], grad_norm: Tensor | None, lr: float,
                  seconds: float) -> dict[str, float]:
    """The metrics row of a step; loss and its parts are means over the processes."""
    o = run.config.optim
    metrics = {"step": done, "loss": float(loss.detach()), **{k: float(v.detach()) for k, v in parts.items()},
               "lr": lr, "seconds": seconds, "examples_per_s": o.batch_size / max(seconds, 1e-9)}
    if grad_norm is not None:
        metrics["grad_norm"] = float(grad_norm)
    if run.amp:
        metrics["amp_scale"] = float(run.model.scaler.get_scale())
    metrics.update(run.dist.average({k: metrics[k] for k in ["loss", *parts]}, run.device))
    return metrics


def _finish(run: _Run, last_state_path: Path | None) -> TrainResult:
    """Rank 0 evaluates the product on the validation split, writes the final state and
    ``student.pt``; every rank waits for that before returning."""
    config, o, run_dir = run.config, run.config.optim, run.run_dir
    final_metrics: dict[str, float] = {}
    student_path = None
    if run.dist.main:
        export_model = export_student(config, run.data, run.model)
        valid = run.data.valid
        if valid is not None and bool(np.any(valid.mask)):  # label metrics mean nothing without labels
            final_metrics = run.evaluate(export_model, torch.device("cpu"))
            run.logger.write("eval", {"step": o.steps, **final_metrics})
        if o.steps > run.start_step or not state_path(run_dir, o.steps).exists():
            last_state_path = run.save_state(o.steps)
        else:
            last_state_path = state_path(run_dir, o.steps)
        student_path = save_product(config, run.data, run.model, export_model, run.digest, run.dist.world,
                                    final_metrics, run_dir / "student.pt")
    run.logger.close()
    run.dist.barrier()
    return TrainResult(run_dir, student_path, last_state_path, o.steps, run.start_step, run.digest, final_metrics,
                       run.model.trainable_parameters)
