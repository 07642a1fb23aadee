"""Pitch decoding, note names, pitch-model recognition and the tuner view (runtime: no torch needed)."""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest

from edgetag.runtime import pitch as P
from edgetag.runtime.output import format_pitch_report


def _bump(f0: float, width_cents: float = 25.0, peak: float = 0.9) -> np.ndarray:
    """CREPE-like activations: a Gaussian over bin cents centred on ``f0``."""
    cents = 1200.0 * math.log2(f0 / 10.0)
    return (peak * np.exp(-0.5 * ((P.bin_cents() - cents) / width_cents) ** 2)).astype(np.float32)


def test_bins_match_crepe_mapping() -> None:
    f = P.bin_frequencies()
    assert len(f) == 360 and len(P.PITCH_LABELS) == 360
    assert f[0] == pytest.approx(31.7, abs=0.01) and f[-1] == pytest.approx(2005.5, abs=0.05)
    assert np.allclose(np.diff(P.bin_cents()), 20.0)
    assert P.PITCH_LABELS[0] == "pitch_bin_000" and P.PITCH_LABELS[359] == "pitch_bin_359"


@pytest.mark.parametrize("f0", [41.2, 98.0, 261.63, 440.0, 442.0, 1318.5])
def test_decode_recovers_f0_between_bins(f0: float) -> None:
    got, conf = P.decode(_bump(f0))
    assert abs(1200 * math.log2(float(got) / f0)) < 1.0  # within 1 cent though bins are 20 cents apart
    assert float(conf) == pytest.approx(0.9, abs=0.05)


def test_decode_batches_edges_and_zero_frames() -> None:
    s = np.stack([_bump(200.0), np.zeros(360, np.float32), _bump(31.0), _bump(2100.0)])
    f0, conf = P.decode(s[None])
    assert f0.shape == (1, 4) and conf.shape == (1, 4)
    assert abs(1200 * math.log2(f0[0, 0] / 200.0)) < 1.0
    assert f0[0, 1] == pytest.approx(P.bin_frequencies()[0]) and conf[0, 1] == 0.0  # silence: bin 0, confidence 0
    assert np.isfinite(f0).all()
    # fmin/fmax restrict the search.
    two = _bump(110.0) + _bump(440.0, peak=0.5)
    assert abs(float(P.decode(two)[0]) - 110.0) < 1.0
    assert abs(float(P.decode(two, fmin=200.0)[0]) - 440.0) < 1.0
    with pytest.raises(ValueError):
        P.decode(np.zeros(10))
    with pytest.raises(ValueError):
        P.decode(two, fmin=5000.0)



def test_decode_of_one_frame_is_the_batched_row_to_the_bit() -> None:
    # a stream decodes frame by frame (a fast path), a clip all at once: the two must not differ
    rng = np.random.default_rng(3)
    s = rng.random((400, 360)) ** 8
    s[0] = 0.0
    for row, peak in zip(s[1:], [0, 1, 2, 3, 4, 355, 356, 357, 358, 359]):  # argmax at and near both ends
        row[peak] = 2.0
    batched = P.decode(s)
    for i, row in enumerate(s):
        one = P.decode(row)
        assert (one[0], one[1]) == (batched[0][i], batched[1][i]), i

def test_decode_matches_torch_teacher_decoder() -> None:
    torch = pytest.importorskip("torch")
    from edgetag.training.teachers.crepe import decode_weighted_argmax

    rng = np.random.default_rng(0)
    s = rng.random((50, 360)).astype(np.float32) ** 8
    ours, c1 = P.decode(s)
    theirs, c2 = decode_weighted_argmax(torch.from_numpy(s))
    assert np.allclose(ours, theirs.numpy(), rtol=1e-5) and np.allclose(c1, c2.numpy())


@pytest.mark.parametrize(("f0", "name", "cents", "midi"), [
    (440.0, "A4", 0.0, 69), (261.6256, "C4", 0.0, 60), (27.5, "A0", 0.0, 21),
    (466.16, "A#4", 0.0, 70), (445.0, "A4", 19.56, 69), (452.9, "A#4", -49.9, 70), (30.8677, "B0", 0.0, 23),
])
def test_note_names(f0: float, name: str, cents: float, midi: int) -> None:
    n, c, m = P.note_of(f0)
    assert (n, m) == (name, midi) and c == pytest.approx(cents, abs=0.1)
    with pytest.raises(ValueError):
        P.note_of(0.0)


def test_reading_and_voicing() -> None:
    r = P.reading(_bump(440.0, peak=0.8))
    assert r.voiced and r.note == "A4" and abs(r.cents) < 1.0
    q = P.reading(_bump(440.0, peak=0.3))
    assert not q.voiced and q.note == "A4"
    assert json.dumps(r.to_dict())


def test_is_pitch_model() -> None:
    class Card:
        labels = P.PITCH_LABELS
        output_level = "frame"

    class ClipCard(Card):
        output_level = "clip"

    assert P.is_pitch_model(Card()) and P.is_pitch_model(list(P.PITCH_LABELS))
    assert not P.is_pitch_model(ClipCard()) and not P.is_pitch_model(["dog", "cat"]) and not P.is_pitch_model(None)


def test_runtime_pitch_does_not_import_torch() -> None:
    import subprocess
    import sys

    code = ("import sys; import edgetag.runtime.pitch, edgetag.runtime.output; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def _decision(t: float, scores: np.ndarray):
    from edgetag.runtime.engine import Decision

    return Decision(t=t, end_sample=int(t * 16000), scores=scores)


def test_tuner_view_renders_note_cents_and_confidence() -> None:
    pytest.importorskip("rich")
    from rich.console import Console
    from edgetag.runtime.output import TunerView

    console = Console(file=io.StringIO(), record=True, width=100)
    view = TunerView(P.PITCH_LABELS, [0.5] * 360, source="test", console=console)
    view.decision(_decision(1.0, _bump(445.0)))
    console.print(view._render())
    text = console.export_text()
    assert "445.01 Hz" in text and "A4" in text and "+19.6 cents" in text and "VOICED" in text
    assert "◆" in text and "-50" in text and "+50" in text
    assert "0.87" in text
    # An unvoiced frame: no needle, the status says so.
    view.decision(_decision(1.01, _bump(445.0, peak=0.1)))
    console.print(view._render())
    text = console.export_text()
    assert "unvoiced" in text
    bar = view.cents_bar(-50.0)
    assert bar.index("◆") == len("-50 ")  # leftmost cell
    assert view.cents_bar(None).count("◆") == 0


def test_pitch_jsonl_writer_adds_decoded_pitch() -> None:
    from edgetag.runtime.output import PitchJsonlWriter

    out = io.StringIO()
    w = PitchJsonlWriter(out, P.PITCH_LABELS)
    w.decision(_decision(0.5, _bump(220.0)))
    obj = json.loads(out.getvalue())
    assert obj["pitch"]["note"] == "A3" and obj["pitch"]["voiced"] is True
    assert abs(obj["pitch"]["f0_hz"] - 220.0) < 0.2 and len(obj["scores"]) == 360


# ----------------------------------------------------------------------------- the recipe's pieces
RECIPE = __import__("pathlib").Path(__file__).resolve().parents[1] / "training" / "recipes" / "pitch"


def _recipe_module(name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"pitch_recipe_{name}", RECIPE / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_score_f0_track_on_student_frame_centres() -> None:
    prep = _recipe_module("prepare_renders")
    # Frame j is centred at (160 j + 512) / 16000 s: frame 0 at 32 ms, frame 10 at 132 ms.
    f0 = prep.f0_track([(0.1, 0.2, 69), (0.2, 0.3, 60)], 0.5)
    assert len(f0) == 1 + (8000 - 1024) // 160
    centres = (np.arange(len(f0)) * 160 + 512) / 16000
    assert np.all(f0[(centres >= 0.1) & (centres < 0.2)] == pytest.approx(440.0))
    assert np.all(f0[(centres >= 0.2) & (centres < 0.3)] == pytest.approx(261.6256, abs=1e-3))
    assert np.all(f0[(centres < 0.1) | (centres >= 0.3)] == 0.0)


def test_recipe_config_is_a_pitch_student_within_budget() -> None:
    torch = pytest.importorskip("torch")
    from edgetag.training.config import load_config
    from edgetag.training.students import build_student, count_macs

    config = load_config(RECIPE / "base.toml", [])
    assert tuple(config.data.labels) == P.PITCH_LABELS
    fe = config.frontend_config()
    assert fe.hop_length == 160 and fe.win_length == 1024 and fe.sample_rate == 16000
    student = build_student(config.student.kind, fe.n_bins, 360, **config.student.params)
    assert student.streaming_mode == "stateful"
    macs = count_macs(student.eval(), torch.zeros(1, 10, fe.n_bins)) / 10
    params, crepe_full_macs = _recipe_module("evaluate_pitch").crepe_macs_per_frame("full")  # same hook counter
    assert params == 22_239_976 and crepe_full_macs == 1_410_023_424
    assert macs <= 0.01 * crepe_full_macs
    assert sum(p.numel() for p in student.parameters()) * 4 <= 5_000_000  # fp32 file <= 5 MB


def test_pitch_writers_can_leave_the_bin_scores_out() -> None:
    import csv

    from edgetag.runtime.output import PitchCsvWriter, PitchJsonlWriter

    out = io.StringIO()
    PitchJsonlWriter(out, P.PITCH_LABELS, scores=False).decision(_decision(0.5, _bump(220.0)))
    obj = json.loads(out.getvalue())
    assert "scores" not in obj and obj["pitch"]["note"] == "A3"
    out = io.StringIO()
    w = PitchCsvWriter(out, P.PITCH_LABELS, scores=False)
    w.decision(_decision(0.5, _bump(440.0)))
    w.decision(_decision(0.51, _bump(440.0, peak=0.2)))
    voiced, unvoiced = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert voiced["note"] == "A4" and voiced["voiced"] == "1" and abs(float(voiced["f0_hz"]) - 440.0) < 0.5
    assert unvoiced["voiced"] == "0" and len(voiced) == 12 and voiced["active"] == ""  # no note tracker bound
    assert voiced["clarity"] == ""  # decoded from scores alone (no audio): no period was measured
    out = io.StringIO()
    PitchCsvWriter(out, P.PITCH_LABELS).decision(_decision(0.5, _bump(440.0)))
    assert out.getvalue().splitlines()[0].endswith(",midi,clarity," + ",".join(P.PITCH_LABELS) + ",active")


def test_pitch_summary_counts_voiced_notes() -> None:
    summary = P.PitchSummary()
    for f0 in (220.0, 221.0, 219.0, 330.0):
        summary.add(_bump(f0))
    summary.add(_bump(500.0, peak=0.1))  # unvoiced: counted as a decision only
    s = summary.to_dict(k=1)
    assert s["decisions"] == 5 and s["voiced_fraction"] == 0.8
    assert s["median_note"] == "A3" and 219.0 < s["median_f0_hz"] < 222.0
    assert s["notes"] == {"A3": 0.75}
    assert "80 % voiced" in format_pitch_report(s, "x.wav") and "A3 75 %" in format_pitch_report(s)
    empty = P.PitchSummary().to_dict()
    assert empty["median_f0_hz"] is None and empty["notes"] == {}
    assert format_pitch_report(empty).endswith("no voiced decision")


def test_pitch_summary_median_is_a_pitch_that_was_read_and_its_memory_stays_flat() -> None:
    summary = P.PitchSummary()
    for f0 in (220.0, 329.6):  # A3 then E4: the mean of the two would be C#4, a note never played
        summary.add(_bump(f0))
    s = summary.to_dict()
    assert s["median_note"] == "A3" and abs(s["median_f0_hz"] - summary.read(_bump(220.0)).f0_hz) < 0.2
    summary.add(_bump(329.6))  # three readings: the middle one
    assert summary.to_dict()["median_note"] == "E4"
    import tracemalloc

    frames = [_bump(440.0) for _ in range(50)]  # distinct arrays: each one is decoded
    for f in frames:
        summary.add(f)
    tracemalloc.start()
    try:
        for _ in range(200):  # 10,000 more decisions: counts, not memory
            for f in frames:
                summary.add(f)
        grown = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert grown < 50_000, grown  # a list of the readings would hold 10,000 floats (320 kB)
    s = summary.to_dict()
    assert s["median_note"] == "A4" and s["median_f0_hz"] == round(summary.read(frames[0]).f0_hz, 3)


def test_note_tracker_turns_pitch_into_note_events() -> None:
    track = P.NoteTracker(min_decisions=3)
    frames = ([_bump(440.0, peak=0.1)] * 5 + [_bump(440.0)] * 10 + [_bump(494.0)]  # A4, one stray B4 frame
              + [_bump(440.0)] * 5 + [_bump(455.0), _bump(426.0)] * 3  # vibrato past both edges of A4 (A#4, G#4)
              + [_bump(330.0)] * 5 + [_bump(330.0, peak=0.45)] * 2  # E4, fading but still above 0.4
              + [_bump(330.0, peak=0.1)] * 4)
    events = []
    for i, scores in enumerate(frames):
        events += [(round(e.t, 2), e.kind, e.label) for e in track.update(i * 0.01, scores)]
    events += [(e.t, e.kind, e.label) for e in track.finish(1.0)]
    e4 = 0.01 * (5 + 10 + 1 + 5 + 6)
    silence = e4 + 0.07
    assert events == [(0.05, "onset", "A4"), (round(e4, 2), "offset", "A4"), (round(e4, 2), "onset", "E4"),
                      (round(silence, 2), "offset", "E4")]
    # a confidence between threshold - margin and threshold keeps a note but does not start one
    fresh = P.NoteTracker(min_decisions=1)
    assert fresh.update(0.0, _bump(330.0, peak=0.45)) == []
    with pytest.raises(ValueError, match="min_decisions"):
        P.NoteTracker(min_decisions=0)


def test_a_note_with_vibrato_or_on_a_boundary_is_one_note_and_a_semitone_step_is_two() -> None:
    """The sounding note reaches 75 cents (50 + NOTE_CENTS_MARGIN): vibrato of ±70 cents held for many decisions
    on each side, or a tone steady at +50 cents, is one note (it was dozens); 80 cents away is the next note."""
    def notes(cents: list[float]) -> list[str]:
        track, found = P.NoteTracker(), []
        for i, c in enumerate(cents):
            found += [e.label for e in track.update(0.01 * i, _bump(440.0 * 2 ** (c / 1200))) if e.kind == "onset"]
        return found

    vibrato = [70.0 * np.sin(2 * np.pi * 5.5 * 0.01 * i) for i in range(300)]
    assert notes(vibrato) == ["A4"]
    assert notes([50.0] * 100 + [52.0, 48.0] * 50) in (["A4"], ["A#4"])  # either side of the boundary, once
    assert notes([52.0, 48.0] * 100) in (["A4"], ["A#4"])  # from silence too
    assert notes([0.0] * 50 + [80.0] * 50) == ["A4", "A#4"]  # a flat A#4 after an A4: a new note
    assert P.note_frequency("A4") == 440.0 and round(P.note_frequency("C#-1"), 3) == 8.662
    assert round(P.cents_from(452.9, "A4"), 1) == 50.0
    with pytest.raises(ValueError, match="not a note name"):
        P.note_frequency("H4")
    with pytest.raises(ValueError, match="cents_margin"):
        P.NoteTracker(cents_margin=50)


def test_note_tracker_closes_the_last_note() -> None:
    track = P.NoteTracker(min_decisions=2)
    assert track.update(0.0, _bump(220.0)) == []
    (onset,) = track.update(0.01, _bump(220.0))
    assert (onset.t, onset.kind, onset.label) == (0.0, "onset", "A3")
    (offset,) = track.finish(0.5)
    assert (offset.t, offset.kind, offset.label) == (0.5, "offset", "A3")
    assert track.finish(0.6) == []


def test_valid_renders_read_chorales_that_train_and_test_never_read() -> None:
    pytest.importorskip("music21")
    prep = _recipe_module("prepare_renders")
    first, further = prep.load_voices(3, seed=0), prep.load_voices(2, seed=0, skip=3)
    assert first and further
    assert not {name for name, _ in first} & {name for name, _ in further}
    assert prep.load_voices(5, seed=0) == first + further  # the same seeded order, cut further on


def test_a_stream_decodes_each_decision_once_for_all_its_readers(monkeypatch) -> None:
    from edgetag.runtime.output import PitchCsvWriter, PitchJsonlWriter

    calls = []
    real_reading = P.reading
    monkeypatch.setattr(P, "reading", lambda *args: calls.append(1) or real_reading(*args))
    reader = P.PitchReader()
    writers = [PitchJsonlWriter(io.StringIO(), P.PITCH_LABELS, reader=reader),
               PitchCsvWriter(io.StringIO(), P.PITCH_LABELS, reader=reader)]
    summary, tracker = P.PitchSummary(reader), P.NoteTracker(reader=reader, min_decisions=1)
    for i, f0 in enumerate((220.0, 220.0, 330.0)):
        scores = _bump(f0)  # a new array per decision, as the smoother hands them on
        summary.add(scores)
        tracker.update(i * 0.01, scores)
        for w in writers:
            w.decision(_decision(i * 0.01, scores), scores)
    assert len(calls) == 3
    assert summary.to_dict()["notes"] == {"A3": 0.6667, "E4": 0.3333}


@pytest.mark.parametrize("name", ["pitch-small", "pitch-small-int8", "pitch", "pitch-int8"])
def test_built_in_pitch_models_are_as_sure_of_a_quiet_pluck_as_of_a_loud_one(name: str) -> None:
    """The quiet-input gain in their graphs (`edgetag.export.input_gain`): a decaying G3 pluck at -55 dBFS peak has
    bins as sure as at -20 dBFS (without the gain, pitch-small was sure on 60 % of the quiet one's frames, against
    100 % of the loud one's), and reads G3 as a stream (`decode_clip`) on every frame."""
    from edgetag.runtime.frontend import compute_features
    from edgetag.runtime.model import load_model
    from edgetag.runtime.models import resolve_model

    model = load_model(resolve_model(name), threads=1)
    assert model.card.input_gain["state"] == "input_level"
    fe = model.card.frontend
    t = np.arange(2 * fe.sample_rate) / fe.sample_rate
    pluck = sum(np.sin(2 * np.pi * 196.0 * k * t) / k for k in range(1, 8)) * np.exp(-3 * t)
    sure = {}
    for peak_dbfs in (-20.0, -55.0):
        x = (pluck / np.abs(pluck).max() * 10 ** (peak_dbfs / 20)).astype(np.float32)
        logits, _ = model.run(compute_features(x, fe)[None], model.initial_state(1))
        scores = model.scores(logits)[0]
        sure[peak_dbfs] = float(np.mean(P.decode(scores)[1] >= P.VOICING_THRESHOLD))
        f0, _, _ = P.decode_clip(scores, x, fe)
        assert np.all(np.abs(1200 * np.log2(f0 / 196.0)) < 50)
    assert sure[-20.0] > 0.9 and sure[-55.0] >= sure[-20.0] - 0.02, sure


@pytest.mark.parametrize("name", ["pitch-small", "pitch"])
def test_the_quiet_input_gain_does_not_voice_quiet_noise(name: str) -> None:
    """The gain raises quiet noise as it raises a quiet note (up to 40 dB), so quiet noise is read as loud noise
    is: white and pink noise alone at -70, -50 and -30 dBFS RMS (above the cards' level gate), voice under 1 %
    of frames (`pitch-small` none; `pitch` one frame in 294 at most, as at -20 dBFS without the gain)."""
    from edgetag.runtime.frontend import compute_features
    from edgetag.runtime.model import load_model
    from edgetag.runtime.models import resolve_model

    model = load_model(resolve_model(name), threads=1)
    fe = model.card.frontend
    rng = np.random.default_rng(0)
    white = rng.standard_normal(3 * fe.sample_rate)
    spectrum = np.fft.rfft(rng.standard_normal(len(white)))
    spectrum[1:] /= np.sqrt(np.fft.rfftfreq(len(white), 1 / fe.sample_rate)[1:])  # 1/f power
    spectrum[0] = 0.0
    pink = np.fft.irfft(spectrum, len(white))
    for noise in (white, pink):
        for rms_dbfs in (-70.0, -50.0, -30.0):
            x = (noise / np.sqrt(np.mean(noise**2)) * 10 ** (rms_dbfs / 20)).astype(np.float32)
            logits, _ = model.run(compute_features(x, fe)[None], model.initial_state(1))
            _, confidence, _ = P.decode_clip(model.scores(logits)[0], x, fe)
            assert np.mean(confidence >= P.VOICING_THRESHOLD) < 0.01, (rms_dbfs, name)


def _melody_wav(path, notes_hz, note_s: float, gap_s: float, decay: float = 2.5, sr: int = 16000) -> None:
    """Plucked-like notes (five harmonics, exponential decay), ``gap_s`` of silence after each."""
    import soundfile as sf

    t = np.arange(int(note_s * sr)) / sr
    parts = []
    for f0 in notes_hz:
        x = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 6)) * np.exp(-decay * t)
        parts += [0.3 * x / np.abs(x).max(), np.zeros(int(gap_s * sr))]
    sf.write(path, np.concatenate(parts).astype(np.float32), sr)


@pytest.mark.parametrize("gap_s", [0.0, 0.02, 0.05, 0.1])
def test_a_repeated_note_is_two_notes_even_without_a_rest_between(tmp_path, gap_s: float) -> None:
    """C4 C4 G4 G4 A4 A4 G4 ("Twinkle"), 0.4 s each: seven notes whether a rest separates the strokes or not
    (before the stroke detection, four with a rest of 50 ms or less); a repeated note's onset at most 30 ms after
    its stroke, every onset at most 70 ms after (the first decision ends the first 64 ms frame)."""
    from edgetag.runtime.cli import main

    notes = [261.63, 261.63, 392.0, 392.0, 440.0, 440.0, 392.0]
    _melody_wav(tmp_path / "twinkle.wav", notes, 0.4, gap_s)
    assert main(["tag", str(tmp_path / "twinkle.wav"), "--model", "pitch-small", "--events", "--format", "jsonl",
                 "-o", str(tmp_path / "events.jsonl")]) == 0
    rows = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    onsets = [r for r in rows if r.get("event") == "onset"]
    assert [r["label"] for r in onsets] == ["C4", "C4", "G4", "G4", "A4", "A4", "G4"]
    # a decision's time is its frame's end: a stroke shows in the newest samples of the frames ending after it
    late = np.array([r["t"] for r in onsets]) - np.arange(7) * (0.4 + gap_s)
    assert np.all((late >= 0.0) & (late <= 0.07)) and np.all(late[[1, 3, 5]] <= 0.03), late


@pytest.mark.parametrize("kind", ["tremolo", "vibrato", "crescendo", "pluck"])
def test_tremolo_vibrato_and_a_swell_do_not_strike_a_note_again(tmp_path, kind: str) -> None:
    """A 220 Hz sawtooth with a tremolo of ±6 dB at 6 Hz, vibrato of ±50 cents, a crescendo of 40 dB per second,
    and a plucked note: one note each."""
    import soundfile as sf

    from edgetag.runtime.cli import main

    sr = 16000
    t = np.arange(3 * sr) / sr
    f0 = 220.0 * 2 ** (0.5 * np.sin(2 * np.pi * 5.5 * t) / 12) if kind == "vibrato" else np.full(len(t), 220.0)
    x = 2 * (np.cumsum(f0 / sr) % 1) - 1
    if kind == "tremolo":
        x *= 10 ** (6 * np.sin(2 * np.pi * 6 * t) / 20)
    elif kind == "crescendo":
        x *= 10 ** ((40 * t - 120) / 20)
    elif kind == "pluck":
        x = np.sin(2 * np.pi * 220 * t) * np.exp(-3 * t) + 0.5 * np.sin(2 * np.pi * 440 * t) * np.exp(-4 * t)
    sf.write(tmp_path / "x.wav", (0.3 * x / np.abs(x).max()).astype(np.float32), sr)
    assert main(["tag", str(tmp_path / "x.wav"), "--model", "pitch-small", "--events", "--format", "jsonl",
                 "-o", str(tmp_path / "events.jsonl")]) == 0
    rows = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert [r["label"] for r in rows if r.get("event") == "onset"] == ["A3"]


@pytest.mark.parametrize("name", ["pitch-small", "pitch"])
def test_a_quiet_melody_keeps_its_notes_through_the_runtime(tmp_path, name: str) -> None:
    """What the quiet-input gain raises, the level gate lets through (the card's gate, -90 dBFS RMS): the plucked
    melody at -50 dBFS peak gives `tag` the notes it gives at -6 dBFS, and nearly as many voiced decisions (with the
    runtime's default gate of -60, `pitch-small`'s valid renders at -50 dBFS kept 22 % of them)."""
    import itertools

    import soundfile as sf

    import edgetag
    from edgetag.runtime.model import load_model
    from edgetag.runtime.models import resolve_model

    assert load_model(resolve_model(name)).card.level_gate_dbfs == -90.0
    _melody_wav(tmp_path / "m.wav", [196.0, 261.63, 329.63, 392.0], 0.6, 0.1)
    x, sr = sf.read(tmp_path / "m.wav", dtype="float32")
    notes, voiced = {}, {}
    for peak in (-6.0, -50.0):
        sf.write(tmp_path / f"m{peak:g}.wav", x / np.abs(x).max() * 10 ** (peak / 20), sr)
        decisions = edgetag.tag_file(str(tmp_path / f"m{peak:g}.wav"), model=name)
        voiced[peak] = sum(d.pitch.voiced for d in decisions)
        notes[peak] = [n for n, _ in itertools.groupby(d.active[0] for d in decisions if d.active)]
    assert notes[-50.0] == notes[-6.0] == ["G3", "C4", "E4", "G4"]
    assert voiced[-50.0] >= 0.95 * voiced[-6.0], voiced
