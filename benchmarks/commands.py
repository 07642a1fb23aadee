"""``edgetag bench``: the one-report benchmark (see `edgetag.benchmarks.report`).

Imports only the standard library at module level (no torch, numpy or onnx),
so ``edgetag --help`` works with the smallest install.
"""

from __future__ import annotations

import argparse
import sys
import time


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``bench``."""
    p = sub.add_parser(
        "bench",
        help="one report of latency, cost and accuracy: front ends, students x backends, teachers, streaming",
        description=(
            "Measure front ends (edgetag vs kaldi-native-fbank, librosa, torch), students x backends "
            "(PyTorch eager, ORT fp32/int8/fp16, TensorRT when present), teachers and streaming end to end "
            "(file at full speed, virtual microphone at real-time pace) in one run; write report.md, "
            "report.json and PNG plots. Needs the bench and training extras (torch, onnx, onnxruntime)."
        ),
    )
    p.add_argument("--quick", action="store_true", help="fewer repetitions and shorter inputs (< 5 minutes)")
    p.add_argument("--out", default="bench-report", help="output folder (default ./bench-report)")
    p.add_argument("--models", nargs="+", default=None, metavar="KIND",
                   help="student kinds to build (default: mobilenet causal_cnn crnn)")
    p.add_argument("--checkpoint", default=None, help="measure this trained student checkpoint instead of random students")
    p.add_argument("--threads", type=int, default=1, help="threads for the models (torch and ORT intra-op; default 1)")
    p.add_argument("--no-mic", action="store_true", help="skip the virtual-microphone run")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from edgetag.benchmarks.report import DEFAULT_STUDENTS, BenchSettings, run_bench

    if args.threads < 1:
        raise ValueError(f"--threads must be >= 1, got {args.threads}")
    models = tuple(args.models) if args.models else None
    if models:
        unknown = [m for m in models if m not in DEFAULT_STUDENTS]
        if unknown:
            raise ValueError(f"unknown student kind(s) {', '.join(unknown)}; known: {', '.join(DEFAULT_STUDENTS)}")
    settings = BenchSettings.for_mode(args.quick, threads=args.threads, models=models, mic=not args.no_mic,
                                      checkpoint=args.checkpoint)
    start = time.perf_counter()
    result = run_bench(args.out, settings, log=lambda msg: print(f"[{time.perf_counter() - start:6.1f} s] {msg}",
                                                                   file=sys.stderr, flush=True))
    print(f"wrote {args.out}/report.md, report.json, accuracy_vs_macs.png, latency_per_backend.png "
          f"in {result['wall_seconds']:.1f} s")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="edgetag bench")
    sub = parser.add_subparsers(dest="command")
    register(sub)
    args = parser.parse_args(["bench", *(argv or [])])
    return args.func(args)
