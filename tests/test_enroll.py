"""Embeddings out of the built-in models, and `edgetag enroll` on them (real models, real ONNX Runtime, real WAVs).

Three synthetic but distinct sounds (steady tones, noise bursts, rising
chirps), four example files each and two held out, are enrolled on the
built-in music-tags student; the written model must tag the held-out files
right, reject audio that is none of them, run through ``tag``, ``verify``,
``info`` and the Python API, refuse bad input in one line without touching
the input model, and take more examples later.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")
sf = pytest.importorskip("soundfile")

from edgetag.runtime.cli import main
from edgetag.runtime.engine import offline_decisions
from edgetag.runtime.model import load_model
from edgetag.runtime.model_card import EMBEDDING_NAME, METADATA_KEY
from edgetag.runtime.models import resolve_model

SR = 16000
CLASSES = ("tone", "noise", "chirp")


def _sound(kind: str, rng: np.random.Generator, seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    if kind == "tone":  # a steady sine with soft edges
        x = np.sin(2 * np.pi * rng.uniform(400, 900) * t) * np.minimum(1, np.minimum(t / 0.02, (seconds - t) / 0.05))
    elif kind == "noise":  # 80 ms bursts of white noise, four a second
        x = rng.standard_normal(len(t)) * ((t % 0.25) < 0.08)
    else:  # exponential sweeps from a few hundred Hz to a few kHz, two a second
        f0, f1 = rng.uniform(200, 400), rng.uniform(3000, 5000)
        x = np.sin(2 * np.pi * np.cumsum(f0 * (f1 / f0) ** ((t % 0.5) / 0.5)) / SR)
    return (0.3 * x).astype(np.float32)


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    """``train/<class>/`` (4 files each), ``test/<class>/`` (2 each) and odd files, as WAVs."""
    root = tmp_path_factory.mktemp("clips")
    for k, kind in enumerate(CLASSES):
        rng = np.random.default_rng(10 + k)
        for i in range(6):
            folder = root / ("train" if i < 4 else "test") / kind
            folder.mkdir(parents=True, exist_ok=True)
            sf.write(folder / f"{kind}{i}.wav", _sound(kind, rng, rng.uniform(1.0, 2.0)), SR)
    sf.write(root / "silent.wav", np.zeros(SR, np.float32), SR)
    sf.write(root / "short.wav", _sound("tone", np.random.default_rng(0), 0.05), SR)
    # audio that is none of them: a click train, a square-wave chord, a buzzing vowel, brown noise
    t = np.arange(3 * SR) / SR
    brown = np.cumsum(np.random.default_rng(1).standard_normal(3 * SR))
    others = {
        "clicks": np.where(np.arange(3 * SR) % 1600 < 8, 0.8, 0.0),
        "square_chord": 0.1 * sum(np.sign(np.sin(2 * np.pi * f * t)) for f in (261.6, 329.6, 392.0)),
        "buzz": 0.2 * sum(np.sin(2 * np.pi * 120 * h * t) / h for h in range(1, 30)),
        "brown": 0.3 * brown / np.abs(brown).max(),
    }
    (root / "other").mkdir()
    for name, x in others.items():
        sf.write(root / "other" / f"{name}.wav", x.astype(np.float32), SR)
    return {"root": root, "train": root / "train", "test": root / "test"}


def _add_args(train: Path, classes=CLASSES) -> list[str]:
    return [a for kind in classes for a in ("--add", f"{kind}={train / kind}")]


@pytest.fixture(scope="module")
def enrolled(clips, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("enrolled") / "mine.onnx"
    assert main(["enroll", *_add_args(clips["train"]), "-o", str(out)]) == 0
    return out


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ------------------------------------------------------------------------------ embeddings
@pytest.mark.parametrize("name", ["music-tags", "music-tags-int8", "pitch", "pitch-int8"])
def test_builtin_models_have_an_embedding_beside_unchanged_logits(name: str) -> None:
    model = load_model(resolve_model(name), threads=1)
    size = {"music-tags": 256, "pitch": 384}[name.removesuffix("-int8")]
    assert model.card.embedding["size"] == size and "final classifier" in model.card.embedding["layer"]
    # the normal path fetches logits and states only; the test vector (export-time scores) still holds
    assert EMBEDDING_NAME not in model._output_names
    assert main(["verify", name]) == 0
    rng = np.random.default_rng(0)
    frames = model.card.window_frames if model.card.streaming_mode == "window" else 7
    x = (rng.standard_normal((2, frames, model.card.frontend.n_bins)) - 5).astype(np.float32)
    logits, states = model.run(x)
    embedding, embed_states = model.embed(x)
    assert embedding.shape == (*logits.shape[:-1], size)
    assert all(np.array_equal(a, b) for a, b in zip(states, embed_states))
    if name.endswith("-int8"):
        return
    # it is what the classifier reads: the classifier's weights on it give the logits
    graph = onnx.load(str(resolve_model(name))).graph
    weights = {t.name: onnx.numpy_helper.to_array(t) for t in graph.initializer}
    if "tm/classifier_w" in weights:  # a time-major streaming graph (export/stream_layout.py): MatMul [D, labels]
        w, b = weights["tm/classifier_w"].T, weights["tm/classifier_b"]
    else:
        w, b = weights["inner.classifier.weight"], weights["inner.classifier.bias"]
        w = w.reshape(w.shape[0], -1)  # Linear [labels, D]; 1x1 Conv [labels, D, 1]
    np.testing.assert_allclose(embedding @ w.T + b, logits, atol=1e-4)


# ------------------------------------------------------------------------------ enrolment
def test_enrolled_model_tags_held_out_clips_and_rejects_other_audio(clips, enrolled) -> None:
    model = load_model(enrolled, threads=1)
    card = model.card
    assert card.labels == CLASSES and card.task == "multi_label"
    record = card.provenance["enrollment"]
    assert {k: v["examples"] for k, v in record["labels"].items()} == dict.fromkeys(CLASSES, 4)
    assert record["source_sha256"] == load_model(resolve_model("music-tags")).card.integrity["sha256"]
    assert record["date"] and record["loo_accuracy"] == 1.0
    assert all(0.2 - 1e-6 <= t <= 0.8 + 1e-6 for t in card.thresholds)
    thresholds = np.array(card.thresholds)
    for kind in CLASSES:
        for path in sorted((clips["test"] / kind).glob("*.wav")):
            samples = sf.read(path, dtype="float32")[0]
            scores = np.stack([d.scores for d in offline_decisions(model, samples)])
            assert CLASSES[int(np.argmax(scores.mean(axis=0)))] == kind, path.name
            on = scores >= thresholds
            assert on[:, CLASSES.index(kind)].mean() >= 0.5, (path.name, scores)
            assert on[:, [i for i, c in enumerate(CLASSES) if c != kind]].mean() <= 0.1, (path.name, scores)
    for path in sorted((clips["root"] / "other").glob("*.wav")):  # none of these: no label on
        samples = sf.read(path, dtype="float32")[0]
        scores = np.stack([d.scores for d in offline_decisions(model, samples)])
        assert (scores >= thresholds).mean() <= 0.05, (path.name, scores.max(axis=0))


def test_enrolled_model_runs_in_tag_verify_info_and_the_api(clips, enrolled, capsys) -> None:
    import edgetag

    wav = clips["test"] / "chirp" / "chirp4.wav"
    assert main(["tag", str(wav), "--model", str(enrolled), "--format", "summary"]) == 0
    assert "top: chirp" in capsys.readouterr().out
    assert main(["verify", str(enrolled)]) == 0
    assert "ok " in capsys.readouterr().out
    assert main(["info", str(enrolled)]) == 0
    out = capsys.readouterr().out
    assert "enrollment" in out and all(f"  {c}  (" in out for c in CLASSES)
    tagger = edgetag.load(str(enrolled), threads=1)
    samples, rate = sf.read(wav, dtype="float32")
    decisions = tagger.push(samples, sample_rate=rate)
    assert decisions and decisions[-1].top(1)[0][0] == "chirp" and "chirp" in decisions[-1].active


def test_reenrolment_updates_counts_and_adds_labels(clips, enrolled, tmp_path, capsys) -> None:
    before = _digest(enrolled)
    more = tmp_path / "more.onnx"
    test = clips["test"]
    args = ["enroll", "--model", str(enrolled), "--add", f"tone={test / 'tone'}", "--add",
            f"both={test / 'noise' / 'noise4.wav'},{test / 'chirp' / 'chirp4.wav'},{test / 'chirp' / 'chirp5.wav'}"]
    assert main([*args, "-o", str(more)]) == 0
    assert _digest(enrolled) == before  # the input is never touched
    card = load_model(more).card
    record = card.provenance["enrollment"]
    assert card.labels == (*CLASSES, "both")
    assert {k: v["examples"] for k, v in record["labels"].items()} == {"tone": 6, "noise": 4, "chirp": 4, "both": 3}
    assert [h["added"] for h in record["history"]] == [dict.fromkeys(CLASSES, 4), {"tone": 2, "both": 3}]
    # the stored examples: six tones now average into the tone prototype
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in onnx.load(str(more)).graph.initializer}
    assert inits["enroll/examples"].shape == (17, 256) and inits["enroll/assignment"].shape == (4, 17)
    np.testing.assert_allclose(inits["enroll/assignment"][0, :6], 1 / 6)
    assert main(["verify", str(more)]) == 0
    # 'both' sounds like noise and chirp: the overlap is reported (the floor itself: the calibration test below)
    calibration = record["labels"]["both"]["calibration"]
    assert calibration["closest_other_label"] in ("noise", "chirp") and calibration["other_labels_accept"] > 0
    assert "of the other labels' (most: " in capsys.readouterr().out


def test_a_label_added_later_cannot_lower_an_older_labels_threshold_into_the_background() -> None:
    """Calibration on unit vectors: B, added later, sounds just like A and has many decisions, and a third of
    A's decisions are far from its prototype. Against the background and B together, the overlap rule would
    put A's threshold near 0, accepting all the background; it stays where the background alone puts it."""
    from edgetag.runtime.enroll_calibration import ClipEmbedding, Enrollment, calibrate, unit_rows

    rng = np.random.default_rng(0)
    axis = np.eye(16, dtype=np.float32)

    def clip(n: int, far: int = 0) -> ClipEmbedding:
        decisions = axis[0] + 0.05 * rng.standard_normal((n, 16)).astype(np.float32)
        decisions[:far] = axis[0] + 0.6 * rng.standard_normal((far, 16)).astype(np.float32)
        decisions = unit_rows(decisions)
        return ClipEmbedding("x", unit_rows(decisions.mean(axis=0)[None])[0], decisions)

    a = [clip(10, far=4) for _ in range(4)]
    b = [clip(100) for _ in range(4)]
    background = unit_rows(axis[2] + axis[0] + 0.35 * rng.standard_normal((100, 16)).astype(np.float32))
    alone = calibrate(Enrollment(["a"], [a]), background).stats[0]
    both = calibrate(Enrollment(["a", "b"], [a, b]), background).stats
    assert both[0].raised_to_background and both[0].threshold == alone.threshold
    assert both[0].background_accept == alone.background_accept < 0.05
    assert both[0].closest_other_label == "b" and both[0].other_labels_accept > 0.5


def test_a_label_that_sounds_like_the_background_is_warned_about(clips, tmp_path, capsys) -> None:
    """Noise bursts enrolled against a background of the same noise: written, with a warning that names the label
    (the threshold that keeps the background out also keeps most of its own examples out)."""
    out = tmp_path / "noisy.onnx"
    for classes in (("noise",), CLASSES):
        args = ["enroll", *_add_args(clips["train"], classes), "--background", str(clips["test"] / "noise"),
                "-o", str(out)]
        assert main(args) == 0 and out.exists()
        err = capsys.readouterr().err
        assert "warning: noise accepts only" in err and "warning: tone" not in err and "warning: chirp" not in err


def test_keep_labels_keeps_the_source_scores_bit_identical(clips, tmp_path) -> None:
    out = tmp_path / "keep.onnx"
    assert main(["enroll", *_add_args(clips["train"], CLASSES[:2]), "--keep-labels", "-o", str(out)]) == 0
    source, model = load_model(resolve_model("music-tags"), threads=1), load_model(out, threads=1)
    assert model.card.labels == (*CLASSES[:2], *source.card.labels)
    assert model.card.thresholds[2:] == source.card.thresholds
    samples = sf.read(clips["test"] / "tone" / "tone4.wav", dtype="float32")[0]
    a, b = offline_decisions(source, samples), offline_decisions(model, samples)
    assert len(a) == len(b) and all(np.array_equal(x.scores, y.scores[2:]) for x, y in zip(a, b))


def _without_embedding(path: Path) -> Path:
    """A copy of music-tags as files were before the embedding output (no digest, so it loads unsealed)."""
    model = onnx.load(str(resolve_model("music-tags")))
    for collection in (model.graph.output, model.graph.node):
        keep = [x for x in collection if EMBEDDING_NAME not in (getattr(x, "name", ""), *getattr(x, "output", []))]
        del collection[:]
        collection.extend(keep)
    entry = next(p for p in model.metadata_props if p.key == METADATA_KEY)
    card = json.loads(entry.value)
    for key in ("embedding", "integrity", "test_vector"):
        card.pop(key)
    entry.value = json.dumps(card)
    path.write_bytes(model.SerializeToString())
    return path


@pytest.mark.parametrize("case, needle", [
    ("two examples", "tone: 2 example(s); a label needs at least 3"),
    ("silent", "silent.wav is silent"),
    ("short", "short.wav is too short"),
    ("duplicate names", "label(s) ['tone'] given more than once"),
    ("no embedding", "has no 'embedding' output"),
    ("output is input", "is the input model"),
    ("separator in a name", "contains ';', which CSV output puts between the labels"),
])
def test_bad_input_is_refused_in_one_line_and_the_input_is_untouched(clips, tmp_path, capsys, case, needle) -> None:
    train, root = clips["train"], clips["root"]
    model = tmp_path / "in.onnx"
    shutil.copyfile(resolve_model("music-tags"), model)
    out = tmp_path / "out.onnx"
    tones = sorted((train / "tone").glob("*.wav"))
    add = {
        "two examples": ["--add", f"tone={tones[0]},{tones[1]}"],
        "silent": ["--add", f"tone={tones[0]},{tones[1]},{root / 'silent.wav'}"],
        "short": ["--add", f"tone={tones[0]},{tones[1]},{root / 'short.wav'}"],
        "duplicate names": ["--add", f"tone={train / 'tone'}", "--add", f"tone={train / 'noise'}"],
        "no embedding": ["--add", f"tone={train / 'tone'}"],
        "output is input": ["--add", f"tone={train / 'tone'}"],
        "separator in a name": ["--add", f"tone;hum={train / 'tone'}"],
    }[case]
    if case == "no embedding":
        _without_embedding(model)
    if case == "output is input":
        out = model
    before = _digest(model)
    assert main(["enroll", "--model", str(model), *add, "-o", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0] and "Traceback" not in err[0], err
    assert _digest(model) == before
    assert case == "output is input" or not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["in.onnx"]  # no temporary file left either
