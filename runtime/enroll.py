"""Enrolment: new labels from a few example clips, on the device (numpy + ONNX Runtime, no torch).

A student with an ``embedding`` output (`OnnxModel.embed`: what its final
classifier reads) becomes a tagger of the user's own sounds:

1. **Clip embeddings.** Each example clip is run through the runtime's clip
   runner (`edgetag.runtime.clip.run_clip`) for the embedding of every
   decision. A window model's clip is padded with silence of one window less
   one hop at both ends, as if it were heard in a quiet stream, and the
   decisions kept are those whose window holds the whole clip (a sound
   shorter than a window, at every position in it) or lies wholly inside it
   (a longer one): a window that sees the edge of the sound and silence
   stands for neither. Decisions whose audio lies more than
   `ACTIVE_RANGE_DB` below the clip's loudest are left out too (pauses
   inside a clip). The clip's embedding is the mean of the kept decisions'
   L2-normalised embeddings, normalised again.
2. **Prototypes.** A label's prototype is the mean of its examples' clip
   embeddings (at least `MIN_EXAMPLES`). The examples themselves are stored
   in the model, so enrolling more examples later re-averages exactly, and
   re-calibrates.
3. **Open-set threshold.** Per label, on the cosine similarity of a
   decision's embedding to the prototype: positives are each example's
   decisions against the prototype of the *other* examples (leave one out),
   negatives are the decisions of background audio (the built-in demo music
   and a second of silence, unless the user gives some) and of the other
   labels' examples. With the positives' 10th percentile above the negatives'
   99th, the threshold lies half way between them; otherwise it is the
   value that maximises (true accepts - false accepts). "None of these" is
   the answer when no label reaches its threshold.
4. **The model.** The student's graph plus a head: ``logits = scale *
   (cosine(embedding, prototype) - center)`` (multi-label, so each score is
   ``sigmoid`` of it and the card's per-label threshold is
   ``sigmoid(scale * (threshold - center))``; `center` is the mean threshold
   and `scale` keeps every card threshold within [0.2, 0.8], so hysteresis
   margins work). Scores rank labels by cosine, as a nearest-prototype
   classifier does. The card gains the labels, thresholds and an
   ``enrollment`` record (in its provenance); the file is sealed (digest,
   test vector) like any export, so ``tag``, ``listen``, ``verify``, ``info``
   and `edgetag.load` run it unchanged.

Editing the graph needs the ``onnx`` package (imported when a model is
written; `pip install onnx`); computing embeddings needs only ONNX Runtime.
"""

from __future__ import annotations

import datetime as _dt
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgetag.runtime.clip import run_clip
from edgetag.runtime.enroll_calibration import (
    NEGATIVE_QUANTILE,
    POSITIVE_QUANTILE,
    ClipEmbedding,
    Enrollment,
    EnrollmentError,
    calibrate,
    card_threshold,
    head_constants,
    unit_rows,
)
from edgetag.runtime.enroll_head import (
    DECISIONS_KEY,
    EXAMPLES_INIT,
    attach_head,
    decisions_entry,
    import_onnx,
    stored_enrollment,
    strip_head,
)
from edgetag.runtime.sealing import seal
from edgetag.runtime.frontend import compute_features
from edgetag.runtime.model_card import EMBEDDING_NAME, ModelCard, control_characters
from edgetag.runtime.sources import level_dbfs

#: Examples a label needs (the leave-one-out calibration needs at least 2 others per example).
MIN_EXAMPLES = 3
#: A clip shorter than this is refused: too little of a sound to stand for it (a closed hi-hat lasts about 0.1 s).
MIN_CLIP_SECONDS = 0.1
#: A clip whose RMS level is below this is refused as silent.
SILENCE_DBFS = -60.0
#: Decisions more than this far below the clip's loudest decision are silence around the sound.
ACTIVE_RANGE_DB = 20.0
#: Audio file suffixes a folder is searched for.
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff")


# ----------------------------------------------------------------------------- inputs
def parse_add(spec: str) -> tuple[str, list[Path]]:
    """``NAME=PATH[,PATH...]`` (files or folders of audio files) -> (name, files in order)."""
    name, sep, paths = spec.partition("=")
    name = name.strip()
    if not sep or not name or not paths.strip():
        raise EnrollmentError(f"--add {spec!r}: expected NAME=FILES (a folder, or files separated by commas)")
    bad = control_characters(name)
    if bad:
        raise EnrollmentError(f"--add: the name {ascii(name)} contains control characters ({bad})")
    if ";" in name:
        raise EnrollmentError(f"--add: the name {name!r} contains ';', which CSV output puts between the labels that "
                              "are on: choose another name")
    return name, audio_files([p for p in paths.split(",") if p.strip()], what=f"--add {name}")


def audio_files(paths: Sequence[str | os.PathLike[str]], what: str = "audio") -> list[Path]:
    """Files as given, and the audio files under folders (sorted); refuses a path that does not exist."""
    files: list[Path] = []
    for raw in paths:
        path = Path(str(raw).strip()).expanduser()
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
            if not found:
                raise EnrollmentError(f"{what}: no audio files ({', '.join(AUDIO_SUFFIXES)}) in {path}")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise EnrollmentError(f"{what}: {path} does not exist")
    return files


# ------------------------------------------------------------------------- embeddings
class _EmbeddingView:
    """A model whose "logits" are its embedding, so the runtime's clip runner gives embeddings per decision."""

    def __init__(self, model: Any) -> None:
        self.model, self.card = model, model.card

    def run(self, features: np.ndarray, states: list[np.ndarray] | None = None) -> tuple[np.ndarray, list[np.ndarray]]:
        return self.model.embed(features, states)

    def scores(self, embedding: np.ndarray) -> np.ndarray:
        return embedding

    def initial_state(self, batch: int = 1) -> list[np.ndarray]:
        return self.model.initial_state(batch)


def require_embedding(model: Any, source: str) -> None:
    """`EnrollmentError` unless ``model`` has an ``embedding`` output."""
    if not getattr(model, "has_embedding", False):
        raise EnrollmentError(
            f"{source} has no '{EMBEDDING_NAME}' output to enrol on (exported before edgetag added one): "
            f"add it with `edgetag export {source} -o NEW.onnx --add-embedding`, or export the student again"
        )


def padding_samples(card: ModelCard) -> int:
    """Silence added at each end of an example clip: a window less one hop (window models), none (stateful)."""
    if card.streaming_mode != "window":
        return 0
    return max(card.window_frames - card.hop_frames, 0) * card.frontend.hop_length


def decision_embeddings(model: Any, samples: np.ndarray, *, pad: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(unit embeddings [n, D], RMS level in dBFS [n] of each decision's audio, whether each decision's
    window holds the whole clip or lies wholly inside it [n]) of a clip.

    ``pad``: surround the clip with `padding_samples` of silence (example clips);
    background audio is run as it is, as a stream would see it.
    """
    card = model.card
    fe = card.frontend
    pad_n = padding_samples(card) if pad else 0
    audio = np.concatenate([np.zeros(pad_n, np.float32), samples, np.zeros(pad_n, np.float32)]) if pad_n else samples
    run = run_clip(_EmbeddingView(model), compute_features(np.ascontiguousarray(audio, np.float32), fe))
    if not len(run):
        return np.zeros((0, card.embedding["size"]), np.float32), np.zeros(0), np.zeros(0, bool)
    span_frames = card.window_frames if card.streaming_mode == "window" else 1
    ends = run.end_samples
    starts = np.maximum(ends - ((span_frames - 1) * fe.hop_length + fe.win_length), 0)
    power = np.concatenate([[0.0], np.cumsum(np.square(audio, dtype=np.float64))])
    mean_power = (power[ends] - power[starts]) / np.maximum(ends - starts, 1)
    levels = 10.0 * np.log10(np.maximum(mean_power, 1e-30))
    # a window that sees only the edge of the sound and silence stands for neither
    overlap = np.minimum(ends, pad_n + len(samples)) - np.maximum(starts, pad_n)
    covered = overlap >= np.minimum(ends - starts, len(samples)) - fe.hop_length
    return unit_rows(run.logits.reshape(len(run), -1)), levels, covered


def embed_example(model: Any, samples: np.ndarray, source: str) -> ClipEmbedding:
    """An example clip's embedding; `EnrollmentError` when it is too short or silent."""
    rate = model.card.frontend.sample_rate
    seconds = len(samples) / rate
    if seconds < MIN_CLIP_SECONDS:
        raise EnrollmentError(f"{source} is too short: {seconds:.3f} s (an example needs at least {MIN_CLIP_SECONDS:g} s)")
    level = level_dbfs(samples)
    if level < SILENCE_DBFS:
        what = "every sample is zero" if level == -math.inf else f"RMS {level:.1f} dBFS"
        raise EnrollmentError(f"{source} is silent: {what} (an example needs more than {SILENCE_DBFS:g} dBFS)")
    embeddings, levels, covered = decision_embeddings(model, samples, pad=True)
    if not len(embeddings):
        raise EnrollmentError(f"{source} is too short: {seconds:.3f} s gives no decision of {model.card.name}")
    active = covered & (levels >= max(levels.max() - ACTIVE_RANGE_DB, SILENCE_DBFS))
    chosen = embeddings[active] if active.any() else embeddings
    return ClipEmbedding(source, unit_rows(chosen.mean(axis=0)), chosen)


def default_background(sample_rate: int) -> tuple[list[np.ndarray], str]:
    """The background when none is given: the built-in demo music and a second of silence."""
    from edgetag.runtime.demo import demo_music

    return [demo_music(sample_rate), np.zeros(sample_rate, np.float32)], "built-in demo music (8 s) and 1 s of silence"


# ---------------------------------------------------------------------------- driver
@dataclass
class EnrollResult:
    path: Path
    card: ModelCard
    enrollment: Enrollment
    scale: float
    center: float
    background: str
    background_decisions: int
    added: dict[str, int]
    seconds: float


def load_clip(path: Path, sample_rate: int) -> np.ndarray:
    from edgetag.runtime.audio import load_audio

    return load_audio(path, sample_rate)


def enroll(
    model_path: str | os.PathLike[str],
    additions: Sequence[tuple[str, Sequence[Path | tuple[str, np.ndarray]]]],
    output: str | os.PathLike[str],
    *,
    background: Sequence[Path | tuple[str, np.ndarray]] | None = None,
    keep_labels: bool = False,
    name: str | None = None,
    threads: int | None = 1,
    min_examples: int = MIN_EXAMPLES,
    log: Callable[[str], None] | None = None,
) -> EnrollResult:
    """Enrol ``additions`` (label, clips: files or (name, samples at the model's rate)) into ``model_path``.

    ``model_path``: a student with an ``embedding`` output, or a model enrolled
    before (its labels are updated with the new examples, others are added).
    Writes ``output`` (never ``model_path``) atomically; the input is not touched.
    """
    import time

    from edgetag.runtime.model import load_model

    say = log or (lambda _m: None)
    began = time.perf_counter()
    source_path, out = Path(model_path), Path(output)
    same = out.resolve() == source_path.resolve() or (
        out.exists() and source_path.exists() and os.path.samefile(out, source_path))  # a hard link, too
    if same:
        raise EnrollmentError(f"the output {out} is the input model: give another -o (the input is never changed)")
    if out.suffix.lower() != ".onnx":
        raise EnrollmentError(f"the output {out} must be an .onnx file")
    model = load_model(source_path, threads=threads)
    card = model.card
    require_embedding(model, str(source_path))
    previous = card.provenance.get("enrollment")
    names = [label for label, _ in additions]
    if not additions:
        raise EnrollmentError("nothing to enrol: give at least one --add NAME=FILES")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise EnrollmentError(f"label(s) {repeated} given more than once: one --add per label (list its files with commas)")
    kept_labels: list[str] = list(previous.get("kept_labels", [])) if previous else []
    if previous and keep_labels and not kept_labels:
        raise EnrollmentError(f"{source_path} was enrolled without its source model's labels; they cannot come back: "
                              "enrol from the source model with --keep-labels")
    if not previous and keep_labels:
        from edgetag.runtime.pitch import is_pitch_model

        if card.task != "multi_label" or is_pitch_model(card):
            raise EnrollmentError(f"--keep-labels needs a multi-label tagger; {card.name} is "
                                  f"{'a pitch model' if is_pitch_model(card) else card.task}")
        kept_labels = list(card.labels)
    clashes = sorted(set(names) & set(kept_labels))
    if clashes:
        raise EnrollmentError(f"label(s) {clashes} are already labels of {card.name}: enrol under other names")
    seen: dict[str, str] = {}
    for label, clips in additions:
        for clip in clips:
            key = str(Path(clip).resolve()) if isinstance(clip, Path) else f"<{clip[0]}>"
            if key in seen:
                raise EnrollmentError(f"{clip if isinstance(clip, Path) else clip[0]} is given twice "
                                      f"({seen[key]} and {label}): each example belongs to one label")
            seen[key] = label

    onnx = import_onnx()
    graph_model = onnx.load_from_string(source_path.read_bytes())
    if previous:
        stored = stored_enrollment(graph_model, card)
        labels, groups = list(stored.labels), [list(g) for g in stored.examples]
    else:
        labels, groups = [], []
    for label, clips in additions:  # before any clip is read: a new label's examples must be enough
        if label not in labels and len(clips) < min_examples:
            raise EnrollmentError(f"{label}: {len(clips)} example(s); a label needs at least {min_examples} "
                                  "(distinct recordings of the sound)")
    rate = card.frontend.sample_rate
    added: dict[str, int] = {}
    feature_clips: list[np.ndarray] = []  # the new examples' audio, for the test vector
    for label, clips in additions:
        fresh = []
        for clip in clips:
            title, samples = (str(clip), load_clip(clip, rate)) if isinstance(clip, Path) else clip
            fresh.append(embed_example(model, samples, title))
            feature_clips.append(samples)
        if label in labels:
            groups[labels.index(label)] += fresh
        else:
            labels.append(label)
            groups.append(fresh)
        added[label] = len(fresh)
    for label, clips in zip(labels, groups):
        if len(clips) < min_examples:
            raise EnrollmentError(f"{label}: {len(clips)} example(s); a label needs at least {min_examples} "
                                  "(distinct recordings of the sound)")
    if background:
        bg_audio = [(str(b), load_clip(b, rate)) if isinstance(b, Path) else b for b in background]
        bg_name = f"{len(bg_audio)} clip(s), {sum(len(a) for _, a in bg_audio) / rate:.1f} s"
    else:
        demo, bg_name = default_background(rate)
        bg_audio = [("demo", a) for a in demo]
    bg = [decision_embeddings(model, a, pad=False)[0] for _, a in bg_audio]
    bg_rows = np.concatenate(bg) if bg else np.zeros((0, card.embedding["size"]), np.float32)
    if not len(bg_rows):
        raise EnrollmentError(f"the background audio ({bg_name}) gives no decision: give longer clips")
    enrollment = calibrate(Enrollment(labels, groups), bg_rows)
    sims = [s.threshold for s in enrollment.stats]
    scale, center = head_constants(sims)
    say(f"{len(labels)} label(s) from {sum(enrollment.counts())} examples; background {bg_name}, "
        f"{len(bg_rows)} decisions")

    if previous:
        strip_head(graph_model)
    attach_head(graph_model, enrollment, scale, center, len(kept_labels))
    thresholds = [card_threshold(t, scale, center) for t in sims]
    if kept_labels:
        source_thresholds = (card.thresholds[-len(kept_labels):] if previous else card.thresholds)
        thresholds += list(source_thresholds)
    record = _record(card, source_path, enrollment, scale, center, bg_name, len(bg_rows), added, kept_labels, previous)
    source_precision = str(card.test_vector.get("precision", card.provenance.get("export", {}).get("precision", "fp32")))
    new_card = ModelCard(
        name=name or (card.name if previous else f"{card.name}-enrolled"),
        task="multi_label",
        labels=tuple(labels + kept_labels),
        frontend=card.frontend,
        streaming_mode=card.streaming_mode,
        window_frames=card.window_frames,
        hop_frames=card.hop_frames,
        thresholds=tuple(thresholds),
        states=card.states,
        provenance={"enrollment": record,
                    "source_model": card.provenance.get("source_model") if previous else _source_entry(card, source_path)},
        metrics={"enroll_loo_accuracy": enrollment.loo_accuracy,
                 "enroll_calibration_true_accept": float(np.mean([s.true_accept for s in enrollment.stats])),
                 "enroll_calibration_false_accept": float(np.mean([s.false_accept for s in enrollment.stats]))},
        parameters=card.parameters + int(sum(enrollment.counts())) * int(card.embedding["size"]),
        macs_per_second=card.macs_per_second + _head_macs(card, len(labels)),
        embedding=card.embedding,
    )
    from edgetag.runtime.verify import pick_frames, vector_frames

    # the test vector: the loudest span of the longest example long enough (it exercises the new labels),
    # else of the background
    need = vector_frames(new_card)
    examples = [f for f in (compute_features(np.ascontiguousarray(a, np.float32), card.frontend) for a in feature_clips)
                if len(f) >= need]
    frames = pick_frames(examples or [compute_features(np.ascontiguousarray(a, np.float32), card.frontend)
                                      for _, a in bg_audio], need)
    written = seal(graph_model, new_card, out, frames, precision=source_precision,
                   metadata={DECISIONS_KEY: decisions_entry(enrollment)})
    return EnrollResult(out, written, enrollment, scale, center, bg_name, len(bg_rows), added,
                        time.perf_counter() - began)


def _head_macs(card: ModelCard, k: int) -> float:
    decisions = card.frontend.frame_rate / card.hop_frames
    return float(decisions * (int(card.embedding["size"]) * (k + 1)))


def _source_entry(card: ModelCard, path: Path) -> dict[str, Any]:
    """What the enrolled card says of the model it was enrolled on (its card's full provenance stays in that file)."""
    export = card.provenance.get("export", {})
    return {
        "name": card.name,
        "file": path.name,
        "sha256": card.integrity.get("sha256", "not recorded"),
        "precision": export.get("precision", "fp32"),
        "labels": card.n_labels,
        "task": card.task,
        "student": {"kind": export.get("student_kind"), "params": export.get("student_params"),
                    "weights_hash": export.get("weights_hash")},
        "teachers": card.provenance.get("teachers", []),
    }


def _record(card: ModelCard, source_path: Path, enrollment: Enrollment, scale: float, center: float,
            background: str, background_decisions: int, added: dict[str, int], kept_labels: list[str],
            previous: dict[str, Any] | None) -> dict[str, Any]:
    """The card's ``enrollment`` record (provenance): how, with what, and each label's calibration."""
    from edgetag.runtime.version import package_version

    today = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    labels = {}
    for label, clips, stats in zip(enrollment.labels, enrollment.examples, enrollment.stats):
        labels[label] = {
            "examples": len(clips),
            "files": [Path(c.source).name for c in clips],
            "similarity_threshold": round(stats.threshold, 6),
            "threshold": round(card_threshold(stats.threshold, scale, center), 6),
            "calibration": {
                "separable": stats.separable,
                "loo_positive_p10": round(stats.positive_quantile, 6),
                "negative_p99": round(stats.negative_quantile, 6),
                "positive_decisions": stats.positives,
                "negative_decisions": stats.negatives,
                "true_accept": round(stats.true_accept, 4),
                "false_accept": round(stats.false_accept, 4),
                "background_accept": round(stats.background_accept, 4),
                "other_labels_accept": round(stats.other_labels_accept, 4),
                "closest_other_label": stats.closest_other_label,
                "raised_to_background": stats.raised_to_background,
            },
        }
    history = list(previous.get("history", [])) if previous else []
    history.append({"date": today, "added": added, "from": source_path.name})
    return {
        "method": "prototypes: per label the mean of its examples' L2-normalised clip embeddings (a clip's: the mean "
                  "of its decisions' L2-normalised embeddings: silence-padded, the decisions whose window holds the "
                  f"whole clip or lies inside it, within {ACTIVE_RANGE_DB:g} dB of its loudest); logits = scale * (cosine(embedding, prototype) - center); "
                  "scores sigmoid(logits); the examples are stored in the graph (initializer "
                  f"'{EXAMPLES_INIT}') so more examples re-average them",
        "calibration": f"per label on decision cosine similarities: leave-one-out positives vs background and the "
                       f"other labels' examples; threshold half way between the positives' {POSITIVE_QUANTILE:g} "
                       f"and the negatives' {NEGATIVE_QUANTILE:g} quantiles, or the max of (true - false accepts) "
                       "when they overlap; never below the threshold the same rule gives against the background "
                       "alone",
        "labels": labels,
        "kept_labels": kept_labels,
        "scale": round(scale, 6),
        "center": round(center, 6),
        "background": background,
        "background_decisions": background_decisions,
        "loo_accuracy": round(enrollment.loo_accuracy, 4),
        "embedding": dict(card.embedding),
        "source_sha256": (previous or {}).get("source_sha256") or card.integrity.get("sha256", "not recorded"),
        "date": today,
        "history": history,
        "edgetag": package_version(),
    }
