"""musicnn music taggers (Pons & Serra, 2019) as teachers: a torch port that needs no TensorFlow.

The ``musicnn`` wheel (install it with ``pip install --no-deps musicnn``: its
metadata pins TensorFlow 1 and an old numpy) ships TF1 checkpoints of four
taggers, each trained on 3 s log-mel patches:

========================  ==============  ======  ===========================
registry name             checkpoint      labels  embedding (``embedding_dim``)
========================  ==============  ======  ===========================
``musicnn-mtt``           MTT_musicnn     MTT 50  penultimate, 200
``musicnn-msd``           MSD_musicnn     MSD 50  penultimate, 200
``musicnn-mtt-vgg``       MTT_vgg         MTT 50  flattened pool5, 256
``musicnn-msd-vgg``       MSD_vgg         MSD 50  flattened pool5, 256
========================  ==============  ======  ===========================

The weights are read with `edgetag.training.teachers.tf_checkpoint` (a numpy
reader of the checkpoint format) from the installed wheel, found with
``importlib.util.find_spec("musicnn")`` without importing it (importing it
imports TensorFlow), or from an explicit ``checkpoint_dir``.

Architecture (musicnn), per 187-frame x 96-band patch:

* front end: batch norm of the input, then five "musically motivated"
  branches, each conv + ReLU + batch norm + max-pool over all frequencies:
  two timbral ones (kernels of 7 frames x 38 and x 67 bands, 204 filters) and
  three temporal ones (kernels of 128, 64 and 32 frames x 1 band, 51 filters,
  TF "same" padding). Concatenated: 561 channels per frame.
* mid end: three 1-D convolutions over time (7 frames, 64 filters, ReLU,
  batch norm), the second and third with residual connections; the front-end
  output and the three mid-end outputs are concatenated (753 channels).
* back end: max and mean over time (interleaved per channel, as TF's
  ``concat([max, mean], 2)`` then ``flatten`` lays them out: 1506 values),
  batch norm, dense 200 + ReLU, batch norm (the **penultimate** layer, our
  embedding, musicnn's ``features['penultimate']``), dense 50, sigmoid.

The VGG baselines: input batch norm, five 3x3 conv (128 filters) + ReLU +
batch norm + max-pool blocks (pools 4x1/2x2, 2x2, 2x2, 2x2, 4x4), flatten
(2 x 1 x 128 = 256 values, our embedding, the input of the output layer),
dense 50, sigmoid. Dropout is inference-off everywhere and so omitted.

Input features, computed here in torch from waveforms, replicate musicnn's
extractor: ``librosa.feature.melspectrogram(y, sr=16000, n_fft=512,
hop_length=256, n_mels=96)`` (periodic Hann window, frames centred with
``n_fft // 2`` zeros of padding at each end as librosa >= 0.10 does by
default, power spectrum, Slaney mel with Slaney area normalisation, 0 to
8 kHz), then ``log10(10000 x + 1)``. A clip of ``n`` samples has
``1 + n // 256`` frames, cut into non-overlapping patches of 187 frames
(47,872 samples, 2.992 s: musicnn's default ``input_length=3``,
``input_overlap=False``); a trailing remainder shorter than a patch is dropped,
as the original drops it. So the teachers emit one score vector per patch,
``frame_rate = 16000 / 47872`` (about 0.334) windows per second, and a clip
shorter than one patch yields zero windows (the original raises).

**Intentional difference from the original on loud input.** musicnn's
extractor computes ``log10(10000 * mel.astype(float16) + 1)`` in float16, so
any mel bin above about 6.55 overflows to ``inf`` and the whole 3 s patch then
gets the same fixed taggram (guitar, indian, electronic for MTT) whatever the
music; commercially mastered music often hits this. This port computes the
features in float32, so on such input it gives real, input-dependent scores
and *differs from the original on purpose*. (What the original returns for an
overflowed patch depends on TensorFlow's kernels: the fixed taggram with its
default oneDNN kernels on x86, NaN with ``TF_ENABLE_ONEDNN_OPTS=0``.)

On input whose mel bins stay below the overflow, the float32 features differ
from the original's only by its float16 rounding (up to 2.5e-3 in log-mel),
and the taggrams agree to about 4e-4. With ``float16_features=True`` (parity
checks only: it reproduces the float16 arithmetic, overflow included) they
agree to about 1e-5, and the network alone, fed the original's own features,
to about 2e-6; see ``tests/test_teacher_musicnn.py``.

A second, smaller documented choice: ``pad_mode="constant"`` (the default)
matches librosa >= 0.10; librosa < 0.10, current when musicnn was trained,
padded by reflection (``pad_mode="reflect"``). Only the first and last frame
of a clip differ.
"""

from __future__ import annotations

import importlib.util
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import Teacher, TeacherOutput, register_teacher
from .tf_checkpoint import CheckpointError, TFCheckpoint

__all__ = [
    "MTT_LABELS",
    "MSD_LABELS",
    "MusicnnTeacher",
    "MusicnnNet",
    "VggNet",
    "find_musicnn_checkpoint",
    "musicnn_logmel",
]

SAMPLE_RATE = 16000
N_FFT = 512
HOP = 256
N_MELS = 96
#: Frames per patch: librosa.time_to_frames(3, sr=16000, n_fft=512, hop_length=256) + 1.
PATCH_FRAMES = 187
PATCH_SAMPLES = PATCH_FRAMES * HOP  # 47872 samples, 2.992 s
_BN_EPS = 1e-3  # tf.compat.v1.layers.batch_normalization's default

# The model's output order, from musicnn/configuration.py.
MTT_LABELS: list[str] = [
    "guitar", "classical", "slow", "techno", "strings", "drums", "electronic", "rock", "fast", "piano",
    "ambient", "beat", "violin", "vocal", "synth", "female", "indian", "opera", "male", "singing",
    "vocals", "no vocals", "harpsichord", "loud", "quiet", "flute", "woman", "male vocal", "no vocal", "pop",
    "soft", "sitar", "solo", "man", "classic", "choir", "voice", "new age", "dance", "male voice",
    "female vocal", "beats", "harp", "cello", "no voice", "weird", "country", "metal", "female voice", "choral",
]  # fmt: skip
MSD_LABELS: list[str] = [
    "rock", "pop", "alternative", "indie", "electronic", "female vocalists", "dance", "00s", "alternative rock", "jazz",
    "beautiful", "metal", "chillout", "male vocalists", "classic rock", "soul", "indie rock", "Mellow", "electronica", "80s",
    "folk", "90s", "chill", "instrumental", "punk", "oldies", "blues", "hard rock", "ambient", "acoustic",
    "experimental", "female vocalist", "guitar", "Hip-Hop", "70s", "party", "country", "easy listening", "sexy", "catchy",
    "funk", "electro", "heavy metal", "Progressive rock", "60s", "rnb", "indie pop", "sad", "House", "happy",
]  # fmt: skip

ModelName = Literal["MTT_musicnn", "MSD_musicnn", "MTT_vgg", "MSD_vgg"]
MODELS: tuple[str, ...] = ("MTT_musicnn", "MSD_musicnn", "MTT_vgg", "MSD_vgg")


# --------------------------------------------------------------------------- checkpoint location

def find_musicnn_checkpoint(model: str, checkpoint_dir: str | os.PathLike[str] | None = None) -> Path:
    """Directory of one musicnn checkpoint (the one holding ``.index``).

    ``checkpoint_dir`` may be that directory itself or a directory holding a
    ``<model>/`` subdirectory (a copy of the wheel's package folder). Without
    it, the installed ``musicnn`` wheel is located with ``find_spec``, which
    does not import it (importing musicnn imports TensorFlow).
    """
    if model not in MODELS:
        raise ValueError(f"unknown musicnn model {model!r}; known: {', '.join(MODELS)}")
    if checkpoint_dir is not None:
        base = Path(checkpoint_dir)
        for candidate in (base, base / model):
            if (candidate / ".index").is_file():
                return candidate
        raise FileNotFoundError(f"no musicnn checkpoint (a '.index' file) in {base} or {base / model}")
    spec = importlib.util.find_spec("musicnn")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the musicnn wheel is not installed: `pip install --no-deps musicnn` "
            "(its weights are all this port needs), or pass checkpoint_dir="
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / model
    if not (folder / ".index").is_file():
        raise FileNotFoundError(f"the installed musicnn wheel has no {model} checkpoint at {folder}")
    return folder


# --------------------------------------------------------------------------- features

def _mel_basis() -> np.ndarray:
    """librosa.filters.mel(sr=16000, n_fft=512, n_mels=96) as float32 [96, 257].

    Built by edgetag's shared filterbank code from the ``musicnn`` preset (Slaney
    mel, Slaney area normalisation, 0-8 kHz), which is that same matrix.
    """
    from edgetag.runtime.frontend import PRESETS, filterbank_matrix

    return filterbank_matrix(PRESETS["musicnn"]).astype(np.float32)


def _hann_periodic() -> np.ndarray:
    """scipy.signal.get_window('hann', 512, fftbins=True), as librosa uses it."""
    n = np.arange(N_FFT, dtype=np.float64)
    return (0.5 - 0.5 * np.cos(2.0 * math.pi * n / N_FFT)).astype(np.float32)


def musicnn_logmel(
    waveforms: Tensor,
    window: Tensor,
    mel_basis: Tensor,
    pad_mode: Literal["constant", "reflect"] = "constant",
    float16_features: bool = False,
) -> Tensor:
    """musicnn's input features: [batch, samples] float32 -> [batch, 1 + samples // 256, 96].

    Float32 throughout (see the module docstring); ``float16_features`` mimics
    the original's float16 arithmetic step by step (numpy float16 ops compute
    in float32 and round to float16 after each operation).
    """
    x = waveforms.to(torch.float32)
    if pad_mode == "reflect" and x.shape[-1] <= N_FFT // 2:
        raise ValueError(f"pad_mode='reflect' needs more than {N_FFT // 2} samples, got {x.shape[-1]}")
    # librosa center=True: n_fft // 2 samples of padding at both ends.
    x = F.pad(x.unsqueeze(1), (N_FFT // 2, N_FFT // 2), mode=pad_mode).squeeze(1)
    frames = x.unfold(-1, N_FFT, HOP) * window  # [batch, frames, 512]
    spectrum = torch.fft.rfft(frames, dim=-1)
    power = spectrum.real.square() + spectrum.imag.square()
    mel = torch.matmul(power, mel_basis.T)  # [batch, frames, 96]
    if not float16_features:
        # log10(10000 x + 1), with log1p for accuracy near zero.
        return torch.log1p(mel * 10000.0) * (1.0 / math.log(10.0))
    h = mel.to(torch.float16)
    h = (h.float() * 10000.0).to(torch.float16)  # float16 x float16 products are exact in float32
    h = (h.float() + 1.0).to(torch.float16)
    return torch.log10(h.float()).to(torch.float16).float()


# --------------------------------------------------------------------------- layers

class FrozenBatchNorm(nn.Module):
    """TF batch normalisation at inference: ``(x - mean) / sqrt(var + eps) * gamma + beta``.

    Always uses the stored moving statistics (a teacher is frozen, so
    ``.train()`` must not switch to batch statistics). ``channel_dim`` says
    which axis of the input holds the channels.
    """

    gamma: Tensor
    beta: Tensor
    moving_mean: Tensor
    moving_variance: Tensor

    def __init__(self, channels: int, channel_dim: int = 1, eps: float = _BN_EPS) -> None:
        super().__init__()
        self.channel_dim = channel_dim
        self.eps = eps
        self.register_buffer("gamma", torch.ones(channels))
        self.register_buffer("beta", torch.zeros(channels))
        self.register_buffer("moving_mean", torch.zeros(channels))
        self.register_buffer("moving_variance", torch.ones(channels))

    def scale_shift(self) -> tuple[Tensor, Tensor]:
        """The affine map the layer applies: y = x * scale + shift (TF's fused form)."""
        scale = self.gamma * torch.rsqrt(self.moving_variance + self.eps)
        return scale, self.beta - self.moving_mean * scale

    def forward(self, x: Tensor) -> Tensor:
        scale, shift = self.scale_shift()
        shape = [1] * x.dim()
        shape[self.channel_dim] = -1
        return x * scale.view(shape) + shift.view(shape)

    def extra_repr(self) -> str:
        return f"{self.gamma.numel()}, eps={self.eps}"


def _bn_then_freq_max(x: Tensor, bn: FrozenBatchNorm) -> Tensor:
    """max over frequency of BN(x), x [N, C, T, F] -> [N, C, T].

    BN is a per-channel monotonic map, so it commutes with the max (with the
    min where its scale is negative). Applying it after the pooling is exact
    (float rounding is monotonic too) and skips a pass over the largest
    tensors of the network.
    """
    scale, shift = bn.scale_shift()
    pooled = torch.where((scale >= 0).view(1, -1, 1), x.amax(dim=3), x.amin(dim=3))
    return pooled * scale.view(1, -1, 1) + shift.view(1, -1, 1)


class MusicnnNet(nn.Module):
    """The musicnn network on log-mel patches [N, frames, 96] (187 frames for 3 s).

    ``forward`` returns (logits [N, n_classes], penultimate [N, units]); with
    ``return_pools`` also the temporal max and mean pools [N, 753] that
    musicnn reports as ``max_pool`` / ``mean_pool``.
    """

    def __init__(self, n_classes: int = 50, midend_filters: int = 64, backend_units: int = 200, n_mels: int = N_MELS) -> None:
        super().__init__()
        timbral_filters, temporal_filters = int(1.6 * 128), int(1.6 * 32)  # 204, 51
        self.input_bn = FrozenBatchNorm(1)
        # Timbral branches: kernels of 7 frames x 40 % / 70 % of the bands (38, 67).
        self.timbral = nn.ModuleList(
            [nn.Conv2d(1, timbral_filters, (7, int(frac * n_mels))) for frac in (0.4, 0.7)]
        )
        self.timbral_bn = nn.ModuleList([FrozenBatchNorm(timbral_filters) for _ in range(2)])
        # Temporal branches: 128, 64, 32 frames x 1 band, TF "same" padding in time.
        self.temporal_lengths = (128, 64, 32)
        self.temporal = nn.ModuleList([nn.Conv2d(1, temporal_filters, (k, 1)) for k in self.temporal_lengths])
        self.temporal_bn = nn.ModuleList([FrozenBatchNorm(temporal_filters) for _ in self.temporal_lengths])
        frontend_channels = 2 * timbral_filters + 3 * temporal_filters  # 561
        self.midend = nn.ModuleList(
            [nn.Conv1d(frontend_channels if i == 0 else midend_filters, midend_filters, 7) for i in range(3)]
        )
        self.midend_bn = nn.ModuleList([FrozenBatchNorm(midend_filters) for _ in range(3)])
        pooled = 2 * (frontend_channels + 3 * midend_filters)  # 1506
        self.pool_bn = FrozenBatchNorm(pooled)
        self.dense = nn.Linear(pooled, backend_units)
        self.dense_bn = FrozenBatchNorm(backend_units)
        self.output = nn.Linear(backend_units, n_classes)

    def forward(self, patches: Tensor, return_pools: bool = False) -> tuple[Tensor, ...]:
        x = self.input_bn(patches.unsqueeze(1))  # [N, 1, T, F]
        branches = []
        timbral_in = F.pad(x, (0, 0, 3, 3))  # pad time only: "same" in time, "valid" in frequency
        for conv, bn in zip(self.timbral, self.timbral_bn):
            branches.append(_bn_then_freq_max(F.relu(conv(timbral_in)), bn))
        for k, conv, bn in zip(self.temporal_lengths, self.temporal, self.temporal_bn):
            # TF "same": total padding k - 1, the extra sample at the end.
            branches.append(_bn_then_freq_max(F.relu(conv(F.pad(x, (0, 0, (k - 1) // 2, k // 2)))), bn))
        frontend = torch.cat(branches, dim=1)  # [N, 561, T]

        outs = [frontend]
        h = frontend
        for i, (conv, bn) in enumerate(zip(self.midend, self.midend_bn)):
            y = bn(F.relu(conv(F.pad(h, (3, 3)))))
            h = y if i == 0 else y + h  # residual from the second layer on
            outs.append(h)
        features = torch.cat(outs, dim=1)  # [N, 753, T]

        max_pool = features.amax(dim=2)
        mean_pool = features.mean(dim=2)
        flat = torch.stack([max_pool, mean_pool], dim=2).flatten(1)  # TF layout: per channel (max, mean)
        penultimate = self.dense_bn(F.relu(self.dense(self.pool_bn(flat))))
        logits = self.output(penultimate)
        if return_pools:
            return logits, penultimate, max_pool, mean_pool
        return logits, penultimate


class VggNet(nn.Module):
    """musicnn's VGG baseline on log-mel patches [N, 187, 96].

    ``forward`` returns (logits [N, n_classes], flattened pool5 [N, 256]).
    """

    def __init__(self, n_classes: int = 50, filters: int = 128) -> None:
        super().__init__()
        self.input_bn = FrozenBatchNorm(1)
        self.convs = nn.ModuleList([nn.Conv2d(1 if i == 0 else filters, filters, 3, padding=1) for i in range(5)])
        self.bns = nn.ModuleList([FrozenBatchNorm(filters) for _ in range(5)])
        # TF max_pooling2d, "valid" padding: (pool, stride) in (time, frequency).
        self.pools = [((4, 1), (2, 2)), ((2, 2), (2, 2)), ((2, 2), (2, 2)), ((2, 2), (2, 2)), ((4, 4), (4, 4))]
        self.output = nn.Linear(2 * 1 * filters, n_classes)

    def forward(self, patches: Tensor) -> tuple[Tensor, Tensor]:
        x = self.input_bn(patches.unsqueeze(1))
        for conv, bn, (kernel, stride) in zip(self.convs, self.bns, self.pools):
            x = F.max_pool2d(bn(F.relu(conv(x))), kernel, stride)
        if x.shape[2:] != (2, 1):
            raise ValueError(f"the VGG models need {PATCH_FRAMES}-frame patches, got a pool5 of {tuple(x.shape[2:])}")
        pool5 = x.permute(0, 2, 3, 1).flatten(1)  # TF's NHWC flatten order: time, frequency, channel
        return self.output(pool5), pool5


# --------------------------------------------------------------------------- weight loading

def _conv2d_kernel(k: np.ndarray) -> Tensor:
    """TF conv2d kernel [kh, kw, in, out] -> torch [out, in, kh, kw]."""
    return torch.from_numpy(np.ascontiguousarray(k.transpose(3, 2, 0, 1)))


def _midend_kernel(k: np.ndarray) -> Tensor:
    """musicnn's mid-end conv2d over [time, channels, 1] with kernel [7, C, 1, out] -> Conv1d [out, C, 7]."""
    return torch.from_numpy(np.ascontiguousarray(k[:, :, 0, :].transpose(2, 1, 0)))


def _assign(target: Tensor, value: Tensor, name: str) -> None:
    if tuple(target.shape) != tuple(value.shape):
        raise CheckpointError(f"checkpoint variable {name}: shape {tuple(value.shape)}, the port expects {tuple(target.shape)}")
    with torch.no_grad():
        target.copy_(value.to(target.dtype))


def _load_bn(bn: FrozenBatchNorm, tensors: dict[str, np.ndarray], scope: str) -> None:
    for field in ("gamma", "beta", "moving_mean", "moving_variance"):
        name = f"{scope}/{field}"
        _assign(getattr(bn, field), torch.from_numpy(tensors[name]), name)


def _bn_scope(i: int) -> str:
    return "batch_normalization" if i == 0 else f"batch_normalization_{i}"


def _load_musicnn(net: MusicnnNet, t: dict[str, np.ndarray]) -> None:
    """Map tf.compat.v1.layers' auto-generated names (creation order) onto `MusicnnNet`.

    Creation order in musicnn's models.py: input BN; f74 and f77 (conv2d,
    conv2d_1); the 128/64/32 temporal convs (conv2d_2..4); the mid-end
    (conv2d_5..7); back-end BN, dense, BN, dense_1. Each conv is followed by
    its BN, so batch_normalization_i pairs with the i-th conv.
    """
    _load_bn(net.input_bn, t, _bn_scope(0))
    convs: list[tuple[nn.Module, FrozenBatchNorm, bool]] = []
    convs += [(c, b, False) for c, b in zip(net.timbral, net.timbral_bn)]
    convs += [(c, b, False) for c, b in zip(net.temporal, net.temporal_bn)]
    convs += [(c, b, True) for c, b in zip(net.midend, net.midend_bn)]
    for i, (conv, bn, midend) in enumerate(convs):
        scope = "conv2d" if i == 0 else f"conv2d_{i}"
        kernel = t[f"{scope}/kernel"]
        _assign(conv.weight, _midend_kernel(kernel) if midend else _conv2d_kernel(kernel), f"{scope}/kernel")
        _assign(conv.bias, torch.from_numpy(t[f"{scope}/bias"]), f"{scope}/bias")
        _load_bn(bn, t, _bn_scope(i + 1))
    _load_bn(net.pool_bn, t, _bn_scope(9))
    _assign(net.dense.weight, torch.from_numpy(t["dense/kernel"].T.copy()), "dense/kernel")
    _assign(net.dense.bias, torch.from_numpy(t["dense/bias"]), "dense/bias")
    _load_bn(net.dense_bn, t, _bn_scope(10))
    _assign(net.output.weight, torch.from_numpy(t["dense_1/kernel"].T.copy()), "dense_1/kernel")
    _assign(net.output.bias, torch.from_numpy(t["dense_1/bias"]), "dense_1/bias")


def _load_vgg(net: VggNet, t: dict[str, np.ndarray]) -> None:
    """VGG convs are named 1CNN..5CNN; their BNs batch_normalization_1..5 (input BN is the first)."""
    _load_bn(net.input_bn, t, _bn_scope(0))
    for i, (conv, bn) in enumerate(zip(net.convs, net.bns)):
        scope = f"{i + 1}CNN"
        _assign(conv.weight, _conv2d_kernel(t[f"{scope}/kernel"]), f"{scope}/kernel")
        _assign(conv.bias, torch.from_numpy(t[f"{scope}/bias"]), f"{scope}/bias")
        _load_bn(bn, t, _bn_scope(i + 1))
    _assign(net.output.weight, torch.from_numpy(t["dense/kernel"].T.copy()), "dense/kernel")
    _assign(net.output.bias, torch.from_numpy(t["dense/bias"]), "dense/bias")


def _model_variables(ckpt: TFCheckpoint) -> dict[str, np.ndarray]:
    """The model's variables: everything but the optimizer state (Adam slots, beta powers)."""
    names = [n for n in ckpt.names() if not n.endswith(("/Adam", "/Adam_1")) and n not in ("beta1_power", "beta2_power")]
    return {n: ckpt.read(n) for n in names}


# --------------------------------------------------------------------------- teacher

class MusicnnTeacher(Teacher):
    """A musicnn tagger (one of `MODELS`) as a `Teacher`; see the module docstring.

    Args:
        model: ``MTT_musicnn``, ``MSD_musicnn``, ``MTT_vgg`` or ``MSD_vgg``.
        checkpoint_dir: the checkpoint's folder (or a folder holding
            ``<model>/``); default: the installed musicnn wheel.
        pad_mode: centring padding, ``constant`` (librosa >= 0.10) or ``reflect``.
        float16_features: reproduce the original's float16 feature arithmetic,
            overflow on loud input included (parity checks only).
        max_patches: patches per network call, to bound memory on long input.
        name: registry name reported by ``.name``.
    """

    sample_rate = SAMPLE_RATE
    score_kind: Literal["probabilities", "logits"] = "probabilities"
    task: Literal["multi_label", "multi_class"] = "multi_label"
    frame_rate = SAMPLE_RATE / PATCH_SAMPLES
    window: Tensor
    mel_basis: Tensor

    def __init__(
        self,
        model: ModelName = "MTT_musicnn",
        checkpoint_dir: str | os.PathLike[str] | None = None,
        *,
        pad_mode: Literal["constant", "reflect"] = "constant",
        float16_features: bool = False,
        max_patches: int = 16,
        name: str | None = None,
    ) -> None:
        super().__init__()
        if pad_mode not in ("constant", "reflect"):
            raise ValueError(f"pad_mode must be 'constant' or 'reflect', got {pad_mode!r}")
        if max_patches < 1:
            raise ValueError(f"max_patches must be >= 1, got {max_patches}")
        folder = find_musicnn_checkpoint(model, checkpoint_dir)
        self.model_name = model
        self.name = name or model
        self.checkpoint_path = str(folder)
        self.pad_mode = pad_mode
        self.float16_features = float16_features
        self.max_patches = max_patches
        self.labels = list(MTT_LABELS if model.startswith("MTT") else MSD_LABELS)
        tensors = _model_variables(TFCheckpoint(folder))
        self.net: MusicnnNet | VggNet
        if model.endswith("_vgg"):
            self.net = VggNet(len(self.labels))
            _load_vgg(self.net, tensors)
            self.embedding_dim = 256
        else:
            self.net = MusicnnNet(len(self.labels))
            _load_musicnn(self.net, tensors)
            self.embedding_dim = 200
        used = sum(p.numel() for p in self.net.parameters()) + sum(b.numel() for b in self.net.buffers())
        stored = sum(v.size for v in tensors.values())
        if used != stored:
            raise CheckpointError(f"{folder}: the checkpoint holds {stored} model values, the port used {used}")
        # Fixed signal-processing constants: not weights, kept out of the state_dict.
        self.register_buffer("window", torch.from_numpy(_hann_periodic()), persistent=False)
        self.register_buffer("mel_basis", torch.from_numpy(_mel_basis()), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def num_frames(self, num_samples: int) -> int:
        """Non-overlapping 187-frame patches in ``num_samples`` samples (the remainder is dropped)."""
        if num_samples < 0:
            raise ValueError(f"num_samples must be >= 0, got {num_samples}")
        return (1 + num_samples // HOP) // PATCH_FRAMES

    def logmel(self, waveforms: Tensor) -> Tensor:
        """Input features [batch, 1 + samples // 256, 96] of a batch of waveforms."""
        waveforms = self._check_waveforms(waveforms)
        return musicnn_logmel(waveforms, self.window, self.mel_basis, self.pad_mode, self.float16_features)

    def patches(self, logmel: Tensor) -> Tensor:
        """Cut features [batch, frames, 96] into patches [batch, windows, 187, 96] (remainder dropped)."""
        windows = logmel.shape[1] // PATCH_FRAMES
        return logmel[:, : windows * PATCH_FRAMES].reshape(logmel.shape[0], windows, PATCH_FRAMES, N_MELS)

    def forward_patches(self, patches: Tensor) -> tuple[Tensor, Tensor]:
        """(probabilities [N, labels], embeddings [N, embedding_dim]) for log-mel patches [N, 187, 96]."""
        probs, embs = [], []
        for start in range(0, patches.shape[0], self.max_patches):
            logits, emb = self.net(patches[start : start + self.max_patches])[:2]
            probs.append(torch.sigmoid(logits))
            embs.append(emb)
        if not probs:
            device = patches.device
            return (torch.zeros(0, len(self.labels), device=device), torch.zeros(0, self.embedding_dim, device=device))
        return torch.cat(probs), torch.cat(embs)

    def forward(self, waveforms: Tensor) -> TeacherOutput:
        """waveforms: float32 [batch, samples] at 16 kHz -> one score vector per 2.992 s window."""
        patches = self.patches(self.logmel(waveforms))
        batch, windows = patches.shape[:2]
        probs, emb = self.forward_patches(patches.reshape(batch * windows, PATCH_FRAMES, N_MELS))
        return TeacherOutput(
            scores=probs.reshape(batch, windows, len(self.labels)),
            embeddings=emb.reshape(batch, windows, self.embedding_dim),
        )

    @staticmethod
    def _check_waveforms(waveforms: Tensor) -> Tensor:
        if not isinstance(waveforms, Tensor):
            raise TypeError(f"waveforms must be a torch.Tensor, got {type(waveforms).__name__}")
        if waveforms.dim() != 2:
            raise ValueError(f"waveforms must be [batch, samples], got shape {tuple(waveforms.shape)}")
        if not waveforms.dtype.is_floating_point:
            raise TypeError(f"waveforms must be floating point in [-1, 1], got {waveforms.dtype}")
        if not bool(torch.isfinite(waveforms).all()):
            raise ValueError("waveforms contain NaN or Inf")
        return waveforms

    def extra_repr(self) -> str:
        return f"model={self.model_name}, pad_mode={self.pad_mode}, float16_features={self.float16_features}"


def _factory(model: ModelName, name: str) -> Callable[..., MusicnnTeacher]:
    """A registry factory for one checkpoint; keyword arguments go to `MusicnnTeacher`."""

    def make(checkpoint_dir: str | os.PathLike[str] | None = None, **kwargs: object) -> MusicnnTeacher:
        return MusicnnTeacher(model, checkpoint_dir, name=name, **kwargs)  # type: ignore[arg-type]

    make.__doc__ = f"The {model} tagger from the musicnn wheel (or ``checkpoint_dir``) as teacher ``{name}``."
    return make


register_teacher("musicnn-mtt")(_factory("MTT_musicnn", "musicnn-mtt"))
register_teacher("musicnn-msd")(_factory("MSD_musicnn", "musicnn-msd"))
register_teacher("musicnn-mtt-vgg")(_factory("MTT_vgg", "musicnn-mtt-vgg"))
register_teacher("musicnn-msd-vgg")(_factory("MSD_vgg", "musicnn-msd-vgg"))
