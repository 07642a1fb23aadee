"""``edgetag enroll``: new labels from a few example clips, written as a sealed model (see `edgetag.runtime.enroll`).

Standard library only at module level, so that ``edgetag --help`` stays light.
"""

from __future__ import annotations

import argparse
import sys


#: A label accepting this share of the background's decisions or more gets a warning.
BACKGROUND_WARNING = 0.2
#: ... and one accepting less than this share of its own held-out example decisions.
LOW_TRUE_ACCEPT = 0.5


def cmd_enroll(args: argparse.Namespace) -> int:
    from pathlib import Path

    from edgetag.runtime.enroll import audio_files, enroll, parse_add
    from edgetag.runtime.model_card import printable
    from edgetag.runtime.models import resolve_model

    source = resolve_model(args.model)
    additions = [parse_add(spec) for spec in args.add]
    background = audio_files(args.background, what="--background") if args.background else None

    def say(message: str) -> None:
        print(f"edgetag enroll: {printable(message)}", file=sys.stderr, flush=True)

    result = enroll(source, additions, args.output, background=background, keep_labels=args.keep_labels,
                    name=args.name, threads=args.threads, log=say)
    card, record = result.card, result.card.provenance["enrollment"]
    print(f"wrote {result.path} ({card.name}): {len(result.enrollment.labels)} enrolled label(s)"
          + (f" + {len(record['kept_labels'])} of {Path(source).name}" if record["kept_labels"] else "")
          + f", from {Path(source).name} in {result.seconds:.2f} s")
    print(f"background {result.background}: {result.background_decisions} decisions; "
          f"leave-one-out nearest-prototype accuracy {result.enrollment.loo_accuracy:.3f}")
    warnings = []
    for label, stats in zip(result.enrollment.labels, result.enrollment.stats):
        entry = record["labels"][label]
        added = result.added.get(label, 0)
        others = (f", {100 * stats.other_labels_accept:.1f} % of the other labels' "
                  f"(most: {stats.closest_other_label}'s)" if stats.closest_other_label else "")
        print(printable(
            f"  {label}: {entry['examples']} examples" + (f" ({added} new)" if added != entry["examples"] else "")
            + f", cosine threshold {stats.threshold:.3f} (score {entry['threshold']:.3f}); calibration: "
            f"{100 * stats.true_accept:.0f} % of held-out example decisions accepted, "
            f"{100 * stats.background_accept:.1f} % of the background's{others}"
            + ("" if stats.separable else " (they overlap: give more or cleaner examples, or more background)")
            + (" (threshold from the background alone: the other labels' examples would lower it)"
               if stats.raised_to_background else "")))
        if stats.background_accept >= BACKGROUND_WARNING:
            warnings.append(f"{label} accepts {100 * stats.background_accept:.0f} % of the background's decisions: its "
                            "examples sound like the background, so it will be on for much of what you play; give "
                            "examples that differ from it, or a --background without this sound")
        elif stats.true_accept < LOW_TRUE_ACCEPT:
            warnings.append(f"{label} accepts only {100 * stats.true_accept:.0f} % of its own examples' decisions "
                            "(each held out in turn): the background holds sounds like them, or the examples differ a lot "
                            "from each other, so it will rarely turn on; give more or cleaner examples, or a "
                            "--background without this sound")
    for warning in warnings:
        say("warning: " + warning)
    print(f"sha256 {card.integrity['sha256'][:16]}...; run it with `edgetag tag FILE --model {result.path}`, "
          "`edgetag listen --model ...`, `edgetag verify ...`")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``enroll``."""
    p = sub.add_parser(
        "enroll",
        help="new labels from a few example clips (>= 3 each): a sealed model tag/listen/verify run as any",
        description=(
            "Enrol your own sounds on a model with an embedding output: each label's prototype is the mean "
            "embedding of its example clips, an open-set threshold per label is calibrated (leave-one-out "
            "examples against background audio), and a new sealed ONNX model is written whose labels are "
            "yours; a decision where no label reaches its threshold means 'none of these'. Given an enrolled "
            "model, --add updates its labels (examples re-averaged, thresholds re-calibrated) or adds labels. "
            "Needs numpy, ONNX Runtime and the onnx package; no torch."
        ),
    )
    p.add_argument("--model", help="model to enrol on: a built-in name or an .onnx file with an embedding output, "
                   "or a model enrolled before (default: music-tags)")
    p.add_argument("--add", action="append", required=True, metavar="NAME=FILES",
                   help="a label and its examples: a folder of audio files or files separated by commas "
                        "(at least 3 per label; repeat --add for each label)")
    p.add_argument("--background", action="append", metavar="DIR_OR_FILE",
                   help="audio with none of the labels, to calibrate the thresholds against (repeatable; "
                        "default: the built-in demo music and a second of silence)")
    p.add_argument("-o", "--output", required=True, help="the enrolled model to write (.onnx; never the input)")
    p.add_argument("--keep-labels", action="store_true",
                   help="keep the source model's own labels after the new ones (multi-label taggers only)")
    p.add_argument("--name", help="model name in the card (default: the source's name + '-enrolled')")
    p.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads (default 1)")
    p.set_defaults(func=cmd_enroll)
