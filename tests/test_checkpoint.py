"""Student checkpoints: round trip with weights_only loading, clear refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from edgetag.runtime.frontend import FrontendConfig  # noqa: E402
from edgetag.training.checkpoint import CheckpointError, StudentCheckpoint, load_checkpoint, save_checkpoint  # noqa: E402
from edgetag.training.students import build_student  # noqa: E402


def _checkpoint() -> StudentCheckpoint:
    torch.manual_seed(0)
    params = {"channels": 32, "layers": 3}
    return StudentCheckpoint(
        student=build_student("causal_cnn", 64, 3, **params),
        kind="causal_cnn",
        params=params,
        frontend=FrontendConfig.preset("default"),
        task="multi_label",
        labels=["a", "b", "c"],
        thresholds=[0.5, 0.5, 0.5],
        window_frames=1,
        hop_frames=10,
        provenance={"teacher": "x"},
        metrics={"roc_auc": 0.9},
    )


def test_round_trip(tmp_path: Path) -> None:
    original = _checkpoint()
    path = save_checkpoint(original, tmp_path / "student.pt")
    loaded = load_checkpoint(path)
    features = torch.randn(1, 20, 64)
    with torch.no_grad():
        assert torch.equal(original.student.eval()(features), loaded.student(features))
    assert loaded.labels == original.labels and loaded.frontend == original.frontend
    assert loaded.metrics == {"roc_auc": 0.9}
    assert [p.name for p in tmp_path.iterdir()] == ["student.pt"]  # no temporary left behind


def test_refusals(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "none.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable.*not a PyTorch file"):
        load_checkpoint(junk)
    torch.save({"module": torch.nn.Linear(2, 2)}, tmp_path / "pickled.pt")  # objects weights_only refuses
    with pytest.raises(CheckpointError, match="never unpickles") as refused:
        load_checkpoint(tmp_path / "pickled.pt")
    # one line, and no advice to unpickle
    assert "\n" not in str(refused.value) and "weights_only=False" not in str(refused.value)
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not an edgetag student checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    data = _checkpoint().to_dict()
    data["labels"] = ["a", "b"]
    torch.save(data, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="2 labels"):
        load_checkpoint(tmp_path / "bad.pt")


def test_stateful_student_takes_one_frame_per_call_whatever_was_stored(tmp_path: Path) -> None:
    """Older checkpoints stored a stateful student's training segment as window_frames."""
    data = _checkpoint().to_dict()
    data["window_frames"] = 94  # as the trainer wrote it before the rule
    path = tmp_path / "student.pt"
    torch.save(data, path)
    assert load_checkpoint(path).window_frames == 1
