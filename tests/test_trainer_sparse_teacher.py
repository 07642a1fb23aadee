"""Frame-mode distillation from a teacher cached at a coarser hop than the student.

A CREPE teacher run every 100 ms next to a 10 ms student must give targets only
to the student frames that sit on a teacher frame; the frames in between are
masked out of the KD loss (not filled with a copy of a teacher frame up to 50 ms
away). Also: CREPE's frame-0 centre (32 ms) is used when aligning, and the
mask is deterministic and travels with the time-shift augmentation.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from edgetag.training.batches import BatchMaker  # noqa: E402
from edgetag.training.teacher_tracks import TeacherTrack, near_teacher_frames, teacher_offset  # noqa: E402
from edgetag.training.train_data import Split  # noqa: E402
from edgetag.training.config import config_from_dict  # noqa: E402


def test_near_teacher_frames_sparse_and_dense() -> None:
    # Student 100 frames/s with centres 32 ms in; CREPE every 1600 samples (10/s), frame 0 centred at 32 ms.
    near = near_teacher_frames(5, 10.0, 100.0, 50, student_offset=0.032, teacher_offset=0.032)
    assert near.tolist() == [j % 10 == 0 for j in range(50)]
    # Past the teacher's last frame (index 4 at 0.432 s) nothing is near any more.
    near = near_teacher_frames(2, 10.0, 100.0, 30, student_offset=0.032, teacher_offset=0.032)
    assert near.nonzero().flatten().tolist() == [0, 10]
    # A teacher as dense as the student (even half a hop off) leaves every frame in.
    assert bool(near_teacher_frames(60, 100.0, 100.0, 50, 0.032, 0.027).all())
    assert bool(near_teacher_frames(200, 200.0, 100.0, 50, 0.032, 0.0).all())
    assert not bool(near_teacher_frames(0, 10.0, 100.0, 20, 0.0, 0.0).any())


def test_teacher_offset_by_name() -> None:
    assert teacher_offset("crepe-full@abc123") == pytest.approx(512 / 16000)
    assert teacher_offset("crepe-tiny") == pytest.approx(0.032)
    assert teacher_offset("musicnn-mtt@x") == 0.0


def _maker(time_shift: float) -> tuple[BatchMaker, np.ndarray]:
    config = config_from_dict({
        "data": {"manifest": "unused.jsonl", "segment_seconds": 0.5, "task": "multi_label"},
        "frontend": {"preset": "default", "overrides": {"win_length": 1024, "n_fft": 1024}},
        "student": {"kind": "causal_cnn"},
        "method": "labels",
        "augment": {"time_shift_seconds": time_shift},
        "optim": {"seed": 3},
    })
    fe = config.frontend_config()
    rng = np.random.default_rng(0)
    feats = [rng.standard_normal((n, fe.n_bins)).astype(np.float32) for n in (120, 80)]
    # Teacher at 10 frames/s; each teacher frame's scores hold its own index, to check alignment.
    scores = [np.repeat(np.arange(k, dtype=np.float32)[:, None], 4, axis=1) for k in (12, 8)]
    split = Split("train", ["a", "b"], feats, np.zeros((2, 4), np.float32), np.ones((2, 4), np.float32),
                     score_tracks=[TeacherTrack("crepe-full@x", 10.0, scores=scores, offset=0.032)])
    window = 50
    return BatchMaker(config, split, fe, window, np.zeros(fe.n_bins, np.float32), frame_mode=True), feats[0]


def test_batch_mask_marks_only_frames_on_teacher_frames() -> None:
    maker, _ = _maker(0.0)
    batch = maker.make(0, [0, 1], [0, 1], rank=0, augment=False)
    assert batch.teacher_ok is not None and batch.teacher_ok.shape == (2, 50)
    for b in range(2):
        on = batch.teacher_ok[b].nonzero().flatten()
        assert on.tolist() == [0, 10, 20, 30, 40]
        # The target on a kept frame is exactly that teacher frame (crop starts at frame 0 without augmentation).
        assert batch.teacher[b, on, 0].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]


def test_mask_is_deterministic_and_shifts_with_the_features() -> None:
    maker, _ = _maker(0.2)
    a = maker.make(5, [0, 1, 2, 3], [0, 1, 0, 1], rank=0)
    b = maker.make(5, [0, 1, 2, 3], [0, 1, 0, 1], rank=0)
    assert torch.equal(a.teacher_ok, b.teacher_ok) and torch.equal(a.features, b.features)
    for i in range(4):
        on = a.teacher_ok[i] > 0
        # Kept frames are 10 apart (circular time shift keeps the spacing), and their targets are integers.
        idx = on.nonzero().flatten()
        assert len(idx) >= 4
        assert set(((idx[1:] - idx[:-1]) % 10).tolist()) == {0}
        t = a.teacher[i, idx, 0]
        assert torch.equal(t, t.round())


def test_kd_mask_removes_frames_without_teacher() -> None:
    from edgetag.training import losses as L

    logits = torch.zeros(1, 20, 4)
    teacher = torch.full((1, 20, 4), 0.5)
    teacher[0, 1:10] = 0.99  # garbage on frames without a teacher frame
    ok = torch.zeros(1, 20)
    ok[0, 0] = ok[0, 10] = 1.0
    masked = L.kd_multilabel(logits, teacher, 1.0, "probabilities", ok.unsqueeze(-1))
    clean = L.kd_multilabel(logits[:, [0, 10]], teacher[:, [0, 10]], 1.0, "probabilities")
    assert float(masked) == pytest.approx(float(clean), rel=1e-6)
