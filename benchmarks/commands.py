"""``edgetag bench``: the one-report benchmark (see `edgetag.benchmarks.report`).

Imports only the standard library at module level (no torch, numpy or onnx),
so ``edgetag --help`` works with the smallest install. Also runs as
``python -m edgetag.benchmarks.commands [bench options]``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``bench``."""
    p = sub.add_parser(
        "bench",
        help="one report of latency, cost and accuracy: front ends, models x backends, teachers, streaming",
        description=(
            "Measure front ends (edgetag vs kaldi-native-fbank, librosa, torch), models x backends "
            "(ORT fp32/int8/fp16, PyTorch eager for checkpoints, TensorRT when present), teachers and streaming "
            "end to end (file at full speed, virtual microphone at real-time pace) in one run; write report.md, "
            "report.json and PNG plots. Without --model/--checkpoint/--models it measures the built-in models. "
            "On a runtime-only install (no torch) it measures what runs there: the front end, ONNX models and "
            "streaming; the rows that need torch (PyTorch backend, teachers, random students) say so."
        ),
    )
    p.add_argument("--quick", action="store_true", help="fewer repetitions and shorter inputs (< 5 minutes)")
    p.add_argument("--out", default="bench-report", help="output folder (default ./bench-report)")
    p.add_argument("--models", nargs="+", default=None, metavar="KIND",
                   help="random-weight students to build and measure (mobilenet plain_cnn causal_cnn crnn; needs torch): "
                        "their cost before training")
    p.add_argument("--checkpoint", action="append", default=None, metavar="CKPT",
                   help="a trained student checkpoint (.pt) to measure instead of random students; repeatable")
    p.add_argument("--model", action="append", default=None, metavar="X.onnx", dest="onnx_models",
                   help="an exported edgetag model or a built-in model's name (X.int8.onnx / X.fp16.onnx beside it "
                        "too); repeatable")
    g = p.add_argument_group("task metric", "mAP / ROC-AUC of each student x backend (and a teacher) on a labelled split")
    g.add_argument("--eval", default=None, metavar="MANIFEST", dest="eval_manifest",
                   help="labelled CSV/JSONL manifest (edgetag.training.data); without it there is no task metric. "
                        "A pitch manifest (rows with an f0 sidecar, e.g. the pitch recipe's renders.jsonl) gives "
                        "the pitch trackers' RPA/RCA instead")
    g.add_argument("--eval-split", default="test", help="split of --eval to score (default test; 'all': every entry)")
    g.add_argument("--eval-root", default=None, help="directory the manifest's paths are relative to (default: its own)")
    g.add_argument("--config", default=None, metavar="TOML",
                   help="training config: its [teacher] cache_dir, first teacher and label_columns (mapped onto "
                        "[data] labels) give the teacher row its task metric")
    g.add_argument("--teacher-cache", default=None, metavar="DIR", help="teacher cache written by `edgetag teach`")
    g.add_argument("--teacher", default=None, metavar="NAME", help="teacher in --teacher-cache (e.g. musicnn-mtt)")
    g.add_argument("--label-columns", default=None, metavar="LABEL=COL,...",
                   help="which teacher output column scores each eval label, e.g. cello=43,choir=35")
    p.add_argument("--peers", nargs="*", default=None, metavar="NAME",
                   help="pitch trackers from their own wheels to measure beside edgetag's pitch models: swift-f0, "
                        "fcpe, pesto (no name: all). Cost, latency and, with a pitch --eval manifest, RPA/RCA; a "
                        "peer that is not installed gets a row that says how to install it")
    p.add_argument("--threads", type=int, default=1, help="threads for the models (torch and ORT intra-op; default 1)")
    p.add_argument("--no-mic", action="store_true", help="skip the virtual-microphone run")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from edgetag.benchmarks.report import run_bench
    from edgetag.benchmarks.settings import DEFAULT_STUDENTS, BenchSettings

    if args.threads < 1:
        raise ValueError(f"--threads must be >= 1, got {args.threads}")
    models = tuple(args.models) if args.models else None
    if models:
        unknown = [m for m in models if m not in DEFAULT_STUDENTS]
        if unknown:
            raise ValueError(f"unknown student kind(s) {', '.join(unknown)}; known: {', '.join(DEFAULT_STUDENTS)}")
    peers = peer_names(args.peers)
    teacher = teacher_mapping(args)
    if teacher["teacher_cache"] and not args.eval_manifest:
        raise ValueError("a teacher task metric needs --eval MANIFEST (the split it is measured on)")
    split = None if args.eval_split == "all" else args.eval_split
    settings = BenchSettings.for_mode(args.quick, threads=args.threads, models=models, mic=not args.no_mic,
                                      checkpoints=tuple(args.checkpoint or ()), onnx_models=tuple(args.onnx_models or ()),
                                      eval_manifest=args.eval_manifest, eval_root=args.eval_root, peers=peers,
                                      **teacher)
    settings.eval_split = split  # None (every entry) must override the default, which for_mode would skip
    start = time.perf_counter()
    result = run_bench(args.out, settings, log=lambda msg: print(f"[{time.perf_counter() - start:6.1f} s] {msg}",
                                                                   file=sys.stderr, flush=True))
    from edgetag.benchmarks.report_format import PLOTS, accuracy_plot_skip_reason, no_plots_reason

    skip = no_plots_reason() or accuracy_plot_skip_reason(result)
    written = ["report.md", "report.json", *(p for p in PLOTS if (Path(args.out) / p).is_file())]
    print(f"wrote {args.out}/{', '.join(written)} in {result['wall_seconds']:.1f} s"
          + (f"; not plotted: {skip}" if skip else ""))
    return 0


def peer_names(given: list[str] | None) -> tuple[str, ...] | None:
    """``--peers``: None when absent, every known peer when given without names, else the names checked."""
    if given is None:
        return None
    from edgetag.benchmarks.pitch_peers import PEERS

    names = tuple(dict.fromkeys(given or PEERS))
    unknown = [m for m in names if m not in PEERS]
    if unknown:
        raise ValueError(f"unknown peer(s) {', '.join(unknown)}; known: {', '.join(PEERS)}")
    return names


def parse_label_columns(text: str) -> tuple[tuple[str, int], ...]:
    """``cello=43,choir=35`` -> (("cello", 43), ("choir", 35))."""
    pairs = []
    for item in filter(None, (t.strip() for t in text.split(","))):
        label, sep, col = item.partition("=")
        if not sep or not label.strip() or not col.strip().isdigit():
            raise ValueError(f"--label-columns: {item!r} is not LABEL=COLUMN (e.g. cello=43)")
        pairs.append((label.strip(), int(col)))
    if not pairs:
        raise ValueError("--label-columns is empty")
    return tuple(pairs)


def teacher_mapping(args: argparse.Namespace) -> dict:
    """teacher_cache, teacher_name and teacher_label_columns from --config and/or the explicit flags (flags win)."""
    cache, name, columns = None, None, ()
    if args.config:
        from edgetag.training.config import load_config

        cfg = load_config(args.config)
        t, labels = cfg.teacher, cfg.data.labels
        cache = t.cache_dir or None
        name = t.teachers[0] if t.teachers else None
        if t.label_columns:
            if not labels or len(labels) != len(t.label_columns):
                raise ValueError(f"{args.config}: teacher.label_columns needs data.labels of the same length")
            columns = tuple(zip(labels, (int(c) for c in t.label_columns)))
    cache = args.teacher_cache or cache
    name = args.teacher or name
    columns = parse_label_columns(args.label_columns) if args.label_columns else columns
    if (cache or args.teacher or args.label_columns) and not (cache and name and columns):
        raise ValueError("a teacher task metric needs --teacher-cache, --teacher and --label-columns (or --config)")
    return {"teacher_cache": cache, "teacher_name": name, "teacher_label_columns": columns}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="edgetag bench")
    sub = parser.add_subparsers(dest="command")
    register(sub)
    args = parser.parse_args(["bench", *(argv or [])])
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
