"""TorchFrontend (training) against the C++ front end (inference) and the float64 reference."""

from __future__ import annotations

import numpy as np
import pytest

from edgetag.runtime.frontend import PRESETS, FrontendConfig, compute_features, reference_features

torch = pytest.importorskip("torch")
from edgetag.training.frontend import TorchFrontend  # noqa: E402  (needs torch)

TOLERANCE = 1e-5  # torch (float32 output) vs C++ (float32 output)

_DEFAULT = PRESETS["default"]
CONFIGS: dict[str, FrontendConfig] = {
    **{f"preset_{name}": config for name, config in PRESETS.items()},
    "mel_htk": _DEFAULT.replace(filterbank="mel_htk", filter_norm="none"),
    "logfreq": FrontendConfig(
        win_length=1024, hop_length=256, n_fft=2048, filterbank="logfreq", fmin=250.0, n_bins=60, bins_per_octave=12
    ),
    "magnitude_symmetric_hamming": _DEFAULT.replace(spectrum="magnitude", window="hamming", window_periodic=False),
    "rectangular_center": _DEFAULT.replace(window="rectangular", window_placement="center"),
    "dc_and_preemphasis": PRESETS["kaldi"].replace(remove_dc_offset=True, preemphasis=0.97),
    "compress_log_clamp": _DEFAULT.replace(compression="log_clamp"),
    "compress_log10_1p": _DEFAULT.replace(compression="log10_1p"),
    "compress_db": _DEFAULT.replace(compression="db", log_floor=1e-10, db_ref=0.01),
    "compress_none": _DEFAULT.replace(compression="none"),
}


def _signals(sr: int, n: int | None = None) -> dict[str, np.ndarray]:
    n = n or sr
    rng = np.random.default_rng(5)
    t = np.arange(n) / sr
    return {
        "noise": rng.uniform(-1, 1, n).astype(np.float32),
        "sines": (0.3 * (np.sin(2 * np.pi * 440 * t) + np.sin(2 * np.pi * 3000 * t + 1))).astype(np.float32),
        "chirp": (0.8 * np.sin(2 * np.pi * (30 * t + 0.5 * (0.45 * sr - 30) * t * t))).astype(np.float32),
        "silence": np.zeros(n, np.float32),
        "square": np.where(np.sin(2 * np.pi * 220 * t + 0.1) >= 0, 1.0, -1.0).astype(np.float32),
    }


def _torch_features(config: FrontendConfig, x: np.ndarray, **kwargs) -> np.ndarray:
    with torch.no_grad():
        return TorchFrontend(config, **kwargs)(torch.from_numpy(x)[None])[0].numpy()


def _diff(got: np.ndarray, expected: np.ndarray, config: FrontendConfig) -> float:
    diff = np.abs(got.astype(np.float64) - expected.astype(np.float64))
    if config.compression == "none":  # raw energies: relative to the frame's peak
        diff /= np.maximum(1.0, np.abs(expected).max(axis=1, keepdims=True))
    return float(diff.max())


@pytest.mark.parametrize("signal", sorted(_signals(16000)))
@pytest.mark.parametrize("config_name", sorted(CONFIGS))
def test_torch_matches_cpp(config_name: str, signal: str) -> None:
    config = CONFIGS[config_name]
    x = _signals(config.sample_rate)[signal]
    got = _torch_features(config, x)
    expected = compute_features(x, config)
    assert got.dtype == np.float32 and got.shape == expected.shape
    assert _diff(got, expected, config) <= TOLERANCE


@pytest.mark.parametrize("config_name", sorted(CONFIGS))
def test_torch_is_the_float64_reference_rounded(config_name: str) -> None:
    """Computed in float64 inside, the output is the reference up to float32 rounding."""
    config = CONFIGS[config_name]
    x = _signals(config.sample_rate)["sines"]
    got = _torch_features(config, x)
    expected = reference_features(x, config)
    np.testing.assert_allclose(got, expected, rtol=2**-23, atol=1e-7)


def test_int16_input_is_scaled() -> None:
    config = PRESETS["kaldi"]
    x = np.random.default_rng(2).integers(-32768, 32768, 16000).astype(np.int16)
    with torch.no_grad():
        got = TorchFrontend(config)(torch.from_numpy(x)[None])[0].numpy()
    assert _diff(got, compute_features(x, config), config) <= TOLERANCE


def test_float32_compute_is_close_on_broadband_audio() -> None:
    """compute_dtype=float32 trades agreement for speed: fine on noise, not on deep spectral valleys."""
    config = PRESETS["default"]
    x = _signals(config.sample_rate)["noise"]
    got = _torch_features(config, x, compute_dtype=torch.float32)
    assert _diff(got, compute_features(x, config), config) <= 1e-4


def test_batch_equals_per_signal() -> None:
    config = PRESETS["default"]
    signals = _signals(config.sample_rate, n=config.sample_rate // 2)
    names = ["noise", "sines", "chirp", "silence"]
    batch = torch.from_numpy(np.stack([signals[n] for n in names]))
    fe = TorchFrontend(config)
    with torch.no_grad():
        together = fe(batch)
        assert together.shape == (4, config.num_frames(batch.shape[1]), config.n_bins)
        for i, name in enumerate(names):
            alone = fe(batch[i : i + 1])[0]
            torch.testing.assert_close(together[i], alone, rtol=0, atol=1e-6)
            assert _diff(together[i].numpy(), compute_features(signals[name], config), config) <= TOLERANCE


@pytest.mark.parametrize("config_name", sorted(CONFIGS))
def test_gradient_flows(config_name: str) -> None:
    config = CONFIGS[config_name]
    signals = _signals(config.sample_rate, n=config.win_length + 5 * config.hop_length)
    x = torch.from_numpy(np.stack([signals["noise"], signals["silence"]])).requires_grad_(True)
    out = TorchFrontend(config)(x)
    assert out.requires_grad and out.dtype == torch.float32
    assert out.shape == (2, 6, config.n_bins)
    out.square().mean().backward()
    assert x.grad is not None and x.grad.shape == x.shape and x.grad.dtype == torch.float32
    assert torch.isfinite(x.grad).all()  # also on silence (|X| = 0) for the magnitude spectrum
    assert x.grad[0].abs().sum() > 0


@pytest.mark.parametrize(
    "config",
    [
        FrontendConfig(
            sample_rate=8000, win_length=12, hop_length=5, n_fft=16, n_bins=3, fmax=4000.0,
            window_placement="center", remove_dc_offset=True, preemphasis=0.9, compression="log",
        ),
        FrontendConfig(
            sample_rate=8000, win_length=16, hop_length=16, n_fft=16, n_bins=2, fmax=4000.0,
            filterbank="mel_kaldi", filter_norm="none", spectrum="magnitude", compression="db", log_floor=1e-12,
        ),
        FrontendConfig(
            sample_rate=8000, win_length=8, hop_length=3, n_fft=8, n_bins=2, fmax=4000.0,
            filterbank="mel_htk", window="hamming", window_periodic=False, compression="log10_1p",
        ),
    ],
    ids=["log_dc_preemph", "magnitude_db", "log10_1p"],
)
def test_gradcheck(config: FrontendConfig) -> None:
    fe = TorchFrontend(config, output_dtype=torch.float64)
    x = torch.randn(2, 40, dtype=torch.float64, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
    assert torch.autograd.gradcheck(fe, (x,), eps=1e-6, atol=1e-5, fast_mode=True)


def test_requires_grad_input_gives_the_same_values() -> None:
    config = PRESETS["musicnn"]
    x = _signals(config.sample_rate)["chirp"]
    tx = torch.from_numpy(x)[None].clone().requires_grad_(True)
    out = TorchFrontend(config)(tx)
    assert out.requires_grad
    np.testing.assert_array_equal(out.detach()[0].numpy(), _torch_features(config, x))


def test_short_input_gives_no_frames() -> None:
    config = PRESETS["default"]
    x = torch.zeros(3, config.win_length - 1, requires_grad=True)
    out = TorchFrontend(config)(x)
    assert out.shape == (3, 0, config.n_bins) and out.dtype == torch.float32
    out.sum().backward()  # still part of the graph
    assert x.grad is not None


def test_buffers_are_derived_not_saved() -> None:
    config = PRESETS["kaldi"]
    fe = TorchFrontend(config)
    assert fe.window.shape == (config.win_length,) and fe.window.dtype == torch.float64
    assert fe.filterbank.shape == (config.n_bins, config.n_fft_bins)
    assert dict(fe.state_dict()) == {}
    assert {name for name, _ in fe.named_buffers()} == {"window", "filterbank"}
    assert "mel_kaldi" in repr(fe)


def test_module_cast_to_float32_stays_close() -> None:
    """`model.float()` casts the buffers too; the result must stay within tolerance."""
    config = PRESETS["default"]
    x = _signals(config.sample_rate)["sines"]
    fe = TorchFrontend(config).float()
    assert fe.filterbank.dtype == torch.float32
    with torch.no_grad():
        got = fe(torch.from_numpy(x)[None])[0].numpy()
    assert _diff(got, compute_features(x, config), config) <= 1e-4


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu() -> None:
    config = PRESETS["default"]
    x = torch.from_numpy(np.stack(list(_signals(config.sample_rate).values())))
    fe = TorchFrontend(config)
    with torch.no_grad():
        cpu = fe(x)
        gpu = fe.to("cuda")(x.to("cuda"))
    assert fe.filterbank.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=0, atol=TOLERANCE)


def test_bad_input() -> None:
    fe = TorchFrontend(PRESETS["default"])
    with pytest.raises(ValueError, match=r"waveforms must be \[batch, samples\], got shape \(16000,\)"):
        fe(torch.zeros(16000))
    with pytest.raises(ValueError, match=r"got shape \(1, 2, 16000\)"):
        fe(torch.zeros(1, 2, 16000))
    with pytest.raises(TypeError, match="waveforms must be floating point or int16, got torch.int32"):
        fe(torch.zeros(1, 16000, dtype=torch.int32))
    with pytest.raises(TypeError, match="waveforms must be a torch.Tensor, got ndarray"):
        fe(np.zeros((1, 16000), np.float32))
    with pytest.raises(TypeError, match="config must be a FrontendConfig, got str"):
        TorchFrontend("default")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="compute_dtype must be a floating-point torch dtype"):
        TorchFrontend(PRESETS["default"], compute_dtype=torch.int32)
