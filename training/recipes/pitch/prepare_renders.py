#!/usr/bin/env python3
"""Render monophonic General MIDI clips whose f0 is known from the score.

Melodies are single voices of scores from music21's offline corpus (Bach chorale
parts: soprano, alto, tenor, bass; a chord, if any, keeps its top note). Each clip
takes ``--seconds`` of one voice at a random tempo, played by one General MIDI
program (about 90 melodic programs: pianos, chromatic percussion, organs, guitars,
basses, strings, ensembles, brass, reeds, pipes, synth leads and pads), with a
random transposition and octave shift that keeps the notes inside the program's
usual register and inside CREPE's range (MIDI 28..93, 41 Hz .. 1.76 kHz). No
vibrato, no pitch bend, reverb and chorus off (``fluidsynth -R 0 -C 0``), so the
score is the f0: note ``p`` sounds at ``440 * 2 ** ((p - 69) / 12)`` Hz from its
note-on to its note-off, and everything outside notes is unvoiced.

Clips are written as 16 kHz mono PCM16 WAVs under ``OUT/renders/`` with a sidecar
``*.f0.npy`` (float32, Hz, 0 = unvoiced) sampled at the centres of edgetag's
10 ms student frames: frame ``j`` covers samples ``[160 j, 160 j + 1024)``, its
centre is ``(160 j + 512) / 16000`` s (the same convention as the CREPE teacher's
frames). Train and test clips come from disjoint chorales (split by corpus file);
valid clips (``--n-valid``, for choosing between runs) from ``--valid-chorales``
further chorales that neither reads.
A few programs do not sound the score note as their f0 (organs with a 16' stop,
guitar harmonics, ...: ``SCORE_F0_NOT_SOUNDING``); their rows say
``"score_f0": false`` and evaluation leaves them out of the score-f0 metrics.

Every split is one MIDI file (one clip every ``seconds + 1`` s, all-sound-off at
each clip's end) rendered by one fluidsynth call (~400x real time), then cut.
Writes ``OUT/renders.jsonl`` (manifest rows, paths relative to ``--root``).
Resumable: a split whose clips all exist is skipped.

    python3 training/recipes/pitch/prepare_renders.py --out /work/data/pitch --n-train 110 --n-test 24 --n-valid 24
"""

from __future__ import annotations

import argparse
import json
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


HERE = Path(__file__).resolve().parent
SAMPLE_RATE = 16000
HOP = 160
FRAME = 1024

# (first program, last program, lowest MIDI note, highest MIDI note) per GM family we play.
FAMILIES: list[tuple[int, int, int, int]] = [
    (0, 7, 36, 90),      # pianos
    (8, 15, 55, 93),     # chromatic percussion (celesta, glockenspiel, vibraphone, marimba, ...)
    (16, 23, 36, 84),    # organs, accordion, harmonica
    (24, 31, 40, 81),    # guitars
    (32, 39, 28, 55),    # basses
    (40, 44, 36, 88),    # strings (violin .. tremolo strings)
    (48, 55, 40, 81),    # ensembles, choir, voice
    (56, 63, 40, 82),    # brass
    (64, 71, 45, 84),    # reeds
    (72, 79, 60, 93),    # pipes
    (80, 87, 40, 88),    # synth leads
    (88, 95, 40, 84),    # synth pads
]

# Programs whose sound in FluidR3_GM does not have the score note as its f0. Their clips
# still train the student (on CREPE full's labels), but are not scored against score f0.
# Measured with CREPE full on the recipe's renders (share of frames, median offset):
SCORE_F0_NOT_SOUNDING: dict[int, str] = {
    14: "tubular bells: inharmonic strike tone (CREPE full unvoiced on 85 % of frames)",
    16: "drawbar organ: 16' sub-octave stop (one or two octaves below on 83 %)",
    17: "percussive organ: 16' sub-octave stop (an octave below on 71-100 %)",
    18: "rock organ: 16' sub-octave stop (an octave below on 95-100 %)",
    31: "guitar harmonics: sound an octave above the note",
    55: "orchestra hit: a chord stab, no single f0",
    86: "lead 7 (fifths): parallel fifths, CREPE full follows the lower voice (-5 semitones)",
}


def load_voices(n_files: int, seed: int, skip: int = 0) -> list[tuple[str, list[tuple[float, float, int]]]]:
    """(corpus file, [(onset quarters, duration quarters, MIDI pitch)]) for each voice of ``n_files`` chorales,
    after the first ``skip`` of the seeded order."""
    from music21 import corpus

    paths = sorted(str(p) for p in corpus.getComposer("bach"))
    random.Random(seed).shuffle(paths)
    voices = []
    for path in paths[skip : skip + n_files]:
        try:
            score = corpus.parse(path)
        except Exception:  # a corpus file music21 cannot parse: skip it
            continue
        for part in score.parts:
            notes = []
            for n in part.flatten().notes:
                q = float(n.quarterLength)
                if q <= 0:  # grace notes carry no duration
                    continue
                notes.append((float(n.offset), q, max(p.midi for p in n.pitches)))
            if len(notes) >= 8:
                voices.append((Path(path).name, notes))
    return voices


def clip_plan(rng: random.Random, voices: list, seconds: float) -> dict:
    """One clip: a voice excerpt, program, tempo, transposition; notes in seconds."""
    name, notes = rng.choice(voices)
    first_prog, last_prog, lo, hi = rng.choice(FAMILIES)
    program = rng.randint(first_prog, last_prog)
    bpm = rng.uniform(70, 170)
    sec_per_q = 60.0 / bpm
    start = rng.randrange(0, max(1, len(notes) - 8))
    t_start = notes[start][0]
    picked = [(on - t_start, d, p) for on, d, p in notes[start:] if (on - t_start) * sec_per_q < seconds - 0.2]
    pitches = [p for _, _, p in picked]
    # Transpose so the excerpt's span fits [lo, hi] at a random place (octave and key shift).
    span_lo, span_hi = min(pitches), max(pitches)
    room = (hi - lo) - (span_hi - span_lo)
    shift = (lo + rng.randint(0, max(0, room)) - span_lo) if room >= 0 else (lo - span_lo)
    lead = rng.uniform(0.05, 0.3)
    out = []
    for on, d, p in picked:
        pitch = min(93, max(28, p + shift))
        t0 = lead + on * sec_per_q
        t1 = min(seconds - 0.05, t0 + d * sec_per_q * rng.uniform(0.85, 1.0))  # slight detaché
        if t1 > t0 + 0.03:
            out.append((t0, t1, pitch))
    return {"voice": name, "program": program, "bpm": round(bpm, 1), "shift": shift,
            "velocity": rng.randint(70, 118), "notes": out}


def f0_track(notes: list[tuple[float, float, int]], seconds: float) -> np.ndarray:
    """Score f0 (Hz, 0 = unvoiced) at every 10 ms student-frame centre of a clip."""
    n_frames = 1 + (round(seconds * SAMPLE_RATE) - FRAME) // HOP
    centres = (np.arange(n_frames) * HOP + FRAME / 2) / SAMPLE_RATE
    f0 = np.zeros(n_frames, dtype=np.float32)
    for t0, t1, pitch in notes:  # later notes win over an overlapping release
        f0[(centres >= t0) & (centres < t1)] = 440.0 * 2.0 ** ((pitch - 69) / 12.0)
    return f0


def render_split(plans: list[dict], seconds: float, soundfont: str, tmp: Path, rng: random.Random, name: str) -> list[np.ndarray]:
    slot = seconds + 1.0
    events: list = []
    for j, plan in enumerate(plans):
        base = round(j * slot * TICKS_PER_S)
        events.append((base, 0, bytes([0xC0, plan["program"]])))
        events.append((base, 0, bytes([0xB0, 7, 110])))
        for t0, t1, pitch in plan["notes"]:
            on, off = base + int(t0 * TICKS_PER_S), base + int(t1 * TICKS_PER_S)
            events.append((on, 2, bytes([0x90, pitch, plan["velocity"]])))
            events.append((max(off, on + 1), 1, bytes([0x80, pitch, 0])))
        end = base + int(seconds * TICKS_PER_S)
        events.append((end, 3, bytes([0xB0, 120, 0])))  # all sound off: no tail into the next clip
        events.append((end, 3, bytes([0xB0, 121, 0])))
    # no reverb or chorus: the score f0 must be the only pitch in the clip
    return render_clips(events, len(plans), seconds, slot, soundfont=soundfont, rate=SAMPLE_RATE, tmp=tmp, name=name,
                        rng=rng, level_db=(-18.0, -1.0), fluidsynth_args=("-R", "0", "-C", "0"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="/work/data/pitch", help="data directory (renders/ and renders.jsonl go here)")
    ap.add_argument("--root", default=None, help="manifest paths are relative to this (default: OUT's parent)")
    ap.add_argument("--n-train", type=int, default=110)
    ap.add_argument("--n-test", type=int, default=24)
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--n-valid", type=int, default=24, help="clips for choosing between runs")
    ap.add_argument("--chorales", type=int, default=120, help="corpus files to read (80 %% train, 20 %% test)")
    ap.add_argument("--valid-chorales", type=int, default=30, help="further corpus files, for the valid clips only")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--soundfont", help="General MIDI .sf2 (default: FluidR3_GM)")
    args = ap.parse_args(argv)
    if shutil.which("fluidsynth") is None:
        sys.exit("fluidsynth not found: apt-get install -y --no-install-recommends fluidsynth fluid-soundfont-gm")
    soundfont = args.soundfont or next((s for s in SOUNDFONTS if Path(s).is_file()), None)
    if soundfont is None:
        sys.exit("no General MIDI soundfont: apt-get install -y --no-install-recommends fluid-soundfont-gm (or --soundfont)")
    import soundfile as sf
    from tqdm import tqdm

    out = Path(args.out)
    root = Path(args.root) if args.root else out.parent
    (out / "renders").mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    voices = load_voices(args.chorales, args.seed)
    files = sorted({v[0] for v in voices})
    random.Random(args.seed + 1).shuffle(files)
    test_files = set(files[: max(1, len(files) // 5)])
    by_split = {"train": [v for v in voices if v[0] not in test_files], "test": [v for v in voices if v[0] in test_files],
                # chorales neither split has read: adding them leaves every train and test clip as it was
                "valid": load_voices(args.valid_chorales, args.seed, skip=args.chorales)}
    rows = []
    for split, count in (("train", args.n_train), ("test", args.n_test), ("valid", args.n_valid)):
        rng = random.Random(f"{args.seed}-{split}")
        plans = [clip_plan(rng, by_split[split], args.seconds) for _ in range(count)]
        paths = [out / "renders" / f"{split}-{i:04d}.wav" for i in range(count)]
        if not all(p.is_file() and p.with_suffix(".f0.npy").is_file() for p in paths):
            with tempfile.TemporaryDirectory() as tmp:
                waves = render_split(plans, args.seconds, soundfont, Path(tmp), rng, split)
            for path, plan, x in tqdm(list(zip(paths, plans, waves)), desc=f"write {split}", unit="clip"):
                sf.write(str(path), x, SAMPLE_RATE, subtype="PCM_16")
                np.save(path.with_suffix(".f0.npy"), f0_track(plan["notes"], args.seconds))
        for path, plan in zip(paths, plans):
            rows.append({"path": str(path.relative_to(root)), "labels": [], "split": split, "source": "render",
                         "f0": str(path.with_suffix(".f0.npy").relative_to(root)), "program": plan["program"],
                         "voice": plan["voice"], "bpm": plan["bpm"], "shift": plan["shift"],
                         "score_f0": plan["program"] not in SCORE_F0_NOT_SOUNDING})
    with open(out / "renders.jsonl", "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    programs = len({r["program"] for r in rows})
    print(f"{len(rows)} clips ({args.seconds:g} s), {programs} GM programs, {len(voices)} voices "
          f"from {len(files)} chorales -> {out / 'renders.jsonl'} [{time.perf_counter() - t_start:.1f} s]")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
