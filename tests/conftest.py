"""Shared fixtures: tiny real ONNX tagging models (built with onnx.helper, no torch) and tone WAVs.

The models' logits are band energies of the `default` front end's log-mel
frames: label ``low`` fires on a tone below ~600 Hz, ``mid`` on ~600-2500 Hz,
``high`` above, and all stay low on silence. So a test can check that a
tone makes the right label fire at the right time.

- window model: ReduceMean over the window's frames, MatMul, Add bias.
- stateful model: a causal 2-tap average over frames (the previous frame is
  the state ``prev``, as a cached convolution context), MatMul, Add bias.
"""

from __future__ import annotations

import types
from pathlib import Path

import numpy as np
import pytest

LABELS = ("low", "mid", "high")
N_BINS = 64
BANDS = ((0, 16), (16, 36), (36, 64))  # mel bands of each label
SCALES = (1.0, 1.5, 4.0)
SILENCE = float(np.log(1e-6))  # the default preset's log floor
TONES = ((0.5, 1.5, 300.0), (2.0, 3.0, 1500.0), (3.5, 4.5, 5000.0))  # (start s, end s, Hz) in the test WAV
WAV_SECONDS = 5.0


def band_weights() -> tuple[np.ndarray, np.ndarray]:
    w = np.zeros((N_BINS, len(LABELS)), np.float32)
    b = np.zeros(len(LABELS), np.float32)
    for k, ((lo, hi), s) in enumerate(zip(BANDS, SCALES)):
        w[lo:hi, k] = s / (hi - lo)
        b[k] = -3.0 - s * SILENCE  # silence -> logit -3
    return w, b


def build_model(path: Path, mode: str = "window", *, window_frames: int | None = None, hop_frames: int = 5,
                card_json: str | None = "default", thresholds=(0.5, 0.5, 0.5)) -> Path:
    """Write a tiny tagging model; ``card_json="default"`` writes its proper card, None no card."""
    onnx = pytest.importorskip("onnx")
    from edgetag.runtime.frontend import FrontendConfig
    from edgetag.runtime.model_card import ModelCard, StateTensor
    from onnx import TensorProto, helper, numpy_helper

    if window_frames is None:
        window_frames = 20 if mode == "window" else 1
    w, b = band_weights()
    inits = [numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "B")]
    features = helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", "frames", N_BINS])
    if mode == "window":
        nodes = [
            helper.make_node("ReduceMean", ["features"], ["pooled"], axes=[1], keepdims=0),
            helper.make_node("MatMul", ["pooled", "W"], ["mm"]),
            helper.make_node("Add", ["mm", "B"], ["logits"]),
        ]
        inputs = [features]
        outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", len(LABELS)])]
        states = ()
    else:
        inits += [
            numpy_helper.from_array(np.array([1], np.int64), "ax1"),
            numpy_helper.from_array(np.array([0], np.int64), "zero"),
            numpy_helper.from_array(np.array([1], np.int64), "one"),
            numpy_helper.from_array(np.array([-1], np.int64), "minus1"),
            numpy_helper.from_array(np.array([np.iinfo(np.int64).max], np.int64), "big"),
            numpy_helper.from_array(np.array(-1, np.int64), "last"),
            numpy_helper.from_array(np.array(0.5, np.float32), "half"),
        ]
        nodes = [
            helper.make_node("Unsqueeze", ["prev_in", "ax1"], ["prev3"]),
            helper.make_node("Concat", ["prev3", "features"], ["cat"], axis=1),
            helper.make_node("Slice", ["cat", "one", "big", "ax1"], ["cur"]),
            helper.make_node("Slice", ["cat", "zero", "minus1", "ax1"], ["before"]),
            helper.make_node("Add", ["cur", "before"], ["pair"]),
            helper.make_node("Mul", ["pair", "half"], ["avg"]),
            helper.make_node("MatMul", ["avg", "W"], ["mm"]),
            helper.make_node("Add", ["mm", "B"], ["logits"]),
            helper.make_node("Gather", ["cat", "last"], ["prev_out"], axis=1),
        ]
        inputs = [features, helper.make_tensor_value_info("prev_in", TensorProto.FLOAT, ["batch", N_BINS])]
        outputs = [
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", "frames", len(LABELS)]),
            helper.make_tensor_value_info("prev_out", TensorProto.FLOAT, ["batch", N_BINS]),
        ]
        states = (StateTensor("prev", (N_BINS,)),)
    graph = helper.make_graph(nodes, f"tiny_{mode}", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if card_json == "default":
        card_json = ModelCard(
            name=f"tiny-bands-{mode}",
            task="multi_label",
            labels=LABELS,
            frontend=FrontendConfig.preset("default"),
            streaming_mode=mode,  # type: ignore[arg-type]
            window_frames=window_frames,
            hop_frames=hop_frames,
            thresholds=tuple(thresholds),
            states=states,
            provenance={"made_by": "tests/conftest.py", "teacher": "none (band energies)"},
            metrics={"toy_accuracy": 1.0},
            parameters=int(w.size + b.size),
            macs_per_second=float(w.size * 100 / hop_frames),
        ).to_json()
    if card_json is not None:
        helper.set_model_props(model, {"edgetag.model_card": card_json})
    onnx.save(model, str(path))
    return path


def load_script(path: Path, name: str) -> types.ModuleType:
    """Import a script that is not part of the package (a recipe's ``prepare.py``) as module ``name``."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tone_signal(rate: int = 16000, seconds: float = WAV_SECONDS, amplitude: float = 0.3) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    x = np.zeros_like(t)
    for start, end, hz in TONES:
        on = (t >= start) & (t < end)
        ramp = np.clip(np.minimum(t - start, end - t) / 0.005, 0, 1)  # 5 ms fades, no clicks
        x[on] = (amplitude * ramp * np.sin(2 * np.pi * hz * t))[on]
    return x.astype(np.float32)


@pytest.fixture(scope="module")
def virtual_mic():
    """A PulseAudio virtual microphone (tests/virtual_mic.py) for a test module, stopped after it.

    Where this machine cannot run one (no PulseAudio, no PortAudio), the test skips with the reason;
    with EDGETAG_REQUIRE_VIRTUAL_MIC=1 (CI, which installs them) that is a failure instead.
    """
    import os

    from virtual_mic import VirtualMic, VirtualMicUnavailable, missing_tools

    def unavailable(reason: str):
        if os.environ.get("EDGETAG_REQUIRE_VIRTUAL_MIC") == "1":
            pytest.fail(f"{reason}, and EDGETAG_REQUIRE_VIRTUAL_MIC=1 says the virtual-microphone tests must run")
        pytest.skip(reason)

    missing = missing_tools()
    if missing:
        unavailable(f"virtual microphone needs {', '.join(missing)} (apt-get install pulseaudio pulseaudio-utils "
                    "libasound2-plugins libportaudio2)")
    try:
        import sounddevice  # noqa: F401
    except (ImportError, OSError) as exc:
        unavailable(f"sounddevice/PortAudio unavailable: {exc}")
    try:
        mic = VirtualMic().start()
    except VirtualMicUnavailable as exc:
        unavailable(f"virtual microphone unavailable: {exc}")
    try:
        yield mic
    finally:
        mic.stop()


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def window_model(model_dir) -> Path:
    pytest.importorskip("onnxruntime")
    return build_model(model_dir / "window.onnx", "window")


@pytest.fixture(scope="session")
def stateful_model(model_dir) -> Path:
    pytest.importorskip("onnxruntime")
    return build_model(model_dir / "stateful.onnx", "stateful")


@pytest.fixture(scope="session")
def tone_wav(model_dir) -> Path:
    sf = pytest.importorskip("soundfile")
    path = model_dir / "tones.wav"
    sf.write(str(path), tone_signal(), 16000, subtype="PCM_16")
    return path
