"""The pitch trackers of ``edgetag bench`` (``--peers``, a pitch ``--eval``): edgetag's pitch model beside
SwiftF0, FCPE and PESTO from their own wheels. Each peer runs for real where its package is installed
and says how to install it where not; with EDGETAG_REQUIRE_PEERS=1 (CI, once it installs them) a
missing peer is a failure instead. Never asserts on timings.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("soundfile")

import soundfile as sf  # noqa: E402
from edgetag.benchmarks.pitch_peers import PEERS, load_tracker, torchaudio_stand_in  # noqa: E402
from edgetag.benchmarks.pitch_rows import CONDITIONS, Condition, PitchEvalSet, bench_pitch_trackers, on_grid, pitch_section  # noqa: E402
from edgetag.benchmarks.settings import BenchSettings  # noqa: E402

SR = 16000


def _findable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:  # a finder that blocks it (tests/test_bench_runtime_only.py style)
        return False


HAVE_TORCH = _findable("torch")
REQUIRED = os.environ.get("EDGETAG_REQUIRE_PEERS") == "1"


def _skip_or_fail(reason: str) -> None:
    if REQUIRED:
        pytest.fail(f"{reason}, and EDGETAG_REQUIRE_PEERS=1 says the peers must run here")
    pytest.skip(reason)


def _installed(key: str) -> bool:
    spec = PEERS[key]
    return _findable(spec.module) and (HAVE_TORCH or not spec.needs_torch)


def _tone(seconds: float, f0: float, level: float = 0.3) -> np.ndarray:
    """A harmonic tone (5 partials, falling amplitudes): every tracker here should follow it."""
    t = np.arange(round(seconds * SR)) / SR
    return (level * sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 6)) / 2).astype(np.float32)


def _pitch_manifest(folder: Path) -> Path:
    """Two test clips with score f0 sidecars at the student frame centres; the second is marked score_f0 false."""
    rows = []
    for i, (f0, scored) in enumerate(((220.0, True), (330.0, False))):
        wave = _tone(1.5, f0)
        sf.write(folder / f"clip{i}.wav", wave, SR)
        np.save(folder / f"clip{i}.f0.npy", np.full(1 + (len(wave) - 1024) // 160, f0, np.float32))
        rows.append({"path": f"clip{i}.wav", "labels": [], "split": "test", "source": "render",
                     "f0": f"clip{i}.f0.npy", "score_f0": scored})
    path = folder / "renders.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _settings(manifest: Path | None, **overrides) -> BenchSettings:
    base = dict(eval_clips=1, eval_seconds=1.0, peer_repeats=1, teachers=(), peers=tuple(PEERS), threads=1,
                eval_manifest=str(manifest) if manifest else None, frontend=False, mic=False)
    return BenchSettings.for_mode(quick=True, **{**base, **overrides})


@pytest.mark.parametrize("key", list(PEERS))
def test_a_missing_peer_gives_a_row_that_says_how_to_install_it(key: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if PEERS[key].needs_torch and not HAVE_TORCH:
        assert load_tracker(key).startswith("needs torch")
        return
    for name in [m for m in sys.modules if m == PEERS[key].module or m.startswith(PEERS[key].module + ".")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, PEERS[key].module, None)  # `import` of it now fails as if absent
    got = load_tracker(key)
    assert got == f"not installed ({PEERS[key].install})"


def test_a_missing_dependency_is_named_with_its_pip_line(monkeypatch: pytest.MonkeyPatch) -> None:
    if not _installed("fcpe"):
        _skip_or_fail(f"torchfcpe or torch is not installed ({PEERS['fcpe'].install})")
    for name in [m for m in sys.modules if m.split(".")[0] in ("torchfcpe", "local_attention")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "local_attention", None)
    got = load_tracker("fcpe")
    assert got.startswith("not installed: torchfcpe needs local_attention") and "local-attention==1.9.0" in got


def test_torchaudio_stand_in_lets_imports_through_and_leaves_nothing_behind() -> None:
    if _findable("torchaudio"):
        pytest.skip("torchaudio is installed here: the stand-in is not used")
    with torchaudio_stand_in() as note:
        from torchaudio.transforms import Resample  # what torchfcpe imports

        assert "stand-in" in note
        with pytest.raises(RuntimeError, match="needs torchaudio"):
            Resample(44100, 16000)
    assert "torchaudio" not in sys.modules and "torchaudio.transforms" not in sys.modules


def test_on_grid_keeps_frames_on_the_grid_and_interpolates_in_cents() -> None:
    times = np.array([0.00, 0.01, 0.02, 0.03])
    f0 = np.array([200.0, 400.0, 0.0, 300.0])
    voiced = np.array([True, True, False, True])
    est, v = on_grid(times, f0, voiced, np.array([0.01, 0.005, 0.016, 0.024, 0.5]))
    assert est[0] == 400.0 and v[0]
    assert est[1] == pytest.approx(200.0 * np.sqrt(2.0))  # half way in cents, not in Hz
    assert est[2] == 0.0 and not v[2]  # one neighbour without f0: the nearest frame's
    assert est[3] == 0.0 and est[4] == 300.0  # nearest; past the end: the last frame


def test_peer_rows_cost_latency_and_rpa_beside_edgetag(tmp_path: Path) -> None:
    manifest = _pitch_manifest(tmp_path)
    settings = _settings(manifest)
    data = PitchEvalSet(settings)
    assert data.info()["not_scored"]["score_f0 false"] == 1 and data.info()["clips"] == 1
    result = bench_pitch_trackers(settings, [], data, lambda _m: None)
    rows = {r["tracker"]: r for r in result["rows"]}
    assert result["reference"] == "edgetag pitch ORT fp32" and "built-in" in result["edgetag_source"]
    ref = rows["pitch"]
    assert ref["cost_ratio_to_edgetag"]["batch"] == pytest.approx(1.0)
    assert ref["lookahead_ms"] == 32.0 and ref["hop_ms"] == 10.0 and ref["cpu_ms_per_s"]["stream"]["median"] > 0
    assert ref["eval"]["rpa"] > 0.8 and ref["eval"]["voiced_frames"] == ref["eval"]["frames"]
    expected = {"swift-f0": (16.0, 176.0), "fcpe": (10.0, None), "pesto": (10.0, 128.0)}
    for key, (hop, lookahead) in expected.items():
        row = rows[key]
        if not _installed(key):
            assert row["status"].startswith(("not installed", "needs torch")), row
            assert not REQUIRED, f"{key}: {row['status']}, and EDGETAG_REQUIRE_PEERS=1 says it must run here"
            continue
        assert row["status"] == "ok", row
        assert (row["hop_ms"], row["lookahead_ms"]) == (hop, lookahead)
        assert row["params"] > 0 and row["licence"] == PEERS[key].licence and row["version"]
        assert row["cpu_ms_per_s"]["batch"]["median"] > 0
        assert (row["cpu_ms_per_s"]["stream"] is None) == (lookahead is None)  # FCPE is offline only
        assert row["cost_ratio_to_edgetag"]["batch"] > 0
        assert row["eval"]["rpa"] > 0.8, row["eval"]  # a clean harmonic tone at 220 Hz
        assert set(row["accuracy_vs_edgetag"]) == {"rpa_ratio", "rca_ratio", "rpa_points", "rca_points"}
    # the level and noise conditions: a harmonic tone is as easy at -40 dBFS peak, and scored under noise
    assert list(ref["eval_conditions"]) == [c.name for c in CONDITIONS] and ref["eval_conditions"]["as rendered"] == ref["eval"]
    for name in ("peak 0 dBFS", "peak -20 dBFS", "peak -40 dBFS"):
        assert ref["eval_conditions"][name]["rpa"] > 0.8, (name, ref["eval_conditions"][name])
    assert ref["eval_conditions"]["white noise, 10 dB SNR"]["rpa"] > 0.8  # a harmonic tone 10 dB over white noise
    md = "\n".join(pitch_section({"pitch_trackers": result}))
    assert "| edgetag pitch ORT fp32 |" in md and "score_f0 false" in md and "pip install --no-deps" in md
    assert "Level and noise" in md and "| noise minus as rendered | the same, frames above the noise |" in md
    heard = ref["eval_conditions"]["as rendered"]
    assert heard["voiced_frames_above_noise"] == heard["voiced_frames"] and heard["rpa_above_noise"] == heard["rpa"]
    for key in PEERS:
        assert PEERS[key].label in md


def test_conditions_set_the_peak_and_add_seeded_noise_at_the_snr() -> None:
    wave = _tone(2.0, 220.0, level=0.05)
    quiet = Condition("q", peak_dbfs=-40.0).apply(wave, seed=0)
    assert np.max(np.abs(quiet)) == pytest.approx(0.01, rel=1e-5)
    assert np.allclose(quiet / np.max(np.abs(quiet)), wave / np.max(np.abs(wave)), atol=1e-6)  # a gain, nothing else
    noisy = Condition("n", snr_db=10.0).apply(wave, seed=3)
    snr = 10 * np.log10(np.mean(wave.astype(np.float64) ** 2) / np.mean((noisy - wave).astype(np.float64) ** 2))
    assert snr == pytest.approx(10.0, abs=0.2)
    assert np.array_equal(noisy, Condition("n", snr_db=10.0).apply(wave, seed=3))  # every tracker hears the same noise
    assert not np.array_equal(noisy, Condition("n", snr_db=10.0).apply(wave, seed=4))
    assert np.array_equal(Condition("as is").apply(wave, seed=0), wave)
    # frames above the noise: a note whose tail decays 40 dB is buried in it there, its loud part is not
    decaying = np.concatenate([wave, wave / 100]).astype(np.float32)
    frames = np.arange(0, (len(decaying) - 1024) // 160)
    above = Condition("n", snr_db=10.0).above_noise(decaying, frames)
    assert above[: len(wave) // 160 - 7].all() and not above[len(wave) // 160 + 1:].any()
    with pytest.raises(ValueError, match="adds no noise"):
        Condition("as is").above_noise(wave, frames)


def test_a_card_that_gathers_frames_streams_in_calls_of_them_and_says_its_latency(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("onnx")
    from edgetag.benchmarks.pitch_peers import edgetag_tracker
    from edgetag.export.model_file import reseal
    from edgetag.runtime.models import resolve_model

    path = tmp_path / "pitch2.onnx"
    reseal(resolve_model("pitch"), path, frames_per_call=2)
    one, two = edgetag_tracker(str(resolve_model("pitch")), "one", 1), edgetag_tracker(str(path), "two", 1)
    assert (one.lookahead_ms, two.lookahead_ms) == (32.0, 42.0) and "one call per 2 frames" in two.streaming
    wave = _tone(1.0, 220.0)
    calls = []
    from edgetag.runtime.model import BoundCalls, OnnxModel

    def counting(original):  # type: ignore[no-untyped-def]
        def run(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            calls.append(args[0].shape[1])
            return original(self, *args, **kwargs)
        return run

    # calls of two frames go through the engine's bound buffers, a shorter last one through OnnxModel.run
    monkeypatch.setattr(OnnxModel, "run", counting(OnnxModel.run))
    monkeypatch.setattr(BoundCalls, "run", counting(BoundCalls.run))
    two.stream(wave)
    monkeypatch.undo()
    assert calls and set(calls[:-1]) == {2} and calls[-1] in (1, 2)  # one call per two frames; the end flushed
    t1, f1, v1 = one.track(wave)
    t2, f2, v2 = two.track(wave)
    assert np.allclose(f1, f2) and np.array_equal(v1, v2)  # the offline reading does not depend on it


def test_a_peer_that_fails_on_the_audio_is_a_row_not_a_failed_run() -> None:
    from edgetag.benchmarks.pitch_rows import _time_rounds

    def broken(_wave: np.ndarray) -> None:
        raise RuntimeError("bad input")

    clips = [_tone(1.0, 220.0)]
    times, failed = _time_rounds([(0, "batch", lambda w: None), (1, "batch", broken), (1, "stream", broken)],
                                 clips, 1, lambda _m: None)
    assert failed == {1: "failed: RuntimeError: bad input"}
    assert list(times) == [(0, "batch")] and len(times[(0, "batch")]) == 1


def test_cli_peers_flag() -> None:
    from edgetag.benchmarks.commands import peer_names

    assert peer_names(None) is None
    assert peer_names([]) == tuple(PEERS)
    assert peer_names(["pesto", "swift-f0", "pesto"]) == ("pesto", "swift-f0")
    with pytest.raises(ValueError, match="unknown peer"):
        peer_names(["yin"])


def test_bench_with_a_pitch_eval_reports_the_pitch_section(tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    from edgetag.benchmarks.report import run_bench

    manifest = _pitch_manifest(tmp_path)
    out = tmp_path / "report"
    settings = _settings(manifest, peers=("swift-f0",), onnx_models=("pitch",), backends=("ort-fp32",),
                         warmup_runs=2, timed_runs=10, engine_seconds=1.0, subprocess_workers=False)
    result = run_bench(out, settings)
    assert result["eval"]["kind"] == "pitch"
    assert [r["tracker"] for r in result["pitch_trackers"]["rows"]][:2] == ["pitch", "pitch.int8"]
    md = (out / "report.md").read_text()
    assert "## Pitch trackers" in md and "RPA/RCA under Pitch trackers" in md and "is a pitch manifest" in md
    assert ("| SwiftF0 (swift-f0" in md) == _installed("swift-f0")
