"""StreamingFrontend: any chunking gives bit-identical frames, equal to the batch computation."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgetag.runtime.frontend import PRESETS, FrontendConfig, StreamingFrontend, compute_features

MILLION = 10**6
CONFIGS: dict[str, FrontendConfig] = {
    **PRESETS,
    # hop == win, odd sizes, conditioning on: the framer's edge cases.
    "odd_hop": PRESETS["default"].replace(win_length=401, hop_length=157, remove_dc_offset=True, preemphasis=0.9),
    "hop_equals_win": PRESETS["default"].replace(hop_length=400),
    "hop_one": FrontendConfig(win_length=16, hop_length=1, n_fft=16, n_bins=3, filterbank="mel_htk", fmax=8000.0),
}


def _signal(n: int, dtype: str, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if dtype == "int16":
        return rng.integers(-32768, 32768, n).astype(np.int16)
    return rng.uniform(-1, 1, n).astype(dtype)


def _push_all(stream: StreamingFrontend, x: np.ndarray, sizes: list[int]) -> np.ndarray:
    """Pushes x in chunks of the given sizes (then the rest); checks the counters after each push."""
    bins = stream.num_bins
    config = stream.config
    frames, start, total = [], 0, 0
    for size in [*sizes, len(x)]:
        chunk = x[start : start + size]
        start += len(chunk)
        predicted = stream.num_frames_for_push(len(chunk))
        out = stream.push(chunk)
        assert out.shape == (predicted, bins) and out.dtype == np.float32
        total += len(chunk)
        assert stream.frames_emitted == config.num_frames(total)
        assert stream.num_pending == total - stream.frames_emitted * config.hop_length
        assert stream.num_pending < config.win_length
        frames.append(out)
    assert start == len(x)
    return np.concatenate(frames, axis=0)


_CHUNK = st.one_of(st.sampled_from([0, 1, 7, 160, 512]), st.integers(0, 5000))


@st.composite
def _partitions(draw: st.DrawFn) -> list[int]:
    """Chunk sizes: the named lengths, random ones, and at most one chunk of a million samples."""
    sizes = draw(st.lists(_CHUNK, max_size=25))
    if draw(st.booleans()):
        sizes.insert(draw(st.integers(0, len(sizes))), MILLION)
    return sizes


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    config_name=st.sampled_from(sorted(CONFIGS)),
    sizes=_partitions(),
    tail=st.integers(0, 3000),
    dtype=st.sampled_from(["float32", "float64", "int16"]),
    seed=st.integers(0, 2**32 - 1),
)
def test_any_chunking_is_bit_identical_to_batch(
    config_name: str, sizes: list[int], tail: int, dtype: str, seed: int
) -> None:
    config = CONFIGS[config_name]
    x = _signal(sum(sizes) + tail, dtype, seed)
    expected = compute_features(x, config)
    got = _push_all(StreamingFrontend(config), x, sizes)
    assert np.array_equal(got, expected)


@pytest.mark.parametrize("chunk", [1, 7, 160, 512, MILLION])
@pytest.mark.parametrize("config_name", sorted(CONFIGS))
def test_fixed_chunk_sizes(config_name: str, chunk: int) -> None:
    config = CONFIGS[config_name]
    n = config.sample_rate // 2 if chunk == 1 else config.sample_rate  # 1-sample pushes: keep it quick
    x = _signal(n, "float32", chunk)
    stream = StreamingFrontend(config)
    got = np.concatenate([stream.push(x[i : i + chunk]) for i in range(0, n, chunk)], axis=0)
    assert np.array_equal(got, compute_features(x, config))


def test_million_sample_push() -> None:
    config = PRESETS["default"]
    x = _signal(MILLION + 123, "float32", 5)
    stream = StreamingFrontend(config)
    got = np.concatenate([stream.push(x[:MILLION]), stream.push(x[MILLION:])])
    assert got.shape == (config.num_frames(len(x)), config.n_bins)
    assert np.array_equal(got, compute_features(x, config))


@pytest.mark.parametrize("config_name", ["default", "kaldi", "odd_hop"])
def test_push_into_equals_push(config_name: str) -> None:
    config = CONFIGS[config_name]
    x = _signal(config.sample_rate, "float32", 9)
    sizes = [0, 1, 399, 7, 160, 1000, 512, 0, 3000, 6000]
    reference = StreamingFrontend(config)
    stream = StreamingFrontend(config)
    out = np.full((64, config.n_bins), np.nan, np.float32)
    start = 0
    for size in [*sizes, len(x)]:
        chunk = x[start : start + size]
        start += len(chunk)
        expected = reference.push(chunk)
        predicted = stream.num_frames_for_push(len(chunk))
        out.fill(np.nan)
        n = stream.push_into(chunk, out)
        assert n == predicted == len(expected)
        assert np.array_equal(out[:n], expected)
        assert np.isnan(out[n:]).all()  # rows past n are not touched
        assert (stream.num_pending, stream.frames_emitted) == (reference.num_pending, reference.frames_emitted)


def test_push_into_exact_capacity() -> None:
    config = PRESETS["default"]
    x = _signal(400 + 160 * 4, "float32", 2)
    stream = StreamingFrontend(config)
    out = np.empty((stream.num_frames_for_push(len(x)), config.n_bins), np.float32)
    assert stream.push_into(x, out) == 5
    assert np.array_equal(out, compute_features(x, config))


def test_num_frames_for_push_predicts_without_changing_state() -> None:
    config = PRESETS["default"]
    stream = StreamingFrontend(config)
    assert [stream.num_frames_for_push(n) for n in (0, 399, 400, 559, 560)] == [0, 0, 1, 1, 2]
    stream.push(np.zeros(300, np.float32))
    assert stream.num_pending == 300 and stream.frames_emitted == 0
    assert [stream.num_frames_for_push(n) for n in (0, 99, 100, 259, 260)] == [0, 0, 1, 1, 2]
    assert stream.num_pending == 300


def test_reset_starts_a_new_signal() -> None:
    config = PRESETS["default"]
    first, second = _signal(5000, "float32", 1), _signal(7000, "float32", 2)
    stream = StreamingFrontend(config)
    stream.push(first)
    assert stream.num_pending > 0 and stream.frames_emitted > 0
    stream.reset()
    assert (stream.num_pending, stream.frames_emitted) == (0, 0)
    assert stream.num_frames_for_push(400) == 1
    got = np.concatenate([stream.push(second[:123]), stream.push(second[123:])])
    assert np.array_equal(got, compute_features(second, config))
    # A fresh stream and a reset one are indistinguishable.
    fresh = StreamingFrontend(config)
    stream.reset()
    assert np.array_equal(stream.push(first), fresh.push(first))


def test_reset_mid_frame_forgets_pending_samples() -> None:
    config = PRESETS["default"]
    stream = StreamingFrontend(config)
    assert stream.push(np.ones(399, np.float32)).shape == (0, config.n_bins)
    stream.reset()
    x = _signal(400, "float32", 4)
    assert np.array_equal(stream.push(x), compute_features(x, config))


def test_short_signals_yield_no_frames() -> None:
    config = PRESETS["default"]
    stream = StreamingFrontend(config)
    for n in (0, 1, 398):
        assert compute_features(np.zeros(n, np.float32), config).shape == (0, config.n_bins)
    assert stream.push(np.zeros(399, np.float32)).shape == (0, config.n_bins)
    assert stream.push(np.zeros(1, np.float32)).shape == (1, config.n_bins)
