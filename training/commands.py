"""Training subcommands of ``edgetag``: ``teach``.

Importing this module must stay cheap and torch-free (``edgetag --help``
imports it); torch and the teachers are imported when a command runs.
"""

from __future__ import annotations

import argparse


def _parse_option(text: str) -> tuple[str, object]:
    """``KEY=VALUE`` with VALUE read as int, float, true/false or a string."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    for cast in (int, float):
        try:
            return key, cast(value)
        except ValueError:
            pass
    return key, {"true": True, "false": False}.get(value.lower(), value)


def cmd_teach(args: argparse.Namespace) -> int:
    # Heavy imports (torch, the teachers) only when the command runs.
    from edgetag.training.cache import fill_cache
    from edgetag.training.teachers import get_teacher

    options = dict(args.teacher_option or [])
    names = [n.strip() for n in args.teacher.split(",") if n.strip()]
    if not names:
        raise ValueError("--teacher needs at least one teacher name")
    teachers = [get_teacher(n, **options) for n in names]
    summary = fill_cache(
        teachers,
        args.data,
        args.out,
        batch_size=args.batch_size,
        device=args.device,
        progress=not args.no_progress,
        root=args.root,
        split=args.split,
        chunk_seconds=args.chunk_seconds,
        topk=args.topk,
        shard_entries=args.shard_entries,
    )
    print(f"teachers  {', '.join(t.identity() for t in teachers)}")
    print(summary.text())
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``teach``."""
    p = sub.add_parser(
        "teach",
        help="run teachers over a data manifest and cache their outputs",
        description=(
            "Run each teacher once over a manifest's segments and store scores and embeddings "
            "(float16) in a sharded, checksummed cache. Re-running resumes: stored outputs are "
            "skipped. Under torchrun each rank takes a slice and rank 0 merges the index."
        ),
    )
    p.add_argument("--teacher", required=True, help="teacher name(s), comma-separated (e.g. crepe-tiny,musicnn-mtt)")
    p.add_argument("--data", required=True, help="manifest (CSV or JSONL)")
    p.add_argument("--root", help="directory the manifest's paths are relative to (default: the manifest's)")
    p.add_argument("--out", required=True, help="cache directory")
    p.add_argument("--batch-size", type=int, default=8, help="windows per teacher call (default 8)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="default: CUDA if available")
    p.add_argument("--split", help="only entries of this split (default: all)")
    p.add_argument("--chunk-seconds", type=float, default=30.0, help="cut long segments into windows (default 30)")
    p.add_argument("--topk", type=int, help="store only the top-k scores per frame for large label sets")
    p.add_argument(
        "--teacher-option", type=_parse_option, action="append", metavar="KEY=VALUE",
        help="keyword argument for the teacher factories (e.g. hop_length=1600); repeatable",
    )
    p.add_argument("--shard-entries", type=int, default=4096, help="entries per shard file (default 4096)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_teach)
