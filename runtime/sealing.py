"""Sealing a model file: its card, integrity digest and test vector, written in one atomic step.

The one way an edgetag ONNX file is written, by the exporter (`edgetag.export`)
and by enrolment on a device (`edgetag.runtime.enroll`): the card goes into the
graph's metadata, the digest (`edgetag.runtime.integrity`) covers the graph
without its metadata, and the test vector (`edgetag.runtime.verify`) holds
real frames with the reference scores on them. The sealed bytes are opened by
ONNX Runtime and checked against the card before anything is written; the file
is then replaced atomically and read back by `load_model`, as a user's load
would. Needs the ``onnx`` package for the `onnx.ModelProto` it is given.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
from edgetag.runtime.model_card import METADATA_KEY, ModelCard

#: protobuf's limit for one message: a single-file model must stay under it.
MAX_MODEL_BYTES = 2**31


class SealError(ValueError):
    """The model cannot be sealed: its graph does not load, or contradicts its card."""


def set_metadata(model: Any, key: str, value: str) -> None:
    """Write (or replace) one metadata entry of an `onnx.ModelProto`."""
    for i, prop in enumerate(list(model.metadata_props)):
        if prop.key == key:
            del model.metadata_props[i]
            break
    model.metadata_props.add(key=key, value=value)


def set_card(model: Any, card: ModelCard) -> None:
    """Write (or replace) the card in an `onnx.ModelProto`'s metadata."""
    set_metadata(model, METADATA_KEY, card.to_json())


def read_card(model: Any) -> ModelCard:
    """The card of an `onnx.ModelProto` (validated)."""
    return ModelCard.from_metadata({p.key: p.value for p in model.metadata_props}, source="ONNX model")


def seal(
    model: Any,
    card: ModelCard,
    path: str | Path,
    frames: np.ndarray | None = None,
    *,
    precision: str = "fp32",
    reference_scores: np.ndarray | None = None,
    metadata: dict[str, str] | None = None,
) -> ModelCard:
    """Write ``model`` to ``path`` with ``card``, its digest and (given ``frames``) a test vector; its card as loaded.

    ``frames`` [frames, n_bins] are the test vector's input; its reference scores are
    ``reference_scores`` (the fp32 model's, for an int8/fp16 file) or, None, this file's own.
    ``metadata``: further entries beside the card (outside the digest, like the card).
    Raises `SealError` when the sealed graph does not load or contradicts the card; nothing
    is written then.
    """
    import onnxruntime as ort

    from edgetag.runtime.atomic import atomic_write_bytes
    from edgetag.runtime.integrity import model_digest
    from edgetag.runtime.model import OnnxModel, load_model, session_options
    from edgetag.runtime.verify import make_test_vector

    for key, value in (metadata or {}).items():
        set_metadata(model, key, value)
    set_card(model, dataclasses.replace(card, integrity={}, test_vector={}))
    card = dataclasses.replace(card, integrity={"sha256": model_digest(model.SerializeToString())}, test_vector={})
    set_card(model, card)
    data = model.SerializeToString()
    if len(data) >= MAX_MODEL_BYTES:
        raise SealError(f"model is {len(data)} bytes: over protobuf's 2 GiB single-file limit")
    try:
        session = ort.InferenceSession(data, sess_options=session_options(1, quiet=True),
                                       providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime's own exception types: the graph is at fault
        raise SealError(f"the graph does not load in ONNX Runtime ({exc}); {path} not written") from None
    try:
        card.check_graph({i.name: list(i.shape) for i in session.get_inputs()},
                         {o.name: list(o.shape) for o in session.get_outputs()})
    except ValueError as exc:
        raise SealError(f"{exc}; {path} not written") from None
    import onnx

    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        raise SealError(f"the graph is not valid ONNX ({exc}); {path} not written") from None
    if frames is not None:
        vector = make_test_vector(OnnxModel.from_session(session, card), frames, precision, reference_scores)
        card = dataclasses.replace(card, test_vector=vector)
        set_card(model, card)
        data = model.SerializeToString()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, data)  # a reader never sees half a model
    return load_model(path, threads=1).card  # read back: digest, card and graph checked as any load does
