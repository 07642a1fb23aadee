"""Loading an exported model: an ONNX Runtime session built from the model card.

`load_model` opens the file, reads and validates its card (see
`edgetag.runtime.model_card`), checks the card against the graph's inputs and
outputs, and returns an `OnnxModel` that runs feature windows (window mode)
or feature chunks with carried state (stateful mode). Needs onnxruntime,
never torch.

`load_any_model` also opens files of other kinds through loaders that other
installed parts plug in (entry-point group `LOADER_GROUP`): edgetag's
training part adds PyTorch student checkpoints (``.pt``), for debugging a
student before export. The runtime imports none of them by name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np

from edgetag.runtime.formats import FORMATS, PROVIDERS
from edgetag.runtime.integrity import IntegrityError, check_digest, read_metadata
from edgetag.runtime.model_card import (
    EMBEDDING_NAME,
    INPUT_NAME,
    OUTPUT_NAME,
    ModelCard,
    ModelCardError,
    scores_from_logits,
)


class ModelLoadError(ValueError):
    """A model file that cannot be opened or run."""


def _import_ort() -> Any:
    try:
        import onnxruntime
    except ImportError as exc:
        raise ImportError("running models needs onnxruntime: pip install 'edgetag[runtime]'") from exc
    return onnxruntime


def available_backends() -> list[str]:
    """Backends (keys of `PROVIDERS`) this onnxruntime build can use."""
    have = set(_import_ort().get_available_providers())
    return [name for name, provider in PROVIDERS.items() if provider in have]


#: ONNX Runtime intra-op threads for streaming (``tag``, ``listen``, the Python API): one decision's model
#: call is 0.2-2 ms of work, less than waking a pool of threads costs; more threads spin and take the
#: cores that the audio callback, the front end and the output need (on a 2-core machine with ORT's
#: default, the tuner fell 4 s behind; with 1 thread it answered in 20 ms).
STREAM_THREADS = 1


def session_options(threads: int | None = None, *, quiet: bool = False) -> Any:
    """The ONNX Runtime session options edgetag runs its models with (the runtime, export gates, timings)."""
    options = _import_ort().SessionOptions()
    # u8s8 int8 kernels on x86 without VNNI add pairs of products in saturating int16; this lets
    # ONNX Runtime switch such layers to exact u8u8 ones when a file's weights need it. edgetag's
    # own int8 exports keep weights in 7 bits so that no CPU saturates (see edgetag.export.quantize).
    options.add_session_config_entry("session.x64quantprecision", "1")
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    if quiet:
        options.log_severity_level = 3  # no warnings about declared-vs-actual shapes
    return options


class OnnxModel:
    """An edgetag model ready to run: its card and an ONNX Runtime session."""

    def __init__(self, path: str | Path, *, backend: str = "cpu", threads: int | None = None) -> None:
        ort = _import_ort()
        self.path = Path(path)
        _check_model_file(self.path)
        if backend not in PROVIDERS:
            raise ModelLoadError(f"unknown backend {backend!r}; known backends: {', '.join(PROVIDERS)}")
        if backend not in available_backends():
            raise ModelLoadError(
                f"backend {backend!r} is not available in this onnxruntime build "
                f"(available: {', '.join(available_backends())})"
            )
        data = self.path.read_bytes()
        # The card is read from the bytes and checked before ONNX Runtime parses the graph: a
        # damaged file is refused with a message, not run or crashed on.
        try:
            metadata = read_metadata(data)
        except IntegrityError as exc:
            raise ModelLoadError(f"cannot load {self.path}: not a valid ONNX model ({exc})") from None
        self.card = ModelCard.from_metadata(metadata, source=str(self.path))
        if self.card.integrity:
            check_digest(data, self.card.integrity["sha256"], str(self.path))
        if threads is not None and threads < 1:
            raise ModelLoadError(f"threads must be >= 1, got {threads}")
        options = session_options(threads)
        providers = [PROVIDERS[backend]] + (["CPUExecutionProvider"] if backend != "cpu" else [])
        try:
            self.session = ort.InferenceSession(data, sess_options=options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own exception types for bad files
            raise ModelLoadError(f"cannot load {self.path}: not a valid ONNX model ({exc})") from None
        self.backend = backend
        try:
            self.card.check_graph(
                {i.name: list(i.shape) for i in self.session.get_inputs()},
                {o.name: list(o.shape) for o in self.session.get_outputs()},
            )
        except ModelCardError as exc:
            raise ModelCardError(f"{self.path}: {exc}") from None
        self._set_names()

    @classmethod
    def from_session(cls, session: Any, card: ModelCard, *, backend: str = "cpu") -> OnnxModel:
        """A model around a session its caller opened (the export's checks), with ``card`` already read."""
        model = cls.__new__(cls)
        model.path, model.card, model.session, model.backend = None, card, session, backend
        model._set_names()
        return model

    def _set_names(self) -> None:
        """The graph's output and state input names, looked up once (`run` feeds them on every call)."""
        self._output_names = [OUTPUT_NAME] + [s.output_name for s in self.card.states]
        self._state_inputs = [s.input_name for s in self.card.states]

    def initial_state(self, batch: int = 1) -> list[np.ndarray]:
        """Zero state tensors (stateful models; empty for window models)."""
        return [np.zeros((batch, *s.shape), np.float32) for s in self.card.states]

    def run(
        self, features: np.ndarray, states: list[np.ndarray] | None = None
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        """Logits for ``features`` float32 [batch, frames, n_bins], and the new state.

        Window models take ``window_frames`` frames and return [batch, n_labels];
        stateful models take any number of new frames plus the state from the
        previous call (`initial_state` at the start) and return
        [batch, frames, n_labels].
        """
        outputs = self.session.run(self._output_names, self._feeds(features, states))
        return outputs[0], outputs[1:]

    @property
    def has_embedding(self) -> bool:
        """Whether the graph has an ``embedding`` output (the card's ``embedding`` record says its size)."""
        return bool(self.card.embedding)

    def embed(
        self, features: np.ndarray, states: list[np.ndarray] | None = None
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        """The embedding for ``features`` (as `run` takes them), and the new state.

        [batch, size] (window models) or [batch, frames, size] (stateful
        models): what the final classifier reads. Only this call fetches the
        ``embedding`` output, so `run` costs what it cost before it existed.
        """
        if not self.card.embedding:
            raise ModelLoadError(
                f"{self.path or self.card.name} has no embedding output (exported before edgetag added one): "
                "re-export it, or add one with `edgetag export OLD.onnx -o NEW.onnx --add-embedding`"
            )
        names = [EMBEDDING_NAME] + self._output_names[1:]
        outputs = self.session.run(names, self._feeds(features, states))
        return outputs[0], outputs[1:]

    def _feeds(self, features: np.ndarray, states: list[np.ndarray] | None) -> dict[str, np.ndarray]:
        """The session's inputs for ``features`` (and ``states``), checked against the card."""
        card = self.card
        if features.dtype != np.float32 or features.ndim != 3 or features.shape[2] != card.frontend.n_bins:
            raise ValueError(
                f"features must be float32 [batch, frames, {card.frontend.n_bins}], "
                f"got {features.dtype} {list(features.shape)}"
            )
        feeds = {INPUT_NAME: features}
        if card.streaming_mode == "window":
            if features.shape[1] != card.window_frames:
                raise ValueError(f"a window model takes {card.window_frames} frames, got {features.shape[1]}")
        else:
            if states is None:
                states = self.initial_state(features.shape[0])
            if len(states) != len(self._state_inputs):
                raise ValueError(f"expected {len(self._state_inputs)} state tensors, got {len(states)}")
            feeds.update(zip(self._state_inputs, states))
        return feeds

    def scores(self, logits: np.ndarray) -> np.ndarray:
        """Logits -> scores as the card's task says (see `scores_from_logits`)."""
        return scores_from_logits(logits, self.card.task)

    def bound_calls(self, frames: int) -> BoundCalls | None:
        """A stream's calls of ``frames`` frames each with buffers bound once (`BoundCalls`); None where
        that does not apply (a window model, or a backend other than the CPU's)."""
        if self.card.streaming_mode != "stateful" or self.backend != "cpu":
            return None
        return BoundCalls(self, frames)


class BoundCalls:
    """One stream's calls of a stateful `OnnxModel`, ``frames`` frames each (batch 1), through ONNX Runtime's I/O
    binding: the features, logits and two sets of state buffers are bound once, as ONNX Runtime values over
    numpy arrays (``OrtValue.ortvalue_from_numpy`` shares their memory), and each call swaps the state sets (its
    outputs are the next call's inputs). For a model of about 100 k parameters, `OnnxModel.run` spends about a
    quarter of a call turning numpy arrays into ONNX Runtime values and back; this does not. The results are
    `OnnxModel.run`'s, bit for bit: the same session on the same inputs. The card's tensors are float32."""

    def __init__(self, model: OnnxModel, frames: int) -> None:
        import onnxruntime as ort

        if frames < 1:
            raise ValueError(f"frames must be >= 1, got {frames}")
        card = model.card
        self.model, self.frames = model, frames
        self.features = np.zeros((1, frames, card.frontend.n_bins), np.float32)
        self.logits = np.zeros((1, frames, len(card.labels)), np.float32)
        self._states = [model.initial_state(1), model.initial_state(1)]  # inputs of even calls, of odd calls
        self._parity = 0
        value = ort.OrtValue.ortvalue_from_numpy
        self._values = [value(a) for a in (self.features, self.logits, *self._states[0], *self._states[1])]
        features, logits = self._values[:2]
        n = len(model._state_inputs)
        states = (self._values[2:2 + n], self._values[2 + n:])
        self._bindings: list[Any] = []
        for parity in (0, 1):
            binding = model.session.io_binding()
            binding.bind_ortvalue_input(INPUT_NAME, features)
            for name, state in zip(model._state_inputs, states[parity]):
                binding.bind_ortvalue_input(name, state)
            for name, out in zip(model._output_names, [logits, *states[1 - parity]]):
                binding.bind_ortvalue_output(name, out)
            self._bindings.append(binding)

    @property
    def states(self) -> list[np.ndarray]:
        """The state the next call starts from (the buffers themselves: read, don't keep)."""
        return self._states[self._parity]

    def set_states(self, states: list[np.ndarray]) -> None:
        """Start the next call from ``states`` (copied in), e.g. after a shorter call through `OnnxModel.run`."""
        for buffer, state in zip(self.states, states, strict=True):
            buffer[...] = state

    def reset(self) -> None:
        """Back to the model's initial (zero) state."""
        for buffer in self.states:
            buffer.fill(0.0)

    def run(self, chunk: np.ndarray) -> np.ndarray:
        """Logits [1, frames, n_labels] of the stream's next ``chunk`` (float32 [1, frames, n_bins]): a buffer the
        next call overwrites (turn it into scores before calling again)."""
        if chunk.dtype != np.float32 or chunk.shape != self.features.shape:
            raise ValueError(f"a bound call takes float32 features {list(self.features.shape)}, got {chunk.dtype} "
                             f"{list(chunk.shape)}")
        self.features[...] = chunk
        self.model.session.run_with_iobinding(self._bindings[self._parity])
        self._parity ^= 1
        return self.logits


def _check_model_file(path: Path) -> None:
    """A model path that is not a file: `FileNotFoundError` saying whether it is missing or a folder."""
    if path.is_dir():
        raise FileNotFoundError(f"{path} is a folder, not a model file: give the .onnx file in it "
                                "(edgetag models lists the built-in names)")
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")


def load_model(path: str | Path, *, backend: str = "cpu", threads: int | None = None) -> OnnxModel:
    """Open an edgetag ONNX model; refuses a file whose card is missing or contradictory."""
    return OnnxModel(path, backend=backend, threads=threads)


#: Entry-point group of model loaders for files that are not ONNX (see `ModelLoader`).
LOADER_GROUP = "edgetag.model_loaders"


class ModelLoader(Protocol):
    """A plug-in that opens another kind of model file as an object with `OnnxModel`'s interface."""

    backend: str
    """The ``--backend`` name that selects it whatever the file's suffix (e.g. ``torch``)."""
    suffixes: tuple[str, ...]
    """File suffixes it opens (lower case, with the dot)."""

    @staticmethod
    def load(path: str | Path, threads: int | None = None) -> Any: ...


def model_loaders() -> list[ModelLoader]:
    """The installed loader plug-ins (imported only when a file or backend needs one)."""
    from importlib.metadata import entry_points

    return [ep.load() for ep in sorted(entry_points(group=LOADER_GROUP), key=lambda ep: ep.name)]


def load_any_model(path: str | Path, *, backend: str = "cpu", threads: int | None = None) -> Any:
    """An ONNX model (`load_model`), or a file or backend an installed loader plug-in claims.

    ``.onnx`` files with an ONNX Runtime backend never consult plug-ins; a student
    checkpoint (``.pt``) or ``backend="torch"`` needs edgetag's training part (torch).
    """
    suffix = Path(path).suffix.lower()
    if suffix == FORMATS["fp32"].suffix and backend in PROVIDERS:  # every ONNX format ends in .onnx
        return load_model(path, backend=backend, threads=threads)
    for loader in model_loaders():
        if backend == loader.backend or (backend in PROVIDERS and suffix in loader.suffixes):
            _check_model_file(Path(path))
            if backend == loader.backend and suffix not in loader.suffixes:
                raise ModelLoadError(f"backend {backend!r} runs {' or '.join(loader.suffixes)} files, not {path} "
                                     "(an .onnx model runs on the default backend cpu, or cuda / tensorrt)")
            return loader.load(path, threads=threads)
    if backend not in PROVIDERS:
        raise ModelLoadError(f"unknown backend {backend!r}; known backends: {', '.join(PROVIDERS)}"
                             " (torch needs edgetag's training part: pip install 'edgetag[train]')")
    if suffix in FORMATS["checkpoint"].suffixes:
        raise ImportError(f"{path} is a PyTorch checkpoint: running it needs edgetag's training part "
                          "(pip install 'edgetag[train]'; an install that has it but no model_loaders entry "
                          "point is out of date: reinstall it), or export it to ONNX first")
    return load_model(path, backend=backend, threads=threads)
