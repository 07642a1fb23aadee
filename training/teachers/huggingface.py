"""Hugging Face ``transformers`` audio models from a local directory as teachers (``hf``).

A directory written by ``save_pretrained`` (``config.json``, the weights, and
``preprocessor_config.json`` for the feature extractor) is loaded with
``local_files_only=True``: nothing here ever contacts a hub. A hub model id or
a missing directory is refused with a clear error; download the model yourself
(``huggingface-cli download ... --local-dir DIR``) and pass ``path=DIR``.

What is loaded
--------------
* If ``config.architectures`` names a ``...ForAudioClassification`` head (AST,
  wav2vec2/HuBERT/WavLM classifiers, ...), the model is loaded with
  ``AutoModelForAudioClassification``. Its logits are the teacher's scores:
  ``score_kind = "logits"``, labels from ``config.id2label`` (in id order),
  ``task = "multi_label"`` when ``config.problem_type`` is
  ``"multi_label_classification"`` (AST fine-tuned on AudioSet says so),
  ``"multi_class"`` otherwise (``task=`` overrides it, for a multi-label
  checkpoint whose config does not say so). The embeddings are that same network's hidden
  states (``output_hidden_states=True``): no second copy of the backbone.
* Otherwise (a base encoder such as ``Wav2Vec2Model``) it is loaded with
  ``AutoModel``; the teacher then has embeddings only: ``labels`` is empty and
  ``scores`` is ``[batch, time, 0]``.

Embeddings: ``layer``
---------------------
``layer=None`` (default) takes ``last_hidden_state`` (after any final layer
norm, what the model's own pooler/head sees); an integer indexes
``hidden_states`` (``0`` is the embedding output before the first transformer
layer, ``-1`` the last layer's output, which for AST is *before* its final
layer norm).

Time axis: ``pooling`` and ``window_seconds``
---------------------------------------------
* ``pooling="mean"`` (default): clip-level. The input is cut into
  non-overlapping windows of ``window_seconds`` (the remainder is dropped, as
  musicnn does); each window gives one score vector and the mean over its
  sequence positions of the chosen hidden layer (for AST that includes the CLS
  and distillation tokens). ``frame_rate = 1 / window_seconds``. Default
  window: for AST, its feature extractor's ``max_length`` frames of 10 ms
  (10.24 s for the published models, whose input is padded or cut to that);
  for other models 10 s.
* ``pooling="frames"``: frame-level embeddings, only for models with a
  convolutional waveform feature encoder (wav2vec2, HuBERT, WavLM,
  data2vec-audio, UniSpeech, SEW: configs with ``conv_kernel`` and
  ``conv_stride``). The whole input is one sequence (``window_seconds`` must
  be None); ``frame_rate = sample_rate / prod(conv_stride)`` (320 samples,
  50 Hz, for wav2vec2/HuBERT at 16 kHz) and the frame count follows the conv
  layers exactly (``L -> (L - kernel) // stride + 1`` per layer, i.e. 49
  frames per second of audio). Scores are ``[batch, frames, 0]`` in this mode
  (a classification head pools over the whole clip, so it has no per-frame
  output); use ``pooling="mean"`` for the logits.

Feature extractor
-----------------
``AutoFeatureExtractor`` from the same directory decides the model's input.
A ``Wav2Vec2FeatureExtractor`` (used by wav2vec2, HuBERT, WavLM, ...) is
applied in torch: with ``do_normalize`` each window is scaled to zero mean and
unit population variance, ``(x - mean) / sqrt(var + 1e-7)``, as it does; this
runs on the model's device and keeps the graph differentiable. Any other
feature extractor (AST's Kaldi filterbank, Whisper's log-mel, ...) is called
as is, on CPU numpy copies of the windows, and its tensors are moved to the
model's device: exact, but not differentiable and CPU-bound (AST's falls back
to numpy when torchaudio is absent, as on these machines). Input sample rate:
the feature extractor's ``sampling_rate`` (callers resample).
"""

from __future__ import annotations

import math
import os
import pickle
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor

from .base import Teacher, TeacherOutput, register_teacher

__all__ = ["HuggingFaceTeacher", "conv_frame_count"]

Pooling = Literal["mean", "frames"]
_DEFAULT_WINDOW_SECONDS = 10.0
_W2V2_EPS = 1e-7  # Wav2Vec2FeatureExtractor.zero_mean_unit_var_norm


def conv_frame_count(num_samples: int, kernels: list[int] | tuple[int, ...], strides: list[int] | tuple[int, ...]) -> int:
    """Frames out of a stack of unpadded 1-D convolutions: ``L -> (L - k) // s + 1`` per layer (0 if too short)."""
    length = int(num_samples)
    for kernel, stride in zip(kernels, strides, strict=True):
        if length < kernel:
            return 0
        length = (length - kernel) // stride + 1
    return length


def _import_transformers() -> Any:
    try:
        import transformers
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("the 'hf' teacher needs the transformers package: `pip install transformers`") from err
    return transformers


def _check_directory(path: str | os.PathLike[str]) -> Path:
    folder = Path(path).expanduser()
    if not folder.exists():
        raise FileNotFoundError(
            f"Hugging Face model directory not found: {str(path)!r}. The 'hf' teacher loads only local "
            "directories written by save_pretrained (it never downloads); fetch the model first, e.g. "
            "`huggingface-cli download MODEL_ID --local-dir DIR`, and pass path=DIR."
        )
    if not folder.is_dir():
        raise NotADirectoryError(f"Hugging Face model path {str(folder)!r} is a file; pass the directory that holds config.json")
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(
            f"{str(folder)!r} has no config.json: not a Hugging Face model directory (save_pretrained writes "
            "config.json, the weights and preprocessor_config.json)"
        )
    return folder


class HuggingFaceTeacher(Teacher):
    """A local ``transformers`` audio model as a teacher; see the module docstring.

    Args:
        path: directory written by ``save_pretrained`` (model and feature extractor).
        layer: hidden state for the embeddings: None for ``last_hidden_state``,
            else an index into ``hidden_states`` (negative counts from the end).
        window_seconds: clip-level window length (``pooling="mean"``); default
            per the module docstring. Must be None with ``pooling="frames"``.
        pooling: ``"mean"`` (one output per window) or ``"frames"`` (per conv frame).
        max_windows: windows per model call, to bound memory on long input.
        task: override the task read from ``config.problem_type`` (a multi-label
            checkpoint whose config does not say so).
        name: reported ``.name`` (default ``"hf"``).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        layer: int | None = None,
        window_seconds: float | None = None,
        *,
        pooling: Pooling = "mean",
        max_windows: int = 8,
        task: Literal["multi_label", "multi_class"] | None = None,
        name: str = "hf",
    ) -> None:
        super().__init__()
        transformers = _import_transformers()
        folder = _check_directory(path)
        if pooling not in ("mean", "frames"):
            raise ValueError(f"pooling must be 'mean' or 'frames', got {pooling!r}")
        if int(max_windows) != max_windows or max_windows < 1:
            raise ValueError(f"max_windows must be a positive integer, got {max_windows!r}")
        if task not in (None, "multi_label", "multi_class"):
            raise ValueError(f"task must be None, 'multi_label' or 'multi_class', got {task!r}")
        if layer is not None and (isinstance(layer, bool) or int(layer) != layer):
            raise ValueError(f"layer must be None or an integer, got {layer!r}")
        self.name = name
        self.path = str(folder)
        self.pooling: Pooling = pooling
        self.max_windows = int(max_windows)

        config = transformers.AutoConfig.from_pretrained(folder, local_files_only=True)
        try:
            self.feature_extractor = transformers.AutoFeatureExtractor.from_pretrained(folder, local_files_only=True)
        except (OSError, ValueError) as err:
            raise FileNotFoundError(
                f"{str(folder)!r}: no usable feature extractor (preprocessor_config.json) next to the model: {err}"
            ) from None
        architectures = list(getattr(config, "architectures", None) or [])
        self.has_head = any(a.endswith("ForAudioClassification") for a in architectures)
        auto = transformers.AutoModelForAudioClassification if self.has_head else transformers.AutoModel
        try:
            self.model = auto.from_pretrained(folder, local_files_only=True)
        except pickle.UnpicklingError as err:  # torch's weights-only loader met code in a pickled weights file
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            blocked = next((ln.strip() for ln in str(err).splitlines() if "GLOBAL" in ln), "")
            raise ValueError(
                f"{str(folder)!r}: refused its pickled weights (pytorch_model*.bin): they hold more than tensors "
                f"({blocked or first}), and loading it could run code. Use a model.safetensors from a trusted copy"
            ) from None
        self.model.requires_grad_(False)
        self.model.eval()
        self.config = self.model.config

        # Labels and task from the config (only a classification head has them).
        if self.has_head:
            id2label = {int(k): v for k, v in self.config.id2label.items()}
            self.labels = [str(id2label[i]) for i in range(len(id2label))]
            multi = getattr(self.config, "problem_type", None) == "multi_label_classification"
            self.task = task or ("multi_label" if multi else "multi_class")
        else:
            self.labels = []
            self.task = task or "multi_label"
        self.score_kind = "logits"
        self.sample_rate = int(getattr(self.feature_extractor, "sampling_rate", 16000))

        # Embedding layer.
        n_hidden = int(getattr(self.config, "num_hidden_layers", 0)) + 1  # + the embedding output
        if layer is not None and not -n_hidden <= int(layer) < n_hidden:
            raise ValueError(f"layer {layer} out of range: this model has {n_hidden} hidden states (0..{n_hidden - 1}, or negative)")
        self.layer = None if layer is None else int(layer)
        self.embedding_dim = int(self.config.hidden_size)

        # Time axis.
        kernels = getattr(self.config, "conv_kernel", None)
        strides = getattr(self.config, "conv_stride", None)
        self.conv_kernels = tuple(int(k) for k in kernels) if kernels else None
        self.conv_strides = tuple(int(s) for s in strides) if strides else None
        if pooling == "frames":
            if self.conv_strides is None:
                raise ValueError(
                    f"pooling='frames' needs a convolutional waveform encoder (config.conv_stride); "
                    f"{self.config.model_type} has none: use pooling='mean'"
                )
            if window_seconds is not None:
                raise ValueError("pooling='frames' runs the whole input as one sequence: leave window_seconds None")
            self.window_samples = None
            self.frame_rate = self.sample_rate / math.prod(self.conv_strides)
        else:
            if window_seconds is None:
                window_seconds = self._default_window_seconds()
            if not (isinstance(window_seconds, (int, float)) and math.isfinite(window_seconds) and window_seconds > 0):
                raise ValueError(f"window_seconds must be a positive number, got {window_seconds!r}")
            self.window_samples = int(round(window_seconds * self.sample_rate))
            if self.window_samples < 1:
                raise ValueError(f"window_seconds={window_seconds} is shorter than one sample")
            self.frame_rate = self.sample_rate / self.window_samples
        self.window_seconds = None if self.window_samples is None else self.window_samples / self.sample_rate
        self._torch_features = type(self.feature_extractor).__name__ == "Wav2Vec2FeatureExtractor"

    def _default_window_seconds(self) -> float:
        fe = self.feature_extractor
        if type(fe).__name__ == "ASTFeatureExtractor":
            return int(fe.max_length) * 160 / self.sample_rate  # max_length frames of 10 ms
        return _DEFAULT_WINDOW_SECONDS

    def train(self, mode: bool = True) -> HuggingFaceTeacher:
        """Keep the model in eval mode whatever ``mode`` says: a teacher is frozen."""
        super().train(mode)
        self.model.eval()
        return self

    def num_frames(self, num_samples: int) -> int:
        """Windows in ``num_samples`` (remainder dropped), or conv frames with ``pooling="frames"``."""
        if num_samples < 0:
            raise ValueError(f"num_samples must be >= 0, got {num_samples}")
        if self.window_samples is None:
            assert self.conv_kernels is not None and self.conv_strides is not None
            return conv_frame_count(num_samples, self.conv_kernels, self.conv_strides)
        return num_samples // self.window_samples

    # ----------------------------------------------------------------- features

    def model_inputs(self, windows: Tensor) -> dict[str, Tensor]:
        """The model's keyword inputs for equal-length windows ``[n, samples]`` (the feature extractor's job)."""
        device = self._device()
        if self._torch_features:
            x = windows.to(device=device, dtype=torch.float32)
            if getattr(self.feature_extractor, "do_normalize", False):
                mean = x.mean(dim=-1, keepdim=True)
                var = x.var(dim=-1, keepdim=True, correction=0)
                x = (x - mean) / torch.sqrt(var + _W2V2_EPS)
            return {"input_values": x}
        arrays = [w.detach().to("cpu", torch.float32).numpy() for w in windows]
        features = self.feature_extractor(arrays, sampling_rate=self.sample_rate, return_tensors="pt")
        return {k: v.to(device) for k, v in features.items() if isinstance(v, Tensor)}

    def _device(self) -> torch.device:
        return next(self.model.parameters()).device

    # ----------------------------------------------------------------- forward

    def _run(self, windows: Tensor) -> tuple[Tensor | None, Tensor]:
        """(logits [n, labels] or None, hidden states of the chosen layer [n, seq, dim])."""
        outputs = self.model(**self.model_inputs(windows), output_hidden_states=True, return_dict=True)
        if self.layer is None:
            hidden = outputs.hidden_states[-1] if self.has_head else outputs.last_hidden_state
            if self.has_head:
                # A classification model returns no last_hidden_state; run its final norm when it has one.
                hidden = self._final_norm(hidden)
        else:
            hidden = outputs.hidden_states[self.layer]
        return (outputs.logits if self.has_head else None), hidden

    def _final_norm(self, hidden: Tensor) -> Tensor:
        """The base model's final layer norm (AST has one after the encoder), if any."""
        base = getattr(self.model, self.model.base_model_prefix, None)
        norm = getattr(base, "layernorm", None)
        return norm(hidden) if isinstance(norm, torch.nn.LayerNorm) else hidden

    def forward(self, waveforms: Tensor) -> TeacherOutput:
        """waveforms: float32 ``[batch, samples]`` at ``sample_rate`` -> logits and embeddings ``[batch, time, ...]``."""
        waveforms = self._check_waveforms(waveforms)
        batch, samples = waveforms.shape
        out_device = waveforms.device
        n_labels = len(self.labels)
        if self.window_samples is None:  # frame-level: one sequence per waveform
            frames = self.num_frames(samples)
            if frames == 0 or batch == 0:
                return TeacherOutput(
                    scores=torch.zeros(batch, frames, 0, device=out_device),
                    embeddings=torch.zeros(batch, frames, self.embedding_dim, device=out_device),
                )
            hidden = torch.cat([self._run(waveforms[i : i + self.max_windows])[1] for i in range(0, batch, self.max_windows)])
            if hidden.shape[1] != frames:
                raise RuntimeError(f"{self.name}: the model gave {hidden.shape[1]} frames, expected {frames}")
            return TeacherOutput(scores=torch.zeros(batch, frames, 0, device=out_device), embeddings=hidden.to(out_device))

        windows = self.num_frames(samples)
        flat = waveforms[:, : windows * self.window_samples].reshape(batch * windows, self.window_samples)
        scores, embeddings = [], []
        for start in range(0, flat.shape[0], self.max_windows):
            logits, hidden = self._run(flat[start : start + self.max_windows])
            embeddings.append(hidden.mean(dim=1).to(out_device))
            if logits is not None:
                scores.append(logits.to(out_device))
        if not embeddings:
            return TeacherOutput(
                scores=torch.zeros(batch, 0, n_labels, device=out_device),
                embeddings=torch.zeros(batch, 0, self.embedding_dim, device=out_device),
            )
        emb = torch.cat(embeddings).reshape(batch, windows, self.embedding_dim)
        sc = torch.cat(scores) if scores else torch.zeros(batch * windows, 0, device=out_device)
        return TeacherOutput(scores=sc.reshape(batch, windows, n_labels), embeddings=emb)

    def _check_waveforms(self, waveforms: Tensor) -> Tensor:
        if not isinstance(waveforms, Tensor):
            raise TypeError(f"{self.name}: waveforms must be a torch.Tensor, got {type(waveforms).__name__}")
        if waveforms.dim() != 2:
            raise ValueError(f"{self.name}: waveforms must be [batch, samples], got shape {tuple(waveforms.shape)}")
        if not waveforms.dtype.is_floating_point:
            raise TypeError(f"{self.name}: waveforms must be floating point in [-1, 1], got {waveforms.dtype}")
        if not bool(torch.isfinite(waveforms).all()):
            raise ValueError(f"{self.name}: waveforms contain NaN or Inf")
        return waveforms

    def extra_repr(self) -> str:
        return (
            f"path={self.path!r}, model_type={self.config.model_type}, head={self.has_head}, "
            f"layer={self.layer}, pooling={self.pooling}, window_seconds={self.window_seconds}"
        )


@register_teacher("hf")
def _make_hf(
    path: str | os.PathLike[str] | None = None,
    layer: int | None = None,
    window_seconds: float | None = None,
    **kwargs: Any,
) -> HuggingFaceTeacher:
    """A local Hugging Face audio model (``path=`` a save_pretrained directory) as teacher ``hf``."""
    if path is None:
        raise ValueError("teacher 'hf' needs path= a local directory written by save_pretrained (no hub downloads)")
    return HuggingFaceTeacher(path, layer=layer, window_seconds=window_seconds, **kwargs)
