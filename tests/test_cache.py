"""Tests of the teacher-output cache (training/cache.py) and `edgetag teach`."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
sf = pytest.importorskip("soundfile")

from edgetag.training.cache import TeacherCache, iter_cache, merge_indexes
from edgetag.training.teach import fill_cache
from edgetag.training.data import load_manifest
from edgetag.training.teachers.base import (
    Teacher,
    TeacherOutput,
    known_teachers,
    register_teacher,
)

HERE = Path(__file__).resolve().parent


class TinyTeacher(Teacher):
    """Deterministic teacher: 400-sample frames at 8 kHz, 5 scores and 3 embedding dims per frame."""

    name = "test-tiny"
    sample_rate = 8000
    score_kind = "probabilities"
    task = "multi_label"
    frame_rate = 20.0
    labels = [f"l{i}" for i in range(5)]  # noqa: RUF012  (the Teacher interface declares a list)
    embedding_dim = 3

    def __init__(self, delay: float = 0.0) -> None:
        super().__init__()
        self.register_buffer("w", torch.linspace(-2.0, 2.0, 5))
        self._delay = delay  # underscore: not part of the config hash

    def num_frames(self, num_samples: int) -> int:
        return num_samples // 400

    def forward(self, waveforms: torch.Tensor) -> TeacherOutput:
        if self._delay:
            time.sleep(self._delay)
        b, n = waveforms.shape
        t = self.num_frames(n)
        frames = waveforms[:, : t * 400].reshape(b, t, 400)
        rms = frames.pow(2).mean(-1, keepdim=True).sqrt()
        mean = frames.mean(-1, keepdim=True)
        peak = frames.abs().amax(-1, keepdim=True)
        emb = torch.cat([rms, mean, peak], -1)
        scores = torch.sigmoid(10 * rms * self.w + mean)
        return TeacherOutput(scores=scores, embeddings=emb)


if "test-tiny" not in known_teachers():
    register_teacher("test-tiny")(TinyTeacher)


def _make_data(root: Path, n: int = 6, bad: bool = False) -> Path:
    """n short WAVs (1-2 s, mixed rates) and a JSONL manifest; optionally one corrupt and one missing file."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        sr = (8000, 16000, 22050)[i % 3]
        x = (0.3 * rng.standard_normal(int(sr * (1.0 + 0.2 * i)))).astype(np.float32)
        sf.write(root / f"a{i}.wav", x, sr)
        row = {"path": f"a{i}.wav", "labels": [], "split": "train"}
        if i == 1:
            row.update(start=0.25, end=1.0)
        rows.append(row)
    if bad:
        (root / "broken.wav").write_bytes(b"RIFF\x00\x00garbage" * 10)
        rows.insert(2, {"path": "broken.wav", "labels": [], "split": "train"})
        rows.insert(4, {"path": "missing.wav", "labels": [], "split": "train"})
    path = root / "manifest.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _contents(cache_dir: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return {k: (np.array(o.scores), np.array(o.embeddings)) for k, o in iter_cache(cache_dir)}


def _assert_same(a: dict, b: dict) -> None:
    assert sorted(a) == sorted(b)
    for k, pair in a.items():
        for x, y in zip(pair, b[k], strict=True):
            assert x.dtype == y.dtype == np.float16
            np.testing.assert_array_equal(x, y)


def _shards(cache_dir: Path) -> list[Path]:
    return sorted((cache_dir / "shards").glob("*.npy"))


def test_clean_run_matches_teacher(tmp_path: Path) -> None:
    manifest = _make_data(tmp_path)
    teacher = TinyTeacher()
    s = fill_cache([teacher], manifest, tmp_path / "c", batch_size=2, device="cpu", progress=False, shard_entries=2)
    assert s.windows_computed == 6 and s.skips.n_skipped == 0 and s.cache_entries == 6
    assert len(_shards(tmp_path / "c")) == 3
    assert not list((tmp_path / "c").glob("index-*.json"))  # merged into index.json
    man = load_manifest(manifest)
    from edgetag.runtime.audio import load_audio

    got = {o.meta["path"]: o for _, o in iter_cache(tmp_path / "c")}
    for e in man.entries:
        wave = load_audio(man.resolve(e), 8000, e.start, e.end)
        ref = teacher(torch.from_numpy(wave)[None])
        o = got[e.path]
        np.testing.assert_array_equal(o.scores, ref.scores[0].numpy().astype(np.float16))
        np.testing.assert_array_equal(o.embeddings, ref.embeddings[0].numpy().astype(np.float16))
        assert o.scores.shape == (teacher.num_frames(len(wave)), 5)
    # Second run: everything cached, nothing computed.
    s2 = fill_cache([teacher], manifest, tmp_path / "c", batch_size=2, device="cpu", progress=False)
    assert s2.windows_computed == 0 and s2.windows_cached == 6


def test_long_file_chunked_and_topk(tmp_path: Path) -> None:
    sf.write(tmp_path / "long.wav", (0.1 * np.random.default_rng(1).standard_normal(8000 * 5)).astype(np.float32), 8000)
    (tmp_path / "m.jsonl").write_text(json.dumps({"path": "long.wav", "labels": [], "split": "train"}) + "\n")
    s = fill_cache([TinyTeacher()], tmp_path / "m.jsonl", tmp_path / "c", progress=False, chunk_seconds=2.0, topk=2)
    assert s.windows_computed == 3  # [0, 2), [2, 4), [4, end)
    outs = [o for _, o in iter_cache(tmp_path / "c")]
    assert all(o.scores is None and o.topk_indices.shape[1] == 2 for o in outs)
    assert sum(o.topk_indices.shape[0] for o in outs) == 100
    dense = outs[0].dense_scores(5)
    assert dense.shape[1] == 5 and (dense > 0).sum(1).max() <= 2


def test_killed_run_resumes_to_same_cache(tmp_path: Path) -> None:
    manifest = _make_data(tmp_path, n=8)
    clean = tmp_path / "clean"
    fill_cache([TinyTeacher()], manifest, clean, batch_size=1, progress=False, shard_entries=2)

    killed = tmp_path / "killed"
    code = (
        f"import sys; sys.path.insert(0, {str(HERE)!r});"
        "from test_cache import TinyTeacher;"
        "from edgetag.training.teach import fill_cache;"
        f"fill_cache([TinyTeacher(delay=0.3)], {str(manifest)!r}, {str(killed)!r}, batch_size=1,"
        " progress=False, shard_entries=2)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code])
    part = killed / "index-r0.json"
    deadline = time.monotonic() + 20
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if part.exists() and json.loads(part.read_text())["shards"]:
                break
            time.sleep(0.02)
        time.sleep(0.35)  # let it get into the next shard's work
        assert proc.poll() is None, "the run finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    # Killed: some shards committed, nothing merged; a half-written temp file must never be referenced.
    assert not (killed / "index.json").exists()
    partial = TeacherCache(killed, part="check")
    assert 0 < len(partial) < 8
    assert partial.verify() == 0  # every referenced shard passes its checksum
    # A stray complete-looking shard file that no index names is never read.
    np.save(killed / "shards" / "r0-stray.npy", np.arange(100, dtype=np.uint8))

    s = fill_cache([TinyTeacher()], manifest, killed, batch_size=1, progress=False, shard_entries=2)
    assert s.windows_cached == len(partial) and s.windows_computed == 8 - len(partial)
    _assert_same(_contents(clean), _contents(killed))
    assert not (killed / "shards" / "r0-stray.npy").exists()  # merge removed the orphan
    assert not list((killed / "shards").glob(".tmp-*"))


def test_corrupt_shard_detected_and_recomputed(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    manifest = _make_data(tmp_path)
    fill_cache([TinyTeacher()], manifest, tmp_path / "c", progress=False, shard_entries=2)
    clean = _contents(tmp_path / "c")
    victim = _shards(tmp_path / "c")[1]
    data = bytearray(victim.read_bytes())
    data[-20] ^= 0xFF  # flip bits in the payload
    victim.write_bytes(bytes(data))

    with caplog.at_level(logging.WARNING, logger="edgetag.training.cache"):
        cache = TeacherCache(tmp_path / "c", part="check")
        got = [cache.get(k) for k in cache]
    assert sum(o is None for o in got) == 2  # the victim's two entries are refused, not read
    assert any(victim.name in r.message and "corrupt" in r.message for r in caplog.records)

    s = fill_cache([TinyTeacher()], manifest, tmp_path / "c", progress=False, shard_entries=2)
    assert s.windows_computed == 2 and s.recomputed_bad == 2
    _assert_same(clean, _contents(tmp_path / "c"))
    assert (victim.parent / (victim.name + ".corrupt")).exists()


def test_unreadable_files_skipped_and_counted(tmp_path: Path) -> None:
    manifest = _make_data(tmp_path, n=3, bad=True)
    s = fill_cache([TinyTeacher()], manifest, tmp_path / "c", progress=False)
    assert s.entries == 5 and s.skips.n_ok == 3 and s.skips.n_skipped == 2
    assert s.windows_computed == 3 and s.cache_entries == 3
    assert sum(s.skips.by_reason.values()) == 2 and len(s.skips.by_reason) == 2  # two different reasons


def test_two_ranks_plus_merge_equal_one_process(tmp_path: Path) -> None:
    manifest = _make_data(tmp_path, n=7)
    fill_cache([TinyTeacher()], manifest, tmp_path / "one", progress=False, shard_entries=3)
    for rank in (0, 1):
        s = fill_cache([TinyTeacher()], manifest, tmp_path / "two", rank=rank, world_size=2, progress=False, shard_entries=3)
        assert s.entries == (4 if rank == 0 else 3)
    assert sorted(p.name for p in (tmp_path / "two").glob("index-*.json")) == ["index-r0.json", "index-r1.json"]
    counts = merge_indexes(tmp_path / "two")
    assert counts["entries"] == 7 and not list((tmp_path / "two").glob("index-*.json"))
    _assert_same(_contents(tmp_path / "one"), _contents(tmp_path / "two"))


def test_cli_teach(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "edgetag.runtime.cli", "teach", "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 0 and "--teacher" in out.stdout and "--out" in out.stdout
    from edgetag.runtime.cli import main

    manifest = _make_data(tmp_path, n=3, bad=True)
    rc = main(["teach", "--teacher", "test-tiny", "--data", str(manifest), "--out", str(tmp_path / "c"), "--no-progress"])
    text = capsys.readouterr().out
    assert rc == 0 and "3 read, 2 skipped" in text and "cache 3 entries" in text


def test_two_runs_cannot_write_one_cache_part(tmp_path) -> None:
    """A second writer of the same part is refused up front with a message, not left to delete shards."""
    from edgetag.training.teach import CacheBusyError, _lock_part

    first = _lock_part(tmp_path, "r0")
    with pytest.raises(CacheBusyError, match=r"another edgetag teach \(pid \d+\) is writing .* as r0"):
        _lock_part(tmp_path, "r0")
    other_rank = _lock_part(tmp_path, "r1")  # the ranks of one torchrun job each hold their own part
    other_rank.close()
    first.close()
    _lock_part(tmp_path, "r0").close()  # free again once the first run ends


def test_a_full_disk_stops_teach_instead_of_skipping_clips(tmp_path: Path, monkeypatch) -> None:
    """ENOSPC while writing a shard: DiskFullError stops the run, its temp shard is removed, no clip is 'skipped'."""
    import errno

    from edgetag.runtime.atomic import DiskFullError
    from edgetag.training import cache as cache_module

    manifest = _make_data(tmp_path)

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(cache_module.np.lib.format, "write_array", no_space)
    with pytest.raises(DiskFullError, match=r"no space left on the device holding .* teacher-cache shard.*resumes"):
        fill_cache([TinyTeacher()], manifest, tmp_path / "c", batch_size=2, device="cpu", progress=False, shard_entries=2)
    assert not list((tmp_path / "c" / "shards").glob(".tmp-*"))
