"""PANNs audio taggers (Kong et al., 2020) as teachers: ``panns-cnn14`` and ``panns-cnn6``.

"PANNs: Large-Scale Pretrained Audio Neural Networks for Audio Pattern
Recognition" (Kong, Cao, Iqbal, Wang, Wang and Plumbley, IEEE/ACM TASLP 2020)
trains CNNs on AudioSet's 527 classes from log-mel spectrograms. This module
is our own torch definition of two of the published architectures, written
from the paper, with module and parameter names that match the state dicts of
the published checkpoints, so a checkpoint a user downloaded loads with
``strict=True``.

Getting the weights
-------------------
Nothing here downloads anything: pass ``checkpoint=`` a local file. The
published checkpoints are on Zenodo (record 3987831,
https://zenodo.org/record/3987831): ``Cnn14_mAP=0.431.pth`` (32 kHz, for
``panns-cnn14``) and ``Cnn6_mAP=0.343.pth`` (32 kHz, for ``panns-cnn6``). Each
file holds ``{"model": state_dict, ...}``; a bare state dict, and keys with a
DataParallel ``module.`` prefix, are accepted too. The 16 kHz variants
(``Cnn14_16k_mAP=0.438.pth``) load with ``sample_rate=16000, window_size=512,
hop_size=160, fmax=8000``.

Front end (the paper's, computed by layers whose weights live in the checkpoint)
-------------------------------------------------------------------------------
* 32 kHz mono input; STFT with a 1024-sample periodic Hann window, hop 320
  (10 ms), frames centred (``n_fft // 2`` samples of *reflection* padding at
  each end), so ``n`` samples give ``1 + n // 320`` frames. The STFT is a pair
  of 1-D convolutions (``spectrogram_extractor.stft.conv_real`` /
  ``conv_imag``, weights ``[513, 1, 1024]``: the real and imaginary DFT rows
  times the window), as in the published code; power spectrum
  ``real**2 + imag**2``.
* 64 mel bands, 50 to 14000 Hz, Slaney mel scale with Slaney area
  normalisation (librosa's default ``htk=False, norm="slaney"``), held as
  ``logmel_extractor.melW`` ``[513, 64]`` (the transposed filterbank).
* log: ``10 * log10(max(mel, amin))`` with ``amin = 1e-10``, ``ref = 1.0``
  (so no offset) and ``top_db = None`` (no clipping of the dynamic range).
* ``bn0``: batch norm over the 64 mel bands (applied with the mel axis as channels).

The front-end tensors we compute at construction (used only before a
checkpoint overwrites them, e.g. for random test models) reproduce librosa's
to float32 precision; a loaded checkpoint's own values are used as they are.

Networks (inference: dropout and SpecAugment/mixup are training-only and omitted)
-----------------------------------------------------------------------------------
* **CNN14** (80,753,615 learnable parameters, the paper's "80.8 M"): six conv
  blocks ``conv_block1..6`` with 64, 128, 256, 512, 1024, 2048 channels; each
  block is two (3x3 conv, no bias -> batch norm -> ReLU) layers
  (``conv1``/``bn1``, ``conv2``/``bn2``) then 2x2 average pooling (no pooling
  after block 6).
* **CNN6** (4,837,455 learnable parameters, the paper's "4.8 M"): four blocks
  ``conv_block1..4`` with 64, 128, 256, 512 channels; each is one (5x5 conv,
  no bias -> batch norm -> ReLU) layer (``conv1``/``bn1``) then 2x2 average
  pooling.
* Both: mean over the frequency axis, then (max over time + mean over time),
  ``fc1`` (width 2048 / 512) + ReLU (**the embedding**, PANNs' ``embedding``
  output), ``fc_audioset`` (527) + sigmoid (PANNs' ``clipwise_output``).

The front end's 1,083,456 (CNN14) STFT/mel values are stored as frozen
parameters, as in the checkpoints; they are not counted in the figures above
(`learnable_parameter_count`).

Teacher outputs
---------------
PANNs are clip-level taggers. The teacher cuts each waveform into windows of
``window_seconds`` (default 10 s, AudioSet's clip length) every
``hop_seconds`` (default: the window, i.e. no overlap) and runs the network on
each window, so ``frame_rate = 1 / hop_seconds`` windows per second and window
``i`` covers samples ``[i * hop, i * hop + window)``. A trailing remainder
shorter than a window is dropped (``num_frames(n) = 1 + (n - window) // hop``,
0 for ``n < window``) unless ``pad_last=True``, which zero-pads the last
partial window (and a clip shorter than one window) to a full window.

* ``scores``: the 527 sigmoid probabilities (``score_kind="probabilities"``,
  the default) or the pre-sigmoid logits (``score_kind="logits"``, better for
  distillation with temperature), ``task="multi_label"``.
* ``embeddings``: the ReLU output of ``fc1`` (2048-d for CNN14, 512-d for CNN6).
* ``labels``: from ``labels=`` (a path to AudioSet's
  ``class_labels_indices.csv`` with columns ``index,mid,display_name``, any
  CSV with a ``display_name`` column, a one-label-per-line text file, or a
  list of names); default ``"class_0" .. "class_526"``. The real names: AudioSet's
  ``class_labels_indices.csv`` from
  http://storage.googleapis.com/us_audioset/youtube_corpus/v1/csv/class_labels_indices.csv
  (also committed as ``metadata/class_labels_indices.csv`` in the
  audioset_tagging_cnn repository); column order = score column order.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import Teacher, TeacherOutput, register_teacher
from .generic import read_labels_file

ArchName = Literal["cnn14", "cnn6"]

SAMPLE_RATE = 32000
"""Sample rate of the published 32 kHz checkpoints."""
WINDOW_SIZE = 1024
"""STFT window and FFT length in samples."""
HOP_SIZE = 320
"""STFT hop in samples (10 ms at 32 kHz)."""
MEL_BINS = 64
FMIN = 50.0
FMAX = 14000.0
N_CLASSES = 527
"""AudioSet classes."""
AMIN = 1e-10
"""Floor of the mel power before the log (PANNs' ``amin``); ``ref`` is 1.0, ``top_db`` None."""
ZENODO_URL = "https://zenodo.org/record/3987831"
CHECKPOINT_FILES: dict[str, str] = {"cnn14": "Cnn14_mAP=0.431.pth", "cnn6": "Cnn6_mAP=0.343.pth"}
"""The published 32 kHz checkpoint of each architecture, on Zenodo."""
PUBLISHED_PARAMETER_COUNTS: dict[str, int] = {"cnn14": 80_753_615, "cnn6": 4_837_455}
"""Learnable parameters (front end excluded) of the published models: 80.8 M and 4.8 M in the paper."""


# --------------------------------------------------------------------------- front end


def hann_periodic(length: int) -> np.ndarray:
    """The periodic ("fftbins") Hann window of ``length`` samples, float64."""
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(length) / length)


def _hz_to_mel_slaney(hz: np.ndarray) -> np.ndarray:
    f_sp = 200.0 / 3
    min_log_hz, min_log_mel, logstep = 1000.0, 1000.0 / f_sp, math.log(6.4) / 27.0
    hz = np.asarray(hz, dtype=np.float64)
    mel = hz / f_sp
    high = hz >= min_log_hz
    mel[high] = min_log_mel + np.log(hz[high] / min_log_hz) / logstep
    return mel


def _mel_to_hz_slaney(mel: np.ndarray) -> np.ndarray:
    f_sp = 200.0 / 3
    min_log_hz, min_log_mel, logstep = 1000.0, 1000.0 / f_sp, math.log(6.4) / 27.0
    mel = np.asarray(mel, dtype=np.float64)
    hz = mel * f_sp
    high = mel >= min_log_mel
    hz[high] = min_log_hz * np.exp(logstep * (mel[high] - min_log_mel))
    return hz


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """Slaney-scale, Slaney-normalised triangular filters ``[n_mels, n_fft // 2 + 1]`` (float32).

    Equals ``librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels,
    fmin=fmin, fmax=fmax)`` (librosa's defaults ``htk=False, norm="slaney"``).
    """
    fft_freqs = np.linspace(0.0, sample_rate / 2.0, 1 + n_fft // 2)
    mel_edges = _mel_to_hz_slaney(
        np.linspace(_hz_to_mel_slaney(np.array([fmin]))[0], _hz_to_mel_slaney(np.array([fmax]))[0], n_mels + 2)
    )
    widths = np.diff(mel_edges)
    ramps = mel_edges[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_edges[2:] - mel_edges[:-2]))[:, None]
    return weights.astype(np.float32)


def dft_kernels(n_fft: int) -> tuple[np.ndarray, np.ndarray]:
    """Windowed DFT rows as conv kernels: (real, imag), each ``[n_fft // 2 + 1, 1, n_fft]`` float32.

    Row ``f``, tap ``k``: ``w[k] * cos(2 pi f k / n)`` and ``-w[k] * sin(2 pi f k / n)``,
    with ``w`` the periodic Hann window (the real and imaginary parts of
    ``exp(-2 pi i f k / n)`` times the window).
    """
    k = np.arange(n_fft)
    f = np.arange(n_fft // 2 + 1)
    # Reduce f * k modulo n exactly (integers) before the trigonometry, for accuracy.
    angle = 2.0 * np.pi * ((f[:, None] * k[None, :]) % n_fft) / n_fft
    window = hann_periodic(n_fft)[None, :]
    real = (np.cos(angle) * window).astype(np.float32)[:, None, :]
    imag = (-np.sin(angle) * window).astype(np.float32)[:, None, :]
    return real, imag


class _StftConv(nn.Module):
    """The STFT as two bias-free 1-D convolutions (``conv_real``, ``conv_imag``), frozen."""

    def __init__(self, n_fft: int, hop: int) -> None:
        super().__init__()
        bins = n_fft // 2 + 1
        self.n_fft = n_fft
        self.hop = hop
        self.conv_real = nn.Conv1d(1, bins, kernel_size=n_fft, stride=hop, bias=False)
        self.conv_imag = nn.Conv1d(1, bins, kernel_size=n_fft, stride=hop, bias=False)
        if not self.conv_real.weight.is_meta:  # built on "meta" when a checkpoint will fill it anyway
            real, imag = dft_kernels(n_fft)
            with torch.no_grad():
                self.conv_real.weight.copy_(torch.from_numpy(real))
                self.conv_imag.weight.copy_(torch.from_numpy(imag))
        self.requires_grad_(False)


class SpectrogramExtractor(nn.Module):
    """Centred (reflection-padded) power spectrogram: ``[batch, samples]`` -> ``[batch, 1, frames, bins]``.

    Its only child is ``stft`` so that the parameters are named
    ``spectrogram_extractor.stft.conv_real.weight`` / ``conv_imag.weight`` as in the checkpoints.
    """

    def __init__(self, n_fft: int = WINDOW_SIZE, hop: int = HOP_SIZE) -> None:
        super().__init__()
        self.stft = _StftConv(n_fft, hop)

    def forward(self, waveforms: Tensor) -> Tensor:
        n_fft = self.stft.n_fft
        if waveforms.shape[-1] <= n_fft // 2:
            raise ValueError(
                f"PANNs front end: need more than {n_fft // 2} samples for reflection padding, got {waveforms.shape[-1]}"
            )
        x = F.pad(waveforms[:, None, :], (n_fft // 2, n_fft // 2), mode="reflect")
        real = self.stft.conv_real(x)
        imag = self.stft.conv_imag(x)
        power = real.square() + imag.square()  # [batch, bins, frames]
        return power.transpose(1, 2)[:, None]


class LogmelExtractor(nn.Module):
    """Mel projection with ``melW`` ``[bins, n_mels]`` and ``10 log10(max(x, amin))`` (ref 1, no top_db)."""

    def __init__(
        self,
        sample_rate: int = SAMPLE_RATE,
        n_fft: int = WINDOW_SIZE,
        n_mels: int = MEL_BINS,
        fmin: float = FMIN,
        fmax: float = FMAX,
        amin: float = AMIN,
    ) -> None:
        super().__init__()
        self.amin = amin
        if torch.empty(0).is_meta:  # built on "meta" when a checkpoint will fill it anyway
            melw = torch.empty(n_fft // 2 + 1, n_mels)
        else:
            melw = torch.from_numpy(mel_filterbank(sample_rate, n_fft, n_mels, fmin, fmax).T.copy())
        self.melW = nn.Parameter(melw, requires_grad=False)

    def forward(self, power: Tensor) -> Tensor:
        mel = torch.matmul(power, self.melW)
        return 10.0 * torch.log10(mel.clamp_min(self.amin))


# --------------------------------------------------------------------------- networks


class ConvBlock(nn.Module):
    """CNN14's block: (3x3 conv -> BN -> ReLU) twice, then average pooling."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)

    def forward(self, x: Tensor, pool: int = 2) -> Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        return F.avg_pool2d(x, kernel_size=pool) if pool > 1 else x


class ConvBlock5x5(nn.Module):
    """CNN6's block: 5x5 conv -> BN -> ReLU, then average pooling."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=5, padding=2, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)

    def forward(self, x: Tensor, pool: int = 2) -> Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        return F.avg_pool2d(x, kernel_size=pool) if pool > 1 else x


_ARCHS: dict[str, tuple[type[nn.Module], tuple[int, ...], tuple[int, ...]]] = {
    # block type, channels, pool after each block
    "cnn14": (ConvBlock, (64, 128, 256, 512, 1024, 2048), (2, 2, 2, 2, 2, 1)),
    "cnn6": (ConvBlock5x5, (64, 128, 256, 512), (2, 2, 2, 2)),
}


class PannsNet(nn.Module):
    """A PANN (``cnn14`` or ``cnn6``): ``[batch, samples]`` -> (logits ``[batch, classes]``, embedding).

    Module names follow the published checkpoints (``spectrogram_extractor``,
    ``logmel_extractor``, ``bn0``, ``conv_block1``.., ``fc1``, ``fc_audioset``).
    """

    def __init__(
        self,
        arch: ArchName = "cnn14",
        sample_rate: int = SAMPLE_RATE,
        window_size: int = WINDOW_SIZE,
        hop_size: int = HOP_SIZE,
        mel_bins: int = MEL_BINS,
        fmin: float = FMIN,
        fmax: float = FMAX,
        classes_num: int = N_CLASSES,
    ) -> None:
        super().__init__()
        if arch not in _ARCHS:
            raise ValueError(f"PANNs architecture must be one of {sorted(_ARCHS)}, got {arch!r}")
        if not 0 <= fmin < fmax <= sample_rate / 2:
            raise ValueError(f"need 0 <= fmin < fmax <= sample_rate / 2, got fmin={fmin}, fmax={fmax}")
        self.arch = arch
        self.spectrogram_extractor = SpectrogramExtractor(window_size, hop_size)
        self.logmel_extractor = LogmelExtractor(sample_rate, window_size, mel_bins, fmin, fmax)
        self.bn0 = nn.BatchNorm2d(mel_bins)
        block, channels, pools = _ARCHS[arch]
        self.pools = pools
        previous = 1
        for i, width in enumerate(channels, start=1):
            setattr(self, f"conv_block{i}", block(previous, width))
            previous = width
        self.embedding_dim = previous
        self.fc1 = nn.Linear(previous, previous, bias=True)
        self.fc_audioset = nn.Linear(previous, classes_num, bias=True)
        # Smallest number of STFT frames that survives the pooling (each 2x2 pool floors).
        self.min_frames = 2 ** sum(1 for p in pools if p > 1)

    def logmel(self, waveforms: Tensor) -> Tensor:
        """``[batch, samples]`` -> log-mel ``[batch, 1, frames, mel_bins]`` (before ``bn0``)."""
        return self.logmel_extractor(self.spectrogram_extractor(waveforms))

    def forward(self, waveforms: Tensor) -> tuple[Tensor, Tensor]:
        """``[batch, samples]`` -> (logits ``[batch, classes]``, embedding ``[batch, embedding_dim]``)."""
        x = self.logmel(waveforms)
        # bn0 normalises each mel band: put the mel axis in the channel position and back.
        x = self.bn0(x.transpose(1, 3)).transpose(1, 3)
        for i, pool in enumerate(self.pools, start=1):
            x = getattr(self, f"conv_block{i}")(x, pool)
        x = x.mean(dim=3)  # over frequency -> [batch, channels, time]
        x = x.amax(dim=2) + x.mean(dim=2)
        embedding = F.relu(self.fc1(x))
        return self.fc_audioset(embedding), embedding


def learnable_parameter_count(net: PannsNet) -> int:
    """Parameters outside the fixed STFT/mel front end: what the paper counts (80.8 M for CNN14)."""
    front = {id(p) for m in (net.spectrogram_extractor, net.logmel_extractor) for p in m.parameters()}
    return sum(p.numel() for p in net.parameters() if id(p) not in front)


# --------------------------------------------------------------------------- checkpoints


class PannsCheckpointError(ValueError):
    """A checkpoint that does not hold the state dict of the requested PANN."""


def read_panns_state_dict(path: str | Path) -> dict[str, Tensor]:
    """The state dict in a PANNs checkpoint file (``{"model": state_dict}`` or a bare state dict).

    Loaded with ``torch.load(..., weights_only=True)`` on CPU. A DataParallel
    ``module.`` prefix on every key is removed.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"PANNs checkpoint not found: {path}. Download it from {ZENODO_URL}")
    obj = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(obj, Mapping) and isinstance(obj.get("model"), Mapping):
        state = dict(obj["model"])
    elif isinstance(obj, Mapping) and obj and all(isinstance(v, Tensor) for v in obj.values()):
        state = dict(obj)
    else:
        keys = sorted(obj)[:10] if isinstance(obj, Mapping) else type(obj).__name__
        raise PannsCheckpointError(
            f"{path}: expected {{'model': state_dict}} (the published PANNs format) or a state dict, got {keys}"
        )
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


def _summarise(keys: Sequence[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return f"{shown}, ... ({len(keys)} in all)" if len(keys) > limit else shown


def load_panns_weights(net: PannsNet, state: Mapping[str, Tensor], source: str = "checkpoint") -> None:
    """Load ``state`` into ``net`` with ``strict=True``, after checking keys and shapes with clear errors.

    Batch-norm ``num_batches_tracked`` counters (not used at inference) are the
    only keys that may be absent; they are then filled with 0. Every other
    tensor of ``net`` is overwritten, so ``net`` may hold uninitialised storage.
    """
    expected = net.state_dict()
    state = dict(state)
    for key in expected:
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = torch.zeros((), dtype=torch.long)
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing keys: {_summarise(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {_summarise(unexpected)}")
        raise PannsCheckpointError(f"{source} is not a PANNs {net.arch} state dict; " + "; ".join(parts))
    wrong = [
        f"{k} {tuple(state[k].shape)} (expected {tuple(v.shape)})"
        for k, v in expected.items()
        if tuple(state[k].shape) != tuple(v.shape)
    ]
    if wrong:
        raise PannsCheckpointError(
            f"{source}: shapes do not match PANNs {net.arch} with these front-end/class settings: {_summarise(wrong)}"
        )
    net.load_state_dict(state, strict=True)


# --------------------------------------------------------------------------- teacher


class PannsTeacher(Teacher):
    """A PANN as a clip-level AudioSet tagger over fixed windows; see the module docstring.

    Args:
        arch: ``"cnn14"`` or ``"cnn6"``.
        checkpoint: path to the published ``.pth`` (required).
        window_seconds: analysis window (default 10 s, AudioSet's clip length).
        hop_seconds: step between windows (default: ``window_seconds``).
        pad_last: zero-pad a trailing partial window instead of dropping it.
        labels: labels file (see `read_labels_file`) or names; default ``class_i``.
        score_kind: ``"probabilities"`` (sigmoid, PANNs' ``clipwise_output``) or ``"logits"``.
        max_windows: windows per network call (bounds memory on long input).
        sample_rate, window_size, hop_size, mel_bins, fmin, fmax, classes_num: the
            front end and head; defaults are the published 32 kHz models'.
        name: registry name reported by ``.name``.
    """

    task: Literal["multi_label", "multi_class"] = "multi_label"

    def __init__(
        self,
        arch: ArchName = "cnn14",
        checkpoint: str | Path | None = None,
        *,
        window_seconds: float = 10.0,
        hop_seconds: float | None = None,
        pad_last: bool = False,
        labels: str | Path | Sequence[str] | None = None,
        score_kind: Literal["probabilities", "logits"] = "probabilities",
        max_windows: int = 8,
        sample_rate: int = SAMPLE_RATE,
        window_size: int = WINDOW_SIZE,
        hop_size: int = HOP_SIZE,
        mel_bins: int = MEL_BINS,
        fmin: float = FMIN,
        fmax: float = FMAX,
        classes_num: int = N_CLASSES,
        name: str | None = None,
    ) -> None:
        super().__init__()
        if arch not in _ARCHS:
            raise ValueError(f"PANNs architecture must be one of {sorted(_ARCHS)}, got {arch!r}")
        if checkpoint is None:
            raise ValueError(
                f"panns-{arch} needs checkpoint= a local PANNs .pth file; nothing is downloaded. "
                f"Get {CHECKPOINT_FILES[arch]} from {ZENODO_URL} (PANNs' Zenodo record) and pass its path."
            )
        if score_kind not in ("probabilities", "logits"):
            raise ValueError(f"score_kind must be 'probabilities' or 'logits', got {score_kind!r}")
        if max_windows < 1:
            raise ValueError(f"max_windows must be >= 1, got {max_windows}")
        self.name = name or f"panns-{arch}"
        self.arch = arch
        self.sample_rate = int(sample_rate)
        self.score_kind = score_kind
        self.window_samples = round(window_seconds * sample_rate)
        hop = window_seconds if hop_seconds is None else hop_seconds
        self.hop_samples = round(hop * sample_rate)
        if self.hop_samples < 1:
            raise ValueError(f"hop_seconds must be positive, got {hop_seconds}")
        self.pad_last = bool(pad_last)
        self.max_windows = int(max_windows)
        self.frame_rate = self.sample_rate / self.hop_samples

        # Built on the meta device (no random initialisation of 80 M weights, no front-end
        # maths), then given real storage: the strict load below fills every tensor.
        with torch.device("meta"):
            net = PannsNet(arch, sample_rate, window_size, hop_size, mel_bins, fmin, fmax, classes_num)
        self.net = net.to_empty(device="cpu")
        stft_frames = 1 + self.window_samples // hop_size
        if stft_frames < self.net.min_frames:
            shortest = (self.net.min_frames - 1) * hop_size / sample_rate
            raise ValueError(
                f"{self.name}: window_seconds={window_seconds} gives {stft_frames} STFT frames; "
                f"{arch} needs at least {self.net.min_frames} (a window of at least {shortest:.3f} s)"
            )
        self.checkpoint_path = str(checkpoint)
        load_panns_weights(self.net, read_panns_state_dict(checkpoint), source=str(checkpoint))
        self.net.requires_grad_(False)
        self.net.eval()
        self.embedding_dim = self.net.embedding_dim
        if labels is None:
            self.labels = [f"class_{i}" for i in range(classes_num)]
        elif isinstance(labels, (str, Path)):
            self.labels = read_labels_file(labels)
        else:
            self.labels = [str(x) for x in labels]
        if len(self.labels) != classes_num:
            raise ValueError(f"{self.name}: {len(self.labels)} labels given for {classes_num} classes")

    def train(self, mode: bool = True) -> PannsTeacher:
        """Keep the network in eval mode whatever ``mode`` says: a teacher is frozen."""
        super().train(mode)
        self.net.eval()
        return self

    def num_frames(self, num_samples: int) -> int:
        """Windows in ``num_samples`` samples (see the module docstring)."""
        if num_samples < 0:
            raise ValueError(f"num_samples must be >= 0, got {num_samples}")
        if self.pad_last:
            if num_samples == 0:
                return 0
            return 1 + max(0, math.ceil((num_samples - self.window_samples) / self.hop_samples))
        if num_samples < self.window_samples:
            return 0
        return 1 + (num_samples - self.window_samples) // self.hop_samples

    def windows(self, waveforms: Tensor) -> Tensor:
        """``[batch, samples]`` -> ``[batch, windows, window_samples]`` (a copy only when padding)."""
        _check_waveforms(waveforms, self.name)
        count = self.num_frames(waveforms.shape[1])
        needed = (count - 1) * self.hop_samples + self.window_samples if count else 0
        if needed > waveforms.shape[1]:
            waveforms = F.pad(waveforms, (0, needed - waveforms.shape[1]))
        if count == 0:
            return waveforms.new_zeros(waveforms.shape[0], 0, self.window_samples)
        return waveforms[:, :needed].unfold(1, self.window_samples, self.hop_samples)

    def forward(self, waveforms: Tensor) -> TeacherOutput:
        """waveforms: float32 ``[batch, samples]`` at ``sample_rate`` -> one 527-vector per window."""
        windows = self.windows(waveforms)
        batch, count = windows.shape[:2]
        flat = windows.reshape(batch * count, self.window_samples)
        device = self.net.fc1.weight.device
        scores, embeddings = [], []
        with torch.no_grad():
            for start in range(0, flat.shape[0], self.max_windows):
                logits, emb = self.net(flat[start : start + self.max_windows].to(device))
                scores.append(torch.sigmoid(logits) if self.score_kind == "probabilities" else logits)
                embeddings.append(emb)
        n_labels = len(self.labels)
        if not scores:
            return TeacherOutput(
                scores=waveforms.new_zeros(batch, 0, n_labels), embeddings=waveforms.new_zeros(batch, 0, self.embedding_dim)
            )
        return TeacherOutput(
            scores=torch.cat(scores).reshape(batch, count, n_labels).to(waveforms.device),
            embeddings=torch.cat(embeddings).reshape(batch, count, self.embedding_dim).to(waveforms.device),
        )

    def extra_repr(self) -> str:
        return (
            f"arch={self.arch}, window_samples={self.window_samples}, hop_samples={self.hop_samples}, "
            f"pad_last={self.pad_last}, score_kind={self.score_kind}"
        )


def _check_waveforms(waveforms: Tensor, name: str) -> None:
    if not isinstance(waveforms, Tensor):
        raise TypeError(f"{name}: waveforms must be a torch.Tensor, got {type(waveforms).__name__}")
    if waveforms.dim() != 2:
        raise ValueError(f"{name}: waveforms must be [batch, samples], got shape {tuple(waveforms.shape)}")
    if waveforms.dtype != torch.float32:
        raise TypeError(f"{name}: waveforms must be float32, got {waveforms.dtype}")
    if not bool(torch.isfinite(waveforms).all()):
        raise ValueError(f"{name}: waveforms contain NaN or Inf")


def _factory(arch: ArchName) -> Callable[..., PannsTeacher]:
    def make(checkpoint: str | Path | None = None, **kwargs: object) -> PannsTeacher:
        return PannsTeacher(arch, checkpoint, **kwargs)  # type: ignore[arg-type]

    make.__doc__ = (
        f"PANNs {arch} from a local checkpoint (``checkpoint=``, e.g. {CHECKPOINT_FILES[arch]} from {ZENODO_URL})."
    )
    return make


register_teacher("panns-cnn14")(_factory("cnn14"))
register_teacher("panns-cnn6")(_factory("cnn6"))
