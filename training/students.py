"""Compact students: window CNNs and causal streaming networks with explicit state.

Every student takes front-end features ``[batch, frames, n_bins]`` (the layout
the runtime produces) and returns logits:

- window mode (`MobileNetStudent`, and `PlainCNNStudent` shaped for int8): a
  fixed window of frames in, one clip score vector out, ``[batch, n_labels]``;
  the runtime re-runs it every hop.
- stateful mode (`CausalConvStudent`, `CRNNStudent`): one score vector per
  frame, ``[batch, frames, n_labels]``. `forward_stream` takes only new frames
  plus the state tensors (each causal convolution's left context, the GRU's
  hidden state) and returns the new state, so a frame costs the same whatever
  the context length. Run from the zero state `initial_state`, streaming
  chunk by chunk equals `forward` on the whole sequence.

`count_parameters` and `count_macs` are the size counters every report uses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn
from torch.nn import functional as F

StreamingMode = Literal["window", "stateful"]
MAX_LEVEL_GAIN_DB = 40.0
"""The most a window's level is raised or lowered by `Student.level_normalised` (power dB)."""


@dataclass(frozen=True)
class StateSpec:
    """Name and shape (batch dimension excluded) of one streaming state tensor."""

    name: str
    shape: tuple[int, ...]


class Student(nn.Module):
    """Base of all students: input normalisation and the streaming contract.

    ``level_normalise`` (window students): each window is first brought to one loudness, as if its
    audio had been scaled so that its mean band energy is ``level_reference`` (an energy set from the
    training windows before training; a gain of at most `MAX_LEVEL_GAIN_DB` either way). Features are
    ``ln(energy + level_floor)`` (the front end's "log" compression), so the gain is exact: energies
    are recovered, scaled and compressed again. The student's answer then does not depend on how
    loud the input is (a quiet microphone, a loud file), and because it is part of the network the
    exported graph carries it: no runtime has to know.
    """

    streaming_mode: StreamingMode
    n_bins: int
    n_labels: int

    def __init__(self, n_bins: int, n_labels: int, level_normalise: bool = False) -> None:
        super().__init__()
        if n_bins < 1 or n_labels < 1:
            raise ValueError(f"n_bins and n_labels must be positive, got {n_bins} and {n_labels}")
        self.n_bins = n_bins
        self.n_labels = n_labels
        # Per-band feature statistics, set from training data before training;
        # stored in the model so the runtime never has to know them.
        self.register_buffer("feature_mean", torch.zeros(n_bins))
        self.register_buffer("feature_std", torch.ones(n_bins))
        self.level_normalise = bool(level_normalise)
        if self.level_normalise:
            self.register_buffer("level_reference", torch.tensor(1.0))  # mean band energy of a window
            self.register_buffer("level_floor", torch.tensor(1e-6))  # the front end's log floor

    def level_normalised(self, features: torch.Tensor) -> torch.Tensor:
        """[batch, frames, n_bins] log features -> the same windows at the reference level (see the class)."""
        energies = (torch.exp(features) - self.level_floor).clamp_min(0.0)
        mean = energies.mean(dim=(1, 2), keepdim=True).clamp_min(1e-30)
        limit = 10.0 ** (MAX_LEVEL_GAIN_DB / 10.0)
        gain = (self.level_reference / mean).clamp(1.0 / limit, limit)
        return torch.log(energies * gain + self.level_floor)

    def normalise(self, features: torch.Tensor) -> torch.Tensor:
        """[batch, frames, n_bins] -> standardised per band (after `level_normalised`, when on)."""
        if features.shape[-1] != self.n_bins:
            raise ValueError(f"expected {self.n_bins} feature bins, got {features.shape[-1]}")
        if self.level_normalise:
            features = self.level_normalised(features)
        return (features - self.feature_mean) / self.feature_std

    def state_specs(self) -> list[StateSpec]:
        """State tensors of `forward_stream` (empty for window students)."""
        return []

    def initial_state(self, batch: int = 1) -> list[torch.Tensor]:
        """Zero state: the stream before any frame (equals zero padding offline)."""
        device = self.feature_mean.device
        return [torch.zeros((batch, *spec.shape), device=device) for spec in self.state_specs()]


# --------------------------------------------------------------------------- window students
def _make_divisible(value: float, divisor: int = 8) -> int:
    """Channel counts rounded to a multiple of 8, never below 90 % of the request (MobileNet rule)."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


class _SqueezeExcite(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        hidden = _make_divisible(channels / 4)
        self.reduce = nn.Conv2d(channels, hidden, 1)
        self.expand = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = F.hardsigmoid(self.expand(F.relu(self.reduce(x.mean(dim=(2, 3), keepdim=True)))))
        return x * scale


class _InvertedResidual(nn.Module):
    """MobileNetV3 block: 1x1 expand, depthwise kxk, optional squeeze-excite, 1x1 project."""

    def __init__(self, c_in: int, c_exp: int, c_out: int, kernel: int, stride: int, se: bool, act: str) -> None:
        super().__init__()
        activation: type[nn.Module] = nn.Hardswish if act == "hs" else nn.ReLU
        layers: list[nn.Module] = []
        if c_exp != c_in:
            layers += [nn.Conv2d(c_in, c_exp, 1, bias=False), nn.BatchNorm2d(c_exp), activation()]
        layers += [
            nn.Conv2d(c_exp, c_exp, kernel, stride, kernel // 2, groups=c_exp, bias=False),
            nn.BatchNorm2d(c_exp),
            activation(),
        ]
        if se:
            layers.append(_SqueezeExcite(c_exp))
        layers += [nn.Conv2d(c_exp, c_out, 1, bias=False), nn.BatchNorm2d(c_out)]
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return x + y if self.residual else y


# (kernel, expansion, out channels, squeeze-excite, activation, stride): MobileNetV3-small's
# layout, the basis of EfficientAT's "mn" audio family.
_MOBILENET_V3_SMALL = (
    (3, 16, 16, True, "re", 2),
    (3, 72, 24, False, "re", 2),
    (3, 88, 24, False, "re", 1),
    (5, 96, 40, True, "hs", 2),
    (5, 240, 40, True, "hs", 1),
    (5, 240, 40, True, "hs", 1),
    (5, 120, 48, True, "hs", 1),
    (5, 144, 48, True, "hs", 1),
    (5, 288, 96, True, "hs", 2),
    (5, 576, 96, True, "hs", 1),
    (5, 576, 96, True, "hs", 1),
)


class _WindowCNN(Student):
    """A window student that reads the [frames x bins] window as a one-channel image: ``features`` (a conv
    stack), the mean over time and frequency, ``embedding`` (Linear + activation) and ``classifier``.
    Subclasses build the three; ``window_frames`` is the fixed input length the runtime feeds them."""

    streaming_mode: StreamingMode = "window"
    features: nn.Module
    embedding: nn.Module
    classifier: nn.Linear

    def __init__(self, n_bins: int, n_labels: int, window_frames: int, embedding_dim: int, level_normalise: bool) -> None:
        super().__init__(n_bins, n_labels, level_normalise)
        if window_frames < 1:
            raise ValueError(f"window_frames must be positive, got {window_frames}")
        self.window_frames = window_frames
        self.embedding_dim = embedding_dim

    def embed(self, features: torch.Tensor) -> torch.Tensor:
        """[batch, window_frames, n_bins] -> [batch, embedding_dim]."""
        x = self.normalise(features).transpose(1, 2).unsqueeze(1)  # [batch, 1, bins, frames]
        return self.embedding(self.features(x).mean(dim=(2, 3)))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """[batch, window_frames, n_bins] -> clip logits [batch, n_labels]."""
        return self.classifier(self.embed(features))


class MobileNetStudent(_WindowCNN):
    """Window-mode MobileNetV3-style CNN over a [frames x bins] image.

    ``width`` scales every channel count (EfficientAT's width multiplier);
    ``window_frames`` is the fixed input length the runtime feeds it.
    """

    def __init__(
        self, n_bins: int, n_labels: int, window_frames: int = 100, width: float = 1.0, embedding_dim: int = 256,
        level_normalise: bool = False,
    ) -> None:
        super().__init__(n_bins, n_labels, window_frames, embedding_dim, level_normalise)
        stem = _make_divisible(16 * width)
        layers: list[nn.Module] = [nn.Conv2d(1, stem, 3, 2, 1, bias=False), nn.BatchNorm2d(stem), nn.Hardswish()]
        c_in = stem
        for kernel, expansion, c_out, se, act, stride in _MOBILENET_V3_SMALL:
            c_exp, c_out = _make_divisible(expansion * width), _make_divisible(c_out * width)
            layers.append(_InvertedResidual(c_in, c_exp, c_out, kernel, stride, se, act))
            c_in = c_out
        last = _make_divisible(576 * width)
        layers += [nn.Conv2d(c_in, last, 1, bias=False), nn.BatchNorm2d(last), nn.Hardswish()]
        self.features = nn.Sequential(*layers)
        self.embedding = nn.Sequential(nn.Linear(last, embedding_dim), nn.Hardswish())
        self.classifier = nn.Linear(embedding_dim, n_labels)


class PlainCNNStudent(_WindowCNN):
    """Window-mode stack of dense 3x3 convolutions (BatchNorm, ReLU) over a [frames x bins] image,
    shaped for int8.

    MobileNet's depthwise convolutions, squeeze-excitation and HardSwish are cheap in MACs but run
    in float32 in an int8 file (ONNX Runtime's int8 depthwise kernels are slower than its fp32 ones),
    so every int8 layer is wrapped in QuantizeLinear / DequantizeLinear and int8 gains little. Here
    every layer after the single-channel stem is a dense convolution whose ReLU folds into the int8
    output range: consecutive layers pass uint8 tensors (`edgetag.export.quantize` plan
    ``dense-chain``). ``channels`` / ``strides``: one 3x3 layer each (the first is the stem);
    ``head``: a final 1x1 layer (0: none); ``width`` scales every channel count (each rounded to a
    multiple of 8, as MobileNet's). A layout whose strides bring the map down to 1x1 before its last
    layers leaves those in float32 (the quantizer treats a 1x1 input as squeeze-excitation).
    """

    def __init__(
        self, n_bins: int, n_labels: int, window_frames: int = 100,
        channels: tuple[int, ...] | list[int] = (16, 24, 48, 48, 96, 96), strides: tuple[int, ...] | list[int] = (2, 2, 2, 1, 2, 1),
        head: int = 192, width: float = 1.0, embedding_dim: int = 256, level_normalise: bool = False,
    ) -> None:
        super().__init__(n_bins, n_labels, window_frames, embedding_dim, level_normalise)
        if not isinstance(channels, (list, tuple)) or not isinstance(strides, (list, tuple)) \
                or not channels or len(channels) != len(strides):
            raise ValueError(f"channels and strides need one entry per layer (lists of equal length), "
                             f"got {channels!r} and {strides!r}")
        if any(int(c) < 1 for c in channels) or any(int(st) < 1 for st in strides):
            raise ValueError(f"channels and strides must be positive, got {list(channels)} and {list(strides)}")
        if width <= 0 or head < 0:
            raise ValueError(f"width must be positive and head >= 0 (0: no 1x1 layer), got {width} and {head}")
        layers: list[nn.Module] = []
        c_in = 1
        for c, stride in zip(channels, strides):
            c_out = _make_divisible(c * width)
            layers += [nn.Conv2d(c_in, c_out, 3, int(stride), 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]
            c_in = c_out
        if head:
            last = _make_divisible(head * width)
            layers += [nn.Conv2d(c_in, last, 1, bias=False), nn.BatchNorm2d(last), nn.ReLU()]
            c_in = last
        self.features = nn.Sequential(*layers)
        self.embedding = nn.Sequential(nn.Linear(c_in, embedding_dim), nn.ReLU())
        self.classifier = nn.Linear(embedding_dim, n_labels)


# ------------------------------------------------------------------------- stateful students
class _CausalConv(nn.Module):
    """1-D convolution over time that sees only the past: left context of (kernel-1)*dilation frames."""

    def __init__(self, c_in: int, c_out: int, kernel: int, dilation: int, groups: int = 1) -> None:
        super().__init__()
        self.context = (kernel - 1) * dilation
        self.conv = nn.Conv1d(c_in, c_out, kernel, dilation=dilation, groups=groups)

    def forward(self, x: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [batch, c_in, frames], state [batch, c_in, context] -> (y, new state)."""
        if self.context == 0:
            return self.conv(x), state
        full = torch.cat([state, x], dim=2)
        return self.conv(full), full[:, :, full.shape[2] - self.context :]


class _CausalBlock(nn.Module):
    """Depthwise-separable causal convolution with a residual connection."""

    def __init__(self, channels: int, kernel: int, dilation: int) -> None:
        super().__init__()
        self.depthwise = _CausalConv(channels, channels, kernel, dilation, groups=channels)
        self.pointwise = nn.Conv1d(channels, channels, 1, bias=False)  # the batch norm after it has the bias
        self.norm = nn.BatchNorm1d(channels)

    def forward(self, x: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y, state = self.depthwise(x, state)
        return x + F.relu(self.norm(self.pointwise(y))), state


class _CausalEncoder(nn.Module):
    """Input projection then dilated causal blocks: dilations 1, 2, 4, ... repeated."""

    def __init__(self, n_bins: int, channels: int, layers: int, kernel: int) -> None:
        super().__init__()
        self.project = nn.Conv1d(n_bins, channels, 1)
        self.blocks = nn.ModuleList(_CausalBlock(channels, kernel, 2 ** (i % 4)) for i in range(layers))
        self.channels = channels

    def state_specs(self, prefix: str) -> list[StateSpec]:
        return [
            StateSpec(f"{prefix}conv{i}", (self.channels, block.depthwise.context))
            for i, block in enumerate(self.blocks)
        ]

    @property
    def receptive_field(self) -> int:
        """Frames of input each output frame sees (itself included)."""
        return 1 + sum(block.depthwise.context for block in self.blocks)

    def forward(self, x: torch.Tensor, states: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """x [batch, frames, n_bins] -> [batch, channels, frames]."""
        y = self.project(x.transpose(1, 2))
        new_states = []
        for block, state in zip(self.blocks, states):
            y, state = block(y, state)
            new_states.append(state)
        return y, new_states


class CausalConvStudent(Student):
    """Stateful causal CNN: one logit vector per frame, from the past frames only."""

    streaming_mode: StreamingMode = "stateful"

    def __init__(self, n_bins: int, n_labels: int, channels: int = 64, layers: int = 8, kernel: int = 3) -> None:
        super().__init__(n_bins, n_labels)
        self.encoder = _CausalEncoder(n_bins, channels, layers, kernel)
        self.classifier = nn.Conv1d(channels, n_labels, 1)
        self.embedding_dim = channels

    def state_specs(self) -> list[StateSpec]:
        return self.encoder.state_specs("")

    def forward_stream(
        self, features: torch.Tensor, *states: torch.Tensor
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """New frames [batch, frames, n_bins] + states -> (logits [batch, frames, n_labels], new states)."""
        hidden, new_states = self.encoder(self.normalise(features), list(states))
        return self.classifier(hidden).transpose(1, 2), new_states

    def embed(self, features: torch.Tensor) -> torch.Tensor:
        """Per-frame embeddings [batch, frames, channels] from the zero state."""
        hidden, _ = self.encoder(self.normalise(features), self.initial_state(features.shape[0]))
        return hidden.transpose(1, 2)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Whole sequence from the zero state: [batch, frames, n_bins] -> [batch, frames, n_labels]."""
        return self.forward_stream(features, *self.initial_state(features.shape[0]))[0]


class CRNNStudent(Student):
    """Causal convolutions then a unidirectional GRU; stateful per frame."""

    streaming_mode: StreamingMode = "stateful"

    def __init__(
        self, n_bins: int, n_labels: int, channels: int = 64, layers: int = 4, kernel: int = 3, hidden: int = 64
    ) -> None:
        super().__init__(n_bins, n_labels)
        self.encoder = _CausalEncoder(n_bins, channels, layers, kernel)
        self.gru = nn.GRU(channels, hidden, batch_first=True)
        self.classifier = nn.Linear(hidden, n_labels)
        self.hidden = hidden
        self.embedding_dim = hidden

    def state_specs(self) -> list[StateSpec]:
        return [*self.encoder.state_specs(""), StateSpec("gru", (1, self.hidden))]

    def _run(self, features: torch.Tensor, states: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        conv_states, gru_state = states[:-1], states[-1]
        y, new_conv = self.encoder(self.normalise(features), conv_states)
        # GRU state is stored batch-first [batch, 1, hidden]; torch wants [1, batch, hidden].
        out, h = self.gru(y.transpose(1, 2), gru_state.transpose(0, 1).contiguous())
        return out, [*new_conv, h.transpose(0, 1)]

    def forward_stream(
        self, features: torch.Tensor, *states: torch.Tensor
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """New frames [batch, frames, n_bins] + states -> (logits [batch, frames, n_labels], new states)."""
        out, new_states = self._run(features, list(states))
        return self.classifier(out), new_states

    def embed(self, features: torch.Tensor) -> torch.Tensor:
        """Per-frame GRU outputs [batch, frames, hidden] from the zero state."""
        return self._run(features, self.initial_state(features.shape[0]))[0]

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Whole sequence from the zero state: [batch, frames, n_bins] -> [batch, frames, n_labels]."""
        return self.forward_stream(features, *self.initial_state(features.shape[0]))[0]


STUDENTS: dict[str, type[Student]] = {
    "mobilenet": MobileNetStudent,
    "plain_cnn": PlainCNNStudent,
    "causal_cnn": CausalConvStudent,
    "crnn": CRNNStudent,
}


def build_student(kind: str, n_bins: int, n_labels: int, **params: object) -> Student:
    """A student by kind name (see `STUDENTS`) with its keyword parameters."""
    if kind == "reprogrammed" and kind not in STUDENTS:
        # the reprogramming wrapper lives in its own module, which imports this one (see its docstring)
        import edgetag.training.reprogram  # noqa: F401  (registers the kind)
    try:
        cls = STUDENTS[kind]
    except KeyError:
        raise KeyError(f"unknown student kind {kind!r}; known kinds: {', '.join(sorted(STUDENTS))}") from None
    return cls(n_bins=n_bins, n_labels=n_labels, **params)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------- counters
def count_parameters(model: nn.Module) -> int:
    """Trainable and frozen parameters (buffers excluded)."""
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, example: torch.Tensor) -> int:
    """Multiply-accumulates of one forward pass on ``example``.

    Counted at the operator level by torch's ``FlopCounterMode`` (FLOPs / 2): every
    convolution, matrix product (``nn.Linear``, GRU/LSTM gates, attention) and their
    functional forms, whoever calls them, so a model that runs its weights through
    ``F.conv1d`` (edgetag's CREPE port) is counted like one built from modules.
    Element-wise operations, normalisation and pooling are left out.
    """
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(example)
    return counter.get_total_flops() // 2


def macs_per_second(student: Student, frame_rate: float, hop_frames: int = 1) -> float:
    """MACs to process one second of audio the way the runtime runs the student.

    Window students are re-run every ``hop_frames`` frames on ``window_frames``
    frames; stateful students process each frame once. ``frame_rate``: front-end
    frames per second.
    """
    training = student.training
    student.eval()
    try:
        device = student.feature_mean.device
        if student.streaming_mode == "window":  # a fixed window: MobileNet, or a wrapper around one
            example = torch.zeros(1, student.window_frames, student.n_bins, device=device)
            return count_macs(student, example) * frame_rate / hop_frames
        frames = max(1, int(round(frame_rate)))
        example = torch.zeros(1, frames, student.n_bins, device=device)
        return count_macs(student, example) * frame_rate / frames
    finally:
        student.train(training)
