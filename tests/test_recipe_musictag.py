"""The music-tag recipe's manifest (training/recipes/musictag/prepare.py): splits, chunks, the train cap."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from conftest import load_script  # noqa: E402

PREPARE = Path(__file__).resolve().parents[1] / "training" / "recipes" / "musictag" / "prepare.py"


def _prepare_module():
    return load_script(PREPARE, "recipe_musictag_prepare")


def _audio_manifest(folder: Path, rows: list[tuple[str, str, str, float, str]]) -> Path:
    """prepare_audio's manifest: (path, split, package, duration, kind) per file."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "manifest.jsonl", "w") as f:
        for path, split, package, duration, kind in rows:
            labels = ["music", "speech=0"] if kind == "music" else ["speech", "music=0"]
            f.write(json.dumps({"path": path, "labels": labels, "split": split, "package": package, "duration": duration}) + "\n")
    return folder


def test_held_out_tracks_are_cut_into_chunks_whose_last_one_is_open_ended(tmp_path):
    prep = _prepare_module()
    audio = _audio_manifest(tmp_path / "audio", [
        ("t/a.mp3", "train", "pa", 100.0, "music"),
        ("t/speech.wav", "train", "pa", 50.0, "speech"),
        ("v/b.mp3", "valid", "pb", 441.1, "music"),  # 3 full chunks and a 81.1 s tail
        ("x/c.ogg", "test", "pc", 242.0, "music"),  # 2 full chunks; the 2 s tail is dropped
    ])
    entries, hours = prep.select(audio, None, 120.0)
    valid = [(e.start, e.end) for e in entries if e.split == "valid"]
    # the last chunk runs to the end of the file: a header duration a little past what
    # decodes (asc-music's MP3s) must not make it unreadable
    assert valid == [(0.0, 120.0), (120.0, 240.0), (240.0, 360.0), (360.0, None)]
    assert [e.extra["duration"] for e in entries if e.split == "valid"] == [120.0, 120.0, 120.0, 81.1]
    assert [(e.start, e.end) for e in entries if e.split == "test"] == [(0.0, 120.0), (120.0, 240.0)]
    train = [e for e in entries if e.split == "train"]
    assert [e.path for e in train] == ["t/a.mp3"]  # music only
    assert all(e.missing_all for e in entries)  # every tag is learnt from the teacher
    assert hours["train"] == pytest.approx(100.0 / 3600)
    assert hours["valid"] == pytest.approx(441.1 / 3600)


def test_train_hours_caps_in_a_stable_order(tmp_path):
    prep = _prepare_module()
    rows = [(f"t/{i}.ogg", "train", f"p{i % 3}", 1800.0, "music") for i in range(12)]
    audio = _audio_manifest(tmp_path / "audio", rows)
    first, hours = prep.select(audio, 2.0, 120.0)
    again, _ = prep.select(audio, 2.0, 120.0)
    assert [e.path for e in first] == [e.path for e in again]
    assert len(first) == 4 and hours["train"] == pytest.approx(2.0)
    everything, _ = prep.select(audio, None, 120.0)
    assert len(everything) == 12


RUN = PREPARE.with_name("run.py")


def test_a_stored_evaluation_is_measured_again_when_its_split_changes(tmp_path, monkeypatch):
    """Adding held-out packages must not leave the results of the old, smaller test split in place."""
    run = load_script(RUN, "recipe_musictag_run")
    calls: list[str] = []

    def fake_evaluate(model, manifest, root, cache, split):
        calls.append(split)
        return {"split": split, "windows": len(calls)}

    monkeypatch.setattr(run, "evaluate_agreement", fake_evaluate)
    manifest = tmp_path / "manifest.jsonl"
    rows = [{"path": "a.ogg", "split": "train"}, {"path": "b.ogg", "split": "test"}, {"path": "c.ogg", "split": "valid"}]
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    model = tmp_path / "music-tags.onnx"

    first = run._agreement(model, manifest, tmp_path, tmp_path, "test")
    assert model.with_suffix(".agreement.json").is_file()
    assert run._agreement(model, manifest, tmp_path, tmp_path, "test") == first  # read back, not measured again
    # more training audio or another valid package leaves the test result as it is
    manifest.write_text("".join(json.dumps(r) + "\n" for r in [*rows, {"path": "d.ogg", "split": "train"},
                                                                  {"path": "e.ogg", "split": "valid"}]))
    assert run._agreement(model, manifest, tmp_path, tmp_path, "test") == first
    assert calls == ["test"]
    # a new test package invalidates it
    manifest.write_text(manifest.read_text() + json.dumps({"path": "f.ogg", "split": "test"}) + "\n")
    again = run._agreement(model, manifest, tmp_path, tmp_path, "test")
    assert calls == ["test", "test"] and again["windows"] == 2
    assert again["entries_sha1"] == run.split_rows_sha1(manifest, "test") != first["entries_sha1"]


VOICES = PREPARE.with_name("voices.py")


def test_a_voice_track_has_speech_in_turns_and_one_stretch_without(tmp_path):
    np = pytest.importorskip("numpy")
    voices = load_script(VOICES, "recipe_musictag_voices")
    sr = voices.SR
    prompts = [np.full(int(1.5 * sr), 0.1, np.float32), np.full(int(0.7 * sr), -0.2, np.float32)]
    for seed in range(20):
        track, intervals = voices.speech_track(prompts, 30 * sr, np.random.default_rng(seed))
        assert len(track) == 30 * sr and intervals
        spoken = np.zeros(len(track), bool)
        for start, end in intervals:
            assert 0 <= start < end <= 30.0
            spoken[round(start * sr):round(end * sr)] = True
        assert np.array_equal(spoken, track != 0)  # the intervals are exactly where the voice is
        # the longest stretch without a voice is the quiet one (8-12 s; or more where it meets a pause)
        edges = np.flatnonzero(np.diff(np.concatenate([[1], spoken.astype(int), [1]])))
        longest = max(b - a for a, b in zip(edges[::2], edges[1::2])) / sr
        assert longest >= voices.QUIET_S[0]


def test_only_the_train_mixes_join_the_training_split(tmp_path):
    prep = _prepare_module()
    mixes = tmp_path / "voices.jsonl"
    mixes.write_text("".join(json.dumps({"path": f"voice-mixes/{s}/m{i}.wav", "split": s, "package": "asterisk-x",
                                         "duration": 30.0, "speech": [[1.0, 2.0]]}) + "\n"
                             for i, s in enumerate(["train", "train", "valid", "test"])))
    entries = prep.voice_mixes(mixes)
    assert [e.path for e in entries] == ["voice-mixes/train/m0.wav", "voice-mixes/train/m1.wav"]
    assert all(e.split == "train" and e.missing_all and e.extra["package"] == "voice-mix/asterisk-x" for e in entries)
    with pytest.raises(FileNotFoundError, match="voices.py"):
        prep.voice_mixes(tmp_path / "none.jsonl")


def test_voice_thresholds_leave_at_most_the_share_on_even_with_float32_ties():
    np = pytest.importorskip("numpy")
    voices = load_script(VOICES, "recipe_musictag_voices")
    rng = np.random.default_rng(0)
    quiet = np.round(rng.random(1000), 2).astype(np.float32)  # many equal scores, as an int8 model gives
    voiced = (0.9 + 0.1 * rng.random(400)).astype(np.float32)
    scores, truth = np.concatenate([quiet, voiced]), np.r_[np.zeros(1000, int), np.ones(400, int)]
    threshold, voiced_on, quiet_on = voices.voice_thresholds(scores, truth)
    # the runtime compares float32 scores with the card's float: the same share either way
    assert (quiet >= threshold).mean() == (quiet.astype(np.float64) >= threshold).mean() == quiet_on <= 0.05
    assert voiced_on == (voiced >= threshold).mean() > 0.4
    with pytest.raises(ValueError, match="with and without"):
        voices.voice_thresholds(voiced, np.ones(len(voiced), int))


def test_a_decision_is_voiced_silent_or_left_out_by_how_much_speech_its_window_holds():
    np = pytest.importorskip("numpy")
    voices = load_script(VOICES, "recipe_musictag_voices")
    speech = [[1.0, 2.0], [5.0, 5.2]]
    times = np.array([1.0, 1.5, 2.0, 3.5, 5.1, 5.6, 7.0])  # each decision's 1 s window ends there
    assert voices.decision_truth(speech, times, 1.0).tolist() == [0, 1, 1, 0, -1, -1, 0]
