#!/usr/bin/env python3
"""Choose the level gate a pitch model with the quiet-input gain carries in its card, on the valid renders.

    python training/recipes/pitch/choose_level_gate.py [--model pitch-small] [--split valid]

Each render is played at a peak of 0, -40 and -50 dBFS through the runtime's API (`edgetag.load` with
``level_gate=G``, the path `tag` and `listen` take) for each gate G, and the voiced decisions are counted.
The rule, written before it was first measured: the highest gate at which the renders at -50 dBFS peak keep
at least 98 % of the voiced decisions they have at 0 dBFS under the same gate (none: -90).
"""

from __future__ import annotations

import argparse
import math
import sys
from types import SimpleNamespace

import numpy as np

GATES = (-60.0, -70.0, -80.0, -90.0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="pitch-small", help="built-in name or .onnx path (a pitch model)")
    ap.add_argument("--renders", default="/work/data/pitch/renders.jsonl")
    ap.add_argument("--root", default="/work/data")
    ap.add_argument("--split", default="valid")
    args = ap.parse_args(argv)

    import edgetag
    from edgetag.benchmarks.pitch_rows import PitchEvalSet

    data = PitchEvalSet(SimpleNamespace(eval_manifest=args.renders, eval_root=args.root, eval_split=args.split))

    def voiced(gate: float, peak_dbfs: float) -> int:
        count = 0
        for _, wave, _ in data.clips:
            x = (wave / np.abs(wave).max() * 10 ** (peak_dbfs / 20)).astype(np.float32)
            tagger = edgetag.load(args.model, level_gate=gate)
            count += sum(bool(d.pitch and d.pitch.voiced) for d in tagger.push(x, sample_rate=16000) + tagger.flush())
        return count

    print(f"{args.model}, split {args.split} ({len(data.clips)} renders): voiced decisions at 0 / -40 / -50 dBFS peak")
    kept = {}
    for gate in (*GATES, -math.inf):
        loud, quiet, quieter = (voiced(gate, peak) for peak in (0.0, -40.0, -50.0))
        kept[gate] = quieter / loud
        print(f"gate {gate:g} dBFS RMS: {loud} / {quiet} / {quieter}  (-50 dBFS keeps {100 * kept[gate]:.1f} %)", flush=True)
    chosen = max((g for g in GATES if kept[g] >= 0.98), default=GATES[-1])
    print(f"chosen: {chosen:g} dBFS RMS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
