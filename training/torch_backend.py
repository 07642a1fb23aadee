"""A PyTorch checkpoint backend, for debugging a student before export.

`TorchModel` opens a student checkpoint (`edgetag.training.checkpoint`) and
has the interface of `edgetag.runtime.model.OnnxModel` (``card``,
``initial_state``, ``run``, ``scores``), so the engine, ``edgetag tag`` and
``edgetag listen`` run it unchanged. The runtime never imports this module:
`CheckpointLoader` is plugged into `edgetag.runtime.model.load_any_model`
through the ``edgetag.model_loaders`` entry point (pyproject.toml), and
torch is imported only when a checkpoint is opened.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from edgetag.runtime.formats import FORMATS
from edgetag.runtime.model_card import ModelCard, StateTensor, scores_from_logits


class TorchModel:
    """A student checkpoint run with torch (CPU, float32, no grad)."""

    backend = "torch"

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        try:
            import torch  # noqa: F401

            from edgetag.training.checkpoint import load_checkpoint
        except ImportError as exc:
            raise ImportError(
                f"{path} is a PyTorch checkpoint: running it needs torch and edgetag's training "
                "package (or export it to ONNX first)"
            ) from exc
        if threads is not None:
            torch.set_num_threads(threads)
        self._open(load_checkpoint(Path(path)), Path(path))

    @classmethod
    def from_checkpoint(cls, ckpt: Any, path: str | Path = "checkpoint") -> TorchModel:
        """A model around a checkpoint already loaded (`edgetag.training.checkpoint.load_checkpoint`)."""
        model = cls.__new__(cls)
        model._open(ckpt, Path(path))
        return model

    def _open(self, ckpt: Any, path: Path) -> None:
        import torch

        self._torch = torch
        self.path = path
        self.student = ckpt.student.eval()
        specs = self.student.state_specs()
        self.card = ModelCard(
            name=f"{ckpt.kind} (checkpoint {self.path.name})",
            task=ckpt.task,  # type: ignore[arg-type]
            labels=tuple(ckpt.labels),
            frontend=ckpt.frontend,
            streaming_mode=self.student.streaming_mode,
            window_frames=ckpt.window_frames,
            hop_frames=ckpt.hop_frames,
            thresholds=tuple(ckpt.thresholds),
            states=tuple(StateTensor(s.name, tuple(s.shape)) for s in specs),
            provenance=dict(ckpt.provenance),
            metrics=dict(ckpt.metrics),
            parameters=sum(p.numel() for p in self.student.parameters()),
        )

    def initial_state(self, batch: int = 1) -> list[np.ndarray]:
        return [np.zeros((batch, *s.shape), np.float32) for s in self.card.states]

    def run(self, features: np.ndarray, states: list[np.ndarray] | None = None):
        torch = self._torch
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(features, np.float32))
            if self.card.streaming_mode == "window":
                return self.student(x).numpy(), []
            if states is None:
                states = self.initial_state(features.shape[0])
            logits, new_states = self.student.forward_stream(x, *[torch.from_numpy(s) for s in states])
            return logits.numpy(), [s.numpy() for s in new_states]

    def scores(self, logits: np.ndarray) -> np.ndarray:
        """Logits -> scores as the card's task says (see `scores_from_logits`)."""
        return scores_from_logits(logits, self.card.task)


class CheckpointLoader:
    """The runtime's model-loader plug-in for student checkpoints (see `edgetag.runtime.model.ModelLoader`)."""

    backend = "torch"
    suffixes = FORMATS["checkpoint"].suffixes

    @staticmethod
    def load(path: str | Path, threads: int | None = None) -> TorchModel:
        return TorchModel(path, threads=threads)
