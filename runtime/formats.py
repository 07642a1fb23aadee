"""The one table of model file formats and of the backends that run them.

Everything that names a format or a backend reads it here: the runtime's
loader and ``--backend`` choices, the exporter's output names, the built-in
models' file names and the benchmark's rows. Adding a format is one row in
`FORMATS` and the function its ``export_step`` names.

Two things are called TensorRT and are kept apart: the ``tensorrt``
*backend* is ONNX Runtime's TensorRT execution provider running an ``.onnx``
file; the ``trt-fp16`` / ``trt-int8`` *formats* are native TensorRT engines
(``.engine``) that ``edgetag export --tensorrt`` builds for TensorRT's own
runtime, which edgetag's runtime does not load.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Format:
    """A kind of model file."""

    key: str
    label: str
    suffix: str
    """File name ending: the fp32 file ``X.onnx`` has siblings ``X`` + suffix (see `sibling`)."""
    precision: str
    runtime: str
    """What runs it: ``onnxruntime``, ``tensorrt`` (its own runtime) or ``torch``."""
    export_step: str
    """The function that writes it (``module:function``); empty when training writes it."""
    needs: str
    """What must be installed to run it."""
    other_suffixes: tuple[str, ...] = ()
    """Further file endings read as this format."""

    @property
    def suffixes(self) -> tuple[str, ...]:
        return (self.suffix, *self.other_suffixes)


@dataclass(frozen=True)
class Backend:
    """A way the runtime runs a model."""

    key: str
    label: str
    provider: str
    """ONNX Runtime execution provider; empty for a backend a plug-in provides (``torch``)."""
    needs: str


FORMATS: dict[str, Format] = {f.key: f for f in (
    Format("fp32", "ONNX fp32", ".onnx", "fp32", "onnxruntime",
           "edgetag.export.onnx_export:export_onnx", "edgetag[runtime]"),
    Format("int8", "ONNX int8 (static QDQ, 7-bit weights)", ".int8.onnx", "int8", "onnxruntime",
           "edgetag.export.quantize:quantize_int8", "edgetag[runtime]"),
    Format("fp16", "ONNX fp16 weights (float32 I/O)", ".fp16.onnx", "fp16", "onnxruntime",
           "edgetag.export.quantize:convert_fp16", "edgetag[runtime]"),
    Format("trt-fp16", "TensorRT engine fp16", ".fp16.engine", "fp16", "tensorrt",
           "edgetag.export.tensorrt:build_engine", "tensorrt (not exercised by edgetag's tests)"),
    Format("trt-int8", "TensorRT engine int8", ".int8.engine", "int8", "tensorrt",
           "edgetag.export.tensorrt:build_engine", "tensorrt (not exercised by edgetag's tests)"),
    Format("checkpoint", "PyTorch student checkpoint", ".pt", "fp32", "torch", "", "edgetag[train] (torch)",
           other_suffixes=(".pth", ".ckpt")),
)}

BACKENDS: dict[str, Backend] = {b.key: b for b in (
    Backend("cpu", "ONNX Runtime CPU", "CPUExecutionProvider", "edgetag[runtime]"),
    Backend("cuda", "ONNX Runtime CUDA", "CUDAExecutionProvider", "onnxruntime-gpu"),
    Backend("tensorrt", "ONNX Runtime's TensorRT execution provider (runs .onnx files)",
            "TensorrtExecutionProvider", "onnxruntime-gpu with TensorRT"),
    Backend("torch", "PyTorch eager, a student checkpoint (debugging before export)", "", "edgetag[train] (torch)"),
)}

#: ONNX Runtime providers by backend key: the backends `edgetag.runtime.model.load_model` runs.
PROVIDERS: dict[str, str] = {b.key: b.provider for b in BACKENDS.values() if b.provider}


def sibling(path: str | Path, key: str) -> Path:
    """The file of format ``key`` next to the fp32 file ``path``: ``X.onnx`` -> ``X.int8.onnx``, ``X.fp16.engine``..."""
    path = Path(path)
    stem = path.name[: -len(path.suffix)] if path.suffix else path.name
    return path.with_name(stem + FORMATS[key].suffix)
