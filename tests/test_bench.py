"""`edgetag bench` harness on a tiny student with minimal repetitions: the report, JSON and plots are written.

Never asserts on timings (DESIGN.md, "How we measure").
"""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")
pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("matplotlib")

from edgetag.benchmarks.report import BenchSettings, run_bench
from edgetag.benchmarks.report_format import PLOTS, _pareto


def tiny_settings(**overrides) -> BenchSettings:
    settings = dict(
        models=("causal_cnn",), student_params={"causal_cnn": {"channels": 8, "layers": 2}},
        n_labels=5, frontend=False, eval_clips=2, eval_seconds=1.5, calib_seconds=2.0, min_calib_windows=10,
        warmup_runs=2, timed_runs=20, teachers=(), engine_seconds=1.0, mic=False, subprocess_workers=False)
    return BenchSettings.for_mode(quick=True, **{**settings, **overrides})


def test_bench_writes_report_json_and_plots(tmp_path) -> None:
    result = run_bench(tmp_path, tiny_settings())
    for name in ("report.md", "report.json", PLOTS[1]):
        assert (tmp_path / name).stat().st_size > 0, name
    assert (tmp_path / PLOTS[1]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # random weights, no --eval: no task metric, so no accuracy plot (tests/test_bench_eval.py draws one)
    assert not (tmp_path / PLOTS[0]).exists()
    md = (tmp_path / "report.md").read_text()
    for text in ("## Models: students × backends", "PyTorch eager fp32", "ORT CPU fp32", "ORT CPU int8 (QDQ)",
                 "ORT CPU fp16 weights", "TensorRT", "random weights", "Machine:", "Threads:", "noisy",
                 "## Streaming end to end", "Virtual microphone: skipped (--no-mic)",
                 "accuracy_vs_macs.png: not plotted", "— (no --eval)"):
        assert text in md, text
    data = json.loads((tmp_path / "report.json").read_text())
    rows = {r["backend"]: r for r in data["models"]["students"][0]["rows"]}
    assert set(rows) == {"torch", "ort-fp32", "ort-int8", "ort-fp16", "tensorrt"}
    for key in ("torch", "ort-fp32", "ort-int8", "ort-fp16"):
        row = rows[key]
        assert row["status"] == "ok", row
        assert {"p50", "p90", "p99", "p99_9"} <= set(row["latency_ms"])
        assert len(row["latency_ms_runs"]) >= 20 and row["peak_rss_mb"] > 0 and row["file_bytes"] > 0
        assert 0.0 <= row["agreement_vs_fp32"]["roc_auc"] <= 1.0
    assert rows["ort-fp32"]["agreement_vs_fp32"]["roc_auc"] == pytest.approx(1.0)
    assert rows["torch"]["agreement_vs_fp32"]["max_abs_score_diff"] < 1e-3
    assert data["models"]["students"][0]["macs_per_second"] > 0
    engine = data["engine"][0]
    assert engine["decisions"] > 0 and engine["max_abs_diff_vs_offline"] < 1e-4
    assert result["wall_seconds"] > 0


def test_a_worker_subprocess_measures_the_same_rows(tmp_path) -> None:
    result = run_bench(tmp_path, tiny_settings(subprocess_workers=True, backends=("ort-fp32", "tensorrt")))
    rows = {r["backend"]: r for r in result["models"]["students"][0]["rows"]}
    assert rows["ort-fp32"]["status"] == "ok" and rows["ort-fp32"]["subprocess"]
    assert rows["tensorrt"]["status"].startswith("not available")


def test_pareto_front_keeps_undominated_points() -> None:
    assert _pareto([(1, 0.5), (2, 0.9), (3, 0.8), (0.5, 0.4)]) == [(0.5, 0.4), (1, 0.5), (2, 0.9)]


def test_bench_is_registered_on_the_cli() -> None:
    from edgetag.runtime.cli import build_parser

    args = build_parser().parse_args(["bench", "--quick", "--no-mic", "--threads", "2", "--out", "x"])
    assert args.quick and args.no_mic and args.threads == 2 and args.out == "x"


def test_the_worker_calls_a_stateful_model_as_the_engine_does(tmp_path) -> None:
    """pitch-small's card gathers 2 frames per call: the bench times calls of 2 frames (RTF over the 20 ms a call
    covers, not 10 ms), and its scores are the engine's decisions, one per frame."""
    import numpy as np

    from edgetag.benchmarks.worker import measure_backend
    from edgetag.runtime.engine import Engine
    from edgetag.runtime.frontend import compute_features
    from edgetag.runtime.model import load_model
    from edgetag.runtime.models import resolve_model

    path = resolve_model("pitch-small")
    card = load_model(path).card
    assert card.streaming_mode == "stateful" and card.frames_per_call == 2 and card.hop_frames == 1
    audio = (0.3 * np.sin(2 * np.pi * 220 * np.arange(16000) / 16000)).astype(np.float32)
    features = compute_features(audio, card.frontend)
    np.savez(tmp_path / "features.npz", clip0=features)
    result = measure_backend({"model_path": str(path), "backend": "cpu", "threads": 1,
                              "features": str(tmp_path / "features.npz"), "warmup": 2, "runs": 10,
                              "scores_out": str(tmp_path / "scores.npy")})
    assert result["calls_per_pass"] == len(features) // 2
    assert result["call_seconds"] == pytest.approx(2 * card.frontend.hop_length / card.frontend.sample_rate)
    engine = Engine(load_model(path))
    decisions = engine.push(audio)
    scores = np.load(tmp_path / "scores.npy")
    assert len(scores) == len(decisions) == 2 * (len(features) // 2)
    np.testing.assert_allclose(scores, np.stack([d.scores for d in decisions]), atol=1e-5)
