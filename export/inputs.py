"""Real inputs for the export's checks: front-end features of audio, windows, the test vector's frames.

Needs numpy and the runtime's front end (no torch).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from edgetag.export.errors import ExportError
from edgetag.runtime.frontend import FrontendConfig, compute_features
from edgetag.runtime.model_card import ModelCard


def demo_audio(sample_rate: int, seconds: float = 6.0, seed: int = 0) -> np.ndarray:
    """A deterministic signal (chirp, chord, noise burst, silence) when no calibration audio is given."""
    from edgetag.runtime.demo import demo_signal

    audio = demo_signal(sample_rate, seconds)
    rng = np.random.default_rng(seed)
    return (audio + 0.01 * rng.standard_normal(len(audio))).astype(np.float32)


def features_of(audio: Sequence[np.ndarray], frontend: FrontendConfig) -> list[np.ndarray]:
    """Front-end features [frames, n_bins] of each waveform (clips too short for one frame dropped)."""
    out = []
    for samples in audio:
        feats = compute_features(np.ascontiguousarray(samples, dtype=np.float32), frontend)
        if feats.shape[0]:
            out.append(feats)
    return out


def _as_feature_list(calibration_features: Any, n_bins: int) -> list[np.ndarray]:
    if isinstance(calibration_features, np.ndarray):
        if calibration_features.ndim == 2:
            calibration_features = [calibration_features]
        elif calibration_features.ndim == 3:
            calibration_features = list(calibration_features)
        else:
            raise ExportError(f"calibration features must be [frames, n_bins] arrays, got {calibration_features.shape}")
    out = []
    for feats in calibration_features:
        feats = np.asarray(feats, dtype=np.float32)
        if feats.ndim != 2 or feats.shape[1] != n_bins:
            raise ExportError(f"calibration features must be [frames, {n_bins}], got {list(feats.shape)}")
        if not np.isfinite(feats).all():
            raise ExportError("calibration features contain NaN or Inf")
        if feats.shape[0]:
            out.append(feats)
    if not out:
        raise ExportError("no calibration features (every clip was empty)")
    return out


def windows_of(features: Sequence[np.ndarray], window_frames: int, hop: int | None = None) -> np.ndarray:
    """Windows [n, window_frames, n_bins] cut from each clip every ``hop`` frames (default: no overlap)."""
    hop = hop or window_frames
    out = [
        feats[start : start + window_frames]
        for feats in features
        for start in range(0, feats.shape[0] - window_frames + 1, hop)
    ]
    if not out:
        raise ExportError(f"no clip is long enough for one window of {window_frames} frames")
    return np.stack(out).astype(np.float32)


def verification_frames(features: Sequence[np.ndarray], card: ModelCard) -> np.ndarray:
    """The frames of a card's test vector: the loudest span of the longest clip, or of all clips joined."""
    from edgetag.runtime.verify import pick_frames, vector_frames

    frames = vector_frames(card)
    clips = list(features)
    if max(len(c) for c in clips) < frames:
        clips = [np.concatenate(clips)]
    if len(clips[0]) < frames:
        raise ExportError(f"the model's test vector needs {frames} frames of real features; the calibration audio "
                          f"has {len(clips[0])} (give longer calibration audio)")
    return pick_frames(clips, frames)
