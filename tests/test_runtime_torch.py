"""The PyTorch checkpoint backend (debugging): the engine streams a student checkpoint like an ONNX model."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from conftest import tone_signal  # noqa: E402
from edgetag.runtime.cli import main  # noqa: E402
from edgetag.runtime.engine import Engine, offline_decisions  # noqa: E402
from edgetag.runtime.frontend import FrontendConfig  # noqa: E402
from edgetag.runtime.model import load_any_model  # noqa: E402
from edgetag.training.checkpoint import StudentCheckpoint, save_checkpoint  # noqa: E402
from edgetag.training.students import build_student  # noqa: E402


def _save(path, kind, params, window_frames, hop_frames):
    torch.manual_seed(0)
    ckpt = StudentCheckpoint(
        student=build_student(kind, 64, 3, **params), kind=kind, params=params,
        frontend=FrontendConfig.preset("default"), task="multi_label", labels=["a", "b", "c"],
        thresholds=[0.5, 0.5, 0.5], window_frames=window_frames, hop_frames=hop_frames,
    )
    return save_checkpoint(ckpt, path)


@pytest.mark.parametrize("kind,params,window,hop", [
    ("causal_cnn", {"channels": 16, "layers": 2}, 1, 4),
    ("mobilenet", {"window_frames": 32, "width": 0.5, "embedding_dim": 32}, 32, 16),
])
def test_checkpoint_streams_like_offline(tmp_path, kind, params, window, hop) -> None:
    model = load_any_model(_save(tmp_path / f"{kind}.pt", kind, params, window, hop), threads=1)
    assert model.card.streaming_mode == ("stateful" if kind == "causal_cnn" else "window")
    x = tone_signal()[:24000]
    engine = Engine(model)
    streamed = [d for i in range(0, len(x), 1234) for d in engine.push(x[i : i + 1234])]
    offline = offline_decisions(model, x)
    assert len(streamed) == len(offline) > 5
    assert [d.t for d in streamed] == [d.t for d in offline]
    diff = np.abs(np.stack([d.scores for d in streamed]) - np.stack([d.scores for d in offline])).max()
    assert diff <= 1e-5


def test_tag_and_info_take_a_checkpoint(tmp_path, tone_wav, capsys) -> None:
    path = _save(tmp_path / "s.pt", "causal_cnn", {"channels": 16, "layers": 2}, 1, 10)
    assert main(["info", str(path)]) == 0
    assert "causal_cnn" in capsys.readouterr().out
    assert main(["tag", str(tone_wav), "--model", str(path)]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len([o for o in lines if "t" in o]) == (498 - 9 + 9) // 10 and "summary" in lines[-1]


@pytest.mark.parametrize("kind,params,window,hop", [
    ("crnn", {"channels": 16, "layers": 2, "hidden": 16}, 1, 5),
    ("mobilenet", {"window_frames": 32, "width": 0.25, "embedding_dim": 32}, 32, 16),
])
def test_onnx_and_torch_backends_agree(tmp_path, kind, params, window, hop) -> None:
    """The same student streamed through ONNX Runtime and through torch: scores within 1e-4."""
    pytest.importorskip("onnxscript")
    from edgetag.export.onnx_export import export_onnx
    from edgetag.runtime.model import load_model
    from edgetag.training.checkpoint import load_checkpoint

    path = _save(tmp_path / f"{kind}.pt", kind, params, window, hop)
    x = tone_signal()[:24000]
    export_onnx(load_checkpoint(path), tmp_path / f"{kind}.onnx", calibration_audio=[x])
    decisions = {}
    for name, model in (("onnx", load_model(tmp_path / f"{kind}.onnx", threads=1)),
                        ("torch", load_any_model(path, threads=1))):
        engine = Engine(model)
        decisions[name] = [d for i in range(0, len(x), 1000) for d in engine.push(x[i : i + 1000])]
    assert [d.t for d in decisions["onnx"]] == [d.t for d in decisions["torch"]] != []
    onnx_scores = np.stack([d.scores for d in decisions["onnx"]])
    torch_scores = np.stack([d.scores for d in decisions["torch"]])
    assert np.abs(onnx_scores - torch_scores).max() <= 1e-4


def test_torch_backend_names_the_files_it_runs(tone_wav, capsys) -> None:
    """`--backend torch` with an ONNX file: one line saying which files it runs (it said torch.load's
    many-line advice about weights_only)."""
    assert main(["tag", str(tone_wav), "--model", "music-tags", "--backend", "torch"]) == 1
    err = capsys.readouterr().err
    assert "backend 'torch' runs .pt" in err and "default backend cpu" in err and len(err.splitlines()) == 1, err
