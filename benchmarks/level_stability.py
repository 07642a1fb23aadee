"""Do a tagger's top tags hold when the music is 20 dB quieter or louder? Students beside the teacher.

    python benchmarks/level_stability.py [--model music-tags --model NEW.onnx] [--teacher] [--clips 30]
        [--manifest /work/data/musictag/manifest.jsonl --audio /work/data/edgetag-audio --split test]

``--clips`` excerpts of 10 s (tracks longer than 12 s, drawn with a fixed seed from the held-out
``--split`` of the music-tag recipe's manifest) are scaled by each ``--gain`` (default -20 and +20 dB,
in float: no clipping) and tagged whole: a student's clip score is the mean of its decisions
(`edgetag.runtime.engine.offline_decisions`: the model's scores, with no level gate), the teacher's
(``--teacher``: the musicnn MTT + MSD ensemble the student was distilled from, its MTT tags) the mean of
its 3 s windows. Printed per model and gain: how many clips keep their top-1 tag, and the mean overlap
of the top 5 with the clip at its own level. The clips' own RMS levels are printed first. One thread.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

import numpy as np

SR = 16000
N_TAGS = 50  # MagnaTagATune's tags: the teacher ensemble's first 50 columns


def clips(manifest: Path, audio: Path, split: str, n: int, seconds: float = 10.0, seed: int = 0) -> list[np.ndarray]:
    from edgetag.runtime.audio import load_audio

    rows = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if r.get("split") == split and float(r.get("duration", 0)) > seconds + 2]
    if len(rows) < n:
        raise SystemExit(f"{manifest}: {len(rows)} {split} tracks longer than {seconds + 2:g} s, asked for {n}")
    rng = random.Random(seed)
    out = []
    for row in rng.sample(rows, n):
        start = rng.uniform(0, float(row["duration"]) - seconds - 1)
        out.append(load_audio(str(audio / row["path"]), SR, start=start, end=start + seconds).astype(np.float32))
    return out


def student_scorer(spec: str):
    from edgetag.runtime.engine import offline_decisions
    from edgetag.runtime.model import load_model
    from edgetag.runtime.models import resolve_model

    model = load_model(resolve_model(spec), threads=1)
    return lambda x: np.stack([d.scores for d in offline_decisions(model, x)]).mean(0)


def teacher_scorer():
    import torch
    from edgetag.training.teachers import get_teacher
    from edgetag.training.teachers.ensemble import EnsembleTeacher

    torch.set_num_threads(1)
    teacher = EnsembleTeacher([get_teacher("musicnn-mtt"), get_teacher("musicnn-msd")], labels="union").eval()

    def score(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return teacher(torch.from_numpy(x)[None]).scores[0, :, :N_TAGS].numpy().mean(0)

    return score


def stability(base: np.ndarray, moved: np.ndarray) -> tuple[int, float]:
    """(clips whose top-1 tag is kept, mean overlap of the top 5)."""
    top1 = int((base.argmax(1) == moved.argmax(1)).sum())
    top5 = float(np.mean([len(set(np.argsort(-a)[:5]) & set(np.argsort(-b)[:5])) for a, b in zip(base, moved)]))
    return top1, top5


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", action="append", help="a built-in model or a file (repeat; default: music-tags)")
    ap.add_argument("--teacher", action="store_true", help="also the musicnn MTT + MSD teacher (needs torch)")
    ap.add_argument("--gain", type=float, action="append", help="dB (repeat; default: -20 and +20)")
    ap.add_argument("--clips", type=int, default=30)
    ap.add_argument("--manifest", type=Path, default=Path("/work/data/musictag/manifest.jsonl"))
    ap.add_argument("--audio", type=Path, default=Path("/work/data/edgetag-audio"))
    ap.add_argument("--split", default="test")
    args = ap.parse_args(argv)
    if not args.manifest.is_file():
        ap.error(f"no manifest at {args.manifest}: run training/recipes/musictag/prepare.py first")
    audio = clips(args.manifest, args.audio, args.split, args.clips)
    levels = [10 * np.log10(np.mean(np.square(x, dtype=np.float64))) for x in audio]
    print(f"{len(audio)} clips of 10 s from the {args.split} split; RMS level median {np.median(levels):.1f} dBFS "
          f"({min(levels):.1f} to {max(levels):.1f})")
    gains = args.gain or [-20.0, 20.0]
    scorers = {m: student_scorer(m) for m in (args.model or ["music-tags"])}
    if args.teacher:
        scorers["teacher (musicnn MTT + MSD)"] = teacher_scorer()
    print("| model | " + " | ".join(f"{g:+g} dB: top-1 kept / top-5 overlap" for g in gains) + " |")
    print("|---|" + "---|" * len(gains))
    for name, score in scorers.items():
        base = np.stack([score(x) for x in audio])
        cells = []
        for g in gains:
            kept, overlap = stability(base, np.stack([score(x * np.float32(10 ** (g / 20))) for x in audio]))
            cells.append(f"{kept}/{len(audio)} / {overlap:.2f}")
        print(f"| {name} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
