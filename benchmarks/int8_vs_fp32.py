"""An int8 file against its fp32 file on held-out audio, as the runtime streams them on this CPU.

    python benchmarks/int8_vs_fp32.py --model pitch --calib /work/data/audio/manifest.jsonl
    python benchmarks/int8_vs_fp32.py --model music-tags --eval /work/data/audio/packages/drascula-music

``--model`` is the fp32 file or built-in name; the int8 file is its sibling
(``X.int8.onnx``, or the built-in ``NAME-int8``). Held-out clips: ``--eval``
(all of it), or those `edgetag export` holds out of ``--calib``. Prints the
largest score difference, the share of binarised decisions that agree and,
for pitch models, the share of fp32-voiced frames whose f0 is within 50 cents.
"""

from __future__ import annotations

import argparse

import numpy as np


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="fp32 edgetag ONNX file or built-in name")
    ap.add_argument("--calib", help="audio folder or manifest whose held-out part is used")
    ap.add_argument("--eval", help="held-out audio folder or manifest (all of it)")
    ap.add_argument("--max-clips", type=int, default=24)
    ap.add_argument("--max-seconds", type=float, default=20.0)
    args = ap.parse_args(argv)
    if not (args.calib or args.eval):
        ap.error("give --eval or --calib")

    from edgetag.benchmarks.int8_cpus import compare_to_fp32
    from edgetag.export.commands import _load_source
    from edgetag.runtime.formats import sibling
    from edgetag.runtime.model import load_model
    from edgetag.runtime.models import BUILTIN_MODELS, resolve_model
    from edgetag.runtime.verify import cpu_description, stream_scores

    fp32_path = resolve_model(args.model)
    int8_path = resolve_model(f"{args.model}-int8") if f"{args.model}-int8" in BUILTIN_MODELS else sibling(fp32_path, "int8")
    fp32, int8 = load_model(fp32_path, threads=1), load_model(int8_path, threads=1)
    card = fp32.card
    ns = argparse.Namespace(calib_split=None, eval_split=None, root=None)
    held = _load_source(args.eval, card, ns, everything=True)[0] if args.eval else _load_source(args.calib, card, ns)[1]
    frames = int(args.max_seconds * card.frontend.frame_rate)
    clips = [clip[:frames] for clip in held.features[: args.max_clips]]
    a = np.concatenate([stream_scores(fp32, clip) for clip in clips])
    b = np.concatenate([stream_scores(int8, clip) for clip in clips])
    found = compare_to_fp32(card, a, b)
    line = (f"{args.model}: {int8_path.name} vs {fp32_path.name} on {len(clips)} held-out clips ({len(a)} decisions) "
            f"on {cpu_description()}: max |int8 - fp32| {found['max_abs_diff']:.4f}, binarised decisions agreeing "
            f"{100 * found['agreement']:.2f} %")
    if "rpa_vs_fp32" in found:
        line += (f", f0 within 50 cents of fp32's on {int(found['voiced_frames'])} voiced frames "
                 f"{100 * found['rpa_vs_fp32']:.2f} %")
    print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
