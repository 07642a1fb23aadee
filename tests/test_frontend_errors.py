"""Bad input gets a clear error and leaves the stream as it was; empty pushes are fine."""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np
import pytest

from edgetag.runtime.frontend import (
    PRESETS,
    FrontendConfig,
    FrontendConfigError,
    StreamingFrontend,
    compute_features,
)

CONFIG = PRESETS["default"]
BINS = CONFIG.n_bins
SIGNAL = np.random.default_rng(0).uniform(-1, 1, 8000).astype(np.float32)
SPLIT = 1234  # samples pushed before the bad push (not on a frame boundary)


def _with(values: dict[int, float], n: int = 1000, dtype: Any = np.float32) -> np.ndarray:
    x = np.random.default_rng(1).uniform(-1, 1, n).astype(dtype)
    for i, v in values.items():
        x[i] = v
    return x


BAD_SAMPLES: dict[str, tuple[Any, type[Exception], str]] = {
    "nan_first": (_with({0: np.nan}), ValueError, r"sample 0 of the pushed chunk is NaN"),
    "nan_last": (_with({999: np.nan}), ValueError, r"sample 999 of the pushed chunk is NaN"),
    "nan_short_chunk": (np.array([0.1, np.nan], np.float32), ValueError, r"sample 1 .* is NaN"),
    "nan_float64": (_with({500: np.nan}, dtype=np.float64), ValueError, r"sample 500 .* is NaN"),
    "inf": (_with({10: np.inf}), ValueError, r"sample 10 of the pushed chunk is infinite"),
    "minus_inf_float64": (_with({3: -np.inf}, dtype=np.float64), ValueError, r"sample 3 .* is infinite"),
    "nan_in_big_chunk": (_with({123456: np.nan}, n=200000), ValueError, r"sample 123456 .* is NaN"),
    "column_2d": (np.zeros((1000, 1), np.float32), ValueError, r"1-D array of mono audio, got 2-D"),
    "row_2d": (np.zeros((1, 1000), np.float32), ValueError, r"1-D array of mono audio, got 2-D"),
    "stereo_2d": (np.zeros((2, 1000), np.float32), ValueError, r"got 2-D; downmix multi-channel audio first"),
    "scalar_0d": (np.array(0.5, np.float32), ValueError, r"1-D array of mono audio, got 0-D"),
    "int32": (np.zeros(1000, np.int32), TypeError, r"samples must be float32, float64 or int16, got int32"),
    "int64": (np.zeros(1000, np.int64), TypeError, r"float32, float64 or int16, got int64"),
    "uint8": (np.zeros(1000, np.uint8), TypeError, r"float32, float64 or int16, got uint8"),
    "float16": (np.zeros(1000, np.float16), TypeError, r"float32, float64 or int16, got float16"),
    "complex64": (np.zeros(1000, np.complex64), TypeError, r"float32, float64 or int16, got complex64"),
    "complex128": (np.zeros(1000, np.complex128), TypeError, r"float32, float64 or int16, got complex128"),
    "object": (np.array([0.0] * 1000, dtype=object), TypeError, r"float32, float64 or int16, got object"),
    "bool": (np.zeros(1000, bool), TypeError, r"float32, float64 or int16, got bool"),
    "big_endian_float32": (np.zeros(1000, ">f4"), TypeError, r"float32, float64 or int16, got >f4"),
    "strided": (np.zeros(2000, np.float32)[::2], ValueError, r"contiguous.*numpy.ascontiguousarray"),
    "reversed": (np.zeros(1000, np.float32)[::-1], ValueError, r"contiguous.*numpy.ascontiguousarray"),
    "column_of_2d": (np.zeros((1000, 2), np.float32)[:, 0], ValueError, r"contiguous"),
    "python_list": ([0.0] * 1000, TypeError, r"numpy.ndarray"),
    "none": (None, TypeError, r"numpy.ndarray"),
}


def _state(stream: StreamingFrontend) -> tuple[int, int]:
    return stream.num_pending, stream.frames_emitted


@pytest.mark.parametrize("name", sorted(BAD_SAMPLES))
def test_bad_push_raises_and_leaves_the_stream_unchanged(name: str) -> None:
    bad, exc, message = BAD_SAMPLES[name]
    clean = StreamingFrontend(CONFIG)
    stream = StreamingFrontend(CONFIG)
    before = [clean.push(SIGNAL[:SPLIT]), stream.push(SIGNAL[:SPLIT])]
    state = _state(stream)
    with pytest.raises(exc, match=message):
        stream.push(bad)
    assert _state(stream) == state
    out = np.empty((200, BINS), np.float32)
    with pytest.raises(exc, match=message):
        stream.push_into(bad, out)
    assert _state(stream) == state
    # The stream goes on as if the bad pushes never happened.
    assert np.array_equal(before[1], before[0])
    assert np.array_equal(stream.push(SIGNAL[SPLIT:]), clean.push(SIGNAL[SPLIT:]))
    assert _state(stream) == _state(clean)


@pytest.mark.parametrize("name", sorted(BAD_SAMPLES))
def test_bad_samples_in_batch_computation(name: str) -> None:
    bad, exc, message = BAD_SAMPLES[name]
    with pytest.raises(exc, match=message):
        compute_features(bad, CONFIG)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int16])
def test_empty_push_is_fine(dtype: type) -> None:
    clean = StreamingFrontend(CONFIG)
    stream = StreamingFrontend(CONFIG)
    empty = np.zeros(0, dtype)
    out = stream.push(empty)
    assert out.shape == (0, BINS) and out.dtype == np.float32
    assert _state(stream) == (0, 0)
    stream.push(SIGNAL[:SPLIT])
    clean.push(SIGNAL[:SPLIT])
    state = _state(stream)
    assert stream.push(empty).shape == (0, BINS)
    assert stream.push_into(empty, np.empty((0, BINS), np.float32)) == 0
    assert stream.num_frames_for_push(0) == 0
    assert _state(stream) == state
    assert np.array_equal(stream.push(SIGNAL[SPLIT:]), clean.push(SIGNAL[SPLIT:]))
    assert compute_features(empty, CONFIG).shape == (0, BINS)


@pytest.mark.parametrize(
    ("out", "exc", "message"),
    [
        (np.empty((2, BINS), np.float32), ValueError, r"output holds 2 frames but the push yields \d+"),
        (np.empty((0, BINS), np.float32), ValueError, r"output holds 0 frames"),
        (np.empty((100, BINS + 1), np.float32), ValueError, rf"out must be a float32 array of shape \[frames, {BINS}\]"),
        (np.empty(100 * BINS, np.float32), ValueError, r"out must be a float32 array of shape"),
        (np.empty((100, BINS), np.float64), TypeError, r"push_into\(\): incompatible function arguments"),
        (np.empty((100, BINS), np.float32, order="F"), TypeError, r"incompatible function arguments"),
    ],
    ids=["too_few_rows", "no_rows", "wrong_bins", "flat", "float64", "fortran_order"],
)
def test_bad_output_buffer_raises_and_leaves_the_stream_unchanged(out: np.ndarray, exc: type, message: str) -> None:
    clean = StreamingFrontend(CONFIG)
    stream = StreamingFrontend(CONFIG)
    clean.push(SIGNAL[:SPLIT])
    stream.push(SIGNAL[:SPLIT])
    state = _state(stream)
    with pytest.raises(exc, match=message):
        stream.push_into(SIGNAL[SPLIT : SPLIT + 3000], out)
    assert _state(stream) == state
    assert np.array_equal(stream.push(SIGNAL[SPLIT:]), clean.push(SIGNAL[SPLIT:]))


def test_negative_num_frames_for_push() -> None:
    with pytest.raises(ValueError, match="num_samples must be >= 0, got -1"):
        StreamingFrontend(CONFIG).num_frames_for_push(-1)


@pytest.mark.parametrize("config", ["default", {"n_bins": 64}, None, PRESETS], ids=["str", "dict", "none", "presets"])
def test_config_of_the_wrong_type(config: Any) -> None:
    with pytest.raises(TypeError, match=r"config must be a FrontendConfig, got \w+"):
        StreamingFrontend(config)
    with pytest.raises(TypeError, match=r"config must be a FrontendConfig, got \w+"):
        compute_features(SIGNAL, config)


def test_arguments_swapped() -> None:
    with pytest.raises(TypeError, match="config must be a FrontendConfig, got ndarray"):
        compute_features(CONFIG, SIGNAL)  # type: ignore[arg-type]


def test_invalid_config_cannot_be_built() -> None:
    with pytest.raises(FrontendConfigError, match="invalid front-end config: hop_length must be at least 1"):
        CONFIG.replace(hop_length=0)
    with pytest.raises(ValueError, match=r"fmax \(9000.0 Hz\) is above the Nyquist"):
        FrontendConfig(fmax=9000.0)


def _forged(**changes: Any) -> FrontendConfig:
    """A config that skipped Python's validation: the C++ core must still refuse it."""
    config = PRESETS["default"]
    forged = FrontendConfig.__new__(FrontendConfig)
    for field, value in {**config.to_dict(), **changes}.items():
        object.__setattr__(forged, field, value)
    return forged


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"hop_length": 0}, r"invalid front-end config: hop_length must be at least 1 sample"),
        ({"hop_length": 500}, r"invalid front-end config: hop_length must not exceed win_length"),
        ({"n_fft": 600}, r"invalid front-end config: n_fft must be a power of two"),
        ({"fmax": 9000.0}, r"invalid front-end config: fmax is above the Nyquist frequency"),
        ({"fmin": float("nan")}, r"invalid front-end config: fmin and fmax must be finite"),
        ({"log_floor": 0.0}, r"invalid front-end config: log_floor must be at least 1e-30"),
        ({"log_floor": 1e-31}, r"invalid front-end config: log_floor must be at least 1e-30"),
        ({"db_ref": -1.0}, r"invalid front-end config: db_ref must be in \(0, 1e30\]"),
        ({"db_ref": 1e280}, r"invalid front-end config: db_ref must be in \(0, 1e30\]"),
        ({"preemphasis": 1.5}, r"invalid front-end config: preemphasis must be in \[0, 1\)"),
        ({"window": "hanning"}, r"invalid front-end config: unknown window 'hanning'"),
        ({"compression": "log1p"}, r"invalid front-end config: unknown compression 'log1p'"),
        ({"n_bins": 200, "fmin": 0.0}, r"covers no FFT bin: more bands than n_fft can support"),
        (
            {"filterbank": "logfreq", "fmin": 500.0, "n_bins": 64},
            r"invalid front-end config: logfreq bands reach above fmax",
        ),
    ],
)
def test_cpp_core_validates_configs_itself(changes: dict, message: str) -> None:
    forged = _forged(**changes)
    with pytest.raises(ValueError, match=message):
        StreamingFrontend(forged)
    with pytest.raises(ValueError, match=message):
        compute_features(SIGNAL, forged)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int16])
def test_unpickled_samples_are_accepted(dtype: type) -> None:
    """Arrays that crossed a process boundary (multiprocessing, a queue) carry an equal but distinct dtype object.

    ``pickle.loads(pickle.dumps(x)).dtype == x.dtype`` but ``is not`` numpy's
    builtin dtype: a type check by identity rejects float32 audio as "got float32".
    """
    x = SIGNAL if dtype is not np.int16 else (SIGNAL * 32767).astype(np.int16)
    x = x.astype(dtype)
    y = pickle.loads(pickle.dumps(x))
    assert y.dtype == x.dtype and y.flags.c_contiguous
    np.testing.assert_array_equal(compute_features(y, CONFIG), compute_features(x, CONFIG))
    np.testing.assert_array_equal(StreamingFrontend(CONFIG).push(y), StreamingFrontend(CONFIG).push(x))
