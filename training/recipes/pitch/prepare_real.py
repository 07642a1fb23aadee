#!/usr/bin/env python3
"""Pick the real-audio part of the pitch recipe from the edgetag-audio manifest.

Reads ``/work/data/edgetag-audio/manifest.jsonl`` (Debian packages, split by
package: speech prompts from ``asterisk-core-sounds-en-wav`` and game-soundtrack
music) and writes a subset as ``OUT/real.jsonl``, never touching the source folder:

* speech: whole prompts (a few seconds each), ``--speech-train`` / ``--speech-test`` files;
* music: ``--music-seconds`` excerpts at random places, spread evenly over the
  packages of the split (``--music-train`` / ``--music-test`` excerpts). Only
  the soundtrack packages (`prepare_audio.MUSIC_PACKAGES`) are drawn from, the
  set the shipped pitch student was trained on; the soundtracks inside games'
  data packages, added later for the music-tag recipe, would change every
  train row (``--all-music`` takes them too, for a new experiment). The valid
  split, which has no rows to keep, draws from every music package of its split.

Train rows come from the source's ``train`` split, test rows from its ``test``
split and valid rows (for choosing between runs) from its ``valid`` split:
disjoint packages, so the held-out real audio is from unseen packages.
Each (split, source) pair draws from its own random stream, so asking for more
train audio keeps the test rows, and the rows already drawn (and their cached
teacher outputs), unchanged. Paths are rewritten relative to ``--root``
(default: OUT's parent), the same root as the renders' manifest. Deterministic
for a given ``--seed``.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections import defaultdict
from pathlib import Path

from edgetag.training.prepare_audio import MUSIC_PACKAGES

SOURCE = Path("/work/data/edgetag-audio/manifest.jsonl")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--source", default=str(SOURCE))
    ap.add_argument("--out", default="/work/data/pitch")
    ap.add_argument("--root", default=None, help="manifest paths are relative to this (default: OUT's parent)")
    ap.add_argument("--speech-train", type=int, default=437, help="speech prompts (the source has 437 in train: 0.34 h)")
    ap.add_argument("--speech-test", type=int, default=55)
    ap.add_argument("--music-train", type=int, default=360)
    ap.add_argument("--music-test", type=int, default=40,
                    help="test excerpts (the shipped student was first measured on the first 10; more keep them)")
    ap.add_argument("--speech-valid", type=int, default=30, help="speech prompts in the valid split (for choosing runs)")
    ap.add_argument("--music-valid", type=int, default=40, help="valid excerpts, from every music package of that split")
    ap.add_argument("--music-seconds", type=float, default=10.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--all-music", action="store_true", help="also draw from games' data packages (changes the train rows)")
    args = ap.parse_args(argv)
    source = Path(args.source)
    out = Path(args.out)
    root = Path(args.root) if args.root else out.parent
    out.mkdir(parents=True, exist_ok=True)
    rows_in = [json.loads(line) for line in source.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows = []
    for split, n_speech, n_music in (("train", args.speech_train, args.music_train), ("test", args.speech_test, args.music_test),
                                     ("valid", args.speech_valid, args.music_valid)):
        speech = [r for r in rows_in if r["split"] == split and r["package"].startswith("asterisk")]
        music_by_pkg: dict[str, list[dict]] = defaultdict(list)
        for r in rows_in:
            if (r["split"] == split and "music" in r["labels"] and r["duration"] > args.music_seconds + 1
                    and (args.all_music or split == "valid" or r["package"] in MUSIC_PACKAGES)):
                music_by_pkg[r["package"]].append(r)
        rng = random.Random(f"{args.seed}:{split}:speech")
        for r in rng.sample(speech, min(n_speech, len(speech))):
            path = (source.parent / r["path"]).resolve().relative_to(root.resolve())
            rows.append({"path": str(path), "labels": [], "split": split, "source": "speech", "package": r["package"]})
        packages = sorted(music_by_pkg)
        if n_music and not packages:
            print(f"warning: no soundtrack music in the {split} split of {source}: {split} has speech only", file=sys.stderr)
            n_music = 0
        rng = random.Random(f"{args.seed}:{split}:music")
        for k in range(n_music):
            r = rng.choice(music_by_pkg[packages[k % len(packages)]])
            start = round(rng.uniform(0.0, r["duration"] - args.music_seconds - 0.5), 2)
            path = (source.parent / r["path"]).resolve().relative_to(root.resolve())
            rows.append({"path": str(path), "start": start, "end": round(start + args.music_seconds, 2), "labels": [],
                         "split": split, "source": "music", "package": r["package"]})
    with open(out / "real.jsonl", "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    print(f"{len(rows)} real segments -> {out / 'real.jsonl'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
