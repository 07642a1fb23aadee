"""Training subcommands of ``edgetag``: ``teach``, ``distill``, ``evaluate``, ``calibrate``.

Importing this module must stay cheap and torch-free (``edgetag --help``
imports it); torch and the teachers are imported when a command runs.
"""

from __future__ import annotations

import argparse
import re


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


def _build_teacher(name: str, options: dict[str, object]) -> object:
    """A registry teacher, or for ``a+b+...`` the equal-weight ensemble of the members over the union
    of their labels, named ``a+b+...`` (``--teacher-option`` values go to every member)."""
    from edgetag.training.teachers.ensemble import EnsembleTeacher

    members = [m.strip() for m in name.split("+")]
    if len(members) == 1:
        return _teacher(name, options)
    if not all(members):
        raise ValueError(f"--teacher {name!r}: an ensemble is written member+member (no empty names)")
    return EnsembleTeacher([_teacher(m, options) for m in members], labels="union", name="+".join(members))


#: What Python says when a call's arguments do not fit the function (not an error from inside it).
_BAD_ARGUMENTS = re.compile(r"unexpected keyword argument|missing \d+ required|takes \d+ positional|got multiple values")


def _teacher(name: str, options: dict[str, object]) -> object:
    """``get_teacher``, with an unknown name or options the teacher does not take as one-line errors."""
    from edgetag.training.teachers import get_teacher, known_teachers

    if name not in known_teachers():
        raise ValueError(f"--teacher: unknown teacher {name!r}; known teachers: {', '.join(known_teachers())}")
    try:
        return get_teacher(name, **options)
    except TypeError as exc:
        if not _BAD_ARGUMENTS.search(str(exc)):
            raise  # a fault inside the teacher: keep its traceback
        given = ", ".join(f"{k}={v!r}" for k, v in options.items()) or "none"
        raise ValueError(f"--teacher-option: teacher {name!r} does not take these options ({given}): {exc}; "
                         "each KEY must be a keyword argument of the teacher") from None


def cmd_teach(args: argparse.Namespace) -> int:
    # Heavy imports (torch, the teachers) only when the command runs.
    from edgetag.training.teach import fill_cache

    options = dict(args.teacher_option or [])
    names = [n.strip() for n in args.teacher.split(",") if n.strip()]
    if not names:
        raise ValueError("--teacher needs at least one teacher name")
    teachers = [_build_teacher(n, options) for n in names]
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


def cmd_evaluate(args: argparse.Namespace) -> int:
    # torch and the student are imported only when the command runs.
    from edgetag.training.evaluate import default_output, evaluate, write_json

    result = evaluate(
        args.checkpoint,
        args.data,
        root=args.root,
        split=None if args.split == "all" else args.split,
        teacher_cache=args.teacher_cache,
        teacher=args.teacher,
        pool=args.pool,
        teacher_threshold=args.teacher_threshold,
        teacher_kind=args.teacher_kind,
        teacher_offset=args.teacher_offset,
        voicing_threshold=args.voicing_threshold,
        progress=not args.no_progress,
    )
    print(result.text())
    out = write_json(result, args.out or default_output(args.checkpoint, args.split))
    print(f"wrote     {out}")
    return 0


def register_evaluate(sub: argparse._SubParsersAction) -> None:
    """Add ``evaluate``."""
    p = sub.add_parser(
        "evaluate",
        help="measure a student checkpoint on a manifest split (labels, teacher agreement, pitch)",
        description=(
            "Run a student checkpoint over a manifest's split and report mAP, ROC-AUC, PR-AUC, macro F1 "
            "(accuracy for multi-class) against the labels, missing labels masked; with --teacher-cache and "
            "--teacher also the agreement with the cached teacher outputs (and pitch accuracy for CREPE-bin "
            "students). Prints a table and writes JSON."
        ),
    )
    p.add_argument("checkpoint", help="student checkpoint (.pt)")
    p.add_argument("--data", required=True, help="manifest (CSV or JSONL)")
    p.add_argument("--root", help="directory the manifest's paths are relative to (default: the manifest's)")
    p.add_argument("--split", default="test", help="split to evaluate, or 'all' (default test)")
    p.add_argument("--teacher-cache", help="teacher cache directory (from 'edgetag teach')")
    p.add_argument("--teacher", help="teacher name or identity (name@hash) in the cache")
    p.add_argument("--pool", choices=["mean", "max"], default="mean", help="clip score from windows/frames (default mean)")
    p.add_argument("--teacher-threshold", type=float, default=0.5, help="teacher decisions for agreement (default 0.5)")
    p.add_argument("--teacher-kind", choices=["auto", "probabilities", "logits"], default="auto",
                   help="what the cached teacher scores are (default: probabilities if all in [0, 1])")
    p.add_argument("--teacher-offset", type=float, help="centre of teacher frame 0 in seconds (default: known per teacher, else 0)")
    p.add_argument("--voicing-threshold", type=float, default=0.5, help="pitch: voiced where confidence >= this (default 0.5)")
    p.add_argument("--out", help="JSON report (default CHECKPOINT.eval-SPLIT.json next to the checkpoint)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_evaluate)


def cmd_distill(args: argparse.Namespace) -> int:
    from pathlib import Path

    from edgetag.training.config import load_config

    # A ConfigError is a ValueError: the CLI prints it as one line naming the key.
    config = load_config(args.config, args.overrides)
    if args.no_progress:
        config.logging.progress = False
    from edgetag.training.trainer import train

    run_dir = Path(args.run_dir) if args.run_dir else Path("runs") / Path(args.config).stem
    result = train(config, run_dir)
    if result.student_path is not None:
        print(f"student   {result.student_path}")
        print(f"state     {result.state_path}")
        print(f"config    sha256 {result.config_hash}")
        if result.trainable_parameters is not None:
            print(f"trained   {result.trainable_parameters:,} parameters ({config.method})")
        for key, value in result.metrics.items():
            print(f"{key:<20} {value:.4f}")
    return 0


def register_distill(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "distill",
        help="train a student (labels, KD, KD + embedding regulariser, mean teacher, reprogramming) from a config",
        description=(
            "Train a student from a YAML or TOML config, with dotted KEY=VALUE overrides "
            "(e.g. optim.lr=3e-4 method=kd). The resolved config and its sha256 are written to the "
            "run directory; an interrupted run resumes from its newest checkpoint. Multi-GPU / "
            "multi-node: torchrun --nproc_per_node N -m edgetag.runtime.cli distill CONFIG ..."
        ),
    )
    p.add_argument("config", help="training config (.yaml, .yml or .toml)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. optim.steps=2000")
    p.add_argument("--run-dir", help="run directory (default runs/<config name>)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_distill)


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``teach``, ``evaluate``, ``distill`` and ``calibrate``."""
    from edgetag.training.thresholds import register_calibrate  # numpy only at import: --help stays cheap

    register_evaluate(sub)
    register_distill(sub)
    register_calibrate(sub)
    p = sub.add_parser(
        "teach",
        help="run teachers over a data manifest and cache their outputs",
        description=(
            "Run each teacher once over a manifest's segments and store scores and embeddings "
            "(float16) in a sharded, checksummed cache. Re-running resumes: stored outputs are "
            "skipped. Under torchrun each rank takes a slice and rank 0 merges the index."
        ),
    )
    p.add_argument("--teacher", required=True, help="teacher name(s), comma-separated (e.g. crepe-tiny,musicnn-mtt); "
                   "a+b is the ensemble of a and b over the union of their labels (e.g. musicnn-mtt+musicnn-msd)")
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
