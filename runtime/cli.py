"""The ``edgetag`` command: collects the subcommands of every part of edgetag.

Each module in `COMMAND_MODULES` has ``register(subparsers)``. These modules
must import with the smallest install (numpy and the C++ extension): torch,
onnx and sounddevice are imported inside the command functions, so that
``edgetag --help`` works everywhere and a missing extra is reported by the
command that needs it.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

#: Where the subcommands live, one module per part of edgetag.
COMMAND_MODULES: tuple[str, ...] = (
    "edgetag.runtime.commands",
    "edgetag.training.commands",
    "edgetag.export.commands",
    "edgetag.benchmarks.commands",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgetag",
        description="Edge audio tagging: a streaming C++ front end, distilled students, ONNX Runtime.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    from edgetag.runtime.audio import AudioError

    try:
        return args.func(args)
    except BrokenPipeError:
        # the reader went away (`edgetag tag ... | head`): stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit's flush
        return 0
    except (ValueError, OSError, ImportError, AudioError) as exc:
        # Errors of input and environment: one clear line, no traceback.
        print(f"edgetag {args.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
