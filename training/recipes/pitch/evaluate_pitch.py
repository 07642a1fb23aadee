#!/usr/bin/env python3
"""Score CREPE full, CREPE tiny and the exported pitch students on the recipe's test split.

Rows: CREPE full, CREPE tiny, and each ONNX student given with ``--student NAME=PATH``
(run through ONNX Runtime, one thread, as the runtime runs them). Columns:

* parameters and MACs per 10 ms frame (the same operator-level counter,
  `students.count_macs`, for CREPE and the students);
* held-out renders (score f0 reference, ``*.f0.npy`` from prepare_renders.py): raw
  pitch accuracy (RPA) and raw chroma accuracy (RCA), 50 cents, over the frames the
  score marks voiced (mir_eval conventions, `metrics.pitch_metrics`); renders whose
  program does not sound the score note (row ``"score_f0": false``: organs with a 16'
  stop, guitar harmonics, ...) are left out and counted;
* held-out real audio (speech and music from packages not used in training), scored
  against CREPE full: reference voiced where CREPE full's confidence >= 0.5. CREPE
  full's own row is 100 there by definition;
* CPU milliseconds per second of audio, one thread (process time): CREPE at a 10 ms
  hop in batches; students streamed through the runtime's engine in 10 ms pushes (front end + model, the
  card's frames per call).

CREPE is decoded with the weighted-argmax decoder (`edgetag.runtime.pitch.decode`); the students
as a stream decodes them (``--decoder stream``, default: the bins and each frame's period,
`edgetag.runtime.pitch.decode_with_audio`) or with the bins alone (``--decoder bins``, CREPE's way).
All are scored on the same frames: the frames where the CREPE full test cache (hop
``--hop`` samples) has a frame; student frame ``j`` and CREPE frame ``i`` share a
centre when ``160 j = hop i`` (both frames start at their hop multiple and are 1024
samples long). Writes ``--out`` (JSON) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

SR = 16000
STUDENT_HOP = 160


def crepe_macs_per_frame(model: str) -> tuple[int, int]:
    """(parameters, MACs of one 1024-sample frame) of CREPE ``model``, by `count_macs`."""
    import torch
    from edgetag.training.students import count_macs, count_parameters
    from edgetag.training.teachers.crepe import CAPACITIES, CrepeNet

    net = CrepeNet(CAPACITIES[model]).eval()
    return count_parameters(net), count_macs(net, torch.randn(1, 1024))


def crepe_cpu_ms_per_s(model: str, seconds: float) -> float:
    """Process-time ms per second of audio of CREPE ``model`` at a 10 ms hop, one thread."""
    import torch
    from edgetag.training.teachers.crepe import CrepeTeacher

    torch.set_num_threads(1)
    teacher = CrepeTeacher(model=model, hop_length=160, batch_size=64, return_embeddings=False)
    x = torch.from_numpy(np.random.default_rng(0).standard_normal(int(seconds * SR)).astype(np.float32) * 0.1)[None]
    teacher(x[:, : SR // 2])  # warm-up
    t0 = time.process_time()
    with torch.no_grad():
        teacher(x)
    return (time.process_time() - t0) * 1e3 / seconds


def student_cpu_ms_per_s(path: str, seconds: float) -> float:
    """Process-time ms per second of audio through the runtime's `Engine` (streaming front end, the card's
    frames per call, model, scores), pushed 10 ms at a time on one thread."""
    from edgetag.runtime.engine import Engine
    from edgetag.runtime.model import load_model

    engine = Engine(load_model(path, threads=1))
    x = (np.random.default_rng(0).standard_normal(int(seconds * SR)) * 0.1).astype(np.float32)
    t0 = time.process_time()
    for k in range(0, len(x), STUDENT_HOP):
        engine.push(x[k : k + STUDENT_HOP])
    return (time.process_time() - t0) * 1e3 / seconds


def paired_clip_bootstrap(refs: list[np.ndarray], ests: list[np.ndarray], others: list[np.ndarray],
                          draws: int = 2000, seed: int = 0) -> dict[str, list[float]]:
    """RPA and RCA of ``ests`` minus those of ``others`` on the same clips, in points, with a
    95 % interval from resampling whole clips (frames of one clip are not independent):
    ``{"rpa": [diff, low, high], "rca": [...]}``."""
    from edgetag.training.metrics import pitch_metrics

    voiced = np.array([(r > 0).sum() for r in refs], dtype=np.float64)
    correct = {}
    for key, metric in (("rpa", "raw_pitch_accuracy"), ("rca", "raw_chroma_accuracy")):
        per_clip = []
        for r, a, b in zip(refs, ests, others):
            if (r > 0).any():
                ma, mb = pitch_metrics(r, a), pitch_metrics(r, b)
                per_clip.append(ma[metric] - mb[metric])
            else:
                per_clip.append(0.0)
        correct[key] = np.array(per_clip) * voiced  # difference in correct frames, per clip
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(refs), size=(draws, len(refs)))
    out = {}
    for key, d in correct.items():
        boot = 100 * d[picks].sum(1) / np.maximum(voiced[picks].sum(1), 1)
        out[key] = [round(100 * d.sum() / max(voiced.sum(), 1), 2),
                    round(float(np.percentile(boot, 2.5)), 2), round(float(np.percentile(boot, 97.5)), 2)]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--manifest", default="/work/data/pitch/manifest.jsonl")
    ap.add_argument("--root", default="/work/data")
    ap.add_argument("--cache", default="/work/data/pitch/cache/test", help="CREPE full teacher cache of the test split")
    ap.add_argument("--reference", default="crepe-full", help="teacher name in --cache (crepe-full; others only for smoke tests)")
    ap.add_argument("--hop", type=int, default=1600, help="hop (samples) of the CREPE full test cache")
    ap.add_argument("--student", action="append", default=[], metavar="NAME=PATH", help="an ONNX student (repeatable)")
    ap.add_argument("--split", default="test")
    ap.add_argument("--voicing", type=float, default=0.5, help="CREPE full confidence that makes a reference frame voiced")
    ap.add_argument("--decoder", choices=("stream", "bins"), default="stream",
                    help="students: as a stream reads them (bins + each frame's period) or the bins alone")
    ap.add_argument("--timing-seconds", type=float, default=10.0)
    ap.add_argument("--out", default="/work/data/pitch/eval.json")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)

    import torch
    from edgetag.runtime.audio import load_audio
    from edgetag.runtime.frontend import compute_features
    from edgetag.runtime.model import load_model
    from edgetag.runtime.pitch import decode, decode_clip
    from edgetag.training.data import load_manifest
    from edgetag.training.cache import TeacherCacheLookup
    from edgetag.training.metrics import pitch_metrics
    from edgetag.training.teachers.crepe import CrepeTeacher
    from tqdm import tqdm

    torch.set_num_threads(1)
    if args.hop % STUDENT_HOP:
        raise SystemExit(f"--hop must be a multiple of {STUDENT_HOP} so CREPE and student frames share centres")
    step = args.hop // STUDENT_HOP
    manifest = load_manifest(args.manifest, root=args.root).select(args.split)
    lookup = TeacherCacheLookup(args.cache, args.reference)
    tiny = CrepeTeacher(model="tiny", hop_length=args.hop, return_embeddings=False)
    students, student_paths = {}, {}
    for spec in args.student:
        name, _, path = spec.partition("=")
        students[name], student_paths[name] = load_model(path, threads=1), path
    rows = ["CREPE full", "CREPE tiny", *students]
    # per source ("render" / "real"): per row, concatenated est f0 on the scored frames; and the references
    est: dict[str, dict[str, list[np.ndarray]]] = {"render": {r: [] for r in rows}, "real": {r: [] for r in rows}}
    ref: dict[str, list[np.ndarray]] = {"render": [], "real": []}
    voiced: dict[str, dict[str, list[np.ndarray]]] = {"render": {r: [] for r in students}, "real": {r: [] for r in students}}
    ref_conf: list[np.ndarray] = []
    n_seconds = {"render": 0.0, "real": 0.0}
    off_score: list[int] = []  # programs of renders whose sound does not have the score f0 (prepare_renders)
    for entry in tqdm(list(manifest), desc="evaluate", unit="clip", disable=args.no_progress):
        source = "render" if entry.extra.get("source") == "render" else "real"
        if source == "render" and entry.extra.get("score_f0") is False:
            off_score.append(int(entry.extra["program"]))
            continue
        wave = load_audio(manifest.resolve(entry), SR, start=entry.start, end=entry.end)
        cached = lookup.get(entry, 360)
        if cached is None:
            raise SystemExit(f"no CREPE full outputs cached for {entry.path}: run the teach step first")
        n_t = len(cached.scores)
        f_full, c_full = decode(cached.scores)
        with torch.no_grad():
            t_scores = tiny(torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32))[None]).scores[0].numpy()
        n = min(n_t, len(t_scores))
        est[source]["CREPE full"].append(f_full[:n])
        est[source]["CREPE tiny"].append(decode(t_scores[:n])[0])
        feats = compute_features(np.asarray(wave, dtype=np.float32), students[next(iter(students))].card.frontend) if students else None
        for name, model in students.items():
            logits, _ = model.run(feats[None].astype(np.float32))
            probs = model.scores(logits)[0]
            idx = np.minimum(np.arange(n) * step, len(probs) - 1)
            if args.decoder == "stream":  # every frame in order (the period's hysteresis), scored every `step`th
                f0, conf, _ = decode_clip(probs, wave, model.card.frontend)
                sel = np.minimum(idx, len(f0) - 1)
                f0, conf = f0[sel], conf[sel]
            else:
                f0, conf = decode(probs[idx])
            est[source][name].append(f0)
            voiced[source][name].append(conf >= args.voicing)
        if source == "render":
            f0_path = Path(args.root) / entry.extra["f0"]
            truth = np.load(f0_path)
            idx = np.arange(n) * step
            ref["render"].append(np.where(idx < len(truth), truth[np.minimum(idx, len(truth) - 1)], 0.0))
        else:
            ref["real"].append(np.where(c_full[:n] >= args.voicing, f_full[:n], 0.0))
            ref_conf.append(c_full[:n])
        n_seconds[source] += len(wave) / SR
    results: dict[str, dict] = {r: {} for r in rows}
    for source in ("render", "real"):
        r_all = np.concatenate(ref[source]) if ref[source] else np.zeros(0)
        for row in rows:
            e_all = np.concatenate(est[source][row]) if est[source][row] else np.zeros(0)
            m = pitch_metrics(r_all, e_all) if len(r_all) else {}
            results[row][f"{source}_rpa"] = float(m.get("raw_pitch_accuracy", float("nan")))
            results[row][f"{source}_rca"] = float(m.get("raw_chroma_accuracy", float("nan")))
            if row in students and len(r_all):  # the students' own voicing (confidence >= --voicing)
                v = pitch_metrics(r_all, e_all, est_voicing=np.concatenate(voiced[source][row]))
                results[row][f"{source}_voicing_recall"] = float(v["voicing_recall"])
                results[row][f"{source}_voicing_false_alarm"] = float(v["voicing_false_alarm"])
        results["_data"] = results.get("_data", {})
        results["_data"][f"{source}_seconds"] = round(n_seconds[source], 1)
        results["_data"][f"{source}_frames"] = int(len(r_all))
        results["_data"][f"{source}_voiced_frames"] = int((r_all > 0).sum())
    for name in students:
        for source in ("render", "real"):
            if ref[source]:
                diff = paired_clip_bootstrap(ref[source], est[source][name], est[source]["CREPE tiny"])
                results[name][f"{source}_vs_tiny"] = diff
    for model in ("full", "tiny"):
        params, macs = crepe_macs_per_frame(model)
        row = f"CREPE {model}"
        results[row].update(params=params, macs_per_frame=macs,
                            cpu_ms_per_s=crepe_cpu_ms_per_s(model, 2.0 if model == "full" else args.timing_seconds))
    for name, model in students.items():
        card = model.card
        results[name].update(params=card.parameters, macs_per_frame=card.macs_per_second / card.frontend.frame_rate,
                             cpu_ms_per_s=student_cpu_ms_per_s(student_paths[name], args.timing_seconds),
                             file_bytes=Path(student_paths[name]).stat().st_size)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # training/recipes: the recipes' shared helpers
    from recipe_common import split_rows_sha1

    results["_data"].update(rows_sha1=split_rows_sha1(args.manifest, args.split), renders_not_scored=len(off_score), renders_not_scored_programs=sorted(set(off_score)), hop=args.hop, voicing_threshold=args.voicing, decoder="weighted argmax +-4 bins" + (" and each frame's period (students)" if args.decoder == "stream" else ""),
                            manifest=str(args.manifest), split=args.split)
    Path(args.out).write_text(json.dumps(results, indent=2))
    full_macs = results["CREPE full"]["macs_per_frame"]
    print(f"{'row':<16} {'params':>10} {'MACs/frame':>14} {'% full':>7} {'rend RPA':>9} {'rend RCA':>9} "
          f"{'real RPA':>9} {'real RCA':>9} {'ms/s':>8}")
    for row in rows:
        r = results[row]
        print(f"{row:<16} {r['params']:>10,} {r['macs_per_frame']:>14,.0f} {100 * r['macs_per_frame'] / full_macs:>6.2f}% "
              f"{100 * r['render_rpa']:>9.2f} {100 * r['render_rca']:>9.2f} {100 * r['real_rpa']:>9.2f} "
              f"{100 * r['real_rca']:>9.2f} {r['cpu_ms_per_s']:>8.1f}")
    for name in students:
        r = results[name]
        print(f"{name} voicing (confidence >= {args.voicing:g}), recall / false alarm: renders "
              f"{100 * r['render_voicing_recall']:.1f} / {100 * r['render_voicing_false_alarm']:.1f}, real "
              f"{100 * r['real_voicing_recall']:.1f} / {100 * r['real_voicing_false_alarm']:.1f} %")
        for source in ("render", "real"):
            d = results[name].get(f"{source}_vs_tiny")
            if d:
                print(f"{name} minus CREPE tiny, {source}: RPA {d['rpa'][0]:+.2f} [{d['rpa'][1]:+.2f}, {d['rpa'][2]:+.2f}], "
                      f"RCA {d['rca'][0]:+.2f} [{d['rca'][1]:+.2f}, {d['rca'][2]:+.2f}] points (95 % over clips)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
