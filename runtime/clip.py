"""Running a model over a whole clip: the one clip runner, and the one time convention.

Every part that scores a clip at once runs it here: the engine's offline
reference (`edgetag.runtime.engine.offline_decisions`), ``edgetag evaluate``,
the export's int8/fp16 gate, the export's parity checks and the benchmark's
per-call inputs. A model is anything with the runtime model interface
(`edgetag.runtime.model.OnnxModel`: ``card``, ``run``, ``scores``,
``initial_state``), so an ONNX file on any backend and a torch checkpoint
(`edgetag.training.torch_backend.TorchModel`) are run the same way.

Time convention: an output is stamped at the **end of the last frame it
used**; frame ``i`` ends at sample ``i * hop_length + win_length``
(`frame_end_sample`). Streaming decisions carry the same stamp, so a stream
and a clip run line up sample for sample. Code that aligns outputs with a
teacher's frame *centres* asks for `ClipRun.centre_times` by name.

Which outputs a clip gives:

- window models: one per window, windows of ``window_frames`` frames ending
  every ``hop_frames`` frames from the first full window (the engine's
  decisions);
- stateful models: the whole sequence in one call from the initial state
  (equal to the engine's chunked calls with the state carried); with
  ``every_frame`` one output per frame (evaluation, the gate), otherwise the
  engine's decisions (every ``hop_frames``-th frame: the engine calls in
  ``frames_per_call`` frames and, at the end of a file, `Engine.flush`
  feeds the rest).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


def frame_end_sample(frontend: Any, frame: Any) -> Any:
    """Sample index (exclusive) where frame ``frame`` ends: ``frame * hop_length + win_length``."""
    return frame * frontend.hop_length + frontend.win_length


@dataclass
class ClipRun:
    """A model's outputs over one clip."""

    frames: np.ndarray
    """int64 [n]: index of the last frame each output used."""
    logits: np.ndarray
    """[n, n_labels] as the model returned them."""
    scores: np.ndarray
    """float32 [n, n_labels]: ``model.scores(logits)`` (the card's task)."""
    frontend: Any
    """The front-end config the frames come from (hop, window, sample rate)."""
    tiled: bool = False
    """A window model's clip was shorter than one window and was tiled up to it."""

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def end_samples(self) -> np.ndarray:
        """int64 [n]: the stamp of each output, in samples (see the module docstring)."""
        return frame_end_sample(self.frontend, self.frames.astype(np.int64))

    @property
    def times(self) -> np.ndarray:
        """float64 [n]: the stamp of each output in seconds from the clip start."""
        return self.end_samples / float(self.frontend.sample_rate)

    @property
    def centre_times(self) -> np.ndarray:
        """float64 [n]: seconds at the centre of each output's last frame (for aligning with frame-centred teachers)."""
        return self.times - self.frontend.win_length / 2 / float(self.frontend.sample_rate)


def decision_frames(card: Any, n_frames: int, *, every_frame: bool = False) -> np.ndarray:
    """Indices of the frames that end an output, for a clip of ``n_frames`` frames (see the module docstring)."""
    hop = max(int(card.hop_frames), 1)
    if card.streaming_mode == "window":
        return np.arange(int(card.window_frames) - 1, n_frames, hop, dtype=np.int64)
    if every_frame:
        return np.arange(n_frames, dtype=np.int64)
    return np.arange(hop - 1, n_frames, hop, dtype=np.int64)  # the engine's last, shorter call at the end (flush)


def run_clip(
    model: Any,
    features: np.ndarray,
    *,
    every_frame: bool = False,
    tile_short: bool = False,
    batch: int = 64,
) -> ClipRun:
    """Run ``model`` over one clip's features float32 [frames, n_bins].

    ``tile_short``: a window model's clip shorter than one window is repeated
    up to a window (one output, `ClipRun.tiled`) instead of giving none.
    ``batch``: windows per ``model.run`` call.
    """
    card = model.card
    x = np.ascontiguousarray(features, dtype=np.float32)
    if x.ndim != 2 or x.shape[1] != card.frontend.n_bins:
        raise ValueError(f"features must be [frames, {card.frontend.n_bins}], got {list(x.shape)}")
    tiled = False
    if card.streaming_mode == "window":
        w = int(card.window_frames)
        if tile_short and 0 < len(x) < w:
            x = np.tile(x, (-(-w // len(x)), 1))[:w]
            tiled = True
        frames = decision_frames(card, len(x))
        parts = []
        for b in range(0, len(frames), batch):
            windows = np.stack([x[e - w + 1 : e + 1] for e in frames[b : b + batch]])
            parts.append(model.run(windows)[0])
    else:
        frames = decision_frames(card, len(x), every_frame=every_frame)
        parts = []
        if len(frames):
            n = int(frames[-1]) + 1
            logits, _ = model.run(np.ascontiguousarray(x[None, :n]), model.initial_state(1))
            parts.append(logits[0][frames])
    logits = np.concatenate(parts) if parts else np.zeros((0, card.n_labels), np.float32)
    scores = np.asarray(model.scores(logits), dtype=np.float32)
    return ClipRun(frames=frames, logits=logits, scores=scores, frontend=card.frontend, tiled=tiled)


def call_inputs(card: Any, features: np.ndarray) -> list[np.ndarray]:
    """The ``model.run`` inputs a stream makes, each [1, frames, n_bins], as the runtime's engine calls the model.

    Window models: the window ending at each decision frame (one call per decision). Stateful models:
    consecutive chunks of ``card.frames_per_call`` new frames (whole chunks only), a decision at every
    ``hop_frames``-th frame of the stream; a caller carries the state from call to call.
    """
    x = np.ascontiguousarray(features, dtype=np.float32)
    if card.streaming_mode == "window":
        w = int(card.window_frames)
        return [np.ascontiguousarray(x[None, e - w + 1 : e + 1]) for e in decision_frames(card, len(x))]
    chunk = max(int(card.frames_per_call), 1)
    return [np.ascontiguousarray(x[None, p : p + chunk]) for p in range(0, len(x) - chunk + 1, chunk)]


def run_chunks(model: Any, features: np.ndarray, chunks: Any) -> tuple[np.ndarray, list[np.ndarray]]:
    """A stateful model over ``features`` [frames, n_bins] in calls of the given sizes, the state
    carried from call to call (what a stream does); logits [frames, n_labels] and the final state."""
    x = np.ascontiguousarray(features, dtype=np.float32)
    states = model.initial_state(1)
    out, pos = [], 0
    for size in chunks:
        logits, states = model.run(np.ascontiguousarray(x[None, pos : pos + size]), states)
        out.append(logits[0])
        pos += size
    if pos != len(x):
        raise ValueError(f"chunks cover {pos} frames, the sequence has {len(x)}")
    return np.concatenate(out, axis=0), states
