"""``reference-f0``: pitch targets from an f0 annotation instead of a model.

Where the f0 of a clip is known exactly (a General MIDI render of a score, a synthetic tone), a
model teacher is the worse label: CREPE full, distilled, caps a student at CREPE's own accuracy
and bias. This teacher turns a manifest row's f0 track into the targets CREPE itself was trained
on: over the 360 CREPE bins (`edgetag.runtime.pitch`), a Gaussian of 25 cents standard deviation
centred on the annotated f0, all zeros where the track says unvoiced (0 Hz).

The annotation is the row's ``f0`` field: a ``.npy`` file (float32 Hz, relative to the manifest's
root) sampled every 10 ms at the centres of 1024-sample frames, ``(160 j + 512) / 16000`` s, the
convention of the pitch recipe's renders and tones and of CREPE's frames. A row whose ``score_f0``
is false (a program that does not sound the score's note) or that has no ``f0`` has no reference:
`edgetag teach` skips it, and a trainer that allows partial teachers (``teacher.partial``) takes
that row's targets from its other teachers alone.

It is a `Teacher` so that the cache, its keys (by audio content) and the trainer treat it like any
other; `edgetag teach` asks it for `annotation_scores` rather than running `forward`. Like every
cached output, a reference is keyed by its audio, not by the annotation file: an annotation belongs
to its audio (the recipe's scripts write both together), and rows holding the same audio share one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgetag.runtime.pitch import N_BINS, bin_cents
from edgetag.training.manifest_entry import resolve_under_root

from .base import Teacher, TeacherOutput, register_teacher

#: CREPE's target width (cents): the standard deviation of its Gaussian-blurred one-hot labels.
TARGET_STD_CENTS = 25.0
SAMPLE_RATE = 16000
HOP = 160
FRAME_CENTRE_S = 512 / SAMPLE_RATE


class AnnotationError(ValueError):
    """An f0 annotation that cannot be read or does not fit its audio."""


def f0_targets(f0_hz: np.ndarray, std_cents: float = TARGET_STD_CENTS) -> np.ndarray:
    """``[T]`` f0 (Hz, 0 = unvoiced) -> ``[T, 360]`` float32 Gaussian bin targets (peak 1; rows of zeros unvoiced)."""
    f0 = np.asarray(f0_hz, dtype=np.float64)
    voiced = f0 > 0
    cents = np.where(voiced, 1200.0 * np.log2(np.where(voiced, f0, 1.0) / 10.0), 0.0)
    out = np.exp(-0.5 * ((bin_cents()[None, :] - cents[:, None]) / std_cents) ** 2)
    out[~voiced] = 0.0
    return out.astype(np.float32)


@register_teacher("reference-f0")
class ReferenceF0(Teacher):
    """CREPE-style pitch targets from a row's f0 annotation (see the module's docstring)."""

    name = "reference-f0"
    sample_rate = SAMPLE_RATE
    score_kind = "probabilities"
    task = "multi_label"
    frame_rate = SAMPLE_RATE / HOP
    labels = [f"pitch_bin_{k:03d}" for k in range(N_BINS)]
    embedding_dim = 0
    reads_annotations = True

    def __init__(self, std_cents: float = TARGET_STD_CENTS) -> None:
        super().__init__()
        if not std_cents > 0:
            raise ValueError(f"std_cents must be > 0, got {std_cents!r}")
        self.std_cents = float(std_cents)
        # the target's width is this teacher's only setting: a buffer, so that it is part of the identity
        self.register_buffer("_std", torch.tensor([self.std_cents], dtype=torch.float64))

    def forward(self, waveforms: torch.Tensor) -> TeacherOutput:
        raise TypeError("reference-f0 reads each row's f0 annotation, not its audio: use annotation_scores")

    def num_frames(self, num_samples: int) -> int:
        return 0 if num_samples < 1024 else 1 + (num_samples - 1024) // HOP

    def has_annotation(self, entry: Any) -> bool:
        """Whether the row carries a reference (checked before its audio is decoded)."""
        extra = getattr(entry, "extra", {}) or {}
        return bool(extra.get("f0")) and extra.get("score_f0") is not False

    def annotation_scores(self, entry: Any, root: Path, start: float | None, end: float | None,
                          num_samples: int) -> np.ndarray | None:
        """``[frames, 360]`` targets for the window ``[start, end)`` of ``entry`` (``num_samples`` long at 16 kHz),
        frame 0 centred 32 ms after ``start``; None when the row has no reference."""
        if not self.has_annotation(entry):
            return None
        extra = entry.extra
        path = resolve_under_root(Path(root), str(extra["f0"]))  # a manifest cannot point outside its root
        try:
            track = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise AnnotationError(f"{entry.path}: cannot read its f0 annotation {path}: {e}") from None
        if track.ndim != 1 or not np.all(np.isfinite(track)) or (track < 0).any():
            raise AnnotationError(f"{entry.path}: {path} must be a 1-D array of f0 values >= 0 Hz")
        first = int(round((start or 0.0) * SAMPLE_RATE / HOP))  # annotation frame of this window's frame 0
        if start is not None and abs(first * HOP - start * SAMPLE_RATE) > 1:
            raise AnnotationError(f"{entry.path}: window start {start} s is not on the annotation's 10 ms grid")
        n = self.num_frames(num_samples)
        piece = track[first:first + n]
        if len(piece) < n:  # the annotation ends before the audio: the rest is unknown, not unvoiced
            n = len(piece)
        return f0_targets(piece[:n], self.std_cents)
