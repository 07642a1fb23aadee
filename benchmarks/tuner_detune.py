"""Does a pitch model's reading follow real timbres off the note grid? Detuned renders, bins vs stream.

    python benchmarks/tuner_detune.py [--model pitch] [--cents 0 --cents 23 --cents -37]
        [--manifest /work/data/pitch/manifest.jsonl --root /work/data --split test]

A tuner must read a string tuned 23 cents sharp as +23. The pitch recipe's held-out renders (real
instrument samples played from scores, whose f0 is known: ``prepare_renders.py``) are resampled so
that every note sounds ``--cents`` higher (and the clip plays that much faster; the score's time
axis is scaled to match), then decoded two ways: the bins alone (`edgetag.runtime.pitch.decode`)
and as a stream reads them, with each frame's period (`edgetag.runtime.pitch.decode_with_audio`).
Scored on the frames the score marks voiced and the bins call voiced, within 50 cents of the
detuned score: the signed median error (a reading that leans back to the grid shows ``-cents``
worth of it) and the median and 90th percentile of the absolute error. Renders carry their
instruments' own tuning and vibrato, so a few cents of error remain at 0 cents.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

SR = 16000


def _cents(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return 1200.0 * np.log2(np.maximum(a, 1e-9) / np.maximum(b, 1e-9))


def detuned_errors(model, entries, manifest, root: Path, cents: float) -> tuple[np.ndarray, np.ndarray]:
    """(bins-only errors, stream errors) in cents over the scored frames of ``entries`` detuned by ``cents``."""
    import soxr
    from edgetag.runtime.audio import load_audio
    from edgetag.runtime.frontend import compute_features
    from edgetag.runtime.pitch import VOICING_THRESHOLD, decode, decode_clip

    fe = model.card.frontend
    ratio = 2.0 ** (cents / 1200.0)
    bins_err, stream_err = [], []
    for entry in entries:
        wave = load_audio(manifest.resolve(entry), SR, start=entry.start, end=entry.end).astype(np.float64)
        wave = soxr.resample(wave, SR, SR / ratio).astype(np.float32)  # played `ratio` faster: `cents` higher
        truth = np.load(root / entry.extra["f0"])
        scores = model.scores(model.run(compute_features(wave, fe)[None], model.initial_state(1))[0])[0]
        f_stream = decode_clip(scores, wave, fe)[0]
        n = len(f_stream)
        source = np.rint(np.arange(n) * ratio).astype(np.int64)  # frame j of the faster clip: score frame j*ratio
        keep = source < len(truth)
        reference = np.where(keep, truth[np.minimum(source, len(truth) - 1)], 0.0) * ratio
        f_bins, confidence = decode(scores[:n])
        scored = (reference > 0) & (confidence >= VOICING_THRESHOLD)
        scored &= np.abs(_cents(f_bins, reference)) <= 50
        bins_err.append(_cents(f_bins, reference)[scored])
        stream_err.append(_cents(f_stream, reference)[scored])
    return np.concatenate(bins_err), np.concatenate(stream_err)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="pitch", help="a built-in pitch model or a file (default: pitch)")
    ap.add_argument("--cents", type=float, action="append", help="detuning (repeat; default: 0, +23, -37)")
    ap.add_argument("--manifest", default="/work/data/pitch/manifest.jsonl")
    ap.add_argument("--root", default="/work/data")
    ap.add_argument("--split", default="test")
    args = ap.parse_args(argv)
    from edgetag.runtime.model import load_model
    from edgetag.runtime.models import resolve_model
    from edgetag.runtime.pitch import is_pitch_model
    from edgetag.training.data import load_manifest

    model = load_model(resolve_model(args.model), threads=1)
    if not is_pitch_model(model.card):
        ap.error(f"{args.model} is not a pitch model")
    if not Path(args.manifest).is_file():
        ap.error(f"no manifest at {args.manifest}: build the pitch recipe's renders first "
                 "(training/recipes/pitch/README.md)")
    manifest = load_manifest(args.manifest, root=args.root).select(args.split)
    entries = [e for e in manifest if e.extra.get("source") == "render" and e.extra.get("score_f0") is not False]
    if not entries:
        ap.error(f"no renders with score f0 in the {args.split} split of {args.manifest}")
    print(f"{args.model} on {len(entries)} {args.split} renders detuned; error against the detuned score f0, cents")
    print("| detuned by | frames | bins: signed median | bins: median / p90 abs | stream: signed median "
          "| stream: median / p90 abs |")
    print("|---|---|---|---|---|---|")
    for cents in args.cents or [0.0, 23.0, -37.0]:
        b, s = detuned_errors(model, entries, manifest, Path(args.root), cents)
        print(f"| {cents:+g} | {len(b)} | {np.median(b):+.2f} | {np.median(np.abs(b)):.2f} / "
              f"{np.percentile(np.abs(b), 90):.1f} | {np.median(s):+.2f} | {np.median(np.abs(s)):.2f} / "
              f"{np.percentile(np.abs(s), 90):.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
