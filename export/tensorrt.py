"""TensorRT engines from exported ONNX files (optional; NOT exercised by this project's tests).

TensorRT cannot be installed on the machines this project is developed and
tested on (the registry's ``tensorrt`` packages are placeholders that
download from elsewhere), so this module is written against TensorRT's
documented Python API (8.6 / 10.x) and has never run here. Nothing else in
edgetag imports it except ``edgetag export --tensorrt``; when ``tensorrt``
is not importable `build_engine` raises `TensorRTUnavailable` (an
ImportError) with a clear message, and every other path works without it.

What `build_engine` does when TensorRT is present:

- parses the ONNX file with ``trt.OnnxParser`` into an explicit-batch network;
- adds one optimisation profile covering every dynamic input: batch
  ``min 1 / opt 1 / max max_batch``; frames (stateful models) ``min 1 / opt
  hop_frames / max max_frames``; window models use their fixed window;
- ``precision="fp16"`` sets ``BuilderFlag.FP16``; ``precision="int8"`` sets
  ``INT8`` (+ FP16 fallback). A QDQ model (from `export.quantize`) carries its
  own scales (explicit quantization); otherwise an entropy calibrator feeds
  real feature windows and reads/writes a calibration cache beside the engine
  (``ENGINE.calib``), so a rebuild reuses it;
- serialises the engine to ``ENGINE`` and writes the model card, with the
  engine's precision and profile, beside it as ``ENGINE`` with suffix
  ``.card.json``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from edgetag.runtime.model_card import INPUT_NAME, ModelCard


class TensorRTUnavailable(ImportError):
    """The ``tensorrt`` Python package is not importable."""


def _import_tensorrt() -> Any:
    try:
        import tensorrt as trt  # type: ignore[import-not-found]
    except Exception as exc:  # noqa: BLE001 - ImportError, or a placeholder package failing on import
        raise TensorRTUnavailable(
            "TensorRT engines need the `tensorrt` Python package (NVIDIA TensorRT 8.6+ with a CUDA GPU); "
            f"it is not importable here ({type(exc).__name__}: {exc}). The ONNX files work without it "
            "(e.g. onnxruntime's CUDA or TensorRT execution provider)."
        ) from None
    return trt


def profile_shapes(
    card: ModelCard, max_batch: int = 8, max_frames: int = 1000
) -> dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]:
    """(min, opt, max) shape of every input, as an optimisation profile takes them."""
    n_bins = card.frontend.n_bins
    if card.streaming_mode == "window":
        w = card.window_frames
        shapes = {INPUT_NAME: ((1, w, n_bins), (1, w, n_bins), (max_batch, w, n_bins))}
    else:
        opt = max(1, min(card.frames_per_call, max_frames))  # the calls a stream makes
        shapes = {INPUT_NAME: ((1, 1, n_bins), (1, opt, n_bins), (max_batch, max_frames, n_bins))}
    for state in card.states:
        shapes[state.input_name] = ((1, *state.shape), (1, *state.shape), (max_batch, *state.shape))
    return shapes


def _calibrator(trt: Any, card: ModelCard, features: Sequence[np.ndarray], cache: Path) -> Any:
    """An IInt8EntropyCalibrator2 over real feature windows (device buffers via torch.cuda)."""
    import torch
    from edgetag.runtime.clip import call_inputs

    batches = [x for f in features for x in call_inputs(card, f)]

    class Calibrator(trt.IInt8EntropyCalibrator2):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.index = 0
            self.buffers: dict[str, Any] = {}

        def get_batch_size(self) -> int:
            return 1

        def get_batch(self, names: list[str]) -> list[int] | None:
            if self.index >= len(batches):
                return None
            feats = batches[self.index]
            self.index += 1
            pointers = []
            for name in names:
                if name == INPUT_NAME:
                    array = feats
                else:  # states: calibrate from the zero state
                    state = next(s for s in card.states if s.input_name == name)
                    array = np.zeros((1, *state.shape), np.float32)
                tensor = torch.from_numpy(np.ascontiguousarray(array)).cuda()
                self.buffers[name] = tensor
                pointers.append(int(tensor.data_ptr()))
            return pointers

        def read_calibration_cache(self) -> bytes | None:
            return cache.read_bytes() if cache.is_file() else None

        def write_calibration_cache(self, data: bytes) -> None:
            cache.write_bytes(bytes(data))

    return Calibrator()


def build_engine(
    onnx_path: str | Path,
    engine_path: str | Path,
    *,
    precision: str = "fp16",
    calibration_features: Sequence[np.ndarray] | None = None,
    max_batch: int = 8,
    max_frames: int = 1000,
    workspace_bytes: int = 1 << 30,
) -> Path:
    """Build and save a TensorRT engine for an edgetag ONNX file (see the module docstring)."""
    if precision not in ("fp32", "fp16", "int8"):
        raise ValueError(f"precision must be fp32, fp16 or int8, got {precision!r}")
    trt = _import_tensorrt()
    import onnx
    from edgetag.runtime.sealing import read_card

    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    model = onnx.load(str(onnx_path))
    card = read_card(model)
    is_qdq = any(n.op_type == "QuantizeLinear" for n in model.graph.node)

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    explicit = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH) if hasattr(
        trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH"
    ) else 0
    network = builder.create_network(explicit)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {onnx_path}: {errors}")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    profile = builder.create_optimization_profile()
    shapes = profile_shapes(card, max_batch, max_frames)
    for name, (lo, opt, hi) in shapes.items():
        profile.set_shape(name, lo, opt, hi)
    config.add_optimization_profile(profile)
    if precision in ("fp16", "int8"):
        if not builder.platform_has_fast_fp16:
            raise RuntimeError("this GPU has no fast fp16: build with precision='fp32'")
        config.set_flag(trt.BuilderFlag.FP16)
    if precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
        if not is_qdq:  # implicit quantization: calibrate on real features, cache the scales
            if not calibration_features:
                raise ValueError("an int8 engine from an fp32 ONNX file needs calibration features")
            config.int8_calibrator = _calibrator(trt, card, calibration_features, engine_path.with_suffix(".calib"))
            config.set_calibration_profile(profile)

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT failed to build an engine from {onnx_path}")
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    engine_path.write_bytes(bytes(serialized))
    card_data = card.to_dict()
    card_data["provenance"] = {
        **card.provenance,
        "tensorrt": {
            "version": getattr(trt, "__version__", "?"),
            "precision": precision,
            "explicit_quantization": is_qdq,
            "profile": {k: [list(s) for s in v] for k, v in shapes.items()},
            "source_onnx": onnx_path.name,
            # the ONNX file's digest, not the engine's: the engine is checked by TensorRT's own deserializer
            "source_onnx_sha256": card.integrity.get("sha256"),
        },
    }
    card_data.pop("integrity", None)
    card_data.pop("test_vector", None)  # ran through ONNX Runtime; the engine is not run by edgetag's runtime
    engine_path.with_suffix(".card.json").write_text(json.dumps(card_data, indent=2, sort_keys=True))
    return engine_path
