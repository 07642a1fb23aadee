"""The spectrogram front end in torch, for training: same `FrontendConfig`, same numbers.

`TorchFrontend` computes, batched and differentiably, exactly the recipe that
`edgetag.runtime.frontend.config` documents and that the C++ streaming front
end runs at inference time:

1. frame ``i`` covers samples ``[i*hop, i*hop + win)`` (``Tensor.unfold``: no
   centring, no padding, no dither);
2. per frame, ``remove_dc_offset`` then Kaldi-style ``preemphasis``;
3. the window, placed at ``config.window_offset`` in a zero frame of ``n_fft``
   samples (explicit zero padding, never ``torch.stft``'s defaults);
4. ``torch.fft.rfft``, then ``|X|**2`` or ``|X|``;
5. the filterbank of `edgetag.runtime.frontend.filterbank_matrix`;
6. the compression, with the same formula as the C++ core.

Precision: the C++ core computes in float64 and rounds the output to float32.
Float32 FFTs lose the low-energy bands of a frame (their rounding error scales
with the frame's total energy, not with the band's), and a log or dB of those
bands turns that into errors of 1e-3 and more. So the module computes in
float64 by default (``compute_dtype``) and returns float32 (``output_dtype``):
its output then matches the C++ front end to float32 rounding, while the
model around it trains in float32. Pass ``compute_dtype=torch.float32`` for
speed on hardware with slow float64, at the cost of that agreement.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from edgetag.runtime.frontend import FrontendConfig, filterbank_matrix
from edgetag.runtime.frontend.reference import window_function

__all__ = ["TorchFrontend", "compress", "decompress"]


class TorchFrontend(torch.nn.Module):
    """Batched, differentiable spectrogram front end built from a `FrontendConfig`.

    ``forward(waveforms)`` maps ``[batch, samples]`` (floating point in
    [-1, 1], or int16 scaled by 1/32768) to ``[batch, frames, n_bins]`` with
    ``frames = config.num_frames(samples)``. The window and the filterbank
    are non-persistent buffers: they follow ``.to(device)`` and stay out of
    the ``state_dict`` (the config, not the weights, defines them). Unlike
    the C++ stream it does not scan for NaN or Inf (that would synchronise
    the GPU on every batch): non-finite samples give non-finite features.

    Args:
        config: the front end to compute.
        compute_dtype: floating dtype of the internal computation (float64 by
            default, to match the C++ front end; see the module docstring).
        output_dtype: dtype of the returned features (float32 by default).
    """

    window: Tensor
    filterbank: Tensor

    def __init__(
        self,
        config: FrontendConfig,
        *,
        compute_dtype: torch.dtype = torch.float64,
        output_dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        if not isinstance(config, FrontendConfig):
            raise TypeError(f"config must be a FrontendConfig, got {type(config).__name__}")
        for name, dtype in (("compute_dtype", compute_dtype), ("output_dtype", output_dtype)):
            if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
                raise TypeError(f"{name} must be a floating-point torch dtype, got {dtype!r}")
        self.config = config
        self.compute_dtype = compute_dtype
        self.output_dtype = output_dtype
        # float64 from the same formulas as the numpy reference and the C++ core.
        self.register_buffer("window", torch.from_numpy(window_function(config)), persistent=False)
        self.register_buffer("filterbank", torch.from_numpy(filterbank_matrix(config)), persistent=False)

    @property
    def n_bins(self) -> int:
        """Values per frame."""
        return self.config.n_bins

    def num_frames(self, num_samples: int) -> int:
        """Frames a signal of ``num_samples`` samples yields (no padding)."""
        return self.config.num_frames(num_samples)

    def forward(self, waveforms: Tensor) -> Tensor:
        """Features of a batch of whole signals.

        Args:
            waveforms: ``[batch, samples]``, floating point or int16.

        Returns:
            ``[batch, config.num_frames(samples), n_bins]`` in ``output_dtype``.
        """
        c = self.config
        x = self._as_samples(waveforms)
        batch, num_samples = x.shape
        n_frames = c.num_frames(num_samples)
        if n_frames == 0:
            # unfold needs at least one whole frame; keep the graph connected anyway.
            return x.new_zeros((batch, 0, c.n_bins)).to(self.output_dtype) + 0.0 * x.sum()

        frames = x.unfold(-1, c.win_length, c.hop_length)  # [batch, frames, win]
        if c.remove_dc_offset:
            frames = frames - frames.mean(dim=-1, keepdim=True)
        if c.preemphasis:
            p = c.preemphasis
            # Kaldi: x[j] -= p*x[j-1] for j >= 1 (from the old values), x[0] -= p*x[0].
            frames = torch.cat([frames[..., :1] * (1.0 - p), frames[..., 1:] - p * frames[..., :-1]], dim=-1)
        frames = frames * self.window.to(self.compute_dtype)

        left = c.window_offset
        frames = F.pad(frames, (left, c.n_fft - c.win_length - left), mode="constant", value=0.0)
        spectrum = torch.fft.rfft(frames, n=c.n_fft, dim=-1, norm="backward")
        if c.spectrum == "power":
            spectrum = spectrum.real.square() + spectrum.imag.square()
        else:
            # abs() has a zero (not NaN) gradient at X = 0, unlike sqrt(power).
            spectrum = spectrum.abs()

        energies = torch.matmul(spectrum, self.filterbank.to(self.compute_dtype).T)
        return compress(energies, self.config).to(self.output_dtype)

    def _as_samples(self, waveforms: Tensor) -> Tensor:
        """Checks the input and converts it to ``compute_dtype`` in [-1, 1]."""
        if not isinstance(waveforms, Tensor):
            raise TypeError(f"waveforms must be a torch.Tensor, got {type(waveforms).__name__}")
        if waveforms.dim() != 2:
            raise ValueError(
                f"waveforms must be [batch, samples], got shape {tuple(waveforms.shape)}; "
                "use x.unsqueeze(0) for one signal and downmix multi-channel audio first"
            )
        if waveforms.dtype == torch.int16:
            return waveforms.to(self.compute_dtype) / 32768.0
        if not waveforms.dtype.is_floating_point:
            raise TypeError(f"waveforms must be floating point or int16, got {waveforms.dtype}")
        return waveforms.to(self.compute_dtype)

    def extra_repr(self) -> str:
        return f"{self.config.describe()}; compute {self.compute_dtype}, output {self.output_dtype}"


def compress(energies: Tensor, config: FrontendConfig) -> Tensor:
    """Step 8 of the recipe (band energies -> features), written as the C++ core writes it."""
    c = config
    if c.compression == "log":
        return torch.log(energies + c.log_floor)
    if c.compression == "log_clamp":
        return torch.log(torch.clamp(energies, min=c.log_floor))
    if c.compression == "log10_1p":
        return torch.log10(1.0 + c.log1p_scale * energies)
    if c.compression == "db":
        return 10.0 * torch.log10(torch.clamp(energies, min=c.log_floor) / c.db_ref)
    return energies


def decompress(features: Tensor, config: FrontendConfig) -> Tensor:
    """Inverse of `compress` (exact except where the floor clamped: those come back at the floor)."""
    c = config
    if c.compression == "log":
        return (torch.exp(features) - c.log_floor).clamp_min(0.0)
    if c.compression == "log_clamp":
        return torch.exp(features)
    if c.compression == "log10_1p":
        return (torch.pow(10.0, features) - 1.0).clamp_min(0.0) / c.log1p_scale
    if c.compression == "db":
        return c.db_ref * torch.pow(10.0, features / 10.0)
    return features
