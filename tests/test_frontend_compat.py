"""The presets against the tools they reproduce (librosa, kaldi-native-fbank), and the traps.

The "trap" tests show, on purpose, the settings that make those tools disagree
with edgetag (centred frames, padding mode, top_db, HTK vs Slaney mel,
snip_edges, dither, Kaldi's default window and pre-emphasis): each asserts the
features are *not* close, so the suite documents what to pin when features
come from another tool.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from edgetag.runtime.frontend import PRESETS, FrontendConfig, compute_features, filterbank_matrix

librosa = pytest.importorskip("librosa")
knf = pytest.importorskip("kaldi_native_fbank")

LIBROSA_TOLERANCE = 1e-4
KALDI_TOLERANCE = 1e-3


def _signals(sr: int) -> dict[str, np.ndarray]:
    """1 s test signals, float32 in [-1, 1]."""
    rng = np.random.default_rng(7)
    t = np.arange(sr) / sr
    return {
        "noise": rng.uniform(-1, 1, sr).astype(np.float32),
        "sine": (0.5 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32),
        "tone_in_noise": (0.3 * np.sin(2 * np.pi * 1000.0 * t) + 0.05 * rng.standard_normal(sr)).astype(np.float32),
        "chirp": (0.8 * np.sin(2 * np.pi * (30 * t + 0.5 * (0.45 * sr - 30) * t * t))).astype(np.float32),
        "square": np.where(np.sin(2 * np.pi * 220.0 * t + 0.1) >= 0, 1.0, -1.0).astype(np.float32),
        "silence": np.zeros(sr, np.float32),
    }


def _max_diff(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape, f"shapes differ: {a.shape} vs {b.shape}"
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max())


# ----------------------------------------------------------------------------- librosa


def _librosa_mel_power(y: np.ndarray, config: FrontendConfig, **overrides) -> np.ndarray:
    """librosa's mel power spectrogram with every setting pinned to ``config``, [frames, bins]."""
    kwargs = dict(
        sr=config.sample_rate, n_fft=config.n_fft, hop_length=config.hop_length, win_length=config.win_length,
        window="hann", center=False, pad_mode="constant", power=2.0, n_mels=config.n_bins,
        fmin=config.fmin, fmax=config.fmax, htk=config.filterbank == "mel_htk",
        norm="slaney" if config.filter_norm == "slaney" else None,
    )
    kwargs.update(overrides)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # librosa warns about empty filters on some trap settings
        return librosa.feature.melspectrogram(y=y.astype(np.float64), **kwargs).T


def _librosa_preset_features(y: np.ndarray, **overrides) -> np.ndarray:
    config = PRESETS["librosa"]
    top_db = overrides.pop("top_db", None)
    power = _librosa_mel_power(y, config, **overrides)
    return librosa.power_to_db(power, ref=1.0, amin=config.log_floor, top_db=top_db)


def _musicnn_features(y: np.ndarray, **overrides) -> np.ndarray:
    return np.log10(1.0 + 10000.0 * _librosa_mel_power(y, PRESETS["musicnn"], **overrides))


@pytest.mark.parametrize("signal", sorted(_signals(16000)))
def test_librosa_preset_matches_librosa(signal: str) -> None:
    config = PRESETS["librosa"]
    y = _signals(config.sample_rate)[signal]
    assert _max_diff(compute_features(y, config), _librosa_preset_features(y)) <= LIBROSA_TOLERANCE


@pytest.mark.parametrize("signal", sorted(_signals(16000)))
def test_musicnn_preset_matches_librosa(signal: str) -> None:
    config = PRESETS["musicnn"]
    y = _signals(config.sample_rate)[signal]
    assert _max_diff(compute_features(y, config), _musicnn_features(y)) <= LIBROSA_TOLERANCE


def test_mel_htk_matches_librosa_htk() -> None:
    config = PRESETS["librosa"].replace(filterbank="mel_htk")
    y = _signals(config.sample_rate)["tone_in_noise"]
    expected = librosa.power_to_db(_librosa_mel_power(y, config), ref=1.0, amin=config.log_floor, top_db=None)
    assert _max_diff(compute_features(y, config), expected) <= LIBROSA_TOLERANCE


@pytest.mark.parametrize("htk", [False, True])
def test_filterbank_matches_librosa_filters(htk: bool) -> None:
    config = PRESETS["librosa"].replace(filterbank="mel_htk" if htk else "mel_slaney", fmin=20.0, fmax=10000.0)
    ours = filterbank_matrix(config)
    theirs = librosa.filters.mel(
        sr=config.sample_rate, n_fft=config.n_fft, n_mels=config.n_bins, fmin=config.fmin, fmax=config.fmax,
        htk=htk, norm="slaney", dtype=np.float64,
    )
    np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-12)


# Traps: each of these librosa settings gives different features from the preset.


def test_trap_librosa_center_true_shifts_and_adds_frames() -> None:
    config = PRESETS["librosa"]
    y = _signals(config.sample_rate)["tone_in_noise"]
    ours = compute_features(y, config)
    centred = librosa.power_to_db(
        _librosa_mel_power(y, config, center=True), ref=1.0, amin=config.log_floor, top_db=None
    )
    # centre=True pads n_fft/2 on each side: more frames, and frame t is centred at t*hop ...
    assert centred.shape[0] == 1 + len(y) // config.hop_length > ours.shape[0]
    assert not np.allclose(centred[: len(ours)], ours, atol=1.0)
    # ... so the same frames appear n_fft / 2 / hop = 2 frames later, away from the padded edges.
    shift = config.n_fft // 2 // config.hop_length
    assert _max_diff(centred[shift : shift + len(ours)], ours) <= LIBROSA_TOLERANCE


def test_trap_reflect_vs_constant_padding() -> None:
    config = PRESETS["musicnn"]
    y = _signals(config.sample_rate)["sine"]
    reflect = _musicnn_features(y, center=True, pad_mode="reflect")
    constant = _musicnn_features(y, center=True, pad_mode="constant")
    assert np.allclose(reflect[5:-5], constant[5:-5], atol=1e-4)  # interior frames see no padding
    assert not np.allclose(reflect[0], constant[0], atol=0.1)  # the edge frames do


def test_trap_librosa_top_db() -> None:
    config = PRESETS["librosa"]
    y = _signals(config.sample_rate)["sine"]
    y[len(y) // 2 :] *= 1e-4  # 80 dB quieter second half
    ours = compute_features(y, config)
    assert _max_diff(ours, _librosa_preset_features(y)) <= LIBROSA_TOLERANCE
    clipped = _librosa_preset_features(y, top_db=80.0)  # librosa's default clips 80 dB below the clip's peak
    assert _max_diff(ours, clipped) > 10.0


def test_trap_htk_vs_slaney_mel() -> None:
    config = PRESETS["librosa"]
    y = _signals(config.sample_rate)["noise"]
    ours = compute_features(y, config)  # Slaney mel
    htk = librosa.power_to_db(_librosa_mel_power(y, config, htk=True), ref=1.0, amin=config.log_floor, top_db=None)
    assert _max_diff(ours, htk) > 1.0
    assert not np.allclose(filterbank_matrix(config), filterbank_matrix(config.replace(filterbank="mel_htk")))


def test_trap_librosa_default_window_is_not_kaldi_symmetric() -> None:
    config = PRESETS["musicnn"]
    y = _signals(config.sample_rate)["tone_in_noise"]
    symmetric = compute_features(y, config.replace(window_periodic=False))
    assert _max_diff(symmetric, _musicnn_features(y)) > 1e-3


# ----------------------------------------------------------------------------- kaldi-native-fbank


def _knf_options(**frame_overrides) -> "knf.FbankOptions":
    """kaldi-native-fbank options matching the ``kaldi`` preset."""
    config = PRESETS["kaldi"]
    opts = knf.FbankOptions()
    frame = opts.frame_opts
    frame.samp_freq = float(config.sample_rate)
    frame.frame_length_ms = 1000.0 * config.win_length / config.sample_rate
    frame.frame_shift_ms = 1000.0 * config.hop_length / config.sample_rate
    frame.dither = 0.0
    frame.remove_dc_offset = False
    frame.preemph_coeff = 0.0
    frame.window_type = "hanning"  # symmetric Hann
    frame.snip_edges = True
    frame.round_to_power_of_two = True
    for key, value in frame_overrides.items():
        setattr(frame, key, value)
    opts.mel_opts.num_bins = config.n_bins
    opts.mel_opts.low_freq = config.fmin
    opts.mel_opts.high_freq = config.fmax
    opts.mel_opts.is_librosa = False
    opts.use_energy = False
    opts.use_power = True
    opts.use_log_fbank = True
    return opts


def _knf_features(y: np.ndarray, opts: "knf.FbankOptions") -> np.ndarray:
    """All frames of kaldi-native-fbank on ``y`` (float32, fed as is: knf does not rescale)."""
    assert y.dtype == np.float32
    fbank = knf.OnlineFbank(opts)
    fbank.accept_waveform(opts.frame_opts.samp_freq, y)
    fbank.input_finished()
    # get_frame returns a view of a buffer the extractor owns: copy each frame.
    frames = [np.array(fbank.get_frame(i), dtype=np.float32, copy=True) for i in range(fbank.num_frames_ready)]
    return np.stack(frames) if frames else np.zeros((0, fbank.dim), np.float32)


def test_knf_options_as_intended() -> None:
    opts = _knf_options()
    assert opts.frame_opts.dither == 0.0 and not opts.frame_opts.remove_dc_offset
    assert opts.frame_opts.preemph_coeff == 0.0 and opts.frame_opts.window_type == "hanning"
    assert opts.frame_opts.snip_edges and opts.frame_opts.round_to_power_of_two
    assert (opts.frame_opts.frame_length_ms, opts.frame_opts.frame_shift_ms) == (25.0, 10.0)  # 400 / 160 samples
    assert knf.OnlineFbank(opts).dim == 80
    assert (opts.mel_opts.num_bins, opts.mel_opts.low_freq, opts.mel_opts.high_freq) == (80, 20.0, 8000.0)


@pytest.mark.parametrize("signal", ["noise", "tone_in_noise", "square", "silence"])
def test_kaldi_preset_matches_knf(signal: str) -> None:
    config = PRESETS["kaldi"]
    y = _signals(config.sample_rate)[signal]
    assert _max_diff(compute_features(y, config), _knf_features(y, _knf_options())) <= KALDI_TOLERANCE


@pytest.mark.parametrize("signal", ["sine", "chirp"])
def test_kaldi_preset_matches_knf_on_tones_within_float32_range(signal: str) -> None:
    """knf computes in float32: bands far below a pure tone's peak are float32 FFT noise in knf.

    Bands within 15 nats (65 dB) of the frame's peak agree; the rest differ by
    up to ~5e-3 because of knf's rounding, not edgetag's.
    """
    config = PRESETS["kaldi"]
    y = _signals(config.sample_rate)[signal]
    ours = compute_features(y, config)
    theirs = _knf_features(y, _knf_options())
    assert ours.shape == theirs.shape
    audible = ours > ours.max(axis=1, keepdims=True) - 15.0
    assert audible.mean() > 0.05
    assert np.abs(ours - theirs)[audible].max() <= KALDI_TOLERANCE


def test_kaldi_preset_matches_knf_on_int16_scaled_input() -> None:
    config = PRESETS["kaldi"]
    x = np.random.default_rng(11).integers(-20000, 20000, config.sample_rate).astype(np.int16)
    theirs = _knf_features((x / 32768.0).astype(np.float32), _knf_options())
    assert _max_diff(compute_features(x, config), theirs) <= KALDI_TOLERANCE


# Traps: Kaldi's defaults (and a missing 1/32768) give different features.


def test_trap_kaldi_snip_edges_false() -> None:
    config = PRESETS["kaldi"]
    y = _signals(config.sample_rate)["tone_in_noise"]
    ours = compute_features(y, config)
    unsnipped = _knf_features(y, _knf_options(snip_edges=False))
    assert unsnipped.shape[0] == (len(y) + config.hop_length // 2) // config.hop_length != ours.shape[0]
    assert not np.allclose(unsnipped[: len(ours)], ours, atol=0.1)


def test_trap_kaldi_dither() -> None:
    config = PRESETS["kaldi"]
    y = _signals(config.sample_rate)["silence"]
    dithered = _knf_features(y, _knf_options(dither=1.0))
    assert _max_diff(compute_features(y, config), dithered) > 1.0


@pytest.mark.parametrize(
    "overrides",
    [{"window_type": "povey"}, {"preemph_coeff": 0.97}, {"remove_dc_offset": True}],
    ids=["povey_window", "preemphasis", "dc_removal"],
)
def test_trap_kaldi_default_frame_options(overrides: dict) -> None:
    config = PRESETS["kaldi"]
    y = _signals(config.sample_rate)["tone_in_noise"]
    assert _max_diff(compute_features(y, config), _knf_features(y, _knf_options(**overrides))) > 1e-2


def test_kaldi_dc_removal_and_preemphasis_match_knf() -> None:
    """The same Kaldi options, when edgetag's config names them, agree again."""
    config = PRESETS["kaldi"].replace(remove_dc_offset=True, preemphasis=0.97)
    y = _signals(config.sample_rate)["tone_in_noise"] + np.float32(0.1)  # a DC offset to remove
    theirs = _knf_features(y, _knf_options(remove_dc_offset=True, preemph_coeff=0.97))
    assert _max_diff(compute_features(y, config), theirs) <= KALDI_TOLERANCE


def test_trap_kaldi_int16_scale() -> None:
    """Kaldi tools read int16 WAVs as raw integers; edgetag scales to [-1, 1]: log energies differ by 2 ln 32768."""
    config = PRESETS["kaldi"]
    y = _signals(config.sample_rate)["noise"]
    raw_scale = _knf_features(y * np.float32(32768.0), _knf_options())
    ours = compute_features(y, config)
    assert _max_diff(ours, raw_scale) > 20.0
    np.testing.assert_allclose(raw_scale - ours, 2 * np.log(32768.0), atol=KALDI_TOLERANCE)
