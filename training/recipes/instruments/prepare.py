#!/usr/bin/env python3
"""Render a small multi-label instrument-tagging set from the General MIDI soundfont.

Each clip is ``--seconds`` (default 3.0 s, one musicnn window) of one or two General
MIDI instruments playing random melodies / chords / drum patterns. The MIDI is
written here as raw bytes (no MIDI library needed), one long file per split with one
clip every ``slot`` seconds and an all-sound-off at the end of each clip; it is
rendered once by fluidsynth with FluidR3_GM and cut into clips (16 kHz mono PCM16).

Splits (manifest.csv, see ``edgetag.training.manifest_format``):

* ``train``, labelled:    ``--n-labelled`` clips with their instrument tags
  (closed world: an instrument not named is negative);
* ``train``, unlabelled:  ``--n-unlabelled`` clips with ``missing=*``
  (every label unknown: only teachers / the mean teacher learn from them);
* ``valid`` and ``test``: labelled.

``manifest_labelled.csv`` holds the same rows minus the unlabelled ones (for a
labels-only baseline that never samples unlabelled clips). ``manifest_mixed.csv``
repeats each labelled train row ``--repeat-labelled`` times (default 8: 320
labelled rows next to 300 unlabelled ones), so that a uniformly sampled batch is
about half labelled, the usual semi-supervised batch mix; the trainer samples
rows uniformly and has no labelled/unlabelled ratio of its own.

Needs ``fluidsynth`` and ``fluid-soundfont-gm``::

    apt-get install -y --no-install-recommends fluidsynth fluid-soundfont-gm
    python3 training/recipes/instruments/prepare.py --out /work/data/instruments
"""

from __future__ import annotations

import argparse
import csv
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# The recipes are scripts of a source checkout, not part of the installed package: their shared
# helpers (training/recipes/recipe_common.py) are found next to them.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from recipe_common import SOUNDFONTS, TICKS_PER_S, render_clips  # noqa: E402


# name: (GM program, lowest note, highest note, style, musicnn-MTT tag column)
INSTRUMENTS: dict[str, tuple[int, int, int, str]] = {
    "piano": (0, 45, 84, "keys"),
    "harpsichord": (6, 48, 84, "keys"),
    "guitar": (24, 40, 76, "plucked"),
    "harp": (46, 40, 84, "plucked"),
    "sitar": (104, 48, 76, "plucked"),
    "violin": (40, 55, 88, "sustained"),
    "cello": (42, 36, 67, "sustained"),
    "flute": (73, 60, 93, "sustained"),
    "choir": (52, 52, 76, "sustained"),
    "drums": (-1, 0, 0, "drums"),
}
LABELS = sorted(INSTRUMENTS)
# Column of each label (in LABELS order) among musicnn-MTT's 50 tags.
MTT_COLUMNS = {"cello": 43, "choir": 35, "drums": 5, "flute": 25, "guitar": 0, "harp": 42,
               "harpsichord": 22, "piano": 9, "sitar": 31, "violin": 12}

DRUM_NOTES = {"kick": [35, 36], "snare": [38, 40], "hat": [42, 44, 46], "tom": [45, 47, 50], "cymbal": [49, 51]}


def _note(events: list, ch: int, pitch: int, vel: int, t0: float, t1: float, base: int) -> None:
    on, off = base + int(t0 * TICKS_PER_S), base + int(t1 * TICKS_PER_S)
    events.append((on, 2, bytes([0x90 | ch, pitch, vel])))
    events.append((max(off, on + 1), 1, bytes([0x80 | ch, pitch, 0])))


def clip_events(rng: random.Random, instruments: list[str], seconds: float, base: int,
                table: dict[str, tuple[int, int, int, str]] | None = None) -> list:
    """Events for one clip starting at tick ``base``; ``table``: the instruments by name (default
    `INSTRUMENTS`; benchmarks/reprogram.py renders other General MIDI instruments with it)."""
    events: list = []
    for k, name in enumerate(instruments):
        program, lo, hi, style = (table or INSTRUMENTS)[name]
        if style == "drums":
            ch = 9
            step = rng.choice([0.125, 0.25])
            t = rng.uniform(0.0, 0.2)
            while t < seconds - 0.05:
                beat = round(t / step)
                hits = []
                if beat % 4 == 0 or rng.random() < 0.15:
                    hits.append(rng.choice(DRUM_NOTES["kick"]))
                if beat % 4 == 2 or rng.random() < 0.1:
                    hits.append(rng.choice(DRUM_NOTES["snare"]))
                if rng.random() < 0.8:
                    hits.append(rng.choice(DRUM_NOTES["hat"]))
                if rng.random() < 0.06:
                    hits.append(rng.choice(DRUM_NOTES["tom"] + DRUM_NOTES["cymbal"]))
                for p in hits:
                    _note(events, ch, p, rng.randint(70, 120), t, min(t + 0.1, seconds), base)
                t += step
            continue
        ch = k  # 0 or 1
        events.append((base, 0, bytes([0xC0 | ch, program])))
        events.append((base, 0, bytes([0xB0 | ch, 7, 110])))  # channel volume
        durations = [0.5, 0.75, 1.0, 1.5] if style == "sustained" else [0.125, 0.25, 0.25, 0.375, 0.5]
        pitch = rng.randint(lo + (hi - lo) // 4, hi - (hi - lo) // 4)
        t = rng.uniform(0.0, 0.25)
        while t < seconds - 0.1:
            d = rng.choice(durations)
            if rng.random() < 0.1:  # a rest
                t += d
                continue
            pitch = min(hi, max(lo, pitch + rng.choice([-7, -5, -4, -3, -2, -1, 1, 2, 3, 4, 5, 7])))
            vel = rng.randint(70, 115)
            chord = [pitch]
            if style in ("keys", "plucked") and rng.random() < 0.3:
                chord += [p for p in (pitch + rng.choice([3, 4]), pitch + 7) if p <= hi]
            hold = d * (1.6 if style == "plucked" else 1.0)
            for p in chord:
                _note(events, ch, p, vel, t, min(t + hold, seconds), base)
            t += d
    # all sound off (cuts release and reverb tails) at the end of the clip
    end = base + int(seconds * TICKS_PER_S)
    for ch in (0, 1, 9):
        events.append((end, 3, bytes([0xB0 | ch, 120, 0])))
        events.append((end, 3, bytes([0xB0 | ch, 121, 0])))
    return events


def choose_instruments(rng: random.Random, i: int, p_two: float, balanced: bool) -> list[str]:
    first = LABELS[i % len(LABELS)] if balanced else rng.choice(LABELS)
    out = [first]
    if rng.random() < p_two:
        out.append(rng.choice([n for n in LABELS if n != first]))
    # the pitched instrument first (channels 0/1), drums use channel 9
    return sorted(out, key=lambda n: INSTRUMENTS[n][3] == "drums")


def render_split(name: str, clips: list[list[str]], rng: random.Random, args: argparse.Namespace, soundfont: str, tmp: Path) -> list[np.ndarray]:
    slot = args.seconds + 1.0
    events: list = []
    for j, instruments in enumerate(clips):
        events += clip_events(rng, instruments, args.seconds, round(j * slot * TICKS_PER_S))
    return render_clips(events, len(clips), args.seconds, slot, soundfont=soundfont, rate=args.rate, tmp=tmp,
                        name=name, rng=rng, level_db=(-12.0, -1.0))


FIELDS = ["path", "start", "end", "labels", "missing", "split", "instruments"]


def mixed_rows(rows: list[dict[str, str]], repeat: int) -> list[dict[str, str]]:
    """Rows with each labelled train row repeated ``repeat`` times (in place)."""
    out = []
    for r in rows:
        out += [r] * (repeat if r["split"] == "train" and r["missing"] != "*" else 1)
    return out


def write_manifests(out: Path, rows: list[dict[str, str]], repeat: int = 8) -> None:
    """manifest.csv (all rows), manifest_labelled.csv (no unlabelled rows), manifest_mixed.csv."""
    for fname, keep in (("manifest.csv", rows), ("manifest_labelled.csv", [r for r in rows if r["missing"] != "*"]),
                        ("manifest_mixed.csv", mixed_rows(rows, repeat))):
        with open(out / fname, "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=FIELDS)
            w.writeheader()
            w.writerows(keep)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="/work/data/instruments", help="output directory (clips/, manifest.csv)")
    ap.add_argument("--n-labelled", type=int, default=40)
    ap.add_argument("--n-unlabelled", type=int, default=300)
    ap.add_argument("--n-valid", type=int, default=0)
    ap.add_argument("--n-test", type=int, default=150)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--rate", type=int, default=16000)
    ap.add_argument("--p-two", type=float, default=0.4, help="probability that a clip has a second instrument")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeat-labelled", type=int, default=8, help="copies of each labelled train row in manifest_mixed.csv")
    ap.add_argument("--soundfont", help="General MIDI .sf2 (default: FluidR3_GM from fluid-soundfont-gm)")
    args = ap.parse_args(argv)

    if shutil.which("fluidsynth") is None:
        sys.exit("fluidsynth not found: apt-get install -y --no-install-recommends fluidsynth fluid-soundfont-gm")
    soundfont = args.soundfont or next((s for s in SOUNDFONTS if Path(s).is_file()), None)
    if soundfont is None or not Path(soundfont).is_file():
        sys.exit("no General MIDI soundfont: apt-get install -y --no-install-recommends fluid-soundfont-gm (or --soundfont)")
    import soundfile as sf

    t0 = time.perf_counter()
    out = Path(args.out)
    (out / "clips").mkdir(parents=True, exist_ok=True)
    rng = random.Random(args.seed)
    plan = [  # (split, kind, count, balanced first instrument)
        ("train", "labelled", args.n_labelled, True),
        ("train", "unlabelled", args.n_unlabelled, False),
        ("valid", "labelled", args.n_valid, True),
        ("test", "labelled", args.n_test, True),
    ]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for split, kind, count, balanced in plan:
            if count <= 0:
                continue
            clips = [choose_instruments(rng, i, args.p_two, balanced) for i in range(count)]
            waves = render_split(f"{split}-{kind}", clips, rng, args, soundfont, Path(tmp))
            for i, (instruments, x) in enumerate(zip(clips, waves)):
                rel = f"clips/{split}-{kind}-{i:04d}.wav"
                sf.write(str(out / rel), x, args.rate, subtype="PCM_16")
                if kind == "unlabelled":
                    rows.append({"path": rel, "start": "", "end": "", "labels": "", "missing": "*", "split": split,
                                 "instruments": ";".join(instruments)})
                else:
                    rows.append({"path": rel, "start": "", "end": "", "labels": ";".join(instruments), "missing": "",
                                 "split": split, "instruments": ";".join(instruments)})
    write_manifests(out, rows, args.repeat_labelled)
    (out / "labels.txt").write_text("\n".join(LABELS) + "\n", encoding="utf-8")
    print(f"{len(rows)} clips ({args.seconds:g} s, {args.rate} Hz) in {out} [{time.perf_counter() - t0:.1f} s]")
    print(f"labels     {', '.join(LABELS)}")
    print(f"musicnn-MTT label_columns {[MTT_COLUMNS[n] for n in LABELS]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
