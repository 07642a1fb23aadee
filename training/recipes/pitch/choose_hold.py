#!/usr/bin/env python3
"""Choose the stream's pitch hold (`edgetag.runtime.pitch.SteadyTone`) on the recipe's valid split.

The hold: after a sure frame (confidence >= the voicing threshold), later frames whose reading is under
``hold_below`` read its f0, until one is ``hold_rise_db`` louder than the quietest since, or
``hold_frames`` have passed. This script scores every setting of a small grid (and no hold) with one
model's scores, computed once per clip:

* renders (``--renders``, score f0): RPA as rendered, and under white noise at 10 dB SNR
  (`edgetag.benchmarks.pitch_rows.NOISY`, the noise ``edgetag bench`` adds, seeded per clip alike);
* real speech and music of the split (``--manifest``): RPA against CREPE full (``--cache``; voiced
  where its confidence >= 0.5), every ``--hop`` // 160th frame as ``evaluate_pitch.py`` scores it.

The rule, fixed before the test split is scored with its choice: among the settings that cost the
clean renders at most ``--max-clean-cost`` points and the real audio at most ``--max-real-cost``,
the one with the highest RPA under noise (on an exact tie, the shorter hold). It prints the table and
the choice.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from types import SimpleNamespace

import numpy as np

STUDENT_HOP = 160


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="pitch-small", help="built-in name or .onnx path")
    ap.add_argument("--renders", default="/work/data/pitch/renders.jsonl")
    ap.add_argument("--manifest", default="/work/data/pitch/manifest.jsonl")
    ap.add_argument("--root", default="/work/data")
    ap.add_argument("--split", default="valid")
    ap.add_argument("--cache", default=None, help="CREPE full cache of the split (default /work/data/pitch/cache/SPLIT)")
    ap.add_argument("--hop", type=int, default=1600, help="hop (samples) of the CREPE full cache")
    ap.add_argument("--max-clean-cost", type=float, default=0.1)
    ap.add_argument("--max-real-cost", type=float, default=0.25)
    args = ap.parse_args(argv)

    from edgetag.benchmarks.pitch_rows import AS_RENDERED, NOISY, PitchEvalSet
    from edgetag.runtime.audio import load_audio
    from edgetag.runtime.frontend import compute_features
    from edgetag.runtime.model import load_model
    from edgetag.runtime.models import resolve_model
    from edgetag.runtime.pitch import HOLD_BELOW, HOLD_FRAMES, HOLD_RISE_DB, SteadyTone, decode
    from edgetag.training.cache import TeacherCacheLookup
    from edgetag.training.data import load_manifest
    from edgetag.training.metrics import pitch_metrics

    model = load_model(str(resolve_model(args.model)), threads=1)
    fe = model.card.frontend
    if fe.hop_length != STUDENT_HOP or args.hop % STUDENT_HOP:
        raise SystemExit(f"expects a {STUDENT_HOP}-sample hop and --hop a multiple of it")

    def scored(wave: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The model's scores of a clip and the clip's frames (a strided view)."""
        logits, _ = model.run(compute_features(wave, fe)[None], model.initial_state(1))
        scores = model.scores(logits)[0]
        frames = np.lib.stride_tricks.sliding_window_view(wave, fe.win_length)[:: fe.hop_length]
        n = min(len(scores), len(frames))
        return scores[:n], frames[:n]

    # (name, scores, frames, reference f0 on the scored frames, which frames are scored)
    sets: dict[str, list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]] = {"clean": [], "noise": [], "real": []}
    renders = PitchEvalSet(SimpleNamespace(eval_manifest=args.renders, eval_root=args.root, eval_split=args.split))
    for k, (_path, wave, ref) in enumerate(renders.clips):
        for name, condition in (("clean", AS_RENDERED), ("noise", NOISY)):
            scores, frames = scored(condition.apply(wave, seed=k))
            n = min(len(scores), len(ref))
            sets[name].append((scores[:n], frames[:n], ref[:n], np.arange(n)))
    manifest = load_manifest(args.manifest, root=args.root).select(args.split)
    lookup = TeacherCacheLookup(args.cache or f"/work/data/pitch/cache/{args.split}", "crepe-full")
    step = args.hop // STUDENT_HOP
    for entry in manifest:
        if entry.extra.get("source") == "render":
            continue
        cached = lookup.get(entry, 360)
        if cached is None:
            raise SystemExit(f"no CREPE full outputs cached for {entry.path}: run the recipe's teach step first")
        wave = np.asarray(load_audio(manifest.resolve(entry), fe.sample_rate, start=entry.start, end=entry.end), np.float32)
        scores, frames = scored(wave)
        f_full, c_full = decode(cached.scores)
        n = min(len(f_full), (len(scores) - 1) // step + 1)
        sets["real"].append((scores, frames, np.where(c_full[:n] >= 0.5, f_full[:n], 0.0), np.arange(n) * step))

    def rpa(name: str, setting: tuple[int, float, float]) -> float:
        refs, ests = [], []
        for scores, frames, ref, at in sets[name]:
            f0 = SteadyTone(fe.sample_rate, *setting).read_frames(scores, frames)[0]
            refs.append(ref)
            ests.append(f0[at])
        return 100 * pitch_metrics(np.concatenate(refs), np.concatenate(ests))["raw_pitch_accuracy"]

    none = (0, HOLD_BELOW, HOLD_RISE_DB)
    base = {name: rpa(name, none) for name in sets}
    print(f"{args.model}, split {args.split}: {len(sets['clean'])} renders, {len(sets['real'])} real clips")
    print(f"no hold: clean {base['clean']:.2f}, noise {base['noise']:.2f} ({base['noise'] - base['clean']:+.2f}), "
          f"real {base['real']:.2f}")
    print(f"{'hold_below':>10} {'frames':>6} {'rise dB':>7} {'clean':>7} {'noise':>7} {'vs clean':>8} {'real':>7}")
    allowed = []
    for below, frames, rise in itertools.product((0.05, 0.1, 0.15, 0.2), (25, 50, 100), (1.0, 3.0)):
        setting = (frames, below, rise)
        r = {name: rpa(name, setting) for name in sets}
        clean_cost, real_cost = r["clean"] - base["clean"], r["real"] - base["real"]
        ok = clean_cost >= -args.max_clean_cost and real_cost >= -args.max_real_cost
        print(f"{below:>10} {frames:>6} {rise:>7} {clean_cost:>+7.2f} {r['noise']:>7.2f} "
              f"{r['noise'] - r['clean']:>+8.2f} {real_cost:>+7.2f}{'' if ok else '  (out)'}")
        if ok:
            allowed.append((r["noise"], setting))
    if not allowed:
        print("no setting passes the rule: keep no hold")
        return 0
    best = max(noise for noise, _ in allowed)
    frames, below, rise = min((s for noise, s in allowed if noise == best), key=lambda s: s[0])
    print(f"chosen: hold_below {below}, hold_frames {frames}, hold_rise_db {rise} "
          f"(runtime now: {HOLD_BELOW}, {HOLD_FRAMES}, {HOLD_RISE_DB})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
