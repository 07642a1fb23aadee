"""Built-in models: names resolve to files shipped in the package, with clear errors otherwise."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from edgetag.runtime import models
from edgetag.runtime.models import BUILTIN_MODELS, DEFAULT_MODEL, UnknownModelError, resolve_model


def test_a_path_wins_over_a_name(tmp_path: Path) -> None:
    f = tmp_path / "pitch"  # a file that happens to carry a built-in name
    f.write_bytes(b"x")
    assert resolve_model(str(f)) == f


def test_unknown_name_lists_the_builtin_models() -> None:
    with pytest.raises(UnknownModelError, match="built-in models: music-tags"):
        resolve_model("no-such-model")


def test_missing_file_with_suffix_says_not_found() -> None:
    with pytest.raises(UnknownModelError, match="model not found: nowhere.onnx$"):
        resolve_model("nowhere.onnx")


def test_missing_builtin_file_says_reinstall(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(models, "MODELS_DIR", tmp_path)
    with pytest.raises(UnknownModelError, match="not in this installation.*reinstall"):
        resolve_model(None)


def test_default_is_a_builtin() -> None:
    assert DEFAULT_MODEL in BUILTIN_MODELS


@pytest.mark.parametrize("name", sorted(BUILTIN_MODELS))
def test_shipped_model_loads_with_a_valid_card(name: str) -> None:
    pytest.importorskip("onnxruntime")
    from edgetag.runtime.model import load_model

    path = resolve_model(name)
    assert path.stat().st_size <= 5_000_000, f"{name}: {path.stat().st_size} bytes, over the 5 MB budget"
    card = load_model(path).card
    assert card.metrics, f"{name}: the card records no measured metrics"
    assert card.provenance.get("teachers"), f"{name}: the card names no teacher"


def test_models_command_lists_every_builtin() -> None:
    pytest.importorskip("onnxruntime")
    out = subprocess.run([sys.executable, "-m", "edgetag.runtime.cli", "models"], capture_output=True, text=True, check=True)
    for name in BUILTIN_MODELS:
        assert name in out.stdout
    assert "missing" not in out.stdout


def test_info_on_the_pitch_model_describes_its_bins_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("onnxruntime")
    from edgetag.runtime.cli import main

    assert main(["info", "pitch"]) == 0
    out = capsys.readouterr().out
    labels = [line for line in out.splitlines() if line.startswith(("labels", "  pitch_bin_"))]
    assert len(labels) == 1 and "pitch_bin_000 .. pitch_bin_359" in labels[0]
    assert "31.70 Hz .. 2005.50 Hz" in labels[0] and ">= 0.5" in labels[0]
    assert "latency    32 ms, frame centre to decision (half the frame)" in out
    assert main(["info", "pitch-small"]) == 0  # two frames per call: 10 ms more
    assert "latency    42 ms, frame centre to decision (half the frame + 10 ms waiting)" in capsys.readouterr().out
    assert main(["info", "music-tags"]) == 0  # tag models still list every label with its threshold
    out = capsys.readouterr().out
    assert "labels     (threshold)" in out and "latency" not in out  # a window model: its window says it


@pytest.mark.parametrize("name", sorted(BUILTIN_MODELS))
def test_shipped_model_decides_every_hop_while_streaming(name: str) -> None:
    """Pushed 10 ms at a time, no decision is later than one decision interval plus one push, plus the
    frames a stateful card gathers per call (each one hop: its stated latency, `pitch-small`'s two frames).
    """
    pytest.importorskip("onnxruntime")
    from edgetag.runtime.demo import demo_music
    from edgetag.runtime.engine import Engine
    from edgetag.runtime.model import load_model

    model = load_model(resolve_model(name), threads=1)
    card, fe = model.card, model.card.frontend
    audio = demo_music(fe.sample_rate, seconds=3.0)
    engine = Engine(model)
    warmup = (card.window_frames if card.streaming_mode == "window" else 1) * fe.hop_length + fe.win_length
    last_end, worst = 0, 0
    for start in range(0, len(audio), fe.hop_length):
        decisions = engine.push(audio[start : start + fe.hop_length])
        if decisions:
            last_end = decisions[-1].end_sample
        if engine.samples >= warmup + fe.hop_length:
            worst = max(worst, engine.samples - last_end)
    gather = card.frames_per_call - 1 if card.streaming_mode == "stateful" else 0
    bound = (card.hop_frames + 1 + gather) * fe.hop_length + fe.win_length
    assert worst <= bound, f"{name}: a decision came {worst} samples late"
    if card.streaming_mode == "stateful":  # a tuner: the frame's second half and the frames gathered after it
        latency_ms = 1e3 * (fe.win_length / 2 + gather * fe.hop_length) / fe.sample_rate
        assert latency_ms <= 50.0, f"{name}: {latency_ms:g} ms of algorithmic latency, over the 50 ms a tuner allows"


def _sung_a3(path: Path, seconds: float = 2.0) -> Path:
    """A 220 Hz (A3) tone with a few harmonics, as a 16 kHz WAV."""
    import numpy as np
    import soundfile as sf

    t = np.arange(int(16000 * seconds)) / 16000
    wave = sum(0.3 / k * np.sin(2 * np.pi * 220.0 * k * t) for k in (1, 2, 3))
    sf.write(path, wave.astype(np.float32), 16000)
    return path


def test_tag_with_the_pitch_model_writes_decoded_pitch_not_360_bins(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`edgetag tag --model pitch` reads out f0 and notes in every format, as `listen` does."""
    pytest.importorskip("onnxruntime")
    import csv
    import json

    from edgetag.runtime.cli import main

    wav = _sung_a3(tmp_path / "a3.wav")
    assert main(["tag", str(wav), "--model", "pitch", "--threads", "1"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    decisions, (summary,) = lines[:-1], lines[-1:]
    assert len(decisions) > 150 and all("scores" not in d for d in decisions)  # 360 bins only on request
    voiced = [d["pitch"] for d in decisions if d["pitch"]["voiced"]]
    assert len(voiced) > 0.8 * len(decisions)
    assert sum(p["note"] == "A3" for p in voiced) > 0.9 * len(voiced)
    s = summary["summary"]
    assert s["median_note"] == "A3" and abs(s["median_f0_hz"] - 220.0) < 3.0 and s["voiced_fraction"] > 0.8
    assert next(iter(s["notes"])) == "A3"

    assert main(["tag", str(wav), "--model", "pitch", "--scores", "all"]) == 0
    first = json.loads(capsys.readouterr().out.splitlines()[0])
    assert len(first["scores"]) == 360 and "pitch" in first

    out = tmp_path / "a3.csv"
    assert main(["tag", str(wav), "--model", "pitch", "--format", "csv", "-o", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert list(rows[0]) == ["t", "latency_ms", "silent", "skipped_s", "f0_hz", "confidence", "voiced", "note", "cents", "midi", "clarity",
                             "active"]
    assert sum(r["note"] == "A3" and r["voiced"] == "1" for r in rows) > 0.8 * len(rows)
    assert sum(r["clarity"] != "" and float(r["clarity"]) > 0.99 for r in rows) > 0.8 * len(rows)  # a steady tone
    assert "pitch summary" in capsys.readouterr().err

    assert main(["tag", str(wav), "--model", "pitch", "--format", "summary"]) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"pitch summary of {wav}") and "(A3)" in text and "pitch_bin" not in text

    # events are notes: the tone is one A3, from its first decisions to the end
    assert main(["tag", str(wav), "--model", "pitch", "--events"]) == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"event"' in line]
    assert [(e["event"], e["label"]) for e in events] == [("onset", "A3"), ("offset", "A3")]
    assert events[0]["t"] < 0.2 and events[1]["t"] > 1.9


# ------------------------------------------------------------- readable cards and summaries (issue 24)
def _strings(value, where: str = ""):
    """Every string inside a card's JSON value, with where it sits."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, f"{where}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _strings(item, f"{where}[{i}]")
    elif isinstance(value, str):
        yield where, value


@pytest.mark.parametrize("name", sorted(BUILTIN_MODELS))
def test_shipped_cards_hold_no_path_of_the_training_machine(name: str) -> None:
    """No absolute path (a home, a data folder) in any field of a shipped card: they name files relatively."""
    pytest.importorskip("onnxruntime")
    import json
    import re

    from edgetag.runtime.model import load_model

    card = json.loads(load_model(resolve_model(name)).card.to_json())
    absolute = re.compile(r"(^|[\s'\"(=:])(/(home|work|root|tmp|mnt|data|Users|var|opt)\b|~/|[A-Za-z]:\\)")
    found = [(where, text) for where, text in _strings(card) if absolute.search(text)]
    assert not found, found
    # what it was: the recipe's --data folder's (the pitch recipe trains on train.jsonl: manifest.jsonl + any tones)
    names = ("manifest.jsonl", "train.jsonl") if name.startswith("pitch") else ("manifest.jsonl",)
    assert card["provenance"]["data"]["manifest"] in names


def test_info_and_models_fit_in_80_columns_and_read_as_fields(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("onnxruntime")
    from edgetag.runtime.cli import main

    for name in BUILTIN_MODELS:
        assert main(["info", name]) == 0
        out = capsys.readouterr().out.splitlines()
        long = [line for line in out if len(line) > 80 and not line.startswith("model ")]  # the path is the user's
        assert not long, (name, long)
        # provenance: one field per line, nested fields indented below their key
        at = out.index("provenance")
        manifests = ("manifest.jsonl", "train.jsonl") if name.startswith("pitch") else ("manifest.jsonl",)
        assert "  data:" in out[at:] and any(f"    manifest: {m}" in out[at:] for m in manifests)
        task = next(line for line in out if line.startswith("task "))
        if name.startswith("pitch"):
            assert task == "task       pitch, 360 bins from 31.7 Hz to 2.0 kHz, decoded to f0/note/cents"
        else:  # labels with their thresholds in columns: 50 labels on far fewer lines
            assert task.startswith("task       tags, 50 labels")
            rows = out[out.index(next(line for line in out if line.startswith("labels "))) + 1 :]
            assert 10 <= len(rows) < 25 and sum(row.count("  (") for row in rows) == 50
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert max(len(line) for line in out.splitlines()[2:]) <= 80  # after the installation's folder
    assert "multi_label, 360 labels" not in out
    pitch_models = sum(name.startswith("pitch") for name in BUILTIN_MODELS)
    assert " ".join(out.split()).count("pitch, 360 bins from 31.7 Hz to 2.0 kHz, decoded to f0/note/cents") == pitch_models


def _melody(path: Path) -> Path:
    """A3 for 1 s, 0.5 s of silence, C4 for 1 s (three harmonics), a 16 kHz WAV."""
    import numpy as np
    import soundfile as sf

    def tone(hz: float, seconds: float) -> np.ndarray:
        t = np.arange(int(16000 * seconds)) / 16000
        return sum(0.3 / k * np.sin(2 * np.pi * hz * k * t) for k in (1, 2, 3))

    sf.write(path, np.concatenate([tone(220.0, 1.0), np.zeros(8000), tone(261.63, 1.0)]).astype(np.float32), 16000)
    return path


def test_pitch_summary_lists_the_notes_played_with_their_times(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    """`tag --model pitch` for people: each note with when it started and ended, its tuning and f0; jsonl's
    ``active`` is the sounding note."""
    pytest.importorskip("onnxruntime")
    import json

    from edgetag.runtime.cli import main

    wav = _melody(tmp_path / "melody.wav")
    assert main(["tag", str(wav), "--model", "pitch", "--format", "summary", "--threads", "1"]) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"pitch summary of {wav}") and max(len(line) for line in text.splitlines()[1:]) <= 80
    notes = [line.split() for line in text.splitlines() if line.startswith("    ") and " ct " in line]
    assert [n[1] for n in notes] == ["A3", "C4"], text
    (a_on, a_off), (c_on, c_off) = ((float(v) for v in n[0].split("-")) for n in notes)
    assert a_on < 0.1 and 0.95 < a_off < 1.1 and 1.45 < c_on < 1.6 and c_off > 2.4, text
    assert abs(float(notes[0][2])) < 25 and abs(float(notes[0][4]) - 220.0) < 3  # cents off A3, mean f0

    assert main(["tag", str(wav), "--model", "pitch", "--threads", "1"]) == 0
    decisions = [json.loads(line) for line in capsys.readouterr().out.splitlines()][:-1]
    active = [tuple(d["active"]) for d in decisions]
    assert set(active) == {("A3",), (), ("C4",)}
    assert active[len(active) // 5] == ("A3",) and active[-5] == ("C4",)
