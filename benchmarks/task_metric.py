"""The task metric of ``edgetag bench --eval``: the evaluation split, its clips per front end,
and the teacher's metric from its cached outputs."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from edgetag.benchmarks.settings import BenchSettings


def primary_metric(task: str) -> str:
    """The task metric the report leads with: mAP for multi-label tagging, accuracy for multi-class."""
    return "accuracy" if task == "multi_class" else "map"


class EvalData:
    """The evaluation split's features, computed once per front-end configuration."""

    def __init__(self, settings: BenchSettings) -> None:
        from edgetag.training.data import load_manifest

        self.settings = settings
        self.manifest = load_manifest(settings.eval_manifest, root=settings.eval_root)
        split = settings.eval_split
        if split is not None and split not in self.manifest.splits():
            raise ValueError(f"--eval {settings.eval_manifest}: no split {split!r} "
                             f"(splits: {', '.join(sorted(self.manifest.splits())) or 'none'})")
        chosen = self.manifest.select(split) if split is not None else self.manifest
        if not any(e.positives for e in chosen.entries):  # checked now, not after minutes of timing
            raise ValueError(f"--eval {settings.eval_manifest}: split {split or 'all'!r} has no labels; "
                             "a task metric needs a labelled split")
        self._clips: dict[str, Any] = {}

    def clips(self, frontend: Any) -> Any:
        from edgetag.training.evaluate import load_eval_clips

        key = json.dumps(frontend.to_dict(), sort_keys=True)
        if key not in self._clips:
            self._clips[key] = load_eval_clips(self.manifest, frontend, split=self.settings.eval_split)
        return self._clips[key]


def task_metric(evaluation: Any) -> dict[str, Any]:
    """The JSON row entry of one `Evaluation`: its ``labels`` metrics plus how many clips were scored."""
    d = evaluation.to_dict()
    return {**d["metrics"]["labels"], "evaluated": d["info"].get("evaluated"), "split": d["info"].get("split"),
            **({"teacher_missing": d["info"]["teacher_missing"]} if "teacher_missing" in d["info"] else {})}


def teacher_task_metric(settings: BenchSettings, eval_data: EvalData | None, teachers: dict[str, Any] | None,
                        say: Callable[[str], None]) -> dict[str, Any]:
    """The teacher's task metric on the students' split, from its cached outputs (`evaluate_teacher_cache`).

    The teacher is not run again: ``edgetag teach`` already scored these manifest entries, and
    ``teacher_label_columns`` says which of its outputs scores which eval label. The result is
    also attached to the teacher's timed row (same name), which gives it MACs for the plot.
    """
    from edgetag.runtime.frontend import FrontendConfig
    from edgetag.training.evaluate import evaluate_teacher_cache

    name = settings.teacher_name
    if eval_data is None:
        return {"teacher": name, "status": "no --eval manifest: no task metric"}
    if not settings.teacher_label_columns:
        raise ValueError("a teacher task metric needs the label -> teacher column map (--label-columns or --config)")
    labels = [lab for lab, _ in settings.teacher_label_columns]
    missing = [lab for lab in labels if lab not in eval_data.manifest.labels]
    if missing:
        raise ValueError(f"--label-columns names labels the evaluation manifest does not have: {', '.join(missing)}")
    say(f"teacher {name}: task metric from the cache {settings.teacher_cache}")
    # only entries are used (no features): the default front end's clips are shared with the students
    clips = eval_data.clips(FrontendConfig.preset("default"))
    ev = evaluate_teacher_cache(settings.teacher_cache, name, clips, labels,
                                [col for _, col in settings.teacher_label_columns])
    out = {"teacher": name, "status": "ok", "identity": ev.info["teacher"], "cache": settings.teacher_cache,
           "label_columns": dict(settings.teacher_label_columns),
           "task_metric": {**task_metric(ev), "primary": "map"}}
    for row in (teachers or {}).get("rows", []):
        if row.get("teacher") == name:
            row["task_metric"] = out["task_metric"]
    return out

