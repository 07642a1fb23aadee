"""The trainer's product: ``student.pt``, the trained student (EMA weights when kept) as a
`StudentCheckpoint` with its front end, labels, decision hop and provenance."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from edgetag.training.checkpoint import StudentCheckpoint, save_checkpoint
from edgetag.training.config import TrainConfig
from edgetag.training.students import build_student, count_parameters
from edgetag.training.train_data import TrainData
from edgetag.training.train_model import TrainModel
from torch import nn


def export_student(config: TrainConfig, data: TrainData, model: TrainModel) -> nn.Module:
    """A fresh CPU student (no DDP or global batch norm) holding the trained weights, in eval mode."""
    export_model = build_student(model.kind or config.student.kind, data.frontend.n_bins, len(data.labels), **model.params)
    export_model.load_state_dict({k: v.detach().cpu() for k, v in model.averaged.state_dict().items()})
    export_model.eval()
    return export_model


def save_product(config: TrainConfig, data: TrainData, model: TrainModel, export_model: nn.Module, digest: str,
                 world: int, final_metrics: dict[str, float], path: Path) -> Path:
    """Write ``export_model`` as the run's `StudentCheckpoint` at ``path``."""
    d, o = config.data, config.optim
    ckpt = StudentCheckpoint(
        student=export_model,
        kind=model.kind or config.student.kind,
        params=model.params,
        frontend=data.frontend,
        task=d.task,
        labels=data.labels,
        thresholds=[0.5] * len(data.labels),
        window_frames=data.window,  # StudentCheckpoint makes it 1 (frames per call) for a stateful student
        hop_frames=1 if model.frame_mode else _decision_hop(config, data.frontend, data.window, model.record),
        provenance={
            "method": config.method,
            "teachers": [tr.identity for tr in data.train.score_tracks],
            "embedding_teachers": [tr.identity for tr in data.train.embedding_tracks],
            # the manifest's name, not its path on the training machine: its digest says which file it was
            "data": {"manifest": Path(d.manifest).name, "manifest_sha256": data.manifest_sha256, "train_split": d.train_split,
                     "train_entries": len(data.train)},
            "training_config_sha256": digest,
            "steps": o.steps,
            "ema": model.ema is not None,
            "parameters": count_parameters(export_model),
            "trainable_parameters": model.trainable_parameters,
            "world_size": world,
            # the base methods: which student was reprogrammed / fine-tuned, and what was trained around it
            **({"reprogram": model.record} if model.record is not None else {}),
        },
        metrics={k: v for k, v in final_metrics.items() if isinstance(v, (int, float)) and math.isfinite(v)},
    )
    return save_checkpoint(ckpt, path)


def _decision_hop(config: TrainConfig, frontend: Any, window: int, record: dict[str, Any] | None = None) -> int:
    """Frames between a window student's decisions: ``student.decision_seconds``, else the base's
    (reprogram, finetune), else half a window."""
    seconds = config.student.decision_seconds
    if seconds is None and record is not None:
        return int(record["base_hop_frames"])
    if seconds is None:
        return max(1, window // 2)
    return max(1, round(seconds * frontend.frame_rate))
