"""Two gloo processes on CPU take the same steps as one process on the same global batch."""

from __future__ import annotations

import csv
import os
import socket
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
sf = pytest.importorskip("soundfile")
dist = pytest.importorskip("torch.distributed")
if not dist.is_available() or not dist.is_gloo_available():
    pytest.skip("torch.distributed with gloo is not available", allow_module_level=True)

SR = 16000
LABELS = ["high", "low", "noise"]


def _dataset(root: Path) -> dict:
    """Fully labelled clips (masked losses are normalised per process, so no missing labels here).

    Clips of one kind are identical, so the teacher cache holds one entry for several paths.
    """
    from edgetag.training.teach import fill_cache

    sys.path.insert(0, str(Path(__file__).parent))
    from test_trainer import _fake_teacher

    rng = np.random.default_rng(1)
    rows = []
    for i in range(10):
        kind = LABELS[i % 3]
        n = int(SR * 0.7)
        t = np.arange(n) / SR
        x = 0.3 * rng.standard_normal(n) if kind == "noise" else 0.5 * np.sin(2 * np.pi * (3000.0 if kind == "high" else 300.0) * t)
        sf.write(root / f"c{i}.wav", x.astype(np.float32), SR, subtype="FLOAT")
        rows.append({"path": f"c{i}.wav", "labels": kind, "split": "train"})
    with open(root / "m.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["path", "labels", "split"])
        w.writeheader()
        w.writerows(rows)
    teacher = _fake_teacher()()
    fill_cache([teacher], root / "m.csv", root / "cache", progress=False)
    return {"manifest": str(root / "m.csv"), "cache": str(root / "cache")}


def _overrides(ds: dict, method: str) -> list[str]:
    return [
        f"data.manifest={ds['manifest']}",
        f"teacher.cache_dir={ds['cache']}",
        "teacher.teachers=[fake-tiny]",
        f"method={method}",
        "data.segment_seconds=0.5",
        "frontend.overrides.n_bins=16",
        # Batch norm throughout: exercises the global batch statistics. (Not causal_cnn: its
        # convolutions before batch norm have biases whose true gradient is 0, and Adam turns
        # the rounding noise of a 0 gradient into lr-sized steps that differ between runs.)
        "student.kind=mobilenet",
        "student.params={width: 0.25, embedding_dim: 16}",
        "optim.batch_size=8",
        "optim.steps=3",
        "optim.warmup_steps=1",
        "optim.lr=0.001",
        # Some weights have a true gradient of 0 (a batch-norm shift that the next batch norm
        # cancels); their computed gradient is rounding noise that differs with the reduction
        # order, and Adam's first steps divide it by its own size (lr * g / (|g| + eps)), so it
        # moves them by ~lr either way. A larger eps bounds that to lr * noise / eps.
        "optim.eps=1e-3",
        "optim.ema_decay=0.9",
        "augment.gain_db=[-6,6]",
        "augment.time_masks=1",
        "augment.freq_masks=1",
        "augment.time_shift_seconds=0.05",
        "checkpoint.every=2",
        "logging.progress=false",
    ]


def _worker(rank: int, world: int, port: int, overrides: list[str], run_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    from edgetag.training import data
    from edgetag.training.config import load_config
    from edgetag.training.trainer import train

    read_entry = data.read_entry

    def logged_read_entry(manifest, entry, *args, **kwargs):  # which files this rank decodes
        with open(Path(run_dir).parent / f"decoded-r{rank}.txt", "a") as f:
            f.write(entry.path + "\n")
        return read_entry(manifest, entry, *args, **kwargs)

    data.read_entry = logged_read_entry
    train(load_config(None, overrides), run_dir)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("method", ["kd+conreg", pytest.param("mean_teacher", marks=pytest.mark.slow)])
def test_two_gloo_processes_match_one(tmp_path, method):
    import torch.multiprocessing as mp
    from edgetag.training.config import load_config
    from edgetag.training.trainer import train

    ds = _dataset(tmp_path)
    overrides = _overrides(ds, method)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(load_config(None, overrides), tmp_path / "one")
    finally:
        torch.set_num_threads(threads)
    mp.start_processes(_worker, args=(2, _free_port(), overrides, str(tmp_path / "two")), nprocs=2, join=True, start_method="spawn")

    one = torch.load(tmp_path / "one" / "student.pt", weights_only=True)
    two = torch.load(tmp_path / "two" / "student.pt", weights_only=True)
    assert two["provenance"]["world_size"] == 2
    s1 = torch.load(tmp_path / "one" / "checkpoints" / "state-00000003.pt", weights_only=True)
    s2 = torch.load(tmp_path / "two" / "checkpoints" / "state-00000003.pt", weights_only=True)
    _assert_close(s1["model"], s2["model"])  # the raw weights
    _assert_close(one["state_dict"], two["state_dict"])  # the exported (EMA) weights
    # only rank 0 wrote: one metrics file with one row per step
    with open(tmp_path / "two" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [1, 2, 3]
    # the ranks shared out the decoding: every clip decoded once, by one rank
    decoded = [(tmp_path / f"decoded-r{r}.txt").read_text().split() for r in range(2)]
    assert sorted(decoded[0] + decoded[1]) == sorted(f"c{i}.wav" for i in range(10))
    assert len(decoded[0]) == len(decoded[1]) == 5


def _assert_close(a: dict, b: dict) -> None:
    """Weights (parameters) within 1e-6. Batch-norm running statistics within 1e-5 relative:
    they are variances of 8 activations of the deepest layers, computed from weights that
    already differ by rounding (up to the 1e-6 allowed), with float32 sums in another order."""
    assert a.keys() == b.keys()
    for k, v in a.items():
        buffer = k.rsplit(".", 1)[-1] in ("running_mean", "running_var", "num_batches_tracked")
        assert torch.allclose(v.double(), b[k].double(), atol=1e-6, rtol=1e-5 if buffer else 0), (
            k, float((v.double() - b[k].double()).abs().max()))
