"""A float64 numpy implementation of the front end, written for clarity.

It is the yardstick the C++ and torch front ends are tested against: each step
of `FrontendConfig`'s recipe appears once, in order, with no optimisation.
"""

from __future__ import annotations

import numpy as np

from .config import FrontendConfig
from .filterbank import filterbank_matrix


def window_function(config: FrontendConfig) -> np.ndarray:
    """The analysis window, float64, length ``win_length``."""
    n = config.win_length
    if config.window == "rectangular":
        return np.ones(n)
    a, b = (0.5, 0.5) if config.window == "hann" else (0.54, 0.46)
    denom = n if config.window_periodic else n - 1
    return a - b * np.cos(2.0 * np.pi * np.arange(n) / denom)


def compress(energies: np.ndarray, config: FrontendConfig) -> np.ndarray:
    """Step 8 of the recipe, float64 in and out."""
    c = config
    if c.compression == "log":
        return np.log(energies + c.log_floor)
    if c.compression == "log_clamp":
        return np.log(np.maximum(energies, c.log_floor))
    if c.compression == "log10_1p":
        return np.log10(1.0 + c.log1p_scale * energies)
    if c.compression == "db":
        return 10.0 * np.log10(np.maximum(energies, c.log_floor) / c.db_ref)
    return energies


def reference_features(signal: np.ndarray, config: FrontendConfig) -> np.ndarray:
    """Features of a whole signal, [n_frames, n_bins], computed in float64.

    ``signal``: 1-D float (any precision, used as float64) or int16 (scaled
    by 1/32768). Returns float64; callers round to float32 to compare with
    the C++ output.
    """
    c = config
    x = np.asarray(signal)
    if x.dtype == np.int16:
        x = x.astype(np.float64) / 32768.0
    x = x.astype(np.float64)
    n_frames = c.num_frames(len(x))
    if n_frames == 0:
        return np.zeros((0, c.n_bins))
    starts = np.arange(n_frames)[:, None] * c.hop_length
    frames = x[starts + np.arange(c.win_length)[None, :]]
    if c.remove_dc_offset:
        frames = frames - frames.mean(axis=1, keepdims=True)
    if c.preemphasis:
        shifted = np.concatenate([frames[:, :1], frames[:, :-1]], axis=1)
        frames = frames - c.preemphasis * shifted
    frames = frames * window_function(c)[None, :]
    padded = np.zeros((n_frames, c.n_fft))
    offset = c.window_offset
    padded[:, offset : offset + c.win_length] = frames
    spectrum = np.abs(np.fft.rfft(padded, axis=1))
    if c.spectrum == "power":
        spectrum = spectrum**2
    energies = spectrum @ filterbank_matrix(c).T
    return compress(energies, c)
