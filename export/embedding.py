"""The ``embedding`` output: what a student's final classifier reads, exposed beside ``logits``.

Every edgetag student ends in one linear classifier over a feature vector
(`edgetag.training.students`): the window students' ``embedding`` layer
(Linear + Hardswish in `MobileNetStudent`, Linear + ReLU in `PlainCNNStudent`;
[batch, embedding_dim]), the causal CNN's last block
([batch, channels, frames], read by a 1x1 Conv), the CRNN's GRU output
([batch, frames, hidden], read by a Linear). `find_embedding` locates that
tensor in an exported graph without torch: it walks back from ``logits``
over layout and quantization nodes (Transpose, Identity, QuantizeLinear /
DequantizeLinear) to the classifier (Gemm, MatMul + Add, or a 1x1 Conv) and
takes its data input, stepping back over an int8 file's Q/DQ pair to the
float tensor the quantizer reads. `add_embedding_output` exposes it as the
graph output ``embedding`` in the layout of ``logits`` ([batch, size] or
[batch, frames, size]): the Transposes between classifier and ``logits`` are
replayed on it, and nothing else in the graph changes, so ``logits`` and
states stay bit-identical (`add_embedding_to_file` checks that).

Used by the exporter for every new student (`edgetag.export.onnx_export`) and
by ``edgetag export OLD.onnx -o NEW.onnx --add-embedding`` for files exported
before (the built-in models were brought up to date that way).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgetag.export.errors import ExportError
from edgetag.runtime.model_card import EMBEDDING_NAME, OUTPUT_NAME, ModelCard

#: Nodes between the classifier and ``logits`` that move or requantize values without computing.
_PASS_THROUGH = ("Transpose", "Identity", "QuantizeLinear", "DequantizeLinear")


@dataclass(frozen=True)
class EmbeddingSite:
    """Where a graph's embedding is: the tensor, its width, and the layout ops to replay on it."""

    tensor: str
    size: int
    classifier: str
    """The final classifier node's op type and name, e.g. ``Gemm 'node_linear_1'``."""
    producer: str
    """The node that computes ``tensor`` (op type and name)."""
    perms: tuple[tuple[int, ...], ...]
    """Transpose permutations between the classifier and ``logits``, in graph order."""

    def record(self) -> dict[str, Any]:
        """The card's ``embedding`` record."""
        return {
            "size": self.size,
            "layer": f"input of the final classifier ({self.classifier}): tensor '{self.tensor}' from {self.producer}",
        }


def _attribute(node: Any, name: str, default: Any) -> Any:
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _weight_shape(name: str, producers: dict[str, Any], inits: dict[str, Any]) -> list[int]:
    """Shape of a weight: an initializer, or one behind an int8 file's DequantizeLinear."""
    if name in inits:
        return list(inits[name].dims)
    node = producers.get(name)
    if node is not None and node.op_type == "DequantizeLinear" and node.input[0] in inits:
        return list(inits[node.input[0]].dims)
    raise ExportError(f"the classifier's weight '{name}' is not a constant: cannot tell the embedding's size")


def find_embedding(model: Any) -> EmbeddingSite:
    """The tensor the final classifier of ``model`` (an `onnx.ModelProto`) reads; `ExportError` if none is found."""
    graph = model.graph
    producers = {out: node for node in graph.node for out in node.output}
    inits = {t.name: t for t in graph.initializer}
    perms: list[tuple[int, ...]] = []

    def past_layout(node: Any) -> Any:
        """The first node up from ``node`` that computes (Transposes on the way recorded)."""
        while node is not None and node.op_type in _PASS_THROUGH:
            if node.op_type == "Transpose":
                perms.insert(0, tuple(int(p) for p in _attribute(node, "perm", [])))
            node = producers.get(node.input[0])
        return node

    node = past_layout(producers.get(OUTPUT_NAME))
    while node is not None and node.op_type == "Add" and any(i in inits for i in node.input):
        # a bias: MatMul + Add (a Linear over [batch, frames, D]), or a constant added after the classifier
        node = past_layout(next((producers[i] for i in node.input if i in producers), None))
    if node is None or node.op_type not in ("Gemm", "MatMul", "Conv"):
        found = "nothing" if node is None else f"{node.op_type} '{node.name}'"
        raise ExportError(f"no final classifier (Gemm, MatMul or 1x1 Conv) produces '{OUTPUT_NAME}' (found {found})")
    weight = _weight_shape(node.input[1], producers, inits)
    if node.op_type == "Gemm":
        if _attribute(node, "transA", 0):
            raise ExportError(f"classifier Gemm '{node.name}' transposes its input: not a student's classifier")
        size = weight[1] if _attribute(node, "transB", 0) else weight[0]
    elif node.op_type == "MatMul":
        size = weight[-2]
    else:
        if any(d != 1 for d in weight[2:]) or int(_attribute(node, "group", 1)) != 1:
            raise ExportError(f"classifier Conv '{node.name}' is not a 1x1 convolution: its input is no per-frame embedding")
        size = weight[1]
    tensor = node.input[0]
    source = producers.get(tensor)
    # int8 files: the classifier reads DequantizeLinear(QuantizeLinear(x)); x is the float embedding
    if source is not None and source.op_type == "DequantizeLinear":
        quant = producers.get(source.input[0])
        if quant is not None and quant.op_type == "QuantizeLinear":
            tensor, source = quant.input[0], producers.get(quant.input[0])
    producer = f"{source.op_type} '{source.name}'" if source is not None else "the graph input"
    return EmbeddingSite(tensor, int(size), f"{node.op_type} '{node.name}'", producer, tuple(perms))


def add_embedding_output(model: Any, card: ModelCard) -> ModelCard:
    """Expose ``model``'s embedding as the output ``embedding`` (in place); the card with its record.

    The output has the rank of ``logits`` with the last axis the embedding's
    size; a Transpose (or an Identity, to name it) is the only node added.
    """
    from onnx import TensorProto, helper

    graph = model.graph
    if any(o.name == EMBEDDING_NAME for o in graph.output):
        raise ExportError(f"the graph already has an '{EMBEDDING_NAME}' output")
    site = find_embedding(model)
    added = [f"{EMBEDDING_NAME}_layout_{i}" for i in range(len(site.perms) - 1)] + [EMBEDDING_NAME]
    renamed = _free_names(graph, added)  # an inner tensor of the student may already carry one of them
    site = dataclasses.replace(site, tensor=renamed.get(site.tensor, site.tensor))
    source = site.tensor
    for i, perm in enumerate(site.perms):
        target = EMBEDDING_NAME if i == len(site.perms) - 1 else f"{EMBEDDING_NAME}_layout_{i}"
        graph.node.append(helper.make_node("Transpose", [source], [target], perm=list(perm), name=f"{target}_transpose"))
        source = target
    if not site.perms:
        graph.node.append(helper.make_node("Identity", [source], [EMBEDDING_NAME], name=f"{EMBEDDING_NAME}_identity"))
    logits = next(o for o in graph.output if o.name == OUTPUT_NAME)
    dims: list[Any] = [d.dim_param or d.dim_value for d in logits.type.tensor_type.shape.dim][:-1] + [site.size]
    graph.output.append(helper.make_tensor_value_info(EMBEDDING_NAME, TensorProto.FLOAT, dims))
    return dataclasses.replace(card, embedding=site.record())


def _free_names(graph: Any, names: list[str]) -> dict[str, str]:
    """Rename the graph's inner tensors called one of ``names`` (in place) so the names are free; returns
    {old: new}. Inner names are no part of the model's interface; an input or output so called is refused."""
    taken = {t for node in graph.node for t in (*node.input, *node.output)} | {t.name for t in graph.initializer}
    interface = {v.name for v in graph.input} | {v.name for v in graph.output}
    taken |= {v.name for v in graph.value_info} | interface
    renamed: dict[str, str] = {}
    for name in names:
        if name not in taken:
            continue
        if name in interface:
            raise ExportError(f"the graph has an input or output called '{name}', a name the embedding output "
                              "needs: rename it")
        new = next(f"{name}_inner_{i}" for i in range(len(taken) + 1) if f"{name}_inner_{i}" not in taken)
        taken.add(new)
        renamed[name] = new
    if renamed:
        _rename_tensors(graph, renamed)
    return renamed


def _rename_tensors(graph: Any, renamed: dict[str, str]) -> None:
    """Apply {old: new} to every tensor reference in ``graph`` and its subgraphs (which may read outer names)."""
    for node in graph.node:
        for field in (node.input, node.output):
            for i, name in enumerate(field):
                if name in renamed:
                    field[i] = renamed[name]
        for attr in node.attribute:
            for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                _rename_tensors(sub, renamed)
    for items in (graph.initializer, graph.value_info):
        for item in items:
            if item.name in renamed:
                item.name = renamed[item.name]


def _outputs_on(data: bytes, card: ModelCard, frames: np.ndarray) -> list[np.ndarray]:
    """Every output but ``embedding`` of the serialized model on ``frames`` (a test vector's), in card order."""
    from edgetag.export.model_file import _ort_session
    from edgetag.runtime.model import OnnxModel

    model = OnnxModel.from_session(_ort_session(data), card)
    if card.streaming_mode == "window":
        windows = np.stack([frames[i : i + card.window_frames]
                            for i in range(0, len(frames) - card.window_frames + 1, card.hop_frames)])
        logits, states = model.run(np.ascontiguousarray(windows))
    else:
        logits, states = model.run(np.ascontiguousarray(frames[None]))
    return [logits, *states]


def add_embedding_to_file(source: str | Path, path: str | Path) -> ModelCard:
    """Copy an edgetag ONNX file (fp32, int8 or fp16) to ``path`` with an ``embedding`` output, resealed.

    The card keeps everything but its digest, its test vector's record of this
    CPU and the new ``embedding`` record; the test vector keeps its frames and
    reference scores (an int8 file's still come from its fp32 model). Refuses
    to write unless every original output is bit-identical on the test vector
    frames. ``path`` may be ``source`` (the write is atomic).
    """
    from edgetag.export.model_file import read_sealed_file
    from edgetag.runtime.sealing import seal

    sealed = read_sealed_file(source)
    original, model, card, frames = sealed.data, sealed.model, sealed.card, sealed.frames
    if card.embedding:
        raise ExportError(f"{source} already has an '{EMBEDDING_NAME}' output ({card.embedding['size']} wide)")
    card = add_embedding_output(model, card)
    before = _outputs_on(original, dataclasses.replace(card, embedding={}), frames)
    after = _outputs_on(model.SerializeToString(), card, frames)
    changed = [i for i, (a, b) in enumerate(zip(before, after)) if not np.array_equal(a, b)]
    if changed:
        raise ExportError(f"adding the embedding output changed output(s) {changed} of {source}: not written")
    # the recorded reference scores are kept (the export CPU's); this CPU's difference to them is recorded
    return seal(model, card, path, frames, precision=sealed.precision, reference_scores=sealed.reference)
