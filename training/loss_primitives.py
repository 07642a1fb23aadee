"""The tensor pieces the losses of `edgetag.training.losses` are built from: the masked mean (how a
mask weighs entries, see "Masks" there), teacher scores tempered into log-probabilities or logits,
the shape check, and the rows, weights and pairwise distances of the embedding regularisers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor
from torch.nn import functional as F

ScoreKind = Literal["logits", "probabilities"]

#: Probabilities are clamped to [EPS, 1 - EPS] before a log or a logit.
EPS = 1e-6


def masked_mean(values: Tensor, mask: Tensor | None = None) -> Tensor:
    """``sum(values * mask) / sum(mask)``; 0 (attached to the graph) when the mask is all zero.

    ``mask`` broadcasts to ``values``; None means every entry counts.
    """
    if mask is None:
        return values.mean() if values.numel() else values.sum()
    mask = mask.to(values.dtype).expand_as(values)
    total = mask.sum()
    # where() keeps the result finite even if values are inf/NaN at masked entries.
    weighted = torch.where(mask > 0, values * mask, torch.zeros_like(values)).sum()
    # An all-zero mask gives 0 / tiny = 0 (no data-dependent branch, no GPU sync).
    return weighted / total.clamp_min(torch.finfo(values.dtype).tiny)


def check_shapes(a: Tensor, b: Tensor, what: str) -> None:
    """Raise ValueError, naming ``what``, unless ``a`` and ``b`` have the same shape."""
    if a.shape != b.shape:
        raise ValueError(f"{what}: shapes differ, {tuple(a.shape)} vs {tuple(b.shape)}")


def teacher_log_probs(teacher: Tensor, kind: ScoreKind = "logits", temperature: float = 1.0, dim: int = -1) -> Tensor:
    """Log of the tempered teacher distribution ``softmax(z / T)``.

    From logits ``z`` directly; from probabilities ``p`` with ``z = log(clamp(p))``
    (a softmax's logits up to a constant, which softmax ignores), so
    ``softmax(log p / T)`` is ``p ** (1/T)`` renormalised, and a zero
    probability gives a finite log instead of ``-inf``.
    """
    if kind == "probabilities":
        teacher = torch.log(teacher.clamp(EPS, 1.0))
    elif kind != "logits":
        raise ValueError(f"teacher kind must be 'logits' or 'probabilities', got {kind!r}")
    return F.log_softmax(teacher / temperature, dim=dim)


def teacher_tempered_logits(teacher: Tensor, kind: ScoreKind = "logits", temperature: float = 1.0) -> Tensor:
    """``z / T`` for independent sigmoids; probabilities go through ``logit(clamp(p))`` first."""
    if kind == "probabilities":
        p = teacher.clamp(EPS, 1.0 - EPS)
        teacher = torch.log(p) - torch.log1p(-p)
    elif kind != "logits":
        raise ValueError(f"teacher kind must be 'logits' or 'probabilities', got {kind!r}")
    return teacher / temperature


def as_list(x: Tensor | Sequence[Tensor]) -> list[Tensor]:
    """One teacher's tensor or several, as a list."""
    return [x] if isinstance(x, Tensor) else list(x)


def teacher_weights(weights: float | Sequence[float] | None, n: int) -> list[float]:
    """One weight per teacher: 1 each for None, a number for all, or one per teacher (checked)."""
    if weights is None:
        return [1.0] * n
    if isinstance(weights, (int, float)):
        return [float(weights)] * n
    w = [float(v) for v in weights]
    if len(w) != n:
        raise ValueError(f"{len(w)} weights for {n} teachers")
    return w


def flat_rows(emb: Tensor, mask: Tensor | None) -> Tensor:
    """Flatten leading dimensions to rows ``[N, D]``, keeping rows with ``mask > 0``."""
    flat = emb.reshape(-1, emb.shape[-1])
    if mask is not None:
        flat = flat[mask.reshape(-1).to(torch.bool)]
    return flat


def pool_time(emb: Tensor, like: Tensor) -> Tensor:
    """Mean over time of ``[B, T, D]`` when ``like`` is ``[B, D']`` (clip student, frame teacher)."""
    if emb.dim() == like.dim() + 1 and emb.dim() >= 3:
        return emb.mean(dim=-2)
    return emb


def pairwise_distances(x: Tensor, metric: Literal["euclidean", "cosine"] = "euclidean") -> Tensor:
    """``[N, D]`` -> ``[N, N]`` distances, with finite gradients at zero distance."""
    if metric == "cosine":
        xn = F.normalize(x, dim=-1, eps=1e-8)
        return 1.0 - xn @ xn.T
    if metric != "euclidean":
        raise ValueError(f"metric must be 'euclidean' or 'cosine', got {metric!r}")
    sq = (x.unsqueeze(0) - x.unsqueeze(1)).square().sum(-1)
    return torch.sqrt(sq.clamp_min(1e-12))


def normalised_distances(x: Tensor, metric: Literal["euclidean", "cosine"]) -> tuple[Tensor, Tensor]:
    """`pairwise_distances` divided by their mean off the diagonal, and the off-diagonal mask."""
    d = pairwise_distances(x, metric)
    off = ~torch.eye(len(x), dtype=torch.bool, device=x.device)
    scale = d[off].mean().clamp_min(1e-8)
    return d / scale, off
