"""Reprogramming vs fine-tuning a pretrained student for a new label set, on General MIDI renders.

The question: does training only a small input transform and an output
mapping around a frozen student (``method = "reprogram"``, Chen & Lerch, MMM 2023)
come close to fine-tuning the whole student (``method = "finetune"``) for new labels,
with far fewer trainable parameters?

Data (``prepare``; fluidsynth + FluidR3_GM, seconds to render):

- **source** task: 32 General MIDI instruments (``--source broad``; ``narrow``: 10 of
  them) that are neither target labels nor of a target's General MIDI family (chromatic
  percussion, organs, basses, brass, reeds, synth leads and pads, steel drums), rendered
  with the instruments recipe's own clip writer (``clip_events``), 3 s clips, one or two
  instruments each (multi-label), 40 clips per instrument. The base student learns them.
- **target** task: the instruments recipe's renders (``training/recipes/instruments/
  prepare.py``: cello, choir, drums, flute, guitar, harp, harpsichord, piano, sitar,
  violin; one or two instruments per 3 s clip), ``--n-labelled`` labelled training
  clips and a 150-clip test split; no unlabelled clips.

Runs (``run``), every one through the trainer (`edgetag.training.trainer.train`):

- ``base``: the recipe's student (MobileNet width 0.25, 128-d embedding, 1 s windows)
  trained on the source labels (method ``labels``);
- ``finetune``: every weight of the base trained for the target labels, a new linear
  head on its embedding;
- ``reprogram`` rows: the base frozen, only the transform and the output mapping trained
  (conv, affine or additive transform; the mapping reads the base's logits, or its embedding);
- ``probe``: the frozen base's embedding and a linear head, no input transform (what the
  transform adds to the embedding mapping);
- ``scratch``: the same student trained from scratch on the target labels alone (context).

Each target run has the same steps, batch, schedule, augmentation and seed; learning
rates differ by method (printed). Test metrics: the clip's score is the mean of its
windows' sigmoid scores (1 s windows every 0.5 s, as ``edgetag evaluate`` and the runtime
run them); macro F1 at the checkpoint's thresholds (0.5), mAP, top-1 accuracy (the
highest-scoring label is one of the clip's instruments) and exact match (the set of labels
at 0.5 equals the clip's). Train time: wall time of the trainer call (features cached
before, one thread).

    python benchmarks/reprogram.py prepare --data /work/data/reprogram
    OMP_NUM_THREADS=1 nice python benchmarks/reprogram.py run --data /work/data/reprogram --steps 300 --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

RECIPE = Path(__file__).resolve().parents[1] / "training" / "recipes" / "instruments"

# name: (GM program, lowest note, highest note, style). No source instrument is a target label, nor of a
# target's General MIDI family (pianos, guitars, solo strings, ensembles and voices, pipes, ethnic): the
# labels are new to the base, as a new label set is. "narrow": ten of them; "broad": 32 (the default).
SOURCE_BROAD = {
    "celesta": (8, 60, 96, "keys"), "glockenspiel": (9, 72, 105, "keys"), "music_box": (10, 60, 96, "keys"),
    "vibraphone": (11, 53, 89, "keys"), "marimba": (12, 48, 84, "keys"), "xylophone": (13, 65, 96, "keys"),
    "tubular_bells": (14, 60, 77, "keys"), "dulcimer": (15, 60, 84, "plucked"),
    "drawbar_organ": (16, 36, 84, "sustained"), "rock_organ": (18, 36, 84, "sustained"),
    "church_organ": (19, 36, 84, "sustained"), "accordion": (21, 53, 89, "sustained"),
    "harmonica": (22, 60, 84, "sustained"),
    "acoustic_bass": (32, 28, 55, "plucked"), "electric_bass": (33, 28, 55, "plucked"),
    "slap_bass": (36, 28, 55, "plucked"), "synth_bass": (38, 28, 55, "plucked"),
    "trumpet": (56, 55, 82, "sustained"), "trombone": (57, 40, 72, "sustained"), "tuba": (58, 28, 58, "sustained"),
    "french_horn": (60, 41, 77, "sustained"), "brass_section": (61, 48, 80, "sustained"),
    "soprano_sax": (64, 56, 87, "sustained"), "alto_sax": (65, 49, 80, "sustained"),
    "tenor_sax": (66, 44, 75, "sustained"), "oboe": (68, 58, 91, "sustained"), "bassoon": (70, 34, 72, "sustained"),
    "clarinet": (71, 50, 89, "sustained"),
    "square_lead": (80, 48, 84, "sustained"), "saw_lead": (81, 48, 84, "sustained"),
    "warm_pad": (89, 48, 84, "sustained"), "steel_drums": (114, 52, 76, "keys"),
}
SOURCE_NARROW = {name: SOURCE_BROAD[name] for name in (
    "church_organ", "trumpet", "alto_sax", "clarinet", "acoustic_bass", "marimba", "accordion", "french_horn",
    "vibraphone", "steel_drums")}
SOURCES = {"broad": SOURCE_BROAD, "narrow": SOURCE_NARROW}

STUDENT = ["student.kind=mobilenet", "student.params={width: 0.25, embedding_dim: 128}"]
COMMON = ["data.segment_seconds=1.0", "data.task=multi_label", "data.valid_split=null", "frontend.preset=default",
          "optim.batch_size=32", "optim.weight_decay=0.01", "optim.ema_decay=0.99", "optim.device=cpu",
          "augment.time_masks=2", "augment.time_mask_frames=10", "augment.freq_masks=2", "augment.freq_mask_bins=8",
          "augment.gain_db=[-6,6]", "augment.time_shift_seconds=0.25", "checkpoint.every=0", "checkpoint.keep=1",
          "logging.progress=false", "logging.every=10"]
# (run id, row name, method, learning rate, reprogram-section overrides)
RUNS: list[tuple[str, str, str, float, list[str]]] = [
    ("finetune", "finetune: all weights, new head on the embedding", "finetune", 1e-3,
     ["reprogram.transform=none", "reprogram.head_input=embedding"]),
    ("rp-logits", "reprogram: conv transform + mapping from the logits", "reprogram", 1e-2,
     ["reprogram.transform=conv", "reprogram.channels=16", "reprogram.head_input=logits"]),
    ("rp-embedding", "reprogram: conv transform + mapping from the embedding", "reprogram", 1e-2,
     ["reprogram.transform=conv", "reprogram.channels=16", "reprogram.head_input=embedding"]),
    ("rp-affine", "reprogram: affine transform + mapping from the embedding", "reprogram", 1e-2,
     ["reprogram.transform=affine", "reprogram.head_input=embedding"]),
    ("rp-additive", "reprogram: additive transform + mapping from the embedding", "reprogram", 1e-2,
     ["reprogram.transform=additive", "reprogram.head_input=embedding"]),
    ("probe", "probe: frozen embedding + linear head, no transform", "reprogram", 1e-2,
     ["reprogram.transform=none", "reprogram.head_input=embedding"]),
    ("scratch", "scratch: the student trained on the target labels only", "labels", 3e-3, []),
]


# ----------------------------------------------------------------------------------------- data
def _render_source(out: Path, table: dict[str, tuple[int, int, int, str]], per_label: int, seconds: float,
                   seed: int) -> None:
    """The source task's clips and manifest (train split only: the base's quality is not the question)."""
    sys.path.insert(0, str(RECIPE))
    import prepare as recipe  # the instruments recipe's clip writer
    import soundfile as sf
    from recipe_common import SOUNDFONTS, TICKS_PER_S, render_clips

    soundfont = next((s for s in SOUNDFONTS if Path(s).is_file()), None)
    if soundfont is None:
        sys.exit("no General MIDI soundfont: apt-get install -y --no-install-recommends fluidsynth fluid-soundfont-gm")
    rng = random.Random(seed)
    names = sorted(table)
    clips = []
    for i in range(per_label * len(names)):
        first = names[i % len(names)]
        pair = [first] + ([rng.choice([n for n in names if n != first])] if rng.random() < 0.4 else [])
        clips.append(pair)
    slot = seconds + 1.0
    events: list = []
    for j, pair in enumerate(clips):
        events += recipe.clip_events(rng, pair, seconds, round(j * slot * TICKS_PER_S), table=table)
    (out / "clips").mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        waves = render_clips(events, len(clips), seconds, slot, soundfont=soundfont, rate=16000, tmp=Path(tmp),
                             name="source", rng=rng, level_db=(-12.0, -1.0))
    rows = []
    for i, (pair, x) in enumerate(zip(clips, waves)):
        rel = f"clips/source-{i:04d}.wav"
        sf.write(str(out / rel), x, 16000, subtype="PCM_16")
        rows.append({"path": rel, "labels": ";".join(pair), "split": "train"})
    with open(out / "manifest.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=["path", "labels", "split"])
        w.writeheader()
        w.writerows(rows)
    (out / "labels.txt").write_text("\n".join(names) + "\n", encoding="utf-8")


def cmd_prepare(args: argparse.Namespace) -> int:
    data = Path(args.data)
    t0 = time.perf_counter()
    if not (data / "source" / "manifest.csv").is_file():
        _render_source(data / "source", SOURCES[args.source], args.per_label, 3.0, args.seed)
    if not (data / "target" / "manifest.csv").is_file():
        subprocess.run([sys.executable, str(RECIPE / "prepare.py"), "--out", str(data / "target"),
                        "--n-labelled", str(args.n_labelled), "--n-unlabelled", "0", "--n-valid", "0",
                        "--n-test", str(args.n_test), "--seed", str(args.seed + 1)], check=True)
    print(f"prepared {data} in {time.perf_counter() - t0:.1f} s")
    return 0


# ------------------------------------------------------------------------------------ training
def _train(data: Path, name: str, overrides: list[str]) -> tuple[Path, float, int, float]:
    """One trainer run in ``data/runs/name`` (kept and reused when its student.pt exists)."""
    from edgetag.training.checkpoint import load_checkpoint
    from edgetag.training.config import load_config
    from edgetag.training.students import macs_per_second
    from edgetag.training.trainer import train

    run_dir = data / "runs" / name
    config = load_config(None, [f"data.feature_cache={data / 'features'}", *COMMON, *overrides])
    seconds_file = run_dir / "train_seconds.txt"
    if not (run_dir / "student.pt").is_file() or not seconds_file.is_file():
        t0 = time.perf_counter()
        train(config, run_dir)
        seconds_file.write_text(f"{time.perf_counter() - t0:.2f}\n")
    ckpt = load_checkpoint(run_dir / "student.pt")
    # what the model costs where it runs: MACs per second of audio at its decision hop
    macs = macs_per_second(ckpt.student, ckpt.frontend.frame_rate, ckpt.hop_frames)
    return run_dir / "student.pt", float(seconds_file.read_text()), int(ckpt.provenance["trainable_parameters"]), macs


def _warm_features(data: Path, manifest: Path) -> None:
    """Features of every clip in the shared cache, so that train times are training only."""
    from edgetag.training.config import load_config
    from edgetag.training.data import load_manifest
    from edgetag.training.train_data import load_split

    config = load_config(None, [f"data.manifest={manifest}", *COMMON])
    m = load_manifest(str(manifest))
    for split in m.splits():
        load_split(m, split, config.frontend_config(), data / "features", keep=False)


# ----------------------------------------------------------------------------------- evaluation
def _scores(checkpoint: Path, clips: Any) -> np.ndarray:
    from edgetag.training.checkpoint import load_checkpoint
    from edgetag.training.evaluate import run_model
    from edgetag.training.torch_backend import TorchModel

    model = TorchModel.from_checkpoint(load_checkpoint(checkpoint), checkpoint)
    return np.stack([run_model(model, f).scores.mean(0) for f in clips.features])


def _metrics(scores: np.ndarray, clips: Any, labels: list[str]) -> dict[str, float]:
    from edgetag.training.metrics import tagging_metrics

    y = np.array([[label in e.positives for label in labels] for e in clips.entries], dtype=np.float32)
    out = tagging_metrics(y, scores, None, 0.5, "multi_label")
    top = scores.argmax(1)
    return {"macro_f1": out.get("macro_f1", float("nan")), "map": out.get("map", float("nan")),  # NaN: no positive
            "top1_accuracy": float(y[np.arange(len(y)), top].mean()),
            "exact_match": float(((scores >= 0.5) == (y > 0.5)).all(1).mean())}


def cmd_run(args: argparse.Namespace) -> int:
    import torch

    from edgetag.runtime.frontend import FrontendConfig
    from edgetag.training.evaluate import load_eval_clips

    torch.set_num_threads(1)
    data = Path(args.data)
    source, target = data / "source" / "manifest.csv", data / "target" / "manifest.csv"
    if not source.is_file() or not target.is_file():
        sys.exit(f"no data in {data}: run `python benchmarks/reprogram.py prepare --data {data}` first")
    _warm_features(data, source)
    _warm_features(data, target)
    labels = (data / "target" / "labels.txt").read_text().split()
    clips = load_eval_clips(str(target), FrontendConfig.preset("default"), split="test")
    rows = []
    for seed in args.seeds:
        base, base_s, base_n, _ = _train(data, f"base-s{seed}-{args.base_steps}", [
            f"data.manifest={source}", "method=labels", *STUDENT, "optim.lr=3e-3", f"optim.steps={args.base_steps}",
            f"optim.warmup_steps={args.base_steps // 10}", f"optim.seed={seed}"])
        print(f"base (seed {seed}): {base_n:,} parameters, {args.base_steps} steps, {base_s:.0f} s", flush=True)
        for tag, name, method, lr, extra in RUNS:
            if args.only and tag not in args.only:
                continue
            overrides = [f"data.manifest={target}", f"method={method}", f"optim.lr={lr}", f"optim.steps={args.steps}",
                         f"optim.warmup_steps={args.steps // 10}", f"optim.seed={seed}", *extra]
            if method == "labels":
                overrides += STUDENT
            else:
                overrides.append(f"reprogram.base_checkpoint={base}")
            path, seconds, trainable, macs = _train(data, f"{tag}-s{seed}-{args.steps}", overrides)
            m = _metrics(_scores(path, clips), clips, labels)
            rows.append({"run": name, "method": method, "seed": seed, "lr": lr, "trainable": trainable,
                         "macs_per_s": macs, "train_s": seconds, **m})
            print(f"  {name}: trainable {trainable:,}, macro F1 {m['macro_f1']:.3f}, mAP {m['map']:.3f}, "
                  f"top-1 {m['top1_accuracy']:.3f}, exact {m['exact_match']:.3f}, {seconds:.0f} s", flush=True)
    _print_table(rows, args)
    (data / "results.json").write_text(json.dumps(rows, indent=1) + "\n")
    return 0


def _print_table(rows: list[dict[str, Any]], args: argparse.Namespace) -> None:
    print(f"\n{len(args.seeds)} seed(s) {args.seeds}, {args.steps} steps per target run, batch 32, "
          f"test split of the target renders (mean over seeds)\n")
    print("| run | method | lr | trainable params | macro F1 [min, max] | mAP | top-1 acc. | exact match | MMACs/s "
          "| train s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name in dict.fromkeys(r["run"] for r in rows):
        group = [r for r in rows if r["run"] == name]

        def mean(key: str, group: list[dict[str, Any]] = group) -> float:
            return float(np.mean([r[key] for r in group]))

        f1 = [r["macro_f1"] for r in group]
        print(f"| {name} | {group[0]['method']} | {group[0]['lr']:g} | {group[0]['trainable']:,} "
              f"| {mean('macro_f1'):.3f} [{min(f1):.3f}, {max(f1):.3f}] | {mean('map'):.3f} | {mean('top1_accuracy'):.3f} "
              f"| {mean('exact_match'):.3f} | {mean('macs_per_s') / 1e6:.2f} | {mean('train_s'):.0f} |")
    fine = {r["seed"]: r for r in rows if r["method"] == "finetune"}
    if not fine:
        return
    print("\nagainst finetune (target: within 2 macro-F1 points with >= 10x fewer trainable parameters):")
    for name in dict.fromkeys(r["run"] for r in rows if r["method"] == "reprogram" and r["seed"] in fine):
        group = [r for r in rows if r["run"] == name and r["seed"] in fine]
        gaps = [100 * (r["macro_f1"] - fine[r["seed"]]["macro_f1"]) for r in group]
        ratio = fine[group[0]["seed"]]["trainable"] / group[0]["trainable"]
        print(f"  {name}: {np.mean(gaps):+.1f} points (per seed {', '.join(f'{g:+.1f}' for g in gaps)}), "
              f"{ratio:.0f}x fewer trainable parameters")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare", help="render the source and target sets")
    p.add_argument("--data", default="/work/data/reprogram")
    p.add_argument("--source", choices=sorted(SOURCES), default="broad", help="the base's instruments")
    p.add_argument("--per-label", type=int, default=40, help="source clips per source instrument (as first instrument)")
    p.add_argument("--n-labelled", type=int, default=100, help="target-task labelled training clips")
    p.add_argument("--n-test", type=int, default=150)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_prepare)
    r = sub.add_parser("run", help="train the base, then every target run, and print the table")
    r.add_argument("--data", default="/work/data/reprogram")
    r.add_argument("--steps", type=int, default=300, help="optimiser steps of each target run")
    r.add_argument("--base-steps", type=int, default=2000, help="optimiser steps of the base student")
    r.add_argument("--seeds", type=lambda s: [int(x) for x in s.split(",")], default=[0])
    r.add_argument("--only", nargs="*", choices=[run[0] for run in RUNS], help="run only these rows")
    r.set_defaults(func=cmd_run)
    args = ap.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
