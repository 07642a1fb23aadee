"""The teacher interface and the registry of named teachers.

A teacher maps a batch of mono waveforms at its own sample rate to outputs at a
declared rate: label scores (probabilities or logits) per frame or per window,
and an embedding from a chosen layer. Every output is shaped ``[batch, time,
...]``; a clip-level teacher (one score vector per analysis window) reports
its windows as time steps at ``frame_rate`` windows per second.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch


@dataclass
class TeacherOutput:
    """What one forward pass of a teacher returns."""

    scores: torch.Tensor
    """[batch, time, n_labels]: probabilities or logits, as ``Teacher.score_kind`` says."""
    embeddings: torch.Tensor | None
    """[batch, time, embedding_dim] from the teacher's embedding layer, or None."""


class Teacher(torch.nn.Module, ABC):
    """A pretrained model whose outputs a student learns from."""

    #: Registry name (e.g. ``crepe-full``, ``musicnn-mtt``).
    name: str
    #: Input sample rate in Hz; callers resample before `forward`.
    sample_rate: int
    #: ``probabilities`` (already through sigmoid/softmax) or ``logits``.
    score_kind: Literal["probabilities", "logits"]
    #: ``multi_label`` (independent sigmoids) or ``multi_class`` (one softmax).
    task: Literal["multi_label", "multi_class"]
    #: Output time steps per second of input audio.
    frame_rate: float
    #: One name per score column.
    labels: list[str]
    #: Width of `TeacherOutput.embeddings` (0 if the teacher has none).
    embedding_dim: int

    @abstractmethod
    def forward(self, waveforms: torch.Tensor) -> TeacherOutput:
        """waveforms: float32 [batch, samples] at `sample_rate`, values in [-1, 1]."""

    def num_frames(self, num_samples: int) -> int:
        """Output time steps for an input of ``num_samples`` samples."""
        raise NotImplementedError

    def weights_hash(self) -> str:
        """SHA-256 over the parameters and buffers: the identity of the weights."""
        digest = hashlib.sha256()
        for key, tensor in sorted(self.state_dict().items()):
            digest.update(key.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        return digest.hexdigest()

    def identity(self) -> str:
        """Name plus weights hash: what a cache of this teacher's outputs is keyed by."""
        return f"{self.name}@{self.weights_hash()[:16]}"


TeacherFactory = Callable[..., Teacher]
_REGISTRY: dict[str, TeacherFactory] = {}


def register_teacher(name: str) -> Callable[[TeacherFactory], TeacherFactory]:
    """Decorator: make a factory available as ``get_teacher(name, ...)``."""

    def add(factory: TeacherFactory) -> TeacherFactory:
        if name in _REGISTRY:
            raise ValueError(f"teacher {name!r} is registered twice")
        _REGISTRY[name] = factory
        return factory

    return add


def known_teachers() -> list[str]:
    """Registered teacher names, sorted."""
    return sorted(_REGISTRY)


def get_teacher(name: str, **kwargs: object) -> Teacher:
    """Build the teacher registered as ``name``; an unknown name lists the known ones."""
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown teacher {name!r}; known teachers: {', '.join(known_teachers()) or 'none'}") from None
    return factory(**kwargs)
