"""Held-out agreement of the music-tags student with its teacher, per tag and per tag family.

    python benchmarks/tag_families.py --model runtime/models/music-tags.onnx runtime/models/music-tags.int8.onnx \\
        --data /work/data/musictag/manifest.jsonl --root /work/data/edgetag-audio \\
        --teacher-cache /work/data/musictag/cache --teacher musicnn-mtt+musicnn-msd --split test \\
        --json tag_families.json [--write-card]

Each model file runs over every entry of the split as ``edgetag tag`` runs it,
lined up with the cached teacher's windows by
`edgetag.training.teacher_windows.align` (the music-tag recipe's and
``edgetag calibrate``'s alignment), and is scored per tag and per family
(instruments, genres, vocals, the rest) by
`edgetag.training.tag_families.tag_agreement`: ROC-AUC and PR-AUC against the
teacher's tags binarised at 0.5, macro over the tags with at least
``--min-positive-windows`` positive teacher windows. Prints the family table
and the per-tag table (markdown); ``--json`` writes everything.

``--write-card`` records each file's per-tag held-out figures and family macros
in its card (``provenance.evaluation``, through
`edgetag.export.model_file.record_metrics`, as ``edgetag calibrate`` writes its
thresholds): the graph, its digest and its test vector are unchanged, so
``edgetag verify`` still passes; ``edgetag info``, ``listen`` and ``tag`` then
mark the tags whose held-out ROC-AUC is below 0.75
(`edgetag.runtime.tag_reliability`). Write only a split held out of training.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any


def measure(model_path: str | Path, args: argparse.Namespace) -> dict[str, Any]:
    """`tag_agreement` of one model file on ``args.split`` (with where and how it was measured)."""
    from edgetag.runtime.model import load_model
    from edgetag.training.tag_families import tag_agreement
    from edgetag.training.teacher_windows import align, teacher_columns

    start = time.process_time()
    model = load_model(model_path, threads=1)
    card = model.card
    aligned = align(model, args.data, args.root, args.teacher_cache, args.teacher, args.split,
                    teacher_columns(args.teacher_columns, card.n_labels))
    result = tag_agreement(aligned.student, aligned.teacher, aligned.track, card.labels,
                           threshold=args.teacher_threshold, min_positive_windows=args.min_positive_windows)
    return {"model": str(model_path), "split": args.split, "teacher": aligned.teacher_identity,
            "packages": sorted({p for p in aligned.package if p}), "missing_entries": aligned.missing,
            "unreadable_entries": aligned.unreadable, "cpu_s": round(time.process_time() - start, 1), **result}


def write_card(model_path: str | Path, result: dict[str, Any]) -> Any:
    """Add the per-tag and family record to the card's ``provenance.evaluation`` (its other entries kept)."""
    from edgetag.export.model_file import record_metrics
    from edgetag.runtime.model import load_model
    from edgetag.training.tag_families import card_record

    card = load_model(model_path).card
    evaluation = dict(card.provenance.get("evaluation", {}))
    # record_metrics merges provenance one level deep: hand it the whole evaluation entry
    precision = card.provenance.get("export", {}).get("precision", "fp32")  # an int8 file is measured itself
    evaluation.update(card_record(result, precision), packages=result["packages"], tracks=result["tracks"],
                      windows=result["windows"])
    return record_metrics(model_path, {}, {"evaluation": evaluation})


def main(argv: list[str] | None = None) -> int:
    from edgetag.training.tag_families import MIN_POSITIVE_WINDOWS, table, tag_table

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", nargs="+", required=True, help="edgetag ONNX file(s) or built-in name(s)")
    ap.add_argument("--data", required=True, help="manifest")
    ap.add_argument("--root", help="directory the manifest's paths are relative to")
    ap.add_argument("--teacher-cache", required=True)
    ap.add_argument("--teacher", required=True)
    ap.add_argument("--teacher-columns", help="the teacher's column for each model label (default: the first N)")
    ap.add_argument("--teacher-threshold", type=float, default=0.5, help="the teacher's tags: scores >= this")
    ap.add_argument("--split", default="test", help="a split held out of training (default test)")
    ap.add_argument("--min-positive-windows", type=int, default=MIN_POSITIVE_WINDOWS,
                    help=f"positive teacher windows a tag needs to be scored (default {MIN_POSITIVE_WINDOWS})")
    ap.add_argument("--json", type=Path, help="write the results here")
    ap.add_argument("--write-card", action="store_true",
                    help="record each file's per-tag held-out ROC-AUC and family macros in its card")
    args = ap.parse_args(argv)
    from edgetag.runtime.models import resolve_model

    results = {}
    paths = [Path(resolve_model(spec)) for spec in args.model]
    names = [p.name for p in paths]
    for path in paths:
        # the file name labels a column; two files of one name (an old and a new music-tags.onnx) get their paths
        key = path.name if names.count(path.name) == 1 else str(path)
        results[key] = measure(path, args)
        print(f"{key}: {results[key]['windows']} windows of {results[key]['tracks']} tracks, "
              f"{results[key]['cpu_s']} s CPU", file=sys.stderr)
        if args.write_card:
            write_card(path, results[key])
            print(f"wrote the per-tag held-out figures into {path}'s card", file=sys.stderr)
    print(table(results))
    print()
    print(tag_table(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
