"""Losses and training methods for distilling teachers into students.

Everything here is plain torch, shape-agnostic over leading dimensions: a
window student's clip logits are ``[B, C]``, a stateful student's frame logits
``[B, T, C]``; targets, masks and teacher outputs have the same leading shape.
The tensor pieces they share (masked mean, tempered teacher scores, embedding
rows and distances) are in `edgetag.training.loss_primitives`.

Masks
    A mask is a float (or bool) tensor broadcastable to the per-entry loss; 0
    means "unknown, ignore", 1 "observed", values in between weight an entry
    (e.g. pseudo-labels, see `enhance_labels`). Masked losses are
    ``sum(loss * mask) / sum(mask)``: masked entries contribute nothing, the
    mean is over observed entries, and an all-masked batch gives exactly 0
    (still attached to the graph, so ``backward`` works) and never NaN.

Methods (with their sources):

- labels: `masked_bce_with_logits` (multi-label), `masked_cross_entropy`
  (multi-class);
- soft-target knowledge distillation with a temperature (Hinton, Vinyals &
  Dean 2015, "Distilling the knowledge in a neural network"):
  `kd_multiclass` (KL on tempered softmax) and `kd_multilabel` (BCE on
  tempered sigmoids, the multi-label form used for audio tagging, e.g.
  Schmid, Koutini & Widmer 2023 "Efficient large-scale audio tagging via
  transformer-to-CNN knowledge distillation"), both times T²;
  `DistillationLoss` weighs label and teacher terms;
- teacher embeddings as regularisers (Ding & Lerch 2023, "Audio embeddings as
  teachers for music classification"; Hung & Lerch, feature-space
  regularisation for music classification): `ConReg` (cosine alignment through
  a learned projection) and `DisReg` / `dis_reg` (matching within-batch
  distance matrices), one or several teachers;
- mean teacher (Tarvainen & Valpola 2017, "Mean teachers are better role
  models"): `ModelEMA`, `consistency_loss`, `sigmoid_rampup`/`linear_rampup`;
- teacher-student label enhancing with loss masking: `enhance_labels`;
- frame-level targets for streaming students: `align_teacher_frames`,
  `align_teacher_windows`.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from edgetag.training.loss_primitives import (
    EPS,
    ScoreKind,
    as_list,
    check_shapes,
    flat_rows,
    masked_mean,
    normalised_distances,
    pool_time,
    teacher_log_probs,
    teacher_tempered_logits,
    teacher_weights,
)

Task = Literal["multi_label", "multi_class"]

__all__ = [
    "ConReg",
    "DisReg",
    "DistillationLoss",
    "ModelEMA",
    "align_teacher_frames",
    "align_teacher_windows",
    "consistency_loss",
    "dis_reg",
    "enhance_labels",
    "kd_multiclass",
    "kd_multilabel",
    "label_loss",
    "linear_rampup",
    "masked_bce_with_logits",
    "masked_cross_entropy",
    "sigmoid_rampup",
]

# ----------------------------------------------------------------------------- label losses
def masked_bce_with_logits(
    logits: Tensor, targets: Tensor, mask: Tensor | None = None, pos_weight: Tensor | None = None
) -> Tensor:
    """Multi-label binary cross-entropy on logits, ignoring missing labels.

    ``targets`` in [0, 1] (hard or soft) and ``mask`` (see the module docstring,
    e.g. from `edgetag.training.data.label_matrix`) have the shape of ``logits``.
    The mean is over observed (mask-weighted) entries.
    """
    check_shapes(logits, targets, "masked_bce_with_logits")
    loss = F.binary_cross_entropy_with_logits(logits, targets.to(logits.dtype), reduction="none", pos_weight=pos_weight)
    return masked_mean(loss, mask)


def masked_cross_entropy(
    logits: Tensor, targets: Tensor, mask: Tensor | None = None, label_smoothing: float = 0.0, ignore_index: int = -1
) -> Tensor:
    """Multi-class cross-entropy (softmax over the last dimension), ignoring missing labels.

    ``targets`` is either
      * class indices, shape ``logits.shape[:-1]`` (integer); ``ignore_index``
        marks an unlabelled example; or
      * one-hot / soft targets of the shape of ``logits`` (float), e.g. the
        ``targets`` of `label_matrix`. A row without any positive is unlabelled.

    ``mask`` is per example (shape ``logits.shape[:-1]``) or per class (shape of
    ``logits``, as `label_matrix` gives it). A per-class mask is reduced to an
    example weight: the target-weighted mean of the mask, i.e. for one-hot
    targets the mask at the positive class (whose being known implies the
    others are negative). The mean is over observed examples.
    """
    if targets.dtype in (torch.int64, torch.int32, torch.int16, torch.uint8, torch.int8):
        if targets.shape != logits.shape[:-1]:
            raise ValueError(f"class-index targets must have shape {tuple(logits.shape[:-1])}, got {tuple(targets.shape)}")
        valid = targets != ignore_index
        safe = torch.where(valid, targets.long(), torch.zeros_like(targets, dtype=torch.long))
        soft = F.one_hot(safe, logits.shape[-1]).to(logits.dtype)
        weight = valid.to(logits.dtype)
        if mask is not None:
            if mask.shape == logits.shape:
                mask = (soft * mask.to(logits.dtype)).sum(-1)
            weight = weight * mask.to(logits.dtype)
    else:
        check_shapes(logits, targets, "masked_cross_entropy")
        soft = targets.to(logits.dtype)
        total = soft.sum(-1)
        weight = (total > 0).to(logits.dtype)
        if mask is not None:
            if mask.shape == logits.shape:
                m = (soft * mask.to(logits.dtype)).sum(-1) / total.clamp_min(EPS)
            else:
                m = mask.to(logits.dtype)
            weight = weight * m
        soft = soft / total.clamp_min(EPS).unsqueeze(-1)
    if label_smoothing:
        soft = soft * (1.0 - label_smoothing) + label_smoothing / logits.shape[-1]
    loss = -(soft * F.log_softmax(logits, dim=-1)).sum(-1)
    return masked_mean(loss, weight)


def label_loss(task: Task, logits: Tensor, targets: Tensor, mask: Tensor | None = None) -> Tensor:
    """`masked_bce_with_logits` for ``multi_label``, `masked_cross_entropy` for ``multi_class``."""
    if task == "multi_label":
        return masked_bce_with_logits(logits, targets, mask)
    if task == "multi_class":
        return masked_cross_entropy(logits, targets, mask)
    raise ValueError(f"task must be 'multi_label' or 'multi_class', got {task!r}")


# ----------------------------------------------------------------------------- distillation
def kd_multiclass(
    student_logits: Tensor,
    teacher: Tensor,
    temperature: float = 1.0,
    teacher_kind: ScoreKind = "logits",
    mask: Tensor | None = None,
) -> Tensor:
    """Soft-target distillation for one softmax (Hinton et al. 2015).

    ``KL(softmax(teacher / T) || softmax(student / T)) * T²``, summed over
    classes and averaged over (mask-weighted) examples. The T² keeps the
    gradient scale independent of T. ``mask`` is per example
    (``student_logits.shape[:-1]``).
    """
    check_shapes(student_logits, teacher, "kd_multiclass")
    t_log = teacher_log_probs(teacher.detach().to(student_logits.dtype), teacher_kind, temperature)
    s_log = F.log_softmax(student_logits / temperature, dim=-1)
    kl = (t_log.exp() * (t_log - s_log)).sum(-1)
    return masked_mean(kl, mask) * temperature**2


def kd_multilabel(
    student_logits: Tensor,
    teacher: Tensor,
    temperature: float = 1.0,
    teacher_kind: ScoreKind = "logits",
    mask: Tensor | None = None,
) -> Tensor:
    """Soft-target distillation for independent sigmoids.

    ``BCE(sigmoid(student / T), sigmoid(teacher / T)) * T²`` per label, averaged
    over (mask-weighted) entries; teacher probabilities are tempered as
    ``sigmoid(logit(p) / T)``. ``mask`` broadcasts to the logits (e.g. 0 for
    labels the teacher does not predict, or frames it did not cover).
    """
    check_shapes(student_logits, teacher, "kd_multilabel")
    target = torch.sigmoid(teacher_tempered_logits(teacher.detach().to(student_logits.dtype), teacher_kind, temperature))
    loss = F.binary_cross_entropy_with_logits(student_logits / temperature, target, reduction="none")
    return masked_mean(loss, mask) * temperature**2


class DistillationLoss(nn.Module):
    """``label_weight * label loss + teacher_weight * KD loss`` for one task.

    ``forward(student_logits, targets=None, mask=None, teacher=None, teacher_mask=None)``
    returns ``(total, parts)`` where ``parts`` holds the detached ``label`` and
    ``teacher`` terms (for logging). A missing ``targets`` (unlabelled batch)
    or ``teacher`` drops that term; the label mask and the teacher mask are
    separate because the teacher usually covers entries whose labels are missing.
    With ``label_weight = 1 - a`` and ``teacher_weight = a`` this is the usual
    convex KD combination.
    """

    def __init__(
        self,
        task: Task,
        temperature: float = 1.0,
        label_weight: float = 0.5,
        teacher_weight: float = 0.5,
        teacher_kind: ScoreKind = "logits",
    ) -> None:
        super().__init__()
        if task not in ("multi_label", "multi_class"):
            raise ValueError(f"task must be 'multi_label' or 'multi_class', got {task!r}")
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.task = task
        self.temperature = float(temperature)
        self.label_weight = float(label_weight)
        self.teacher_weight = float(teacher_weight)
        self.teacher_kind = teacher_kind

    def forward(
        self,
        student_logits: Tensor,
        targets: Tensor | None = None,
        mask: Tensor | None = None,
        teacher: Tensor | None = None,
        teacher_mask: Tensor | None = None,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        total = student_logits.sum() * 0.0
        parts: dict[str, Tensor] = {}
        if targets is not None and self.label_weight:
            lab = label_loss(self.task, student_logits, targets, mask)
            total = total + self.label_weight * lab
            parts["label"] = lab.detach()
        if teacher is not None and self.teacher_weight:
            kd = kd_multiclass if self.task == "multi_class" else kd_multilabel
            t = kd(student_logits, teacher, self.temperature, self.teacher_kind, teacher_mask)
            total = total + self.teacher_weight * t
            parts["teacher"] = t.detach()
        return total, parts

    def extra_repr(self) -> str:
        return (
            f"task={self.task}, T={self.temperature}, label_weight={self.label_weight}, "
            f"teacher_weight={self.teacher_weight}, teacher_kind={self.teacher_kind}"
        )


# ----------------------------------------------------------------------------- embedding regularisers
class ConReg(nn.Module):
    """Con-Reg: cosine alignment of the student embedding to teacher embeddings.

    Ding & Lerch 2023, "Audio embeddings as teachers for music classification":
    the student embedding ``s`` goes through a learned linear projection ``P_k``
    into teacher ``k``'s embedding space, and the loss is
    ``sum_k w_k * mean(1 - cos(P_k s, t_k))``. The projections are trained
    with the student (put this module's parameters in the optimiser) and are
    dropped at export.

    ``forward(student_emb, teacher_embs, mask=None)``: ``student_emb`` is
    ``[..., D_s]``; ``teacher_embs`` a tensor or one per teacher, ``[..., D_k]``
    with the same leading shape (a frame-level teacher for a clip student is
    mean-pooled over time first); ``mask`` (leading shape) drops rows, e.g.
    student frames no teacher frame covers.
    """

    def __init__(
        self, student_dim: int, teacher_dims: int | Sequence[int], weights: float | Sequence[float] | None = None
    ) -> None:
        super().__init__()
        dims = [int(teacher_dims)] if isinstance(teacher_dims, int) else [int(d) for d in teacher_dims]
        self.projections = nn.ModuleList(nn.Linear(student_dim, d) for d in dims)
        self.weights = teacher_weights(weights, len(dims))

    def forward(self, student_emb: Tensor, teacher_embs: Tensor | Sequence[Tensor], mask: Tensor | None = None) -> Tensor:
        teachers = as_list(teacher_embs)
        if len(teachers) != len(self.projections):
            raise ValueError(f"{len(teachers)} teacher embeddings for {len(self.projections)} projections")
        total = student_emb.sum() * 0.0
        for proj, w, t in zip(self.projections, self.weights, teachers, strict=True):
            t = pool_time(t, student_emb).detach().to(student_emb.dtype)
            if t.shape[:-1] != student_emb.shape[:-1]:
                raise ValueError(f"ConReg: teacher rows {tuple(t.shape[:-1])} vs student rows {tuple(student_emb.shape[:-1])}")
            s_rows, t_rows = flat_rows(proj(student_emb), mask), flat_rows(t, mask)
            if len(s_rows) == 0:
                continue
            cos = F.cosine_similarity(s_rows, t_rows, dim=-1, eps=1e-8)
            total = total + w * (1.0 - cos).mean()
        return total


def dis_reg(
    student_emb: Tensor,
    teacher_embs: Tensor | Sequence[Tensor],
    weights: float | Sequence[float] | None = None,
    metric: Literal["euclidean", "cosine"] = "euclidean",
    mask: Tensor | None = None,
) -> Tensor:
    """Dis-Reg: match within-batch distance matrices of student and teacher embeddings.

    Ding & Lerch 2023 (see `ConReg`): for the batch's rows, the pairwise distance
    matrix of the student embeddings and that of each teacher's embeddings are
    each divided by their mean off-diagonal entry (so the embeddings' scales and
    widths need not agree, and no projection is needed), and the loss is
    ``sum_k w_k * mean over pairs i != j of (Ds_ij - Dt_ij)²``. Rows are the
    flattened leading dimensions (clips, or clip-frames for frame students);
    ``mask`` drops rows. Fewer than two rows give 0.
    """
    teachers = as_list(teacher_embs)
    ws = teacher_weights(weights, len(teachers))
    total = student_emb.sum() * 0.0
    s_rows = flat_rows(student_emb, mask)
    if len(s_rows) < 2:
        return total
    ds, off = normalised_distances(s_rows, metric)
    for w, t in zip(ws, teachers, strict=True):
        t = pool_time(t, student_emb).detach().to(student_emb.dtype)
        if t.shape[:-1] != student_emb.shape[:-1]:
            raise ValueError(f"dis_reg: teacher rows {tuple(t.shape[:-1])} vs student rows {tuple(student_emb.shape[:-1])}")
        dt, _ = normalised_distances(flat_rows(t, mask), metric)
        total = total + w * (ds - dt)[off].square().mean()
    return total


class DisReg(nn.Module):
    """`dis_reg` as a module (no parameters), holding the teacher weights and the metric."""

    def __init__(self, weights: float | Sequence[float] | None = None, metric: Literal["euclidean", "cosine"] = "euclidean") -> None:
        super().__init__()
        self.weights = weights
        self.metric = metric

    def forward(self, student_emb: Tensor, teacher_embs: Tensor | Sequence[Tensor], mask: Tensor | None = None) -> Tensor:
        n = len(as_list(teacher_embs))
        weights = self.weights if self.weights is None or isinstance(self.weights, (int, float)) else list(self.weights)
        return dis_reg(student_emb, teacher_embs, teacher_weights(weights, n), self.metric, mask)


# ----------------------------------------------------------------------------- mean teacher
class ModelEMA:
    """Exponential moving average of a model's weights: the mean teacher.

    Tarvainen & Valpola 2017: the teacher's weights are
    ``theta' <- a * theta' + (1 - a) * theta`` after each student step, with
    ``a = min(decay, 1 - 1 / (step + 1))`` when ``warmup`` (so early teachers
    are not stuck at the random initialisation). Floating-point buffers
    (batch-norm running statistics) are averaged the same way (or copied with
    ``ema_buffers=False``); integer buffers (``num_batches_tracked``) are copied.
    ``module`` is a frozen deep copy; call ``module.train()``/``eval()`` as
    the method needs (mean teacher runs the teacher with its own noise).
    """

    def __init__(self, model: nn.Module, decay: float = 0.999, warmup: bool = True, ema_buffers: bool = True) -> None:
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"decay must be in [0, 1], got {decay}")
        self.module = copy.deepcopy(model)
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay = float(decay)
        self.warmup = warmup
        self.ema_buffers = ema_buffers
        self.step = 0

    def current_decay(self) -> float:
        if self.warmup:
            return min(self.decay, 1.0 - 1.0 / (self.step + 1))
        return self.decay

    @torch.no_grad()
    def update(self, model: nn.Module, decay: float | None = None) -> None:
        """Move the average towards ``model``'s current weights and buffers."""
        a = self.current_decay() if decay is None else float(decay)
        ema_params = dict(self.module.named_parameters())
        for name, p in model.named_parameters():
            ema_params[name].lerp_(p.detach().to(ema_params[name].dtype), 1.0 - a)
        ema_buffers = dict(self.module.named_buffers())
        for name, b in model.named_buffers():
            e = ema_buffers[name]
            if self.ema_buffers and e.is_floating_point():
                e.lerp_(b.to(e.dtype), 1.0 - a)
            else:
                e.copy_(b)
        self.step += 1

    def state_dict(self) -> dict[str, object]:
        return {"module": self.module.state_dict(), "step": self.step, "decay": self.decay}

    def load_state_dict(self, state: dict[str, object]) -> None:
        self.module.load_state_dict(state["module"])  # type: ignore[arg-type]
        self.step = int(state["step"])  # type: ignore[arg-type]
        self.decay = float(state.get("decay", self.decay))  # type: ignore[arg-type]


def consistency_loss(student_logits: Tensor, teacher_logits: Tensor, task: Task, mask: Tensor | None = None) -> Tensor:
    """Mean-teacher consistency: MSE between student and (detached) teacher probabilities.

    Tarvainen & Valpola 2017 use the squared difference of the predicted class
    probabilities; here sigmoid outputs for ``multi_label`` and softmax for
    ``multi_class``. Feed the student and the EMA teacher differently augmented
    views of the same (typically unlabelled) audio. ``mask`` broadcasts to the
    per-class error.
    """
    check_shapes(student_logits, teacher_logits, "consistency_loss")
    if task == "multi_label":
        s, t = torch.sigmoid(student_logits), torch.sigmoid(teacher_logits.detach())
    elif task == "multi_class":
        s, t = F.softmax(student_logits, dim=-1), F.softmax(teacher_logits.detach(), dim=-1)
    else:
        raise ValueError(f"task must be 'multi_label' or 'multi_class', got {task!r}")
    return masked_mean((s - t).square(), mask)


def sigmoid_rampup(step: float, rampup_steps: float) -> float:
    """``exp(-5 (1 - t)²)`` with ``t = step / rampup_steps`` clipped to [0, 1] (Laine & Aila; Tarvainen & Valpola)."""
    if rampup_steps <= 0:
        return 1.0
    t = min(max(step / rampup_steps, 0.0), 1.0)
    return float(math.exp(-5.0 * (1.0 - t) ** 2))


def linear_rampup(step: float, rampup_steps: float) -> float:
    """``step / rampup_steps`` clipped to [0, 1]."""
    if rampup_steps <= 0:
        return 1.0
    return float(min(max(step / rampup_steps, 0.0), 1.0))


# ----------------------------------------------------------------------------- label enhancing
def enhance_labels(
    targets: Tensor,
    mask: Tensor,
    teacher_probs: Tensor,
    hi: float = 0.9,
    lo: float = 0.1,
    soft: bool = False,
    weight: float = 1.0,
) -> tuple[Tensor, Tensor]:
    """Teacher-student label enhancing with loss masking, for partly labelled data.

    Where a label is observed (``mask > 0``) it is kept as is. Where it is
    missing, the teacher fills it in only when it is confident: ``p > hi``
    gives a positive, ``p < lo`` a negative (with ``soft=True`` the target is
    ``p`` itself instead of 1/0); in between the entry stays masked, so an
    unsure teacher never overrides "unknown" with a guess. Filled entries get
    mask value ``weight`` (< 1 trusts them less than human labels). This is
    confidence-thresholded pseudo-labelling (self-training) applied per label,
    restricted to the missing entries. ``teacher_probs`` are probabilities (apply a
    sigmoid to logits first) with the shape of ``targets``.

    Returns new ``(targets, mask)`` for `masked_bce_with_logits`.
    """
    check_shapes(targets, teacher_probs, "enhance_labels")
    if not 0.0 <= lo <= hi <= 1.0:
        raise ValueError(f"need 0 <= lo <= hi <= 1, got lo={lo}, hi={hi}")
    p = teacher_probs.detach().to(targets.dtype)
    mask = mask.to(targets.dtype).expand_as(targets)
    missing = mask <= 0
    pos, neg = missing & (p > hi), missing & (p < lo)
    filled = pos | neg
    new_t = torch.where(pos, p if soft else torch.ones_like(p), targets)
    new_t = torch.where(neg, p if soft else torch.zeros_like(p), new_t)
    new_m = torch.where(filled, torch.full_like(mask, float(weight)), mask)
    return new_t, new_m


# ----------------------------------------------------------------------------- frame targets
def align_teacher_frames(
    teacher: Tensor,
    teacher_rate: float,
    student_rate: float,
    n_student_frames: int,
    mode: Literal["nearest", "linear"] = "nearest",
    teacher_offset: float = 0.0,
    student_offset: float = 0.0,
) -> tuple[Tensor, Tensor]:
    """Resample teacher frame outputs ``[..., T_t, C]`` to the student's frames ``[..., T_s, C]``.

    Teacher frame ``i`` sits at time ``teacher_offset + i / teacher_rate``
    seconds, student frame ``j`` at ``student_offset + j / student_rate`` (use
    each frame's reference point consistently, e.g. its centre). ``nearest``
    takes the closest teacher frame; ``linear`` interpolates between the two
    around it. Returns ``(aligned, valid)``: ``valid`` ``[T_s]`` (bool) is False
    for student frames outside the teacher's span (they get the edge frame's
    value; mask them out of the loss).
    """
    if teacher.dim() < 2:
        raise ValueError(f"teacher outputs must be [..., time, C], got shape {tuple(teacher.shape)}")
    n_t = teacher.shape[-2]
    device = teacher.device
    t_s = student_offset + torch.arange(n_student_frames, dtype=torch.float64, device=device) / student_rate
    pos = (t_s - teacher_offset) * teacher_rate  # fractional teacher index
    half = 0.5 if mode == "nearest" else 0.0
    tol = 1e-9
    valid = (pos >= -half - tol) & (pos <= (n_t - 1) + half + tol)
    if n_t == 0:
        shape = (*teacher.shape[:-2], n_student_frames, teacher.shape[-1])
        return teacher.new_zeros(shape), torch.zeros(n_student_frames, dtype=torch.bool, device=device)
    if mode == "nearest":
        idx = torch.floor(pos + 0.5).clamp(0, n_t - 1).long()
        return teacher.index_select(-2, idx), valid
    if mode != "linear":
        raise ValueError(f"mode must be 'nearest' or 'linear', got {mode!r}")
    p = pos.clamp(0, n_t - 1)
    i0 = torch.floor(p).long().clamp(0, n_t - 1)
    i1 = (i0 + 1).clamp(max=n_t - 1)
    frac = (p - i0.to(p.dtype)).to(teacher.dtype).unsqueeze(-1)
    out = teacher.index_select(-2, i0) * (1 - frac) + teacher.index_select(-2, i1) * frac
    return out, valid


def align_teacher_windows(
    window_scores: Tensor,
    window_starts: Sequence[int] | Tensor,
    window_frames: int,
    n_student_frames: int,
    mode: Literal["hold", "end"] = "hold",
) -> tuple[Tensor, Tensor]:
    """Clip outputs of a teacher run over sliding windows -> per-student-frame targets, causally.

    ``window_scores`` ``[..., W, C]``: window ``w`` covers student frames
    ``[a_w, a_w + window_frames)`` (``a_w = window_starts[w]``, in student frames;
    convert the teacher's window times with the student's frame rate). Its
    output is assigned to the student frame at its end, ``b_w - 1``: the first
    frame at which a causal student has seen the whole window. With
    ``mode="hold"`` every later frame keeps the latest finished window's value
    until the next one ends (zero-order hold, still causal); with ``"end"``
    only the end frames get targets. Windows ending past the last frame are
    dropped. Returns ``(targets [..., T_s, C], valid [T_s] bool)``; frames
    before the first window ends (or not an end frame, for ``"end"``) are invalid.
    """
    starts = torch.as_tensor(window_starts, dtype=torch.long, device=window_scores.device).reshape(-1)
    if starts.numel() != window_scores.shape[-2]:
        raise ValueError(f"{starts.numel()} window starts for {window_scores.shape[-2]} windows")
    ends = starts + int(window_frames) - 1
    src = torch.full((n_student_frames,), -1, dtype=torch.long, device=window_scores.device)
    order = torch.argsort(ends, stable=True)
    for w in order.tolist():  # later windows ending on the same frame win
        e = int(ends[w])
        if 0 <= e < n_student_frames:
            src[e] = w
    if mode == "hold":
        last = -1
        held = src.tolist()
        for j, w in enumerate(held):
            if w >= 0:
                last = w
            held[j] = last
        src = torch.tensor(held, dtype=torch.long, device=window_scores.device)
    elif mode != "end":
        raise ValueError(f"mode must be 'hold' or 'end', got {mode!r}")
    valid = src >= 0
    out = window_scores.index_select(-2, src.clamp_min(0)) * valid.to(window_scores.dtype).unsqueeze(-1)
    return out, valid
