"""Generic teachers: a TorchScript or ONNX file with a declared input contract.

A model a user brings as a file (``torchscript`` via :func:`torch.jit.load`,
``onnx`` via onnxruntime) knows nothing of edgetag's conventions, so the user
declares them (`Contract`):

* ``sample_rate``: the rate the model expects; callers resample before ``forward``.
* input: always a raw float32 waveform ``[batch, samples]`` (the only input kind
  supported; a model that wants features must include its front end).
* framing, one of two modes:

  - **windowed** (``window_seconds`` given): the teacher cuts each waveform into
    windows of ``window_seconds`` every ``hop_seconds`` (default: the window),
    calls the model on ``[n_windows, window_samples]`` and expects clip-level
    outputs ``[n_windows, n_labels]`` (rank 2). ``frame_rate = 1 / hop_seconds``;
    a trailing remainder shorter than a window is dropped.
  - **frame-level** (``frame_rate`` given, no window): the model is called on the
    whole ``[batch, samples]`` and must return ``[batch, frames, n_labels]``
    (rank 3). The number of frames is the model's business; if
    ``frame_length``/``frame_hop`` (samples) are declared, ``num_frames(n) =
    1 + (n - frame_length) // frame_hop`` and every output is checked against it.

* outputs: ``scores_output`` (index into a tuple/list output, key of a dict
  output, or ONNX output name/index; default 0) and optional
  ``embeddings_output`` (same addressing; ``[n, dim]`` in windowed mode,
  ``[batch, frames, dim]`` in frame-level mode).
* ``score_kind``: ``"logits"`` or ``"probabilities"`` (declared, not converted;
  probabilities are checked to lie in [0, 1]); ``task``: ``"multi_label"`` or
  ``"multi_class"``.
* labels: ``labels`` (a file, see `read_labels_file`, or a list of names) or
  ``n_labels`` (names ``class_0`` ..).

At construction the teacher runs the model once on silence (one window, or
``probe_seconds`` in frame-level mode) and checks the contract: output rank,
label count, embedding rank, batch size; a mismatch raises `ContractError`
naming what was declared and what came out. ``forward`` checks shapes again.

The identity (`Teacher.weights_hash`) is the SHA-256 of the model file, which
covers code as well as weights.

Notes: torch >= 2.10 marks TorchScript (``torch.jit.script/save/load``)
deprecated; loading an existing file still works and the teacher silences
that warning. To make an ONNX file from a torch module, ``torch.onnx.export(...,
dynamo=True, external_data=False)`` needs the ``onnxscript`` package; the
tests build their ONNX graph with ``onnx.helper`` instead.
"""

from __future__ import annotations

import csv
import hashlib
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from .base import Teacher, TeacherOutput, register_teacher

OutputRef = int | str


class ContractError(ValueError):
    """The model's outputs do not match the declared contract."""


def read_labels_file(path: str | Path) -> list[str]:
    """Label names from a file, one per score column, in column order.

    * ``.csv``: AudioSet's ``class_labels_indices.csv`` style. With a header
      row holding a ``display_name`` (or ``label``/``name``) column, that
      column; otherwise the last column of every row.
    * anything else: one label per non-empty line.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"labels file not found: {path}")
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".csv":
        rows = [row for row in csv.reader(text.splitlines()) if row]
        if not rows:
            raise ValueError(f"labels file {path} is empty")
        header = [c.strip().lower() for c in rows[0]]
        for column in ("display_name", "label", "name"):
            if column in header:
                index = header.index(column)
                return [row[index].strip() for row in rows[1:]]
        return [row[-1].strip() for row in rows]
    labels = [line.strip() for line in text.splitlines() if line.strip()]
    if not labels:
        raise ValueError(f"labels file {path} is empty")
    return labels


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class Contract:
    """What a user declares about a model file; see the module docstring."""

    sample_rate: int
    labels: tuple[str, ...]
    score_kind: Literal["logits", "probabilities"] = "logits"
    task: Literal["multi_label", "multi_class"] = "multi_label"
    window_seconds: float | None = None
    hop_seconds: float | None = None
    frame_rate: float | None = None
    frame_length: int | None = None
    frame_hop: int | None = None
    scores_output: OutputRef = 0
    embeddings_output: OutputRef | None = None
    probe_seconds: float = 1.0

    def __post_init__(self) -> None:
        if int(self.sample_rate) != self.sample_rate or self.sample_rate <= 0:
            raise ValueError(f"sample_rate must be a positive integer, got {self.sample_rate!r}")
        if self.score_kind not in ("logits", "probabilities"):
            raise ValueError(f"score_kind must be 'logits' or 'probabilities', got {self.score_kind!r}")
        if self.task not in ("multi_label", "multi_class"):
            raise ValueError(f"task must be 'multi_label' or 'multi_class', got {self.task!r}")
        if not self.labels:
            raise ValueError("a contract needs at least one label")
        if self.window_seconds is not None:
            if self.frame_rate is not None or self.frame_length is not None or self.frame_hop is not None:
                raise ValueError("declare either window_seconds (windowed mode) or frame_rate (frame-level), not both")
            if self.window_seconds <= 0 or (self.hop_seconds is not None and self.hop_seconds <= 0):
                raise ValueError("window_seconds and hop_seconds must be positive")
        elif self.frame_rate is None or self.frame_rate <= 0:
            raise ValueError("declare window_seconds (clip-level outputs per window) or a positive frame_rate")
        if (self.frame_length is None) != (self.frame_hop is None):
            raise ValueError("declare frame_length and frame_hop together (samples), or neither")

    @property
    def windowed(self) -> bool:
        return self.window_seconds is not None


def make_contract(
    sample_rate: int,
    *,
    labels: str | Path | Sequence[str] | None = None,
    n_labels: int | None = None,
    **kwargs: Any,
) -> Contract:
    """Build a `Contract`, reading ``labels`` from a file or naming ``n_labels`` columns ``class_i``."""
    if labels is None and n_labels is None:
        raise ValueError("declare labels= (a file or a list of names) or n_labels=")
    if labels is None:
        names = [f"class_{i}" for i in range(int(n_labels))]  # type: ignore[arg-type]
    elif isinstance(labels, (str, Path)):
        names = read_labels_file(labels)
    else:
        names = [str(x) for x in labels]
    if n_labels is not None and len(names) != n_labels:
        raise ValueError(f"{len(names)} labels given but n_labels={n_labels}")
    return Contract(sample_rate=int(sample_rate), labels=tuple(names), **kwargs)


def _select(outputs: Any, ref: OutputRef, what: str, names: Sequence[str] | None = None) -> Tensor:
    """Pick one output by index or name from a tensor, tuple/list, dict or (ONNX) named list."""
    if isinstance(outputs, Tensor):
        if ref in (0, -1):
            return outputs
        raise ContractError(f"{what} output {ref!r} declared, but the model returns a single tensor")
    if isinstance(outputs, Mapping):
        if ref not in outputs:
            raise ContractError(f"{what} output {ref!r} declared, but the model's outputs are {sorted(outputs)}")
        return outputs[ref]
    if isinstance(outputs, (tuple, list)):
        if isinstance(ref, str):
            if names is None or ref not in names:
                raise ContractError(f"{what} output {ref!r} declared, but the model's outputs are {list(names or [])}")
            ref = list(names).index(ref)
        if not -len(outputs) <= ref < len(outputs):
            raise ContractError(f"{what} output index {ref} declared, but the model returns {len(outputs)} outputs")
        return outputs[ref]
    raise ContractError(f"the model returned {type(outputs).__name__}, not a tensor, tuple, list or dict")


class FileTeacher(Teacher):
    """Common part of the TorchScript and ONNX teachers: framing and contract checks."""

    embedding_dim: int = 0

    def __init__(self, path: str | Path, contract: Contract, name: str, max_windows: int = 16) -> None:
        super().__init__()
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"{name}: model file not found: {self.path}")
        if max_windows < 1:
            raise ValueError(f"max_windows must be >= 1, got {max_windows}")
        self.name = name
        self.contract = contract
        self.sample_rate = contract.sample_rate
        self.score_kind = contract.score_kind
        self.task = contract.task
        self.labels = list(contract.labels)
        self.max_windows = int(max_windows)
        if contract.windowed:
            assert contract.window_seconds is not None
            self.window_samples = round(contract.window_seconds * self.sample_rate)
            hop = contract.window_seconds if contract.hop_seconds is None else contract.hop_seconds
            self.hop_samples = max(1, round(hop * self.sample_rate))
            self.frame_rate = self.sample_rate / self.hop_samples
        else:
            assert contract.frame_rate is not None
            self.frame_rate = float(contract.frame_rate)
        self._file_hash: str | None = None

    # Subclasses implement: run the model on a float32 [n, samples] tensor and return (scores, embeddings|None).
    def _run(self, batch: Tensor) -> tuple[Tensor, Tensor | None]:
        raise NotImplementedError

    def _probe(self) -> None:
        """Run the model once on silence and check the declared contract (sets ``embedding_dim``)."""
        samples = self.window_samples if self.contract.windowed else max(1, round(self.contract.probe_seconds * self.sample_rate))
        batch = 2
        try:
            scores, emb = self._run(torch.zeros(batch, samples))
        except ContractError:
            raise
        except Exception as err:  # noqa: BLE001 - whatever the runtime raises for an input the model cannot take
            raise ContractError(
                f"{self.name}: the model failed on silence shaped [{batch}, {samples}] "
                f"(float32 waveforms at {self.sample_rate} Hz, as declared): {err}"
            ) from None
        self._check(scores, emb, batch, samples)
        self.embedding_dim = 0 if emb is None else int(emb.shape[-1])
        if self.contract.score_kind == "probabilities" and scores.numel():
            lo, hi = float(scores.min()), float(scores.max())
            if lo < 0.0 or hi > 1.0:
                raise ContractError(
                    f"{self.name}: score_kind='probabilities' declared, but outputs on silence span [{lo:.4g}, {hi:.4g}]; "
                    "declare score_kind='logits' if the model returns logits"
                )

    def _check(self, scores: Tensor, emb: Tensor | None, batch: int, samples: int) -> None:
        rank = 2 if self.contract.windowed else 3
        layout = "[windows, n_labels]" if self.contract.windowed else "[batch, frames, n_labels]"
        n = len(self.labels)
        if scores.dim() != rank:
            raise ContractError(
                f"{self.name}: scores output must be rank {rank} {layout} "
                f"({'windowed' if rank == 2 else 'frame-level'} contract), got shape {tuple(scores.shape)}"
            )
        if scores.shape[0] != batch:
            raise ContractError(f"{self.name}: scores for {batch} inputs have leading size {scores.shape[0]}")
        if scores.shape[-1] != n:
            raise ContractError(f"{self.name}: the contract declares {n} labels, the model outputs {scores.shape[-1]} scores")
        if not self.contract.windowed and self.contract.frame_length is not None:
            expected = self.num_frames(samples)
            if scores.shape[1] != expected:
                raise ContractError(
                    f"{self.name}: declared frame_length/frame_hop give {expected} frames for {samples} samples, "
                    f"the model output {scores.shape[1]}"
                )
        if emb is not None and (emb.dim() != rank or tuple(emb.shape[:-1]) != tuple(scores.shape[:-1])):
            raise ContractError(
                f"{self.name}: embeddings output must be rank {rank} with the scores' leading shape "
                f"{tuple(scores.shape[:-1])}, got shape {tuple(emb.shape)}"
            )

    def num_frames(self, num_samples: int) -> int:
        """Windows (windowed mode) or frames (frame-level with declared framing) in ``num_samples``."""
        if num_samples < 0:
            raise ValueError(f"num_samples must be >= 0, got {num_samples}")
        if self.contract.windowed:
            return 0 if num_samples < self.window_samples else 1 + (num_samples - self.window_samples) // self.hop_samples
        if self.contract.frame_length is None or self.contract.frame_hop is None:
            raise NotImplementedError(f"{self.name}: declare frame_length and frame_hop to know the frame count in advance")
        if num_samples < self.contract.frame_length:
            return 0
        return 1 + (num_samples - self.contract.frame_length) // self.contract.frame_hop

    def forward(self, waveforms: Tensor) -> TeacherOutput:
        """waveforms: float32 ``[batch, samples]`` at ``sample_rate`` -> outputs ``[batch, time, ...]``."""
        if not isinstance(waveforms, Tensor) or waveforms.dim() != 2:
            shape = tuple(waveforms.shape) if isinstance(waveforms, Tensor) else type(waveforms).__name__
            raise ValueError(f"{self.name}: waveforms must be a [batch, samples] tensor, got {shape}")
        if waveforms.dtype != torch.float32:
            raise TypeError(f"{self.name}: waveforms must be float32, got {waveforms.dtype}")
        batch, samples = waveforms.shape
        if not self.contract.windowed:
            scores, emb = self._run(waveforms)
            self._check(scores, emb, batch, samples)
            return TeacherOutput(scores=scores.to(waveforms.device), embeddings=None if emb is None else emb.to(waveforms.device))
        count = self.num_frames(samples)
        n = len(self.labels)
        if count == 0:
            empty_emb = waveforms.new_zeros(batch, 0, self.embedding_dim) if self.embedding_dim else None
            return TeacherOutput(scores=waveforms.new_zeros(batch, 0, n), embeddings=empty_emb)
        needed = (count - 1) * self.hop_samples + self.window_samples
        flat = waveforms[:, :needed].unfold(1, self.window_samples, self.hop_samples).reshape(-1, self.window_samples)
        scores_parts, emb_parts = [], []
        for start in range(0, flat.shape[0], self.max_windows):
            chunk = flat[start : start + self.max_windows].contiguous()
            scores, emb = self._run(chunk)
            self._check(scores, emb, chunk.shape[0], self.window_samples)
            scores_parts.append(scores)
            if emb is not None:
                emb_parts.append(emb)
        scores_all = torch.cat(scores_parts).reshape(batch, count, n).to(waveforms.device)
        emb_all = torch.cat(emb_parts).reshape(batch, count, -1).to(waveforms.device) if emb_parts else None
        return TeacherOutput(scores=scores_all, embeddings=emb_all)

    def weights_hash(self) -> str:
        """SHA-256 of the model file (code and weights)."""
        if self._file_hash is None:
            self._file_hash = file_sha256(self.path)
        return self._file_hash

    def extra_repr(self) -> str:
        return f"path={str(self.path)!r}, contract={self.contract}"


class TorchScriptTeacher(FileTeacher):
    """A TorchScript file (``torch.jit.save``) loaded with ``torch.jit.load``; outputs as the contract says."""

    def __init__(self, path: str | Path, contract: Contract, name: str = "torchscript", max_windows: int = 16) -> None:
        super().__init__(path, contract, name, max_windows)
        try:
            with warnings.catch_warnings():
                # torch >= 2.10 marks TorchScript deprecated; loading a user's existing file is still the point here.
                warnings.simplefilter("ignore", DeprecationWarning)
                self.module = torch.jit.load(str(self.path), map_location="cpu")
        except Exception as err:  # noqa: BLE001 - torch raises several types for non-TorchScript files
            raise ValueError(f"{name}: {self.path} is not a TorchScript file ({err})") from None
        self.module.eval()
        for parameter in self.module.parameters():  # ScriptModule has no requires_grad_()
            parameter.requires_grad_(False)
        self._probe()

    def train(self, mode: bool = True) -> TorchScriptTeacher:
        """Keep the module in eval mode whatever ``mode`` says: a teacher is frozen."""
        super().train(mode)
        self.module.eval()
        return self

    def _run(self, batch: Tensor) -> tuple[Tensor, Tensor | None]:
        device = next((p.device for p in self.module.parameters()), batch.device)
        with torch.no_grad():
            outputs = self.module(batch.to(device))
        scores = _select(outputs, self.contract.scores_output, "scores")
        emb = None
        if self.contract.embeddings_output is not None:
            emb = _select(outputs, self.contract.embeddings_output, "embeddings")
        return scores.float(), None if emb is None else emb.float()


class OnnxTeacher(FileTeacher):
    """An ONNX file run with onnxruntime (CPU, or CUDA when requested and available).

    The model must have exactly one input (float32 waveforms); its name is read
    from the file unless ``input_name`` is given. Outputs are addressed by name
    or index in the order the file declares them.
    """

    def __init__(
        self,
        path: str | Path,
        contract: Contract,
        name: str = "onnx",
        max_windows: int = 16,
        providers: Sequence[str] | None = None,
        input_name: str | None = None,
        intra_op_threads: int = 0,
    ) -> None:
        super().__init__(path, contract, name, max_windows)
        try:
            import onnxruntime as ort
        except ImportError:  # pragma: no cover - depends on the environment
            raise ImportError(f"{name}: onnxruntime is not installed (pip install onnxruntime)") from None
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(intra_op_threads)
        try:
            self.session = ort.InferenceSession(
                str(self.path), sess_options=options, providers=list(providers or ["CPUExecutionProvider"])
            )
        except Exception as err:  # noqa: BLE001 - onnxruntime raises its own exception types
            raise ValueError(f"{name}: {self.path} could not be loaded by onnxruntime ({err})") from None
        inputs = self.session.get_inputs()
        if input_name is None:
            if len(inputs) != 1:
                raise ContractError(f"{name}: the model has inputs {[i.name for i in inputs]}; declare input_name=")
            input_name = inputs[0].name
        elif input_name not in [i.name for i in inputs]:
            raise ContractError(f"{name}: no input {input_name!r}; the model's inputs are {[i.name for i in inputs]}")
        self.input_name = input_name
        self.output_names = [o.name for o in self.session.get_outputs()]
        self._probe()

    def _run(self, batch: Tensor) -> tuple[Tensor, Tensor | None]:
        array = np.ascontiguousarray(batch.detach().cpu().numpy(), dtype=np.float32)
        outputs = self.session.run(None, {self.input_name: array})
        scores = _select(outputs, self.contract.scores_output, "scores", self.output_names)
        emb = None
        if self.contract.embeddings_output is not None:
            emb = _select(outputs, self.contract.embeddings_output, "embeddings", self.output_names)
        return _as_tensor(scores), None if emb is None else _as_tensor(emb)


def _as_tensor(array: Any) -> Tensor:
    return torch.from_numpy(np.asarray(array, dtype=np.float32))


_CONTRACT_FIELDS = {
    "score_kind", "task", "window_seconds", "hop_seconds", "frame_rate", "frame_length", "frame_hop",
    "scores_output", "embeddings_output", "probe_seconds",
}  # fmt: skip


def _split_kwargs(kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    contract = {k: kwargs.pop(k) for k in list(kwargs) if k in _CONTRACT_FIELDS}
    return contract, kwargs


@register_teacher("torchscript")
def torchscript_teacher(
    path: str | Path | None = None,
    sample_rate: int | None = None,
    labels: str | Path | Sequence[str] | None = None,
    n_labels: int | None = None,
    **kwargs: Any,
) -> TorchScriptTeacher:
    """``get_teacher("torchscript", path=..., sample_rate=..., labels=/n_labels=, window_seconds= or frame_rate=, ...)``.

    Contract keywords: see `Contract`; others (``name``, ``max_windows``) go to `TorchScriptTeacher`.
    """
    if path is None or sample_rate is None:
        raise ValueError("torchscript teacher needs path= (a torch.jit.save file) and sample_rate=")
    contract_kw, rest = _split_kwargs(dict(kwargs))
    contract = make_contract(sample_rate, labels=labels, n_labels=n_labels, **contract_kw)
    return TorchScriptTeacher(path, contract, **rest)


@register_teacher("onnx")
def onnx_teacher(
    path: str | Path | None = None,
    sample_rate: int | None = None,
    labels: str | Path | Sequence[str] | None = None,
    n_labels: int | None = None,
    **kwargs: Any,
) -> OnnxTeacher:
    """``get_teacher("onnx", path=..., sample_rate=..., labels=/n_labels=, window_seconds= or frame_rate=, ...)``.

    Contract keywords: see `Contract`; others (``name``, ``max_windows``,
    ``providers``, ``input_name``, ``intra_op_threads``) go to `OnnxTeacher`.
    """
    if path is None or sample_rate is None:
        raise ValueError("onnx teacher needs path= (an .onnx file) and sample_rate=")
    contract_kw, rest = _split_kwargs(dict(kwargs))
    contract = make_contract(sample_rate, labels=labels, n_labels=n_labels, **contract_kw)
    return OnnxTeacher(path, contract, **rest)


__all__ = [
    "Contract",
    "ContractError",
    "OnnxTeacher",
    "TorchScriptTeacher",
    "file_sha256",
    "make_contract",
    "read_labels_file",
]
