"""The quality gate of int8 and fp16 files: the task metric on held-out clips, and what it reports.

`clip_scores` runs a model over clips with the runtime's clip runner,
`task_metric` scores them (macro ROC-AUC, accuracy, or agreement with the
fp32 file), `_gate` compares a quantized file with its fp32 file and refuses
a drop beyond ``max_relative_drop``; `_finish_card` seals the file with its
precision, metrics and the fp32 file's test vector (see `edgetag.export.quantize`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgetag.export.errors import ExportError
from edgetag.export.inputs import verification_frames
from edgetag.export.model_file import _ort_session
from edgetag.runtime.sealing import seal
from edgetag.runtime.clip import call_inputs, run_clip
from edgetag.runtime.model import OnnxModel
from edgetag.runtime.model_card import INPUT_NAME, OUTPUT_NAME, ModelCard, scores_from_logits


#: The quality gate: at most 1 % relative drop of the task metric.
MAX_RELATIVE_DROP = 0.01


class QuantizationGateError(ExportError):
    """The quantized model loses more of the task metric than allowed."""


@dataclass
class QuantReport:
    precision: str
    path: Path
    size_bytes: int
    fp32_size_bytes: int
    metric_name: str
    fp32_metric: float
    metric: float
    relative_drop: float
    sqnr_db: dict[str, float] = field(default_factory=dict)
    n_calibration_windows: int = 0
    n_eval_clips: int = 0
    accepted_drop: bool = False
    plan: str = ""
    latency_ms: dict[str, float] = field(default_factory=dict)
    latency_warning: str = ""

    def lines(self) -> list[str]:
        sqnr = ", ".join(f"{k} {v:.1f} dB" for k, v in self.sqnr_db.items())
        out = [
            f"{self.precision}: {self.path} {self.size_bytes} bytes ({self.size_bytes / self.fp32_size_bytes:.2f}x fp32's {self.fp32_size_bytes})",
            f"{self.precision}: {self.metric_name} fp32 {self.fp32_metric:.4f} -> {self.precision} {self.metric:.4f} "
            f"(relative drop {100 * self.relative_drop:+.2f} %, {self.n_eval_clips} held-out clips"
            + (", ACCEPTED beyond the gate" if self.accepted_drop else "")
            + ")",
            f"{self.precision}: SQNR {sqnr}",
        ]
        if self.n_calibration_windows:
            out.insert(1, f"{self.precision}: calibrated on {self.n_calibration_windows} windows of real features")
        if self.latency_ms:
            fp32 = self.latency_ms.get("fp32", float("nan"))
            timed = ", ".join(
                f"{k} {v:.3f} ms ({v / fp32:.2f}x)" + (" <- kept" if k == self.plan else "")
                for k, v in self.latency_ms.items() if k != "fp32"
            )
            out.append(f"{self.precision}: ONNX Runtime CPU p50, 1 thread: fp32 {fp32:.3f} ms; {timed}")
        if self.latency_warning:
            out.append(f"{self.precision}: WARNING: {self.latency_warning}")
        return out


# ------------------------------------------------------------------------------ metrics
def roc_auc_macro(scores: np.ndarray, targets: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Macro ROC-AUC over labels with both classes present (`edgetag.training.metrics.roc_auc`), masked entries left out."""
    from edgetag.training.metrics import macro, per_class, roc_auc

    binary = (np.asarray(targets, np.float64) > 0.5).astype(np.int64)
    value, _ = macro(per_class(roc_auc, binary, np.asarray(scores, np.float64), mask))
    if not np.isfinite(value):
        raise ExportError("ROC-AUC needs at least one label with positive and negative held-out clips")
    return value


def task_metric(
    card: ModelCard,
    scores: np.ndarray,
    targets: np.ndarray | None,
    mask: np.ndarray | None = None,
    reference_scores: np.ndarray | None = None,
) -> tuple[str, float]:
    """(name, value) of the task metric on clip scores [n_clips, n_labels]; higher is better."""
    if targets is not None:
        targets = np.asarray(targets)
        if card.task == "multi_label":
            return "roc_auc_macro", roc_auc_macro(scores, targets, mask)
        truth = targets.argmax(axis=1) if targets.ndim == 2 else targets.astype(int)
        return "accuracy", float(np.mean(scores.argmax(axis=1) == truth))
    if reference_scores is None:
        raise ExportError("no targets and no reference scores to compare with")
    if card.task == "multi_label":
        thresholds = np.asarray(card.thresholds)
        return "fp32_agreement", float(np.mean((scores > thresholds) == (reference_scores > thresholds)))
    return "fp32_agreement", float(np.mean(scores.argmax(axis=1) == reference_scores.argmax(axis=1)))


# ------------------------------------------------------------------------- running models
def clip_scores(session: Any, card: ModelCard, clips: Sequence[np.ndarray]) -> np.ndarray:
    """Clip-level scores [n_clips, n_labels]: the mean of `edgetag.runtime.clip.run_clip`'s outputs.

    Window models: windows every ``hop_frames``. Stateful models: every frame.
    """
    model = OnnxModel.from_session(session, card)
    out = []
    for clip in clips:
        if card.streaming_mode == "window" and clip.shape[0] < card.window_frames:
            raise ExportError(f"held-out clip of {clip.shape[0]} frames is shorter than a window ({card.window_frames})")
        run = run_clip(model, clip, every_frame=True)
        out.append(scores_from_logits(run.logits.astype(np.float64), card.task).mean(axis=0))  # float64: ROC-AUC ranks them
    return np.stack(out)


def input_feeds(
    session: Any, card: ModelCard, clips: Sequence[np.ndarray], limit: int | None = None, seed: int = 0
) -> list[dict[str, np.ndarray]]:
    """Session feeds cut from real clips (`edgetag.runtime.clip.call_inputs`), stateful ones with the fp32 model's state at that point."""
    model = OnnxModel.from_session(session, card)
    feeds: list[dict[str, np.ndarray]] = []
    for clip in clips:
        states = model.initial_state(1)
        for x in call_inputs(card, clip):
            feed = {INPUT_NAME: x}
            feed.update({s.input_name: v for s, v in zip(card.states, states)})
            feeds.append(feed)
            if card.states:
                _, states = model.run(x, states)
    if limit is not None and len(feeds) > limit:
        keep = np.sort(np.random.default_rng(seed).choice(len(feeds), limit, replace=False))
        feeds = [feeds[i] for i in keep]
    return feeds


def sqnr_db(reference: Any, candidate: Any, card: ModelCard, feeds: Sequence[dict[str, np.ndarray]]) -> dict[str, float]:
    """Per-output SQNR in dB, both sessions run on the same feeds."""
    names = [OUTPUT_NAME] + [s.output_name for s in card.states]
    signal = dict.fromkeys(names, 0.0)
    noise = dict.fromkeys(names, 0.0)
    for feed in feeds:
        for name, ref, got in zip(names, reference.run(names, feed), candidate.run(names, feed)):
            ref64 = ref.astype(np.float64)
            signal[name] += float(np.sum(ref64**2))
            noise[name] += float(np.sum((ref64 - got.astype(np.float64)) ** 2))
    return {
        name: (float("inf") if noise[name] == 0 else float(10 * np.log10(max(signal[name], 1e-300) / noise[name])))
        for name in names
    }


class FeedReader:
    """An `onnxruntime.quantization.CalibrationDataReader` over prepared feeds."""

    def __init__(self, feeds: Sequence[dict[str, np.ndarray]]) -> None:
        self.feeds = list(feeds)
        self._iter = iter(self.feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._iter, None)

    def rewind(self) -> None:
        self._iter = iter(self.feeds)


# ---------------------------------------------------------------------------------- gate
def _gate(
    precision: str,
    fp32_path: Path,
    out_path: Path,
    card: ModelCard,
    eval_clips: Sequence[np.ndarray],
    eval_targets: np.ndarray | None,
    eval_mask: np.ndarray | None,
    max_relative_drop: float,
    accept_drop: bool,
    n_calibration: int,
    fp32_session: Any,
) -> QuantReport:
    if not eval_clips:
        raise ExportError(f"{precision} gate needs held-out clips")
    if eval_targets is not None and len(eval_targets) != len(eval_clips):
        raise ExportError(f"{len(eval_targets)} targets for {len(eval_clips)} held-out clips")
    session = _ort_session(out_path)
    ref_scores = clip_scores(fp32_session, card, eval_clips)
    got_scores = clip_scores(session, card, eval_clips)
    name, fp32_metric = task_metric(card, ref_scores, eval_targets, eval_mask, ref_scores)
    _, metric = task_metric(card, got_scores, eval_targets, eval_mask, ref_scores)
    drop = (fp32_metric - metric) / abs(fp32_metric) if fp32_metric else float(fp32_metric != metric)
    sqnr = sqnr_db(fp32_session, session, card, input_feeds(fp32_session, card, eval_clips, limit=200))
    report = QuantReport(
        precision=precision,
        path=out_path,
        size_bytes=out_path.stat().st_size,
        fp32_size_bytes=fp32_path.stat().st_size,
        metric_name=name,
        fp32_metric=fp32_metric,
        metric=metric,
        relative_drop=drop,
        sqnr_db=sqnr,
        n_calibration_windows=n_calibration,
        n_eval_clips=len(eval_clips),
    )
    if drop > max_relative_drop:
        if not accept_drop:
            out_path.unlink(missing_ok=True)
            raise QuantizationGateError(_gate_message(report, max_relative_drop) + "; use --accept-drop to keep it")
        report.accepted_drop = True
    return report


def _gate_message(report: QuantReport, max_relative_drop: float) -> str:
    p = report.precision
    return (
        f"{p} gate failed: {report.metric_name} fp32 {report.fp32_metric:.6f} vs {p} {report.metric:.6f}, "
        f"relative drop {100 * report.relative_drop:.3f} % > allowed {100 * max_relative_drop:.3f} % "
        f"(SQNR logits {report.sqnr_db.get(OUTPUT_NAME, float('nan')):.1f} dB)"
    )


def _finish_card(
    out_path: Path, card: ModelCard, precision: str, report: QuantReport | None, extra: dict[str, Any],
    metrics: dict[str, float] | None = None, *, fp32_path: Path, eval_features: Sequence[np.ndarray],
) -> None:
    """Write the quantized file's card (precision, how it was made, metrics), digest and test vector.

    The test vector holds the fp32 file's features and fp32 reference scores (computed from
    ``eval_features`` when the fp32 file carries none), with this precision's tolerance.
    """
    import onnx

    model = onnx.load(str(out_path))
    data = card.to_dict()
    data["provenance"] = {**card.provenance, "export": {**card.provenance.get("export", {}), "precision": precision, **extra}}
    if report is not None:
        # the fp32 file's own measurements (teacher agreement, accuracy...) are copied, and said to be
        # the fp32's, until a recipe measures this file (`record_metrics` replaces them)
        data["provenance"]["export"]["metrics_of_fp32"] = sorted(card.metrics)
        data["metrics"] = {
            **card.metrics,
            f"{report.metric_name}_fp32": report.fp32_metric,
            f"{report.metric_name}_{precision}": report.metric,
            f"{precision}_relative_drop": report.relative_drop,
            **{f"sqnr_db_{k}": (v if np.isfinite(v) else 999.0) for k, v in report.sqnr_db.items()},
            **(metrics or {}),
        }
    frames, reference = fp32_test_vector(fp32_path, card, eval_features)
    seal(model, ModelCard.from_dict(data), out_path, frames, precision=precision, reference_scores=reference)


def fp32_test_vector(fp32_path: Path, card: ModelCard, eval_features: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(features, fp32 reference scores) of the fp32 file's test vector; computed on held-out features if it has none."""
    from edgetag.runtime.model import load_model
    from edgetag.runtime.verify import decode_array, stream_scores

    vector = card.test_vector
    if vector:
        return decode_array(vector["features"], "features"), decode_array(vector["reference_scores"], "reference_scores")
    frames = verification_frames(eval_features, card)
    return frames, stream_scores(load_model(fp32_path, threads=1), frames)
