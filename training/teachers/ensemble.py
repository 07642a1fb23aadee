"""Ensembles of teachers: a weighted mean of scores and the concatenation of embeddings.

``EnsembleTeacher(teachers, weights)`` (registered as ``ensemble``:
``get_teacher("ensemble", members=["musicnn-mtt", "musicnn-msd"], weights=[0.5, 0.5], labels="union")``)
runs every member on the same waveforms and combines:

* **scores**: the weighted mean, per label column, of the members' scores.
  All members must have the same ``score_kind`` (a mean of probabilities, or a
  mean of logits; mixing the two is refused, since averaging a probability
  with a logit means nothing) and the same ``task``. Weights are
  non-negative, not all zero, and normalised to sum to 1 (default: equal).
* **embeddings**: the members' embeddings concatenated along the last axis, in
  member order (members without embeddings contribute nothing; None if no
  member has any). ``embedding_slices`` says which columns came from whom.
* **sample rate**: all members must share it (the ensemble takes one waveform).

Labels (``labels=``)
--------------------
* ``"same"`` (default): every member must have the same labels in the same order.
* ``"union"``: the ensemble's labels are the union of the members' labels, in
  order of first appearance (member order, then each member's column order).
  A column's score is the weighted mean over the members **that have that
  label**, with their weights renormalised over those members; so a label only
  one member knows gets exactly that member's score. ``label_sources[j]``
  lists the members that supply column ``j``.
* ``"intersection"``: only the labels every member has, in the first member's order.
* ``label_maps``: one mapping per member (or None), applied before the above,
  renaming a member's labels to the ensemble's vocabulary (e.g. MTT's
  ``"female"`` -> MSD's ``"female vocalists"``). Two labels of one member that
  map to the same name are refused. Names are compared exactly (case-sensitive).

Example: musicnn-mtt and musicnn-msd have different tag sets (MagnaTagATune's
top 50 and the Million Song Dataset's top 50); exactly 8 names are shared
(``guitar, electronic, rock, ambient, pop, dance, country, metal``). With
``labels="union"`` their ensemble has 92 columns: those 8 are the weighted mean
of both taggers, the other 84 come from the one tagger that knows them. With
``labels="intersection"`` it has the 8 shared columns only.

Frame rates (``frame_rates=``)
------------------------------
* ``"equal"`` (default): all members must declare the same ``frame_rate``.
  If their frame counts still differ (e.g. same hop, different windows), the
  output is cut to the shortest (``num_frames`` is the minimum).
* ``"nearest"``: the output runs at the first member's frame rate and frame
  count; other members are resampled by nearest frame *start time*: output
  frame ``i`` (starting at ``i / r0`` seconds) takes member frame
  ``round(i * r_m / r0)``, clamped to the member's last frame. This assumes
  every member's frame 0 starts at sample 0 (true of the window-based
  teachers here). A member with no frames while the reference has some is an error.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import torch
from torch import Tensor, nn

from .base import Teacher, TeacherOutput, get_teacher, register_teacher

LabelPolicy = Literal["same", "union", "intersection"]
FrameRatePolicy = Literal["equal", "nearest"]


class EnsembleTeacher(Teacher):
    """A weighted ensemble of teachers; see the module docstring.

    Args:
        teachers: the members (built `Teacher` objects).
        weights: one non-negative weight per member (normalised to sum 1); default equal.
        labels: ``"same"``, ``"union"`` or ``"intersection"``.
        label_maps: per member, None or a mapping from its label names to ensemble names.
        frame_rates: ``"equal"`` or ``"nearest"``.
        name: registry name reported by ``.name`` (default ``ensemble(a*w+b*w)``).
    """

    def __init__(
        self,
        teachers: Sequence[Teacher],
        weights: Sequence[float] | None = None,
        *,
        labels: LabelPolicy = "same",
        label_maps: Sequence[Mapping[str, str] | None] | None = None,
        frame_rates: FrameRatePolicy = "equal",
        name: str | None = None,
    ) -> None:
        super().__init__()
        members = list(teachers)
        if not members:
            raise ValueError("an ensemble needs at least one teacher")
        for t in members:
            if not isinstance(t, Teacher):
                raise TypeError(f"ensemble members must be Teacher objects, got {type(t).__name__}")
        if weights is None:
            weights = [1.0] * len(members)
        weights = [float(w) for w in weights]
        if len(weights) != len(members):
            raise ValueError(f"{len(weights)} weights for {len(members)} teachers")
        if any(w < 0 or math.isnan(w) for w in weights) or sum(weights) <= 0:
            raise ValueError(f"weights must be non-negative and not all zero, got {weights}")
        if labels not in ("same", "union", "intersection"):
            raise ValueError(f"labels must be 'same', 'union' or 'intersection', got {labels!r}")
        if frame_rates not in ("equal", "nearest"):
            raise ValueError(f"frame_rates must be 'equal' or 'nearest', got {frame_rates!r}")
        names = [t.name for t in members]

        kinds = {t.score_kind for t in members}
        if len(kinds) > 1:
            detail = ", ".join(f"{t.name}: {t.score_kind}" for t in members)
            raise ValueError(f"cannot average probabilities with logits ({detail}); use members of one score_kind")
        tasks = {t.task for t in members}
        if len(tasks) > 1:
            raise ValueError(f"members mix tasks ({', '.join(f'{t.name}: {t.task}' for t in members)})")
        rates = {t.sample_rate for t in members}
        if len(rates) > 1:
            detail = ", ".join(f"{t.name}: {t.sample_rate} Hz" for t in members)
            raise ValueError(f"members expect different sample rates ({detail}); an ensemble takes one waveform")
        frame_rate_set = {float(t.frame_rate) for t in members}
        if frame_rates == "equal" and len(frame_rate_set) > 1:
            detail = ", ".join(f"{t.name}: {t.frame_rate:g}/s" for t in members)
            raise ValueError(f"members have different frame rates ({detail}); pass frame_rates='nearest' to resample")

        self.members = nn.ModuleList(members)
        total = sum(weights)
        self.weights = [w / total for w in weights]
        self.label_policy: LabelPolicy = labels
        self.frame_rate_policy: FrameRatePolicy = frame_rates
        self.sample_rate = members[0].sample_rate
        self.score_kind = members[0].score_kind
        self.task = members[0].task
        self.frame_rate = float(members[0].frame_rate)
        self.name = name or "ensemble(" + "+".join(f"{n}*{w:g}" for n, w in zip(names, self.weights)) + ")"

        member_labels = self._mapped_labels(members, label_maps)
        self.labels, self.label_sources, self._columns, self._mix = self._combine_labels(members, member_labels)

        self.embedding_slices: list[tuple[int, int] | None] = []
        start = 0
        for t in members:
            dim = int(getattr(t, "embedding_dim", 0) or 0)
            self.embedding_slices.append((start, start + dim) if dim else None)
            start += dim
        self.embedding_dim = start

    @staticmethod
    def _mapped_labels(
        members: Sequence[Teacher], label_maps: Sequence[Mapping[str, str] | None] | None
    ) -> list[list[str]]:
        if label_maps is None:
            label_maps = [None] * len(members)
        if len(label_maps) != len(members):
            raise ValueError(f"{len(label_maps)} label maps for {len(members)} teachers")
        result = []
        for t, mapping in zip(members, label_maps):
            if mapping is not None:
                unknown = sorted(set(mapping) - set(t.labels))
                if unknown:
                    raise ValueError(f"label map for {t.name} renames labels it does not have: {unknown[:8]}")
            renamed = [mapping.get(x, x) if mapping else x for x in t.labels]
            if len(set(renamed)) != len(renamed):
                dupes = sorted({x for x in renamed if renamed.count(x) > 1})
                raise ValueError(f"{t.name}: labels collide after mapping: {dupes[:8]}")
            result.append(renamed)
        return result

    def _combine_labels(
        self, members: Sequence[Teacher], member_labels: list[list[str]]
    ) -> tuple[list[str], list[list[str]], list[Tensor], Tensor]:
        """Ensemble labels, per-label sources, per-member column index and the [members, labels] weight matrix."""
        if self.label_policy == "same":
            first = member_labels[0]
            for t, lab in zip(members[1:], member_labels[1:]):
                if lab != first:
                    only_a = [x for x in first if x not in lab][:5]
                    only_b = [x for x in lab if x not in first][:5]
                    raise ValueError(
                        f"label sets differ: {members[0].name} ({len(first)} labels) vs {t.name} ({len(lab)}); "
                        f"e.g. only in the first {only_a}, only in the second {only_b}"
                        + (" (same names, different order)" if not only_a and not only_b else "")
                        + "; pass labels='union' or 'intersection', or label_maps="
                    )
            out = list(first)
        elif self.label_policy == "union":
            out, seen = [], set()
            for lab in member_labels:
                for x in lab:
                    if x not in seen:
                        seen.add(x)
                        out.append(x)
        else:
            common = set(member_labels[0]).intersection(*map(set, member_labels[1:]))
            out = [x for x in member_labels[0] if x in common]
            if not out:
                raise ValueError(f"members share no label names ({', '.join(t.name for t in members)})")
        index = {x: j for j, x in enumerate(out)}
        columns, sources = [], [[] for _ in out]
        mix = torch.zeros(len(members), len(out), dtype=torch.float64)
        for m, (t, lab) in enumerate(zip(members, member_labels)):
            cols = [index.get(x, -1) for x in lab]
            columns.append(torch.tensor(cols, dtype=torch.long))
            for c in cols:
                if c >= 0:
                    sources[c].append(t.name)
                    mix[m, c] = self.weights[m]
        totals = mix.sum(dim=0)
        if bool((totals == 0).any()):
            orphans = [out[j] for j in torch.nonzero(totals == 0).flatten().tolist()][:8]
            raise ValueError(f"labels {orphans} come only from members with weight 0")
        mix = (mix / totals).float()
        return out, sources, columns, mix

    def num_frames(self, num_samples: int) -> int:
        """Reference (first member's) frames under ``"nearest"``; the members' minimum under ``"equal"``."""
        if self.frame_rate_policy == "nearest":
            return self.members[0].num_frames(num_samples)
        return min(t.num_frames(num_samples) for t in self.members)

    def _align(self, x: Tensor, member_rate: float, frames: int, member_name: str) -> Tensor:
        """Member output ``[batch, T_m, ...]`` -> ``[batch, frames, ...]`` (cut, or nearest-frame resampled)."""
        if self.frame_rate_policy == "equal":
            return x[:, :frames]
        if frames == 0:
            return x[:, :0]
        if x.shape[1] == 0:
            raise ValueError(f"{member_name} produced no frames while the ensemble needs {frames}")
        idx = torch.round(torch.arange(frames, dtype=torch.float64) * (member_rate / self.frame_rate)).long()
        idx = idx.clamp_(max=x.shape[1] - 1).to(x.device)
        return x.index_select(1, idx)

    def forward(self, waveforms: Tensor) -> TeacherOutput:
        """Run every member on ``waveforms`` ``[batch, samples]`` and combine (see the module docstring)."""
        outputs = [t(waveforms) for t in self.members]
        if self.frame_rate_policy == "nearest":
            frames = outputs[0].scores.shape[1]
        else:
            frames = min(o.scores.shape[1] for o in outputs)
        batch = waveforms.shape[0]
        scores = waveforms.new_zeros(batch, frames, len(self.labels))
        embeddings = []
        mix = self._mix.to(waveforms.device)
        for m, (t, out) in enumerate(zip(self.members, outputs)):
            s = self._align(out.scores.float(), float(t.frame_rate), frames, t.name)
            cols = self._columns[m].to(waveforms.device)
            keep = cols >= 0
            target = cols[keep]
            scores[..., target] += s[..., keep] * mix[m, target]
            if out.embeddings is not None and self.embedding_slices[m] is not None:
                embeddings.append(self._align(out.embeddings.float(), float(t.frame_rate), frames, t.name))
        return TeacherOutput(scores=scores, embeddings=torch.cat(embeddings, dim=-1) if embeddings else None)

    def weights_hash(self) -> str:
        """SHA-256 over the members' weight hashes, the weights and the policies."""
        digest = hashlib.sha256()
        for t, w in zip(self.members, self.weights):
            digest.update(f"{t.name}@{t.weights_hash()}*{w!r};".encode())
        digest.update(f"{self.label_policy};{self.frame_rate_policy};{self.labels}".encode())
        return digest.hexdigest()

    def extra_repr(self) -> str:
        return f"weights={self.weights}, labels={self.label_policy!r}, frame_rates={self.frame_rate_policy!r}"


@register_teacher("ensemble")
def ensemble_teacher(
    members: Sequence[str | Teacher] | None = None,
    weights: Sequence[float] | None = None,
    member_kwargs: Sequence[Mapping[str, Any] | None] | None = None,
    **kwargs: Any,
) -> EnsembleTeacher:
    """``get_teacher("ensemble", members=[name or Teacher, ...], weights=[...], labels=..., ...)``.

    ``members``: registry names (built with ``get_teacher(name, **member_kwargs[i])``)
    or already-built teachers. Other keywords go to `EnsembleTeacher`.
    """
    if not members:
        raise ValueError("ensemble needs members=[teacher names or Teacher objects]")
    if member_kwargs is None:
        member_kwargs = [None] * len(members)
    if len(member_kwargs) != len(members):
        raise ValueError(f"{len(member_kwargs)} member_kwargs for {len(members)} members")
    built = [
        m if isinstance(m, Teacher) else get_teacher(m, **dict(kw or {}))
        for m, kw in zip(members, member_kwargs)
    ]
    return EnsembleTeacher(built, weights, **kwargs)
