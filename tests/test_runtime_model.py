"""Loading ONNX models from their card: window and stateful runs, refusals with clear messages."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from edgetag.runtime.frontend import FrontendConfig  # noqa: E402
from edgetag.runtime.model import ModelLoadError, load_model  # noqa: E402
from edgetag.runtime.model_card import METADATA_KEY, ModelCard, ModelCardError, StateTensor  # noqa: E402

N_BINS, LABELS = 64, ("a", "b", "c")
WEIGHTS = np.random.default_rng(0).standard_normal((N_BINS, len(LABELS))).astype(np.float32)


def _card(mode: str) -> ModelCard:
    return ModelCard(
        name=f"tiny-{mode}",
        task="multi_label",
        labels=LABELS,
        frontend=FrontendConfig.preset("default"),
        streaming_mode=mode,  # type: ignore[arg-type]
        window_frames=10 if mode == "window" else 1,
        hop_frames=5,
        thresholds=(0.5,) * 3,
        states=(StateTensor("count", (4,)),) if mode == "stateful" else (),
    )


def _write_model(path: Path, mode: str, card_json: str | None, n_labels: int = 3) -> Path:
    """A tiny real ONNX graph: window = mean over frames @ W; stateful = per-frame @ W, state + 1."""
    matrix = WEIGHTS if n_labels == len(LABELS) else np.ones((N_BINS, n_labels), np.float32)
    weights = numpy_helper.from_array(matrix, "W")
    features = helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", "frames", N_BINS])
    if mode == "window":
        nodes = [
            helper.make_node("ReduceMean", ["features"], ["pooled"], axes=[1], keepdims=0),
            helper.make_node("MatMul", ["pooled", "W"], ["logits"]),
        ]
        inputs = [features]
        outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", n_labels])]
        initializers = [weights]
    else:
        one = numpy_helper.from_array(np.ones(4, np.float32), "one")
        nodes = [
            helper.make_node("MatMul", ["features", "W"], ["logits"]),
            helper.make_node("Add", ["count_in", "one"], ["count_out"]),
        ]
        inputs = [features, helper.make_tensor_value_info("count_in", TensorProto.FLOAT, ["batch", 4])]
        outputs = [
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", "frames", n_labels]),
            helper.make_tensor_value_info("count_out", TensorProto.FLOAT, ["batch", 4]),
        ]
        initializers = [weights, one]
    graph = helper.make_graph(nodes, "tiny", inputs, outputs, initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if card_json is not None:
        helper.set_model_props(model, {METADATA_KEY: card_json})
    onnx.save(model, str(path))
    return path


def test_window_model_runs(tmp_path: Path) -> None:
    model = load_model(_write_model(tmp_path / "w.onnx", "window", _card("window").to_json()), threads=1)
    features = np.random.default_rng(1).standard_normal((2, 10, N_BINS)).astype(np.float32)
    logits, states = model.run(features)
    np.testing.assert_allclose(logits, features.mean(axis=1) @ WEIGHTS, rtol=1e-5, atol=1e-5)
    assert states == []
    scores = model.scores(logits)
    assert np.all((scores > 0) & (scores < 1))
    with pytest.raises(ValueError, match="takes 10 frames"):
        model.run(features[:, :5])
    with pytest.raises(ValueError, match="features must be float32"):
        model.run(features.astype(np.float64))


def test_stateful_model_carries_state(tmp_path: Path) -> None:
    model = load_model(_write_model(tmp_path / "s.onnx", "stateful", _card("stateful").to_json()))
    state = model.initial_state()
    for _ in range(3):
        logits, state = model.run(np.zeros((1, 2, N_BINS), np.float32), state)
    assert logits.shape == (1, 2, 3)
    np.testing.assert_array_equal(state[0], np.full((1, 4), 3.0, np.float32))


def test_refusals_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="model file not found"):
        load_model(tmp_path / "nothing.onnx")
    with pytest.raises(FileNotFoundError, match="is a folder, not a model file"):
        load_model(tmp_path)
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\x08\x07 this is not a protobuf")
    with pytest.raises(ModelLoadError, match="not a valid ONNX model"):
        load_model(corrupt)
    with pytest.raises(ModelCardError, match="not an edgetag model"):
        load_model(_write_model(tmp_path / "bare.onnx", "window", None))
    tampered = _card("window").to_json().replace('"n_bins": 64', '"n_bins": 80')
    with pytest.raises(ModelCardError, match="input 'features' has shape"):
        load_model(_write_model(tmp_path / "tampered.onnx", "window", tampered))
    with pytest.raises(ModelCardError, match="output 'logits' has shape"):
        load_model(_write_model(tmp_path / "labels.onnx", "window", _card("window").to_json(), n_labels=4))
    with pytest.raises(ModelCardError, match=r"lacks input\(s\) \['count_in'\]"):
        load_model(_write_model(tmp_path / "mode.onnx", "window", _card("stateful").to_json()))
    with pytest.raises(ModelLoadError, match="unknown backend"):
        load_model(_write_model(tmp_path / "ok.onnx", "window", _card("window").to_json()), backend="gpu")
