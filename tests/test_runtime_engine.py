"""The streaming engine: decisions equal the offline computation, at the right times; post-processing."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from conftest import LABELS, TONES, build_model, tone_signal  # noqa: E402
from edgetag.runtime.engine import Engine, offline_decisions  # noqa: E402
from edgetag.runtime.frontend import compute_features  # noqa: E402
from edgetag.runtime.model import load_model  # noqa: E402
from edgetag.runtime.postprocess import ClipSummary, Hysteresis, Smoother, decisions_for, top_k  # noqa: E402


def _stream(engine: Engine, samples: np.ndarray, seed: int = 0):
    """Push in irregular chunks (1 sample to 0.3 s), as a device might deliver them."""
    rng = np.random.default_rng(seed)
    decisions, offset = [], 0
    while offset < len(samples):
        n = int(rng.choice([1, 7, 160, 333, 1600, 4800]))
        decisions += engine.push(samples[offset : offset + n])
        offset += n
    return decisions


def _noisy_tones() -> np.ndarray:
    x = tone_signal()
    return (x + 0.01 * np.random.default_rng(3).standard_normal(len(x))).astype(np.float32)


@pytest.mark.parametrize("mode", ["window", "stateful"])
def test_streaming_equals_offline(mode, window_model, stateful_model) -> None:
    model = load_model(window_model if mode == "window" else stateful_model, threads=1)
    samples = _noisy_tones()
    streamed = _stream(Engine(model), samples)
    offline = offline_decisions(model, samples)
    assert len(streamed) == len(offline) > 50
    np.testing.assert_allclose([d.t for d in streamed], [d.t for d in offline], atol=1e-12)
    got = np.stack([d.scores for d in streamed])
    want = np.stack([d.scores for d in offline])
    assert np.abs(got - want).max() <= 1e-5


def test_flush_runs_the_frames_gathered_for_a_call_at_the_end_of_a_file(tmp_path) -> None:
    """A card with two frames per call (`pitch-small`) and a file of an odd number of frames: the last frame's
    decision comes from `Engine.flush` (not lost), equal to the offline reference; the CLI, the API and a
    file run through `StreamRunner` give it too."""
    import soundfile as sf

    import edgetag
    from edgetag.runtime.cli import main
    from edgetag.runtime.models import resolve_model

    model = load_model(resolve_model("pitch-small"), threads=1)
    assert model.card.frames_per_call == 2
    x = (0.3 * np.sin(2 * np.pi * 220.0 * np.arange(16000 + 1024 - 160 * 4) / 16000)).astype(np.float32)
    n_frames = len(compute_features(x, model.card.frontend))
    assert n_frames % 2 == 1
    engine = Engine(model)
    streamed = _stream(engine, x)
    last = engine.flush()
    offline = offline_decisions(model, x)
    assert len(streamed) == n_frames - 1 and len(last) == 1 and len(offline) == n_frames
    assert last[0].end_sample == offline[-1].end_sample and last[0].audio is not None and last[0].level_dbfs > -20
    assert np.abs(np.stack([d.scores for d in streamed + last]) - np.stack([d.scores for d in offline])).max() <= 1e-5
    assert engine.flush() == []  # nothing left; pushes may go on
    assert len(engine.push(x[:160 * 4])) == 4
    sf.write(tmp_path / "odd.wav", x, 16000)
    assert len(edgetag.tag_file(str(tmp_path / "odd.wav"), model="pitch-small")) == n_frames
    assert main(["tag", str(tmp_path / "odd.wav"), "--model", "pitch-small", "--format", "csv", "-o",
                 str(tmp_path / "odd.csv")]) == 0
    assert len((tmp_path / "odd.csv").read_text().strip().splitlines()) == n_frames + 1  # a header, then a row each
    from edgetag.runtime.engine import StreamRunner
    from edgetag.runtime.sources import FileSource

    delivered: list = []
    StreamRunner(Engine(model), FileSource(str(tmp_path / "odd.wav"), 16000)).run(delivered.append)
    assert [d.end_sample for d in delivered] == [d.end_sample for d in offline]


@pytest.mark.parametrize("name", ["pitch-small", "pitch"])
def test_bound_calls_give_the_decisions_of_plain_calls_bit_for_bit(name) -> None:
    """The engine's calls through buffers bound once (`BoundCalls`) equal `OnnxModel.run`'s exactly: over a
    stream in irregular pushes, a shorter last call (`flush`), and after `reset`."""
    from edgetag.runtime.models import resolve_model

    model = load_model(resolve_model(name), threads=1)
    bound, plain = Engine(model), Engine(model, bound_calls=False)  # plain: the path every other backend takes
    assert bound._bound is not None and bound._bound.frames == model.card.frames_per_call and plain._bound is None
    x = _noisy_tones()[: 16000 + 1024 - 160 * 4]
    for _ in range(2):
        got = _stream(bound, x, seed=5) + bound.flush()
        want = _stream(plain, x, seed=6) + plain.flush()
        assert len(got) == len(want) > 90
        assert [d.end_sample for d in got] == [d.end_sample for d in want]
        assert np.array_equal(np.stack([d.scores for d in got]), np.stack([d.scores for d in want]))
        assert all(np.array_equal(a, b) for a, b in zip(bound.states, plain.states, strict=True))
        bound.reset()
        plain.reset()
    n = model.card.frames_per_call
    for bad in (np.zeros((1, n + 1, model.card.frontend.n_bins), np.float32),
                np.zeros((1, n, model.card.frontend.n_bins), np.float64)):
        with pytest.raises(ValueError, match="bound call takes float32"):
            bound._bound.run(bad)


def test_window_decisions_by_hand(window_model) -> None:
    """Decision k uses frames [k*hop, k*hop + window): model run on those frames, t at the last frame's end."""
    model = load_model(window_model, threads=1)
    card, config = model.card, model.card.frontend
    samples = _noisy_tones()[:16000]
    feats = compute_features(samples, config)
    decisions = _stream(Engine(model), samples, seed=1)
    n_frames = len(feats)
    assert len(decisions) == (n_frames - card.window_frames) // card.hop_frames + 1
    for k, d in enumerate(decisions):
        last = k * card.hop_frames + card.window_frames - 1
        assert d.end_sample == last * config.hop_length + config.win_length
        assert d.t == pytest.approx(d.end_sample / config.sample_rate, abs=1e-12)
        logits, _ = model.run(feats[None, last - card.window_frames + 1 : last + 1])
        np.testing.assert_allclose(d.scores, model.scores(logits)[0], atol=1e-6)
    assert decisions[0].t == pytest.approx((19 * 160 + 400) / 16000)


def test_stateful_decisions_by_hand(stateful_model) -> None:
    """Stateful: one frame per call with the state carried equals the whole sequence in one call."""
    model = load_model(stateful_model, threads=1)
    config = model.card.frontend
    samples = _noisy_tones()[:12000]
    feats = compute_features(samples, config)
    logits, _ = model.run(feats[None], model.initial_state(1))
    scores = model.scores(logits[0])
    decisions = _stream(Engine(model), samples, seed=2)
    frames = list(range(4, len(feats), 5))
    assert [d.end_sample for d in decisions] == [i * 160 + 400 for i in frames]
    np.testing.assert_allclose(np.stack([d.scores for d in decisions]), scores[frames], atol=1e-6)


@pytest.mark.parametrize("per_call", [2, 3, 5, 7])
def test_stateful_batched_calls_equal_single_frame_calls(model_dir, per_call) -> None:
    """A card asking for N frames per call gives the same decisions (the model is causal), whether N divides
    the decision hop (5 frames) or not."""
    one = load_model(build_model(model_dir / "s1.onnx", "stateful", window_frames=1), threads=1)
    many = load_model(build_model(model_dir / f"s{per_call}.onnx", "stateful", window_frames=per_call), threads=1)
    samples = _noisy_tones()
    a, b = _stream(Engine(one), samples), _stream(Engine(many), samples, seed=4)
    assert [d.t for d in a] == [d.t for d in b]
    assert np.abs(np.stack([d.scores for d in a]) - np.stack([d.scores for d in b])).max() <= 1e-5
    assert [d.level_dbfs for d in a] == pytest.approx([d.level_dbfs for d in b], abs=1e-9)


@pytest.mark.parametrize("mode", ["window", "stateful"])
def test_one_long_push_gives_the_decisions_of_many_and_keeps_only_a_tail(mode, window_model, stateful_model) -> None:
    """A whole file in one push (longer than the engine's audio buffer): the same decisions and levels as
    small pushes, int16 as float32 / 32768, and the engine's audio buffer is no larger afterwards."""
    model = load_model(window_model if mode == "window" else stateful_model, threads=1)
    samples = np.round(_noisy_tones() * 8000) / 32768  # exactly representable as int16 / 32768
    engine = Engine(model)
    size = len(engine._audio)
    assert len(samples) > 4 * size
    whole = engine.push((samples * 32768).astype(np.int16))
    assert len(engine._audio) == size and engine._audio_len <= engine._tail_keep
    assert len(engine._frames_buf) <= 256  # nor the push's frames
    chunked = _stream(Engine(model), samples.astype(np.float32))
    assert [d.t for d in whole] == [d.t for d in chunked]
    assert [d.level_dbfs for d in whole] == pytest.approx([d.level_dbfs for d in chunked], abs=1e-9)
    engine.reset()  # and a reset stream starts over with the same buffer
    assert [d.t for d in engine.push(samples.astype(np.float32))] == [d.t for d in chunked]
    assert len(engine._audio) == size


@pytest.mark.parametrize("mode", ["window", "stateful"])
def test_a_tone_fires_its_label_at_the_right_time(mode, window_model, stateful_model) -> None:
    model = load_model(window_model if mode == "window" else stateful_model, threads=1)
    decisions = _stream(Engine(model), tone_signal())
    hysteresis = Hysteresis(LABELS, model.card.thresholds, margin=0.1)
    events = [e for d in decisions for e in hysteresis.update(d.t, d.scores)]
    assert [(e.label, e.kind) for e in events] == [
        (label, kind) for label in LABELS for kind in ("onset", "offset")
    ]
    window_s = (model.card.window_frames - 1) * 0.01 + 0.025 + 0.05  # how long a window lags, plus one hop
    for (start, end, _), label in zip(TONES, LABELS):
        onset = next(e for e in events if e.label == label and e.kind == "onset")
        offset = next(e for e in events if e.label == label and e.kind == "offset")
        assert start < onset.t <= start + window_s
        assert end < offset.t <= end + window_s


def test_engine_reset_and_empty_pushes(window_model) -> None:
    engine = Engine(load_model(window_model, threads=1))
    assert engine.push(np.zeros(0, np.float32)) == []
    first = engine.push(tone_signal()[:8000])
    engine.reset()
    again = engine.push(tone_signal()[:8000])
    assert [d.t for d in first] == [d.t for d in again]
    np.testing.assert_array_equal(np.stack([d.scores for d in first]), np.stack([d.scores for d in again]))


# ---------------------------------------------------------------- post-processing
def test_hysteresis_on_at_threshold_off_below_threshold_minus_margin() -> None:
    h = Hysteresis(("a", "b"), (0.5, 0.8), margin=0.1)
    track = [(0.0, [0.49, 0.0]), (0.1, [0.5, 0.85]), (0.2, [0.41, 0.75]), (0.3, [0.39, 0.69]), (0.4, [0.6, 0.0])]
    events = [(e.t, e.label, e.kind) for t, s in track for e in h.update(t, np.array(s))]
    assert events == [(0.1, "a", "onset"), (0.1, "b", "onset"), (0.3, "a", "offset"), (0.3, "b", "offset"),
                      (0.4, "a", "onset")]
    assert [(e.t, e.label, e.kind) for e in h.finish(0.5)] == [(0.5, "a", "offset")]
    with pytest.raises(ValueError):
        Hysteresis(("a",), (0.5, 0.5))


def test_a_threshold_below_the_margin_still_turns_off() -> None:
    # music-tags-voices' voice tags sit at 0.03-0.06: threshold - 0.1 is below any score, so the margin
    # is capped at half the threshold
    h = Hysteresis(("voice", "drums"), (0.04, 0.5), margin=0.1)
    track = [(0.0, [0.05, 0.6]), (0.1, [0.021, 0.41]), (0.2, [0.019, 0.39]), (0.3, [0.0, 0.0])]
    events = [(e.t, e.label, e.kind) for t, s in track for e in h.update(t, np.array(s))]
    assert events == [(0.0, "voice", "onset"), (0.0, "drums", "onset"), (0.2, "voice", "offset"),
                      (0.2, "drums", "offset")]


def test_hysteresis_with_minimum_runs_dates_events_where_the_run_began() -> None:
    """min_on / min_off decisions debounce the hysteresis state: a run shorter than min_on is no onset, a dip
    shorter than min_off no offset; each event carries the time of its run's first decision, and
    ``active`` follows the rule. Scores between the off level and the threshold keep a run going."""
    h = Hysteresis(("a",), (0.5,), margin=0.1, min_on=3, min_off=2)
    scores = [0.6, 0.7, 0.1, 0.6, 0.45, 0.45, 0.6, 0.3, 0.6, 0.3, 0.3, 0.3]  # a blip of 2, a run of 4, dips of 1 and 3
    seen, active = [], []
    for i, s in enumerate(scores):
        seen += [(e.t, e.kind) for e in h.update(i / 10, np.array([s]))]
        active.append(h.active_labels() == ("a",))
    assert seen == [(0.3, "onset"), (0.9, "offset")]  # the blip ignored, the one-decision dip bridged
    assert active == [False] * 5 + [True] * 5 + [False] * 2  # on at the 3rd decision of its run, off at the 2nd
    assert h.finish(1.2) == []
    assert decisions_for(0.5, 0.1) == 5 and decisions_for(0.0, 0.1) == 1 and decisions_for(0.05, 0.1) == 1
    with pytest.raises(ValueError, match="min_on"):
        Hysteresis(("a",), (0.5,), min_on=0)
    with pytest.raises(ValueError, match="minimum duration"):
        decisions_for(-1.0, 0.1)


def test_smoothing_is_a_moving_average() -> None:
    s = Smoother(3)
    out = [s(np.array([v], np.float32))[0] for v in (3.0, 0.0, 0.0, 6.0, 0.0)]
    np.testing.assert_allclose(out, [3.0, 1.5, 1.0, 2.0, 2.0])
    assert Smoother(1)(np.array([0.25]))[0] == 0.25
    with pytest.raises(ValueError):
        Smoother(0)


def test_top_k_and_clip_summary() -> None:
    assert top_k(np.array([0.1, 0.9, 0.5, 0.9]), ("a", "b", "c", "d"), 3) == [("b", 0.9), ("d", 0.9), ("c", 0.5)]
    summary = ClipSummary(("a", "b"))
    for scores in ([0.2, 0.4], [0.6, 0.0]):
        summary.add(np.array(scores))
    d = summary.to_dict(k=1)
    assert d["decisions"] == 2 and d["top"] == ["a"]
    assert d["mean"] == {"a": 0.4, "b": 0.2} and d["max"] == {"a": 0.6, "b": 0.4}
    silence = ClipSummary(("a", "b"))  # silent decisions count as zero scores: no tag was heard
    for _ in range(3):
        silence.add(np.zeros(2))
    assert silence.to_dict()["decisions"] == 3 and silence.to_dict()["top"] == []
    assert ClipSummary(("a", "b")).to_dict()["top"] == []


def test_duration_stats_stay_small_and_accurate() -> None:
    """A day of 10 ms decisions keeps the same memory as a minute; p50 / p99 within 0.5 % of the exact ones."""
    from edgetag.runtime.engine import DurationStats

    rng = np.random.default_rng(0)
    values = rng.lognormal(np.log(0.004), 0.7, 100_000)
    stats = DurationStats(recent=100)
    before = stats._counts.nbytes
    for v in values:
        stats.add(float(v))
    assert stats._counts.nbytes == before and len(stats.recent) == 100 and len(stats) == len(values)
    exact = 1e3 * np.percentile(values, [50, 99])
    np.testing.assert_allclose(stats.percentiles_ms(), exact, rtol=5e-3)
    np.testing.assert_allclose(stats.recent_ms(), 1e3 * np.percentile(values[-100:], [50, 99]))
    assert np.isnan(DurationStats().percentiles_ms()[0])


def test_an_output_that_is_not_read_drops_decisions_and_counts_them(window_model, tone_wav, monkeypatch) -> None:
    """The decision queue is bounded: a stalled consumer costs counted drops and a warning, not memory."""
    import time

    from edgetag.runtime import engine as engine_module
    from edgetag.runtime.engine import Engine, StreamRunner, offline_decisions
    from edgetag.runtime.model import load_model
    from edgetag.runtime.sources import FileSource

    monkeypatch.setattr(engine_module, "MAX_PENDING_DECISIONS", 4)
    model = load_model(window_model, threads=1)
    rate = model.card.frontend.sample_rate
    warnings: list[str] = []
    source = FileSource(str(tone_wav), rate)
    source.live = True  # as a microphone: it cannot wait for the reader
    runner = StreamRunner(Engine(model), source, warn=warnings.append)
    delivered = []

    def slow(decision) -> None:  # a consumer far slower than the engine
        time.sleep(0.02)
        delivered.append(decision)

    runner.run(slow)
    from edgetag.runtime.audio import load_audio

    total = len(offline_decisions(model, load_audio(tone_wav, rate)))
    dropped = runner.stats.dropped_decisions
    assert dropped > 0 and len(delivered) + dropped == total
    assert warnings and "not being read" in warnings[0] and "decisions dropped unread" in runner.stats.summary()



def test_a_file_at_full_speed_waits_for_a_slow_reader(window_model, tone_wav, monkeypatch) -> None:
    """Not live: the source waits for queue room, so every decision reaches the reader (nothing lost)."""
    import time

    from edgetag.runtime import engine as engine_module
    from edgetag.runtime.audio import load_audio
    from edgetag.runtime.engine import Engine, StreamRunner, offline_decisions
    from edgetag.runtime.model import load_model
    from edgetag.runtime.sources import FileSource

    monkeypatch.setattr(engine_module, "MAX_PENDING_DECISIONS", 4)
    model = load_model(window_model, threads=1)
    rate = model.card.frontend.sample_rate
    runner = StreamRunner(Engine(model), FileSource(str(tone_wav), rate))
    delivered = []
    runner.run(lambda d: (time.sleep(0.005), delivered.append(d)))
    assert runner.stats.dropped_decisions == 0
    assert len(delivered) == len(offline_decisions(model, load_audio(tone_wav, rate)))


def test_a_worker_behind_real_time_catches_up_and_says_so(window_model) -> None:
    """A live source's audio older than the bound is skipped (counted, warned); decision times stay true."""
    import time

    from edgetag.runtime.engine import Engine, StreamRunner
    from edgetag.runtime.model import load_model
    from edgetag.runtime.sources import Chunk, SourceStats

    model = load_model(window_model, threads=1)
    rate = model.card.frontend.sample_rate
    block = 1600  # 0.1 s

    class LateMicrophone:
        """A live source whose chunks 10-19 come 3 s after their capture (the worker was stalled)."""

        live = True

        def __init__(self) -> None:
            self.stats = SourceStats()

        def chunks(self):
            rng = np.random.default_rng(0)
            for i in range(40):
                now = time.monotonic()
                yield Chunk(0.1 * rng.standard_normal(block).astype(np.float32), now - (3.0 if 10 <= i < 20 else 0.01))

        def stop(self) -> None:
            pass

        def close(self) -> None:
            pass

    warnings: list[str] = []
    runner = StreamRunner(Engine(model), LateMicrophone(), warn=warnings.append, max_lag_s=1.0)
    delivered = []
    runner.run(delivered.append)
    stats = runner.stats
    assert stats.catchups == 1 and stats.lag_skipped_samples == 10 * block == stats.skipped_samples
    assert warnings and "behind real time" in warnings[0] and "1 catch-ups" in stats.summary()
    gaps = [d for d in delivered if "skipped_s" in d.extra]
    assert len(gaps) == 1 and gaps[0].extra["skipped_s"] == pytest.approx(1.0)
    # times stay on the source's clock: the first decision after the gap is at least 1 s later than the one before
    i = delivered.index(gaps[0])
    assert delivered[i].t - delivered[i - 1].t >= 1.0
    assert all(d.level_dbfs is not None and -25 < d.level_dbfs < -15 for d in delivered)  # 0.1-RMS noise: -20 dBFS


def test_the_level_gate_makes_silence_silent(window_model) -> None:
    """Below the gate a decision is silence: no tag is on, the summary gains no tag; the scores stay visible."""
    import math

    from edgetag.runtime.pipeline import DEFAULT_LEVEL_GATE_DBFS, DecisionPipeline, level_gate

    model = load_model(window_model, threads=1)
    rate = model.card.frontend.sample_rate
    hiss = 1e-4 * np.random.default_rng(0).standard_normal(2 * rate).astype(np.float32)  # about -80 dBFS
    signal = np.concatenate([hiss, tone_signal(rate)])
    assert level_gate(model.card) == DEFAULT_LEVEL_GATE_DBFS  # the card sets none

    class Collect:
        def __init__(self) -> None:
            self.rows: list = []

        def decision(self, d, scores) -> None:
            self.rows.append((d, scores.copy()))

    def run(gate: float):
        writer, summary = Collect(), ClipSummary(LABELS)
        # thresholds so low that any score turns a tag on: only the gate can keep one off
        pipeline = DecisionPipeline(model.card.labels, [1e-6] * len(LABELS), [writer], summary=summary, gate_dbfs=gate)
        engine, active = Engine(model), []
        for i in range(0, len(signal), 1600):
            for d in engine.push(signal[i : i + 1600]):
                pipeline(d)
                active.append(pipeline.event_detector.active.any())
        return writer.rows, active, pipeline

    rows, active, pipeline = run(DEFAULT_LEVEL_GATE_DBFS)
    silent = [i for i, (d, _) in enumerate(rows) if d.extra.get("silent")]
    assert silent and pipeline.silent_decisions == len(silent)
    assert all(rows[i][0].level_dbfs < DEFAULT_LEVEL_GATE_DBFS for i in silent)
    assert all(d.extra.get("silent") for d, _ in rows if d.t <= 2.0)  # every decision of the hiss alone
    assert len(silent) < len(rows)  # the tones are heard
    assert not any(active[i] for i in silent)  # no tag on in silence
    assert all(np.any(rows[i][1] > 0) for i in silent)  # the model's scores stay visible to writers
    assert any(active)  # the tones turn tags on
    open_rows, open_active, open_pipeline = run(-math.inf)
    assert open_pipeline.silent_decisions == 0 and all(open_active[i] for i in silent)  # without the gate, hiss is tagged


def test_an_offset_that_silence_brings_says_so(window_model) -> None:
    """A tag on when the sound stops is ended by the level gate at once: its offset has no score and says
    "silence" (text and jsonl); the one that closes the stream says "end"."""
    import io
    import json

    from edgetag.runtime.output import EventWriter, JsonlWriter
    from edgetag.runtime.pipeline import DEFAULT_LEVEL_GATE_DBFS, DecisionPipeline

    model = load_model(window_model, threads=1)
    rate = model.card.frontend.sample_rate
    hiss = 1e-4 * np.random.default_rng(0).standard_normal(2 * rate).astype(np.float32)
    steady = (0.3 * np.sin(2 * np.pi * 440 * np.arange(rate) / rate)).astype(np.float32)  # on to the end
    signal = np.concatenate([tone_signal(rate), hiss, steady])
    text, jsonl = io.StringIO(), io.StringIO()
    writers = [EventWriter(text), JsonlWriter(jsonl, LABELS)]
    pipeline = DecisionPipeline(model.card.labels, [1e-6] * len(LABELS), writers, events_only=True,
                                gate_dbfs=DEFAULT_LEVEL_GATE_DBFS)
    engine = Engine(model)
    for i in range(0, len(signal), 1600):
        for d in engine.push(signal[i : i + 1600]):
            pipeline(d)
    pipeline.finish()
    events = [json.loads(line) for line in jsonl.getvalue().splitlines()]
    causes = [e.get("cause") for e in events if e["event"] == "offset"]
    assert "silence" in causes and causes[-1] == "end"
    assert all(e["score"] is None for e in events if e.get("cause"))
    assert "(silence)" in text.getvalue() and text.getvalue().rstrip().endswith("(end)")
