"""The C++ front end, from Python: `StreamingFrontend` and `compute_features`."""

from __future__ import annotations

import numpy as np

from edgetag import _core

from .config import FrontendConfig


class StreamingFrontend:
    """Turns audio pushed in chunks of any length into spectrogram frames.

    Frame ``i`` covers samples ``[i*hop, i*hop + win)`` of everything pushed
    since construction or `reset`; a push returns the frames it completed.
    The same samples in any chunking give bit-identical frames, equal to
    `compute_features` on the whole signal. Samples: 1-D float32 / float64
    (expected in [-1, 1]) or int16 (scaled by 1/32768), C-contiguous.
    Non-finite samples, wrong shapes or dtypes raise, and leave the stream as
    it was. The C++ work runs with the GIL released.

    >>> fe = StreamingFrontend(FrontendConfig.preset("default"))
    >>> fe.push(np.zeros(400, np.float32)).shape
    (1, 64)
    """

    def __init__(self, config: FrontendConfig) -> None:
        if not isinstance(config, FrontendConfig):
            raise TypeError(f"config must be a FrontendConfig, got {type(config).__name__}")
        self.config = config
        self._core = _core.StreamingFrontend(config)

    @property
    def num_bins(self) -> int:
        """Values per frame."""
        return self.config.n_bins

    @property
    def num_pending(self) -> int:
        """Samples held for frames not complete yet (always < win_length)."""
        return self._core.num_pending

    @property
    def frames_emitted(self) -> int:
        """Frames returned since construction or the last `reset`."""
        return self._core.frames_emitted

    def num_frames_for_push(self, num_samples: int) -> int:
        """How many frames a push of ``num_samples`` samples would return now."""
        if num_samples < 0:
            raise ValueError(f"num_samples must be >= 0, got {num_samples}")
        return self._core.num_frames_for_push(num_samples)

    def push(self, samples: np.ndarray) -> np.ndarray:
        """Append samples; returns the completed frames, float32 [n_new_frames, n_bins]."""
        return self._core.push(samples)

    def push_into(self, samples: np.ndarray, out: np.ndarray) -> int:
        """Like `push`, but writes frames into ``out`` (float32 [>= n, n_bins]) and returns n.

        Allocates nothing: for callers that reuse one output buffer.
        """
        return self._core.push_into(samples, out)

    def reset(self) -> None:
        """Drop pending samples: the next push starts a new signal."""
        self._core.reset()

    def __repr__(self) -> str:
        return f"StreamingFrontend({self.config.describe()}, pending={self.num_pending})"


def compute_features(samples: np.ndarray, config: FrontendConfig) -> np.ndarray:
    """Features of a whole signal, float32 [config.num_frames(len(samples)), n_bins].

    Same input rules and same numbers as `StreamingFrontend`.
    """
    if not isinstance(config, FrontendConfig):
        raise TypeError(f"config must be a FrontendConfig, got {type(config).__name__}")
    return _core.compute_features(config, samples)
