"""Few-shot enrolment (`edgetag enroll`) measured on real recorded sounds and on instrument renders.

Three sets, each prepared by this script from Debian packages (``prepare``):

- **drums** (real recordings): the drum kits of ``hydrogen-drumkits`` (14 kits
  of sampled acoustic and electronic drums), one class per instrument kind
  (kick, snare, closed / open hi-hat, crash, ride, tom, clap, cowbell, ...),
  read from each kit's ``drumkit.xml``; a kit's velocity layers of one
  instrument are one *group*.
- **sfx** (real recordings): everyday sounds recorded for games (birds, farm animals, wolves,
  footsteps, doors, fire, water, ...), from the audio of 8 Debian game data packages
  (`SFX_PACKAGES`), one class per word of the file name (`SFX_CLASSES`, fixed before any
  score was read, corrected from the names alone); the numbered variants and takes of one sound
  in one package are one *group* (`sfx_group`), and byte-identical copies are kept once.
- **renders**: single-instrument General MIDI clips (3 s, 10 instruments)
  rendered by the instruments recipe (``training/recipes/instruments/prepare.py``,
  fluidsynth + FluidR3_GM); each clip is its own group.

Unrelated audio for false accepts: English speech prompts
(``asterisk-core-sounds-en-wav``) and sonic-pi's non-percussive samples
(``sonic-pi-samples``: ambient pads, guitars, vinyl noise, phone and robot
sounds). A disjoint part of the speech prompts is the ``given`` background.

For each number of examples per class (1, 3, 5, 10) and each trial (a seed),
every class enrols ``n`` clips drawn at random, and is tested on all its clips
of *other groups* (never a velocity layer of an enrolled sample). Everything
runs through `edgetag.runtime.enroll`'s own functions (clip embeddings,
leave-one-out calibration against the background, head constants); the
enrolled model's scores are computed from cached decision embeddings with the
head's formula, checked against the ONNX file `enroll` writes (max difference
printed). With one example a class has no leave-one-out positives: its own
decisions stand in (optimistic; the command itself requires 3).

A held-out or unrelated clip is heard as in a quiet stream (padded with
silence like an example). Its answer: the label with the highest mean score
over its active decisions (the same rule as enrolment: windows holding the
whole sound or inside it, within 20 dB of its loudest), if that mean reaches
the label's threshold, else "none of these". Reported: closed-set accuracy
(argmax, no rejection), open-set accuracy and macro F1 over the enrolled
classes (a "none" answer is a miss), and false accepts: unrelated clips
answered with a label (clip level) and unrelated decisions with any label on
(decision level). Timing: ``enroll`` of one label from 5 clips, whole command
path (model load, decoding, embeddings, calibration, graph, seal, write), on
one core (``sched_setaffinity``), median of repeats.

    python benchmarks/enrollment.py prepare --data /work/data/enroll
    python benchmarks/enrollment.py run --data /work/data/enroll --set drums --set sfx --set renders --trials 5
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import re
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

PACKAGES = ("hydrogen-drumkits", "asterisk-core-sounds-en-wav", "sonic-pi-samples")
SETS = ("drums", "renders", "sfx")
SHOTS = (1, 3, 5, 10)
#: drum instrument names -> class, first match wins (lower case, on the kit's instrument name)
DRUM_CLASSES: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    # class, any of these words, none of these
    ("hihat_open", ("open hh", "hat open", "hat opened", "hi-hat open", "hat op", "hat 1 op", "hi-hat open"), ()),
    ("hihat_closed", ("closed hh", "hat closed", "hi-hat closed", "hat 1 cl", "hat 2 cl", "hat 3 cl"), ()),
    ("kick", ("kick", "bass drum", "bassdrum"), ()),
    ("snare", ("snare",), ("roll", "rimshot")),
    ("clap", ("clap",), ()),
    ("cowbell", ("cowbell",), ()),
    ("crash", ("crash",), ("ride",)),
    ("ride", ("ride",), ("crash", "bell")),
    ("tom", ("tom",), ()),
    ("tambourine", ("tambourine",), ("pedal",)),
    ("stick", ("stick", "rim click"), ()),
)
#: the ``sfx`` set: everyday sounds recorded for games, from 8 Debian game data packages (only their audio unpacked)
SFX_PACKAGES = ("megaglest-data", "wesnoth-1.16-data", "widelands-data", "minetest-data", "flare-game",
                "supertux-data", "hedgewars-data", "freedroidrpg-data")
#: class, words that give it, words that rule it out; a file name is split into words at ``- _ . ,``, spaces
#: and digits (``default_snow_footstep.1.ogg``: default, snow, footstep), and the first class one of whose
#: words it holds, and none of whose exclusions, is its class. Fixed before any score was read, then
#: corrected from the list of names alone (whole words: a growl is no owl, a bullet no bull, a thunderstick
#: a gun, a cowbell no cow; a moose is no cow; minetest's fire mod names its flint and steel "fire_...",
#: and Wesnoth "fires" bows).
SFX_CLASSES: tuple[tuple[str, frozenset[str], frozenset[str]], ...] = tuple(
    (label, frozenset(words.split()), frozenset(unless.split())) for label, words, unless in (
        ("footstep", "footstep footsteps step steps", ""),
        ("bird", "bird birds owl raven crow twitter", ""),
        ("wolf", "wolf wolves", ""),
        ("chicken", "chicken chickens", ""),
        ("sheep", "sheep lamb", ""),
        ("cow", "cow cows bull ox", ""),
        ("horse", "horse", ""),
        ("rain", "rain", ""),
        ("fire", "fire flame flames campfire", "arrow archer flower gun flint extinguish bow crossbow melee"),
        ("water", "water splash droplet droplets waterfall", "blast rubberduck"),
        ("door", "door doors", ""),
        ("glass", "glass", ""),
        ("thunder", "thunder lightning", ""),
        ("explosion", "explosion explode blast grenadeimpact", "water"),
    ))
_WORD_BREAKS = re.compile(r"[-_.,\s\d]+")
#: words at the end of a name that make another take of the same sound (``open_fire_loop``, ``flame-big-miss``)
_TAKE_WORDS = frozenset({"loop", "miss"})
SFX_SKIP_FOLDERS = re.compile(r"music|/voices?/|/speech|taunt")
AUDIO_SUFFIXES = (".ogg", ".wav", ".flac")
SONIC_PI_UNRELATED = ("ambi_", "guit_", "vinyl_", "mehackit_", "misc_crow", "misc_burp")
#: unrelated clips that are not unrelated to a set: sonic-pi's guitar samples are a class of the renders
NOT_UNRELATED = {"renders": ("guit_",), "sfx": ("misc_crow",)}


# ------------------------------------------------------------------------------ prepare
def _fetch(packages: tuple[str, ...], data: Path, *, audio_only: bool = False) -> Path:
    """``apt-get download`` + ``dpkg -x`` of each package not unpacked yet; the unpack root.

    ``audio_only``: unpack only the package's audio files (the game data packages are mostly graphics)."""
    debs, root = data / "debs", data / "pkgs"
    debs.mkdir(parents=True, exist_ok=True)
    root.mkdir(parents=True, exist_ok=True)  # dpkg -x creates its target folder, not the folders above it
    for pkg in packages:
        if (root / pkg).is_dir():
            continue
        if not list(debs.glob(f"{pkg}_*.deb")):
            subprocess.run(["apt-get", "download", pkg], cwd=debs, check=True)
        deb = sorted(debs.glob(f"{pkg}_*.deb"))[-1]
        # unpacked beside, then renamed: an interrupted dpkg -x leaves no folder that looks complete
        partial = root / f".{pkg}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        if audio_only:
            _unpack_audio(deb, partial)
        else:
            subprocess.run(["dpkg", "-x", str(deb), str(partial)], check=True)
        partial.rename(root / pkg)
    return root


def _unpack_audio(deb: Path, target: Path) -> None:
    """The audio files of a .deb under ``target`` (a member that would land outside it is refused)."""
    import tarfile

    target.mkdir(parents=True)
    command = ["dpkg-deb", "--fsys-tarfile", str(deb)]
    with subprocess.Popen(command, stdout=subprocess.PIPE) as proc:
        assert proc.stdout is not None
        try:
            with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
                for member in tar:
                    if not (member.isfile() and member.name.lower().endswith(AUDIO_SUFFIXES)):
                        continue
                    if not (target / member.name).resolve().is_relative_to(target.resolve()):
                        raise ValueError(f"{deb}: {member.name!r} would land outside {target}")
                    if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4
                        tar.extract(member, target, filter="data")
                    else:
                        tar.extract(member, target)
            while proc.stdout.read(1 << 16):  # the archive's padding: read to the end, so dpkg-deb ends cleanly
                pass
        except tarfile.TarError as exc:
            if proc.wait():  # dpkg-deb failed (its message is on stderr): say so, not that the stream was short
                raise subprocess.CalledProcessError(proc.returncode, command) from exc
            raise
    if proc.returncode:
        raise subprocess.CalledProcessError(proc.returncode, command)


def _drum_class(name: str) -> str | None:
    low = name.lower()
    for label, anyof, noneof in DRUM_CLASSES:
        if any(w in low for w in anyof) and not any(w in low for w in noneof):
            return label
    return None


def drum_rows(root: Path) -> list[dict[str, str]]:
    """One row per sample file of the hydrogen kits: path, label, group (kit + instrument)."""
    rows = []
    kits = root / "hydrogen-drumkits" / "usr" / "share" / "hydrogen" / "data" / "drumkits"
    for xml in sorted(kits.glob("*/drumkit.xml")):
        tree = ET.parse(xml).getroot()
        ns = tree.tag.split("}")[0] + "}" if tree.tag.startswith("{") else ""
        for inst in tree.iter(f"{ns}instrument"):
            label = _drum_class(inst.findtext(f"{ns}name") or "")
            files = [e.text for e in inst.iter(f"{ns}filename") if e.text]
            if label is None:
                continue
            for f in dict.fromkeys(files):
                path = xml.parent / f
                if path.is_file():
                    rows.append({"path": str(path), "label": label,
                                 "group": f"{xml.parent.name}/{inst.findtext(f'{ns}name')}"})
    return rows


def _words(name: str) -> list[str]:
    """The words of a file name without its suffix, lower case (see `SFX_CLASSES`)."""
    return [w for w in _WORD_BREAKS.split(name.lower().rsplit(".", 1)[0]) if w]


def sfx_class(name: str) -> str | None:
    """`SFX_CLASSES`' class of a file name, or None."""
    words = set(_words(name))
    for label, anyof, noneof in SFX_CLASSES:
        if words & anyof and not words & noneof:
            return label
    return None


def sfx_group(package: str, name: str) -> str:
    """The group of a file: its package and its name's words without numbers or take words (``loop``,
    ``miss``), so the numbered variants and the takes of one sound are one group."""
    words = _words(name)
    while len(words) > 1 and words[-1] in _TAKE_WORDS:
        words.pop()
    return f"{package}/{'_'.join(words)}"


def sfx_rows(root: Path) -> list[dict[str, str]]:
    """One row per distinct sound file of the game packages whose name gives a class: path, label, group
    (`sfx_group`). Byte-identical copies (one sound in several tilesets) are kept once."""
    rows, seen = [], set()
    for pkg in SFX_PACKAGES:
        for path in sorted((root / pkg).rglob("*")):
            name = path.name
            if not (name.lower().endswith(AUDIO_SUFFIXES) and path.is_file()) \
                    or SFX_SKIP_FOLDERS.search(str(path.relative_to(root)).lower()):
                continue
            label = sfx_class(name)
            if label is None:
                continue
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            if digest in seen:
                continue
            seen.add(digest)
            rows.append({"path": str(path), "label": label, "group": sfx_group(pkg, name)})
    return rows


def render_rows(data: Path) -> list[dict[str, str]]:
    """Single-instrument renders of the instruments recipe (rendered here when missing)."""
    out = data / "renders"
    if not (out / "manifest.csv").is_file():
        recipe = Path(__file__).resolve().parents[1] / "training" / "recipes" / "instruments" / "prepare.py"
        subprocess.run([sys.executable, str(recipe), "--out", str(out), "--n-labelled", "0", "--n-unlabelled", "0",
                        "--n-test", "200", "--p-two", "0", "--seconds", "3"], check=True)
    import csv

    with open(out / "manifest.csv", encoding="utf-8") as f:
        return [{"path": str(out / r["path"]), "label": r["labels"], "group": r["path"]}
                for r in csv.DictReader(f) if r["labels"] and ";" not in r["labels"]]


def unrelated_rows(root: Path, seed: int = 0) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """(false-accept clips, background clips): speech prompts split 100 / 20, and sonic-pi's non-percussive samples."""
    speech_dir = root / "asterisk-core-sounds-en-wav" / "usr" / "share" / "asterisk" / "sounds" / "en_US_f_Allison"
    speech = sorted(p for p in speech_dir.glob("*.wav") if p.stat().st_size > 16000)  # > 1 s at 8 kHz
    random.Random(seed).shuffle(speech)
    samples = root / "sonic-pi-samples" / "usr" / "share" / "sonic-pi" / "samples"
    sonic = sorted(p for p in samples.glob("*.flac") if p.name.startswith(SONIC_PI_UNRELATED))
    unrelated = [{"path": str(p), "label": "speech", "group": p.name} for p in speech[:100]]
    unrelated += [{"path": str(p), "label": "sonic-pi", "group": p.name} for p in sonic]
    background = [{"path": str(p), "label": "speech", "group": p.name} for p in speech[100:120]]
    return unrelated, background


def cmd_prepare(args: argparse.Namespace) -> int:
    data = Path(args.data)
    # the unrelated audio always; each set's own packages only when it is asked for
    root = _fetch(tuple(p for p in PACKAGES if p != "hydrogen-drumkits" or "drums" in args.set), data)
    if "sfx" in args.set:
        _fetch(SFX_PACKAGES, data, audio_only=True)
    makers = {"drums": lambda: drum_rows(root), "renders": lambda: render_rows(data), "sfx": lambda: sfx_rows(root)}
    sets = {name: makers[name]() for name in args.set}
    unrelated, background = unrelated_rows(root)
    for name, rows in {**sets, "unrelated": unrelated, "background": background}.items():
        with open(data / f"{name}.jsonl", "w", encoding="utf-8") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
        counts = defaultdict(set)
        for r in rows:
            counts[r["label"]].add(r["group"])
        print(f"{name}: {len(rows)} clips; groups per label: "
              + ", ".join(f"{k} {len(v)}" for k, v in sorted(counts.items())))
    return 0


# ---------------------------------------------------------------------------------- run
@dataclass
class Clip:
    path: str
    label: str
    group: str
    example: Any  # ClipEmbedding (padded, active decisions pooled)
    decisions: np.ndarray  # unit embeddings of the active decisions, for scoring


def _read(path: str) -> list[dict[str, str]]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def embed_rows(model: Any, rows: list[dict[str, str]], say) -> list[Clip]:
    from edgetag.runtime.enroll import embed_example, load_clip
    from edgetag.runtime.enroll_calibration import EnrollmentError

    clips, skipped = [], 0
    rate = model.card.frontend.sample_rate
    for row in rows:
        try:
            example = embed_example(model, load_clip(Path(row["path"]), rate), row["path"])
        except (EnrollmentError, OSError, ValueError):
            skipped += 1  # silent, too short or unreadable: the command would refuse it too
            continue
        clips.append(Clip(row["path"], row["label"], row["group"], example, example.decisions))
    say(f"  {len(clips)} clips embedded, {skipped} refused (silent, shorter than 0.1 s or unreadable)")
    return clips


def _scores(decisions: np.ndarray, protos: np.ndarray, scale: float, center: float) -> np.ndarray:
    """The enrolled head's scores on unit decision embeddings (what the ONNX graph computes)."""
    return 1.0 / (1.0 + np.exp(-scale * (decisions @ protos.T - center)))


def _answer(clip: Clip, protos: np.ndarray, scale: float, center: float, thresholds: np.ndarray) -> tuple[int, int]:
    """(open-set answer: label index or -1 for none, closed-set argmax) of one clip."""
    mean = _scores(clip.decisions, protos, scale, center).mean(axis=0)
    best = int(np.argmax(mean))
    return (best if mean[best] >= thresholds[best] else -1), best


def macro_f1(truth: list[int], pred: list[int], k: int) -> float:
    f1 = []
    for c in range(k):
        tp = sum(1 for t, p in zip(truth, pred) if t == c and p == c)
        fp = sum(1 for t, p in zip(truth, pred) if t != c and p == c)
        fn = sum(1 for t, p in zip(truth, pred) if t == c and p != c)
        f1.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
    return float(np.mean(f1))


def run_trial(clips: list[Clip], labels: list[str], n: int, background: np.ndarray, unrelated: list[Clip],
              rng: random.Random) -> dict[str, Any]:
    """One trial's figures (floats) and its closed-set confusion matrix (``closed_confusion``: rows the true
    class, columns the argmax answer)."""
    from edgetag.runtime.enroll_calibration import Enrollment, calibrate, card_threshold, head_constants

    groups: list[list[Clip]] = []
    tests: list[list[Clip]] = []
    for label in labels:
        pool = [c for c in clips if c.label == label]
        names = sorted({c.group for c in pool})
        for _ in range(50):  # a third of the groups (at least one) held out, n examples from the rest
            rng.shuffle(names)
            held = set(names[: max(1, len(names) // 3)])
            train = [c for c in pool if c.group not in held]
            if len(train) >= n:
                break
        else:
            raise ValueError(f"{label}: fewer than {n} clips outside its held-out groups")
        groups.append(rng.sample(train, n))
        tests.append([c for c in pool if c.group in held])
    enrollment = calibrate(Enrollment(list(labels), [[c.example for c in g] for g in groups]), background)
    sims = [s.threshold for s in enrollment.stats]
    scale, center = head_constants(sims)
    thresholds = np.array([card_threshold(t, scale, center) for t in sims])
    protos = enrollment.prototypes()
    truth, open_pred, closed_pred = [], [], []
    for k, test in enumerate(tests):
        for clip in test:
            a, b = _answer(clip, protos, scale, center, thresholds)
            truth.append(k)
            open_pred.append(a)
            closed_pred.append(b)
    fa_clips = [_answer(c, protos, scale, center, thresholds)[0] >= 0 for c in unrelated]
    fa_dec = np.concatenate([(_scores(c.decisions, protos, scale, center) >= thresholds).any(axis=1) for c in unrelated])
    by_source: dict[str, list[bool]] = defaultdict(list)
    for c, fa in zip(unrelated, fa_clips):
        by_source[c.label].append(fa)
    confusion = np.zeros((len(labels), len(labels)), int)
    np.add.at(confusion, (np.array(truth, dtype=int), np.array(closed_pred, dtype=int)), 1)
    return {
        "closed_confusion": confusion,
        "test_clips": len(truth),
        "closed_accuracy": float(np.mean(np.array(closed_pred) == np.array(truth))),
        "open_accuracy": float(np.mean(np.array(open_pred) == np.array(truth))),
        "macro_f1": macro_f1(truth, open_pred, len(labels)),
        "rejected_known": float(np.mean(np.array(open_pred) == -1)),
        "false_accept_clips": float(np.mean(fa_clips)),
        "false_accept_decisions": float(fa_dec.mean()),
        **{f"false_accept_clips_{k}": float(np.mean(v)) for k, v in by_source.items()},
    }


def check_against_onnx(model_name: str, clips: list[Clip], labels: list[str], background_rows: list[dict[str, str]],
                       background: np.ndarray, say) -> float:
    """Enrol 3 clips per label with the real `enroll` (ONNX file) and compare its decision scores with `_scores`."""
    from edgetag.runtime.engine import offline_decisions
    from edgetag.runtime.enroll import decision_embeddings, enroll, load_clip, padding_samples
    from edgetag.runtime.model import load_model
    from edgetag.runtime.models import resolve_model

    picks = {label: [c for c in clips if c.label == label][:3] for label in labels}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "check.onnx"
        bg = [Path(r["path"]) for r in background_rows] or None
        result = enroll(resolve_model(model_name), [(k, [Path(c.path) for c in v]) for k, v in picks.items()], out,
                        background=bg, threads=1)
        enrolled = load_model(out, threads=1)
        source = load_model(resolve_model(model_name), threads=1)
        protos = result.enrollment.prototypes()
        worst = 0.0
        for clip in [c for v in picks.values() for c in v][:6]:
            samples = load_clip(Path(clip.path), source.card.frontend.sample_rate)
            pad = np.zeros(padding_samples(source.card), np.float32)
            audio = np.concatenate([pad, samples, pad])
            got = np.stack([d.scores for d in offline_decisions(enrolled, audio)])
            emb = decision_embeddings(source, samples, pad=True)[0]
            want = _scores(emb, protos, result.scale, result.center)
            worst = max(worst, float(np.abs(got - want).max()))
    say(f"  check: the written ONNX model's scores vs this script's head formula: max abs {worst:.2g}")
    return worst


def time_enrol(model_name: str, files: list[str], repeats: int) -> dict[str, float]:
    """Seconds of `enroll` of one label from ``files`` on one core (a subprocess pinned to CPU 0)."""
    code = f"""
import os, sys, time, json, tempfile
from pathlib import Path
os.sched_setaffinity(0, {{0}})
from edgetag.runtime.enroll import enroll
from edgetag.runtime.models import resolve_model
files = {json.dumps(files)}
times = []
with tempfile.TemporaryDirectory() as tmp:
    for i in range({repeats + 1}):
        t0 = time.perf_counter()
        enroll(resolve_model({model_name!r}), [("sound", [Path(f) for f in files])], Path(tmp) / f"m{{i}}.onnx", threads=1)
        times.append(time.perf_counter() - t0)
print(json.dumps(times[1:]))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    times = json.loads(done.stdout.strip().splitlines()[-1])
    return {"median_s": float(np.median(times)), "min_s": float(np.min(times)), "max_s": float(np.max(times)),
            "repeats": len(times), "audio_s": float(sum(_duration(f) for f in files))}


def _duration(path: str) -> float:
    import soundfile as sf

    info = sf.info(path)
    return info.frames / info.samplerate


def _cpu() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        model = next((line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name")), "")
    except OSError:
        model = ""
    from edgetag.runtime.verify import cpu_description

    return f"{model or platform.processor()} ({cpu_description()}; {os.cpu_count()} logical CPUs)"


def cmd_run(args: argparse.Namespace) -> int:
    import onnxruntime

    from edgetag.runtime.enroll import decision_embeddings, default_background, load_clip
    from edgetag.runtime.model import load_model
    from edgetag.runtime.models import resolve_model

    def say(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    data = Path(args.data)
    missing = [name for name in (*args.set, "unrelated", "background") if not (data / f"{name}.jsonl").is_file()]
    if missing:
        say(f"error: {data} has no {', '.join(f'{m}.jsonl' for m in missing)}: run `python {sys.argv[0]} prepare "
            f"--data {data}" + "".join(f" --set {m}" for m in args.set) + "` first")
        return 2
    model = load_model(resolve_model(args.model), threads=1)
    rate = model.card.frontend.sample_rate
    say(f"model {args.model}; embedding {model.card.embedding['size']} from {model.card.embedding['layer']}")
    say("unrelated audio:")
    unrelated = embed_rows(model, _read(str(data / "unrelated.jsonl")), say)
    bg_rows = _read(str(data / "background.jsonl"))
    backgrounds = {}
    if "default" in args.background:
        audio, _ = default_background(rate)
        backgrounds["default"] = (np.concatenate([decision_embeddings(model, a, pad=False)[0] for a in audio]), [])
    if "given" in args.background:
        backgrounds["given"] = (np.concatenate([decision_embeddings(model, load_clip(Path(r["path"]), rate), pad=False)[0]
                                                for r in bg_rows]), bg_rows)
    results: dict[str, Any] = {"model": args.model, "cpu": _cpu(), "onnxruntime": onnxruntime.__version__,
                               "command": " ".join(sys.argv), "trials": args.trials, "sets": {}}
    for set_name in args.set:
        say(f"set {set_name}:")
        clips = embed_rows(model, _read(str(data / f"{set_name}.jsonl")), say)
        per_label = defaultdict(set)
        for c in clips:
            per_label[c.label].add(c.group)
        # a class needs 3 groups (a third held out) and enough clips in the rest for the most examples drawn
        labels = sorted(k for k, v in per_label.items()
                        if len(v) >= 3 and sum(c.label == k for c in clips) >= max(args.shots) + len(v) // 3
                        + max(sum(c.label == k and c.group == g for c in clips) for g in v))
        clips = [c for c in clips if c.label in labels]
        if len(labels) < 2:
            say(f"error: {set_name}: {len(labels)} class(es) have 3 groups and clips enough for {max(args.shots)} "
                "examples each; enrolment needs at least 2 to be measured (ask for fewer --shots)")
            return 2
        say(f"  {len(labels)} classes with clips enough for {max(args.shots)} examples (the largest --shots; every "
            f"row uses them): {', '.join(f'{k} ({sum(c.label == k for c in clips)})' for k in labels)}")
        skip = NOT_UNRELATED.get(set_name, ())
        others = [c for c in unrelated if not Path(c.path).name.startswith(skip)] if skip else unrelated
        entry: dict[str, Any] = {"classes": labels, "clips": len(clips), "unrelated_clips": len(others),
                                 "by_background": {}}
        for bg_name, (bg, rows) in backgrounds.items():
            if args.check:
                entry.setdefault("onnx_check_max_abs", {})[bg_name] = check_against_onnx(
                    args.model, clips, labels, rows, bg, say)
            table = {}
            for n in args.shots:
                trials = [run_trial(clips, labels, n, bg, others, random.Random(1000 * n + t))
                          for t in range(args.trials)]
                keys = [k for k in trials[0] if k != "closed_confusion"]
                table[str(n)] = {k: {"mean": float(np.mean([t[k] for t in trials])),
                                     "min": float(np.min([t[k] for t in trials])),
                                     "max": float(np.max([t[k] for t in trials]))} for k in keys}
                row = table[str(n)]
                # rows: the true class, columns: the closed-set answer (labels in "classes" order), all trials
                confusion = sum(t["closed_confusion"] for t in trials)
                row["closed_confusion"] = confusion.tolist()
                row["closed_recall"] = {k: round(float(c[i] / max(c.sum(), 1)), 3)
                                        for i, (k, c) in enumerate(zip(labels, confusion))}
                say(f"  {bg_name:7s} {n:2d}-shot: closed acc {row['closed_accuracy']['mean']:.3f}, open acc "
                    f"{row['open_accuracy']['mean']:.3f}, macro F1 {row['macro_f1']['mean']:.3f} "
                    f"[{row['macro_f1']['min']:.3f}, {row['macro_f1']['max']:.3f}], false accepts "
                    f"{100 * row['false_accept_clips']['mean']:.1f} % of clips / "
                    f"{100 * row['false_accept_decisions']['mean']:.1f} % of decisions")
            entry["by_background"][bg_name] = table
        results["sets"][set_name] = entry
        if args.time:
            five = [c.path for c in clips[:5]]
            entry["timing"] = {"what": "enroll() of one label from 5 clips, default background, threads=1, pinned to "
                                       "one core; model load, decoding, embeddings, calibration, graph, seal, write",
                               "files": five, **time_enrol(args.model, five, args.repeats)}
            say(f"  timing of 5 clips ({entry['timing']['audio_s']:.1f} s of audio): median "
                f"{entry['timing']['median_s']:.3f} s [{entry['timing']['min_s']:.3f}, {entry['timing']['max_s']:.3f}]")
    text = json.dumps(results, indent=1)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    print(text)
    return 0


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    defaults = argparse.ArgumentDefaultsHelpFormatter
    p = sub.add_parser("prepare", help="fetch the Debian packages, render the instruments, write the set lists",
                       formatter_class=defaults)
    p.add_argument("--data", default="/work/data/enroll", help="where the packages, renders and set lists go")
    p.add_argument("--set", action="append", choices=SETS, help="repeatable (default: all three)")
    p.set_defaults(func=cmd_prepare)
    p = sub.add_parser("run", help="few-shot accuracy, macro F1 and false accepts", formatter_class=defaults)
    p.add_argument("--data", default="/work/data/enroll", help="what prepare wrote")
    p.add_argument("--model", default="music-tags", help="a built-in model or an .onnx file with an embedding")
    p.add_argument("--set", action="append", choices=SETS, help="repeatable (default: all three)")
    p.add_argument("--shots", type=_positive, nargs="+", default=list(SHOTS),
                   help="examples per class, one row each; the classes are those with clips enough for the largest")
    p.add_argument("--trials", type=_positive, default=5, help="random draws of the examples per row")
    p.add_argument("--background", nargs="+", choices=("default", "given"), default=["default", "given"],
                   help="default: the built-in demo music and silence; given: 20 speech prompts")
    p.add_argument("--check", action="store_true", help="compare with the ONNX file enroll writes")
    p.add_argument("--time", action="store_true", help="time enrolment of 5 clips on one core")
    p.add_argument("--repeats", type=_positive, default=7, help="timing repeats (--time)")
    p.add_argument("--out", help="write the results JSON here too")
    p.set_defaults(func=cmd_run)
    args = ap.parse_args(argv)
    if getattr(args, "set", "x") is None:
        args.set = list(SETS)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
