"""Smoke test of the instrument recipe's data preparation (training/recipes/instruments/prepare.py)."""

from __future__ import annotations

import csv
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from conftest import load_script  # noqa: E402

PREPARE = Path(__file__).resolve().parents[1] / "training" / "recipes" / "instruments" / "prepare.py"


def _prepare_module():
    return load_script(PREPARE, "recipe_instruments_prepare")


def _recipe_common():
    return load_script(PREPARE.parents[1] / "recipe_common.py", "recipe_common")


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_midi_writer_is_a_valid_file(tmp_path):
    prep = _prepare_module()
    import random

    events = prep.clip_events(random.Random(0), ["piano", "drums"], 1.0, 0)
    path = tmp_path / "a.mid"
    write_midi = _recipe_common().write_midi

    write_midi(path, events)
    data = path.read_bytes()
    assert data[:4] == b"MThd" and data[14:18] == b"MTrk"
    assert int.from_bytes(data[18:22], "big") == len(data) - 22
    assert data.endswith(b"\xff\x2f\x00")


@pytest.mark.skipif(shutil.which("fluidsynth") is None, reason="fluidsynth not installed")
def test_prepare_writes_manifest(tmp_path):
    prep = _prepare_module()
    if not any(Path(s).is_file() for s in prep.SOUNDFONTS):
        pytest.skip("no General MIDI soundfont (fluid-soundfont-gm)")
    out = tmp_path / "gm"
    assert prep.main(["--out", str(out), "--n-labelled", "3", "--n-unlabelled", "2", "--n-test", "2", "--seconds", "1.0"]) == 0
    rows = _rows(out / "manifest.csv")
    assert len(rows) == 7
    assert [r["split"] for r in rows] == ["train"] * 5 + ["test"] * 2
    unlabelled = [r for r in rows if r["missing"] == "*"]
    assert len(unlabelled) == 2 and all(r["labels"] == "" for r in unlabelled)
    for r in rows:
        assert (out / r["path"]).is_file()
        if r["missing"] != "*":
            assert r["labels"] and set(r["labels"].split(";")) <= set(prep.LABELS)
    assert len(_rows(out / "manifest_labelled.csv")) == 5
    mixed = _rows(out / "manifest_mixed.csv")
    assert len(mixed) == 3 * 8 + 2 + 2  # labelled train rows repeated 8 times

    from edgetag.training.data import load_manifest

    m = load_manifest(out / "manifest.csv")
    assert sorted(m.splits()) == ["test", "train"]
    import soundfile as sf

    info = sf.info(str(out / rows[0]["path"]))
    assert info.samplerate == 16000 and info.channels == 1 and info.frames == 16000
