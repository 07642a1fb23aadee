"""`edgetag bench --eval`: the task metric of each student × backend (and a teacher) on a labelled split.

A tiny labelled dataset (WAVs + CSV manifest) is built in tmp_path; the student is untrained (random
weights) because only the plumbing is under test: the metric must be a finite mAP computed on the split,
equal across the PyTorch checkpoint, `edgetag evaluate` and the fp32 ONNX export, and the accuracy-vs-MACs
plot must be drawn from it. Never asserts on timings.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("matplotlib")
sf = pytest.importorskip("soundfile")

from edgetag.benchmarks.report import BenchSettings, run_bench
from edgetag.benchmarks.report_format import NO_EVAL, PLOTS

LABELS = ["bell", "hum", "noise"]


def _dataset(tmp_path: Path) -> Path:
    """Nine 1.2-1.6 s clips at 16 kHz: tones and noise, each labelled, 6 in `test`, 3 in `train`."""
    rng = np.random.default_rng(0)
    rows = ["path,labels,split"]
    for i in range(9):
        n = int(16000 * (1.2 + 0.2 * (i % 3)))
        t = np.arange(n) / 16000
        labels = [LABELS[i % 3]] + (["noise"] if i in (1, 4) else [])
        x = 0.02 * rng.standard_normal(n)
        if "bell" in labels:
            x += 0.3 * np.sin(2 * np.pi * 1800 * t)
        if "hum" in labels:
            x += 0.3 * np.sin(2 * np.pi * 120 * t)
        if "noise" in labels:
            x += 0.2 * rng.standard_normal(n)
        sf.write(tmp_path / f"clip{i}.wav", x.astype(np.float32), 16000)
        rows.append(f"clip{i}.wav,{';'.join(sorted(set(labels)))},{'test' if i < 6 else 'train'}")
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("\n".join(rows) + "\n")
    return manifest


def _checkpoint(tmp_path: Path, labels: list[str] = LABELS, name: str = "student.pt") -> Path:
    """An untrained window student saved as the trainer saves one (`StudentCheckpoint`)."""
    from edgetag.runtime.frontend import FrontendConfig
    from edgetag.training.checkpoint import StudentCheckpoint, save_checkpoint
    from edgetag.training.students import build_student

    torch.manual_seed(0)
    fe = FrontendConfig.preset("default")
    params = {"window_frames": 40, "width": 0.25, "embedding_dim": 16}
    ck = StudentCheckpoint(student=build_student("mobilenet", fe.n_bins, len(labels), **params), kind="mobilenet",
                           params=params, frontend=fe, task="multi_label", labels=list(labels),
                           thresholds=[0.5] * len(labels), window_frames=40, hop_frames=20)
    run = tmp_path / "run-tiny"
    run.mkdir(exist_ok=True)
    return save_checkpoint(ck, run / name)


def _teacher_cache(tmp_path: Path, manifest: Path) -> Path:
    """A 5-output teacher's outputs on the manifest, cached by `fill_cache` (what `edgetag teach` writes)."""
    from edgetag.training.teach import fill_cache
    from edgetag.training.teachers.base import Teacher, TeacherOutput

    class BenchEvalTeacher(Teacher):
        name = "bench-eval-tiny"
        sample_rate = 16000
        score_kind = "probabilities"
        task = "multi_label"
        frame_rate = 20.0
        labels = ["x0", "x1", "x2", "x3", "x4"]  # noqa: RUF012
        embedding_dim = 2

        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("w", torch.tensor([-3.0, 0.5, 3.0, 1.0, 2.0]))

        def num_frames(self, n: int) -> int:
            return n // 800

        def forward(self, x):
            b, n = x.shape
            t = self.num_frames(n)
            rms = x[:, : t * 800].reshape(b, t, 800).pow(2).mean(-1, keepdim=True).sqrt()
            return TeacherOutput(scores=torch.sigmoid(20 * rms * self.w), embeddings=torch.cat([rms, -rms], -1))

    fill_cache([BenchEvalTeacher()], manifest, tmp_path / "cache", progress=False, chunk_seconds=1.0, device="cpu")
    return tmp_path / "cache"


BACKENDS_ORT = ("ort-fp32", "ort-int8", "ort-fp16")


def _settings(**overrides) -> BenchSettings:
    base = dict(models=(), n_labels=3, frontend=False, eval_clips=2, eval_seconds=1.5, calib_seconds=3.0,
                min_calib_windows=10, warmup_runs=2, timed_runs=10, teachers=(), engine_seconds=1.0, mic=False,
                subprocess_workers=False, backends=("torch", "ort-fp32", "ort-int8", "tensorrt"))
    return BenchSettings.for_mode(quick=True, **{**base, **overrides})


def test_bench_eval_writes_a_task_metric_and_the_accuracy_plot(tmp_path) -> None:
    from edgetag.training.evaluate import evaluate

    manifest = _dataset(tmp_path)
    ckpt = _checkpoint(tmp_path)
    cache = _teacher_cache(tmp_path, manifest)
    out = tmp_path / "report"
    run_bench(out, _settings(checkpoints=(str(ckpt),), eval_manifest=str(manifest), eval_split="test",
                             teacher_cache=str(cache), teacher_name="bench-eval-tiny",
                             teacher_label_columns=(("bell", 2), ("hum", 0), ("noise", 4))))
    for name in ("report.md", "report.json", *PLOTS):
        assert (out / name).stat().st_size > 0, name
    assert (out / PLOTS[0]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    data = json.loads((out / "report.json").read_text())
    info = data["models"]["students"][0]
    assert info["student"] == "mobilenet run-tiny"
    rows = {r["backend"]: r for r in info["rows"]}
    for key in ("torch", "ort-fp32", "ort-int8"):
        assert rows[key]["status"] == "ok", rows[key]["status"]
        tm = rows[key]["task_metric"]
        assert tm["primary"] == "map" and math.isfinite(tm["map"]) and 0.0 <= tm["map"] <= 1.0, (key, tm)
        assert tm["evaluated"] == 6 and tm["split"] == "test"
        assert "agreement_vs_fp32" in rows[key]  # kept, under its own name
    # the same numbers as `edgetag evaluate` on the checkpoint: one evaluator, whatever the backend
    ref = evaluate(ckpt, manifest, split="test").sections["labels"]
    assert rows["torch"]["task_metric"]["map"] == pytest.approx(ref["map"], abs=1e-6)
    assert rows["ort-fp32"]["task_metric"]["map"] == pytest.approx(ref["map"], abs=1e-3)
    assert rows["tensorrt"]["status"].startswith("not available")

    teacher = data["teacher_metric"]
    assert teacher["status"] == "ok" and math.isfinite(teacher["task_metric"]["map"])
    assert teacher["task_metric"]["evaluated"] == 6

    md = (out / "report.md").read_text()
    assert "mAP (test)" in md and "agreement vs fp32 (ROC-AUC)" in md and NO_EVAL not in md
    assert f"{rows['torch']['task_metric']['map']:.4g}" in md
    assert "Task metric of bench-eval-tiny@" in md and "![accuracy vs MACs](accuracy_vs_macs.png)" in md

    # --model: the exported files the run left under models/ (X.onnx + X.int8.onnx), scored as given
    onnx_path = out / "models" / "mobilenet.onnx"
    assert (out / "models" / "mobilenet.int8.onnx").is_file()
    out2 = tmp_path / "report-onnx"
    run_bench(out2, _settings(onnx_models=(str(onnx_path),), eval_manifest=str(manifest), backends=BACKENDS_ORT))
    rows2 = {r["backend"]: r for r in json.loads((out2 / "report.json").read_text())["models"]["students"][0]["rows"]}
    assert rows2["ort-fp16"]["status"].startswith("not available (no mobilenet.fp16.onnx")
    for key in ("ort-fp32", "ort-int8"):
        assert rows2[key]["task_metric"]["map"] == pytest.approx(rows[key]["task_metric"]["map"], abs=1e-6), key
    assert (out2 / PLOTS[0]).is_file()


def test_without_eval_the_metric_column_says_so_and_no_accuracy_plot(tmp_path) -> None:
    out = tmp_path / "report"
    out.mkdir()
    (out / PLOTS[0]).write_bytes(b"stale")  # from an earlier run: must not survive
    run_bench(out, _settings(models=("causal_cnn",), student_params={"causal_cnn": {"channels": 8, "layers": 2}},
                             backends=("ort-fp32",)))
    md = (out / "report.md").read_text()
    assert NO_EVAL in md and "accuracy_vs_macs.png: not plotted: no task metric" in md
    assert not (out / PLOTS[0]).exists() and (out / PLOTS[1]).is_file()
    row = json.loads((out / "report.json").read_text())["models"]["students"][0]["rows"][0]
    assert "task_metric" not in row and row["agreement_vs_fp32"]["roc_auc"] == pytest.approx(1.0)


def test_bad_eval_input_is_refused_before_measuring(tmp_path) -> None:
    manifest = _dataset(tmp_path)
    other = _checkpoint(tmp_path, labels=["dog", "cat", "car"], name="other.pt")
    with pytest.raises(ValueError, match="none of its labels"):
        run_bench(tmp_path / "r1", _settings(checkpoints=(str(other),), eval_manifest=str(manifest)))
    with pytest.raises(ValueError, match="no split 'nope'"):
        run_bench(tmp_path / "r2", _settings(checkpoints=(str(other),), eval_manifest=str(manifest), eval_split="nope"))
    with pytest.raises(ValueError, match="--eval scores trained students"):
        run_bench(tmp_path / "r4", _settings(models=("causal_cnn",), eval_manifest=str(manifest)))
    unlabelled = tmp_path / "unlabelled.csv"
    unlabelled.write_text("path,labels,split\nclip0.wav,,test\n")
    with pytest.raises(ValueError, match="has no labels"):
        run_bench(tmp_path / "r3", _settings(checkpoints=(str(other),), eval_manifest=str(unlabelled)))


def test_cli_parses_eval_flags_and_the_config_mapping(tmp_path) -> None:
    from edgetag.benchmarks.commands import parse_label_columns, teacher_mapping
    from edgetag.runtime.cli import build_parser

    args = build_parser().parse_args(["bench", "--eval", "m.csv", "--checkpoint", "a.pt", "--checkpoint", "b.pt",
                                      "--model", "x.onnx", "--teacher-cache", "c", "--teacher", "t",
                                      "--label-columns", "bell=2,hum=0"])
    assert args.eval_manifest == "m.csv" and args.checkpoint == ["a.pt", "b.pt"] and args.onnx_models == ["x.onnx"]
    assert teacher_mapping(args) == {"teacher_cache": "c", "teacher_name": "t",
                                     "teacher_label_columns": (("bell", 2), ("hum", 0))}
    with pytest.raises(ValueError, match="LABEL=COLUMN"):
        parse_label_columns("bell:2")
    recipe = Path(__file__).resolve().parents[1] / "training" / "recipes" / "instruments" / "base.toml"
    args = build_parser().parse_args(["bench", "--eval", "m.csv", "--config", str(recipe)])
    got = teacher_mapping(args)
    assert got["teacher_name"] == "musicnn-mtt" and got["teacher_label_columns"][0] == ("cello", 43)
