"""The model card: round trip, validation of contradictions, and the check against a graph."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from edgetag.runtime.frontend import FrontendConfig
from edgetag.runtime.model_card import METADATA_KEY, ModelCard, ModelCardError, StateTensor


def _card(**changes) -> ModelCard:
    base = dict(
        name="test-tagger",
        task="multi_label",
        labels=("guitar", "drums", "voice"),
        frontend=FrontendConfig.preset("default"),
        streaming_mode="stateful",
        window_frames=1,
        hop_frames=10,
        thresholds=(0.5, 0.5, 0.4),
        states=(StateTensor("conv0", (64, 2)), StateTensor("gru", (1, 32))),
        provenance={"teacher": "musicnn-mtt@abc", "config_hash": "deadbeef"},
        metrics={"roc_auc": 0.91},
        parameters=12345,
        macs_per_second=1.5e6,
    )
    base.update(changes)
    return ModelCard(**base)


def test_json_round_trip() -> None:
    card = _card()
    again = ModelCard.from_json(card.to_json())
    assert again == card
    assert again.output_level == "frame"
    assert again.decision_interval_s == pytest.approx(0.1)
    assert ModelCard.from_metadata({METADATA_KEY: card.to_json()}) == card
    timed = _card(min_durations_s=(1.0, 2.0))  # the events' minimum on/off durations survive the round trip
    assert ModelCard.from_json(timed.to_json()).min_durations_s == (1.0, 2.0)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"labels": ()}, "labels are empty"),
        ({"labels": ("a", "a", "b")}, "labels repeat"),
        ({"thresholds": (0.5,)}, "1 thresholds for 3 labels"),
        ({"thresholds": (0.5, 1.5, 0.5)}, r"\[0, 1\]"),
        ({"streaming_mode": "window", "window_frames": 100}, "window-mode model has no state"),
        ({"states": ()}, "must declare its state tensors"),
        ({"hop_frames": 0}, "must be >= 1"),
        ({"task": "regression"}, "task must be"),
        ({"format_version": 99}, "format_version 99 is not supported"),
        ({"min_durations_s": (1.0,)}, "min_durations_s must be"),
        ({"min_durations_s": (-1.0, 2.0)}, "min_durations_s must be"),
    ],
)
def test_contradictions_are_refused(changes: dict, message: str) -> None:
    with pytest.raises(ModelCardError, match=message):
        _card(**changes)


def test_missing_or_tampered_metadata() -> None:
    with pytest.raises(ModelCardError, match="not an edgetag model"):
        ModelCard.from_metadata({"producer": "someone"}, source="x.onnx")
    with pytest.raises(ModelCardError, match="not valid JSON"):
        ModelCard.from_metadata({METADATA_KEY: "{broken"})
    data = json.loads(_card().to_json())
    del data["labels"]
    with pytest.raises(ModelCardError, match=r"missing field\(s\) \['labels'\]"):
        ModelCard.from_dict(data)
    data = json.loads(_card().to_json())
    data["frontend"]["fmax"] = 12000.0  # above Nyquist at 16 kHz
    with pytest.raises(ModelCardError, match="front end: .*Nyquist"):
        ModelCard.from_dict(data)
    data = json.loads(_card().to_json())
    del data["frontend"]["n_fft"]  # a partial front end would fall back on defaults: refused
    with pytest.raises(ModelCardError, match="missing field"):
        ModelCard.from_dict(data)


def test_check_graph() -> None:
    card = _card()
    inputs = {"features": ["batch", "frames", 64], "conv0_in": ["batch", 64, 2], "gru_in": ["batch", 1, 32]}
    outputs = {"logits": ["batch", "frames", 3], "conv0_out": ["batch", 64, 2], "gru_out": ["batch", 1, 32]}
    card.check_graph(inputs, outputs)
    with pytest.raises(ModelCardError, match="output 'logits' has shape"):
        card.check_graph(inputs, {**outputs, "logits": ["batch", "frames", 4]})
    with pytest.raises(ModelCardError, match=r"lacks input\(s\) \['gru_in'\]"):
        card.check_graph({k: v for k, v in inputs.items() if k != "gru_in"}, outputs)
    with pytest.raises(ModelCardError, match="input 'features' has shape"):
        card.check_graph({**inputs, "features": ["batch", "frames", 80]}, outputs)
    window = dataclasses.replace(card, streaming_mode="window", window_frames=100, states=())
    window.check_graph({"features": [None, 100, 64]}, {"logits": [None, 3]})
    with pytest.raises(ModelCardError, match="rank 3"):
        window.check_graph({"features": [None, 100, 64]}, {"logits": [None, 100, 3]})


def test_sigmoid_scores_of_extreme_logits_are_exact_enough_and_warn_nothing() -> None:
    """A far pitch bin's logit can be below -88.7, where float32 exp(-x) overflows: no warning, a
    normal float, and the same values as before elsewhere."""
    import warnings

    from edgetag.runtime.model_card import scores_from_logits

    logits = np.array([[-1e4, -200.0, -88.9, -20.0, 0.0, 3.0, 200.0]], np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for dtype in (np.float32, np.float64, np.float16):
            s = scores_from_logits(logits.astype(dtype), "multi_label")
            assert s.dtype == (np.float64 if dtype == np.float64 else np.float32) and s.shape == logits.shape
            assert np.all(np.isfinite(s)) and np.all(s[0, :3] < 1e-37) and np.all(s[0, :3] >= 0)
            reference = 1.0 / (1.0 + np.exp(-np.float64(logits[0, 3:])))
            np.testing.assert_allclose(s[0, 3:], reference, rtol=1e-6)
        assert np.all(scores_from_logits(logits, "multi_label")[0, :3] >= np.finfo(np.float32).tiny)  # not denormal
        one = scores_from_logits(np.float32(-300.0), "multi_label")
        assert one.shape == () and 0.0 < float(one) < 1e-37
