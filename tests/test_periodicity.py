"""The pitch decoder's signal side: NSDF periods (runtime/periodicity.py) and the tuner's readings through a stream."""

from __future__ import annotations

import math
import random
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from edgetag.runtime import pitch as P
from edgetag.runtime.periodicity import NO_PERIOD, PeriodicityAnalyser

SR = 16000
TRAINING_RECIPES = Path(__file__).resolve().parents[1] / "training" / "recipes"
SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")


def _tone(f0: float, seconds: float, amplitude: float = 0.3, harmonics: int = 1, phase: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    x = sum(np.sin(2 * np.pi * k * f0 * t + phase * k) / k for k in range(1, harmonics + 1) if k * f0 < SR / 2 - 500)
    return (amplitude * x / np.abs(x).max()).astype(np.float32)


def _cents(f: float, ref: float) -> float:
    return 1200.0 * math.log2(f / ref)


def _bump(f0: float, peak: float = 0.9) -> np.ndarray:
    return (peak * np.exp(-0.5 * ((P.bin_cents() - 1200.0 * math.log2(f0 / 10.0)) / 25.0) ** 2)).astype(np.float32)


@pytest.mark.parametrize("f0", [33.0, 55.0, 110.0, 261.63, 446.0, 1000.0, 1500.0, 1990.0])
def test_the_period_of_a_steady_tone_is_within_half_a_cent(f0: float) -> None:
    analyser = P.analyser(1024)
    for harmonics in (1, 8):  # a sine and a band-limited sawtooth-like tone
        x = _tone(f0, 0.2, harmonics=harmonics)
        frame = x[800:1824]
        near, key = analyser.near_period(frame, f0 * 2 ** (25 / 1200)), analyser.own_period(frame)  # the bins 25 cents off
        assert near.clarity > 0.99 and abs(_cents(near.f0_hz, f0)) < 0.5, (harmonics, near)
        if f0 < 1900:  # the key maximum finds the period by itself (at 1990 Hz it may take two)
            assert abs(_cents(key.f0_hz, f0)) < 0.5, (harmonics, key)


def test_noise_and_silence_are_not_periodic() -> None:
    analyser = P.analyser(1024)
    noise = np.random.default_rng(0).standard_normal(1024).astype(np.float32)
    near, key = analyser.near_period(noise, 220.0), analyser.own_period(noise)
    assert max(near.clarity, key.clarity) < 0.6
    silence = np.zeros(1024, np.float32)
    assert (analyser.near_period(silence, 220.0), analyser.own_period(silence)) == (NO_PERIOD, NO_PERIOD)
    with pytest.raises(ValueError, match="1024 samples"):
        analyser.nsdf(np.zeros(512))


def _nsdf_by_definition(x: np.ndarray, tau_max: int) -> np.ndarray:
    x = np.asarray(x, np.float64) - np.mean(x, dtype=np.float64)
    width = len(x) - tau_max
    head = x[:width]
    n = np.zeros(tau_max + 1)
    for tau in range(tau_max + 1):
        shifted = x[tau:tau + width]
        m = np.dot(head, head) + np.dot(shifted, shifted)
        n[tau] = np.clip(2.0 * np.dot(head, shifted) / m, -1.0, 1.0) if m > 1e-12 else 0.0
    return n


def test_the_nsdf_is_its_definition_for_every_sample_type() -> None:
    """The C++ core's FFT route gives the sums of the definition (float32, float64 and int16 frames alike)."""
    analyser = P.analyser(1024)
    rng = np.random.default_rng(3)
    for x in (_tone(146.83, 0.1, harmonics=4)[:1024] + 0.05 * rng.standard_normal(1024).astype(np.float32),
              rng.standard_normal(1024), (8000 * _tone(988.0, 0.1)[:1024]).astype(np.int16)):
        np.testing.assert_allclose(analyser.nsdf(x), _nsdf_by_definition(x, analyser.tau_max), rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="1024 samples, got shape \\(2, 1024\\)"):
        analyser.own_period(np.zeros((2, 1024), np.float32))


def _random_frames(n: int, seed: int) -> list[np.ndarray]:
    """Tones (sines, harmonic, detuned, with noise), white and brown noise, silence, DC, int16."""
    rng = np.random.default_rng(seed)
    frames: list[np.ndarray] = [np.zeros(1024, np.float32), np.full(1024, 0.3, np.float32)]
    for i in range(n):
        kind = i % 4
        if kind == 0:
            x = rng.standard_normal(1024)
        elif kind == 1:
            x = np.cumsum(rng.standard_normal(1024))  # brown noise: often no negative NSDF value
        else:
            f0 = float(np.exp(rng.uniform(np.log(25.0), np.log(2500.0))))
            t = (np.arange(1024) + rng.integers(0, 10000)) / SR
            x = sum(np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 6)) / k ** rng.uniform(0.5, 2)
                    for k in range(1, int(rng.integers(1, 8)) + 1) if k * f0 < 7500)
            x = np.asarray(x, float) + rng.standard_normal(1024) * 10 ** rng.uniform(-4, 0)
        x = x * 10 ** rng.uniform(-3, 0)
        frames.append(np.round(x * 3000).astype(np.int16) if i % 11 == 0 else x.astype(np.float32))
    return frames


def test_a_streams_reading_in_c_plus_plus_follows_the_python_rules() -> None:
    """`SteadyTone` (one C++ call per frame: decoding, periods, rules, hysteresis) against the rules in
    Python and numpy that it replaced (tests/periodicity_reference.py), on random frames with bins near,
    at octaves of and far from their period, sure and unsure, and on a tone in noise frame after frame
    (its clarity crosses the steady thresholds: the hysteresis)."""
    from periodicity_reference import reference_steady_reading

    rng = np.random.default_rng(8)
    analyser = P.analyser(1024)
    frames = [x.astype(np.float32) for x in _random_frames(240, seed=3)]
    t = np.arange(SR * 2) / SR
    tone = np.sin(2 * np.pi * 440.0 * t) + np.sin(2 * np.pi * 880.0 * t) / 2
    noisy = (0.2 * tone + rng.standard_normal(len(t)) * np.linspace(0.0, 0.3, len(t))).astype(np.float32)
    frames += [noisy[k:k + 1024] for k in range(0, len(noisy) - 1024, 160)]
    scores = []
    for x in frames:
        own = analyser.own_period(x).f0_hz or 220.0
        guess = own * float(rng.choice([1.0, 2.0, 0.5, 1 / 3, 1.02, np.exp(rng.uniform(-2.0, 2.0))]))
        scores.append(_bump(float(np.clip(guess, 32.0, 2000.0)), peak=float(rng.uniform(0.05, 1.0))))
    scores, frames = np.stack(scores), np.stack(frames)
    got, want = P.decode_with_audio(scores, frames), reference_steady_reading(scores, frames, hold_frames=P.HOLD_FRAMES)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-9, atol=0)  # f0
    np.testing.assert_allclose(got[1], want[1], rtol=0, atol=1e-9)  # confidence
    np.testing.assert_allclose(got[2], want[2], rtol=0, atol=1e-9)  # clarity
    assert (P.SteadyTone(hold_frames=0).read_frames(scores, frames)[0] != got[0]).any()  # the hold is exercised
    used = np.abs(got[0] / P.decode(scores)[0] - 1) > 1e-6
    assert 0.2 < used.mean() < 0.9  # both the bins' and the period's readings are exercised
    tone_reader = P.SteadyTone()  # a stream, one frame per call, reads as the batch does
    one_by_one = np.array([tone_reader.read(s, x) for s, x in zip(scores, frames)])
    np.testing.assert_array_equal(one_by_one.T, np.stack(got))
    # the hysteresis flag set before the first frame holds for it, as set on a reader that exists
    early, late = P.SteadyTone(), P.SteadyTone()
    early.steady = True
    late.read(scores[0], frames[0])
    late.steady = True
    assert early.steady and early.read(scores[-1], frames[-1]) == late.read(scores[-1], frames[-1])
    # int16 audio and a strided view of a clip's overlapping frames read as their float values
    whole = np.round(noisy[: 160 * 40 + 1024] * 3000).astype(np.int16)
    strided = np.lib.stride_tricks.sliding_window_view(whole, 1024)[::160][:40]
    np.testing.assert_array_equal(np.stack(P.decode_with_audio(scores[-40:], strided)),
                                  np.stack(P.decode_with_audio(scores[-40:], strided.astype(np.float64))))
    reader = P.SteadyTone()._for(1024)
    for s in scores[:200]:  # the bins alone: numpy's decoding, up to the last rounding of its power of two
        assert reader.decode(s) == pytest.approx(tuple(map(float, P.decode(s))), rel=1e-15)
    broken = scores[0].copy()
    broken[[7, 90]] = np.nan  # a NaN score (a broken model) is the argmax, as numpy's: its bin, confidence NaN
    f0, confidence = reader.decode(broken)
    assert f0 == pytest.approx(float(P.decode(broken)[0]), rel=1e-15) and math.isnan(confidence)
    with pytest.raises(ValueError, match=r"scores \[360\] and frames \[1024\]"):
        tone_reader.read(scores[0][:100], frames[0])
    with pytest.raises(ValueError, match="360 bins"):
        P.decode_with_audio(scores[:, :100], frames)
    # read_frames checks the whole arrays before reading any frame: the hysteresis stays as it was
    checked = P.SteadyTone()
    for bad_scores, bad_frames in ((scores[:256], frames[:300]), (scores[:300], frames[:256]), (scores[0], frames[0])):
        with pytest.raises(ValueError, match="read_frames takes scores"):
            checked.read_frames(bad_scores, bad_frames)
        assert not checked.steady
    with pytest.raises(ValueError, match="one 1-D run of samples"):
        checked.read(scores[0], frames[:1])
    assert checked.read(list(scores[0]), list(frames[0])) == P.SteadyTone().read(scores[0], frames[0])


def test_an_unsure_frame_soon_after_a_sure_one_reads_its_f0() -> None:
    """The hold: under `HOLD_BELOW`, within `HOLD_FRAMES` frames of the last sure frame, a frame reads that
    frame's f0, its confidence its own (still unvoiced); a sure frame renews it, a frame between the two
    thresholds keeps its own f0; a frame `HOLD_RISE_DB` louder than the quietest since (a new sound),
    silence (`end_tone`) and ``hold_frames=0`` end it."""
    hiss = (np.random.default_rng(11).standard_normal(1024) * 0.1).astype(np.float32)  # no steady period
    sure, lost, between = _bump(440.0, 0.9), _bump(700.0, P.HOLD_BELOW / 2), _bump(700.0, 0.3)
    tone = P.SteadyTone()
    first = tone.read(sure, hiss)
    assert first[0] == pytest.approx(440.0, abs=2.0) and first[1] >= P.VOICING_THRESHOLD
    held = [tone.read(lost, hiss) for _ in range(P.HOLD_FRAMES + 1)]
    assert [r[0] for r in held[: P.HOLD_FRAMES]] == [first[0]] * P.HOLD_FRAMES  # 1 s of the sure f0
    assert all(r[1] == pytest.approx(P.HOLD_BELOW / 2, rel=0.1) for r in held)  # their own confidence: unvoiced
    assert held[-1][0] == pytest.approx(700.0, abs=3.0)  # then their own reading again
    tone.read(sure, hiss)
    assert tone.read(between, hiss)[0] == pytest.approx(700.0, abs=3.0)  # not that unsure: its own f0
    assert tone.read(lost, hiss)[0] == first[0]  # the hold counts on through it
    tone.end_tone()  # silence
    assert tone.read(lost, hiss)[0] == pytest.approx(700.0, abs=3.0)
    tone.read(sure, hiss)
    assert tone.read(lost, hiss / 4)[0] == first[0]  # fading: held
    louder = hiss / 4 * np.float32(10 ** (1.5 * P.HOLD_RISE_DB / 20))
    assert tone.read(lost, louder)[0] == pytest.approx(700.0, abs=3.0)  # louder than the quietest: a new sound
    assert tone.read(lost, hiss / 4)[0] == pytest.approx(700.0, abs=3.0)  # and it stays ended
    off = P.SteadyTone(hold_frames=0)
    off.read(sure, hiss)
    assert off.read(lost, hiss)[0] == pytest.approx(700.0, abs=3.0)
    for bad in ({"hold_frames": -1}, {"hold_frames": 2**40}, {"hold_below": 1.5}, {"hold_below": math.nan},
                {"hold_rise_db": math.inf}, {"hold_rise_db": -1.0}):
        with pytest.raises(ValueError, match="the hold needs"):
            P.SteadyTone(**bad)
    # a sure frame whose f0 is not a number (an infinite score: a broken model) holds nothing
    broken = sure.copy()
    broken[100] = np.inf
    nan_tone = P.SteadyTone()
    assert math.isnan(nan_tone.read(broken, hiss)[0])
    assert nan_tone.read(lost, hiss)[0] == pytest.approx(700.0, abs=3.0)
    # a stream's reader: a decision without audio (below the level gate) ends the hold
    reader = P.PitchReader()
    reader(sure, hiss)
    assert reader(lost.copy(), hiss).f0_hz == first[0]
    reader(np.zeros(P.N_BINS, np.float32))
    assert reader(lost.copy(), hiss).f0_hz == pytest.approx(700.0, abs=3.0)


def test_the_c_plus_plus_periods_are_those_of_the_numpy_reference() -> None:
    """The C++ core against the numpy implementation it replaced (tests/periodicity_reference.py), on random
    tones and noises, with guesses near, far and invalid, and both refinement settings."""
    from periodicity_reference import ReferenceAnalyser

    rng = np.random.default_rng(5)
    f = P.bin_frequencies()
    for refine_above in (0.0, P.STEADY_CLARITY):
        args = (SR, 1024, float(f[0]), float(f[-1]))
        new, old = PeriodicityAnalyser(*args, refine_above=refine_above), ReferenceAnalyser(*args, refine_above=refine_above)
        for x in _random_frames(300, seed=int(refine_above * 100)):
            np.testing.assert_allclose(new.nsdf(x), old.nsdf(x), rtol=0, atol=1e-12)
            own = old.own_period(x)
            for guess in (float(np.exp(rng.uniform(np.log(30.0), np.log(2000.0)))), own.f0_hz * 1.01, 0.0, -5.0,
                          float("nan"), float("inf")):
                a, b = new.near_period(x, guess), old.near_period(x, guess)
                assert new.periods(x, guess) == (a, new.own_period(x))  # one NSDF for both
                assert a.clarity == pytest.approx(b.clarity, abs=1e-9) and a.f0_hz == pytest.approx(b.f0_hz, rel=1e-9)
            a = new.own_period(x)
            assert a.clarity == pytest.approx(own.clarity, abs=1e-9) and a.f0_hz == pytest.approx(own.f0_hz, rel=1e-9)
            if own.f0_hz > 0:
                assert new.fundamental_share(x, own.f0_hz) == pytest.approx(old.fundamental_share(x, own.f0_hz), abs=1e-9)
    assert new.near_period(x, None) == NO_PERIOD  # no guess
    for bad in (float("nan"), float("inf"), -1.0, 0.0, 1e300):
        assert new.fundamental_share(x, bad) == 0.0
    tiny = PeriodicityAnalyser(SR, 1024, 1e-6, 2000.0)  # lags bounded before they reach an int
    assert tiny.tau_max == 512 and len(tiny.nsdf(x)) == 513
    for args, kwargs, message in (((0, 1024, 50.0, 100.0), {}, "sample rate"), ((SR, 1024.5, 50.0, 100.0), {}, "whole"),
                                  ((SR, 1024, 100.0, 50.0), {}, "fmin < fmax"),
                                  ((SR, 1024, 50.0, 100.0), {"refine_above": float("nan")}, "clarity")):
        with pytest.raises(ValueError, match=message):
            PeriodicityAnalyser(*args, **kwargs)
    with pytest.raises(ValueError, match="harmonics"):
        new.fundamental_share(x, 440.0, harmonics=0)


def test_the_nsdf_does_not_depend_on_level() -> None:
    analyser = PeriodicityAnalyser(SR, 1024, 40.0, 1500.0)
    x = _tone(220.0, 0.1, harmonics=5)[:1024]
    np.testing.assert_allclose(analyser.nsdf(x), analyser.nsdf(x * 1e-3), atol=1e-6)


def test_decoding_with_audio_corrects_the_bins_on_steady_tones_and_leaves_them_elsewhere() -> None:
    x = _tone(261.63, 0.1)[:1024]
    noise = np.random.default_rng(1).standard_normal(1024).astype(np.float32) * 0.1
    scores = np.stack([_bump(261.63 * 2 ** (27 / 1200)),  # the bins 27 cents sharp, confident
                       _bump(70.0, peak=0.1),  # the bins unsure and lost: the tone is still a tone
                       _bump(300.0)])  # confident bins over noise: kept
    f0, confidence, clarity = P.decode_with_audio(scores, np.stack([x, x, noise]))
    bins_f0, bins_confidence = P.decode(scores)
    assert abs(_cents(f0[0], 261.63)) < 0.1 and confidence[0] >= clarity[0] > 0.99
    assert abs(_cents(f0[1], 261.63)) < 0.1 and confidence[1] > 0.99  # voiced by its period
    assert f0[2] == bins_f0[2] and confidence[2] == bins_confidence[2] and clarity[2] < 0.6
    r = P.reading(scores[0], audio=x)
    assert r.voiced and r.note == "C4" and abs(r.cents) < 0.2 and r.to_dict()["clarity"] > 0.99
    assert P.reading(scores[0]).to_dict()["clarity"] is None  # decoded without audio: the bins alone


def _notes(x: np.ndarray) -> dict[str, int]:
    """Note onsets of ``x`` through the built-in pitch model, as ``--events`` counts them."""
    import edgetag

    from edgetag.runtime.pitch import NoteTracker

    tracker, onsets = NoteTracker(), {}
    for d in edgetag.load("pitch").push(x, sample_rate=SR):
        tracker.read = lambda _scores, r=d.pitch: r  # the stream's reading of this decision
        for event in tracker.update(d.t, d.scores):
            if event.kind == "onset":
                onsets[event.label] = onsets.get(event.label, 0) + 1
    return onsets


@pytest.mark.parametrize("snr_db", [30.0, 20.0])
def test_a_steady_tone_in_noise_is_one_note_not_a_subharmonic_or_a_flicker(snr_db: float) -> None:
    """The bins are lost on a low sine in noise: the frame's own period voices it, never the period near
    their wrong guess (a multiple of the true one: 110/3 Hz, "D1"), and near the clarity threshold the
    reading holds instead of flickering."""
    for seed in (1, 2):
        x = _tone(110.0, 6.0, amplitude=1.0)
        noise = np.random.default_rng(seed).standard_normal(len(x)) * np.sqrt(np.mean(np.square(x)) / 10 ** (snr_db / 10))
        onsets = _notes((0.3 * (x + noise) / np.abs(x + noise).max()).astype(np.float32))
        assert set(onsets) <= {"A2"} and onsets.get("A2", 0) <= (1 if snr_db >= 30 else 3), (snr_db, seed, onsets)


@pytest.mark.parametrize("f0", [2500.0, 3000.0, 4000.0, 6000.0])
def test_a_tone_above_the_range_is_not_read_at_a_multiple_of_its_period(f0: float) -> None:
    import edgetag

    out = edgetag.load("pitch").push(_tone(f0, 1.0), sample_rate=SR)
    wrong = [d.pitch for d in out if d.t > 0.2 and d.pitch.voiced and d.pitch.clarity is not None
             and d.pitch.confidence == d.pitch.clarity]  # voiced by a period
    assert not wrong, (f0, wrong[:2])


def test_sure_bins_at_a_fraction_of_a_steady_tone_give_way_to_its_own_period() -> None:
    """Bins sure of a third of the tone's f0 (a 2 kHz sine read as 667 Hz): the period near them (24 samples,
    three periods) is as clear as the tone's own (8), which is its f0. A tone that sounds the lower note
    (its fundamental and harmonics) keeps the bins' reading: its own period is that note's."""
    t = np.arange(1024) / SR
    sine = (0.3 * np.sin(2 * np.pi * 2000.0 * t)).astype(np.float32)
    f0, confidence, clarity = P.decode_with_audio(_bump(2000.0 / 3, peak=0.9)[None], sine[None])
    assert abs(_cents(f0[0], 2000.0)) < 1 and clarity[0] > P.STEADY_CLARITY
    low = sum(np.sin(2 * np.pi * h * 2000.0 / 3 * t) / h for h in (1, 2, 3, 4))
    f0, _, _ = P.decode_with_audio(_bump(2000.0 / 3, peak=0.9)[None], (0.3 * low).astype(np.float32)[None])
    assert abs(_cents(f0[0], 2000.0 / 3)) < 1


def test_two_tones_a_fifth_apart_are_not_voiced_at_their_missing_fundamental() -> None:
    analyser = P.analyser(1024)
    t = np.arange(1024) / SR
    dyad = (np.sin(2 * np.pi * 220.0 * t) + np.sin(2 * np.pi * 330.0 * t)).astype(np.float32)
    key = analyser.own_period(dyad)
    assert abs(_cents(key.f0_hz, 110.0)) < 1 and key.clarity > 0.99  # it does repeat every 110 Hz period
    assert analyser.fundamental_share(dyad, key.f0_hz) < P.FUNDAMENTAL_SHARE  # but 110 Hz is not sounded
    f0, confidence, _ = P.decode_with_audio(_bump(110.0, peak=0.1)[None], dyad[None])
    assert confidence[0] < P.VOICING_THRESHOLD


@pytest.mark.parametrize("model", ["pitch", "pitch-small"])  # the students' bins alone misread 55 Hz, confident
@pytest.mark.parametrize("amplitude", [0.3, 0.01])  # about -10 and -40 dBFS, both above the level gate
def test_the_tuner_reads_steady_sines_within_three_cents_from_55_hz_to_2_khz(amplitude: float, model: str) -> None:
    import edgetag

    # 1975 and 2000 Hz, at the top of the bins' range: `pitch` read them as a third (E5), its bins confident
    for f0 in (55.0, 82.41, 110.0, 146.83, 261.63, 446.0, 659.26, 1500.0, 1975.53, 2000.0):
        tagger = edgetag.load(model)
        out = tagger.push(_tone(f0, 2.0, amplitude), sample_rate=SR)
        middle = [d.pitch for d in out if 0.5 < d.t <= 1.5]
        voiced = [r.f0_hz for r in middle if r.voiced]
        assert len(voiced) >= 0.95 * len(middle), (f0, amplitude, len(voiced), len(middle))
        assert abs(_cents(float(np.median(voiced)), f0)) < 3.0, (f0, amplitude, np.median(voiced))


def test_a_stream_reads_the_period_of_each_decision_and_jsonl_carries_its_clarity(tmp_path) -> None:
    import io
    import json

    from edgetag.runtime.engine import Engine
    from edgetag.runtime.model import load_model
    from edgetag.runtime.models import resolve_model
    from edgetag.runtime.output import make_writer
    from edgetag.runtime.pipeline import DecisionPipeline

    model = load_model(resolve_model("pitch"), threads=1)
    reader = P.reader_for(model.card)
    out = io.StringIO()
    post = DecisionPipeline(model.card.labels, model.card.thresholds, [make_writer("jsonl", out, model.card.labels,
                                                                                   reader=reader, scores=False)],
                            reader=reader, gate_dbfs=-60.0)
    engine = Engine(model)
    x = np.concatenate([_tone(446.0, 1.0), np.zeros(SR // 2, np.float32)])
    for k in range(0, len(x), 512):
        for d in engine.push(x[k:k + 512]):
            assert d.audio is not None and len(d.audio) == 1024
            np.testing.assert_array_equal(d.audio, x[d.end_sample - 1024:d.end_sample])
            post(d)
    rows = [json.loads(line) for line in out.getvalue().splitlines() if '"t"' in line]
    steady = [r["pitch"] for r in rows if 0.3 < r["t"] <= 0.9]
    assert all(p["voiced"] and p["note"] == "A4" and abs(p["cents"] - 23.5) < 1.0 and p["clarity"] > 0.99 for p in steady)
    quiet = [r["pitch"] for r in rows if r["t"] > 1.2]
    assert quiet and all(p["clarity"] is None for p in quiet)  # below the level gate no period is measured


@pytest.mark.skipif(shutil.which("fluidsynth") is None or not SOUNDFONT.is_file(),
                    reason="needs fluidsynth and fluid-soundfont-gm (apt)")
def test_the_tuner_follows_a_rendered_instrument_detuned_off_the_note_grid(tmp_path) -> None:
    """A real instrument sample (FluidR3's flute, the pitch recipe's renderer) detuned by +23 cents reads +23."""
    import edgetag
    import soxr

    sys.path.insert(0, str(TRAINING_RECIPES))
    from recipe_common import TICKS_PER_S, render_clips

    events = [(0, 0, bytes([0xC0, 73])), (0, 2, bytes([0x90, 69, 100])), (int(2.5 * TICKS_PER_S), 1, bytes([0x80, 69, 0]))]
    clip = render_clips(events, 1, 3.0, 3.5, soundfont=str(SOUNDFONT), rate=SR, tmp=tmp_path, name="a4",
                        rng=random.Random(0), level_db=(-10.0, -10.0), fluidsynth_args=("-R", "0", "-C", "0"))[0]

    def median_reading(x: np.ndarray) -> float:
        out = edgetag.load("pitch").push(x, sample_rate=SR)
        voiced = [d.pitch.f0_hz for d in out if 0.8 < d.t <= 2.0 and d.pitch.voiced]
        assert len(voiced) > 80
        return float(np.median(voiced))

    plain = median_reading(clip)
    sharp = median_reading(soxr.resample(clip.astype(np.float64), SR, SR / 2 ** (23 / 1200)).astype(np.float32))
    assert abs(_cents(sharp, plain) - 23.0) < 3.0, (plain, sharp)
    assert abs(_cents(plain, 440.0)) < 10.0  # the sample's own tuning: A4, within a few cents


@pytest.mark.parametrize("frames_per_call", [2, 3])
def test_a_card_that_gathers_frames_reads_a_steady_tone_as_one_frame_calls_do(tmp_path: Path, frames_per_call: int) -> None:
    """A stateful pitch card that gathers N frames per call, pushed 10 ms at a time (what `listen` does):
    every decision keeps its frame's audio, so the period reading holds (a tone that flickered between
    442.7 and 446.0 Hz when the first frames of a chunk lost their audio) and equals N = 1's."""
    pytest.importorskip("onnx")
    import edgetag
    from edgetag.export.model_file import reseal
    from edgetag.runtime.models import resolve_model

    gathered = tmp_path / "pitch-n.onnx"
    reseal(resolve_model("pitch"), gathered, frames_per_call=frames_per_call)
    t = np.arange(16000) / 16000
    tone = (0.3 * np.sin(2 * np.pi * 446.0 * t)).astype(np.float32)
    readings = {}
    for key, model in (("one", "pitch"), ("gathered", gathered)):
        tagger = edgetag.load(str(model), threads=1)
        got = []
        for start in range(0, len(tone), 160):
            got += tagger.push(tone[start : start + 160], sample_rate=16000)
        readings[key] = [d.pitch for d in got]
    one, gathered_readings = readings["one"], readings["gathered"]
    assert len(gathered_readings) >= len(one) - frames_per_call and len(gathered_readings) > 80
    steady = [r for r in gathered_readings[10:] if r.voiced]
    assert len(steady) == len(gathered_readings[10:]), "every frame of the steady tone is voiced"
    assert all(abs(r.f0_hz - 446.0) < 0.3 for r in steady), sorted({round(r.f0_hz, 1) for r in steady})
    for a, b in zip(one, gathered_readings):
        assert a.f0_hz == pytest.approx(b.f0_hz, abs=1e-3) and a.voiced == b.voiced
