"""The exporter's errors (shared by `edgetag.export.onnx_export`, `.model_file` and `.quantize`)."""

from __future__ import annotations


class ExportError(ValueError):
    """An export that cannot be produced or that failed a check."""


class ParityError(ExportError):
    """The exported graph does not compute what the PyTorch student computes."""
