"""Filterbank weights in float64 numpy, from a `FrontendConfig`.

The C++ core builds its own filterbank from the same formulas (see
``cpp_ext/src/filterbank.cc``); this module serves the numpy reference and the
torch front end, and the tests hold the two against each other.
"""

from __future__ import annotations

import math
from typing import Protocol

import numpy as np


class FilterbankLayout(Protocol):
    """The fields of a `FrontendConfig` that lay out its filterbank.

    Typed structurally so that this module does not import `config`, which
    imports it to check that every band catches an FFT bin.
    """

    @property
    def sample_rate(self) -> int: ...
    @property
    def n_fft(self) -> int: ...
    @property
    def n_fft_bins(self) -> int: ...
    @property
    def filterbank(self) -> str: ...
    @property
    def filter_norm(self) -> str: ...
    @property
    def n_bins(self) -> int: ...
    @property
    def fmin(self) -> float: ...
    @property
    def fmax(self) -> float: ...
    @property
    def bins_per_octave(self) -> int: ...

# Slaney (Auditory Toolbox) mel scale: linear below 1 kHz, logarithmic above.
_SLANEY_F_SP = 200.0 / 3.0
_SLANEY_MIN_LOG_HZ = 1000.0
_SLANEY_MIN_LOG_MEL = _SLANEY_MIN_LOG_HZ / _SLANEY_F_SP
_SLANEY_LOGSTEP = math.log(6.4) / 27.0


def hz_to_mel(hz: np.ndarray, scale: str) -> np.ndarray:
    """Hz to mel on the ``htk`` or ``slaney`` scale (float64)."""
    hz = np.asarray(hz, dtype=np.float64)
    if scale == "htk":
        return 2595.0 * np.log10(1.0 + hz / 700.0)
    linear = hz / _SLANEY_F_SP
    log_part = _SLANEY_MIN_LOG_MEL + np.log(np.maximum(hz, _SLANEY_MIN_LOG_HZ) / _SLANEY_MIN_LOG_HZ) / _SLANEY_LOGSTEP
    return np.where(hz >= _SLANEY_MIN_LOG_HZ, log_part, linear)


def mel_to_hz(mel: np.ndarray, scale: str) -> np.ndarray:
    """Inverse of `hz_to_mel`."""
    mel = np.asarray(mel, dtype=np.float64)
    if scale == "htk":
        return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)
    linear = mel * _SLANEY_F_SP
    log_part = _SLANEY_MIN_LOG_HZ * np.exp(_SLANEY_LOGSTEP * (np.maximum(mel, _SLANEY_MIN_LOG_MEL) - _SLANEY_MIN_LOG_MEL))
    return np.where(mel >= _SLANEY_MIN_LOG_MEL, log_part, linear)


def filterbank_edges_hz(config: FilterbankLayout) -> np.ndarray:
    """The n_bins + 2 band points in Hz: band m spans points m .. m+2, peak at m+1."""
    c = config
    if c.filterbank == "logfreq":
        steps = np.arange(-1, c.n_bins + 1, dtype=np.float64)
        return c.fmin * 2.0 ** (steps / c.bins_per_octave)
    scale = "slaney" if c.filterbank == "mel_slaney" else "htk"
    lo, hi = hz_to_mel(np.array([c.fmin, c.fmax]), scale)
    return mel_to_hz(np.linspace(lo, hi, c.n_bins + 2), scale)


def filterbank_matrix(config: FilterbankLayout) -> np.ndarray:
    """Weights [n_bins, n_fft // 2 + 1] in float64 (band energies = W @ spectrum)."""
    c = config
    fft_hz = np.arange(c.n_fft_bins, dtype=np.float64) * (c.sample_rate / c.n_fft)
    edges = filterbank_edges_hz(c)
    if c.filterbank == "mel_kaldi":
        # Kaldi: triangles are linear on the mel axis, not in Hz.
        axis = hz_to_mel(fft_hz, "htk")
        points = hz_to_mel(edges, "htk")
    else:
        axis = fft_hz
        points = edges
    left, centre, right = points[:-2, None], points[1:-1, None], points[2:, None]
    rising = (axis[None, :] - left) / (centre - left)
    falling = (right - axis[None, :]) / (right - centre)
    weights = np.maximum(0.0, np.minimum(rising, falling))
    if c.filter_norm == "slaney":
        weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return weights


def empty_bands(config: FilterbankLayout) -> list[int]:
    """Indices of bands whose weights are all zero (no FFT bin inside)."""
    weights = filterbank_matrix(config)
    return [int(m) for m in np.flatnonzero(weights.max(axis=1) <= 0.0)]
