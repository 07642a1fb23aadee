"""The student as the trainer trains it: the module one DDP forward covers (`Net`), the
optimiser, schedule, AMP scaler and EMA around it (`TrainModel`, `build_train_model`),
and its clip-level evaluation on the validation split (`evaluate_split`)."""

from __future__ import annotations

import dataclasses
import logging
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from edgetag.training import losses as L
from edgetag.training.batches import BatchMaker
from edgetag.training.config import ConfigError, TrainConfig
from edgetag.training.distributed import Dist, globalise_batch_norm
from edgetag.training.metrics import tagging_metrics
from edgetag.training.students import STUDENTS, build_student
from edgetag.training.train_data import Split, TrainData, feature_moments
from torch import Tensor, nn

log = logging.getLogger(__name__)


@dataclass
class TrainModel:
    """Everything a training step updates, and what a checkpoint saves of it."""

    student: nn.Module
    """The student being trained (its global-batch-norm version in a distributed run)."""
    regulariser: nn.Module | None
    ema: L.ModelEMA | None
    net: nn.Module
    """Student plus regulariser, wrapped in DistributedDataParallel in a distributed run."""
    trainable: list[nn.Parameter]
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    params: dict[str, Any]
    """``student.params`` as built (a window student's ``window_frames`` filled in)."""
    frame_mode: bool
    """A stateful student: logits and teacher targets per frame."""
    kind: str = ""
    """The student kind the product is rebuilt as (``reprogrammed`` for the base methods)."""
    record: dict[str, Any] | None = None
    """The base methods' provenance record (`edgetag.training.reprogram.build_reprogrammed`)."""

    @property
    def trainable_parameters(self) -> int:
        """Parameters of the student the optimiser moves (the regulariser's not counted)."""
        return sum(p.numel() for p in self.student.parameters() if p.requires_grad)

    @property
    def averaged(self) -> nn.Module:
        """The weights that are the product: the EMA's when one is kept, else the student's."""
        return self.ema.module if self.ema is not None else self.student

    def optimise(self, loss: Tensor, grad_clip: float) -> tuple[Tensor | None, float]:
        """Backward, one (scaled, clipped) optimiser step, the schedule and the EMA; returns the
        gradient norm before clipping (None without clipping) and the learning rate used."""
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        grad_norm = None
        if grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            grad_norm = torch.nn.utils.clip_grad_norm_(self.trainable, grad_clip)
        lr = self.optimizer.param_groups[0]["lr"]
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update(self.student)
        return grad_norm, lr


def build_train_model(config: TrainConfig, data: TrainData, device: torch.device, dist_info: Dist, use_cuda: bool,
                      fp16_scaling: bool, base: Any = None) -> TrainModel:
    """The seeded student (inputs normalised by the training features' moments), its regulariser,
    EMA, optimiser, schedule and scaler; wrapped for DDP in a distributed run.

    ``base``: the `edgetag.training.reprogram.BaseStudent` of a base method (reprogram, finetune),
    whose student is wrapped instead of building ``config.student``."""
    o = config.optim
    torch.manual_seed(o.seed)
    np.random.seed(o.seed % (2**32))
    random.seed(o.seed)
    record = None
    if base is not None:
        from edgetag.training.reprogram import build_reprogrammed

        kind = "reprogrammed"
        student, params, record = build_reprogrammed(config, base, len(data.labels))
    else:
        kind = config.student.kind
        student, params = _build_student(config, data)
    frame_mode = student.streaming_mode == "stateful"
    if getattr(student, "level_normalise", False):
        mean, std = _set_level_reference(student, data)
    elif getattr(getattr(student, "base", None), "level_normalise", False):  # around a level-normalising base
        mean, std = _level_normalised_moments(student.base, data, float(student.base.level_reference))
    else:
        mean, std = feature_moments(data.train.features)
    student.feature_mean.copy_(torch.from_numpy(mean).float())
    student.feature_std.copy_(torch.from_numpy(np.maximum(std, 1e-5)).float())

    regulariser: nn.Module | None = None
    if config.regulariser != "none":
        if config.regulariser == "conreg":
            dims = [int(track.embeddings[0].shape[-1]) for track in data.train.embedding_tracks]  # type: ignore[index]
            regulariser = L.ConReg(int(student.embedding_dim), dims)
        else:
            regulariser = L.DisReg()
    student.to(device)
    if regulariser is not None:
        regulariser.to(device)
    ema = L.ModelEMA(student, o.ema_decay) if o.ema_decay > 0 else None
    net: nn.Module = Net(student, regulariser)
    if dist_info.active:
        from torch.nn.parallel import DistributedDataParallel as DDP

        student = globalise_batch_norm(student, use_cuda)  # SyncBatchNorm returns a new module
        net = Net(student, regulariser)
        net = DDP(net, device_ids=[dist_info.local_rank] if use_cuda else None)

    trainable = [p for p in net.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=o.lr, weight_decay=o.weight_decay, eps=o.eps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(config))
    scaler = torch.amp.GradScaler("cuda", enabled=fp16_scaling)
    return TrainModel(student, regulariser, ema, net, trainable, optimizer, scheduler, scaler, params, frame_mode,
                      kind, record)


def _set_level_reference(student: nn.Module, data: TrainData) -> tuple[np.ndarray, np.ndarray]:
    """A level-normalising student's reference: the median mean band energy of the training windows,
    so a typical window passes unchanged. Returns the per-band moments of the training features as the
    student will see them (each window at that level)."""
    from edgetag.training.train_data import window_levels

    fe = data.frontend
    if fe.compression != "log" or fe.spectrum != "power":
        raise ConfigError(f"student.params.level_normalise needs the front end's power spectrum with 'log' "
                          f"compression (ln(energy + floor)); this front end has {fe.spectrum} and {fe.compression!r}")
    window = int(student.window_frames)
    levels = np.concatenate(window_levels(data.train.features, window, fe.log_floor))
    levels = levels[levels > 0]
    if len(levels) == 0:
        raise ConfigError("student.params.level_normalise: the training features hold no window with energy")
    reference = float(np.median(levels))
    student.level_reference.fill_(reference)
    student.level_floor.fill_(float(fe.log_floor))
    return _level_normalised_moments(student, data, reference)


def _level_normalised_moments(student: nn.Module, data: TrainData, reference: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-band moments of the training features with every window brought to ``reference`` (``student``'s
    window and log floor), as a level-normalising student, or a model around one, sees them."""
    from edgetag.training.students import MAX_LEVEL_GAIN_DB
    from edgetag.training.train_data import level_normalised_moments

    return level_normalised_moments(data.train.features, int(student.window_frames), float(student.level_floor),
                                    reference, MAX_LEVEL_GAIN_DB)


def _build_student(config: TrainConfig, data: TrainData) -> tuple[nn.Module, dict[str, Any]]:
    """A fresh ``config.student`` and its parameters as built (a window student's window filled in)."""
    params = dict(config.student.params)
    window = data.window
    is_window = getattr(STUDENTS[config.student.kind], "streaming_mode", "window") == "window"
    if is_window and params.setdefault("window_frames", window) != window:
        raise ConfigError(
            f"student.params.window_frames: {params['window_frames']} but data.segment_seconds gives {window} frames"
        )
    try:
        return build_student(config.student.kind, data.frontend.n_bins, len(data.labels), **params), params
    except TypeError as exc:
        raise ConfigError(f"student.params: {exc}") from None


class Net(nn.Module):
    """Student plus the embedding regulariser, so one DDP forward covers every trained parameter."""

    def __init__(self, student: nn.Module, regulariser: nn.Module | None) -> None:
        super().__init__()
        self.student = student
        self.regulariser = regulariser

    def forward(self, x: Tensor, teacher_embs: list[Tensor] | None = None, valid: Tensor | None = None) -> tuple[Tensor, Tensor]:
        s = self.student
        if self.regulariser is None or not teacher_embs:
            logits = s(x)
            return logits, logits.new_zeros(())
        emb = s.embed(x)  # [B, D] (window) or [B, W, D] (stateful)
        logits = _head(s, emb)
        pooled = emb if emb.dim() == 2 else pool(emb, valid)
        return logits, self.regulariser(pooled, teacher_embs)


def _head(student: nn.Module, emb: Tensor) -> Tensor:
    """The student's classifier applied to its `embed` output."""
    name = type(student).__name__
    if name == "CausalConvStudent":
        return student.classifier(emb.transpose(1, 2)).transpose(1, 2)
    return student.classifier(emb)


def pool(frames: Tensor, valid: Tensor | None) -> Tensor:
    """[B, W, D] -> [B, D]: mean over the valid frames."""
    if valid is None:
        return frames.mean(1)
    w = valid.to(frames.dtype).unsqueeze(-1)
    return (frames * w).sum(1) / w.sum(1).clamp_min(1.0)


def clip_logits(logits: Tensor, valid: Tensor) -> Tensor:
    """Clip logits [B, C]: a stateful student's frame logits pooled over the valid frames."""
    return logits if logits.dim() == 2 else pool(logits, valid)


def _lr_lambda(config: TrainConfig) -> Callable[[int], float]:
    """The learning-rate factor of a step: linear warm-up, then constant or cosine to ``min_lr_ratio``."""
    o = config.optim

    def f(step: int) -> float:
        if step < o.warmup_steps:
            return (step + 1) / o.warmup_steps
        if o.schedule == "constant":
            return 1.0
        span = max(1, o.steps - o.warmup_steps)
        progress = min(1.0, (step - o.warmup_steps) / span)
        return o.min_lr_ratio + (1.0 - o.min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return f


@torch.no_grad()
def evaluate_split(model: nn.Module, split: Split, window: int, silence: np.ndarray, task: str, device: torch.device,
                   frame_mode: bool, maker: BatchMaker) -> dict[str, float]:
    """Clip scores on the first ``window`` frames of each validation segment: loss and tagging metrics."""
    was_training = model.training
    model.eval()
    eval_maker = BatchMaker(maker.config, dataclasses.replace(split, score_tracks=[], embedding_tracks=[]), maker.frontend,
                            window, silence, frame_mode)
    scores, losses = [], []
    for start in range(0, len(split), 64):
        idx = list(range(start, min(len(split), start + 64)))
        b = eval_maker.make(0, idx, idx, 0, augment=False)
        logits = model(b.features.to(device)).float()
        clip = clip_logits(logits, b.valid.to(device))
        losses.append(float(L.label_loss(task, clip, b.targets.to(device), b.mask.to(device))) * len(idx))  # type: ignore[arg-type]
        probs = torch.softmax(clip, -1) if task == "multi_class" else torch.sigmoid(clip)
        scores.append(probs.cpu().numpy())
    model.train(was_training)
    y_score = np.concatenate(scores)
    out: dict[str, float] = {"loss": sum(losses) / len(split)}
    try:
        out.update(tagging_metrics(split.targets, y_score, split.mask, 0.5, task))
    except Exception as exc:  # noqa: BLE001  (metrics are a report, never a reason to lose a run)
        log.warning("tagging metrics failed: %s", exc)
    return {k: float(v) for k, v in out.items()}
