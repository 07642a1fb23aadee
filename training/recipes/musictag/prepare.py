#!/usr/bin/env python3
"""The music-tag recipe's data: a music-only manifest over Debian's game soundtracks.

    python3 training/recipes/musictag/prepare.py --audio /work/data/edgetag-audio --out /work/data/musictag

Reads the manifest that ``python -m edgetag.training.prepare_audio`` wrote in
``--audio`` (run it first; the recipe's ``run.py`` does) and writes
``OUT/manifest.jsonl`` with paths relative to ``--audio`` (give that folder
as the root: ``edgetag teach --root``, ``data.root``):

* only music (entries whose ``music`` label is positive: no speech prompts,
  no sound effects), split by *package* as prepare_audio assigned it, so the
  test tracks come from games the student never heard;
* train: whole files, every one by default (22 h from 19 packages); with
  ``--train-hours H``, files in a stable order (sha1 of the path) until H
  hours (at least 10 for a tagger that generalises; fewer draws a warning);
* valid and test: every held-out file whole, cut into ``--eval-seconds``
  chunks (default 120; a last piece under 3 s, one teacher window, is dropped;
  the last chunk runs to the end of the file, whatever its header says),
  so the rare tags get enough positive windows to score;
* labels: the 50 MagnaTagATune tags, all *missing* (``missing: *``): the
  student learns them from the teacher only.

Deterministic: the same input manifest gives the same output, byte for byte.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

from edgetag.training.data import load_manifest, write_manifest
from edgetag.training.manifest_entry import ManifestEntry

MIN_TRAIN_HOURS = 10.0  # less training music than this draws a warning


def select(audio: Path, train_hours: float | None, eval_seconds: float) -> tuple[list[ManifestEntry], dict[str, float]]:
    source = audio / "manifest.jsonl"
    if not source.is_file():
        raise FileNotFoundError(f"{source} not found: run `python -m edgetag.training.prepare_audio --out {audio}` first")
    manifest = load_manifest(source)
    music = [e for e in manifest.entries if e.label_state("music") == 1]
    if not music:
        raise ValueError(f"{source} lists no music (no entry has the label music)")
    chosen: list[ManifestEntry] = []
    hours: dict[str, float] = {}
    train = sorted((e for e in music if e.split == "train"), key=lambda e: hashlib.sha1(e.path.encode()).hexdigest())
    total = 0.0
    for e in train:
        if train_hours is not None and total >= train_hours * 3600:
            break
        dur = float(e.extra["duration"])
        chosen.append(ManifestEntry(path=e.path, split="train", missing_all=True,
                                    extra={"package": e.extra["package"], "duration": round(dur, 4)}))
        total += dur
    hours["train"] = total / 3600
    for split in ("valid", "test"):
        seconds = 0.0
        for e in sorted((e for e in music if e.split == split), key=lambda e: e.path):
            duration = float(e.extra["duration"])
            start = 0.0
            while duration - start >= 3.0:  # a piece shorter than one teacher window has nothing to score
                end = min(duration, start + eval_seconds)
                # The last chunk is open-ended: a header duration can exceed what decodes
                # (asc-music's MP3s: 440.8 of 441.1 s), and a fixed end past it is unreadable.
                last = end >= duration
                chosen.append(ManifestEntry(path=e.path, split=split, start=round(start, 4),
                                            end=None if last else round(end, 4), missing_all=True,
                                            extra={"package": e.extra["package"], "duration": round(end - start, 4)}))
                seconds += end - start
                start = end
        hours[split] = seconds / 3600
    wanted = MIN_TRAIN_HOURS if train_hours is None else min(train_hours, MIN_TRAIN_HOURS)
    if hours["train"] < wanted:
        print(f"warning: only {hours['train']:.2f} h of training music in {source} "
              f"(the recipe is meant for at least {MIN_TRAIN_HOURS:g} h)", file=sys.stderr)
    return chosen, hours


def voice_mixes(voices: Path) -> list[ManifestEntry]:
    """The train mixes of ``voices.py``'s list, as training entries (package ``voice-mix/SPEECH-PACKAGE``)."""
    if not voices.is_file():
        raise FileNotFoundError(f"{voices} not found: run training/recipes/musictag/voices.py first")
    rows = [json.loads(line) for line in voices.read_text().splitlines() if line.strip()]
    return [ManifestEntry(path=r["path"], split="train", missing_all=True,
                          extra={"package": f"voice-mix/{r['package']}", "duration": r["duration"]})
            for r in rows if r["split"] == "train"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--audio", type=Path, default=Path("/work/data/edgetag-audio"), help="prepare_audio's folder")
    ap.add_argument("--out", type=Path, default=Path("/work/data/musictag"))
    ap.add_argument("--train-hours", type=float, default=None, help="cap on training music (default: all of it)")
    ap.add_argument("--eval-seconds", type=float, default=120.0, help="valid/test chunk length (whole files are used)")
    ap.add_argument("--voices", type=Path, default=None,
                    help="voices.py's list of speech-over-music mixes: its train mixes join the training split")
    args = ap.parse_args(argv)
    entries, hours = select(args.audio, args.train_hours, args.eval_seconds)
    if args.voices is not None:
        mixes = voice_mixes(args.voices)
        entries += mixes
        hours["train"] += sum(float(e.extra["duration"]) for e in mixes) / 3600
    args.out.mkdir(parents=True, exist_ok=True)
    path = write_manifest(args.out / "manifest.jsonl", entries, extra_columns=("package", "duration"))
    packages = {s: sorted({e.extra["package"] for e in entries if e.split == s}) for s in ("train", "valid", "test")}
    (args.out / "data.json").write_text(json.dumps(
        {"audio_root": str(args.audio.resolve()), "hours": {k: round(v, 4) for k, v in hours.items()},
         "entries": {s: sum(e.split == s for e in entries) for s in packages}, "packages": packages}, indent=2) + "\n")
    print(f"{path}: " + ", ".join(f"{s} {hours[s]:.2f} h ({', '.join(packages[s])})" for s in ("train", "valid", "test")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
