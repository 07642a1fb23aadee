"""What only a CUDA device exercises: mixed precision training, a teacher run on the GPU, and the
checkpoints and exports that come out of them. Skipped without CUDA (CI has none; the project's GPU
sessions run this file: README "Training on a GPU").

The trainer's data and tiny fake teacher are those of tests/test_trainer.py, imported, not copied.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("soundfile")
#: EDGETAG_CUDA_TEST_DEVICE=cpu runs this file's code paths on the CPU (AMP then does nothing): a check of
#: the tests themselves on machines without a GPU.
DEVICE = os.environ.get("EDGETAG_CUDA_TEST_DEVICE", "cuda")
if DEVICE == "cuda" and not torch.cuda.is_available():
    pytest.skip("needs a CUDA device", allow_module_level=True)

from test_trainer import _config, _fake_teacher, dataset  # noqa: E402,F401  (dataset: the fixture)


def _losses(run_dir: Path) -> list[float]:
    with open(run_dir / "metrics.csv") as f:
        return [float(r["loss"]) for r in csv.DictReader(f)]


@pytest.mark.parametrize("amp_dtype", ["float16", "bfloat16"])
def test_kd_trains_on_cuda_with_mixed_precision(dataset, tmp_path, amp_dtype) -> None:  # noqa: F811
    """AMP on the GPU: finite, falling losses; the checkpoint loads on a CPU-only reader (weights_only) and the
    CPU student computes what the GPU one does (within float32 noise: the weights are kept in float32)."""
    from edgetag.training.checkpoint import load_checkpoint
    from edgetag.training.trainer import train

    config = _config(dataset, "method=kd", f"optim.device={DEVICE}", "optim.amp=true", f"optim.amp_dtype={amp_dtype}",
                     "optim.steps=40", "augment.mixup_alpha=0", "augment.time_masks=0", "augment.freq_masks=0")
    result = train(config, tmp_path / "run")
    losses = _losses(tmp_path / "run")
    assert len(losses) == 40 and all(np.isfinite(losses))
    assert np.mean(losses[-5:]) < np.mean(losses[:5]), losses
    raw = torch.load(result.student_path, map_location="cpu", weights_only=True)
    tensors = raw["state_dict"].values()
    assert all(t.device.type == "cpu" for t in tensors)
    assert all(t.dtype == torch.float32 for t in tensors if t.is_floating_point())  # AMP keeps float32 weights
    student = load_checkpoint(result.student_path).student.eval()
    x = torch.randn(2, 50, student.n_bins)
    with torch.no_grad():
        cpu = student(x)
        gpu = student.to(DEVICE)(x.to(DEVICE))
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-4, rtol=1e-4)


def test_teacher_cache_filled_on_cuda_equals_the_cpu_one(dataset, tmp_path) -> None:  # noqa: F811
    """`edgetag teach --device cuda`: the same keys, and the same stored scores within float16 storage."""
    from edgetag.training.cache import iter_cache
    from edgetag.training.teach import fill_cache
    from edgetag.training.teachers import get_teacher

    _fake_teacher()
    fill_cache([get_teacher("fake-tiny")], dataset["manifest"], tmp_path / "gpu", device=DEVICE, progress=False,
               chunk_seconds=0.5)
    cpu = dict(iter_cache(dataset["cache"]))
    gpu = dict(iter_cache(tmp_path / "gpu"))
    assert set(gpu) == set(cpu) and gpu
    for key, out in gpu.items():
        np.testing.assert_allclose(np.asarray(out.scores, np.float32), np.asarray(cpu[key].scores, np.float32),
                                   atol=2e-3)


def test_a_gpu_trained_student_exports_and_passes_the_parity_checks(dataset, tmp_path) -> None:  # noqa: F811
    """The export reads a checkpoint written on the GPU (AMP) and its ONNX file matches the PyTorch student."""
    pytest.importorskip("onnxruntime")
    from edgetag.export.onnx_export import export_onnx
    from edgetag.runtime.model import load_model
    from edgetag.training.checkpoint import load_checkpoint
    from edgetag.training.trainer import train

    config = _config(dataset, "method=kd", f"optim.device={DEVICE}", "optim.amp=true", "optim.steps=10")
    result = train(config, tmp_path / "run")
    export_onnx(load_checkpoint(result.student_path), tmp_path / "student.onnx")  # raises on a parity failure
    assert list(load_model(tmp_path / "student.onnx").card.labels) == ["high", "low", "noise"]
