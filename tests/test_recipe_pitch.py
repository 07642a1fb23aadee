"""The pitch recipe's real-audio subset (training/recipes/pitch/prepare_real.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from conftest import load_script  # noqa: E402

from edgetag.training.prepare_audio import MUSIC_PACKAGES

PREPARE_REAL = Path(__file__).resolve().parents[1] / "training" / "recipes" / "pitch" / "prepare_real.py"


def _source(folder: Path) -> Path:
    """A prepare_audio manifest: speech prompts and soundtrack files in train and test packages."""
    folder.mkdir(parents=True)
    train_pkgs, test_pkg = sorted(MUSIC_PACKAGES)[:2], sorted(MUSIC_PACKAGES)[2]
    rows = [{"path": f"sp/{s}{i}.wav", "labels": ["speech"], "split": s, "package": "asterisk-core-sounds-en-wav",
             "duration": 3.0} for s in ("train", "test") for i in range(20)]
    rows += [{"path": f"{p}/m{i}.ogg", "labels": ["music"], "split": "train", "package": p, "duration": 60.0 + i}
             for p in train_pkgs for i in range(5)]
    rows += [{"path": f"{test_pkg}/m{i}.ogg", "labels": ["music"], "split": "test", "package": test_pkg, "duration": 90.0}
             for i in range(3)]
    rows.append({"path": "other/m.ogg", "labels": ["music"], "split": "train", "package": "not-a-soundtrack", "duration": 60.0})
    path = folder / "manifest.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _rows(tmp_path: Path, name: str, source: Path, *args: str) -> list[dict]:
    prep = load_script(PREPARE_REAL, "recipe_pitch_prepare_real")
    out = tmp_path / name
    assert prep.main(["--source", str(source), "--out", str(out), "--root", str(tmp_path), *args]) == 0
    return [json.loads(line) for line in (out / "real.jsonl").read_text().splitlines()]


def test_more_train_music_keeps_test_rows_and_rows_already_drawn(tmp_path):
    source = _source(tmp_path / "audio")
    small = _rows(tmp_path, "small", source, "--music-train", "6", "--speech-train", "8")
    large = _rows(tmp_path, "large", source, "--music-train", "12", "--speech-train", "8")

    def pick(rows: list[dict], split: str, kind: str) -> list[dict]:
        return [r for r in rows if r["split"] == split and r["source"] == kind]

    assert pick(small, "test", "music") == pick(large, "test", "music")
    assert pick(small, "test", "speech") == pick(large, "test", "speech")
    assert pick(small, "train", "speech") == pick(large, "train", "speech")
    assert pick(large, "train", "music")[:6] == pick(small, "train", "music")
    music = pick(large, "train", "music")
    assert len(music) == 12
    # spread evenly over the soundtrack packages of the split, excerpts inside their files
    assert sorted({r["package"] for r in music}) == sorted(MUSIC_PACKAGES)[:2]
    assert all(0.0 <= r["start"] and r["end"] - r["start"] == 10.0 and r["end"] < 60.0 + 5 for r in music)
    # the split is by package: the held-out music comes from the test package only, paths relative to root
    assert {r["package"] for r in pick(large, "test", "music")} == {sorted(MUSIC_PACKAGES)[2]}
    assert all(r["path"].startswith("audio/") for r in large)


def test_valid_rows_come_from_the_valid_split_and_leave_train_and_test_as_they_were(tmp_path):
    source = _source(tmp_path / "audio")
    rows = [json.loads(line) for line in source.read_text().splitlines()]
    valid_pkg = sorted(MUSIC_PACKAGES)[3]
    extra = [{"path": f"sp/valid{i}.wav", "labels": ["speech"], "split": "valid", "package": "asterisk-core-sounds-en-wav",
              "duration": 3.0} for i in range(6)]
    extra += [{"path": f"{valid_pkg}/v{i}.ogg", "labels": ["music"], "split": "valid", "package": valid_pkg,
               "duration": 80.0} for i in range(2)]
    with_valid = tmp_path / "audio2"
    with_valid.mkdir()
    (with_valid / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows + extra))

    before = _rows(tmp_path, "before", source, "--speech-valid", "4", "--music-valid", "3")  # no valid split there
    after = _rows(tmp_path, "after", with_valid / "manifest.jsonl", "--speech-valid", "4", "--music-valid", "3")
    assert [r for r in before if r["split"] != "valid"] == [
        {**r, "path": r["path"].replace("audio2/", "audio/")} for r in after if r["split"] != "valid"]
    assert not [r for r in before if r["split"] == "valid"]  # warned, speech-less and music-less: nothing drawn
    valid = [r for r in after if r["split"] == "valid"]
    assert sum(r["source"] == "speech" for r in valid) == 4
    music = [r for r in valid if r["source"] == "music"]
    assert len(music) == 3 and {r["package"] for r in music} == {valid_pkg}


def test_run_refuses_a_folder_drawn_with_other_train_music(tmp_path):
    run = load_script(PREPARE_REAL.with_name("run.py"), "recipe_pitch_run")
    real = tmp_path / "real.jsonl"
    run._check_music_train(real, 720)  # no folder yet: nothing to refuse
    rows = [{"split": "train", "source": "music"}] * 3 + [{"split": "test", "source": "music"}, {"split": "train", "source": "speech"}]
    real.write_text("".join(json.dumps(r) + "\n" for r in rows))
    run._check_music_train(real, 3)
    with pytest.raises(SystemExit, match="holds 3 train music excerpts, --music-train asks for 720"):
        run._check_music_train(real, 720)
    assert run._has_split(real, "test") and not run._has_split(real, "valid")
    assert not run._has_split(tmp_path / "missing.jsonl", "train")


def test_install_as_names_only_built_in_pitch_models() -> None:
    from edgetag.runtime.models import BASE_MODELS

    run = load_script(PREPARE_REAL.with_name("run.py"), "recipe_pitch_run")
    assert set(run.PITCH_BUILTINS) <= set(BASE_MODELS) and "music-tags" not in run.PITCH_BUILTINS
    with pytest.raises(SystemExit):
        run.main(["--install-as", "pitch_small"])  # a typo is refused before anything runs
