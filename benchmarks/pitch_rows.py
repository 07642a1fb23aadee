"""The pitch section of ``edgetag bench``: edgetag's pitch models beside edgetag's CREPE ports and the
peers people install (``--peers``: SwiftF0, FCPE, PESTO; `edgetag.benchmarks.pitch_peers`).

Per tracker: CPU ms per second of audio on one thread (process time), offline (``track`` on whole
clips) and streaming (pushes of one hop, where the tracker has a streaming interface), measured on
the same seeded clips as the student rows (`measure.eval_signal`, ``eval_clips`` x ``eval_seconds``),
round-robin over the trackers for ``peer_repeats`` rounds so a shared machine's noise hits all alike;
the algorithmic latency (lookahead after a frame's centre, and the hop); and, with a pitch ``--eval``
manifest (rows with an ``f0`` sidecar: the pitch recipe's renders), RPA and RCA at 50 cents from
`edgetag.training.metrics.pitch_metrics`, as the recipe's ``evaluate_pitch.py`` scores them: raw f0
on every frame the score marks voiced, frames pooled over clips, rows with ``"score_f0": false``
left out and counted. Each tracker's f0 is read at the sidecar's frame centres (``(160 j + 512) /
16000`` s): edgetag and CREPE frames sit there; the peers' own frames are interpolated in cents
between the two nearest frames. Ratios are to the first edgetag pitch model's ORT fp32 file.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgetag.benchmarks.measure import eval_signal, import_error
from edgetag.benchmarks.pitch_peers import PEERS, PEERS_INSTALL, SR, PitchTracker, crepe_tracker, edgetag_tracker, load_tracker
from edgetag.benchmarks.settings import BenchSettings


# --------------------------------------------------------------------------- the pitch --eval set
def is_pitch_manifest(settings: BenchSettings) -> bool:
    """Whether ``--eval`` names a pitch manifest: rows with an ``f0`` sidecar and no labels."""
    from edgetag.training.data import load_manifest

    manifest = load_manifest(settings.eval_manifest, root=settings.eval_root)
    entries = manifest.select(settings.eval_split).entries if settings.eval_split in manifest.splits() else manifest.entries
    return any("f0" in e.extra for e in entries) and not any(e.positives for e in entries)


class PitchEvalSet:
    """The clips of a pitch manifest's split that have score f0, loaded once (audio and reference)."""

    def __init__(self, settings: BenchSettings) -> None:
        from edgetag.runtime.audio import load_audio
        from edgetag.training.data import load_manifest

        manifest = load_manifest(settings.eval_manifest, root=settings.eval_root)
        split = settings.eval_split
        if split is not None and split not in manifest.splits():
            raise ValueError(f"--eval {settings.eval_manifest}: no split {split!r} "
                             f"(splits: {', '.join(sorted(manifest.splits())) or 'none'})")
        chosen = manifest.select(split) if split is not None else manifest
        self.manifest, self.split = str(settings.eval_manifest), split
        self.clips: list[tuple[str, np.ndarray, np.ndarray]] = []
        self.not_scored: dict[str, int] = {"score_f0 false": 0, "no f0 sidecar": 0}
        for entry in chosen.entries:
            if "f0" not in entry.extra:
                self.not_scored["no f0 sidecar"] += 1
                continue
            if entry.extra.get("score_f0") is False:  # the program does not sound the score note (prepare_renders)
                self.not_scored["score_f0 false"] += 1
                continue
            audio, f0 = manifest.resolve(entry), manifest.root / str(entry.extra["f0"])
            for p in (audio, f0):
                if not p.is_file():
                    raise FileNotFoundError(f"--eval {settings.eval_manifest}: {p} does not exist (are the paths "
                                            f"relative to another folder? pass --eval-root DIR; now {manifest.root})")
            wave = load_audio(audio, SR, start=entry.start, end=entry.end)
            ref = np.load(f0).astype(np.float64)
            n = min(len(ref), 1 + (len(wave) - 1024) // 160) if len(wave) >= 1024 else 0
            self.clips.append((entry.path, np.ascontiguousarray(wave, dtype=np.float32), ref[:n]))
        if not self.clips:
            raise ValueError(f"--eval {settings.eval_manifest}: split {split or 'all'!r} has no clip with score f0")

    def info(self) -> dict[str, Any]:
        refs = [r for _, _, r in self.clips]
        return {"manifest": self.manifest, "split": self.split, "clips": len(self.clips),
                "seconds": round(sum(len(w) for _, w, _ in self.clips) / SR, 1),
                "frames": int(sum(len(r) for r in refs)), "voiced_frames": int(sum((r > 0).sum() for r in refs)),
                "not_scored": dict(self.not_scored)}


def on_grid(times: np.ndarray, f0: np.ndarray, voiced: np.ndarray, grid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A track read at ``grid`` times: linear in cents between the two nearest frames when both have
    an f0, else the nearest frame's (also its voicing). Frames on the grid are returned unchanged."""
    times, f0 = np.asarray(times, np.float64), np.asarray(f0, np.float64)
    voiced = np.asarray(voiced, bool)
    if not len(times):
        return np.zeros(len(grid)), np.zeros(len(grid), bool)
    hi = np.clip(np.searchsorted(times, grid), 0, len(times) - 1)
    lo = np.clip(hi - 1, 0, len(times) - 1)
    span = times[hi] - times[lo]
    with np.errstate(invalid="ignore", divide="ignore"):
        w = np.clip(np.where(span > 0, (grid - times[lo]) / span, 0.0), 0.0, 1.0)
        both = (f0[lo] > 0) & (f0[hi] > 0)
        cents = (1 - w) * np.log2(np.where(both, f0[lo], 1.0)) + w * np.log2(np.where(both, f0[hi], 1.0))
    near = np.where(w < 0.5, lo, hi)
    exact = np.isclose(times[near], grid, rtol=0.0, atol=1e-9)
    out = np.where(both & ~exact, np.power(2.0, cents), f0[near])
    return out, voiced[near]


@dataclass(frozen=True)
class Condition:
    """A change of the eval clips: peak level set to ``peak_dbfs`` (None: as rendered), then white noise at
    ``snr_db`` under the clip's own RMS (None: none; seeded per clip, the same for every tracker)."""

    name: str
    peak_dbfs: float | None = None
    snr_db: float | None = None

    def apply(self, wave: np.ndarray, seed: int) -> np.ndarray:
        x = wave.astype(np.float64)
        if self.peak_dbfs is not None:
            peak = float(np.max(np.abs(x)))
            x = x * (10 ** (self.peak_dbfs / 20) / peak) if peak > 0 else x
        if self.snr_db is not None:
            rms = float(np.sqrt(np.mean(np.square(x))))
            x = x + np.random.default_rng(seed).standard_normal(len(x)) * rms * 10 ** (-self.snr_db / 20)
        return x.astype(np.float32)

    def above_noise(self, wave: np.ndarray, frames: np.ndarray) -> np.ndarray:
        """For a noise condition: which of ``frames`` (indices of 1024-sample frames every 160 samples) of the
        rendered ``wave`` are at least as loud as the noise this condition adds (their own SNR >= 0 dB)."""
        if self.snr_db is None:
            raise ValueError(f"condition {self.name!r} adds no noise")
        x = wave.astype(np.float64)
        energy = np.concatenate([[0.0], np.cumsum(np.square(x))])
        start = np.minimum(np.asarray(frames) * 160, len(x))
        end = np.minimum(start + 1024, len(x))
        power = (energy[end] - energy[start]) / np.maximum(end - start, 1)
        return power >= float(np.mean(np.square(x))) * 10 ** (-self.snr_db / 10)


AS_RENDERED = Condition("as rendered")
LOUD, QUIET = Condition("peak 0 dBFS", peak_dbfs=0.0), Condition("peak -40 dBFS", peak_dbfs=-40.0)
NOISY = Condition("white noise, 10 dB SNR", snr_db=10.0)
#: What the robustness table measures: the clips as rendered (the main RPA / RCA), each clip's peak at 0, -20
#: and -40 dBFS, and white noise at 10 dB SNR (the clip as rendered under it); it reports QUIET - LOUD and
#: NOISY - AS_RENDERED.
CONDITIONS = (AS_RENDERED, LOUD, Condition("peak -20 dBFS", peak_dbfs=-20.0), QUIET, NOISY)


def evaluate_tracker(tracker: PitchTracker, data: PitchEvalSet, condition: Condition = AS_RENDERED) -> dict[str, Any]:
    """RPA / RCA (50 cents) and voicing recall / false alarm over every scored frame, pooled over clips; and the
    RPA over the voiced frames that are at least as loud as `NOISY`'s noise (``rpa_above_noise``): a score's
    note stays voiced to its end, where a decaying instrument can be 30 dB or more under its clip's level,
    and under the noise no tracker can hear it (the same frames in every condition, so they compare)."""
    from edgetag.training.metrics import pitch_metrics

    refs, ests, voicings, audible = [], [], [], []
    for k, (_path, wave, ref) in enumerate(data.clips):
        idx = np.arange(0, len(ref), tracker.eval_every)
        grid = (idx * 160 + 512) / SR
        times, f0, voiced = tracker.track(condition.apply(wave, seed=k))
        est, v = on_grid(times, f0, voiced, grid)
        refs.append(ref[idx])
        ests.append(est)
        voicings.append(v)
        audible.append(NOISY.above_noise(wave, idx))
    ref, est, keep = np.concatenate(refs), np.concatenate(ests), np.concatenate(audible)
    m = pitch_metrics(ref, est, est_voicing=np.concatenate(voicings))
    heard = pitch_metrics(ref[keep], est[keep])
    return {"rpa": m["raw_pitch_accuracy"], "rca": m["raw_chroma_accuracy"], "voicing_recall": m["voicing_recall"],
            "voicing_false_alarm": m["voicing_false_alarm"], "frames": m["n_frames"], "voiced_frames": m["n_voiced"],
            "rpa_above_noise": heard["raw_pitch_accuracy"], "voiced_frames_above_noise": heard["n_voiced"],
            "clips": len(data.clips), "every_nth_frame": tracker.eval_every, "condition": condition.name}


# --------------------------------------------------------------------------- which trackers
def _edgetag_files(students: list[dict[str, Any]]) -> tuple[list[tuple[str, str]], str]:
    """(label, file) of every pitch student's ORT fp32 and int8 files; the built-in pitch model if none."""
    from edgetag.runtime.model import load_model
    from edgetag.runtime.pitch import is_pitch_model

    files = []
    for info in students:
        for key in ("ort-fp32", "ort-int8"):
            path = info.get("files", {}).get(key)
            if path and is_pitch_model(load_model(path).card):
                files.append((f"edgetag {info['student']} {key.replace('ort-', 'ORT ')}", path))
    if files:
        return files, "the run's pitch models"
    from edgetag.runtime.formats import sibling
    from edgetag.runtime.models import resolve_model

    path = str(resolve_model("pitch"))
    files = [("edgetag pitch ORT fp32", path)]
    if sibling(path, "int8").is_file():
        files.append(("edgetag pitch ORT int8", str(sibling(path, "int8"))))
    return files, "the built-in pitch model (no pitch model among the run's students)"


def _load_all(settings: BenchSettings, students: list[dict[str, Any]],
              say: Callable[[str], None]) -> tuple[list[PitchTracker], list[dict[str, Any]], str]:
    """Loaded trackers, rows of those that cannot run (with why), and where edgetag's rows come from."""
    trackers: list[PitchTracker] = []
    absent: list[dict[str, Any]] = []
    files, source = _edgetag_files(students)
    for label, path in files:
        trackers.append(edgetag_tracker(path, label, settings.threads))
    for name in [t for t in settings.teachers if t.startswith("crepe")]:
        if import_error("torch"):
            absent.append({"tracker": name, "label": name, "kind": "crepe",
                           "status": "needs torch (pip install 'edgetag[train]')"})
            continue
        try:  # CREPE full costs seconds per second of audio: scored every 100 ms, as the pitch recipe does
            trackers.append(crepe_tracker(name, settings.threads, hop=1600 if name == "crepe-full" else 160))
        except (FileNotFoundError, ImportError, OSError) as exc:
            absent.append({"tracker": name, "label": name, "kind": "crepe", "status": f"weights not installed: {exc}"})
    if settings.quick and "crepe-full" not in settings.teachers:
        absent.append({"tracker": "crepe-full", "label": "crepe-full (edgetag's port)", "kind": "crepe",
                       "status": "not run with --quick (about 3 s of CPU per second of audio); run without --quick"})
    for key in settings.peers:
        say(f"pitch trackers: loading {key}")
        got = load_tracker(key, settings.threads)
        if isinstance(got, str):
            spec = PEERS[key]
            absent.append({"tracker": key, "label": spec.label, "kind": "peer", "status": got,
                           "package": spec.distribution, "licence": spec.licence})
            say(f"pitch trackers: {key}: {got}")
        else:
            trackers.append(got)
    return trackers, absent, source


# --------------------------------------------------------------------------- timing
def _time_rounds(jobs: list[tuple[int, str, Callable[[np.ndarray], Any]]], clips: list[np.ndarray], repeats: int,
                 say: Callable[[str], None]) -> tuple[dict[tuple[int, str], list[float]], dict[int, str]]:
    """CPU ms per second of audio of each job over all clips, ``repeats`` rounds, start rotated each round;
    and the trackers whose warm-up call failed (left out of the rounds, with the error)."""
    seconds = sum(len(c) for c in clips) / SR
    failed: dict[int, str] = {}
    for i, _mode, fn in jobs:  # warm-up: first-call allocations, ORT/torch kernel selection
        try:
            fn(clips[0][: SR])
        except Exception as exc:  # noqa: BLE001 - a peer that fails on this input is a row, not a failed run
            failed.setdefault(i, f"failed: {type(exc).__name__}: {exc}")
    jobs = [job for job in jobs if job[0] not in failed]
    out: dict[tuple[int, str], list[float]] = {(i, mode): [] for i, mode, _ in jobs}
    for r in range(repeats):
        say(f"pitch trackers: timing round {r + 1}/{repeats} ({len(jobs)} tracker x mode, {seconds:g} s of audio each)")
        for j in range(len(jobs)):
            i, mode, fn = jobs[(j + r) % len(jobs)]
            gc.collect()
            gc.disable()
            try:
                c0 = time.process_time_ns()
                for clip in clips:
                    fn(clip)
                out[(i, mode)].append((time.process_time_ns() - c0) / 1e6 / seconds)
            finally:
                gc.enable()
    return out, failed


def _spread(values: list[float]) -> dict[str, float] | None:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": values} if values else None


def bench_pitch_trackers(settings: BenchSettings, students: list[dict[str, Any]], data: PitchEvalSet | None,
                         say: Callable[[str], None]) -> dict[str, Any]:
    """The pitch section's result: one row per tracker (cost, latency, RPA/RCA, ratios to edgetag)."""
    from contextlib import nullcontext

    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        threadpool_limits = None
    trackers, absent, source = _load_all(settings, students, say)
    clips = [eval_signal(settings.eval_seconds, SR, settings.seed + i) for i in range(settings.eval_clips)]
    jobs = [(i, "batch", t.track) for i, t in enumerate(trackers) if t.timed]
    jobs += [(i, "stream", t.stream) for i, t in enumerate(trackers) if t.timed and t.stream is not None]
    with threadpool_limits(limits=settings.threads) if threadpool_limits else nullcontext():
        times, failed = _time_rounds(jobs, clips, settings.peer_repeats, say)
        rows = []
        for i, t in enumerate(trackers):
            row = t.describe()
            if i in failed:
                absent.append({**row, "status": failed[i]})
                continue
            row["cpu_ms_per_s"] = {mode: _spread(times.get((i, mode), [])) for mode in ("batch", "stream")}
            if data is not None:
                say(f"pitch trackers: {t.label}: RPA / RCA on {len(data.clips)} clips, {len(CONDITIONS)} conditions")
                row["eval_conditions"] = {}
                # CREPE full (untimed here: seconds of CPU per second of audio) is scored as rendered only
                for condition in CONDITIONS if t.timed else (AS_RENDERED,):
                    try:
                        row["eval_conditions"][condition.name] = evaluate_tracker(t, data, condition)
                    except Exception as exc:  # noqa: BLE001 - one tracker failing to score is a row, not a failed run
                        row["eval_conditions"][condition.name] = {"error": f"{type(exc).__name__}: {exc}"}
                row["eval"] = row["eval_conditions"][AS_RENDERED.name]
            rows.append(row)
    reference = _ratios(rows)
    return {"rows": rows + absent, "edgetag_source": source, "reference": reference,
            "threads": settings.threads, "repeats": settings.peer_repeats, "peers": list(settings.peers),
            "audio": {"clips": len(clips), "seconds_each": settings.eval_seconds, "seed": settings.seed,
                      "signal": "measure.eval_signal (the student rows' timing clips)"},
            "eval": data.info() if data is not None else None, "install": PEERS_INSTALL}


def _ratios(rows: list[dict[str, Any]]) -> str | None:
    """Each row's cost and accuracy over the reference's (the first edgetag row: ORT fp32); its label."""
    ref = next((r for r in rows if r["kind"] == "edgetag"), None)
    if ref is None:
        return None
    for row in rows:
        cost = {}
        for mode in ("batch", "stream"):
            a, b = row["cpu_ms_per_s"].get(mode), ref["cpu_ms_per_s"].get(mode)
            cost[mode] = a["median"] / b["median"] if a and b and b["median"] > 0 else None
        a, b = ref["cpu_ms_per_s"].get("stream"), row["cpu_ms_per_s"].get("batch")
        cost["batch_vs_edgetag_stream"] = b["median"] / a["median"] if a and b and a["median"] > 0 else None
        row["cost_ratio_to_edgetag"] = cost
        ev, rev = row.get("eval") or {}, ref.get("eval") or {}
        if "rpa" in ev and "rpa" in rev:
            row["accuracy_vs_edgetag"] = {f"{k}_ratio": ev[k] / rev[k] if rev[k] else None for k in ("rpa", "rca")}
            row["accuracy_vs_edgetag"].update({f"{k}_points": 100 * (ev[k] - rev[k]) for k in ("rpa", "rca")})
    return ref["label"]


# --------------------------------------------------------------------------- report.md
def _ms(d: dict[str, Any] | None) -> str:
    if not d:
        return "–"
    return f"{d['median']:.1f} [{d['min']:.1f}–{d['max']:.1f}]"


def _x(v: float | None) -> str:
    return "–" if v is None else f"{v:.2f}×"


def _pct(ev: dict[str, Any] | None, key: str) -> str:
    if not ev:
        return "— (no pitch --eval)"
    if "error" in ev:
        return f"error: {ev['error']}"
    v = ev.get(key)
    return "–" if v is None or v != v else f"{100 * v:.2f}"


def _count(n: int | None) -> str:
    if not n:
        return "–"
    return f"{n / 1e6:.2f} M" if n >= 1e6 else f"{n / 1e3:.1f} k"


def pitch_section(result: dict[str, Any]) -> list[str]:
    """The report.md section of `bench_pitch_trackers`'s result (nothing when it did not run)."""
    p = result.get("pitch_trackers")
    if not p:
        return []
    out = ["## Pitch trackers: edgetag beside CREPE and the trackers people install", ""]
    if p.get("error"):
        return out + [f"failed: {p['error']}", ""]
    header = ("tracker", "licence", "params", "hop ms", "lookahead ms", "CPU ms / s audio, batch [min–max]",
              "stream [min–max]", "÷ edgetag batch", "÷ edgetag stream", "RPA", "RCA", "RPA, RCA vs edgetag")
    rows, notes = [], []
    for r in p["rows"]:
        if r.get("status") != "ok":
            rows.append((r["label"], r.get("licence") or "–", "–", "–", "–", r["status"], *("–",) * 6))
            continue
        cost, acc, ev = r.get("cost_ratio_to_edgetag") or {}, r.get("accuracy_vs_edgetag"), r.get("eval")
        vs = (f"{acc['rpa_ratio']:.3f}× ({acc['rpa_points']:+.2f}), {acc['rca_ratio']:.3f}× ({acc['rca_points']:+.2f})"
              if acc and acc.get("rpa_ratio") is not None else "–")
        lookahead = "offline only" if r["lookahead_ms"] is None else f"{r['lookahead_ms']:g}"
        batch = _ms(r["cpu_ms_per_s"]["batch"]) if r.get("timed", True) else "see Teachers (10 ms hop)"
        rows.append((r["label"], r["licence"] or "–", _count(r["params"]), f"{r['hop_ms']:g}", lookahead,
                     batch, _ms(r["cpu_ms_per_s"]["stream"]), _x(cost.get("batch")),
                     _x(cost.get("stream")), _pct(ev, "rpa"), _pct(ev, "rca"), vs))
        parts = [r["streaming"], *([f"params: {r['params_note']}"] if r["params_note"] else []), *r["notes"]]
        notes.append(f"- {r['label']}: {'; '.join(parts)}.")
    out += ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    a = p["audio"]
    out += ["", f"Cost: process CPU time, {p['threads']} thread(s), on the student rows' {a['clips']} seeded clips x "
            f"{a['seconds_each']:g} s; median [min–max] of {p['repeats']} rounds, round-robin over the trackers. batch = "
            "each tracker's whole-clip call (edgetag: front end on the clip + one model run over all frames); "
            "stream = the clip pushed one hop at a time through its streaming interface, an f0 decoded per push "
            "(edgetag: the runtime's engine, as `listen` runs it: C++ streaming front end, one ORT call per 10 ms frame or "
            "per the card's frames per call, state carried, every decision read with its frame's period). ÷ edgetag: this row's "
            f"median over {p['reference']}'s in the same mode (> 1: edgetag is cheaper).",
            "Lookahead: audio a tracker needs after a frame's centre before that frame's f0 is final (add one push "
            f"for a stream); hop: its decision interval. edgetag rows: {p['edgetag_source']}."]
    ev = p.get("eval")
    if ev:
        ns = ev["not_scored"]
        out.append(f"RPA / RCA: 50 cents, `edgetag.training.metrics.pitch_metrics` (as the pitch recipe's "
                   f"evaluate_pitch.py), on split `{ev['split'] or 'all'}` of `{ev['manifest']}`: {ev['clips']} clips, "
                   f"{ev['seconds']:g} s, {ev['voiced_frames']} frames the score marks voiced out of {ev['frames']} "
                   f"(10 ms frame centres); left out: {ns['score_f0 false']} clips whose program does not sound the "
                   f"score note (score_f0 false), {ns['no f0 sidecar']} without an f0 sidecar. Raw f0 on every "
                   "frame (voicing is scored separately, in the JSON); peers' frames are interpolated in cents to "
                   "the reference's frame centres. vs edgetag: ratio to the reference row (points in brackets).")
        out += ["", *_robustness_table(p["rows"])]
    else:
        out.append("RPA / RCA: none in this run (pass `--eval` with a pitch manifest, e.g. the pitch recipe's "
                   "renders.jsonl with `--eval-root`).")
    out += ["", "How each tracker streams:", "", *notes, "",
            f"Peers are optional; install them all without pulling CUDA: `{p['install']}`.", ""]
    return out


def _robustness_table(rows: list[dict[str, Any]]) -> list[str]:
    """RPA of every scored tracker under each `CONDITIONS` entry, with the level and noise differences."""
    names = [c.name for c in CONDITIONS]
    header = ("tracker", *(f"RPA, {n}" for n in names), f"peak {QUIET.peak_dbfs:g} minus {LOUD.peak_dbfs:g} dBFS",
              "noise minus as rendered", "the same, frames above the noise")
    lines = ["Level and noise (RPA on the same clips; points):", "",
             "| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    for r in rows:
        cond = r.get("eval_conditions") or {}
        if r.get("status") != "ok" or not cond:
            continue
        rpa = {n: (cond.get(n) or {}).get("rpa") for n in names}

        def diff(a: Condition, b: Condition) -> str:
            return "–" if rpa.get(a.name) is None or rpa.get(b.name) is None else f"{100 * (rpa[a.name] - rpa[b.name]):+.2f}"

        cells = [_pct(cond.get(n), "rpa") if n in cond else "–" for n in names]
        heard = [(cond.get(c.name) or {}).get("rpa_above_noise") for c in (NOISY, AS_RENDERED)]
        heard_diff = "–" if None in heard else f"{100 * (heard[0] - heard[1]):+.2f}"
        lines.append("| " + " | ".join((r["label"], *cells, diff(QUIET, LOUD), diff(NOISY, AS_RENDERED), heard_diff))
                     + " |")
    scored = next((r["eval_conditions"].get(AS_RENDERED.name) for r in rows
                   if r.get("status") == "ok" and r.get("eval_conditions")), None) or {}
    above, voiced = scored.get("voiced_frames_above_noise"), scored.get("voiced_frames")
    share = f" ({above} of {voiced} voiced frames)" if above is not None and voiced else ""
    lines += ["", "Each clip's peak set to 0 / -20 / -40 dBFS (the renders are at -18 to -1); the noise is white, "
              "seeded per clip (the same for every tracker), at 10 dB under the rendered clip's RMS. edgetag rows "
              "decode the model's scores without the runtime's level gate (-60 dBFS RMS by default), which "
              "reports silence below it. The last column counts only the voiced frames whose rendered audio is "
              f"at least as loud as that noise{share}: a score's note is voiced to its end, and the tail of a "
              "decaying note (a muted guitar's, 30 dB and more under its clip's level) is buried in the noise for "
              "every tracker."]
    return lines


def pitch_alternatives(result: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    """Rows for report.md's "what users would use instead" table: each peer's batch cost over edgetag's stream."""
    p = result.get("pitch_trackers") or {}
    out = []
    for r in p.get("rows", []):
        ratio = (r.get("cost_ratio_to_edgetag") or {}).get("batch_vs_edgetag_stream")
        if r.get("status") == "ok" and r["kind"] == "peer" and ratio is not None:
            out.append(("pitch", f"{r['label']} (batch)", f"{r['cpu_ms_per_s']['batch']['median']:.1f} ms CPU / s audio",
                        f"{p['reference']} (stream)", f"{ratio:.2f}×"))
    return out
