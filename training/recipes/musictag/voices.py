#!/usr/bin/env python3
"""Voices over music: real speech mixed over the recipe's music, with where the voice is.

    python3 training/recipes/musictag/voices.py [--audio /work/data/edgetag-audio] [--data /work/data/musictag]
                                                [--train-mixes 240] [--eval-mixes 40] [--seconds 30]

The recipe's music holds no singing, so nothing says whether the tagger hears a voice. This writes
``--seconds`` long mixes of one speaker's prompts (Debian's Asterisk voice prompts, real recorded
speech at 8 kHz: telephone band) over a stretch of one music track, each split's speakers and music
disjoint from the others' (Allison's English prompts are left out: `benchmarks/enrollment.py` uses them
as unrelated audio):

| split | speaker (package) | music |
|---|---|---|
| train | Allison, Mexican Spanish (asterisk-core-sounds-es-wav), June, Canadian French (-fr-wav), Carlo, Italian (-it-wav) | the train packages |
| valid | Menardi, Italian (asterisk-prompt-it-menardi-wav) | the valid packages |
| test | IvrvoiceRU, Russian (asterisk-core-sounds-ru-wav) | the test packages |

Each mix: prompts in turns with pauses of 0.3-2.5 s, and one stretch of 8-12 s without speech, so
every mix has windows with and without a voice over the same music; the voice's level is drawn per
mix at a speech-to-music ratio of -6..+12 dB (RMS of the voiced samples against the music's RMS);
the sum is scaled down if it would clip. Written as 16 kHz PCM-16 WAV under
``AUDIO/voice-mixes/SPLIT/``, and ``DATA/voices.jsonl`` lists them: path (relative to AUDIO), split,
speaker, language, source music and offset, ratio and the speech intervals in seconds (the ground
truth of `benchmarks/voice_presence.py`). The speech packages are fetched like prepare_audio's
(``apt-get download``, into ``AUDIO/packages``). Deterministic: the same inputs give the same files.

``prepare.py --voices DATA/voices.jsonl`` adds the train mixes to the training manifest (their tags
come from the teacher, as for the music); valid and test mixes are for evaluation, and for:

    python3 training/recipes/musictag/voices.py --thresholds MODEL.onnx [MODEL.int8.onnx ...]

which sets the thresholds of the voice tags (`VOICE_TAGS`: those that say a voice is there, not
whose) from the valid mixes: the student's decisions whose 1 s holds no speech are music alone,
and the threshold is the lowest that leaves at most `FALSE_ON` of them on (the rule of `edgetag
calibrate`'s fallback tags), so over music without a voice the tag is on in at most that share; the card records it, with the share of the decisions half or
more voiced that it turns on (`provenance.voice_thresholds`). The teacher, binarised at 0.5, never
gives these tags on speech over music (its scores rise, to about 0.1), so `edgetag calibrate` leaves
them at its fallback, which the student's scores do not reach.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import NamedTuple

import numpy as np

SR = 16000


class Speaker(NamedTuple):
    name: str
    language: str
    package: str
    folder: str  # under usr/share/asterisk/sounds/
    split: str


SPEAKERS = (
    Speaker("Allison", "es", "asterisk-core-sounds-es-wav", "es_MX_f_Allison", "train"),
    Speaker("June", "fr", "asterisk-core-sounds-fr-wav", "fr_CA_f_June", "train"),
    Speaker("Carlo", "it", "asterisk-core-sounds-it-wav", "it_IT_m_Carlo", "train"),
    Speaker("Menardi", "it", "asterisk-prompt-it-menardi-wav", "it_IT_f_Menardi", "valid"),
    Speaker("IvrvoiceRU", "ru", "asterisk-core-sounds-ru-wav", "ru_RU_f_IvrvoiceRU", "test"),
)
RATIO_DB = (-6.0, 12.0)
PAUSE_S = (0.3, 2.5)
QUIET_S = (8.0, 12.0)
MIN_PROMPT_S = 0.5  # shorter files are single words or beeps
VOICE_TAGS = ("vocal", "vocals", "voice")
FALSE_ON = 0.05
VOICED_SHARE = 0.5  # a decision is voiced when speech covers this share of its window


def decision_truth(speech: list[list[float]], times: np.ndarray, window_s: float) -> np.ndarray:
    """Per decision (stamped at the end of its ``window_s``): 1 voiced (>= VOICED_SHARE of its window
    is speech), 0 no speech at all, -1 in between."""
    out = np.empty(len(times), np.int64)
    for i, end in enumerate(times):
        start = end - window_s
        covered = sum(max(0.0, min(end, b) - max(start, a)) for a, b in speech)
        out[i] = 1 if covered >= VOICED_SHARE * window_s else 0 if covered <= 0 else -1
    return out


def voice_thresholds(scores: np.ndarray, truth: np.ndarray, false_on: float = FALSE_ON) -> tuple[float, float, float]:
    """(threshold, share of voiced decisions on, share of voiceless decisions on) for one tag's ``scores``:
    the lowest threshold that leaves at most ``false_on`` of the voiceless decisions on
    (`edgetag.training.thresholds.rate_threshold`, the rule of `edgetag calibrate`'s fallback tags)."""
    from edgetag.training.thresholds import rate_threshold

    scores = np.asarray(scores, np.float64)
    quiet, voiced = scores[truth == 0], scores[truth == 1]
    if len(quiet) == 0 or len(voiced) == 0:
        raise ValueError("voice thresholds need decisions with and without a voice")
    threshold = rate_threshold(quiet, false_on)
    return threshold, float((voiced >= threshold).mean()), float((quiet >= threshold).mean())


def write_voice_thresholds(model_path: Path, rows: list[dict], audio: Path, split: str = "valid") -> dict:
    """Set `VOICE_TAGS`' thresholds in ``model_path``'s card from ``split``'s mixes (see the module docstring)."""
    from edgetag.export.model_file import record_metrics
    from edgetag.runtime.audio import load_audio
    from edgetag.runtime.engine import offline_decisions
    from edgetag.runtime.model import load_model

    model = load_model(model_path, threads=1)
    card = model.card
    labels = list(card.labels)
    missing = [t for t in VOICE_TAGS if t not in labels]
    if missing or card.thresholds is None:
        raise ValueError(f"{model_path}: needs calibrated thresholds and the tags {', '.join(VOICE_TAGS)}"
                         + (f" (missing: {', '.join(missing)})" if missing else ""))
    window_s = card.window_frames * card.frontend.hop_length / card.frontend.sample_rate
    mixes = [r for r in rows if r["split"] == split]
    if not mixes:
        raise ValueError(f"no {split} mixes")
    scores, truth = [], []
    for r in mixes:
        decisions = offline_decisions(model, load_audio(audio / r["path"], card.frontend.sample_rate))
        scores.append(np.stack([d.scores for d in decisions]))
        truth.append(decision_truth(r["speech"], np.array([d.t for d in decisions]), window_s))
    s, y = np.concatenate(scores), np.concatenate(truth)
    thresholds = list(card.thresholds)
    earlier = card.provenance.get("voice_thresholds", {}).get("tags", {})  # set before: keep what calibrate chose
    per_tag = {}
    for tag in VOICE_TAGS:
        j = labels.index(tag)
        threshold, recall, on_quiet = voice_thresholds(s[:, j], y)
        per_tag[tag] = {"threshold": threshold, "voiced_on": round(recall, 4), "voiceless_on": round(on_quiet, 4),
                        "replaced": earlier.get(tag, {}).get("replaced", round(thresholds[j], 4))}
        thresholds[j] = threshold
    record = {"rule": f"the lowest threshold at which the tag is on in at most {FALSE_ON:.0%} of the {split} mixes' "
                      f"decisions without speech (music alone); voiced_on: the share of decisions "
                      f"whose 1 s is at least {VOICED_SHARE:.0%} speech that it turns on",
              "split": split, "mixes": len(mixes), "speakers": sorted({r["speaker"] for r in mixes}),
              "voiced_decisions": int((y == 1).sum()), "voiceless_decisions": int((y == 0).sum()), "tags": per_tag}
    record_metrics(model_path, {}, {"voice_thresholds": record}, thresholds=thresholds)
    return record


def speaker_prompts(audio: Path, speaker: Speaker) -> list[Path]:
    from edgetag.training.prepare_audio import fetch_package

    pkg, _ = fetch_package(speaker.package, audio, audio / "debs", keep_debs=False)
    root = pkg / "usr/share/asterisk/sounds" / speaker.folder
    files = sorted(p for p in root.rglob("*.wav") if "silence" not in p.parts and "beep" not in p.name)
    if not files:
        raise FileNotFoundError(f"no .wav prompts under {root}")
    return files


def _rng(*key: object) -> np.random.Generator:
    return np.random.default_rng(int.from_bytes(hashlib.sha1(repr(key).encode()).digest()[:8], "little"))


def speech_track(prompts: list[np.ndarray], n: int, rng: np.random.Generator) -> tuple[np.ndarray, list[list[float]]]:
    """``n`` samples of prompts in turns, with one quiet stretch; the intervals (s) where a prompt plays."""
    track = np.zeros(n, np.float32)
    quiet_len = int(rng.uniform(*QUIET_S) * SR)
    quiet_at = int(rng.uniform(0, n - quiet_len))
    intervals: list[list[float]] = []
    t = int(rng.uniform(0, 1.0) * SR)
    while t < n:
        if quiet_at <= t < quiet_at + quiet_len:
            t = quiet_at + quiet_len
            continue
        p = prompts[int(rng.integers(len(prompts)))]
        end = min(t + len(p), n)
        if t < quiet_at < end:  # the prompt would run into the quiet stretch: cut it there
            end = quiet_at
        track[t:end] = p[: end - t]
        intervals.append([round(t / SR, 5), round(end / SR, 5)])  # 5 decimals: whole samples at 16 kHz
        t = end + int(rng.uniform(*PAUSE_S) * SR)
    return track, intervals


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--audio", type=Path, default=Path("/work/data/edgetag-audio"))
    ap.add_argument("--data", type=Path, default=Path("/work/data/musictag"), help="holds the recipe's manifest.jsonl")
    ap.add_argument("--train-mixes", type=int, default=240)
    ap.add_argument("--eval-mixes", type=int, default=40, help="mixes for each of valid and test")
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--thresholds", type=Path, nargs="+", metavar="MODEL",
                    help="set these models' voice-tag thresholds from the valid mixes (written before), then stop")
    args = ap.parse_args(argv)
    if args.thresholds:
        listing = args.data / "voices.jsonl"
        if not listing.is_file():
            ap.error(f"{listing} not found: run this script without --thresholds first (it writes the mixes)")
        rows = [json.loads(line) for line in listing.read_text().splitlines() if line.strip()]
        for path in args.thresholds:
            record = write_voice_thresholds(path, rows, args.audio)
            print(f"{path}: " + ", ".join(f"{t} {v['threshold']:.3f} (voiced {v['voiced_on']:.0%} on, without voice "
                                            f"{v['voiceless_on']:.0%}; was {v['replaced']:.3f})"
                                            for t, v in record["tags"].items()))
        return 0

    import soundfile as sf
    from edgetag.runtime.audio import AudioReadError, load_audio

    if args.seconds < QUIET_S[1] + 4:
        ap.error(f"--seconds must be at least {QUIET_S[1] + 4:g}: a mix holds a stretch of up to {QUIET_S[1]:g} s "
                 "without speech and speech besides")
    source = args.data / "manifest.jsonl"
    if not source.is_file():
        ap.error(f"{source} not found: run training/recipes/musictag/prepare.py (or run.py) first")
    rows = [json.loads(line) for line in source.read_text().splitlines() if line.strip()]
    n = int(args.seconds * SR)
    out_rows = []
    for split, count in (("train", args.train_mixes), ("valid", args.eval_mixes), ("test", args.eval_mixes)):
        music = sorted({(r["path"], float(r.get("start") or 0.0), float(r.get("start") or 0.0) + float(r["duration"]))
                        for r in rows if r["split"] == split})  # a chunk's duration runs from its start
        music = [m for m in music if m[2] - m[1] >= args.seconds + 1]
        if count and not music:
            ap.error(f"{source}: no {split} music of at least {args.seconds + 1:g} s to mix over")
        speakers = [s for s in SPEAKERS if s.split == split]
        prompts = {}
        for s in speakers:
            files = speaker_prompts(args.audio, s)
            clips = []
            for f in files:
                try:
                    clips.append(load_audio(f, SR))
                except AudioReadError as exc:  # a few packages hold empty prompt files
                    print(f"  skipped: {exc}", flush=True)
            prompts[s] = [c for c in clips if len(c) >= MIN_PROMPT_S * SR and np.abs(c).max() > 0]
            if not prompts[s]:
                ap.error(f"{s.package}: no prompt of at least {MIN_PROMPT_S:g} s with sound")
            print(f"{split}: {s.name} ({s.language}) {len(prompts[s])} prompts, "
                  f"{sum(map(len, prompts[s])) / SR / 60:.1f} min", flush=True)
        folder = args.audio / "voice-mixes" / split
        folder.mkdir(parents=True, exist_ok=True)
        for k in range(count):
            rng = _rng("voices", split, k)
            speaker = speakers[k % len(speakers)]
            path, start, end = music[int(rng.integers(len(music)))]
            offset = round(float(rng.uniform(start, end - args.seconds)), 3)
            song = load_audio(args.audio / path, SR, offset, offset + args.seconds)[:n]
            voice, intervals = speech_track(prompts[speaker], len(song), rng)
            ratio = float(rng.uniform(*RATIO_DB))
            voiced = np.abs(voice) > 0
            music_rms = float(np.sqrt(np.mean(song.astype(np.float64) ** 2)))
            voice_rms = float(np.sqrt(np.mean(voice[voiced].astype(np.float64) ** 2)))
            if music_rms < 1e-4:  # a silent stretch of music: nothing to mix over
                music_rms = voice_rms
            mix = song + voice * (music_rms / voice_rms * 10 ** (ratio / 20))
            peak = float(np.abs(mix).max())
            if peak > 0.99:
                mix *= 0.99 / peak
            rel = f"voice-mixes/{split}/{speaker.language}-{speaker.name}-{k:04d}.wav"
            sf.write(str(args.audio / rel), mix.astype(np.float32), SR, subtype="PCM_16")
            out_rows.append({"path": rel, "split": split, "speaker": speaker.name, "language": speaker.language,
                             "package": speaker.package, "music": path, "music_offset": offset,
                             "ratio_db": round(ratio, 2), "duration": round(len(mix) / SR, 4), "speech": intervals})
        print(f"{split}: {count} mixes in {folder}", flush=True)
    target = args.data / "voices.jsonl"
    partial = target.with_suffix(".jsonl.partial")
    partial.write_text("".join(json.dumps(r) + "\n" for r in out_rows))
    partial.replace(target)
    print(f"wrote {target} ({len(out_rows)} mixes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
