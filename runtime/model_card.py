"""The model card: everything the runtime needs, stored inside the ONNX file.

An exported model carries one metadata entry, ``edgetag.model_card``, holding
this card as JSON: format version, task, labels, the full front-end config,
input/output names and layout, window and hop in frames, streaming mode and
state tensors, decision thresholds, provenance and measured metrics. The
runtime builds itself from the card and refuses a card that is missing,
incomplete or contradicts itself or the graph, saying what is wrong.

Tensor conventions (fixed by format version 1):

- input ``features``: float32 ``[batch, frames, n_bins]`` front-end frames;
- output ``logits``: float32 ``[batch, n_labels]`` (clip) or
  ``[batch, frames, n_labels]`` (frame); scores are ``sigmoid(logits)`` for
  multi-label tasks and ``softmax(logits)`` for multi-class ones;
- stateful models: for each state ``s`` an input ``s_in`` and an output
  ``s_out`` of shape ``[batch, *s.shape]``, fed back on the next call;
- optional output ``embedding``: float32 ``[batch, size]`` (clip) or
  ``[batch, frames, size]`` (frame), the features the final classifier reads,
  present when the card's ``embedding`` record says so (its size and layer).
"""

from __future__ import annotations

import json
import unicodedata
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from edgetag.runtime.frontend import FrontendConfig, FrontendConfigError

METADATA_KEY = "edgetag.model_card"
FORMAT_VERSION = 1
#: Sizes past which a card is taken as corrupt or hostile rather than allocated: 100,000
#: frames is over 15 minutes at the fastest frame rate a preset has; a state of 2^24 floats is 64 MB.
MAX_FRAMES = 100_000
MAX_LABELS = 100_000
MAX_STATE_ELEMENTS = 1 << 24
INPUT_NAME = "features"
OUTPUT_NAME = "logits"
EMBEDDING_NAME = "embedding"
#: An embedding wider than this is a corrupt card, not a student.
MAX_EMBEDDING_SIZE = 1 << 16

Task = Literal["multi_label", "multi_class"]
StreamingMode = Literal["window", "stateful"]


def scores_from_logits(logits: np.ndarray, task: Task) -> np.ndarray:
    """Logits -> scores over the last axis: sigmoid (multi-label) or softmax (multi-class).

    The one place edgetag turns logits into scores (runtime, evaluation, export gates).
    float64 logits stay float64 (metrics that rank scores); anything else is computed in float32.
    """
    logits = np.asarray(logits)
    if logits.dtype != np.float64:
        logits = logits.astype(np.float32, copy=False)
    if task == "multi_label":  # 1 / (1 + exp(-x)), in one new buffer (a stream calls this per decision)
        scores = np.negative(logits)
        if scores.ndim == 0:  # one logit: an array too
            scores = np.array(scores)
        # exp overflows (and warns) past 88.7 in float32; exp(87) makes the score 1.6e-38, still a normal float
        np.minimum(scores, 87.0 if scores.dtype == np.float32 else 708.0, out=scores)
        np.exp(scores, out=scores)
        scores += 1.0
        return np.reciprocal(scores, out=scores)
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


class ModelCardError(ValueError):
    """A model whose card is missing, malformed or contradictory."""


@dataclass(frozen=True)
class StateTensor:
    """A streaming state: fed as ``{name}_in``, returned as ``{name}_out``, shape without batch."""

    name: str
    shape: tuple[int, ...]

    @property
    def input_name(self) -> str:
        return f"{self.name}_in"

    @property
    def output_name(self) -> str:
        return f"{self.name}_out"


def control_characters(text: str) -> str:
    """The control characters in ``text`` (C0, DEL, C1: ESC starts terminal escape codes), as escapes; "" if none."""
    found = dict.fromkeys(c for c in text if unicodedata.category(c) == "Cc")
    return ", ".join(ascii(c)[1:-1] for c in found)


def printable(text: str) -> str:
    """``text`` with its control characters escaped (``\\x1b``), safe to print to a terminal."""
    return "".join(ascii(c)[1:-1] if unicodedata.category(c) == "Cc" else c for c in text)


@dataclass(frozen=True)
class ModelCard:
    """What an edgetag model is and how to run it (see the module docstring)."""

    name: str
    task: Task
    labels: tuple[str, ...]
    frontend: FrontendConfig
    streaming_mode: StreamingMode
    window_frames: int
    """Window mode: the window, frames per run. Stateful mode: frames per call (usually 1); code
    that means the latter reads `frames_per_call`. The file keeps one key for both."""
    hop_frames: int
    """Frames between decisions."""
    thresholds: tuple[float, ...]
    """Per-label decision threshold on the score (sigmoid/softmax output)."""
    states: tuple[StateTensor, ...] = ()
    provenance: dict[str, Any] = field(default_factory=dict)
    """Teacher(s), data, training config hash, creation time: free-form, JSON-able."""
    metrics: dict[str, float] = field(default_factory=dict)
    """Measured metrics, by name (e.g. ``roc_auc``, ``raw_pitch_accuracy``)."""
    parameters: int = 0
    macs_per_second: float = 0.0
    integrity: dict[str, Any] = field(default_factory=dict)
    """``{"sha256": ...}``: digest of the file without its card (`edgetag.runtime.integrity`); empty for
    files exported before edgetag recorded it."""
    test_vector: dict[str, Any] = field(default_factory=dict)
    """A few frames of real features, the fp32 model's scores on them, a tolerance for this file's
    precision and where it was verified (`edgetag.runtime.verify`); empty when not recorded."""
    level_gate_dbfs: float | None = None
    """Below this RMS level (dB re full scale) of a decision's audio the runtime reports silence;
    None: the runtime's default (`edgetag.runtime.pipeline.DEFAULT_LEVEL_GATE_DBFS`)."""
    min_durations_s: tuple[float, float] | None = None
    """``(on, off)``: how long (s) the hysteresis must hold a tag on before its onset and off before its
    offset (`edgetag.runtime.postprocess.Hysteresis`; ``--min-on`` / ``--min-off``); None: 0, 0 (none)."""
    embedding: dict[str, Any] = field(default_factory=dict)
    """``{"size": D, "layer": ...}``: the graph's ``embedding`` output (what the final classifier reads;
    `EMBEDDING_NAME`); empty for files without one."""
    input_gain: dict[str, Any] = field(default_factory=dict)
    """``{"target_db", "window_frames", "max_boost_db", "state", "what"}``: the graph raises quiet input before
    its network reads it (`edgetag.export.input_gain`), carrying recent levels in the named state; empty for
    files without it."""
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        self.validate()

    @property
    def output_level(self) -> Literal["clip", "frame"]:
        """Window models give one score vector per run; stateful ones one per frame."""
        return "clip" if self.streaming_mode == "window" else "frame"

    @property
    def n_labels(self) -> int:
        return len(self.labels)

    @property
    def frames_per_call(self) -> int:
        """Frames one model call takes: the window (window mode), the chunk of new frames (stateful mode)."""
        return self.window_frames

    @property
    def decision_interval_s(self) -> float:
        """Seconds between decisions."""
        return self.hop_frames / self.frontend.frame_rate

    def validate(self) -> None:
        """Raise `ModelCardError` naming the first contradiction found."""

        def fail(message: str) -> None:
            raise ModelCardError(f"invalid model card: {message}")

        if self.format_version != FORMAT_VERSION:
            fail(f"format_version {self.format_version} is not supported (this edgetag reads {FORMAT_VERSION})")
        if self.task not in ("multi_label", "multi_class"):
            fail(f"task must be multi_label or multi_class, got {self.task!r}")
        if not self.labels:
            fail("labels are empty")
        if any(not isinstance(label, str) or not label for label in self.labels):
            fail("every label must be a non-empty string")
        # labels and the name reach terminals (info, the live view, csv): an escape sequence in
        # them would be run by the terminal, so a card carrying one is refused
        for what, text in [("name", self.name), *((f"label {i}", label) for i, label in enumerate(self.labels))]:
            bad = control_characters(text) if isinstance(text, str) else ""
            if bad:
                fail(f"{what} {ascii(text)} contains control characters ({bad}: e.g. terminal escape codes); "
                     "re-export the model with a plain-text name and labels")
        if len(set(self.labels)) != len(self.labels):
            dupes = sorted({label for label in self.labels if self.labels.count(label) > 1})
            fail(f"labels repeat: {dupes}")
        if len(self.thresholds) != len(self.labels):
            fail(f"{len(self.thresholds)} thresholds for {len(self.labels)} labels")
        if any(not 0.0 <= t <= 1.0 for t in self.thresholds):
            fail("thresholds must lie in [0, 1] (they apply to scores)")
        if not isinstance(self.frontend, FrontendConfig):
            fail("frontend must be a FrontendConfig")
        if self.streaming_mode not in ("window", "stateful"):
            fail(f"streaming_mode must be window or stateful, got {self.streaming_mode!r}")
        if len(self.labels) > MAX_LABELS:
            fail(f"{len(self.labels)} labels is more than the {MAX_LABELS} any model of this format has")
        if self.window_frames < 1 or self.hop_frames < 1:
            fail(f"window_frames ({self.window_frames}) and hop_frames ({self.hop_frames}) must be >= 1")
        if self.window_frames > MAX_FRAMES or self.hop_frames > MAX_FRAMES:
            fail(f"window_frames ({self.window_frames}) and hop_frames ({self.hop_frames}) must be at most "
                 f"{MAX_FRAMES:,} (a larger value is a corrupt card, not a model)")
        if self.streaming_mode == "window" and self.states:
            fail("a window-mode model has no state tensors")
        if self.streaming_mode == "stateful":
            if not self.states:
                fail("a stateful model must declare its state tensors")
            names = [s.name for s in self.states]
            if len(set(names)) != len(names):
                fail(f"state names repeat: {names}")
            for state in self.states:
                if not state.name or any(not isinstance(d, int) or d < 0 for d in state.shape):
                    fail(f"state {state.name!r} has an invalid shape {state.shape}")
                elements = 1
                for d in state.shape:
                    elements *= d
                if elements > MAX_STATE_ELEMENTS:
                    fail(f"state {state.name!r} of shape {list(state.shape)} has {elements:,} elements, more than "
                         f"{MAX_STATE_ELEMENTS:,} (a corrupt card, not a model)")
        if self.parameters < 0 or self.macs_per_second < 0:
            fail("parameters and macs_per_second must be >= 0")
        digest = self.integrity.get("sha256") if isinstance(self.integrity, dict) else None
        if self.integrity and not (isinstance(digest, str) and len(digest) == 64
                                   and all(c in "0123456789abcdef" for c in digest)):
            fail("integrity.sha256 must be 64 lower-case hex digits")
        if not isinstance(self.test_vector, dict):
            fail("test_vector must be a JSON object")
        if self.test_vector:
            vector = self.test_vector
            for key in ("features", "reference_scores"):
                entry = vector.get(key)
                if not isinstance(entry, dict) or not {"dtype", "shape", "base64"} <= set(entry):
                    fail(f"test_vector.{key} must be an object with dtype, shape and base64")
            if not isinstance(vector.get("tolerance"), (int, float)) or not isinstance(vector.get("verified", {}), dict):
                fail("test_vector needs a numeric tolerance (and verified, if present, must be an object)")
        gate = self.level_gate_dbfs
        if gate is not None and (isinstance(gate, bool) or not isinstance(gate, (int, float)) or not -200.0 <= gate <= 0.0):
            fail(f"level_gate_dbfs must be a number from -200 to 0 dBFS, got {gate!r}")
        durations = self.min_durations_s
        if durations is not None and not (
                isinstance(durations, (list, tuple)) and len(durations) == 2
                and all(isinstance(d, (int, float)) and not isinstance(d, bool) and 0.0 <= d <= 60.0 for d in durations)):
            fail(f"min_durations_s must be [on, off], two numbers of seconds from 0 to 60, got {durations!r}")
        if not isinstance(self.embedding, dict):
            fail("embedding must be a JSON object")
        if self.embedding:
            size = self.embedding.get("size")
            if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= MAX_EMBEDDING_SIZE:
                fail(f"embedding.size must be a whole number from 1 to {MAX_EMBEDDING_SIZE:,}, got {size!r}")

        if not isinstance(self.input_gain, dict):
            fail("input_gain must be a JSON object")
        if self.input_gain:
            gain = self.input_gain
            numbers = [gain.get(k) for k in ("target_db", "max_boost_db")]
            window = gain.get("window_frames")
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) for v in numbers):
                fail(f"input_gain needs finite numbers target_db and max_boost_db, got {numbers}")
            if isinstance(window, bool) or not isinstance(window, int) or not 2 <= window <= MAX_FRAMES:
                fail(f"input_gain.window_frames must be a whole number from 2 to {MAX_FRAMES:,}, got {window!r}")
            state = next((s for s in self.states if s.name == gain.get("state")), None)
            if state is None or tuple(state.shape) != (1, window - 1):
                fail(f"input_gain names state {gain.get('state')!r}, which must be a state of shape [1, {window - 1}]")

    def check_graph(self, inputs: dict[str, list[Any]], outputs: dict[str, list[Any]]) -> None:
        """Check the card against a graph's input/output names and shapes.

        Shapes come from ONNX Runtime (``session.get_inputs()``): a symbolic
        dimension is a string or None and matches anything.
        """

        def fail(message: str) -> None:
            raise ModelCardError(f"model card and graph disagree: {message}")

        def same(actual: list[Any], expected: tuple[int, ...], what: str) -> None:
            if len(actual) != len(expected):
                fail(f"{what} has rank {len(actual)}, the card implies {len(expected)} ({list(expected)})")
            for have, want in zip(actual, expected):
                if isinstance(have, int) and want >= 0 and have != want:
                    fail(f"{what} has shape {actual}, the card implies {list(expected)}")

        # window models run on exactly window_frames frames: a graph with another fixed count contradicts the card
        frames = self.window_frames if self.streaming_mode == "window" else -1
        expected_inputs = {INPUT_NAME: (-1, frames, self.frontend.n_bins)}
        output_shape = (-1, self.n_labels) if self.output_level == "clip" else (-1, -1, self.n_labels)
        expected_outputs = {OUTPUT_NAME: output_shape}
        if self.embedding:
            expected_outputs[EMBEDDING_NAME] = (*output_shape[:-1], int(self.embedding["size"]))
        for state in self.states:
            expected_inputs[state.input_name] = (-1, *state.shape)
            expected_outputs[state.output_name] = (-1, *state.shape)
        for kind, actual_map, expected_map in (
            ("input", inputs, expected_inputs),
            ("output", outputs, expected_outputs),
        ):
            missing = sorted(set(expected_map) - set(actual_map))
            extra = sorted(set(actual_map) - set(expected_map))
            if missing:
                fail(f"graph lacks {kind}(s) {missing} (it has {sorted(actual_map)})")
            if extra:
                fail(f"graph has {kind}(s) {extra} that the card does not describe")
            for name, shape in expected_map.items():
                same(list(actual_map[name]), shape, f"{kind} '{name}'")

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": self.format_version,
            "name": self.name,
            "task": self.task,
            "labels": list(self.labels),
            "frontend": self.frontend.to_dict(),
            "streaming_mode": self.streaming_mode,
            "window_frames": self.window_frames,
            "hop_frames": self.hop_frames,
            "thresholds": list(self.thresholds),
            "states": [{"name": s.name, "shape": list(s.shape)} for s in self.states],
            "provenance": self.provenance,
            "metrics": self.metrics,
            "parameters": self.parameters,
            "macs_per_second": self.macs_per_second,
            **({"integrity": self.integrity} if self.integrity else {}),
            **({"test_vector": self.test_vector} if self.test_vector else {}),
            **({"embedding": self.embedding} if self.embedding else {}),
            **({"input_gain": self.input_gain} if self.input_gain else {}),
            **({"level_gate_dbfs": self.level_gate_dbfs} if self.level_gate_dbfs is not None else {}),
            **({"min_durations_s": list(self.min_durations_s)} if self.min_durations_s is not None else {}),
        }

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=True)

    @classmethod
    def from_dict(cls, data: Any) -> ModelCard:
        if not isinstance(data, dict):
            raise ModelCardError(f"invalid model card: expected a JSON object, got {type(data).__name__}")
        required = {
            "format_version", "name", "task", "labels", "frontend", "streaming_mode",
            "window_frames", "hop_frames", "thresholds",
        }
        optional = {"states", "provenance", "metrics", "parameters", "macs_per_second", "integrity", "test_vector",
                    "embedding", "level_gate_dbfs", "min_durations_s", "input_gain"}
        missing = sorted(required - set(data))
        if missing:
            raise ModelCardError(f"invalid model card: missing field(s) {missing}")
        unknown = sorted(set(data) - required - optional)
        if unknown:
            raise ModelCardError(f"invalid model card: unknown field(s) {unknown}")
        try:
            frontend = FrontendConfig.from_dict(data["frontend"])
        except FrontendConfigError as exc:
            raise ModelCardError(f"invalid model card: front end: {exc}") from None
        try:
            return cls(
                format_version=int(data["format_version"]),
                name=str(data["name"]),
                task=data["task"],
                labels=tuple(data["labels"]),
                frontend=frontend,
                streaming_mode=data["streaming_mode"],
                window_frames=int(data["window_frames"]),
                hop_frames=int(data["hop_frames"]),
                thresholds=tuple(float(t) for t in data["thresholds"]),
                states=tuple(StateTensor(str(s["name"]), tuple(s["shape"])) for s in data.get("states", [])),
                provenance=dict(data.get("provenance", {})),
                metrics={str(k): float(v) for k, v in data.get("metrics", {}).items()},
                parameters=int(data.get("parameters", 0)),
                macs_per_second=float(data.get("macs_per_second", 0.0)),
                integrity=dict(data.get("integrity", {})),
                test_vector=dict(data.get("test_vector", {})),
                embedding=dict(data.get("embedding", {})),
                input_gain=dict(data.get("input_gain", {})),
                level_gate_dbfs=data.get("level_gate_dbfs"),
                min_durations_s=(tuple(data["min_durations_s"]) if isinstance(data.get("min_durations_s"), list)
                                 else data.get("min_durations_s")),
            )
        except (TypeError, KeyError, AttributeError, ValueError, OverflowError) as exc:
            if isinstance(exc, ModelCardError):
                raise
            raise ModelCardError(f"invalid model card: malformed field ({exc})") from None

    @classmethod
    def from_json(cls, text: str) -> ModelCard:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ModelCardError(f"invalid model card: not valid JSON ({exc})") from None
        return cls.from_dict(data)

    @classmethod
    def from_metadata(cls, metadata: dict[str, str], source: str = "model") -> ModelCard:
        """Read the card from an ONNX file's metadata map."""
        if METADATA_KEY not in metadata:
            raise ModelCardError(
                f"{source} is not an edgetag model: its ONNX metadata has no '{METADATA_KEY}' entry "
                "(export models with `edgetag export`)"
            )
        return cls.from_json(metadata[METADATA_KEY])
