"""Noticing stereo whose channels cancel in the mono downmix (anti-phase), which a model would hear as silence.

Used wherever audio is averaged to mono: files (`edgetag.runtime.audio`), stdin and microphones
(`edgetag.runtime.sources`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

#: The downmix is "near silence" when it is this far below the channels' own power (-20 dB) ...
_CANCEL_RATIO = 0.01
#: ... and the channels are louder than -60 dBFS (silence cancelling is not worth a word).
_CANCEL_FLOOR = 1e-6


class DownmixCheck:
    """Notices channels that cancel when averaged to mono (anti-phase stereo), which the model would hear as silence.

    `add` takes each block [frames, channels] with its mono mix; after ``min_seconds`` of
    audio louder than -60 dBFS, a mix more than 20 dB below the channels' mean power gets
    one warning (`finish` judges a shorter stream at its end).
    """

    def __init__(self, source: str, rate: int, warn: Callable[[str], None], min_seconds: float = 1.0) -> None:
        self.source, self.warn = source, warn
        self.min_frames = int(min_seconds * rate)
        self.frames = 0
        self.channel_energy = 0.0  # sum of squares per channel, averaged over channels
        self.mix_energy = 0.0
        self.done = False

    def add(self, block: np.ndarray, mono: np.ndarray) -> None:
        if self.done or block.ndim != 2 or block.shape[1] < 2 or not len(block):
            return
        self.frames += len(block)
        self.channel_energy += float(np.einsum("ij,ij->", block, block, dtype=np.float64)) / block.shape[1]
        self.mix_energy += float(np.dot(mono.astype(np.float64), mono.astype(np.float64)))
        if self.frames >= self.min_frames:
            self._judge()

    def finish(self) -> None:
        if not self.done and self.frames:
            self._judge()

    def _judge(self) -> None:
        channels = self.channel_energy / self.frames
        if channels <= _CANCEL_FLOOR:
            return  # silence so far: nothing to judge yet
        self.done = True
        mix = self.mix_energy / self.frames
        if mix < _CANCEL_RATIO * channels:
            level = f"{10 * math.log10(channels / mix):.0f} dB below the channels" if mix > 0 else "silent"
            self.warn(f"{self.source}: its channels cancel when averaged to mono (the mix is {level}: anti-phase "
                      "stereo?), so the model hears near silence; to tag one channel, extract it first "
                      "(e.g. `sox IN OUT remix 1`)")
