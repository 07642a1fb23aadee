#!/usr/bin/env python3
"""The default music-tag model, from a fresh machine to the file shipped in the package.

    python3 training/recipes/musictag/run.py [--audio /work/data/edgetag-audio] [--data /work/data/musictag]
                                             [--steps 6000] [--teach-procs 2] [--install]

Steps, each skipped when its output exists (so a rerun, or a run killed at any
point, only does what is missing; the teacher cache and the trainer resume
inside a step too; steps 1 and 2 always run, and only fetch what is missing):

1. ``python -m edgetag.training.prepare_audio --out AUDIO``: Debian's game
   soundtracks, the soundtracks inside 18 games' data packages, two packs of
   band songs, and speech prompts (30.9 h from 31 packages);
2. ``prepare.py``: the music-only manifest (train 22.5 h from 19 packages;
   valid 1.5 h from 4 other packages and test 6.5 h from 7 more, whole tracks
   in 2-minute chunks);
3. ``edgetag teach --teacher musicnn-mtt+musicnn-msd``: the ensemble's 92 tag
   probabilities and 400-d embeddings per 3 s window, every split;
4. ``edgetag distill base.toml``: KD + Con-Reg into a plain CNN student shaped for
   int8 (``plain_cnn``) with a 1 s window;
5. ``edgetag export --int8``: fp32 and int8 ONNX (parity-checked, calibrated on
   training music, int8 gated on agreement with fp32 over the test packages);
6. ``edgetag calibrate`` on the valid packages: per-tag thresholds (max F1
   against the teacher's tags, `edgetag.training.thresholds`) written into
   both cards; then evaluation of both files against the teacher on the test packages (below),
   written into their cards and into ``DATA/export/RUN/results.{md,json}``; the same
   measure on the valid packages goes into the results only, to choose between runs
   without looking at the test packages (a stored measure is taken again when its
   split's entries change);
7. with ``--install``: copies both files into ``runtime/models/`` as the
   built-in ``music-tags`` and ``music-tags-int8`` (with ``--voices``: ``music-tags-voices``, the
   name the files are exported under; an export under another name is made again).

With ``--voices``, ``voices.py`` first writes 2 h of real speech mixed over the training music (and
held-out mixes over the valid and test music, for `benchmarks/voice_presence.py`), step 2 adds
the training mixes to the training split (the teacher labels them like the music), and after step 6
the thresholds of the voice tags (vocal, vocals, voice) are set from the valid mixes (``voices.py
--thresholds``: on in at most 5 % of the decisions over music alone).

Evaluation (agreement with the teacher on held-out music): on every test track, the model runs as
``edgetag tag`` would (a decision every 100 ms on the last 1 s). Each teacher
window (2.99 s) is compared with the mean of the student decisions whose 1 s
lies inside it; the track level compares a track's mean decision with its
mean teacher window (over all of its chunks). Reported: ROC-AUC and PR-AUC of
student scores against the teacher's tags binarised at 0.5 (macro over tags
with both classes present in the test set; the count is reported) with a 95 %
interval from resampling the test tracks, the per-tag ROC-AUC and count of
positive windows, and the mean per-tag Pearson correlation of the scores. Per
tag family (instruments, genres, vocals, the rest; `edgetag.training.tag_families`):
ROC-AUC and PR-AUC macro over the tags with >= 10 positive windows; those tags'
held-out ROC-AUC goes into each card, and ``edgetag info``, ``listen`` and ``tag``
mark the ones below 0.75 (``benchmarks/tag_families.py`` measures the same alone).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np

# The recipes are scripts of a source checkout, not part of the installed package: their shared
# helpers (training/recipes/recipe_common.py) are found next to them.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from recipe_common import run_step, split_rows_sha1, teach_command  # noqa: E402


HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
TEACHER = "musicnn-mtt+musicnn-msd"
N_TAGS = 50  # MagnaTagATune's tags: the ensemble's first 50 columns
THRESHOLD = 0.5
#: The built-in taggers ``--install-as`` may write (edgetag.runtime.models.BASE_MODELS): the default, and the
#: one trained with voices over the music (``--voices``).
TAGGER_BUILTINS = ("music-tags", "music-tags-voices")


def evaluate_agreement(model_path: Path, manifest: Path, root: Path, cache: Path, split: str = "test") -> dict[str, Any]:
    """Student-vs-teacher agreement on ``split``, per teacher window and per track (see the module docstring)."""
    from edgetag.runtime.model import load_model
    from edgetag.training import metrics as M
    from edgetag.training.tag_families import tag_agreement
    from edgetag.training.teacher_windows import align

    model = load_model(model_path, threads=1)
    card = model.card
    # the alignment is shared with threshold calibration (`edgetag calibrate`)
    aligned = align(model, manifest, root, cache, TEACHER, split, columns=range(N_TAGS))
    win_s, win_t, win_track, win_package = aligned.student, aligned.teacher, aligned.track, aligned.package
    missing = aligned.missing
    trk_s, trk_t = aligned.track_means()
    out: dict[str, Any] = {"split": split, "tracks": len(trk_s), "windows": len(win_s), "missing": missing,
                           "threshold": THRESHOLD, "unreadable": aligned.unreadable}
    for level, s, t in (("window", win_s, win_t), ("track", trk_s, trk_t)):
        a = M.agreement(np.stack(s), np.stack(t), threshold=THRESHOLD)
        out[level] = {"roc_auc": _finite(a["roc_auc"]), "pr_auc": _finite(a["pr_auc"]), "pearson": _finite(a["pearson"]),
                      "tags_scored": N_TAGS - int(a["roc_auc_skipped"]), "top1": a["top1"]}
    scores, tags = np.stack(win_s), (np.stack(win_t) >= THRESHOLD).astype(np.int64)
    # per tag and per family (instruments, genres, vocals, the rest); its per-tag ROC-AUC goes into the card
    families = tag_agreement(scores, np.stack(win_t), np.asarray(win_track), card.labels, threshold=THRESHOLD)
    out["window"]["families"] = families
    out["window"]["per_tag"] = {label: {"positive_windows": t["positive_windows"], "roc_auc": t["roc_auc"]}
                                for label, t in families["tags"].items() if t["roc_auc"] is not None}
    out["window"]["roc_auc_ci95"] = M.track_bootstrap(tags, scores, np.asarray(win_track))
    # Per package: where the student disagrees (macro over the tags with both classes in that package).
    out["window"]["per_package"] = {}
    for package in sorted(set(win_package)):
        rows = np.asarray(win_package) == package
        value, skipped = M.macro(M.per_class(M.roc_auc, tags[rows], scores[rows]))
        out["window"]["per_package"][package] = {
            "windows": int(rows.sum()), "tracks": len(set(np.asarray(win_track)[rows])),
            "roc_auc": _finite(value), "tags_scored": N_TAGS - int(skipped)}
    return out


def _finite(value: float) -> float | None:
    """None for an undefined score (no tag with both classes), so the results stay valid JSON."""
    return None if np.isnan(value) else float(value)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _agreement(model: Path, manifest: Path, audio: Path, cache: Path, split: str) -> dict[str, Any]:
    """`evaluate_agreement` on ``split``, stored beside the model (``X.agreement.json`` for test,
    ``X.agreement-valid.json`` for valid) and read back from there on a rerun, unless the
    split's entries have changed since (held-out packages added): then it is measured again."""
    result_file = model.with_suffix(".agreement.json" if split == "test" else f".agreement-{split}.json")
    digest = split_rows_sha1(manifest, split)
    if result_file.is_file():
        stored = json.loads(result_file.read_text())
        if stored.get("entries_sha1") == digest:
            return stored
        print(f"{result_file.name}: the {split} split changed since it was measured; measuring again")
    agreement = {**evaluate_agreement(model, manifest, audio, cache, split), "entries_sha1": digest}
    result_file.write_text(json.dumps(agreement, indent=2) + "\n")
    return agreement


def check_card(path: Path) -> Any:
    """The card of an exported file, as the runtime loads it."""
    from edgetag.runtime.model import load_model

    return load_model(path, threads=1).card


def teacher_macs_per_second() -> tuple[float, int]:
    """MACs per second of audio and parameters of the teacher ensemble (both musicnn models)."""
    import torch
    from edgetag.training.students import count_macs, count_parameters
    from edgetag.training.teachers import get_teacher
    from edgetag.training.teachers.musicnn import PATCH_FRAMES, PATCH_SAMPLES, SAMPLE_RATE

    macs, params = 0.0, 0
    for name in TEACHER.split("+"):
        net = get_teacher(name).net
        macs += count_macs(net, torch.zeros(1, PATCH_FRAMES, 96)) * SAMPLE_RATE / PATCH_SAMPLES
        params += count_parameters(net)
    return macs, params


#: The events' minimum on/off durations (s) written into both cards: tags describe textures that last; on
#: the test packages 1 s / 2 s take raw onsets from 24.4 to 4.5 per minute (README, "Minimum durations").
MIN_DURATIONS_S = (1.0, 2.0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--audio", type=Path, default=Path("/work/data/edgetag-audio"), help="prepare_audio's folder")
    ap.add_argument("--data", type=Path, default=Path("/work/data/musictag"), help="manifest, cache, runs, exports")
    ap.add_argument("--config", default=str(HERE / "base.toml"))
    ap.add_argument("--steps", type=int, default=6000)
    ap.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    ap.add_argument("--teach-procs", type=int, default=1,
                    help="teacher-cache processes (torchrun; the shipped cache used 2, one per CPU core)")
    ap.add_argument("--install", action="store_true", help="copy the exported files into runtime/models/")
    ap.add_argument("--install-as", default=None, choices=TAGGER_BUILTINS,
                    help="install as this built-in (exported under its name; with --install: music-tags, or "
                         "music-tags-voices for a run with --voices)")
    ap.add_argument("--run-name", default=None, help="run and export folder name (default: student-STEPS)")
    ap.add_argument("--voices", action="store_true",
                    help="train on speech mixed over the training music too (voices.py: 2 h of mixes)")
    ap.add_argument("overrides", nargs="*", help="extra config overrides (KEY=VALUE)")
    args = ap.parse_args(argv)
    if args.install_as and (args.install_as == "music-tags-voices") != args.voices:
        ap.error("music-tags-voices is the run with --voices, music-tags the run without: "
                 f"--install-as {args.install_as} {'needs' if not args.voices else 'does not go with'} --voices")
    audio, data = args.audio.resolve(), args.data.resolve()
    data.mkdir(parents=True, exist_ok=True)
    (data / "logs").mkdir(exist_ok=True)
    manifest, cache = data / "manifest.jsonl", data / "cache"
    times: dict[str, float] = {}

    # Both run every time: packages already extracted are neither fetched nor unpacked again
    # (about 20 s of header reads), and the manifest is deterministic, so a folder made before
    # held-out packages were added gets them, and the steps below measure only what changed.
    times["prepare_audio"] = run_step([sys.executable, "-m", "edgetag.training.prepare_audio", "--out", str(audio)])
    run_step([sys.executable, str(HERE / "prepare.py"), "--audio", str(audio), "--out", str(data)])
    if args.voices:  # the mixes are drawn from the music-only manifest's splits, then join its training split
        if not (data / "voices.jsonl").is_file():
            times["voices"] = run_step([sys.executable, str(HERE / "voices.py"), "--audio", str(audio), "--data", str(data)])
        run_step([sys.executable, str(HERE / "prepare.py"), "--audio", str(audio), "--out", str(data),
                  "--voices", str(data / "voices.jsonl")])
    # teach.done holds the digest of the manifest it covered: a manifest with more entries
    # (held-out packages added) runs the teacher again, which computes only the new windows.
    manifest_sha1 = hashlib.sha1(manifest.read_bytes()).hexdigest()
    teach_done = data / "teach.done"
    if not teach_done.is_file() or teach_done.read_text().strip() != manifest_sha1:
        times["teach"] = run_step([*teach_command(args.teach_procs), "--teacher", TEACHER, "--data", str(manifest), "--root", str(audio),
                                   "--out", str(cache), "--batch-size", "16", "--device", args.device],
                                  env={"OMP_NUM_THREADS": "1"} if args.teach_procs > 1 else None)
        teach_done.write_text(manifest_sha1 + "\n")

    # a run with voices trains on another manifest: never the same default folder as one without
    run_dir = data / "runs" / (args.run_name or f"student{'-voices' if args.voices else ''}-{args.steps}")
    student = run_dir / "student.pt"
    if not student.is_file():
        times["distill"] = run_step(["edgetag", "distill", args.config, f"data.manifest={manifest}", f"data.root={audio}",
                               f"data.feature_cache={data}/features", f"teacher.cache_dir={cache}",
                               f"optim.steps={args.steps}", f"optim.device={args.device}", *args.overrides,
                               "--run-dir", str(run_dir)])

    export = data / "export" / run_dir.name  # one export per run: a run with other steps never reuses stale files
    fp32, int8 = export / "music-tags.onnx", export / "music-tags.int8.onnx"
    builtin = args.install_as or ("music-tags-voices" if args.voices else "music-tags")  # the card's name
    stale = [p for p in (fp32, int8) if p.is_file() and check_card(p).name != builtin]
    if stale:  # exported under another name: export, calibrate, measure again
        print(f"{export}: exported as {check_card(stale[0]).name!r}, asked for {builtin!r}: exporting again")
        for path in export.glob("music-tags*"):
            path.unlink()
    if not int8.is_file():
        data_info = json.loads((data / "data.json").read_text())
        calib = audio / "packages" / data_info["packages"]["train"][-1]  # real training music
        held = audio / "packages" / data_info["packages"]["test"][0]
        export.mkdir(parents=True, exist_ok=True)
        times["export"] = run_step(["edgetag", "export", str(student), "-o", str(fp32), "--name", builtin,
                              "--calib", str(calib), "--eval", str(held), "--int8"], data / "logs" / f"export-{run_dir.name}.log")
    # Per-tag thresholds chosen on the valid packages (never test), each file on its own scores: the
    # student's scores sit below the teacher's 0.5, which would leave most tags off (`edgetag calibrate`).
    for path in (fp32, int8):
        if "thresholds" not in check_card(path).provenance:
            times[f"calibrate {path.name}"] = run_step(
                ["edgetag", "calibrate", str(path), "--data", str(manifest), "--root", str(audio), "--split", "valid",
                 "--teacher-cache", str(cache), "--teacher", TEACHER], data / "logs" / f"calibrate-{run_dir.name}.log")
    if args.voices:  # the voice tags' thresholds from where the voice is in the valid mixes (voices.py)
        for path in (fp32, int8):
            if "voice_thresholds" not in check_card(path).provenance:
                run_step([sys.executable, str(HERE / "voices.py"), "--audio", str(audio), "--data", str(data),
                          "--thresholds", str(path)])

    t_macs, t_params = teacher_macs_per_second()
    results: dict[str, Any] = {"teacher": {"name": TEACHER, "parameters": t_params, "macs_per_second": t_macs},
                               "data": json.loads((data / "data.json").read_text()), "times": times, "models": {}}
    from edgetag.export.model_file import record_metrics
    from edgetag.training.tag_families import card_record

    for path in (fp32, int8):
        agreement, valid = (_agreement(path, manifest, audio, cache, split) for split in ("test", "valid"))
        metrics = {"teacher_roc_auc": agreement["window"]["roc_auc"], "teacher_pr_auc": agreement["window"]["pr_auc"],
                   "teacher_pearson": agreement["window"]["pearson"], "teacher_roc_auc_track": agreement["track"]["roc_auc"]}
        card = record_metrics(
            path,
            {name: value for name, value in metrics.items() if value is not None},  # undefined scores stay out
            {"evaluation": {"what": "agreement with the teacher's tags binarised at 0.5, per 2.99 s teacher window, "
                                    "on Debian packages held out of training",
                            "packages": results["data"]["packages"]["test"], "tracks": agreement["tracks"],
                            "windows": agreement["windows"],
                            # per-tag held-out ROC-AUC: `edgetag info`, `listen` and `tag` mark the tags below 0.75
                            # (absent from a result stored before families were measured)
                            **(card_record(agreement["window"]["families"], check_card(path).provenance.get(
                                "export", {}).get("precision", "fp32")) if "families" in agreement["window"] else {})},
             "train_hours": results["data"]["hours"]["train"], "train_packages": results["data"]["packages"]["train"]},
            min_durations_s=MIN_DURATIONS_S,
        )
        results["models"][path.name] = {"agreement": agreement, "valid_agreement": valid, "bytes": path.stat().st_size,
                                        "parameters": card.parameters, "macs_per_second": card.macs_per_second}
    (export / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = [
        "| model | params | MMAC per s of audio | size | ROC-AUC (3 s windows) [95 % over tracks] | PR-AUC | Pearson | ROC-AUC (tracks) | valid ROC-AUC |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| teacher {TEACHER} | {t_params:,} | {t_macs / 1e6:.0f} | | | | | | |",
    ]
    for name, r in results["models"].items():
        w, t = r["agreement"]["window"], r["agreement"]["track"]
        lines.append(f"| {name} | {r['parameters']:,} | {r['macs_per_second'] / 1e6:.1f} "
                     f"({100 * r['macs_per_second'] / t_macs:.1f} % of the teacher) | {r['bytes'] / 1e6:.2f} MB | "
                     f"{_fmt(w['roc_auc'])} [{w['roc_auc_ci95'][0]:.3f}, {w['roc_auc_ci95'][1]:.3f}] ({w['tags_scored']} tags) | "
                     f"{_fmt(w['pr_auc'])} | {_fmt(w['pearson'])} | "
                     f"{_fmt(t['roc_auc'])} | {_fmt(r['valid_agreement']['window']['roc_auc'])} |")
    names = list(results["models"])
    lines += ["", "Per test package (3 s windows; macro over the tags with both classes in the package):", "",
              "| package | tracks | windows | " + " | ".join(f"{n} ROC-AUC (tags)" for n in names) + " |",
              "|---|---|---|" + "---|" * len(names)]
    first = results["models"][names[0]]["agreement"]["window"]["per_package"]
    for package, info in first.items():
        cells = []
        for n in names:
            p = results["models"][n]["agreement"]["window"]["per_package"][package]
            cells.append(f"{_fmt(p['roc_auc'])} ({p['tags_scored']})")
        lines.append(f"| {package} | {info['tracks']} | {info['windows']} | " + " | ".join(cells) + " |")
    table = "\n".join(lines)
    (export / "results.md").write_text(table + "\n")
    print(table)
    if args.install or args.install_as:
        target = REPO / "runtime" / "models"
        for path, installed in ((fp32, f"{builtin}.onnx"), (int8, f"{builtin}.int8.onnx")):
            shutil.copyfile(path, target / installed)
            print(f"installed {target / installed}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
