"""``reference-f0``: pitch targets from f0 annotations, cached like a teacher's outputs; and
``teacher.partial``: a student learning from teachers that each cover only some rows."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
sf = pytest.importorskip("soundfile")

from edgetag.runtime.pitch import bin_cents, decode  # noqa: E402
from edgetag.training.batches import BatchMaker  # noqa: E402
from edgetag.training.cache import iter_cache  # noqa: E402
from edgetag.training.config import ConfigError, config_from_dict, load_config  # noqa: E402
from edgetag.training.teach import fill_cache  # noqa: E402
from edgetag.training.teacher_tracks import TeacherTrack  # noqa: E402
from edgetag.training.teachers import get_teacher  # noqa: E402
from edgetag.training.teachers.reference import f0_targets  # noqa: E402
from edgetag.training.train_data import Split  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "training" / "recipes" / "pitch"))
import prepare_tones  # noqa: E402

PITCH_LABELS = [f"pitch_bin_{k:03d}" for k in range(360)]


def test_targets_are_crepes_gaussians_and_decode_to_the_annotated_f0() -> None:
    f0 = np.array([0.0, 55.0, 110.0, 261.63, 446.0, 1500.0])
    t = f0_targets(f0)
    assert t.shape == (6, 360) and t.dtype == np.float32 and not t[0].any()  # unvoiced: no target
    cents = 1200 * np.log2(f0[1:] / 10)
    assert np.abs(bin_cents()[t[1:].argmax(1)] - cents).max() <= 10  # the peak is the nearest bin
    hz, conf = decode(t[1:])
    assert np.abs(1200 * np.log2(hz / f0[1:])).max() < 0.5 and (conf > 0.6).all()
    # the width is CREPE's: 25 cents standard deviation
    row = t[3].astype(np.float64)
    spread = np.sqrt(np.sum(row * (bin_cents() - cents[2]) ** 2) / row.sum())
    assert spread == pytest.approx(25.0, abs=1.0)


def _tone_rows(root: Path, n: int = 3, seconds: float = 1.5) -> list[dict]:
    rows = []
    for i in range(n):
        x, f0, _ = prepare_tones.make_clip(7, i, seconds)
        wav = root / f"tone{i}.wav"
        sf.write(wav, x, 16000, subtype="FLOAT")
        np.save(root / f"tone{i}.f0.npy", prepare_tones.f0_at_frame_centres(f0))
        rows.append({"path": wav.name, "labels": [], "split": "train", "f0": f"tone{i}.f0.npy", "score_f0": True})
    return rows


def test_teach_caches_annotations_and_skips_rows_without_one(tmp_path: Path) -> None:
    rows = _tone_rows(tmp_path, n=5)
    noise = np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1
    sf.write(tmp_path / "noise.wav", noise, 16000)
    rows[3]["score_f0"] = False  # a program that does not sound its score's note: no reference
    rows[4]["f0"] = "../escape.npy"  # a manifest cannot read outside its root
    rows += [{"path": "noise.wav", "labels": [], "split": "train"},  # no annotation: not stored
             {"path": "tone0.wav", "labels": [], "split": "train", "start": 0.5, "end": 1.5,  # a window of a row
              "f0": "tone0.f0.npy", "score_f0": True}]
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    summary = fill_cache(["reference-f0"], manifest, tmp_path / "cache", progress=False)
    assert summary.windows_computed == 4 and summary.no_annotation == 2  # noise, score_f0 false
    assert summary.skips.n_skipped == 1 and "path escapes root" in summary.skips.summary()
    stored = {(o.meta["path"], o.meta["start"]): np.asarray(o.scores, np.float32) for _, o in iter_cache(tmp_path / "cache")}
    whole = stored[("tone0.wav", None)]
    track = np.load(tmp_path / "tone0.f0.npy")
    np.testing.assert_allclose(whole, f0_targets(track), atol=1e-3)  # float16 storage
    window = stored[("tone0.wav", 0.5)]  # frame 0 of the window is the file's frame 50 (0.5 s / 10 ms)
    np.testing.assert_allclose(window, f0_targets(track[50:50 + len(window)]), atol=1e-3)
    assert len(window) == 1 + (16000 - 1024) // 160


def test_a_bad_annotation_is_skipped_with_its_reason(tmp_path: Path) -> None:
    rows = _tone_rows(tmp_path, n=1)
    np.save(tmp_path / "bad.f0.npy", np.array([[1.0, 2.0]]))  # 2-D: not an f0 track
    rows.append({"path": "tone0.wav", "labels": [], "split": "train", "f0": "bad.f0.npy", "start": 0.0, "end": 1.0})
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    summary = fill_cache([get_teacher("reference-f0")], manifest, tmp_path / "cache", progress=False)
    assert summary.windows_computed == 1 and summary.skips.n_skipped == 1


def _pitch_maker(partial: bool) -> BatchMaker:
    config = config_from_dict({
        "data": {"manifest": "unused.jsonl", "segment_seconds": 0.5, "task": "multi_label"},
        "frontend": {"preset": "default", "overrides": {"win_length": 1024, "n_fft": 1024}},
        "student": {"kind": "causal_cnn"},
        "method": "kd",
        "teacher": {"partial": partial, "cache_dir": "unused", "teachers": ["reference-f0"]},
        "augment": {"time_shift_seconds": 0.0},
    })
    fe = config.frontend_config()
    feats = [np.zeros((60, fe.n_bins), np.float32) for _ in range(2)]
    # row 0: a dense reference (1.0 everywhere) and a sparse teacher (0.0, every 10th frame); row 1: the sparse one only
    dense = [np.ones((60, 4), np.float32), np.zeros((0, 4), np.float32)]
    sparse = [np.zeros((6, 4), np.float32), np.full((6, 4), 0.5, np.float32)]
    split = Split("train", ["a", "b"], feats, np.zeros((2, 4), np.float32), np.ones((2, 4), np.float32),
                  score_tracks=[TeacherTrack("reference-f0@x", 100.0, scores=dense, offset=0.032),
                                TeacherTrack("crepe-full@x", 10.0, scores=sparse, offset=0.032)])
    return BatchMaker(config, split, fe, 50, np.zeros(fe.n_bins, np.float32), frame_mode=True)


def test_partial_teachers_average_where_they_have_frames() -> None:
    maker = _pitch_maker(partial=True)
    _, _, target, _ = maker._example(0, None)
    near = maker.last_teacher_ok
    assert bool(near.all())  # the dense reference covers every frame
    on_crepe = torch.arange(50) % 10 == 0
    assert torch.allclose(target[on_crepe], torch.full((5, 4), 0.5))  # mean of 1.0 and 0.0
    assert torch.allclose(target[~on_crepe], torch.ones(45, 4))  # the reference alone
    _, _, target, _ = maker._example(1, None)  # no reference for this row: the sparse teacher's frames only
    assert maker.last_teacher_ok.tolist() == on_crepe.tolist()
    assert torch.allclose(target[on_crepe], torch.full((5, 4), 0.5))


def test_partial_needs_frame_targets_and_full_coverage_without_it(tmp_path: Path) -> None:
    maker = _pitch_maker(partial=True)
    with pytest.raises(ConfigError, match="teacher.partial needs frame-level targets"):
        BatchMaker(maker.config, maker.split, maker.frontend, 50, maker.silence, frame_mode=False)

    rows = _tone_rows(tmp_path, n=2)
    sf.write(tmp_path / "quiet.wav", np.zeros(16000, np.float32), 16000)
    rows.append({"path": "quiet.wav", "labels": [], "split": "train"})
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    fill_cache(["reference-f0"], manifest, tmp_path / "cache", progress=False)
    base = [f"data.manifest={manifest}", f"teacher.cache_dir={tmp_path / 'cache'}", "teacher.teachers=[reference-f0]",
            f"data.labels={json.dumps(PITCH_LABELS)}", "data.segment_seconds=1.0", "data.valid_split=none",
            "frontend.overrides={win_length: 1024, n_fft: 1024}", "student.kind=causal_cnn",
            "student.params={channels: 8, layers: 2}", "optim.batch_size=4", "optim.steps=6", "optim.warmup_steps=1",
            "teacher.label_weight=0", "teacher.temperature=1", "checkpoint.every=0", "logging.progress=false", "method=kd"]
    from edgetag.training.trainer import train

    with pytest.raises(ConfigError, match="no cached outputs of teacher reference-f0"):
        train(load_config(None, base), tmp_path / "full")
    result = train(load_config(None, [*base, "teacher.partial=true"]), tmp_path / "partial")
    assert result.student_path.is_file()
    losses = [json.loads(line)["loss"] for line in (tmp_path / "partial" / "metrics.jsonl").read_text().splitlines()
              if json.loads(line)["kind"] == "train"]
    assert losses and all(np.isfinite(losses))
