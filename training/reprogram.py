"""Reprogramming: a new label set learnt around a frozen pretrained student.

After Chen & Lerch, "Music Instrument Classification Reprogrammed" (MMM 2023):
a pretrained model is kept as it is, and only two small parts learn the new
task, an input transform in front of it and an output mapping behind it.
Here the pretrained model is an edgetag student (any kind, window or
stateful), read from its ``student.pt`` with ``torch.load(..., weights_only=True)``.

`ReprogrammedStudent` is itself a student (kind ``"reprogrammed"`` in
`edgetag.training.students.STUDENTS`): its checkpoint holds the base
student's spec and weights beside the transform and the mapping, so
``edgetag export`` writes it like any student, streaming states included.

    features -> standardise (the new data's moments) -> transform -> the base's own
    scale -> frozen base student -> logits or embedding -> linear mapping -> new logits

Transforms (`InputTransform`), each starting as the identity so that training
starts from the base's own view of the audio:

- ``affine``: a gain and a shift per band (2 x n_bins parameters);
- ``conv``: affine plus a residual two-layer convolution over the
  [frames x bands] image (its output layer starts at zero); a stateful
  student's transform sees one frame at a time, so streaming needs no state;
- ``additive``: affine plus one learnt value per frame and band of the
  window (the "trainable noise" of adversarial reprogramming): window students;
- ``none``: the standardised features as they are (a linear probe).

``method = "reprogram"`` freezes the base (``requires_grad`` off, batch norms
kept in eval mode, so its weights and running statistics end bit-identical)
and refuses more than ``reprogram.max_trainable_parameters`` trainable
parameters. ``method = "finetune"`` builds the same model and trains all of it.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from edgetag.training.config import ConfigError, TrainConfig
from edgetag.training.students import STUDENTS, Student, build_student

log = logging.getLogger(__name__)

__all__ = ["BaseStudent", "InputTransform", "ReprogrammedStudent", "build_reprogrammed", "load_base",
           "trainable_parameters"]

TRANSFORMS = ("none", "affine", "conv", "additive")
HEAD_INPUTS = ("logits", "embedding")


class InputTransform(nn.Module):
    """A learnt map of standardised features [batch, frames, n_bins] onto themselves; the identity at start."""

    def __init__(self, n_bins: int, window_frames: int | None, kind: str = "conv", channels: int = 8,
                 kernel: list[int] | tuple[int, int] | None = None) -> None:
        super().__init__()
        if kind not in TRANSFORMS:
            raise ValueError(f"unknown transform {kind!r}; known: {', '.join(TRANSFORMS)}")
        self.kind = kind
        if kind == "none":
            return
        # gain around 1 (weight decay pulls it back to the identity, not to zero)
        self.gain = nn.Parameter(torch.zeros(n_bins))
        self.shift = nn.Parameter(torch.zeros(n_bins))
        if kind == "conv":
            kt, kf = kernel if kernel is not None else ((3, 5) if window_frames is not None else (1, 5))
            self.kernel = [int(kt), int(kf)]
            if kt % 2 == 0 or kf % 2 == 0:
                raise ValueError(f"conv kernel sizes must be odd, got {[kt, kf]}")
            if window_frames is None and kt != 1:
                raise ValueError(f"a stateful student streams frame by frame: its conv transform must span 1 frame, "
                                 f"got {kt} (kernel [1, {kf}])")
            self.conv_in = nn.Conv2d(1, channels, (kt, kf), padding=(kt // 2, kf // 2))
            self.conv_out = nn.Conv2d(channels, 1, 1)
            nn.init.zeros_(self.conv_out.weight)
            nn.init.zeros_(self.conv_out.bias)
        elif kind == "additive":
            if window_frames is None:
                raise ValueError("the additive transform learns one value per frame of a window: "
                                 "it needs a window student (use affine or conv for a stateful one)")
            self.delta = nn.Parameter(torch.zeros(window_frames, n_bins))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if self.kind == "none":
            return z
        z = z * (1.0 + self.gain) + self.shift
        if self.kind == "conv":
            z = z + self.conv_out(F.relu(self.conv_in(z.unsqueeze(1)))).squeeze(1)
        elif self.kind == "additive":
            z = z + self.delta
        return z


class ReprogrammedStudent(Student):
    """A base student between a learnt input transform and a learnt linear output mapping.

    ``base`` is the base's spec as a checkpoint stores it: ``{"kind", "n_labels", "params"}``;
    ``transform`` the keyword arguments of `InputTransform` (``kind``, ``channels``, ``kernel``).
    The output mapping is named ``classifier`` like every student's last layer, so the
    exporter's ``embedding`` output is what it reads (the base's logits or embedding).
    """

    def __init__(self, n_bins: int, n_labels: int, base: dict[str, Any], transform: dict[str, Any] | None = None,
                 head_input: str = "logits") -> None:
        super().__init__(n_bins, n_labels)
        if head_input not in HEAD_INPUTS:
            raise ValueError(f"head_input must be one of {', '.join(HEAD_INPUTS)}, got {head_input!r}")
        self.base = build_student(str(base["kind"]), n_bins, int(base["n_labels"]), **dict(base.get("params", {})))
        self.streaming_mode = self.base.streaming_mode
        window = int(self.base.window_frames) if self.streaming_mode == "window" else None
        if window is not None:
            self.window_frames = window
        self.transform = InputTransform(n_bins, window, **dict(transform or {}))
        if head_input == "embedding":
            # Every student ends in `classifier`; without it, forward / forward_stream return its input.
            width = int(self.base.embedding_dim)
            self.base.classifier = nn.Identity()
        else:
            width = int(self.base.n_labels)
        self.head_input = head_input
        self.embedding_dim = width
        self.classifier = nn.Linear(width, n_labels)
        self.frozen = False

    def freeze_base(self) -> None:
        """No gradient into the base, and its batch norms in eval mode for good (see `train`)."""
        for p in self.base.parameters():
            p.requires_grad_(False)
        self.frozen = True
        self.base.eval()

    def train(self, mode: bool = True) -> ReprogrammedStudent:
        super().train(mode)
        if self.frozen:  # running statistics of a frozen base must not move
            self.base.eval()
        return self

    def normalise(self, features: torch.Tensor) -> torch.Tensor:
        """Standardised with the wrapper's moments, after the base's level normalisation when it has one
        (`Student.level_normalised` with the base's reference: the transform sees what the base was trained on)."""
        if getattr(self.base, "level_normalise", False):
            features = self.base.level_normalised(features)
        return (features - self.feature_mean) / self.feature_std

    def _base_input(self, features: torch.Tensor) -> torch.Tensor:
        # The transform works on standardised features; the base standardises with its own moments again.
        z = self.transform(self.normalise(features))
        return z * self.base.feature_std + self.base.feature_mean

    def state_specs(self) -> list[Any]:
        return self.base.state_specs()

    def embed(self, features: torch.Tensor) -> torch.Tensor:
        """What the output mapping reads: the base's logits or embedding ([batch, D] or [batch, frames, D])."""
        return self.base(self._base_input(features))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embed(features))

    def forward_stream(self, features: torch.Tensor, *states: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        out, new_states = self.base.forward_stream(self._base_input(features), *states)
        return self.classifier(out), new_states


STUDENTS["reprogrammed"] = ReprogrammedStudent


def trainable_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# ------------------------------------------------------------------------------ the trainer's side
@dataclass
class BaseStudent:
    """The pretrained student a base method starts from, checked against the config."""

    path: Path
    sha256: str
    checkpoint: Any
    """Its `edgetag.training.checkpoint.StudentCheckpoint`."""


def _frontend_differences(a: Any, b: Any) -> list[str]:
    da, db = a.to_dict(), b.to_dict()
    return [f"{k}: {da.get(k)!r} (base) vs {db.get(k)!r} (config)" for k in sorted(set(da) | set(db)) if da.get(k) != db.get(k)]


def load_base(config: TrainConfig) -> BaseStudent:
    """Read ``reprogram.base_checkpoint`` and check it fits the config; `ConfigError` says what does not."""
    from edgetag.training.checkpoint import CheckpointError, load_checkpoint

    key = "reprogram.base_checkpoint"
    r = config.reprogram
    if r is None or not r.base_checkpoint:
        raise ConfigError(f"{key}: required by method {config.method!r}")
    path = Path(r.base_checkpoint)
    if not path.is_file():
        raise ConfigError(f"{key}: no such file: {path} (the pretrained student.pt written by `edgetag distill`)")
    if path.suffix.lower() == ".onnx":
        raise ConfigError(f"{key}: {path} is an exported ONNX model; {config.method} needs the student's "
                          "PyTorch checkpoint (the student.pt it was exported from)")
    try:
        ckpt = load_checkpoint(path)  # torch.load(..., weights_only=True): nothing executable from the file
    except CheckpointError as exc:
        raise ConfigError(f"{key}: {exc}") from None
    frontend = config.frontend_config()
    if ckpt.frontend != frontend:
        diffs = _frontend_differences(ckpt.frontend, frontend)
        raise ConfigError(
            f"{key}: {path.name} was trained on another front end ({'; '.join(diffs[:6])}); its weights only mean "
            f"something on its own features: set the frontend section to the base's (the config's preset "
            f"{config.frontend.preset!r} with overrides for the fields above)"
        )
    if ckpt.student.streaming_mode == "window":
        window = frontend.num_frames(round(config.data.segment_seconds * frontend.sample_rate))
        if window != ckpt.window_frames:
            seconds = (ckpt.window_frames - 1) * frontend.hop_length + frontend.win_length
            raise ConfigError(
                f"data.segment_seconds: {config.data.segment_seconds} s gives {window} frames, but the base student "
                f"{path.name} is a window student of {ckpt.window_frames} frames: set data.segment_seconds to "
                f"{seconds / frontend.sample_rate:g}"
            )
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return BaseStudent(path, digest, ckpt)


def build_reprogrammed(config: TrainConfig, base: BaseStudent, n_labels: int) -> tuple[ReprogrammedStudent, dict[str, Any],
                                                                                       dict[str, Any]]:
    """The model of a base method with the base's weights in: (student, its params, the provenance record).

    ``reprogram`` freezes the base and raises `ConfigError` when the trainable part is over budget.
    """
    r = config.reprogram
    assert r is not None  # validated
    ckpt = base.checkpoint
    transform: dict[str, Any] = {"kind": r.transform, "channels": r.channels}
    if r.kernel is not None:
        transform["kernel"] = list(r.kernel)
    params = {
        "base": {"kind": ckpt.kind, "n_labels": len(ckpt.labels), "params": dict(ckpt.params)},
        "transform": transform,
        "head_input": r.head_input,
    }
    try:
        student = ReprogrammedStudent(ckpt.frontend.n_bins, n_labels, **params)
    except ValueError as exc:
        raise ConfigError(f"reprogram: {exc}") from None
    if r.transform == "conv":  # the checkpoint names the kernel it was built with, not a default
        params["transform"]["kernel"] = list(student.transform.kernel)
    state = ckpt.student.state_dict()
    if r.head_input == "embedding":  # the base's classifier is not part of the model
        state = {k: v for k, v in state.items() if not k.startswith("classifier.")}
    student.base.load_state_dict(state, strict=True)
    frozen = config.method == "reprogram"
    if frozen:
        student.freeze_base()
    trainable = trainable_parameters(student)
    parts = {"transform": trainable_parameters(student.transform), "output_mapping": trainable_parameters(student.classifier)}
    base_params = sum(p.numel() for p in student.base.parameters())
    if frozen and trainable > r.max_trainable_parameters:
        raise ConfigError(
            f"reprogram: {trainable:,} trainable parameters (transform {parts['transform']:,} + output mapping "
            f"{parts['output_mapping']:,}) exceed reprogram.max_trainable_parameters = {r.max_trainable_parameters:,}; "
            "use a smaller transform (affine or conv with fewer channels; additive costs a value per frame and band) "
            "or head_input = 'logits'"
        )
    record = {
        "base_checkpoint": base.path.name,
        "base_sha256": base.sha256,
        "base_kind": ckpt.kind,
        "base_labels": list(ckpt.labels),
        "base_method": ckpt.provenance.get("method"),
        "base_hop_frames": int(ckpt.hop_frames),
        "base_frozen": frozen,
        "transform": transform,
        "head_input": r.head_input,
        "trainable_parameters": trainable,
        "trainable_by_part": parts,
        "base_parameters": base_params,
        "max_trainable_parameters": r.max_trainable_parameters if frozen else None,
    }
    log.info("%s: %d trainable parameters (transform %d, output mapping %d); base %s (%d parameters, %s)",
             config.method, trainable, parts["transform"], parts["output_mapping"], base.path.name, base_params,
             "frozen" if frozen else "trained")
    return student, params, record
