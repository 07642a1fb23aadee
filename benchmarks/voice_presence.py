"""Does a tagger hear a voice over music? Ground truth from mixes, students beside the teacher.

    python benchmarks/voice_presence.py [--model music-tags --model NEW.onnx] [--teacher]
        [--voices /work/data/musictag/voices.jsonl --audio /work/data/edgetag-audio --split test]

The mixes of ``training/recipes/musictag/voices.py`` (real speech prompts over held-out music, with
the intervals where the voice is) are cut into the teacher's 2.99 s windows (musicnn's patches, from
the start of each mix). A window is *voiced* when speech covers at least half of it and *without
voice* when no speech touches it (the rest are left out). Per tag, the ROC-AUC of its score at
telling the two apart: 1 = the tag rises whenever someone speaks, 0.5 = it does not notice, below
0.5 = it falls (as ``no vocals`` should). A student's window score is the mean of its decisions
whose 1 s lies inside the window (the recipe's protocol, `edgetag.training.teacher_windows.inside`);
the teacher's (``--teacher``: the musicnn MTT + MSD ensemble the students learn from) is its own.
Printed: the vocal family's tags, the tags with the largest AUC, and each model's mean score on
voiced and voiceless windows for the vocal tags. Then, per student, how often its voice tags
(``voices.py``'s `VOICE_TAGS`) are *on* at its card's thresholds, decision by decision: over the
mixes' decisions whose 1 s is half or more speech, over those with no speech, and with ``--music N``
over N stretches of 60 s of the recipe's held-out music of the same split (``--manifest``; music alone,
drawn with a fixed seed). One thread.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

SR = 16000
VOICES = Path(__file__).resolve().parents[1] / "training" / "recipes" / "musictag" / "voices.py"


@functools.cache
def _voices_module() -> ModuleType:
    """The recipe's ``voices.py`` (a script of the source tree, not a package module): its rules."""
    spec = importlib.util.spec_from_file_location("musictag_voices", VOICES)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
TEACHER_WINDOW_S = 47872 / SR  # musicnn's patch (edgetag.training.teachers.musicnn.PATCH_SAMPLES; torch-free here)


def window_truth(speech: list[list[float]], n_windows: int) -> np.ndarray:
    """Per teacher window: 1 voiced (half or more speech), 0 without voice, -1 in between (`voices.py`'s rule)."""
    ends = TEACHER_WINDOW_S * np.arange(1, n_windows + 1)
    return _voices_module().decision_truth(speech, ends, TEACHER_WINDOW_S)


def student_scorer(spec: str) -> tuple[Any, Callable[[np.ndarray, int], np.ndarray], list[tuple[np.ndarray, np.ndarray]]]:
    """(model, per-window scores of a clip, the decisions of every clip scored so far as (times, scores)):
    a window's score is the mean of the decisions whose window lies in it; the decisions are kept for
    `voice_tags_on`, so each clip runs once."""
    from edgetag.runtime.engine import offline_decisions
    from edgetag.runtime.model import load_model
    from edgetag.runtime.models import resolve_model
    from edgetag.training.teacher_windows import inside

    model = load_model(resolve_model(spec), threads=1)
    window_s = model.card.window_frames * model.card.frontend.hop_length / model.card.frontend.sample_rate
    seen: list[tuple[np.ndarray, np.ndarray]] = []

    def score(x: np.ndarray, n_windows: int) -> np.ndarray:
        decisions = offline_decisions(model, x)
        times = np.array([d.t for d in decisions])
        scores = np.stack([d.scores for d in decisions])
        seen.append((times, scores))
        rows = []
        for w in range(n_windows):
            keep = inside(times, w * TEACHER_WINDOW_S, (w + 1) * TEACHER_WINDOW_S, window_s)
            rows.append(scores[keep].mean(0) if keep.any() else np.full(scores.shape[1], np.nan))
        return np.stack(rows)

    return model, score, seen


def voice_tags_on(spec: str, model: Any, mixes: list[tuple[np.ndarray, np.ndarray]], rows: list[dict], audio: Path,
                  music: list[tuple[str, float, float]]) -> dict[str, list[float]]:
    """Per voice tag: the share of decisions on at the card's threshold over [voiced, voiceless] decisions
    of the mixes (``mixes``: each row's (times, scores), as `student_scorer` kept them) and (when ``music``
    holds stretches) over music alone."""
    from edgetag.runtime.audio import load_audio
    from edgetag.runtime.engine import offline_decisions

    voices = _voices_module()
    card = model.card
    window_s = card.window_frames * card.frontend.hop_length / card.frontend.sample_rate
    missing = [t for t in voices.VOICE_TAGS if t not in card.labels]
    if missing:
        raise SystemExit(f"{spec}: not a music tagger with the voice tags (no {', '.join(missing)})")
    columns = [list(card.labels).index(t) for t in voices.VOICE_TAGS]
    # float64, as the runtime compares them (`edgetag.runtime.postprocess`)
    thresholds = np.asarray(card.thresholds, np.float64)[columns] if card.thresholds else np.full(len(columns), 0.5)
    mix_on = np.concatenate([scores[:, columns] for _, scores in mixes]) >= thresholds
    y = np.concatenate([voices.decision_truth(r["speech"], times, window_s) for r, (times, _) in zip(rows, mixes)])
    alone = [np.stack([d.scores[columns] for d in offline_decisions(model, load_audio(audio / path, SR, a, b))]) >= thresholds
             for path, a, b in music]
    music_on = np.concatenate(alone) if alone else np.zeros((0, len(columns)), bool)
    return {t: [float(mix_on[y == 1, k].mean()), float(mix_on[y == 0, k].mean()),
                float(music_on[:, k].mean()) if len(music_on) else float("nan")]
            for k, t in enumerate(voices.VOICE_TAGS)}


def music_stretches(manifest: Path, split: str, n: int, seconds: float = 60.0, seed: int = 0) -> list[tuple[str, float, float]]:
    """``n`` stretches of ``seconds`` (shorter chunks whole, less 1 s) from the recipe manifest's ``split``."""
    rows = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if r["split"] == split]
    rng = np.random.default_rng(seed)
    out = []
    for i in rng.choice(len(rows), min(n, len(rows)), replace=False):
        r = rows[int(i)]
        start = float(r.get("start") or 0.0)
        out.append((r["path"], start, start + min(seconds, float(r["duration"]) - 1.0)))
    return out


def teacher_scorer(labels: list[str]) -> Callable[[np.ndarray, int], np.ndarray]:
    """Per-window scores of a clip from the musicnn MTT + MSD ensemble, columns in ``labels``' order."""
    import torch
    from edgetag.training.teachers import get_teacher
    from edgetag.training.teachers.ensemble import EnsembleTeacher

    torch.set_num_threads(1)
    teacher = EnsembleTeacher([get_teacher("musicnn-mtt"), get_teacher("musicnn-msd")], labels="union").eval()
    columns = [teacher.labels.index(label) for label in labels]

    def score(x: np.ndarray, n_windows: int) -> np.ndarray:
        with torch.inference_mode():
            s = teacher(torch.from_numpy(np.ascontiguousarray(x, np.float32))[None]).scores[0].numpy()
        return s[:n_windows, columns]

    return score


def main(argv: list[str] | None = None) -> int:
    from edgetag.training.metrics import roc_auc
    from edgetag.training.tag_families import FAMILIES

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", action="append", help="a built-in model or a file (repeat; default: music-tags)")
    ap.add_argument("--teacher", action="store_true", help="also the musicnn MTT + MSD teacher (needs torch)")
    ap.add_argument("--voices", type=Path, default=Path("/work/data/musictag/voices.jsonl"))
    ap.add_argument("--audio", type=Path, default=Path("/work/data/edgetag-audio"))
    ap.add_argument("--split", default="test")
    ap.add_argument("--top", type=int, default=6, help="tags with the largest AUC shown besides the vocal family")
    ap.add_argument("--music", type=int, default=0, help="also this many 60 s stretches of the split's music alone")
    ap.add_argument("--manifest", type=Path, default=Path("/work/data/musictag/manifest.jsonl"))
    args = ap.parse_args(argv)
    if not args.voices.is_file():
        ap.error(f"no mixes listed at {args.voices}: run training/recipes/musictag/voices.py first")
    from edgetag.runtime.audio import load_audio

    rows = [json.loads(line) for line in args.voices.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if r["split"] == args.split]
    if not rows:
        ap.error(f"{args.voices} has no {args.split} mixes")
    models = args.model or ["music-tags"]
    scorers = {}
    students = {}  # name -> (model, the decisions its scorer kept)
    labels: list[str] | None = None
    for m in models:
        model, scorer, kept = student_scorer(m)
        model_labels = list(model.card.labels)
        if labels is not None and model_labels != labels:
            ap.error(f"{m}: its labels differ from {models[0]}'s; compare models with one label set")
        name = m if not Path(m).suffix else f"{Path(m).parent.name}/{Path(m).name}"  # a file: its run folder too
        labels, scorers[name], students[m] = model_labels, scorer, (model, kept)
    assert labels is not None
    if args.teacher:
        scorers["teacher (musicnn MTT + MSD)"] = teacher_scorer(labels)

    truth, scores = [], {name: [] for name in scorers}
    for r in rows:
        x = load_audio(args.audio / r["path"], SR)
        n_windows = int(len(x) // round(TEACHER_WINDOW_S * SR))
        truth.append(window_truth(r["speech"], n_windows))
        for name, score in scorers.items():
            scores[name].append(score(x, n_windows))
    y = np.concatenate(truth)
    speakers = sorted({f"{r['speaker']} ({r['language']})" for r in rows})
    print(f"{len(rows)} {args.split} mixes ({', '.join(speakers)}): {int((y == 1).sum())} voiced and "
          f"{int((y == 0).sum())} voiceless {TEACHER_WINDOW_S:.2f} s windows ({int((y == -1).sum())} in between, left out)")
    auc = {}
    mean = {}
    for name, per_mix in scores.items():
        s = np.concatenate(per_mix)
        ok = (y >= 0) & np.isfinite(s).all(1)
        auc[name] = np.array([roc_auc(y[ok], s[ok, j]) for j in range(len(labels))])
        mean[name] = (np.nanmean(s[ok & (y == 1)], 0), np.nanmean(s[ok & (y == 0)], 0))
    vocal = [t for t in FAMILIES["vocals"] if t in labels]
    others = [labels[j] for j in np.argsort(-np.nanmax(np.stack(list(auc.values())), 0)) if labels[j] not in vocal][: args.top]
    names = list(auc)
    print("\nROC-AUC of each tag at telling voiced windows from voiceless ones (mean score voiced / voiceless)")
    print("| tag | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for tag in vocal + others:
        j = labels.index(tag)
        cells = [f"{auc[n][j]:.3f} ({mean[n][0][j]:.3f} / {mean[n][1][j]:.3f})" for n in names]
        print(f"| {tag}{'' if tag in vocal else ' (not a vocal tag)'} | " + " | ".join(cells) + " |")
    rising = [t for t in vocal if not t.startswith("no ")]
    print("| vocal tags that should rise (mean AUC) | " + " | ".join(
        f"{np.nanmean([auc[n][labels.index(t)] for t in rising]):.3f}" for n in names) + " |")

    music = music_stretches(args.manifest, args.split, args.music) if args.music else []
    print(f"\nVoice tags on at each card's thresholds, per decision: mixes' decisions half or more voiced / "
          f"without speech" + (f" / {len(music)} stretches of the {args.split} music alone (<= 60 s each)" if music else ""))
    print("| model | " + " | ".join(_voices_module().VOICE_TAGS) + " |")
    print("|---|" + "---|" * len(_voices_module().VOICE_TAGS))
    for m in models:
        on = voice_tags_on(m, *students[m], rows, args.audio, music)
        print(f"| {m} | " + " | ".join(" / ".join(f"{100 * v:.1f} %" for v in shares if v == v) for shares in on.values()) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
