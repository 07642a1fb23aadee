"""Students × backends for ``edgetag bench``: which students (random, trained checkpoints or
exported ONNX files), their export to ONNX, int8 and fp16, and one timed row per backend
with its task metric and its agreement with ORT fp32 (see `edgetag.benchmarks.report`)."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from edgetag.benchmarks.measure import eval_signal, import_error, spread
from edgetag.benchmarks.settings import BACKENDS, REFERENCE_BACKEND, BenchSettings
from edgetag.runtime.formats import sibling
from edgetag.benchmarks.task_metric import EvalData, primary_metric, task_metric
from edgetag.benchmarks.worker import run_worker


def _build_checkpoint(kind: str, settings: BenchSettings):
    if import_error("torch"):
        raise ImportError(f"--models {kind} builds a random-weight student with torch, which is not installed "
                          "(pip install 'edgetag[train,export]'); or measure ONNX models: --model music-tags")
    import torch
    from edgetag.runtime.frontend import FrontendConfig
    from edgetag.training.checkpoint import StudentCheckpoint
    from edgetag.training.students import build_student

    params = dict(settings.student_params.get(kind, {}))
    torch.manual_seed(settings.seed)
    student = build_student(kind, settings.n_bins, settings.n_labels, **params).eval()
    # window students: their window; stateful students get one hop of frames per call
    window = int(student.window_frames) if student.streaming_mode == "window" else settings.hop_frames
    frontend = FrontendConfig.preset("default")
    if frontend.n_bins != settings.n_bins:
        frontend = FrontendConfig.from_dict({**frontend.to_dict(), "n_bins": settings.n_bins})
    return StudentCheckpoint(
        student=student, kind=kind, params=params, frontend=frontend, task="multi_label",
        labels=[f"label_{i:02d}" for i in range(settings.n_labels)], thresholds=[0.5] * settings.n_labels,
        window_frames=window, hop_frames=settings.hop_frames,
        provenance={"weights": f"random (torch.manual_seed({settings.seed})), built by edgetag bench"},
    )


def _agreement(scores: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """ROC-AUC (and Pearson) of ``scores`` against the fp32 model's decisions.

    Random-weight students put most scores on one side of 0.5, so the fp32 decisions are taken at each
    label's median fp32 score (both classes present for every label).
    """
    from edgetag.training.metrics import agreement

    n = min(len(scores), len(reference))
    thresholds = np.median(reference[:n], axis=0)
    a = agreement(scores[:n], reference[:n], threshold=thresholds)
    return {"roc_auc": a["roc_auc"], "pearson": a["pearson"], "top1": a["top1"], "n_decisions": n,
            "max_abs_score_diff": float(np.max(np.abs(scores[:n] - reference[:n])))}


def _display_name(path: str, kind: str) -> str:
    """``kind run-folder`` for a trainer's ``run/student.pt``, else ``kind file-stem``: tells checkpoints apart."""
    p = Path(path)
    stem = p.parent.name if p.stem == "student" and p.parent.name else p.stem
    return f"{kind} {stem}"



@dataclass
class ModelSource:
    """One student to measure: a checkpoint (random or trained) or an exported ONNX file."""

    name: str
    kind: str
    ckpt: Any = None
    onnx: str | None = None
    card: Any = None
    """The ONNX file's model card (ONNX sources)."""

    @property
    def labels(self) -> list[str]:
        return list(self.ckpt.labels if self.ckpt is not None else self.card.labels)

    @property
    def frontend(self) -> Any:
        return self.ckpt.frontend if self.ckpt is not None else self.card.frontend


def model_sources(settings: BenchSettings) -> tuple[list[ModelSource], str]:
    """The students of this run and the weights note: the given checkpoints and ONNX files, random-weight
    students of ``settings.models``, or, when nothing is given, the built-in models."""
    from edgetag.runtime.model import load_model
    from edgetag.runtime.models import BASE_MODELS, resolve_model

    onnx_models = settings.onnx_models
    if not (settings.checkpoints or onnx_models or settings.models):
        onnx_models = BASE_MODELS  # their int8 siblings are measured as those models' int8 rows
    sources: list[ModelSource] = []
    for path in settings.checkpoints:
        if not Path(path).is_file():
            raise FileNotFoundError(f"--checkpoint {path}: no such file")
        from edgetag.training.checkpoint import load_checkpoint

        ckpt = load_checkpoint(path)
        sources.append(ModelSource(_display_name(path, ckpt.kind), ckpt.kind, ckpt=ckpt))
    for spec in onnx_models:
        path = resolve_model(spec)  # a file, or a built-in model's name (music-tags, pitch, ...)
        card = load_model(path).card
        export = card.provenance.get("export")
        kind = str(export.get("student_kind", card.streaming_mode) if isinstance(export, dict) else card.streaming_mode)
        sources.append(ModelSource(_display_name(path, "onnx"), kind, onnx=str(path), card=card))
    names = [s.name for s in sources]
    for i, src in enumerate(sources):  # two runs with the same folder name: number them
        if names.count(src.name) > 1:
            src.name = f"{src.name} #{i + 1}"
    if sources and settings.models:
        raise ValueError("--models builds random-weight students; measure them in a run of their own, "
                         "not with --checkpoint / --model")
    if sources:
        given = [*settings.checkpoints, *onnx_models]
        note = ("trained model(s) " if settings.checkpoints or settings.onnx_models else
                "the built-in models (no --model, --checkpoint or --models given) ") + ", ".join(given)
        note += ("; task metric on the evaluation split" if settings.eval_manifest else
                 "; no --eval manifest, so no task metric (agreement with fp32 is shown separately)")
        return sources, note
    if settings.eval_manifest:
        raise ValueError("--eval scores trained students: pass --checkpoint CKPT and/or --model X.onnx "
                         "(random-weight students have no task to be measured on)")
    return ([ModelSource(kind, kind, ckpt=_build_checkpoint(kind, settings)) for kind in settings.models],
            "random weights (no trained checkpoint given): no task metric; agreement with fp32 is shown separately")


def _calibration_features(src: ModelSource, settings: BenchSettings,
                          eval_data: EvalData | None) -> tuple[list[np.ndarray], str]:
    """int8 calibration features and where they come from.

    With ``--eval``: real clips of the manifest's *other* splits (never the evaluation split, which
    would leak it into the quantiser), enough for ``min_calib_windows`` model inputs. Otherwise (or
    when those are too few) one seeded synthetic signal long enough for that many windows: a trained
    window student of 3 s windows needs ~150 s, where the default ``calib_seconds`` gives 7 windows.
    """
    from edgetag.runtime.frontend import compute_features

    fe = src.frontend
    window = int(src.ckpt.window_frames if src.ckpt is not None else src.card.window_frames)
    hop = max(1, int(src.ckpt.hop_frames if src.ckpt is not None else src.card.hop_frames))
    if eval_data is not None:
        from edgetag.training.data import iter_audio

        others = [e for e in eval_data.manifest.entries if e.split != settings.eval_split]
        feats, n_windows, used = [], 0, set()
        if settings.eval_split is not None and others:
            subset = replace(eval_data.manifest, entries=others[: 4 * settings.min_calib_windows])
            for entry, audio in iter_audio(subset, fe.sample_rate, log_summary=False):
                f = compute_features(audio, fe)
                feats.append(f)
                used.add(entry.split)
                n_windows += max(0, (len(f) - window) // hop + 1)
                if n_windows >= 2 * settings.min_calib_windows:
                    break
        if n_windows >= settings.min_calib_windows:
            return feats, (f"{len(feats)} clips of split(s) {', '.join(sorted(used))} of the --eval manifest "
                           "(not the eval split)")
    frames = window + (settings.min_calib_windows - 1) * hop
    seconds = max(settings.calib_seconds, (frames * fe.hop_length + fe.win_length) / fe.sample_rate + 0.1)
    return ([compute_features(eval_signal(seconds, fe.sample_rate, settings.seed + 1000), fe)],
            f"seeded synthetic signal, {seconds:.1f} s")


def _check_eval_labels(sources: Sequence[ModelSource], manifest_labels: Sequence[str]) -> dict[str, list[str]]:
    """Refuse a student whose labels share nothing with the evaluation manifest; return the partial misses."""
    partial = {}
    for src in sources:
        missing = [name for name in src.labels if name not in manifest_labels]
        if len(missing) == len(src.labels):
            raise ValueError(f"{src.name}: none of its labels ({', '.join(src.labels[:8])}"
                             f"{' ...' if len(src.labels) > 8 else ''}) is in the evaluation manifest "
                             f"({', '.join(list(manifest_labels)[:8]) or 'no labels'}): wrong --eval for this model?")
        if missing:
            partial[src.name] = missing
    return partial


def bench_students(settings: BenchSettings, work: Path, say: Callable[[str], None],
                   eval_data: EvalData | None = None) -> dict[str, Any]:
    """Every student of the run: its files (exported or given) and one timed row per backend."""
    from edgetag.runtime.frontend import compute_features

    trt_reason = _tensorrt_unavailable()
    sources, weights_note = model_sources(settings)
    if any(src.ckpt is not None for src in sources):  # checkpoints are exported with torch in this process
        import torch

        torch.set_num_threads(settings.threads)
    partial_labels = _check_eval_labels(sources, eval_data.manifest.labels) if eval_data is not None else {}
    students = []
    for n_src, src in enumerate(sources):
        folder = work / f"{n_src:02d}-{src.kind}"
        folder.mkdir(parents=True, exist_ok=True)
        fe = src.frontend
        # synthetic clips for timing (every backend gets the same inputs); the task metric uses --eval
        eval_feats = [compute_features(eval_signal(settings.eval_seconds, fe.sample_rate, settings.seed + i), fe)
                      for i in range(settings.eval_clips)]
        calib_feats, calib_note = _calibration_features(src, settings, eval_data)
        feats_path = folder / "eval_features.npz"
        np.savez(feats_path, **{f"clip{i:03d}": f for i, f in enumerate(eval_feats)})
        info = _student_info(src, fe.sample_rate / fe.hop_length, weights_note)
        info["int8_calibration"] = calib_note
        if src.name in partial_labels:
            info["labels_not_in_eval_manifest"] = partial_labels[src.name]
        if src.ckpt is None:
            _given_files(src, info)
        else:
            _export_files(src, info, folder, calib_feats, eval_feats, settings, say)
        students.append(_measure_rows(info, settings, work, folder, feats_path, trt_reason, eval_data, say))
    return {"students": students, "weights": weights_note, "tensorrt": trt_reason or "available",
            "eval": eval_data.settings.eval_manifest if eval_data is not None else None}


def _tensorrt_unavailable() -> str | None:
    """Why there is no TensorRT row here, or None when TensorRT can run."""
    reason = import_error("tensorrt")
    if reason is None:
        import onnxruntime

        if "TensorrtExecutionProvider" not in onnxruntime.get_available_providers():
            reason = "onnxruntime has no TensorrtExecutionProvider"
    return reason


def _student_info(src: ModelSource, frame_rate: float, weights_note: str) -> dict[str, Any]:
    """The report entry of one student before its files and rows: size, cost, streaming shape."""
    if src.ckpt is not None:
        from edgetag.training.students import count_parameters, macs_per_second

        ckpt = src.ckpt
        info: dict[str, Any] = {
            "student": src.name, "kind": src.kind, "params": count_parameters(ckpt.student),
            "student_params": ckpt.params, "macs_per_second": macs_per_second(ckpt.student, frame_rate, ckpt.hop_frames),
            "streaming_mode": ckpt.student.streaming_mode, "window_frames": ckpt.window_frames,
            "hop_frames": ckpt.hop_frames, "task": ckpt.task,
        }
    else:
        card = src.card
        info = {"student": src.name, "kind": src.kind, "params": card.parameters or None, "student_params": {},
                "macs_per_second": card.macs_per_second or None, "streaming_mode": card.streaming_mode,
                "window_frames": card.window_frames, "hop_frames": card.hop_frames, "task": card.task,
                "source": src.onnx}
    info.update({"decision_interval_ms": 1e3 * info["hop_frames"] / frame_rate, "weights": weights_note,
                 "files": {}, "gates": {}, "rows": []})
    return info


def _given_files(src: ModelSource, info: dict[str, Any]) -> None:
    """An exported model: measure the files as given; int8/fp16 only when their siblings exist."""
    info["files"] = {"ort-fp32": src.onnx}
    for key, precision in (("ort-int8", "int8"), ("ort-fp16", "fp16")):
        sib = sibling(src.onnx, precision)
        if sib.is_file():
            info["files"][key] = str(sib)
        else:
            info["gates"][key] = {"error": f"no {sib.name} next to {Path(src.onnx).name}", "missing_file": True}
    info["gates"]["torch"] = {"error": "needs the model's torch checkpoint and torch; an ONNX file was given",
                              "missing_file": True}


def _export_files(src: ModelSource, info: dict[str, Any], folder: Path, calib_feats: list[np.ndarray],
                  eval_feats: list[np.ndarray], settings: BenchSettings, say: Callable[[str], None]) -> None:
    """A checkpoint: save it, export it to ONNX, then int8 and fp16 (a failed conversion is noted, not fatal)."""
    from edgetag.export.onnx_export import export_onnx
    from edgetag.export.quantize import convert_fp16, quantize_int8
    from edgetag.training.checkpoint import save_checkpoint

    t0 = time.perf_counter()
    ckpt, kind = src.ckpt, src.kind
    ckpt_path = save_checkpoint(ckpt, folder / f"{kind}.pt")
    say(f"{src.name}: exporting to ONNX (parity-checked), int8 and fp16")
    export = export_onnx(ckpt, folder / f"{kind}.onnx", calibration_features=calib_feats, name=f"bench-{kind}")
    info["files"] = {"torch": str(ckpt_path), "ort-fp32": str(export.path)}
    info["export_parity_max_abs"] = max(export.parity.batched_max_abs, export.parity.single_max_abs)
    for key, fn in (("ort-int8", "int8"), ("ort-fp16", "fp16")):
        if key not in settings.backends:
            continue
        out = folder / f"{kind}.{fn}.onnx"
        try:
            if fn == "int8":
                rep = quantize_int8(export.path, out, calib_feats, eval_feats, accept_drop=True,
                                    min_windows=settings.min_calib_windows)
            else:
                rep = convert_fp16(export.path, out, eval_feats, accept_drop=True)
            info["files"][key] = str(out)
            info["gates"][key] = {"metric": rep.metric_name, "fp32": rep.fp32_metric, "value": rep.metric,
                                  "relative_drop": rep.relative_drop, "accepted_beyond_gate": rep.accepted_drop,
                                  "sqnr_db_logits": rep.sqnr_db.get("logits")}
        except Exception as exc:  # noqa: BLE001 - one failed conversion is a row, not a failed run
            info["gates"][key] = {"error": f"{type(exc).__name__}: {exc}"}
    info["export_seconds"] = time.perf_counter() - t0


def _load_for_eval(key: str, backend: str, path: str, threads: int) -> Any:
    if key == "torch":
        from edgetag.training.torch_backend import TorchModel

        return TorchModel(path, threads=threads)
    from edgetag.runtime.model import load_model

    return load_model(path, backend=backend, threads=threads)


def _measure_rows(info: dict[str, Any], settings: BenchSettings, work: Path, folder: Path, feats_path: Path,
                  trt_reason: str | None, eval_data: EvalData | None, say: Callable[[str], None]) -> dict[str, Any]:
    """Time every backend of one student (a worker each), then its task metric and agreement with fp32."""
    from edgetag.training.evaluate import evaluate_model

    name = info["student"]
    results: dict[str, dict[str, Any]] = {}
    for key, label, backend, precision in BACKENDS:
        if key not in settings.backends:
            continue
        row: dict[str, Any] = {"student": name, "backend": key, "label": label, "precision": precision}
        if key == "tensorrt":
            row["status"] = f"not available ({trt_reason or 'no TensorRT engine built by this benchmark'})"
            info["rows"].append(row)
            continue
        path = info["files"].get(key)
        if path is None:
            row["status"] = f"not available ({info['gates'].get(key, {}).get('error', 'not built')})"
            info["rows"].append(row)
            continue
        say(f"{name} / {label}: timing in a {'fresh subprocess' if settings.subprocess_workers else 'this process'}")
        spec = {"key": f"{folder.name}-{key}", "model_path": path, "backend": backend, "threads": settings.threads,
                "features": str(feats_path), "warmup": settings.warmup_runs, "runs": settings.timed_runs,
                "scores_out": str(folder / f"scores-{key}.npy")}
        try:
            res = run_worker(spec, not settings.subprocess_workers, work)
        except Exception as exc:  # noqa: BLE001
            row["status"] = f"failed: {exc}"
            info["rows"].append(row)
            continue
        lat = spread(res["latency_ms"])
        row.update({
            "status": "ok", "file": path, "file_bytes": Path(path).stat().st_size,
            "latency_ms": lat, "latency_ms_runs": res["latency_ms"], "call_seconds": res["call_seconds"],
            "rtf": lat["median"] / 1e3 / res["call_seconds"],
            "x_real_time": res["call_seconds"] / (lat["median"] / 1e3),
            "peak_rss_mb": res["peak_rss_mb"], "rss_before_load_mb": res["rss_before_load_mb"],
            "load_s": res["load_s"], "subprocess": settings.subprocess_workers,
            "calls_per_pass": res["calls_per_pass"],
        })
        results[key] = np.load(spec["scores_out"])
        if eval_data is not None:
            say(f"{name} / {label}: task metric on the evaluation split")
            try:
                model = _load_for_eval(key, backend, path, settings.threads)
                clips = eval_data.clips(model.card.frontend)
                row["task_metric"] = task_metric(evaluate_model(model, clips))
                row["task_metric"]["primary"] = primary_metric(info["task"])
                del model
            except ValueError as exc:  # bad labels etc.: say so in the row, keep measuring
                row["task_metric"] = {"error": str(exc)}
        info["rows"].append(row)
    ref_rows = {r["backend"]: r for r in info["rows"]}
    ref = ref_rows.get(REFERENCE_BACKEND)
    for row in info["rows"]:
        if row.get("status") != "ok":
            continue
        if ref is not None and ref.get("status") == "ok":
            row["ratio_to_ort_fp32"] = row["latency_ms"]["median"] / ref["latency_ms"]["median"]
            row["ratio_p99_to_ort_fp32"] = row["latency_ms"]["p99"] / ref["latency_ms"]["p99"]
        if REFERENCE_BACKEND in results:
            row["agreement_vs_fp32"] = _agreement(results[row["backend"]], results[REFERENCE_BACKEND])
        row["agreement_name"] = "agreement with ORT fp32: ROC-AUC of scores vs fp32 decisions at per-label median"
    gc.collect()
    return info

