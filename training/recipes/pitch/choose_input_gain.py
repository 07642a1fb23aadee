#!/usr/bin/env python3
"""Choose the quiet-input gain's settings (`edgetag.export.input_gain`) on the pitch recipe's valid renders.

    python training/recipes/pitch/choose_input_gain.py [--model pitch-small] [--split valid]

The model's network (a file with the gain has it taken out first, `without_input_gain`) reads each
render's features raised as the graph would raise them (`input_gain_reference`, which the graph matches
within 1e-5 in logits) for every setting of a small grid, and no gain; each is read as a stream reads it
(`decode_clip`) and scored as ``edgetag bench --peers --eval`` scores it (`evaluate_tracker`): as
rendered, at a peak of 0 and -40 dBFS, and under white noise at 10 dB SNR.

The rule, fixed before the grid was first measured: among the settings whose clean RPA (as rendered) is at
most ``--max-clean-cost`` below no gain's, whose RPA at -40 dBFS is within ``--max-level-gap`` of the RPA
at 0 dBFS, and whose RPA under noise minus clean is no worse than no gain's by more than 0.1, the one with
the smallest level gap; within 0.1 point of it, the lowest target (the least raising), then the shorter
window. It prints the table and the choice. The real audio is not read here: ``evaluate_pitch.py``
measures it on the file with the gain.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from types import SimpleNamespace

import numpy as np


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="pitch-small", help="built-in name or .onnx path (stateful pitch model)")
    ap.add_argument("--renders", default="/work/data/pitch/renders.jsonl")
    ap.add_argument("--root", default="/work/data")
    ap.add_argument("--split", default="valid")
    ap.add_argument("--max-clean-cost", type=float, default=0.1)
    ap.add_argument("--max-level-gap", type=float, default=0.5)
    args = ap.parse_args(argv)

    import onnx
    import onnxruntime as ort

    from edgetag.benchmarks.pitch_peers import PitchTracker
    from edgetag.benchmarks.pitch_rows import AS_RENDERED, LOUD, NOISY, QUIET, PitchEvalSet, evaluate_tracker
    from edgetag.export.input_gain import MAX_BOOST_DB, input_gain_reference, without_input_gain
    from edgetag.runtime.frontend import compute_features
    from edgetag.runtime.model import OnnxModel, session_options
    from edgetag.runtime.models import resolve_model
    from edgetag.runtime.pitch import VOICING_THRESHOLD, decode_clip
    from edgetag.runtime.sealing import read_card

    proto = onnx.load(str(resolve_model(args.model)))
    card = without_input_gain(proto, read_card(proto))
    model = OnnxModel.from_session(ort.InferenceSession(proto.SerializeToString(), session_options(1)), card)
    fe = card.frontend

    def tracker(record: dict | None) -> PitchTracker:
        def track(wave: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            feats = compute_features(wave, fe)
            if record is not None:
                feats, _ = input_gain_reference(feats, record, fe.log_floor)
            logits, _ = model.run(feats[None], model.initial_state(1))
            f0, conf, _ = decode_clip(model.scores(logits)[0], wave, fe)
            return (np.arange(len(f0)) * fe.hop_length + fe.win_length / 2) / fe.sample_rate, f0, conf >= VOICING_THRESHOLD
        return PitchTracker(key="gain", label="gain", kind="edgetag", track=track, hop_ms=1e3 * fe.hop_length / fe.sample_rate,
                            lookahead_ms=None, streaming="offline: the features raised in numpy")

    data = PitchEvalSet(SimpleNamespace(eval_manifest=args.renders, eval_root=args.root, eval_split=args.split))
    conditions = (AS_RENDERED, LOUD, QUIET, NOISY)

    def scores(record: dict | None) -> dict[str, float]:
        t = tracker(record)
        r = {c.name: 100 * evaluate_tracker(t, data, c)["rpa"] for c in conditions}
        return {"clean": r[AS_RENDERED.name], "gap": r[QUIET.name] - r[LOUD.name], "noise": r[NOISY.name] - r[AS_RENDERED.name]}

    base = scores(None)
    print(f"{args.model} without the gain, split {args.split} ({len(data.clips)} renders): clean {base['clean']:.2f}, "
          f"-40 minus 0 dBFS {base['gap']:+.2f}, noise minus clean {base['noise']:+.2f}")
    print(f"{'target dB':>9} {'window':>6} {'clean':>7} {'-40 - 0':>8} {'noise':>7}")
    allowed = []
    for target, window in itertools.product((10.0, 20.0, 30.0), (100, 300)):
        record = {"target_db": target, "window_frames": window, "max_boost_db": MAX_BOOST_DB}
        r = scores(record)
        ok = (r["clean"] >= base["clean"] - args.max_clean_cost and abs(r["gap"]) <= args.max_level_gap
              and r["noise"] >= base["noise"] - 0.1)
        print(f"{target:>9g} {window:>6} {r['clean']:>7.2f} {r['gap']:>+8.2f} {r['noise']:>+7.2f}{'' if ok else '  (out)'}")
        if ok:
            allowed.append((abs(r["gap"]), target, window))
    if not allowed:
        print("no setting passes the rule: no gain")
        return 0
    best = min(gap for gap, _, _ in allowed)
    _, target, window = min((a for a in allowed if a[0] <= best + 0.1), key=lambda a: (a[1], a[2]))
    print(f"chosen: target_db {target:g}, window_frames {window} (max_boost_db {MAX_BOOST_DB:g})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
