"""The ``edgetag`` command: the subcommands of every installed part of edgetag.

The runtime's own commands come first; every other part registers a
``register(subparsers)`` function under the ``edgetag.commands`` entry-point
group (pyproject.toml), so this module names no other part.
Those modules import only the standard library at module level (torch, onnx
and sounddevice are imported inside the command functions), so that
``edgetag --help`` works everywhere and a missing extra is reported by the
command that needs it.
"""

from __future__ import annotations

import argparse
import os
import sys

#: Entry-point group of the subcommand registrars.
COMMAND_GROUP = "edgetag.commands"


def build_parser() -> argparse.ArgumentParser:
    from importlib.metadata import entry_points

    parser = argparse.ArgumentParser(
        prog="edgetag",
        description="Edge audio tagging: a streaming C++ front end, distilled students, ONNX Runtime.",
    )
    from edgetag.runtime.version import package_version  # standard library only: --help stays light

    parser.add_argument("--version", action="version", version=f"edgetag {package_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    # the runtime's own commands need no metadata (a device may carry the runtime without it)
    from edgetag.runtime.commands import register
    from edgetag.runtime.enroll_command import register as register_enroll

    register(sub)
    register_enroll(sub)
    for part in entry_points(group=COMMAND_GROUP):  # the other parts, as pyproject.toml lists them
        if part.name != "runtime":
            part.load()(sub)
    return parser


#: Exit status after Ctrl-C: 128 + SIGINT, what shells report for a program SIGINT ended.
INTERRUPTED = 130


def main(argv: list[str] | None = None) -> int:
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
    except KeyboardInterrupt:  # Ctrl-C while the parts load
        return _interrupted("edgetag")
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    from edgetag.runtime.audio import AudioError

    try:
        return args.func(args)
    except KeyboardInterrupt:
        # Ctrl-C: the user's choice, not an error; one line, no traceback (``listen`` handles its own
        # first Ctrl-C as the end of the stream and exits 0 with its stats)
        return _interrupted(f"edgetag {args.command}")
    except BrokenPipeError:
        # the reader went away (`edgetag tag ... | head`): stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit's flush
        return 0
    except (ValueError, OSError, ImportError, AudioError) as exc:
        # Errors of input and environment: one clear line, no traceback.
        print(f"edgetag {args.command}: error: {exc}", file=sys.stderr)
        return 1


def _interrupted(who: str) -> int:
    """Say that Ctrl-C stopped ``who``, on a line of its own, and return `INTERRUPTED`."""
    try:
        # on a terminal, overwrite the "^C" it echoed (and any progress line) rather than follow it
        start = "\r\x1b[K" if sys.stderr.isatty() else ""
        print(f"{start}{who}: interrupted (Ctrl-C)", file=sys.stderr, flush=True)
    except (OSError, ValueError):  # no stderr left to say it on
        pass
    return INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
