"""StreamingFrontends in threads (the C++ work releases the GIL) give the frames they give alone."""

from __future__ import annotations

import threading

import numpy as np

from edgetag.runtime.frontend import PRESETS, FrontendConfig, StreamingFrontend, compute_features

CHUNKS = (1, 7, 160, 512, 4000, 0, 333)


def _stream(config: FrontendConfig, x: np.ndarray, start: threading.Barrier | None = None) -> np.ndarray:
    """Pushes x through a new stream in chunks of varying sizes."""
    stream = StreamingFrontend(config)
    if start is not None:
        start.wait()
    frames, i, k = [], 0, 0
    while i < len(x):
        size = CHUNKS[k % len(CHUNKS)]
        frames.append(stream.push(x[i : i + size]))
        i += size
        k += 1
    return np.concatenate(frames, axis=0)


def test_four_streams_in_four_threads_match_serial_runs() -> None:
    rng = np.random.default_rng(0)
    configs = [PRESETS[name] for name in ("default", "musicnn", "librosa", "kaldi")]
    jobs = [(config, rng.uniform(-1, 1, 2 * config.sample_rate).astype(np.float32)) for config in configs]
    serial = [_stream(config, x) for config, x in jobs]

    results: list[np.ndarray | None] = [None] * len(jobs)
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(jobs))

    def work(index: int) -> None:
        try:
            results[index] = _stream(*jobs[index], start=barrier)
        except BaseException as exc:  # surfaced below; a thread's exception would vanish otherwise
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    for (config, x), got, expected in zip(jobs, results, serial):
        assert got is not None
        assert np.array_equal(got, expected)
        assert np.array_equal(got, compute_features(x, config))


def test_same_config_in_four_threads() -> None:
    """Four streams of one config on four different signals: no shared state between them."""
    config = PRESETS["kaldi"]
    rng = np.random.default_rng(1)
    signals = [rng.uniform(-1, 1, 32000).astype(np.float32) for _ in range(4)]
    barrier = threading.Barrier(4)
    results: dict[int, np.ndarray] = {}

    def work(index: int) -> None:
        results[index] = _stream(config, signals[index], start=barrier)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(results) == [0, 1, 2, 3]
    for i, x in enumerate(signals):
        assert np.array_equal(results[i], compute_features(x, config))
