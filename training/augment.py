"""Training augmentations on front-end features, deterministic given a `torch.Generator`.

Every function takes a batch ``features [batch, frames, bins]`` and draws its
randomness only from the ``generator`` passed in (never the global RNG), in a
fixed order, so the same generator state gives the same result on any run.

- `random_gain`: a level change of the *audio* by g dB, applied exactly in the
  feature domain: the compression is inverted to band energies, scaled by
  10^(g/10) (power spectrum) or 10^(g/20) (magnitude), and compressed again.
- `add_noise`: background noise at a random SNR, added to the band energies: frames of
  white and pink noise computed once by the real front end (`NoiseBank`), scaled so the
  summed band energy of noise is ``snr`` dB under the example's. Energies of independent
  signals add in expectation (power-spectrum front ends; magnitude ones are refused), so
  this is the front end of the noisy audio up to the cross terms' random fluctuation.
  The SNR is one of band energies, not of the waveform: white noise at 10 dB waveform SNR
  under a 220 Hz sawtooth is 17.8 dB under it in the pitch front end's log-frequency bands
  (measured), whose narrow low bands hold the tone. Teacher targets stay those of the clean audio.
- `time_shift`: circular shift along time by up to ``max_frames`` (frame-aligned
  targets such as teacher frames shift with it).
- `spec_augment`: SpecAugment-style time and frequency masks filled with each
  example's mean feature value.
- `mixup`: ``x = lam*x_i + (1-lam)*x_j`` with ``lam ~ Beta(alpha, alpha)`` per example
  and a random partner ``j`` in the batch; targets and soft targets mix with the
  same ``lam``, and masks combine as ``mask_i * mask_j`` (a label counts only
  where both examples know it).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from edgetag.runtime.frontend import FrontendConfig
from edgetag.training.frontend import compress, decompress
from torch import Tensor

__all__ = ["Augmenter", "NoiseBank", "add_noise", "mixup", "random_gain", "spec_augment", "time_shift"]


def _uniform(generator: torch.Generator, n: int, low: float, high: float) -> Tensor:
    return low + (high - low) * torch.rand(n, generator=generator, dtype=torch.float64)


def _randint(generator: torch.Generator, high: int, n: int = 1) -> Tensor:
    """n integers uniform in [0, high) (high >= 1)."""
    return torch.randint(0, max(1, high), (n,), generator=generator)


# ------------------------------------------------------------------------------ gain
def random_gain(features: Tensor, config: FrontendConfig, low_db: float, high_db: float, generator: torch.Generator) -> Tensor:
    """Each example's audio made louder or softer by a uniform random gain in [low_db, high_db]."""
    if low_db == high_db == 0.0:
        return features
    gain_db = _uniform(generator, features.shape[0], low_db, high_db).to(features.device)
    power = 10.0 if config.spectrum == "power" else 20.0
    scale = torch.pow(10.0, gain_db / power).view(-1, *([1] * (features.dim() - 1)))
    x = features.double()
    return compress(decompress(x, config) * scale, config).to(features.dtype)


# ------------------------------------------------------------------------------ noise
class NoiseBank:
    """Band energies [kinds, frames, bins] of seeded white and pink noise through the front end.

    16 s of each kind (1,600 frames at a 10 ms hop): each example draws its own stretch, so a student
    does not learn one noise texture. Power-spectrum front ends only: energies of independent signals
    add in expectation, magnitudes do not.
    """

    KINDS = ("white", "pink")

    def __init__(self, config: FrontendConfig, seconds: float = 16.0, seed: int = 0) -> None:
        from edgetag.runtime.frontend import compute_features

        if config.spectrum != "power":
            raise ValueError(f"noise augmentation needs a power-spectrum front end (energies add), got {config.spectrum!r}: "
                             "set augment.noise_probability = 0")
        rng = np.random.default_rng(seed)
        n = int(seconds * config.sample_rate)
        banks = []
        for kind in self.KINDS:
            x = rng.standard_normal(n)
            if kind == "pink":  # 1/f power: white noise shaped by 1/sqrt(f) in the frequency domain
                spectrum = np.fft.rfft(x)
                f = np.arange(len(spectrum), dtype=np.float64)
                f[0] = 1.0
                x = np.fft.irfft(spectrum / np.sqrt(f), n)
            x = (x / np.sqrt(np.mean(np.square(x)))).astype(np.float32)  # unit RMS (add_noise rescales anyway)
            banks.append(decompress(torch.from_numpy(compute_features(x, config)).double(), config))
        self.energies = torch.stack(banks)

    def draw(self, batch: int, frames: int, generator: torch.Generator) -> Tensor:
        """[batch, frames, bins] of noise energies: a random kind and a random stretch of it per example."""
        kinds, total, _ = self.energies.shape
        out = []
        for _ in range(batch):
            k = int(_randint(generator, kinds))
            start = int(_randint(generator, total - frames + 1)) if total > frames else 0
            piece = self.energies[k, start : start + frames]
            if piece.shape[0] < frames:  # a crop longer than the bank: repeat it
                piece = piece.repeat(-(-frames // piece.shape[0]), 1)[:frames]
            out.append(piece)
        return torch.stack(out)


def add_noise(features: Tensor, config: FrontendConfig, bank: NoiseBank, probability: float, low_db: float,
              high_db: float, generator: torch.Generator) -> Tensor:
    """Noise added to each example with ``probability``, its summed band energy ``snr`` dB under the example's,
    ``snr`` uniform in [low_db, high_db] (a power-spectrum front end: `NoiseBank`)."""
    if probability <= 0.0:
        return features
    batch, frames = features.shape[0], features.shape[1]
    chosen = torch.rand(batch, generator=generator, dtype=torch.float64) < probability
    snr_db = _uniform(generator, batch, low_db, high_db)
    noise = bank.draw(batch, frames, generator)
    if not bool(chosen.any()):
        return features
    energies = decompress(features.double(), config)
    noise = noise.to(energies.device)
    ratio = energies.sum(dim=(1, 2)) / noise.sum(dim=(1, 2)).clamp_min(1e-30)
    scale = ratio * torch.pow(10.0, -snr_db.to(energies.device) / 10.0)
    scale = torch.where(chosen.to(energies.device), scale, torch.zeros_like(scale)).view(-1, 1, 1)
    return compress(energies + scale * noise, config).to(features.dtype)


# ------------------------------------------------------------------------------ time shift
def time_shift(
    features: Tensor, max_frames: int, generator: torch.Generator, aligned: Sequence[Tensor | None] = ()
) -> tuple[Tensor, list[Tensor | None]]:
    """Roll each example by a random number of frames in [-max_frames, max_frames].

    ``aligned`` tensors ``[batch, frames, ...]`` (frame targets) roll with it; None passes through.
    """
    if max_frames <= 0:
        return features, list(aligned)
    shifts = (_randint(generator, 2 * max_frames + 1, features.shape[0]) - max_frames).tolist()
    out = torch.stack([torch.roll(f, s, dims=0) for f, s in zip(features, shifts)])
    rolled: list[Tensor | None] = []
    for t in aligned:
        rolled.append(None if t is None else torch.stack([torch.roll(r, s, dims=0) for r, s in zip(t, shifts)]))
    return out, rolled


# ------------------------------------------------------------------------------ SpecAugment
def spec_augment(
    features: Tensor,
    time_masks: int,
    time_width: int,
    freq_masks: int,
    freq_width: int,
    generator: torch.Generator,
) -> Tensor:
    """Mask up to ``time_masks`` bands of <= ``time_width`` frames and ``freq_masks`` of <= ``freq_width`` bins."""
    if (time_masks == 0 or time_width == 0) and (freq_masks == 0 or freq_width == 0):
        return features
    out = features.clone()
    batch, frames, bins = features.shape
    for b in range(batch):
        fill = features[b].mean()
        for _ in range(time_masks if time_width > 0 else 0):
            w = int(_randint(generator, min(time_width, frames) + 1))
            t0 = int(_randint(generator, frames - w + 1))
            out[b, t0 : t0 + w, :] = fill
        for _ in range(freq_masks if freq_width > 0 else 0):
            w = int(_randint(generator, min(freq_width, bins) + 1))
            f0 = int(_randint(generator, bins - w + 1))
            out[b, :, f0 : f0 + w] = fill
    return out


# ------------------------------------------------------------------------------ mixup
def _beta(generator: torch.Generator, alpha: float, n: int) -> Tensor:
    """n draws of Beta(alpha, alpha), seeded from ``generator`` (torch has no seeded Beta sampler)."""
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    return torch.from_numpy(np.random.default_rng(seed).beta(alpha, alpha, size=n))


def mixup(
    features: Tensor,
    targets: Tensor,
    mask: Tensor,
    alpha: float,
    generator: torch.Generator,
    extras: Sequence[Tensor | None] = (),
) -> tuple[Tensor, Tensor, Tensor, list[Tensor | None]]:
    """Mix each example with a random partner of the batch.

    Returns mixed ``(features, targets, mask, extras)``; ``extras`` (soft targets,
    teacher embeddings; None passes through) mix with the same coefficients.
    """
    batch = features.shape[0]
    if alpha <= 0 or batch < 2:
        return features, targets, mask, list(extras)
    lam = _beta(generator, alpha, batch)
    perm = torch.randperm(batch, generator=generator)

    def mix(t: Tensor) -> Tensor:
        lt = lam.to(t.device, t.dtype).view(-1, *([1] * (t.dim() - 1)))
        return lt * t + (1.0 - lt) * t[perm.to(t.device)]

    mixed_extras = [None if e is None else mix(e) for e in extras]
    return mix(features), mix(targets), mask * mask[perm.to(mask.device)], mixed_extras


class Augmenter:
    """The configured augmentations for one example at a time, plus mixup over a batch."""

    def __init__(self, config: object, frontend: FrontendConfig) -> None:
        self.config = config
        self.frontend = frontend
        self.shift_frames = math.floor(config.time_shift_seconds * frontend.frame_rate)
        self.noise = NoiseBank(frontend) if config.noise_probability > 0 else None

    def example(self, features: Tensor, aligned: Sequence[Tensor | None], generator: torch.Generator) -> tuple[Tensor, list[Tensor | None]]:
        """Gain, noise, time shift and masks of a batch (one generator; call per example for per-example streams)."""
        c = self.config
        x = random_gain(features, self.frontend, float(c.gain_db[0]), float(c.gain_db[1]), generator)
        if self.noise is not None:
            x = add_noise(x, self.frontend, self.noise, c.noise_probability, float(c.noise_snr_db[0]),
                          float(c.noise_snr_db[1]), generator)
        x, aligned = time_shift(x, self.shift_frames, generator, aligned)
        x = spec_augment(x, c.time_masks, c.time_mask_frames, c.freq_masks, c.freq_mask_bins, generator)
        return x, list(aligned)

    def batch(
        self, features: Tensor, targets: Tensor, mask: Tensor, extras: Sequence[Tensor | None], generator: torch.Generator
    ) -> tuple[Tensor, Tensor, Tensor, list[Tensor | None]]:
        return mixup(features, targets, mask, self.config.mixup_alpha, generator, extras)
