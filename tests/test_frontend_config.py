"""FrontendConfig: validation with clear messages, presets, JSON round trip, replace()."""

from __future__ import annotations

import json

import pytest

from edgetag.runtime.frontend import PRESETS, FrontendConfig, FrontendConfigError
from edgetag.runtime.frontend.config import FLOAT32_EPS

DEFAULT = FrontendConfig.preset("default")


def test_presets_exist() -> None:
    assert {"default", "musicnn", "librosa", "kaldi"} <= set(PRESETS)
    for name, config in PRESETS.items():
        assert isinstance(config, FrontendConfig)
        assert FrontendConfig.preset(name) is config


def test_preset_conventions() -> None:
    """The presets pin the conventions of the tools they reproduce."""
    kaldi = PRESETS["kaldi"]
    assert (kaldi.filterbank, kaldi.window_periodic, kaldi.window_placement) == ("mel_kaldi", False, "left")
    assert (kaldi.compression, kaldi.log_floor, kaldi.n_bins, kaldi.fmin) == ("log_clamp", FLOAT32_EPS, 80, 20.0)
    librosa = PRESETS["librosa"]
    assert (librosa.sample_rate, librosa.n_fft, librosa.hop_length, librosa.n_bins) == (22050, 2048, 512, 128)
    assert (librosa.filterbank, librosa.filter_norm, librosa.compression) == ("mel_slaney", "slaney", "db")
    musicnn = PRESETS["musicnn"]
    assert (musicnn.n_fft, musicnn.hop_length, musicnn.n_bins, musicnn.compression) == (512, 256, 96, "log10_1p")


def test_unknown_preset() -> None:
    with pytest.raises(FrontendConfigError, match=r"unknown front-end preset 'nope'.*default"):
        FrontendConfig.preset("nope")


def test_preset_with_overrides_is_validated() -> None:
    assert FrontendConfig.preset("default", n_bins=40).n_bins == 40
    with pytest.raises(FrontendConfigError, match="hop_length"):
        FrontendConfig.preset("default", hop_length=0)


def test_config_error_is_a_value_error() -> None:
    assert issubclass(FrontendConfigError, ValueError)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"fmax": 8001.0}, r"fmax \(8001.0 Hz\) is above the Nyquist frequency \(8000.0 Hz\)"),
        ({"sample_rate": 8000}, r"fmax \(8000.0 Hz\) is above the Nyquist frequency \(4000.0 Hz\)"),
        ({"hop_length": 0}, r"hop_length must be at least 1 sample, got 0"),
        ({"hop_length": -160}, r"hop_length must be at least 1 sample"),
        ({"hop_length": 401}, r"hop_length \(401\) must not exceed win_length \(400\)"),
        ({"n_fft": 600}, r"n_fft must be a power of two"),
        ({"n_fft": 256}, r"n_fft \(256\) must be at least win_length \(400\)"),
        ({"win_length": 1, "hop_length": 1}, r"win_length must be at least 2"),
        ({"n_bins": 0}, r"n_bins must be at least 1"),
        ({"n_bins": 200}, r"cover no FFT bin.*more bands than n_fft=512 can support"),
        ({"fmin": -1.0}, r"fmin must be >= 0"),
        ({"fmin": 8000.0}, r"fmin \(8000.0 Hz\) must be below fmax"),
        ({"sample_rate": 0}, r"sample_rate must be positive"),
        ({"preemphasis": 1.0}, r"preemphasis must be in \[0, 1\)"),
        ({"log_floor": 0.0}, r"log_floor must be at least 1e-30, got 0.0"),
        ({"log_floor": 1e-31}, r"log_floor must be at least 1e-30, got 1e-31"),
        ({"log1p_scale": -1.0}, r"log1p_scale must be positive"),
        ({"db_ref": 0.0}, r"db_ref must be in \(0, 1e30\], got 0.0"),
        ({"db_ref": 1e31}, r"db_ref must be in \(0, 1e30\], got 1e\+31"),
        ({"fmax": float("nan")}, r"fmax must be a finite number"),
        ({"win_length": 400.0}, r"win_length must be an integer"),
        ({"n_bins": True}, r"n_bins must be an integer"),
        ({"window_periodic": 1}, r"window_periodic must be true or false"),
        ({"window": "hanning"}, r"window must be one of hann, hamming, rectangular; got 'hanning'"),
        ({"window_placement": "right"}, r"window_placement must be one of left, center"),
        ({"spectrum": "energy"}, r"spectrum must be one of power, magnitude"),
        ({"filterbank": "mel"}, r"filterbank must be one of"),
        ({"filter_norm": "area"}, r"filter_norm must be one of none, slaney"),
        ({"compression": "log1p"}, r"compression must be one of"),
        ({"filterbank": "logfreq", "fmin": 0.0}, r"logfreq bands need fmin > 0"),
        ({"filterbank": "logfreq", "fmin": 500.0, "bins_per_octave": 0}, r"bins_per_octave must be at least 1"),
        (
            {"filterbank": "logfreq", "fmin": 500.0, "n_bins": 64, "bins_per_octave": 12},
            r"64 logfreq bands at 12 per octave from 500.0 Hz reach .* above fmax 8000.0 Hz",
        ),
    ],
)
def test_invalid_config_says_what_is_wrong(changes: dict, message: str) -> None:
    with pytest.raises(FrontendConfigError, match=r"invalid front-end config: .*" + message):
        DEFAULT.replace(**changes)
    with pytest.raises(FrontendConfigError, match=message):
        FrontendConfig.from_dict({**DEFAULT.to_dict(), **changes})


def test_too_many_bands_names_the_first_empty_band() -> None:
    with pytest.raises(FrontendConfigError, match=r"bands cover no FFT bin \(first: band \d+, [\d.]+-[\d.]+ Hz"):
        FrontendConfig(n_bins=200, fmin=0.0, n_fft=512)
    # The same bands fit once the FFT is long enough.
    assert FrontendConfig(n_bins=200, fmin=0.0, n_fft=1024).n_bins == 200


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_json_round_trip(name: str) -> None:
    config = PRESETS[name]
    text = config.to_json()
    back = FrontendConfig.from_json(text)
    assert back == config
    assert back.to_json() == text
    assert FrontendConfig.from_json(config.to_json(indent=2)) == config
    assert FrontendConfig.from_dict(json.loads(text)) == config
    assert hash(back) == hash(config)


def test_json_names_every_field_sorted() -> None:
    data = json.loads(DEFAULT.to_json())
    assert list(data) == sorted(data)
    assert set(data) == set(DEFAULT.to_dict())
    assert len(data) == 20


def test_kaldi_floor_round_trips_exactly() -> None:
    back = FrontendConfig.from_json(PRESETS["kaldi"].to_json())
    assert back.log_floor == FLOAT32_EPS


def test_from_dict_rejects_unknown_fields() -> None:
    with pytest.raises(FrontendConfigError, match=r"unknown front-end field\(s\) \['n_mels'\]"):
        FrontendConfig.from_dict({**DEFAULT.to_dict(), "n_mels": 64})
    with pytest.raises(FrontendConfigError, match="unknown front-end field"):
        FrontendConfig.from_dict({"n_mels": 64}, partial=True)


def test_from_dict_requires_every_field() -> None:
    data = DEFAULT.to_dict()
    del data["hop_length"], data["window"]
    with pytest.raises(FrontendConfigError, match=r"missing field\(s\) \['hop_length', 'window'\]"):
        FrontendConfig.from_dict(data)


def test_from_dict_partial_fills_defaults() -> None:
    config = FrontendConfig.from_dict({"n_bins": 40, "fmin": 30.0}, partial=True)
    assert config == FrontendConfig(n_bins=40, fmin=30.0)


def test_from_json_rejects_bad_text() -> None:
    with pytest.raises(FrontendConfigError, match="not valid JSON"):
        FrontendConfig.from_json("{not json")
    with pytest.raises(FrontendConfigError, match="must be a JSON object, got list"):
        FrontendConfig.from_json("[1, 2]")


def test_from_json_validates_values() -> None:
    data = {**DEFAULT.to_dict(), "hop_length": 0}
    with pytest.raises(FrontendConfigError, match="hop_length must be at least 1"):
        FrontendConfig.from_json(json.dumps(data))


def test_replace_returns_a_validated_copy() -> None:
    changed = DEFAULT.replace(n_bins=40, compression="db")
    assert (changed.n_bins, changed.compression) == (40, "db")
    assert (DEFAULT.n_bins, DEFAULT.compression) == (64, "log")  # the original is untouched
    assert changed.replace(n_bins=64, compression="log") == DEFAULT
    assert DEFAULT.replace() == DEFAULT


def test_replace_rejects_unknown_fields() -> None:
    with pytest.raises(FrontendConfigError, match=r"unknown front-end field\(s\) \['n_mels'\]"):
        DEFAULT.replace(n_mels=40)


def test_replace_validates() -> None:
    with pytest.raises(FrontendConfigError, match="n_fft must be a power of two"):
        DEFAULT.replace(n_fft=500)


def test_configs_are_immutable() -> None:
    with pytest.raises(AttributeError):
        DEFAULT.n_bins = 40  # type: ignore[misc]


def test_derived_values() -> None:
    assert DEFAULT.n_fft_bins == 257
    assert DEFAULT.window_offset == 0
    assert DEFAULT.replace(window_placement="center").window_offset == 56
    assert DEFAULT.frame_rate == 100.0
    assert [DEFAULT.num_frames(n) for n in (0, 399, 400, 559, 560, 16000)] == [0, 0, 1, 1, 2, 98]


def test_describe_is_one_line() -> None:
    for config in PRESETS.values():
        text = config.describe()
        assert "\n" not in text and str(config.sample_rate) in text and config.filterbank in text
