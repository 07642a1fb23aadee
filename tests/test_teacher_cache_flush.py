"""The teacher cache makes pending work durable after ``flush_seconds``, not only when a shard fills."""

import numpy as np
import pytest

pytest.importorskip("torch")

from edgetag.training.cache import TeacherCache


def test_time_based_flush_makes_entries_durable(tmp_path):
    cache = TeacherCache(tmp_path, shard_entries=1000, flush_seconds=0.0)
    cache.put("k1", {"scores": np.ones((2, 3), np.float16)}, {"path": "a.wav"})
    # a new reader (as after a killed run) sees the entry without an explicit flush
    reader = TeacherCache(tmp_path, part="read")
    assert "k1" in reader._entries
    np.testing.assert_array_equal(reader.get("k1").scores, np.ones((2, 3), np.float16))


def test_entries_wait_for_a_full_shard_within_flush_seconds(tmp_path):
    cache = TeacherCache(tmp_path, shard_entries=1000, flush_seconds=3600.0)
    cache.put("k1", {"scores": np.ones((2, 3), np.float16)}, {"path": "a.wav"})
    assert "k1" not in TeacherCache(tmp_path, part="read")._entries
    cache.flush()
    assert "k1" in TeacherCache(tmp_path, part="read")._entries
