"""The C++ front end (batch and streaming) against the float64 numpy reference.

Every preset plus configs that exercise each convention of `FrontendConfig`
(filterbank kinds, window shapes and placement, magnitude spectrum, DC removal
and pre-emphasis, every compression), on signals that stress different parts
of the computation: broadband noise, tones, a chirp, silence, full-scale
square waves and int16 input.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from edgetag import _core
from edgetag.runtime.frontend import (
    PRESETS,
    FrontendConfig,
    StreamingFrontend,
    compute_features,
    filterbank_matrix,
    reference_features,
)

TOLERANCE = 1e-4  # max abs difference of the compressed output (float32 output vs float64 reference)

_DEFAULT = PRESETS["default"]
CONFIGS: dict[str, FrontendConfig] = {
    **{f"preset_{name}": config for name, config in PRESETS.items()},
    "mel_htk": _DEFAULT.replace(filterbank="mel_htk", filter_norm="none"),
    "mel_htk_slaney_norm": _DEFAULT.replace(filterbank="mel_htk", filter_norm="slaney"),
    "mel_slaney_no_norm": _DEFAULT.replace(filter_norm="none"),
    "mel_kaldi_slaney_norm": PRESETS["kaldi"].replace(filter_norm="slaney"),
    "logfreq_12": FrontendConfig(
        win_length=1024, hop_length=256, n_fft=2048, filterbank="logfreq", filter_norm="none",
        fmin=250.0, fmax=8000.0, n_bins=60, bins_per_octave=12,
    ),
    "logfreq_3_slaney_norm": _DEFAULT.replace(filterbank="logfreq", fmin=125.0, n_bins=18, bins_per_octave=3),
    "magnitude": _DEFAULT.replace(spectrum="magnitude"),
    "symmetric_hann": _DEFAULT.replace(window_periodic=False),
    "symmetric_hamming": _DEFAULT.replace(window="hamming", window_periodic=False),
    "periodic_hamming": _DEFAULT.replace(window="hamming"),
    "rectangular": _DEFAULT.replace(window="rectangular"),
    "window_center": _DEFAULT.replace(window_placement="center"),
    "hop_equals_win": _DEFAULT.replace(hop_length=400),
    "dc_and_preemphasis": PRESETS["kaldi"].replace(remove_dc_offset=True, preemphasis=0.97),
    "preemphasis_only": _DEFAULT.replace(preemphasis=0.5),
    "compress_log_clamp": _DEFAULT.replace(compression="log_clamp"),
    "compress_log10_1p": _DEFAULT.replace(compression="log10_1p", log1p_scale=100.0),
    "compress_db": _DEFAULT.replace(compression="db", log_floor=1e-10, db_ref=0.01),
    "compress_none": _DEFAULT.replace(compression="none", filter_norm="none"),
    "tiny_fft": FrontendConfig(
        sample_rate=8000, win_length=8, hop_length=3, n_fft=8, filterbank="mel_htk", filter_norm="none",
        n_bins=2, fmin=0.0, fmax=4000.0,
    ),
}


def _tone(sr: int, freqs_hz: tuple[float, ...], amplitude: float) -> np.ndarray:
    t = np.arange(sr) / sr
    return amplitude * sum(np.sin(2 * np.pi * f * t + i) for i, f in enumerate(freqs_hz))


def _chirp(sr: int) -> np.ndarray:
    t = np.arange(sr) / sr
    f0, f1 = 30.0, 0.45 * sr  # linear sweep over the second
    return 0.8 * np.sin(2 * np.pi * (f0 * t + 0.5 * (f1 - f0) * t * t))


def _square(sr: int) -> np.ndarray:
    t = np.arange(sr) / sr
    return np.where(np.sin(2 * np.pi * 220.0 * t + 0.1) >= 0, 1.0, -1.0)


def _int16_noise(sr: int) -> np.ndarray:
    x = np.random.default_rng(3).integers(-32768, 32768, sr).astype(np.int16)
    x[:4] = [-32768, 32767, -32768, 32767]
    return x


#: name -> sample_rate -> 1 s of samples (float32 unless the name says otherwise).
SIGNALS: dict[str, Callable[[int], np.ndarray]] = {
    "white_noise": lambda sr: np.random.default_rng(1).uniform(-1, 1, sr).astype(np.float32),
    "white_noise_float64": lambda sr: np.random.default_rng(2).standard_normal(sr).clip(-1, 1) * 0.5,
    "sines": lambda sr: _tone(sr, (440.0, 1234.5, 3000.0), 0.3).astype(np.float32),
    "chirp": lambda sr: _chirp(sr).astype(np.float32),
    "silence": lambda sr: np.zeros(sr, np.float32),
    "square_full_scale": lambda sr: _square(sr).astype(np.float32),
    "int16": _int16_noise,
}


def _streamed(config: FrontendConfig, x: np.ndarray, chunk: int = 1000) -> np.ndarray:
    stream = StreamingFrontend(config)
    parts = [stream.push(x[i : i + chunk]) for i in range(0, len(x), chunk)]
    return np.concatenate(parts, axis=0)


IMPLEMENTATIONS: dict[str, Callable[[FrontendConfig, np.ndarray], np.ndarray]] = {
    "compute_features": lambda config, x: compute_features(x, config),
    "streaming": _streamed,
}


@pytest.mark.parametrize("impl", sorted(IMPLEMENTATIONS))
@pytest.mark.parametrize("signal", sorted(SIGNALS))
@pytest.mark.parametrize("config_name", sorted(CONFIGS))
def test_cpp_matches_reference(config_name: str, signal: str, impl: str) -> None:
    config = CONFIGS[config_name]
    x = SIGNALS[signal](config.sample_rate)
    expected = reference_features(x, config)
    got = IMPLEMENTATIONS[impl](config, x)
    assert got.dtype == np.float32
    assert got.shape == expected.shape == (config.num_frames(len(x)), config.n_bins)
    assert np.all(np.isfinite(got))
    if config.compression == "none":
        # Raw energies reach thousands for full-scale input: compare relative to the frame's peak.
        scale = np.maximum(1.0, np.abs(expected).max(axis=1, keepdims=True))
        diff = np.abs(got - expected) / scale
    else:
        diff = np.abs(got - expected)
    assert diff.max() <= TOLERANCE, f"max diff {diff.max():.3g} at {np.unravel_index(diff.argmax(), diff.shape)}"


@pytest.mark.parametrize("config_name", sorted(CONFIGS))
def test_silence_gives_the_compressed_floor(config_name: str) -> None:
    config = CONFIGS[config_name]
    got = compute_features(np.zeros(2 * config.win_length, np.float32), config)
    floor = {
        "log": np.log(config.log_floor),
        "log_clamp": np.log(config.log_floor),
        "log10_1p": 0.0,
        "db": 10 * np.log10(config.log_floor / config.db_ref),
        "none": 0.0,
    }[config.compression]
    np.testing.assert_allclose(got, np.float32(floor), rtol=0, atol=1e-6)


def test_int16_is_scaled_by_1_over_32768() -> None:
    config = PRESETS["default"]
    x = _int16_noise(16000)
    np.testing.assert_array_equal(compute_features(x, config), compute_features(x / 32768.0, config))


def test_float32_and_float64_inputs_agree() -> None:
    config = PRESETS["default"]
    x = SIGNALS["white_noise"](16000)
    np.testing.assert_array_equal(compute_features(x, config), compute_features(x.astype(np.float64), config))


@pytest.mark.parametrize("config_name", sorted(CONFIGS))
def test_cpp_filterbank_matches_numpy(config_name: str) -> None:
    config = CONFIGS[config_name]
    cpp = _core.filterbank_matrix(config)
    ref = filterbank_matrix(config)
    assert cpp.dtype == np.float64
    assert cpp.shape == ref.shape == (config.n_bins, config.n_fft_bins)
    assert np.abs(cpp - ref).max() <= 1e-12
    # Zero exactly where the reference is zero: the C++ core stores only the non-zero span.
    np.testing.assert_array_equal(cpp == 0, ref == 0)


@pytest.mark.parametrize("n", [2**k for k in range(2, 13)])
def test_cpp_rfft_matches_numpy(n: int) -> None:
    rng = np.random.default_rng(n)
    inputs = [
        rng.standard_normal(n),
        np.ones(n),
        np.eye(1, n, 0)[0],  # impulse at 0
        np.eye(1, n, n - 1)[0],  # impulse at the end
        np.cos(2 * np.pi * 3 * np.arange(n) / n),
        np.resize([1.0, -1.0], n),  # Nyquist
    ]
    for x in inputs:
        re, im = _core.rfft(x)
        expected = np.fft.rfft(x)
        assert re.shape == im.shape == (n // 2 + 1,)
        err = np.abs((re + 1j * im) - expected).max() / np.linalg.norm(expected)
        assert err <= 1e-9, f"n={n}: relative error {err:.3g}"
        assert im[0] == 0.0 and im[-1] == 0.0


@pytest.mark.parametrize("placement", ["left", "center"])
@pytest.mark.parametrize("n_fft", [2**k for k in range(2, 13)])
def test_every_fft_size_through_the_pipeline(n_fft: int, placement: str) -> None:
    """The per-frame power spectrum (not only the rfft binding) at every supported size."""
    win = n_fft if placement == "left" else max(2, 3 * n_fft // 4)
    config = FrontendConfig(
        win_length=win, hop_length=max(1, win // 3), n_fft=n_fft, window_placement=placement,
        filterbank="mel_htk", filter_norm="none", n_bins=max(1, min(40, n_fft // 8)), fmin=0.0, fmax=8000.0,
    )
    x = SIGNALS["white_noise"](config.sample_rate)
    got = compute_features(x, config)
    assert got.shape[0] == config.num_frames(len(x)) > 0
    assert np.abs(got - reference_features(x, config)).max() <= TOLERANCE


@pytest.mark.parametrize("n", [0, 1, 2, 3, 6, 12, 100, 1000])
def test_cpp_rfft_rejects_sizes_it_does_not_support(n: int) -> None:
    with pytest.raises(ValueError, match="power of two >= 4"):
        _core.rfft(np.zeros(n))


@pytest.mark.parametrize(
    ("changes", "signal"),
    [
        ({"compression": "log", "log_floor": 1e-30}, "silence"),
        ({"compression": "log_clamp", "log_floor": 1e-30}, "silence"),
        ({"compression": "db", "log_floor": 1e-30}, "silence"),
        ({"compression": "db", "log_floor": 1e-30, "db_ref": 1e30}, "silence"),
        ({"compression": "db", "log_floor": 1e-30, "db_ref": 1e30}, "white_noise"),
        ({"compression": "db", "log_floor": 1e-10, "db_ref": 1e-40}, "square_full_scale"),
        ({"compression": "db", "log_floor": 1e-10, "db_ref": 1e-300}, "square_full_scale"),
    ],
    ids=["log_floor_min", "log_clamp_floor_min", "db_floor_min", "db_ref_max_silence", "db_ref_max_noise",
         "db_ref_1e-40", "db_ref_1e-300"],
)
def test_extreme_but_valid_floors_and_references(changes: dict, signal: str) -> None:
    """The ends of the valid ranges (floor >= 1e-30, 0 < db_ref <= 1e30): the log's argument spans
    1e-60 .. 1e305, and the C++ log must be right everywhere (to float32 rounding: relative
    tolerance, the values reach thousands of dB).
    """
    config = PRESETS["default"].replace(**changes)
    x = SIGNALS[signal](config.sample_rate)
    expected = reference_features(x, config)
    assert np.all(np.isfinite(expected))
    got = compute_features(x, config)
    assert np.all(np.isfinite(got)), f"{np.count_nonzero(~np.isfinite(got))} non-finite values"
    diff = np.abs(got - expected) / np.maximum(1.0, np.abs(expected))
    assert diff.max() <= TOLERANCE, f"got {got.ravel()[diff.argmax()]}, expected {expected.ravel()[diff.argmax()]}"
