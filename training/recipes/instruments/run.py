#!/usr/bin/env python3
"""The instrument recipe end to end: data, teacher cache, four methods, one table.

    python3 training/recipes/instruments/run.py [--data /work/data/instruments] [--steps 400] [--seeds 0]

Steps (each skipped when its output exists, so a rerun only does what is missing):

1. ``prepare.py`` renders the clips and writes ``manifest.csv`` (needs fluidsynth);
2. ``edgetag teach --teacher musicnn-mtt`` fills the teacher cache (all splits; the
   trainer reads the train split, the table's teacher row the test split);
3. for each method and seed: ``edgetag distill base.toml method=M optim.seed=S`` and
   ``edgetag evaluate STUDENT --split test``;
4. writes ``results.md`` / ``results.json`` in the data directory: test mAP / ROC-AUC
   per method (mean over seeds), the teacher's own scores on its mapped columns, and
   wall times.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

# The recipes are scripts of a source checkout, not part of the installed package: their shared
# helpers (training/recipes/recipe_common.py) are found next to them.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from recipe_common import run_step  # noqa: E402


HERE = Path(__file__).resolve().parent
METHODS = {
    "labels": [],
    "labels (labelled clips only)": ["data.manifest={data}/manifest_labelled.csv"],
    "kd": [],
    "kd+conreg": [],
    "kd+disreg": [],
    "mean_teacher": [],
}


def teacher_scores(data: Path, labels: list[str], columns: list[int]) -> dict[str, float]:
    """The teacher's mapped tag probabilities as a tagger of the test split."""
    import numpy as np
    from edgetag.training.data import load_manifest
    from edgetag.training.cache import TeacherCacheLookup
    from edgetag.training.evaluate import _label_targets
    from edgetag.training.metrics import tagging_metrics

    manifest = load_manifest(data / "manifest.csv").select("test")
    lookup = TeacherCacheLookup(data / "cache" / "musicnn", "musicnn-mtt")
    entries = list(manifest.entries)
    scores = np.stack([lookup.get(e, 50).scores.mean(axis=0)[columns] for e in entries])
    y, mask, _ = _label_targets(entries, labels)
    m = tagging_metrics(y, scores, mask)
    return {"map": m.get("map", float("nan")), "roc_auc": m.get("roc_auc", float("nan"))}  # NaN: no labelled positive


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="data/instruments", help="where the data, cache and runs go (default data/instruments)")
    ap.add_argument("--config", default=str(HERE / "base.toml"))
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--seeds", default="0", help="comma-separated seeds")
    ap.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset of: " + ", ".join(METHODS))
    ap.add_argument("--runs", help="run directory (default DATA/runs)")
    ap.add_argument("--manifest", default="manifest.csv",
                    help="training manifest in DATA: manifest.csv (uniform sampling: ~12%% of a batch labelled) or "
                         "manifest_mixed.csv (labelled rows x8: ~half of a batch labelled)")
    ap.add_argument("overrides", nargs="*", help="extra config overrides for every run (KEY=VALUE)")
    args = ap.parse_args(argv)
    data = Path(args.data)
    runs = Path(args.runs) if args.runs else data / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    times: dict[str, float] = {}
    if not (data / args.manifest).is_file():
        times["prepare"] = run_step([sys.executable, str(HERE / "prepare.py"), "--out", str(data), "--n-valid", "50"])
    if not (data / "cache" / "musicnn" / "index.json").is_file():
        times["teach"] = run_step(["edgetag", "teach", "--teacher", "musicnn-mtt", "--data", str(data / "manifest.csv"),
                             "--out", str(data / "cache" / "musicnn"), "--device", "cpu", "--batch-size", "32", "--no-progress"])

    from edgetag.training.config import load_config

    base = load_config(args.config, [f"data.manifest={data}/manifest.csv", f"teacher.cache_dir={data}/cache/musicnn"])
    labels, columns = base.data.labels, base.teacher.label_columns
    results: dict[str, dict] = {"teacher (musicnn-mtt, mapped tags)": {"test": teacher_scores(data, labels, columns)}}
    for method in [m.strip() for m in args.methods.split(",") if m.strip()]:
        name = method.split(" ")[0]
        extra = [o.format(data=data) for o in METHODS[method]]
        per_seed = []
        for seed in [int(s) for s in args.seeds.split(",")]:
            tag = method.replace(" ", "_").replace("(", "").replace(")", "").replace("+", "_")
            if args.manifest != "manifest.csv" and not extra:
                tag += "-" + Path(args.manifest).stem
            run_dir = runs / f"{tag}-s{seed}-{args.steps}"
            student = run_dir / "student.pt"
            wall = None
            if not student.is_file():
                cmd = ["edgetag", "distill", args.config, f"method={name}", f"optim.seed={seed}", f"optim.steps={args.steps}",
                       f"data.manifest={data}/{args.manifest}", f"teacher.cache_dir={data}/cache/musicnn",
                       f"data.feature_cache={data}/features", *extra, *args.overrides, "--run-dir", str(run_dir), "--no-progress"]
                run_dir.mkdir(parents=True, exist_ok=True)
                wall = run_step(cmd, run_dir / "distill.log")
                (run_dir / "wall_seconds.txt").write_text(f"{wall:.1f}\n")
            elif (run_dir / "wall_seconds.txt").is_file():
                wall = float((run_dir / "wall_seconds.txt").read_text())
            out = run_dir / "eval-test.json"
            if not out.is_file():
                run_step(["edgetag", "evaluate", str(student), "--data", str(data / "manifest.csv"), "--split", "test",
                    "--out", str(out), "--no-progress"], run_dir / "evaluate.log")
            m = json.loads(out.read_text())["metrics"]["labels"]
            per_seed.append({"seed": seed, "map": m["map"], "roc_auc": m["roc_auc"], "wall_s": wall})
            print(f"{method:<32} seed {seed}: mAP {m['map']:.4f}  ROC-AUC {m['roc_auc']:.4f}  ({wall or 0:.0f} s)", flush=True)
        results[method] = {"seeds": per_seed}
    suffix = "" if args.manifest == "manifest.csv" else "-" + Path(args.manifest).stem
    (data / f"results{suffix}.json").write_text(json.dumps({"steps": args.steps, "seeds": args.seeds, "times": times,
                                                   "results": results}, indent=2))
    lines = ["| method | test mAP | test ROC-AUC | per seed mAP | train wall (s) |", "|---|---|---|---|---|"]
    for method, r in results.items():
        if "test" in r:
            lines.append(f"| {method} | {r['test']['map']:.3f} | {r['test']['roc_auc']:.3f} | | |")
            continue
        s = r["seeds"]
        def mean(k: str, s: list = s) -> float:
            return sum(x[k] for x in s) / len(s)

        walls = [x["wall_s"] for x in s if x["wall_s"]]
        wall = f"{sum(walls) / len(walls):.0f}" if walls else ""
        lines.append(f"| {method} | {mean('map'):.3f} | {mean('roc_auc'):.3f} | {' '.join(format(x['map'], '.3f') for x in s)} | {wall} |")
    table = "\n".join(lines)
    (data / f"results{suffix}.md").write_text(table + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
