"""Enrolment's ONNX graph: the head that scores labels by cosine to stored prototypes.

`attach_head` adds it to a student's graph (`strip_head` takes an earlier one off for
re-enrolment); the examples are stored in the graph, a sample of their decision embeddings
beside the card, so `stored_enrollment` recovers them. Needs the ``onnx`` package.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgetag.runtime.enroll_calibration import ClipEmbedding, Enrollment, EnrollmentError, unit_rows
from edgetag.runtime.model_card import EMBEDDING_NAME, OUTPUT_NAME, ModelCard

#: Prefix of every node and initializer the head adds (so re-enrolment can take it off again).
HEAD_PREFIX = "enroll/"
EXAMPLES_INIT = HEAD_PREFIX + "examples"
ASSIGN_INIT = HEAD_PREFIX + "assignment"
SOURCE_LOGITS = HEAD_PREFIX + "source_logits"
#: Metadata entry (beside the card; outside the digest, it changes no output) with a sample of each stored
#: example's decision embeddings, so that re-enrolment calibrates on decisions as the first enrolment did.
DECISIONS_KEY = "edgetag.enrollment_decisions"
#: Decisions kept per example in that entry (evenly spaced), stored as float16.
STORED_DECISIONS = 32


def import_onnx() -> Any:
    try:
        import onnx
    except ImportError:
        raise ImportError("writing an enrolled model edits its ONNX graph and needs the onnx package: "
                          "pip install onnx") from None
    return onnx


def _prune(graph: Any) -> None:
    """Drop nodes and initializers no graph output depends on (the source's classifier, when its labels go)."""
    nodes = list(graph.node)
    producer = {out: i for i, node in enumerate(nodes) for out in node.output}
    needed: set[str] = set()
    keep: set[int] = set()
    stack = [o.name for o in graph.output]
    while stack:
        name = stack.pop()
        if name in needed:
            continue
        needed.add(name)
        i = producer.get(name)
        if i is None or i in keep:
            continue
        keep.add(i)
        stack.extend(x for x in nodes[i].input if x)
        for attr in nodes[i].attribute:  # subgraphs (If, Loop) read outer names
            for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                stack.extend(x for n in sub.node for x in n.input if x)
    _replace(graph.node, [nodes[i] for i in sorted(keep)])
    _replace(graph.initializer, [t for t in graph.initializer if t.name in needed])
    _replace(graph.value_info, [v for v in graph.value_info if v.name in needed])


def _replace(repeated: Any, items: list[Any]) -> None:
    """Set a repeated protobuf field to ``items`` (copied first: they may be its own elements)."""
    copies = [type(x)() for x in items]
    for copy, x in zip(copies, items):
        copy.CopyFrom(x)
    del repeated[:]
    repeated.extend(copies)


def strip_head(model: Any) -> bool:
    """Take an enrolled model's head off (in place): ``logits`` is the source's again, when it was kept.

    Returns whether the source's logits were kept in the graph.
    """
    graph = model.graph
    _replace(graph.node, [n for n in graph.node if not n.name.startswith(HEAD_PREFIX)])
    _replace(graph.initializer, [t for t in graph.initializer if not t.name.startswith(HEAD_PREFIX)])
    kept = False
    for node in graph.node:
        for i, out in enumerate(node.output):
            if out == SOURCE_LOGITS:
                node.output[i] = OUTPUT_NAME
                kept = True
    if not kept:  # the head made `logits`; with the source's labels gone there is no `logits` to restore
        _replace(graph.output, [o for o in graph.output if o.name != OUTPUT_NAME])
    return kept


def attach_head(model: Any, enrollment: Enrollment, scale: float, center: float, kept_labels: int = 0) -> None:
    """Add the head to a student graph (in place): ``logits`` = the enrolled labels' logits, then the
    ``kept_labels`` logits of the source model (0: its classifier is pruned away)."""
    onnx = import_onnx()
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    examples = np.stack([c.vector for clips in enrollment.examples for c in clips]).astype(np.float32)
    assignment = np.zeros((len(enrollment.labels), len(examples)), np.float32)
    start = 0
    for k, n in enumerate(enrollment.counts()):
        assignment[k, start : start + n] = 1.0 / n
        start += n
    p = HEAD_PREFIX
    consts = {
        EXAMPLES_INIT: examples,
        ASSIGN_INIT: assignment,
        p + "axis_last": np.array([-1], np.int64),
        p + "axis_1": np.array([1], np.int64),
        p + "eps": np.array(1e-12, np.float32),
        p + "center": np.array(center, np.float32),
        p + "scale": np.array(scale, np.float32),
    }
    graph.initializer.extend(numpy_helper.from_array(v, k) for k, v in consts.items())
    keep_source = kept_labels > 0
    if keep_source:  # the source's logits become an inner tensor, concatenated after the new labels
        for node in graph.node:
            for i, out in enumerate(node.output):
                if out == OUTPUT_NAME:
                    node.output[i] = SOURCE_LOGITS
    outputs = [o for o in graph.output if o.name != OUTPUT_NAME]
    rank = len(next(o for o in graph.output if o.name == EMBEDDING_NAME).type.tensor_type.shape.dim)
    head = OUTPUT_NAME if not keep_source else p + "logits"

    def node(op: str, inputs: list[str], output: str, **attrs: Any) -> str:
        name = f"{p}{op}_{output.removeprefix(p)}"  # every head node carries the prefix: strip_head finds them
        graph.node.append(helper.make_node(op, inputs, [output], name=name, **attrs))
        return output

    # prototypes: mean of each label's examples, unit length, as a [D, K] matrix (constants: folded at load)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 18)

    def l2(x: str, axis: str, out: str) -> str:  # ReduceL2 takes its axes as an input from opset 18 on
        if opset >= 18:
            return node("ReduceL2", [x, axis], out, keepdims=1)
        return node("ReduceL2", [x], out, keepdims=1, axes=[int(consts[axis][0])])

    protos = node("MatMul", [ASSIGN_INIT, EXAMPLES_INIT], p + "prototypes")
    norms = l2(protos, p + "axis_1", p + "prototype_norms")
    unit = node("Div", [protos, node("Max", [norms, p + "eps"], p + "prototype_norms_safe")], p + "unit_prototypes")
    columns = node("Transpose", [unit], p + "prototype_columns", perm=[1, 0])
    # the decision's embedding, unit length, against every prototype
    e_norm = l2(EMBEDDING_NAME, p + "axis_last", p + "embedding_norm")
    e_unit = node("Div", [EMBEDDING_NAME, node("Max", [e_norm, p + "eps"], p + "embedding_norm_safe")],
                  p + "unit_embedding")
    cosine = node("MatMul", [e_unit, columns], p + "cosine")
    node("Mul", [node("Sub", [cosine, p + "center"], p + "centred"), p + "scale"], head)
    if keep_source:
        node("Concat", [head, SOURCE_LOGITS], OUTPUT_NAME, axis=rank - 1)
    n_out = len(enrollment.labels) + kept_labels
    dims = [d.dim_param or d.dim_value for d in next(o for o in graph.output if o.name == EMBEDDING_NAME)
            .type.tensor_type.shape.dim][:-1] + [n_out]
    _replace(graph.output, [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, dims), *outputs])
    _prune(graph)
    onnx.checker.check_model(model)


def stored_enrollment(model: Any, card: ModelCard) -> Enrollment:
    """The labels and example embeddings an enrolled model holds (from its graph and card)."""
    from onnx import numpy_helper

    inits = {t.name: t for t in model.graph.initializer}
    record = card.provenance.get("enrollment", {})
    # the card's labels keep their order (the record's JSON keys are sorted): enrolled ones first, then kept ones
    labels = list(card.labels[: card.n_labels - len(record.get("kept_labels", []))])
    if sorted(labels) != sorted(record.get("labels", {})):
        raise EnrollmentError(f"{card.name}: its labels and its enrollment record disagree")
    if EXAMPLES_INIT not in inits or ASSIGN_INIT not in inits or not labels:
        raise EnrollmentError(f"{card.name}: its enrollment record or stored examples are missing")
    examples = numpy_helper.to_array(inits[EXAMPLES_INIT])
    assignment = numpy_helper.to_array(inits[ASSIGN_INIT])
    if assignment.shape != (len(labels), len(examples)):
        raise EnrollmentError(f"{card.name}: stored examples {list(examples.shape)} do not match its "
                              f"{len(labels)} enrolled labels")
    decisions = _read_decisions({p.key: p.value for p in model.metadata_props}, len(examples))
    groups = []
    for k, label in enumerate(labels):
        files = record["labels"][label].get("files", [])
        rows = np.flatnonzero(assignment[k] > 0)
        # without the stored decisions (an entry removed by hand), a clip's pooled vector stands for them
        groups.append([ClipEmbedding(files[i] if i < len(files) else f"{label}#{i}", examples[r],
                                     decisions[r] if decisions else examples[r][None])
                       for i, r in enumerate(rows)])
    return Enrollment(labels, groups)


def decisions_entry(enrollment: Enrollment) -> str:
    """The `DECISIONS_KEY` metadata value: up to `STORED_DECISIONS` decisions per example, float16, base64."""
    import base64
    import json

    rows, parts = [], []
    for clips in enrollment.examples:
        for clip in clips:
            pick = np.unique(np.linspace(0, len(clip.decisions) - 1, min(len(clip.decisions), STORED_DECISIONS))
                             .round().astype(int))
            rows.append(len(pick))
            parts.append(clip.decisions[pick])
    data = np.concatenate(parts).astype("<f2")
    return json.dumps({"rows": rows, "size": int(data.shape[1]), "dtype": "float16",
                       "base64": base64.b64encode(data.tobytes()).decode("ascii")})


def _read_decisions(metadata: dict[str, str], n_examples: int) -> list[np.ndarray]:
    """The stored decisions per example (in example order); [] when absent or not matching the examples."""
    import base64
    import binascii
    import json

    try:
        entry = json.loads(metadata[DECISIONS_KEY])
        rows = [int(r) for r in entry["rows"]]
        data = np.frombuffer(base64.b64decode(entry["base64"], validate=True), "<f2").astype(np.float32)
        data = data.reshape(sum(rows), int(entry["size"]))
    except (KeyError, ValueError, TypeError, binascii.Error):
        return []
    if len(rows) != n_examples:
        return []
    return np.split(unit_rows(data), np.cumsum(rows)[:-1])
