"""Calibrated thresholds (`edgetag.training.thresholds`, ``edgetag calibrate``).

The rule on synthetic scores and teacher tags: the F1 optimum against brute
force, ties and placement, the fallback for tags with too few positives. Then
the card update end to end on a tiny sealed model (conftest's band-energy
tagger) and a hand-written teacher cache: thresholds written, the graph's
digest and the test vector unchanged, ``edgetag verify`` passing.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import LABELS, build_model  # noqa: E402

from edgetag.training.thresholds import (  # noqa: E402
    binary_stats,
    choose_thresholds,
    f1_threshold,
    rate_threshold,
)


def _f1(positive: np.ndarray, on: np.ndarray) -> float:
    tp = int((positive & on).sum())
    return 2 * tp / (int(positive.sum()) + int(on.sum()))


def test_f1_threshold_by_hand() -> None:
    scores = np.array([0.9, 0.8, 0.7, 0.3, 0.2])
    positive = np.array([1, 1, 0, 1, 0], bool)
    # top 4 taken: 3 of 3 positives with 1 false: F1 = 6/7, cut halfway between 0.3 and 0.2
    threshold, f1 = f1_threshold(positive, scores)
    assert threshold == pytest.approx(0.25) and f1 == pytest.approx(6 / 7)


def test_f1_threshold_matches_brute_force_and_prefers_the_higher_threshold() -> None:
    rng = np.random.default_rng(0)
    for _ in range(50):
        n = int(rng.integers(5, 200))
        positive = rng.random(n) < rng.uniform(0.02, 0.5)
        positive[rng.integers(n)] = True
        scores = np.round(np.clip(0.3 * positive + rng.normal(0.2, 0.15, n), 0, 1), 2)  # rounding makes ties
        threshold, f1 = f1_threshold(positive, scores)
        candidates = np.unique(scores)
        best = max(_f1(positive, scores >= t) for t in candidates)
        assert f1 == pytest.approx(best) and _f1(positive, scores >= threshold) == pytest.approx(best)
        # the cut lies between two scores (equal scores are never split), and no higher cut reaches the same F1
        assert threshold == scores.min() or not np.isin(threshold, scores)
        lowest_taken = scores[scores >= threshold].min()
        assert all(_f1(positive, scores >= t) < best - 1e-12 for t in candidates[candidates > lowest_taken])


def test_f1_threshold_needs_a_positive() -> None:
    with pytest.raises(ValueError, match="at least one positive"):
        f1_threshold(np.zeros(4, bool), np.linspace(0, 1, 4))


def test_rate_threshold_turns_on_at_most_the_teachers_share() -> None:
    scores = np.array([0.1, 0.2, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7])
    assert (scores >= rate_threshold(scores, 0.25)).sum() == 2  # 0.7, 0.6; cut at 0.55
    assert rate_threshold(scores, 0.25) == pytest.approx(0.55)
    assert (scores >= rate_threshold(scores, 6 / 8)).sum() == 5  # the tie at 0.2 stays off with its twin
    assert rate_threshold(scores, 0.0) > 0.7 and (scores >= rate_threshold(scores, 0.0)).sum() == 0
    assert rate_threshold(np.array([1.0, 0.5]), 0.0) == 1.0  # never above 1: a card refuses that


def test_compressed_student_scores_get_thresholds_below_the_teachers_half() -> None:
    """The music-tag student's case: scores squeezed below 0.5 where the teacher says yes.

    With the teacher's 0.5 the tag never turns on; the F1 threshold turns it on for the
    teacher's windows and (mostly) not elsewhere.
    """
    rng = np.random.default_rng(1)
    n = 4000
    teacher = rng.random((n, 2))
    positive = teacher >= 0.5
    student = np.clip(0.15 + 0.2 * positive + rng.normal(0, 0.04, (n, 2)), 0, 0.49)
    assert not (student >= 0.5).any()
    tags = choose_thresholds(student, positive, positive.sum(0), [5, 5], ["a", "b"])
    for t, c in zip(tags, range(2)):
        assert t.rule == "f1" and 0.2 < t.threshold < 0.4
        f1, precision, recall, on = binary_stats(positive[:, c], student[:, c], t.threshold)
        assert f1 == t.f1 and f1 > 0.95 and precision > 0.95 and recall > 0.95
        assert on == pytest.approx(positive[:, c].mean(), abs=0.03)


def test_fallback_for_rare_tags_is_the_teachers_rate_clipped_to_the_calibrated_median() -> None:
    rng = np.random.default_rng(2)
    n = 1000
    labels = ["common1", "common2", "common3", "one_track", "rare", "never_low", "never_high"]
    positive = np.zeros((n, len(labels)), bool)
    positive[:300, 0] = positive[200:500, 1] = positive[600:900, 2] = True
    positive[:40, 3] = True  # plenty of windows, but from one track
    positive[:3, 4] = True  # too few windows
    scores = rng.uniform(0.0, 0.15, (n, len(labels)))
    scores[:, :3] += np.where(positive[:, :3], [0.2, 0.3, 0.4], 0.0)
    scores[:40, 3] += 0.6
    scores[:, 6] = np.linspace(0.0, 0.9, n)  # the teacher never gives it, the student rises to 0.9
    windows = positive.sum(0) // 10  # 10 decisions per teacher window: 30 for the common tags
    tracks = [3, 3, 3, 1, 1, 0, 0]
    tags = {t.label: t for t in choose_thresholds(scores, positive, windows, tracks, labels)}
    assert [tags[lb].rule for lb in labels] == ["f1"] * 3 + ["fallback"] * 4
    median = float(np.median([tags[lb].threshold for lb in labels[:3]]))
    assert 0.15 < median < 0.5
    for c in range(3, len(labels)):  # the score quantile at the teacher's rate, clipped into [median, 0.5]
        want = np.clip(rate_threshold(scores[:, c], positive[:, c].mean()), median, 0.5)
        assert tags[labels[c]].threshold == pytest.approx(want, abs=1e-4), labels[c]
    # one track: on for its 40 decisions as the teacher is, from a cut between its two score groups
    assert tags["one_track"].on_fraction == pytest.approx(0.04) and tags["one_track"].f1 == 1.0
    assert tags["never_low"].threshold == pytest.approx(median)  # scores all below the median: floored there
    assert tags["never_high"].threshold == 0.5  # capped at the teacher's own threshold
    assert tags["never_low"].recall is None and tags["never_low"].on_fraction == 0.0
    with pytest.raises(ValueError, match="no tag has >= 30 positive teacher windows"):
        choose_thresholds(scores, positive, [1] * len(labels), tracks, labels)


# ----------------------------------------------------------------------------- the card, end to end

RATE = 16000
TEACHER = "band-teacher@0000000000000000"
# each second of the clips: which band sounds (a tone at that frequency), None for silence
PLAN = (("low", 300.0), ("mid", 1500.0), (None, 0.0), ("low", 300.0), ("mid", 1500.0), (None, 0.0))


def _clip(level: float) -> np.ndarray:
    t = np.arange(RATE) / RATE
    ramp = np.clip(np.minimum(t, 1 - t) / 0.005, 0, 1)
    return np.concatenate([level * ramp * np.sin(2 * np.pi * hz * t) if hz else np.zeros(RATE)
                           for _, hz in PLAN]).astype(np.float32)


def _write_teacher_cache(cache_dir: Path, paths: list[str]) -> None:
    """One whole-file window per clip of a 1-frame-per-second teacher that tags the band sounding."""
    from edgetag.training.cache import TeacherCache, make_key

    cache = TeacherCache(cache_dir)
    for path in paths:
        rows = np.full((len(PLAN), len(LABELS)), 0.05, np.float16)
        for second, (label, _) in enumerate(PLAN):
            if label is not None:
                rows[second, LABELS.index(label)] = 0.9
        digest = hashlib.sha256(path.encode()).hexdigest()  # stands in for the audio's hash
        meta = {"teacher": TEACHER, "config": "0" * 16, "path": path, "start": None, "end": None,
                "audio_sha256": digest, "frame_rate": 1.0}
        cache.put(make_key(digest, None, None, TEACHER, "0" * 16), {"scores": rows}, meta)
    cache.close()


def test_calibrate_writes_thresholds_into_the_card_and_the_file_still_verifies(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("onnxruntime")
    sf = pytest.importorskip("soundfile")
    from edgetag.export.model_file import reseal
    from edgetag.runtime.cli import main
    from edgetag.runtime.model import load_model

    model = tmp_path / "bands.onnx"
    reseal(build_model(tmp_path / "raw.onnx", "window"), model)  # sealed: digest + test vector
    before = load_model(model).card
    assert before.thresholds == (0.5, 0.5, 0.5) and before.integrity and before.test_vector

    rows = []
    for name, level in (("a.wav", 0.3), ("b.wav", 0.1)):
        sf.write(tmp_path / name, _clip(level), RATE, subtype="FLOAT")
        rows.append({"path": name, "labels": [], "missing": "*", "split": "valid", "package": "pkg-" + name[0]})
    (tmp_path / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    _write_teacher_cache(tmp_path / "cache", [r["path"] for r in rows])

    argv = ["calibrate", str(model), "--data", str(tmp_path / "manifest.jsonl"), "--teacher-cache",
            str(tmp_path / "cache"), "--teacher", "band-teacher", "--min-positive-windows", "2"]
    assert main(argv + ["--dry-run"]) == 0
    assert "dry run" in capsys.readouterr().out and load_model(model).card.thresholds == before.thresholds
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "2 tags calibrated (F1), 1 fallback" in out and "wrote the thresholds" in out

    after = load_model(model).card  # loads: the digest still matches the graph
    low, mid, high = after.thresholds
    assert 0.0 < low < 0.5 and 0.0 < mid < 0.5, after.thresholds  # the band tagger's tones score below 0.5
    assert high == pytest.approx(float(np.clip(high, min(low, mid), 0.5)))  # fallback inside its clip
    assert after.integrity == before.integrity and after.test_vector == before.test_vector
    record = after.provenance["thresholds"]
    assert record["split"] == "valid" and record["teacher"] == TEACHER and record["tracks"] == 2
    assert record["windows"] == 2 * len(PLAN) and record["packages"] == ["pkg-a", "pkg-b"]
    assert "maximises F1" in record["rule"] and "quantile" in record["fallback"]
    assert record["per_tag"]["low"][:2] == [low, "f1"] and "high" not in record["per_tag"]  # never given
    assert record["per_tag"]["low"][3] == pytest.approx(1.0)  # F1 on the split: the tones separate cleanly
    assert after.metrics["threshold_f1_valid"] == pytest.approx(1.0)
    assert after.provenance["made_by"] == before.provenance["made_by"]  # the rest of the card is kept

    assert main(["verify", str(model)]) == 0  # the test vector (scores, not decisions) still holds
    assert "FAIL" not in capsys.readouterr().out


def test_calibrate_refuses_what_it_cannot_calibrate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("onnxruntime")
    sf = pytest.importorskip("soundfile")
    from edgetag.runtime.cli import main

    model = build_model(tmp_path / "m.onnx", "window")
    sf.write(tmp_path / "a.wav", _clip(0.3), RATE, subtype="FLOAT")
    (tmp_path / "m.jsonl").write_text(json.dumps({"path": "a.wav", "labels": [], "missing": "*", "split": "valid"}) + "\n")
    _write_teacher_cache(tmp_path / "cache", ["a.wav"])
    base = ["calibrate", str(model), "--data", str(tmp_path / "m.jsonl"), "--teacher-cache", str(tmp_path / "cache"),
            "--teacher", "band-teacher"]
    cases = [
        ([], "no tag has >= 30 positive teacher windows"),  # 2 windows per tag in one clip
        (["--split", "test", "--min-positive-windows", "1"], "no test entry"),
        (["--teacher-columns", "0-1"], "2 columns for the model's 3 labels"),
    ]
    for extra, needle in cases:
        assert main(base + extra) == 1
        err = capsys.readouterr().err
        assert needle in err and "Traceback" not in err, err
