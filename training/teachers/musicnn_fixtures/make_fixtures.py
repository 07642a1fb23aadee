"""Make the reference fixtures for the musicnn port from the ORIGINAL musicnn tagger.

Run once, in a separate virtual environment that has TensorFlow (never a
dependency of edgetag)::

    python3 -m venv /tmp/tfenv
    /tmp/tfenv/bin/pip install tensorflow==2.20.0 tf-keras==2.20.1 librosa soundfile
    /tmp/tfenv/bin/pip install --no-deps musicnn
    TF_USE_LEGACY_KERAS=1 /tmp/tfenv/bin/python \\
        training/teachers/musicnn_fixtures/make_fixtures.py tests/fixtures/musicnn

(TensorFlow's default oneDNN kernels, as a user of musicnn gets them. With
``TF_ENABLE_ONEDNN_OPTS=0`` the normal clips' taggrams move by about 2e-6, but
the loud clip's overflowed patch gives NaN instead of the fixed taggram.)

It synthesises a few short clips deterministically (`synth_clip`, numpy only,
float64 then rounded to int16 so that the clip is exactly the same wherever
it is regenerated), writes each as a 16-bit WAV, runs
``musicnn.extractor.extractor`` (the original TF tagger) on it for every
model, and saves small ``.npz`` files:

* ``clip_<name>.npz``: the clip's spec (JSON), its length, the SHA-256 of its
  int16 samples (the tests regenerate the clip and check this), the peak mel
  value, the original's float16 log-mel (``musicnn.extractor.batch_data``,
  exactly what its network saw), and for short clips the log-mel computed
  from librosa's float32 mel with a float64 log (no float16 rounding), plus
  the edge frames with ``pad_mode="reflect"`` (librosa < 0.10's padding).
* ``<model>.npz``: per clip, the taggram; for musicnn models the max/mean
  pools and the penultimate layer of the first window; for VGG models pool5.

All but one clip are kept at a modest level (peak mel far below 6.55) so the
original's float16 feature arithmetic does not overflow; the ``loud`` clip
is there on purpose to record the fixed taggram the overflow produces.

Only numpy is imported at module level: the tests import `synth_clip` and
`CLIPS` from here to regenerate the audio.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

SAMPLE_RATE = 16000
FLOAT16_OVERFLOW_MEL = 65504.0 / 10000.0  # 10000 * x overflows float16 above this

#: name -> spec. Levels are peak amplitudes; "loud" is meant to overflow.
CLIPS: dict[str, dict[str, Any]] = {
    "chord": {"kind": "chord", "seconds": 6.0, "level": 0.1, "seed": 1},
    "drums": {"kind": "drums", "seconds": 5.0, "level": 0.05, "seed": 2},
    "sweep": {"kind": "sweep", "seconds": 4.0, "level": 0.04, "seed": 3},
    "melody": {"kind": "melody", "seconds": 3.5, "level": 0.05, "seed": 4},
    "loud": {"kind": "chord", "seconds": 3.0, "level": 0.9, "seed": 5},
}
MODELS = ("MTT_musicnn", "MSD_musicnn", "MTT_vgg", "MSD_vgg")


def _envelope(n: int, attack: int, decay_s: float) -> np.ndarray:
    t = np.arange(n) / SAMPLE_RATE
    env = np.exp(-t / decay_s)
    env[:attack] *= np.linspace(0.0, 1.0, attack)
    return env


def _synth_float(spec: dict[str, Any]) -> np.ndarray:
    """The clip in float64, peak-normalised to spec['level']."""
    n = int(round(spec["seconds"] * SAMPLE_RATE))
    t = np.arange(n) / SAMPLE_RATE
    rng = np.random.default_rng(spec["seed"])
    y = np.zeros(n)
    kind = spec["kind"]
    if kind == "chord":
        # A minor / F major / C major / G major triads with 4 harmonics, re-struck every 0.75 s.
        chords = [(220.0, 261.63, 329.63), (174.61, 220.0, 261.63), (261.63, 329.63, 392.0), (196.0, 246.94, 293.66)]
        step = int(0.75 * SAMPLE_RATE)
        for i, start in enumerate(range(0, n, step)):
            seg = min(step * 2, n - start)
            tt = np.arange(seg) / SAMPLE_RATE
            env = _envelope(seg, 160, 0.6)
            for f0 in chords[(i // 2) % len(chords)]:
                for h in range(1, 5):
                    y[start : start + seg] += env * np.sin(2 * np.pi * f0 * h * tt + rng.uniform(0, 2 * np.pi)) / h
    elif kind == "drums":
        # Kick (decaying 55 Hz sine with a pitch drop) on beats, noise "hats" on off-beats, at 120 bpm.
        beat = SAMPLE_RATE // 2
        for start in range(0, n, beat):
            seg = min(beat, n - start)
            tt = np.arange(seg) / SAMPLE_RATE
            freq = 55.0 + 60.0 * np.exp(-tt / 0.03)
            y[start : start + seg] += np.sin(2 * np.pi * np.cumsum(freq) / SAMPLE_RATE) * np.exp(-tt / 0.15)
            hat_at = start + beat // 2
            if hat_at < n:
                hseg = min(beat // 2, n - hat_at)
                noise = rng.standard_normal(hseg)
                noise = np.diff(noise, prepend=0.0)  # crude high-pass
                y[hat_at : hat_at + hseg] += 0.3 * noise * np.exp(-np.arange(hseg) / SAMPLE_RATE / 0.04)
    elif kind == "sweep":
        # Exponential sine sweep 100 Hz -> 4 kHz over the clip, over soft white noise.
        f0, f1 = 100.0, 4000.0
        k = np.log(f1 / f0) / spec["seconds"]
        y = np.sin(2 * np.pi * f0 * (np.exp(k * t) - 1.0) / k) + 0.1 * rng.standard_normal(n)
    elif kind == "melody":
        # A pentatonic line of odd-harmonic (square-ish) notes with vibrato.
        notes = 440.0 * 2.0 ** (np.array([0, 3, 5, 7, 10, 12, 10, 7]) / 12.0)
        step = int(0.4375 * SAMPLE_RATE)
        for i, start in enumerate(range(0, n, step)):
            seg = min(step, n - start)
            tt = np.arange(seg) / SAMPLE_RATE
            phase = 2 * np.pi * np.cumsum(notes[i % len(notes)] * (1 + 0.005 * np.sin(2 * np.pi * 5.5 * tt))) / SAMPLE_RATE
            env = _envelope(seg, 240, 0.5)
            for h in (1, 3, 5, 7):
                y[start : start + seg] += env * np.sin(h * phase) / h
    else:
        raise ValueError(f"unknown clip kind {kind!r}")
    return y * (spec["level"] / np.max(np.abs(y)))


def synth_clip(spec: dict[str, Any]) -> np.ndarray:
    """The clip as int16 samples (deterministic: float64 synthesis, then rounding)."""
    return np.clip(np.round(_synth_float(spec) * 32767.0), -32768, 32767).astype(np.int16)


def clip_sha256(samples: np.ndarray) -> str:
    """SHA-256 of the int16 samples, little-endian."""
    return hashlib.sha256(samples.astype("<i2").tobytes()).hexdigest()


def _run(out_dir: Path) -> None:
    import os
    import tempfile

    import librosa
    import soundfile as sf
    import tensorflow as tf
    from musicnn import extractor as mx  # the original tagger (imports TensorFlow)

    out_dir.mkdir(parents=True, exist_ok=True)
    provenance = json.dumps(
        {
            "tensorflow": tf.__version__,
            "librosa": librosa.__version__,
            "numpy": np.__version__,
            "musicnn": "0.1.0",
            "TF_USE_LEGACY_KERAS": os.environ.get("TF_USE_LEGACY_KERAS"),
            "TF_ENABLE_ONEDNN_OPTS": os.environ.get("TF_ENABLE_ONEDNN_OPTS"),
        }
    )
    results: dict[str, dict[str, np.ndarray]] = {m: {} for m in MODELS}
    with tempfile.TemporaryDirectory() as tmp:
        for name, spec in CLIPS.items():
            samples = synth_clip(spec)
            path = str(Path(tmp) / f"{name}.wav")
            sf.write(path, samples, SAMPLE_RATE, subtype="PCM_16")
            y, _ = librosa.load(path, sr=SAMPLE_RATE)
            assert np.array_equal(y, samples.astype(np.float32) / 32768.0), "WAV round trip is not exact"

            # What the original's network sees: float16 log-mel from its own batch_data.
            _, audio_rep = mx.batch_data(path, 187, 187)
            mel = librosa.feature.melspectrogram(y=y, sr=SAMPLE_RATE, hop_length=256, n_fft=512, n_mels=96)
            mel_max = float(mel.max())
            overflow = mel_max > FLOAT16_OVERFLOW_MEL
            print(f"{name}: {len(samples)} samples, peak mel {mel_max:.3f}, float16 overflow: {overflow}")
            if name != "loud":
                assert mel_max < FLOAT16_OVERFLOW_MEL / 4, f"clip {name} is too loud for a float16-safe comparison"
            else:
                assert overflow, "the loud clip should overflow float16"
            clip: dict[str, Any] = {
                "spec": json.dumps(spec, sort_keys=True),
                "n_samples": np.int64(len(samples)),
                "sha256": clip_sha256(samples),
                "mel_max": np.float64(mel_max),
                "logmel_f16": audio_rep.astype(np.float16),
                "provenance": provenance,
            }
            if spec["seconds"] <= 4.0 and not overflow:
                clip["logmel_f32"] = np.log10(10000.0 * mel.T.astype(np.float64) + 1.0).astype(np.float32)
            reflect = librosa.feature.melspectrogram(
                y=y, sr=SAMPLE_RATE, hop_length=256, n_fft=512, n_mels=96, pad_mode="reflect"
            ).T
            edges = np.concatenate([reflect[:2], reflect[-2:]])
            clip["logmel_reflect_edges_f32"] = np.log10(10000.0 * edges.astype(np.float64) + 1.0).astype(np.float32)
            np.savez_compressed(out_dir / f"clip_{name}.npz", **clip)

            for model in MODELS:
                taggram, labels, features = mx.extractor(path, model=model, input_length=3, input_overlap=False)
                res = results[model]
                res[f"{name}/taggram"] = np.asarray(taggram, dtype=np.float32)
                windows = res[f"{name}/taggram"].shape[0]
                if model.endswith("musicnn"):
                    # extractor() refreshes max_pool/mean_pool for every window but re-appends the
                    # FIRST window's penultimate (and cnn1..3) for later ones: keep window 0 only.
                    res[f"{name}/penultimate0"] = np.asarray(features["penultimate"][0], dtype=np.float32)
                    res[f"{name}/max_pool"] = np.asarray(features["max_pool"], dtype=np.float32).reshape(windows, -1)
                    res[f"{name}/mean_pool"] = np.asarray(features["mean_pool"], dtype=np.float32).reshape(windows, -1)
                else:
                    # pool5 [windows * 2, 128] after squeeze/concat -> [windows, 256] in NHWC flatten order.
                    res[f"{name}/pool5"] = np.asarray(features["pool5"], dtype=np.float32).reshape(windows, -1)
                res["labels"] = np.array(labels)
                top = np.argsort(-taggram.mean(axis=0))[:3]
                print(f"  {model}: {windows} windows, top tags {[labels[i] for i in top]}")
    for model, res in results.items():
        np.savez_compressed(out_dir / f"{model}.npz", provenance=provenance, **res)
    for f in sorted(out_dir.glob("*.npz")):
        print(f"{f.name}: {f.stat().st_size} bytes")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(f"usage: {sys.argv[0]} OUTPUT_DIR  (run with TensorFlow, tf-keras, librosa and musicnn installed)")
    _run(Path(sys.argv[1]))
