"""`edgetag tag`, `info` and `listen` (file, stdin, bad input) from the command line."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from conftest import LABELS, build_model, tone_signal  # noqa: E402
from edgetag.runtime.cli import main  # noqa: E402
from edgetag.runtime.engine import offline_decisions  # noqa: E402
from edgetag.runtime.model import load_model  # noqa: E402

EDGETAG = [sys.executable, "-m", "edgetag.runtime.cli"]


def _jsonl(text: str) -> tuple[list[dict], list[dict]]:
    objs = [json.loads(line) for line in text.splitlines() if line.strip()]
    return [o for o in objs if "t" in o and "scores" in o], [o for o in objs if "summary" in o]


def _stats(stderr: str) -> dict:
    line = next(line for line in stderr.splitlines() if line.startswith("edgetag listen: stats "))
    return json.loads(line.split("stats ", 1)[1], parse_constant=_not_json)


def _not_json(constant: str) -> None:
    raise AssertionError(f"{constant} is not JSON: strict parsers (jq, JavaScript) reject it")


def test_tag_jsonl_matches_the_offline_model(window_model, tone_wav, capsys) -> None:
    assert main(["tag", str(tone_wav), "--model", str(window_model), "--threads", "1"]) == 0
    decisions, summaries = _jsonl(capsys.readouterr().out)
    offline = offline_decisions(load_model(window_model), tone_signal())
    assert len(decisions) == len(offline)
    for got, want in zip(decisions, offline):
        assert got["t"] == pytest.approx(want.t, abs=1e-6)
        assert list(got["scores"]) == list(LABELS)
        # the WAV is 16-bit: compare to the float signal loosely
        np.testing.assert_allclose(list(got["scores"].values()), want.scores, atol=2e-3)
    (summary,) = summaries
    assert summary["summary"]["decisions"] == len(decisions)
    assert set(summary["summary"]["top"]) == set(LABELS)
    assert summary["summary"]["max"]["low"] > 0.9


def test_tag_csv_and_events(stateful_model, tone_wav, tmp_path, capsys) -> None:
    out = tmp_path / "d.csv"
    assert main(["tag", str(tone_wav), str(tone_wav), "--model", str(stateful_model), "--format", "csv",
                 "-o", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert list(rows[0]) == ["file", "t", "latency_ms", "silent", "skipped_s", *LABELS, "active"]
    assert len(rows) % 2 == 0 and rows[0]["t"] == rows[len(rows) // 2]["t"]
    assert "clip summary" in capsys.readouterr().err
    assert main(["tag", str(tone_wav), "--model", str(stateful_model), "--format", "csv", "--events"]) == 0
    # real CSV since issue 24 (it was text lines): a header, then t,event,label,score per event
    events = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [(e["event"], e["label"]) for e in events] == [(k, label) for label in LABELS for k in ("onset", "offset")]
    assert 0.5 < float(events[0]["t"]) < 0.6


def test_output_suffix_picks_the_format(stateful_model, tone_wav, tmp_path) -> None:
    """`-o out.csv` without --format writes CSV (it wrote jsonl into a .csv file); any other suffix jsonl;
    an explicit --format wins over the suffix; listen follows the same rule."""
    for name, want_csv in (("d.csv", True), ("D.CSV", True), ("d.jsonl", False), ("d.txt", False)):
        out = tmp_path / name
        assert main(["tag", str(tone_wav), "--model", str(stateful_model), "-o", str(out)]) == 0
        text = out.read_text()
        assert text.startswith("t,latency_ms,") == want_csv, (name, text[:60])  # one file: no file column
        if not want_csv:
            assert json.loads(text.splitlines()[0])["t"] > 0
    explicit = tmp_path / "e.csv"
    assert main(["tag", str(tone_wav), "--model", str(stateful_model), "--format", "jsonl", "-o", str(explicit)]) == 0
    assert json.loads(explicit.read_text().splitlines()[0])["t"] > 0
    heard = tmp_path / "l.csv"
    assert main(["listen", "--file", str(tone_wav), "--model", str(stateful_model), "-o", str(heard)]) == 0
    rows = list(csv.DictReader(heard.open()))
    assert len(rows) > 10 and list(rows[0])[:2] == ["t", "latency_ms"]


def test_output_never_replaces_an_input_a_link_or_a_fifo(stateful_model, tone_wav, tmp_path) -> None:
    """-o naming an input file (or a folder) is refused before anything runs, the input untouched; a link
    stays a link with its target written; a FIFO is written into, not replaced; what a killed run left
    beside the output is removed."""
    import shutil
    import threading

    wav = tmp_path / "in.wav"
    shutil.copy(tone_wav, wav)
    before = wav.read_bytes()
    os.link(wav, tmp_path / "alias.wav")  # another name for the same file
    done = _run("tag", str(wav), "--model", str(stateful_model), "-o", str(tmp_path / "alias.wav"))
    assert done.returncode == 2 and b"is also an input file" in done.stderr
    done = _run("tag", str(tmp_path / "missing.wav"), str(wav), "--model", str(stateful_model), "-o",
                str(tmp_path / "alias.wav"))  # an input that does not exist is not the output (it crashed the check)
    assert done.returncode == 2 and b"is also an input file" in done.stderr and b"Traceback" not in done.stderr
    done = _run("listen", "--file", str(wav), "--model", str(stateful_model), "-o", str(wav))
    assert done.returncode == 2 and b"is also an input file" in done.stderr and wav.read_bytes() == before
    done = _run("tag", str(wav), "--model", str(stateful_model), "-o", str(tmp_path))
    assert done.returncode == 2 and b"is a folder" in done.stderr
    for inside in (wav / "out.jsonl", wav / "deeper" / "out.jsonl"):  # a path under a file: one line, no traceback
        done = _run("tag", str(wav), "--model", str(stateful_model), "-o", str(inside))
        assert done.returncode == 2 and f"{wav} is a file, not a folder".encode() in done.stderr
        assert b"Traceback" not in done.stderr
    made = tmp_path / "new" / "sub" / "out.jsonl"  # a missing folder is made, and said
    done = _run("listen", "--file", str(wav), "--model", str(stateful_model), "-o", str(made))
    assert done.returncode == 0 and made.is_file() and f"made the folder {made.parent}".encode() in done.stderr
    made = tmp_path / "new2" / "out.jsonl"
    done = _run("tag", str(wav), "--model", str(stateful_model), "-o", str(made))
    assert done.returncode == 0 and made.is_file() and f"made the folder {made.parent}".encode() in done.stderr

    target, link = tmp_path / "target.jsonl", tmp_path / "link.jsonl"
    target.write_text("old\n")
    link.symlink_to(target)
    stale = tmp_path / ".target.jsonl.999999999.abcd1234.tmp"  # a dead writer's (no such pid)
    stale.write_text("partial")
    others = [tmp_path / ".other.jsonl.999999999.abcd1234.tmp", tmp_path / ".cfg.55fzx0go.tmp"]  # not its temps
    for other in others:
        other.write_text("someone else's")
    assert main(["tag", str(wav), "--model", str(stateful_model), "-o", str(link)]) == 0
    assert link.is_symlink() and json.loads(target.read_text().splitlines()[0])["t"] > 0 and not stale.exists()
    assert all(other.exists() for other in others)

    fifo = tmp_path / "pipe.jsonl"
    os.mkfifo(fifo)
    got: list[str] = []
    reader = threading.Thread(target=lambda: got.extend(fifo.open().read().splitlines()))
    reader.start()
    assert main(["tag", str(wav), "--model", str(stateful_model), "-o", str(fifo), "--format", "jsonl"]) == 0
    reader.join(timeout=30)
    assert fifo.is_fifo() and len(got) > 10 and json.loads(got[0])["t"] > 0


def test_pitch_summary_with_events_keeps_each_notes_tuning(tmp_path, capsys) -> None:
    """`--events --format summary`: the notes list has its cents and mean f0 columns, as without --events
    (the recorder of the summary's spans got no decisions in events-only mode)."""
    import soundfile as sf

    t = np.arange(16000) / 16000
    x = np.concatenate([0.3 * np.sin(2 * np.pi * 261.63 * t), np.zeros(1600), 0.3 * np.sin(2 * np.pi * 329.63 * t)])
    sf.write(tmp_path / "two.wav", x.astype(np.float32), 16000)
    tables = []
    for extra in ([], ["--events"]):
        assert main(["tag", str(tmp_path / "two.wav"), "--model", "pitch", "--format", "summary", *extra]) == 0
        out = capsys.readouterr().out
        tables.append([line for line in out.splitlines() if " ct " in line])
    assert tables[0] == tables[1] and len(tables[0]) == 2 and "261.6 Hz" in tables[0][0], tables


@pytest.mark.parametrize(("args", "message"), [
    (["--file", "x.wav", "--stdin", "--rate", "16000"], "give --file or --stdin, not both"),
    (["--file", "x.wav", "--rate", "8000"], "--rate: raw PCM on stdin only, with --stdin"),
    (["--pcm", "f32le", "--channels", "2"], "--pcm, --channels: raw PCM on stdin only"),
    (["--realtime"], "--realtime paces a --file"),
    (["--stdin", "--rate", "16000", "--device", "0"], "--device picks a microphone"),
])
def test_listen_refuses_options_its_source_would_ignore(args, message, capsys) -> None:
    """They were silently ignored (the file used, stdin never read); now one line and exit 2, before any model
    or device is opened."""
    assert main(["listen", *args]) == 2
    assert message in capsys.readouterr().err


def test_csv_summary_on_stderr_keeps_to_top_k(tone_wav, tmp_path, capsys) -> None:
    """With -o out.csv the summary goes to stderr with --top-k rows (and the tags that were on), as on a
    terminal: it listed all 50 of music-tags' labels."""
    assert main(["tag", str(tone_wav), "-o", str(tmp_path / "d.csv"), "--top-k", "2"]) == 0
    rows = [line for line in capsys.readouterr().err.splitlines() if line[:1] == " " and "." in line]
    assert 2 <= len(rows) < 10, rows


def test_info_prints_and_validates(window_model, tmp_path, capsys) -> None:
    assert main(["info", str(window_model)]) == 0
    out = capsys.readouterr().out
    for needle in ("tiny-bands-window", "mel_slaney", "window: 20 frames", "5 frames (50 ms)", "params", "MACs",
                   "toy_accuracy", "made_by", "low"):
        assert needle in out
    assert main(["info", str(window_model), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["labels"] == list(LABELS)

    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\x08\x07 this is not a protobuf")
    assert main(["info", str(corrupt)]) == 1
    assert "not a valid ONNX model" in capsys.readouterr().err
    card = json.loads(load_model(window_model).card.to_json())
    card["thresholds"] = [0.5, 0.5]
    tampered = build_model(tmp_path / "tampered.onnx", card_json=json.dumps(card))
    assert main(["info", str(tampered)]) == 1
    assert "2 thresholds for 3 labels" in capsys.readouterr().err
    card = json.loads(load_model(window_model).card.to_json())
    card["frontend"]["n_bins"] = 80
    assert main(["tag", "x.wav", "--model", str(build_model(tmp_path / "t2.onnx", card_json=json.dumps(card)))]) == 1
    assert "input 'features' has shape" in capsys.readouterr().err
    assert main(["info", str(build_model(tmp_path / "bare.onnx", card_json=None))]) == 1
    assert "not an edgetag model" in capsys.readouterr().err


def test_missing_default_model_says_so(tone_wav, capsys, monkeypatch, tmp_path) -> None:
    from edgetag.runtime import models

    monkeypatch.setattr(models, "MODELS_DIR", tmp_path)  # an installation without the built-in files
    assert main(["tag", str(tone_wav)]) == 1
    assert "built-in model 'music-tags' is not in this installation" in capsys.readouterr().err
    assert main(["listen", "--duration", "1"]) == 1
    assert "not in this installation" in capsys.readouterr().err
    assert main(["tag", str(tone_wav), "--model", "nope.onnx"]) == 1
    assert "model not found: nope.onnx" in capsys.readouterr().err


def test_listen_file_jsonl_equals_tag(window_model, tone_wav, capsys, tmp_path) -> None:
    assert main(["listen", "--model", str(window_model), "--file", str(tone_wav), "--format", "jsonl"]) == 0
    captured = capsys.readouterr()
    listened, listen_summary = _jsonl(captured.out)
    assert main(["tag", str(tone_wav), "--model", str(window_model)]) == 0
    tagged, tag_summary = _jsonl(capsys.readouterr().out)
    assert [d["scores"] for d in listened] == [d["scores"] for d in tagged]
    stats = _stats(captured.err)
    assert stats["decisions"] == len(tagged)
    # the last line: tag's summary of the same audio, and the stream's stats (what stderr's stats line says)
    assert captured.out.splitlines()[-1].startswith('{"summary"') and len(listen_summary) == 1
    stream = listen_summary[0]["summary"].pop("stream")
    assert listen_summary[0]["summary"] == tag_summary[0]["summary"]
    assert stream == stats
    out = tmp_path / "live.jsonl"  # -o FILE.jsonl: the same line ends the file
    assert main(["listen", "--model", str(window_model), "--file", str(tone_wav), "-o", str(out)]) == 0
    assert json.loads(out.read_text().splitlines()[-1])["summary"]["stream"]["decisions"] == len(tagged)
    table = tmp_path / "live.csv"  # CSV is a table: no summary row
    assert main(["listen", "--model", str(window_model), "--file", str(tone_wav), "-o", str(table)]) == 0
    rows = list(csv.DictReader(io.StringIO(table.read_text())))
    assert len(rows) == len(tagged) and rows[-1]["t"] == f"{tagged[-1]['t']:.6f}"
    assert stats["latency_ms_p50"] is None and stats["compute_ms_p50"] > 0  # full speed: no capture time, no latency
    assert "no latency (not live)" in captured.err and " nan " not in captured.err


def test_listen_pitch_summary_says_the_notes(tmp_path, capsys) -> None:
    """A pitch model's listen jsonl ends with tag's pitch summary (voiced share, median f0, notes)."""
    import soundfile as sf

    t = np.arange(2 * 16000) / 16000
    wav = tmp_path / "a4.wav"
    sf.write(wav, (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 16000)
    assert main(["listen", "--model", "pitch", "--file", str(wav), "--format", "jsonl"]) == 0
    last = json.loads(capsys.readouterr().out.splitlines()[-1])["summary"]
    assert last["median_note"] == "A4" and last["voiced_fraction"] > 0.8 and last["stream"]["status"] == "done"


def test_csv_flag_cells() -> None:
    """The CSV's silent and skipped_s cells for a decision the runner marked (a catch-up skip before it)."""
    from edgetag.runtime.engine import Decision
    from edgetag.runtime.output import CsvWriter

    buffer = io.StringIO()
    writer = CsvWriter(buffer, LABELS)
    writer.decision(Decision(1.0, 16000, np.array([0.9, 0.2, 0.1], np.float32), extra={"skipped_s": 0.25}))
    writer.decision(Decision(1.1, 17600, np.array([0.9, 0.2, 0.1], np.float32), extra={"silent": True}))
    rows = list(csv.DictReader(io.StringIO(buffer.getvalue())))
    assert [(r["silent"], r["skipped_s"]) for r in rows] == [("0", "0.250000"), ("1", "")]


def _pcm(fmt: str, x: np.ndarray) -> bytes:
    return (np.round(x * 32767).astype("<i2") if fmt == "s16le" else x.astype("<f4")).tobytes()


@pytest.mark.parametrize("fmt", ["s16le", "f32le"])
def test_listen_stdin_pcm(fmt, window_model, tone_wav) -> None:
    x = tone_signal()
    proc = subprocess.run(EDGETAG + ["listen", "--model", str(window_model), "--stdin", "--rate", "16000",
                                     "--pcm", fmt, "--format", "jsonl"],
                          input=_pcm(fmt, x), capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode()
    decisions, _ = _jsonl(proc.stdout.decode())
    want = offline_decisions(load_model(window_model), x)
    assert [d["t"] for d in decisions] == [round(w.t, 6) for w in want]
    got = np.array([list(d["scores"].values()) for d in decisions])
    np.testing.assert_allclose(got, np.stack([w.scores for w in want]), atol=2e-3 if fmt == "s16le" else 1e-5)
    assert all(d["latency_ms"] >= 0 for d in decisions)
    assert "stdin ended after 5.000 s" in proc.stderr.decode()


def test_listen_stdin_closed_early_and_other_rate(window_model) -> None:
    x44 = np.sin(2 * np.pi * 300 * np.arange(44100) / 44100).astype(np.float32) * 0.3
    proc = subprocess.run(EDGETAG + ["listen", "--model", str(window_model), "--stdin", "--rate", "44100",
                                     "--pcm", "f32le", "--duration", "10", "--format", "jsonl"],
                          input=_pcm("f32le", x44) + b"\x00\x01", capture_output=True, timeout=60)
    err = proc.stderr.decode()
    assert proc.returncode == 0, err
    assert "resampling" in err
    assert "stdin closed early, after 1.000 s of audio (asked for 10 s)" in err
    assert "ignored 2 trailing byte(s)" in err
    decisions, _ = _jsonl(proc.stdout.decode())
    assert decisions[-1]["t"] == pytest.approx(1.0, abs=0.06)
    assert decisions[-1]["scores"]["low"] > 0.9 and decisions[-1]["scores"]["high"] < 0.1
    assert _stats(err)["status"] == "done"


def test_listen_stdin_floats_at_integer_scale_get_one_warning(window_model) -> None:
    """f32le on stdin is read with full scale ±1: floats at ±32768 (a tool that forgot to scale) are said
    once, with their peak and when they started, and still tagged; s16le at full scale is not."""
    x = tone_signal()
    x[len(x) // 2 :] *= 32768.0
    proc = subprocess.run(EDGETAG + ["listen", "--model", str(window_model), "--stdin", "--rate", "16000",
                                     "--pcm", "f32le", "--format", "jsonl"],
                          input=_pcm("f32le", x), capture_output=True, timeout=60)
    err = proc.stderr.decode()
    assert proc.returncode == 0, err
    assert err.count("dB above full scale") == 1 and "stdin (f32le): samples reach" in err, err
    assert len(_jsonl(proc.stdout.decode())[0]) > 10
    full = subprocess.run(EDGETAG + ["listen", "--model", str(window_model), "--stdin", "--rate", "16000",
                                     "--pcm", "s16le", "--format", "jsonl"],
                          input=_pcm("s16le", np.clip(tone_signal() * 3.0, -1, 1)), capture_output=True, timeout=60)
    assert "above full scale" not in full.stderr.decode()


def test_listen_bad_device_lists_devices(window_model) -> None:
    env = dict(os.environ, PULSE_SERVER="unix:/nonexistent/edgetag-test")
    proc = subprocess.run(EDGETAG + ["listen", "--model", str(window_model), "--device", "97", "--format", "jsonl"],
                          capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 1
    err = proc.stderr
    # PortAudio present: the device list and the --file hint; absent: how to get it, and --file
    assert ("audio device 97 does not exist" in err and "--file" in err) or (
        "PortAudio" in err and "--file" in err) or ("no audio input device found" in err and "--file" in err), err
    assert "Traceback" not in err


def test_listen_ctrl_c_ends_cleanly(window_model, tone_wav) -> None:
    import signal
    import time

    proc = subprocess.Popen(EDGETAG + ["listen", "--model", str(window_model), "--file", str(tone_wav), "--realtime",
                                       "--format", "jsonl"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_default_sigint)
    assert "listening on" in proc.stderr.readline()
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "Traceback" not in err and _stats(err)["status"] == "stopped (Ctrl-C)"
    decisions, summary = _jsonl(out)
    assert 5 < len(decisions) < 60
    assert summary[0]["summary"]["stream"]["status"] == "stopped (Ctrl-C)"
    assert summary[0]["summary"]["stream"]["decisions"] == len(decisions)


def test_live_view_renders() -> None:
    from edgetag.runtime.engine import Decision
    from edgetag.runtime.output import LiveView
    from edgetag.runtime.sources import SourceStats
    from rich.console import Console

    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=100)
    with LiveView(LABELS, (0.5, 0.5, 0.5), source="test", console=console) as view:
        view.decision(Decision(1.25, 20000, np.array([0.9, 0.2, 0.1], np.float32)))
        view.refresh(SourceStats(overflows=1, level_dbfs=-12.0), (5.0, 9.0), (0.3, 0.5))
    text = buffer.getvalue()
    for needle in ("low", "0.90", "-12 dBFS", "p50 5.0 ms", "p99 9.0 ms", "1 overflows", "t =    1.25 s"):
        assert needle in text, needle


def test_tag_demo_summary(window_model, capsys) -> None:
    assert main(["tag", "--demo", "--model", str(window_model), "--format", "summary", "--top-k", "3"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("clip summary of demo:")
    assert len(out.strip().splitlines()) == 2 + 3  # header, column names, the top 3 labels


def test_tag_needs_files_or_demo(window_model, tone_wav, capsys) -> None:
    assert main(["tag", "--model", str(window_model)]) == 2
    assert "give audio FILEs or --demo" in capsys.readouterr().err
    assert main(["tag", str(tone_wav), "--demo", "--model", str(window_model)]) == 2


def test_demo_music_is_deterministic_and_in_range() -> None:
    from edgetag.runtime.demo import demo_music

    a, b = demo_music(16000, 2.0), demo_music(16000, 2.0)
    assert a.dtype == np.float32 and a.shape == (32000,)
    assert np.array_equal(a, b) and 0.5 < np.abs(a).max() <= 0.8 + 1e-6


def test_closed_stdout_is_not_an_error(window_model) -> None:
    """`edgetag tag ... | head -1`: the reader leaves early; edgetag stops quietly with status 0."""
    proc = subprocess.Popen([sys.executable, "-m", "edgetag.runtime.cli", "tag", "--demo", "--model", str(window_model)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0, err
    assert "error" not in err.lower()


def _run(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    """The real `edgetag` command in a child process (exit codes, stderr lines, nothing mocked)."""
    return subprocess.run(EDGETAG + list(args), input=stdin, capture_output=True, timeout=120)


def test_tag_goes_on_past_a_bad_file(window_model, tone_wav, tmp_path) -> None:
    """`tag a.wav bad.wav c.wav`: both good files tagged, the bad one named in one line, exit 1 at the end."""
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF, but not audio" * 10)
    done = _run("tag", str(tone_wav), str(bad), str(tmp_path / "missing.wav"), str(tone_wav),
                "--model", str(window_model), "--format", "csv")
    err = done.stderr.decode()
    assert done.returncode == 1, err
    rows = list(csv.DictReader(io.StringIO(done.stdout.decode())))
    assert {r["file"] for r in rows} == {str(tone_wav)} and len(rows) % 2 == 0 and len(rows) > 0
    assert f"cannot decode {bad}" in err and "audio file not found" in err and "Traceback" not in err
    assert f"2 of 4 files could not be read (the others were tagged): {bad}, {tmp_path / 'missing.wav'}" in err
    first_bad = _run("tag", str(bad), str(tone_wav), "--model", str(window_model), "--format", "csv")
    assert first_bad.returncode == 1 and first_bad.stdout.decode().startswith("file,t,")  # header still written once
    # -o FILE: a run that tags nothing leaves an existing FILE as it was (and no temporary file); one that tags
    # something replaces it
    kept = tmp_path / "kept.csv"
    kept.write_text("yesterday's results\n")
    nothing = _run("tag", str(bad), "--model", str(window_model), "--format", "csv", "-o", str(kept))
    assert nothing.returncode == 1 and kept.read_text() == "yesterday's results\n"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".kept")) == []
    some = _run("tag", str(bad), str(tone_wav), "--model", str(window_model), "--format", "csv", "-o", str(kept))
    assert some.returncode == 1 and kept.read_text().startswith("file,t,") and str(tone_wav) in kept.read_text()


def _truncated(path, fraction: float) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])


def test_truncated_ogg_and_flac_say_where_decoding_stopped(window_model, tmp_path) -> None:
    import soundfile as sf

    t = np.arange(44100 * 8) / 44100
    x = np.stack([0.3 * np.sin(2 * np.pi * 440 * t), 0.2 * np.sin(2 * np.pi * 660 * t)], axis=1).astype(np.float32)
    ogg, flac = tmp_path / "cut.ogg", tmp_path / "cut.flac"
    sf.write(ogg, x, 44100, format="OGG")
    sf.write(flac, x, 44100, format="FLAC")
    _truncated(ogg, 0.5)
    _truncated(flac, 0.25)
    with sf.SoundFile(ogg) as f:  # libsndfile itself sees a shorter, complete-looking file
        frames = len(f.read())
    assert 0 < frames < len(x)
    where = f"decoding stopped at {frames / 44100:.3f} s, where the Ogg stream ends without its end-of-stream page"
    for command in (["tag", str(ogg), "--format", "summary"], ["listen", "--file", str(ogg), "--format", "jsonl"]):
        done = _run(*command, "--model", str(window_model))
        assert done.returncode == 0 and where in done.stderr.decode(), done.stderr.decode()
    whole = tmp_path / "whole.ogg"
    sf.write(whole, x, 44100, format="OGG")
    assert "decoding stopped" not in _run("tag", str(whole), "--model", str(window_model)).stderr.decode()

    for command in (["tag", str(flac)], ["listen", "--file", str(flac)]):
        done = _run(*command, "--model", str(window_model))
        err = done.stderr.decode()
        assert done.returncode == 1 and "Traceback" not in err
        at = float(err.split("cannot decode", 1)[1].split(" at ", 1)[1].split(" s:", 1)[0])
        assert 1.0 < at < 3.0, err  # about a quarter of the 8 s: where the bytes end, not 0.000 s
        # every frame decoded before the damage is used: the blocks before the failing one (the one held back
        # for the resampler's end used to be lost with the error) and, since 2026-12-07, what the failing read
        # itself had decoded (a whole block, up to 1.5 s here, used to be lost)
        last = json.loads([line for line in done.stdout.decode().splitlines() if line.startswith('{"t"')][-1])
        assert at - 0.2 < last["t"] <= at, (last["t"], at)

    if "MP3" in sf.available_formats():  # a header (Xing) that promises 8 s, a stream that stops at about 4
        mp3 = tmp_path / "cut.mp3"
        sf.write(mp3, x, 44100, format="MP3")
        _truncated(mp3, 0.5)
        done = _run("tag", str(mp3), "--model", str(window_model), "--format", "summary")
        err = done.stderr.decode()
        assert done.returncode == 0 and "but its header says 8.000 s (a truncated or damaged file)" in err, err


def _card_with(window_model, tmp_path, **changes) -> os.PathLike:
    import onnx

    card = json.loads(onnx.load(str(window_model)).metadata_props[0].value)
    card.update(changes)
    return build_model(tmp_path / "edited.onnx", card_json=json.dumps(card))


def test_info_refuses_escape_codes_in_labels_and_escapes_card_text(window_model, tmp_path) -> None:
    """A label with ANSI escape codes is refused (by every command: the card is invalid); free text is escaped."""
    evil = _card_with(window_model, tmp_path, labels=["low", "\x1b[31mmid\x1b[0m\x1b]0;title\x07", "high"])
    for command in (["info", str(evil)], ["tag", "--demo", "--model", str(evil)]):
        done = _run(*command)
        err = done.stderr.decode()
        assert done.returncode == 1 and b"\x1b" not in done.stdout + done.stderr, err
        assert "label 1 '\\x1b[31mmid" in err and "control characters (\\x1b, \\x07" in err
        assert len(err.strip().splitlines()) == 1
    odd = _card_with(window_model, tmp_path, provenance={"teacher": "x\x1b[2Jy\x9b"})
    done = _run("info", str(odd))
    assert done.returncode == 0 and "teacher: x\\x1b[2Jy\\x9b" in done.stdout.decode()
    assert b"\x1b" not in done.stdout and "\x9b" not in done.stdout.decode()


@pytest.mark.parametrize("args, message", [
    (["listen", "--duration", "nan"], "argument --duration: must be a finite number of seconds > 0, got 'nan'"),
    (["listen", "--duration", "inf"], "argument --duration: must be a finite number of seconds > 0, got 'inf'"),
    (["listen", "--duration", "0"], "argument --duration: must be a finite number of seconds > 0"),
    (["features", "--demo", "--chunk", "0"], "argument --chunk: must be >= 1, got 0"),
    (["features", "--demo", "--chunk", "-5"], "argument --chunk: must be >= 1, got -5"),
    (["features", "--demo", "--seconds", "nan"], "argument --seconds: must be a finite number of seconds > 0"),
    (["tag", "--demo", "--top-k", "0"], "argument --top-k: must be >= 1, got 0"),
    (["tag", "--demo", "--margin", "nan"], "argument --margin: must be a finite number >= 0, got 'nan'"),
    (["listen", "--stdin", "--rate", "0"], "argument --rate: must be >= 1, got 0"),
    (["listen", "--stdin", "--rate", "44"], "--rate 44 Hz is not an audio sample rate"),
])
def test_numeric_arguments_are_validated(args, message, capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(args)
    assert exit_.value.code == 2 and message in capsys.readouterr().err


def test_a_one_sample_file_says_there_is_not_enough_audio(window_model, tmp_path) -> None:
    import soundfile as sf

    one = tmp_path / "one.wav"
    sf.write(one, np.full(1, 0.1, np.float32), 16000)
    need = "1 sample(s), 0.000 s, and one decision of tiny-bands-window needs 3440 samples (0.215 s); no tags"  # 20 frames
    done = _run("tag", str(one), "--model", str(window_model), "--format", "summary")
    assert done.returncode == 0 and "top:" not in done.stdout.decode()
    assert done.stdout.decode().strip() == f"clip summary of {one}: 0 decisions; not enough audio in {one}: {need}"
    assert b"not enough audio" not in done.stderr  # said once, in the summary
    done = _run("tag", str(one), "--model", str(window_model))
    assert f"warning: not enough audio in {one}: {need}".encode() in done.stderr  # jsonl: the warning says it
    _, (summary,) = _jsonl(done.stdout.decode())
    assert summary["summary"]["decisions"] == 0 and summary["summary"]["top"] == []
    done = _run("listen", "--file", str(one), "--model", str(window_model), "--format", "jsonl")
    err = done.stderr.decode()
    assert done.returncode == 0 and f"warning: not enough audio in file {one}: {need}" in err
    assert "0 decisions over 0 s; no compute timed;" in err and "nan" not in err
    # a file long enough whose --duration is not: the option is named, not the file
    long = tmp_path / "long.wav"
    sf.write(long, np.full(16000, 0.1, np.float32), 16000)
    done = _run("listen", "--file", str(long), "--model", str(window_model), "--duration", "0.1", "--format", "jsonl")
    err = done.stderr.decode()
    assert done.returncode == 0 and f"not enough audio in the first 0.1 s (--duration) of file {long}: 1600 sample(s)" in err
    done = _run("listen", "--file", str(long), "--model", str(window_model), "--duration", "0.22", "--format", "jsonl")
    assert " 1 decision over 0.22 s;" in done.stderr.decode()


def test_anti_phase_stereo_is_warned_about(window_model, tmp_path) -> None:
    import soundfile as sf

    x = tone_signal()
    sf.write(tmp_path / "anti.wav", np.stack([x, -x], axis=1), 16000, subtype="FLOAT")
    sf.write(tmp_path / "wide.wav", np.stack([x, 0.2 * x], axis=1), 16000, subtype="FLOAT")
    for command in (["tag", str(tmp_path / "anti.wav")], ["listen", "--file", str(tmp_path / "anti.wav")]):
        err = _run(*command, "--model", str(window_model), "--format", "jsonl").stderr.decode()
        assert "its channels cancel when averaged to mono (the mix is silent: anti-phase stereo?)" in err, err
    assert "cancel" not in _run("tag", str(tmp_path / "wide.wav"), "--model", str(window_model)).stderr.decode()


# ------------------------------------------------------------- output for people (issue 24)
def _on_terminal(args: list[str], *, stdout_tty: bool = True, stderr_tty: bool = False, columns: int = 80,
                 timeout: float = 120) -> tuple[int, str, str, str]:
    """Run edgetag with stdout and/or stderr on a pseudo-terminal of ``columns`` columns; the others go to files.

    Returns (exit status, what the terminal showed, stdout if not the terminal, stderr if not the terminal).
    """
    import fcntl
    import pty
    import struct
    import tempfile
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    with tempfile.TemporaryFile() as out_file, tempfile.TemporaryFile() as err_file:  # files: nothing blocks
        env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
        proc = subprocess.Popen(EDGETAG + args, stdin=subprocess.DEVNULL, env=env,
                                stdout=slave if stdout_tty else out_file, stderr=slave if stderr_tty else err_file)
        os.close(slave)
        shown = b""
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: every holder of the terminal closed it
                break
            if not data:
                break
            shown += data
        os.close(master)
        status = proc.wait(timeout=timeout)
        out_file.seek(0)
        err_file.seek(0)
        return (status, shown.decode().replace("\r\n", "\n"), out_file.read().decode(), err_file.read().decode())


def test_tag_on_a_terminal_prints_a_summary_for_people(window_model, tone_wav, tmp_path) -> None:
    """stdout a terminal: the top tags and when they were on, in 80 columns; -o FILE or a pipe: jsonl as before."""
    status, shown, _, err = _on_terminal(["tag", str(tone_wav), "--model", str(window_model)])
    assert status == 0, err
    lines = shown.strip().splitlines()
    assert lines[0].startswith(f"clip summary of {tone_wav}:") and '{"t"' not in shown
    assert lines[1].split() == ["label", "mean", "max", "thr", "on", "(s)"]
    rows = {line.split()[0]: line for line in lines[2:]}
    # each tone of the file (0.5-1.5 s low, 2-3 s mid, 3.5-4.5 s high) is on about when it sounds
    for label, start in (("low", 0.5), ("mid", 2.0), ("high", 3.5)):
        spans = rows[label].split("%: ")[1]
        on, off = (float(v) for v in spans.split("-"))
        assert start < on < start + 0.3 and start + 1.0 < off < start + 1.3, rows[label]
    assert max(len(line) for line in lines[1:]) <= 80  # the first holds the file's name, as long as it is

    out = tmp_path / "d.jsonl"
    status, shown, _, _ = _on_terminal(["tag", str(tone_wav), "--model", str(window_model), "-o", str(out)])
    decisions, (summary,) = _jsonl(out.read_text())
    assert status == 0 and not shown.strip() and len(decisions) > 50 and summary["summary"]["top"]


def _active_changes(decisions: list[dict]) -> list[tuple[float, str, str]]:
    """When each decision's ``active`` labels turn on and off (the end of the stream closes the rest)."""
    changes, before = [], set()
    for d in decisions:
        now = set(d["active"])
        changes += [(d["t"], "offset", lb) for lb in sorted(before - now)]
        changes += [(d["t"], "onset", lb) for lb in sorted(now - before)]
        before = now
    return changes + [(decisions[-1]["t"], "offset", lb) for lb in sorted(before)]


def test_every_jsonl_decision_names_its_active_tags(window_model, tone_wav, capsys) -> None:
    """``active``: the tags the events' hysteresis holds on at that decision; kept with --scores none."""
    raw = ["--min-on", "0", "--min-off", "0"]  # no minimum durations: the events are the active changes
    assert main(["tag", str(tone_wav), "--model", str(window_model), *raw]) == 0
    decisions, _ = _jsonl(capsys.readouterr().out)
    assert main(["tag", str(tone_wav), "--model", str(window_model), "--events", *raw]) == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"event"' in line]
    changes = _active_changes(decisions)
    assert len(events) == 6 and sorted(changes) == sorted((e["t"], e["event"], e["label"]) for e in events)
    # on where the score is above the threshold (0.5), by hysteresis (off below 0.4); nothing in silence
    for d in decisions:
        if d.get("silent"):  # below the level gate
            assert d["active"] == []
            continue
        for label, score in d["scores"].items():
            if score >= 0.5:
                assert label in d["active"], d
            if score < 0.4:
                assert label not in d["active"], d

    assert main(["tag", str(tone_wav), "--model", str(window_model), "--scores", "none", *raw]) == 0
    lean = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"summary"' not in line]
    assert [(o["t"], o["active"]) for o in lean] == [(d["t"], d["active"]) for d in decisions]
    assert all(set(o) - {"silent"} == {"t", "active"} for o in lean)
    assert main(["tag", str(tone_wav), "--model", str(window_model), "--scores", "none", "--format", "csv",
                 *raw]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert list(rows[0]) == ["t", "latency_ms", "silent", "skipped_s", "active"]
    assert [r["active"].split(";") if r["active"] else [] for r in rows] == [d["active"] for d in decisions]
    # the CSV marks the decisions jsonl marks silent (the tone file has silence around its tones)
    assert [r["silent"] for r in rows] == ["1" if d.get("silent") else "0" for d in decisions]
    assert "1" in {r["silent"] for r in rows} and {r["skipped_s"] for r in rows} == {""}


def test_minimum_on_duration_holds_back_a_blip(window_model, tmp_path, capsys) -> None:
    """--min-on (seconds): a blip shorter than it is no event; an onset is dated where its run began,
    and ``active`` follows the events (confirmed up to min-on later). The rule itself: test_postprocess."""
    import soundfile as sf

    sr, t = 16000, np.arange(6 * 16000) / 16000
    on = ((t >= 1.0) & (t < 3.0)) | ((t >= 4.5) & (t < 4.7))  # a low tone for 2 s, and a 0.2 s blip of it
    wav = tmp_path / "blip.wav"
    sf.write(wav, (0.3 * np.sin(2 * np.pi * 300 * t) * on).astype(np.float32), sr)

    def events(*flags: str) -> list[tuple[float, str, str]]:
        assert main(["tag", str(wav), "--model", str(window_model), "--events", *flags]) == 0
        out = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"event"' in line]
        return [(e["t"], e["event"], e["label"]) for e in out if e["label"] == "low"]

    raw = events("--min-on", "0", "--min-off", "0")
    assert [k for _, k, _ in raw] == ["onset", "offset", "onset", "offset"]  # the tone and the blip
    held = events("--min-on", "0.5")
    assert [k for _, k, _ in held] == ["onset", "offset"] and held[0] == raw[0]  # no blip; the onset's date kept
    assert raw[1][0] <= held[1][0] <= raw[1][0] + 0.2  # the offset: where the level gate found silence

    assert main(["tag", str(wav), "--model", str(window_model), "--min-on", "0.5"]) == 0
    decisions, _ = _jsonl(capsys.readouterr().out)
    step = decisions[1]["t"] - decisions[0]["t"]
    changes = [c for c in _active_changes(decisions) if c[2] == "low"]
    assert [c[1] for c in changes] == ["onset", "offset"]
    assert 0.5 - step - 1e-6 <= changes[0][0] - held[0][0] <= 0.5 + 1e-6  # confirmed after min-on
    with pytest.raises(SystemExit) as bad:
        main(["tag", str(wav), "--model", str(window_model), "--min-on", "-1"])
    assert bad.value.code == 2 and "--min-on: must be a finite number >= 0" in capsys.readouterr().err


def test_events_as_csv_are_real_csv(window_model, tmp_path, capsys) -> None:
    """A header, one row per event, a file column with several files, no NaN for the offsets at the end."""
    import soundfile as sf

    held = tmp_path / "held.wav"  # a low tone from 1 s to the end: its offset closes the stream
    t = np.arange(3 * 16000) / 16000
    sf.write(held, (0.3 * np.sin(2 * np.pi * 300 * t) * (t >= 1.0)).astype(np.float32), 16000)
    assert main(["tag", str(held), str(held), "--model", str(window_model), "--events", "--format", "csv"]) == 0
    text = capsys.readouterr().out
    rows = list(csv.DictReader(io.StringIO(text)))
    assert text.splitlines()[0] == "file,t,event,label,score" and "nan" not in text.lower()
    assert [(r["file"], r["event"], r["label"]) for r in rows] == [(str(held), k, "low") for k in
                                                                    ("onset", "offset")] * 2
    assert 1.0 < float(rows[0]["t"]) < 1.3 and float(rows[0]["score"]) > 0.5
    assert rows[1]["score"] == "" and float(rows[1]["t"]) > 2.9  # closed by the end of the file


def _long_wav(path, seconds: int = 40):
    import soundfile as sf

    sf.write(path, np.tile(tone_signal(), seconds // 5), 16000)
    return path


def test_progress_on_stderr_for_long_files_only_on_a_terminal(window_model, tmp_path) -> None:
    """A percentage line on a terminal's stderr (erased at the end); nothing on a pipe; jsonl on stdout unharmed."""
    wav = _long_wav(tmp_path / "long.wav")
    status, shown, out, _ = _on_terminal(["tag", str(wav), "--model", str(window_model)], stdout_tty=False,
                                         stderr_tty=True)
    assert status == 0
    # "edgetag tag: FILE    0 %  0.0 / 40.0", FILE shortened from the left to fit the terminal's 80 columns
    assert shown.startswith("\r\x1b[Kedgetag tag: ") or shown.startswith("\r\x1b[K..."), repr(shown[:200])
    assert "long.wav    0 %  0.0 / 40.0" in shown and shown.endswith("\r\x1b[K"), repr(shown[-200:])
    assert max(len(line) for line in shown.split("\r\x1b[K")) < 80
    decisions, (summary,) = _jsonl(out)
    assert len(decisions) == summary["summary"]["decisions"] > 700
    done = _run("tag", str(wav), "--model", str(window_model), "-o", str(tmp_path / "d.jsonl"))
    assert done.returncode == 0 and b"%" not in done.stderr  # stderr a pipe: no progress
    short = _on_terminal(["tag", str(tone_wav_path(tmp_path)), "--model", str(window_model)], stdout_tty=False,
                         stderr_tty=True)
    assert short[0] == 0 and "%" not in short[1]  # 5 s: done before a progress line would help


def tone_wav_path(tmp_path):
    import soundfile as sf

    path = tmp_path / "short.wav"
    sf.write(path, tone_signal(), 16000)
    return path


def _default_sigint() -> None:
    """In the child, before exec: SIGINT back to its default action. Tests run as a background job (a CI
    script started with ``&``) inherit SIGINT ignored, and a Python started so installs no KeyboardInterrupt."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_in_tag_is_one_line_and_exit_130(window_model, tmp_path) -> None:
    """A real SIGINT while tag writes decisions: no traceback, one line, status 130 (128 + SIGINT)."""
    import signal
    import time

    wav = _long_wav(tmp_path / "long.wav", 120)  # 2,400 decisions: more jsonl than a pipe holds
    proc = subprocess.Popen(EDGETAG + ["tag", str(wav), "--model", str(window_model)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_default_sigint)
    assert proc.stdout.readline().startswith('{"t"')
    time.sleep(0.5)  # it is blocked writing into the full pipe, mid-file
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and err == "edgetag tag: interrupted (Ctrl-C)\n", err
    assert '"summary"' not in out  # it stopped part-way


def test_ctrl_c_in_tag_leaves_an_existing_output_file_and_keeps_the_rest_beside_it(window_model, tmp_path,
                                                                                  monkeypatch, capsys) -> None:
    """``tag -o FILE`` cut short by Ctrl-C does not replace an existing FILE with part of a run: what it wrote is
    kept in FILE.partial (FILE.partial.1 when an earlier cut run's is there), and the message says where; a run
    that ends normally replaces FILE."""
    from edgetag.runtime.cli import INTERRUPTED
    from edgetag.runtime.engine import Engine

    wav = _long_wav(tmp_path / "long.wav", 30)
    out = tmp_path / "out.jsonl"
    out.write_text('{"earlier": "complete results"}\n')
    push, calls = Engine.push, []

    def interrupted_push(self, samples):  # type: ignore[no-untyped-def]
        calls.append(1)
        if len(calls) == 20:
            raise KeyboardInterrupt
        return push(self, samples)

    monkeypatch.setattr(Engine, "push", interrupted_push)
    assert main(["tag", str(wav), "--model", str(window_model), "-o", str(out)]) == INTERRUPTED
    err = capsys.readouterr().err
    assert out.read_text() == '{"earlier": "complete results"}\n'
    partial = tmp_path / "out.jsonl.partial"
    lines = partial.read_text().splitlines()
    assert lines and all(line.startswith('{"t"') for line in lines) and f"is in {partial}" in err
    assert "is left as it was" in err and not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    monkeypatch.undo()
    partial.unlink()
    boom = []

    def failing_push(self, samples):  # type: ignore[no-untyped-def]  # an error part-way, not a Ctrl-C
        boom.append(1)
        if len(boom) == 20:
            raise RuntimeError("ONNX Runtime failed")
        return push(self, samples)

    monkeypatch.setattr(Engine, "push", failing_push)
    with pytest.raises(RuntimeError):
        main(["tag", str(wav), "--model", str(window_model), "-o", str(out)])
    assert out.read_text() == '{"earlier": "complete results"}\n' and partial.read_text().startswith('{"t"')
    # a second run cut short keeps its lines beside the first one's, which stay as they were
    first = partial.read_text()
    boom.clear()
    with pytest.raises(RuntimeError):
        main(["tag", str(wav), "--model", str(window_model), "-o", str(out)])
    second = tmp_path / "out.jsonl.partial.1"
    assert partial.read_text() == first and second.read_text().startswith('{"t"') and f"is in {second}" in capsys.readouterr().err
    monkeypatch.undo()
    assert main(["tag", str(wav), "--model", str(window_model), "-o", str(out)]) == 0
    assert '"summary"' in out.read_text().splitlines()[-1]


def test_progress_line_draws_only_on_a_terminal_and_fits_it() -> None:
    from edgetag.runtime.progress import Progress, clock

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    screen = Terminal()
    with Progress("edgetag tag: " + "x" * 200 + ".wav", 300.0, stream=screen, interval_s=0.0) as bar:
        bar.update(150.0)
    drawn = screen.getvalue().split("\r\x1b[K")
    assert drawn[0] == "" and drawn[-1] == "" and len(drawn) == 4  # 0 %, 50 %, erased
    assert drawn[2].endswith(" 50 %  2:30.0 / 5:00.0") or " 50 %  2:30.0 / 5:00.0" in drawn[2]
    assert all(len(line) < 80 for line in drawn) and drawn[2].startswith("...")
    quiet = io.StringIO()  # not a terminal: nothing
    with Progress("x", 300.0, stream=quiet) as bar:
        bar.update(100.0)
    assert quiet.getvalue() == ""
    assert Progress("x", 10.0, stream=Terminal()).enabled is False  # a short file
    assert [clock(5.25), clock(59.96, True), clock(61.234, True, 2), clock(3725.5, True)] == \
        ["5.2", "1:00.0", "1:01.23", "1:02:05"]


def test_a_silent_file_says_silence_not_too_short(window_model, tmp_path) -> None:
    """Every decision below the level gate: the summary says so, rather than "not enough audio"."""
    import soundfile as sf

    quiet = tmp_path / "quiet.wav"
    sf.write(quiet, np.zeros(2 * 16000, np.float32), 16000)
    done = _run("tag", str(quiet), "--model", str(window_model), "--format", "summary")
    text = done.stdout.decode()
    assert done.returncode == 0 and "all below the level gate" in text and "not enough audio" not in text, text


def test_pitch_output_is_unvoiced_below_the_level_gate(tmp_path, capsys) -> None:
    """A tone too quiet for the gate (the pitch card's, -90 dBFS RMS): jsonl and csv say silent and unvoiced,
    whatever the bins say."""
    import soundfile as sf

    t = np.arange(2 * 16000) / 16000
    wav = tmp_path / "quiet.wav"
    sf.write(wav, (10 ** (-100 / 20) * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 16000)  # -100 dBFS peak
    assert main(["tag", str(wav), "--model", "pitch", "--format", "jsonl"]) == 0
    decisions = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"pitch"' in line]
    assert decisions and all(d["silent"] and not d["pitch"]["voiced"] for d in decisions)
    assert main(["tag", str(wav), "--model", "pitch", "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert rows and all(r["voiced"] == "0" and r["silent"] == "1" for r in rows)
    loud = tmp_path / "loud.wav"  # the same tone at -10 dBFS is voiced: the gate, not the model, decided
    sf.write(loud, (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 16000)
    assert main(["tag", str(loud), "--model", "pitch", "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert sum(r["voiced"] == "1" for r in rows) > len(rows) // 2


def test_the_cards_minimum_durations_are_the_default(capsys) -> None:
    """music-tags' card holds 1 s / 2 s: the default of --min-on / --min-off and of the API; a flag overrides it."""
    import edgetag
    from edgetag.runtime.model import load_model
    from edgetag.runtime.models import resolve_model
    from edgetag.runtime.pipeline import min_durations

    card = load_model(resolve_model("music-tags")).card
    assert min_durations(card) == (1.0, 2.0)
    assert main(["info", "music-tags"]) == 0
    assert "a tag turns on after 1 s held, off after 2 s" in capsys.readouterr().out
    assert edgetag.load("music-tags")._pipeline.event_detector.min_on == 10  # 1 s of 100 ms decisions
    assert edgetag.load("music-tags", min_on=0)._pipeline.event_detector.min_on == 1


def test_tag_reads_a_long_file_a_block_at_a_time(window_model, tmp_path, capsys) -> None:
    """A minute of 44.1 kHz stereo float audio (21 MB decoded, 3.8 MB resampled): `tag` holds a few blocks of
    it at a time, whatever the file's length, and tags every second of it."""
    import tracemalloc

    import soundfile as sf

    rate, seconds = 44100, 60
    t = np.arange(rate * seconds) / rate
    tone = (0.3 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)
    sf.write(tmp_path / "long.wav", np.stack([tone, tone], axis=1), rate, subtype="FLOAT")
    del t, tone
    tracemalloc.start()
    try:
        assert main(["tag", str(tmp_path / "long.wav"), "--model", str(window_model), "--format", "jsonl",
                     "--threads", "1"]) == 0
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    lines = capsys.readouterr().out.splitlines()
    assert float(json.loads(lines[-2])["t"]) > seconds - 1.0  # the last decision is at the file's end
    assert peak < 8e6, f"peak {peak / 1e6:.1f} MB: the file was decoded whole"
