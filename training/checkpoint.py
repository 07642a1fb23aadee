"""Student checkpoints: the file the trainer writes and the exporter reads.

A checkpoint is a ``torch.save`` of plain data (dicts, lists, strings,
numbers, tensors) so that it loads with ``torch.load(..., weights_only=True)``:
no pickled classes, nothing executable from a user's file. It holds what it
takes to rebuild the student and to write its model card:

- ``format`` / ``version``: ``"edgetag-student"`` / 1;
- ``student``: ``{"kind": ..., "n_bins": ..., "n_labels": ..., "params": {...}}``
  (see `edgetag.training.students.build_student`);
- ``state_dict``: the weights (EMA weights when the trainer keeps them);
- ``frontend``: the full `FrontendConfig` as a dict;
- ``task``, ``labels``, ``thresholds``, ``window_frames`` (window students: the
  window; stateful students: 1, frames per call), ``hop_frames``;
- ``provenance`` and ``metrics``: JSON-able dicts carried into the model card.

The trainer's resumable training state (optimiser, scheduler, step, RNG
states) is kept in separate files by the trainer; this file is the product.
"""

from __future__ import annotations

import contextlib
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from edgetag.runtime.atomic import atomic_write
from edgetag.runtime.frontend import FrontendConfig
from edgetag.training.students import Student, build_student

FORMAT = "edgetag-student"
VERSION = 1


class CheckpointError(ValueError):
    """A student checkpoint that is missing, of another format, or inconsistent."""


@dataclass
class StudentCheckpoint:
    """A trained student and everything needed to export and run it."""

    student: Student
    kind: str
    params: dict[str, Any]
    frontend: FrontendConfig
    task: str
    labels: list[str]
    thresholds: list[float]
    window_frames: int
    hop_frames: int
    provenance: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # A stateful student takes any number of frames per call. Checkpoints before this
        # rule stored their training segment here, which made the engine wait for that
        # many frames (0.94 s for the pitch student) between calls.
        if self.student.streaming_mode != "window":
            self.window_frames = 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "student": {
                "kind": self.kind,
                "n_bins": self.student.n_bins,
                "n_labels": self.student.n_labels,
                "params": dict(self.params),
            },
            "state_dict": {k: v.detach().cpu() for k, v in self.student.state_dict().items()},
            "frontend": self.frontend.to_dict(),
            "task": self.task,
            "labels": list(self.labels),
            "thresholds": [float(t) for t in self.thresholds],
            "window_frames": int(self.window_frames),
            "hop_frames": int(self.hop_frames),
            "provenance": self.provenance,
            "metrics": {k: float(v) for k, v in self.metrics.items()},
        }


def save_checkpoint(checkpoint: StudentCheckpoint, path: str | Path) -> Path:
    """Write atomically (see `edgetag.runtime.atomic`)."""
    data = checkpoint.to_dict()
    return atomic_write(path, lambda handle: torch.save(data, handle))


def load_checkpoint(path: str | Path) -> StudentCheckpoint:
    """Read a student checkpoint safely (``weights_only=True``) and rebuild the student."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    zipped = False
    with contextlib.suppress(OSError), path.open("rb") as f:
        zipped = f.read(4) == b"PK\x03\x04"  # torch.save writes a zip archive
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling errors come in many types
        if not zipped:
            why = ("not a PyTorch file: `edgetag distill` writes its students as .pt checkpoints (student.pt in "
                   "the run folder)")
        elif isinstance(exc, pickle.UnpicklingError):  # torch's advice to drop weights_only is not ours to give
            why = ("it holds Python objects beyond tensors and plain values, which edgetag never unpickles from a "
                   "file (torch.load weights_only=True): not a checkpoint that `edgetag distill` wrote")
        else:
            why = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CheckpointError(f"{path}: not a readable edgetag checkpoint ({why})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an edgetag student checkpoint (no format '{FORMAT}')")
    if data.get("version") != VERSION:
        raise CheckpointError(f"{path}: checkpoint version {data.get('version')} is not supported ({VERSION})")
    try:
        spec = data["student"]
        frontend = FrontendConfig.from_dict(data["frontend"])
        student = build_student(spec["kind"], spec["n_bins"], spec["n_labels"], **spec["params"])
        student.load_state_dict(data["state_dict"], strict=True)
        labels = list(data["labels"])
        if len(labels) != spec["n_labels"] or spec["n_bins"] != frontend.n_bins:
            raise CheckpointError(
                f"{path}: {len(labels)} labels / {frontend.n_bins} front-end bins, but the student "
                f"has {spec['n_labels']} outputs / {spec['n_bins']} input bins"
            )
        return StudentCheckpoint(
            student=student.eval(),
            kind=spec["kind"],
            params=dict(spec["params"]),
            frontend=frontend,
            task=data["task"],
            labels=labels,
            thresholds=[float(t) for t in data["thresholds"]],
            window_frames=int(data["window_frames"]),
            hop_frames=int(data["hop_frames"]),
            provenance=dict(data.get("provenance", {})),
            metrics={k: float(v) for k, v in data.get("metrics", {}).items()},
        )
    except CheckpointError:
        raise
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: inconsistent checkpoint ({exc})") from None
