"""Tag families of the built-in music-tags model, and its held-out agreement with the teacher per tag and family.

`FAMILIES` is the one table of which family each of MagnaTagATune's 50 tags
(the ``music-tags`` labels) belongs to: instruments, genres, vocals, and the
rest (mood, tempo, loudness, rhythm). Its judgement calls: ``opera`` is a
genre (it also implies a voice, but the tag names the style), ``choir`` and
``choral`` are vocals, ``beat`` / ``beats`` (a strong rhythm, not an
instrument) and ``solo`` go with the rest.

`tag_agreement` scores the student per tag against the teacher, with the
music-tag recipe's protocol (``training/recipes/musictag/run.py``, the
of the README): one row per teacher window (2.99 s; the student's score is
the mean of its decisions whose 1 s lies inside it, as
`edgetag.training.teacher_windows.align` lines them up), the teacher's tags
binarised at 0.5, ROC-AUC (`metrics.roc_auc`) and trapezoidal PR-AUC
(`metrics.pr_auc`) of the student's scores. A tag is *scored* when the
teacher gives it in at least ``min_positive_windows`` windows (10, i.e. 30 s
of music); a family's figure is the macro mean over its scored tags, with a
95 % interval from resampling whole tracks. The recipe's own macro (every tag
with both classes, however few positives) is kept beside it for comparison.

`card_record` turns the result into the card's ``provenance.evaluation``
entries that the runtime reads (`edgetag.runtime.tag_reliability`): the
held-out ROC-AUC of every scored tag, so ``info``, ``listen`` and ``tag``
can mark the tags whose agreement is poor.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

#: The music-tags labels by family; every one of the 50 in exactly one (checked by `family_of`'s tests).
FAMILIES: dict[str, tuple[str, ...]] = {
    "instruments": ("guitar", "strings", "drums", "piano", "violin", "synth", "harpsichord", "flute", "sitar",
                    "harp", "cello"),
    "genres": ("classical", "techno", "electronic", "rock", "ambient", "indian", "opera", "pop", "classic",
               "new age", "dance", "country", "metal"),
    "vocals": ("vocal", "female", "male", "singing", "vocals", "no vocals", "woman", "male vocal", "no vocal",
               "man", "choir", "voice", "male voice", "female vocal", "no voice", "female voice", "choral"),
    "mood/tempo/other": ("slow", "fast", "beat", "loud", "quiet", "soft", "solo", "beats", "weird"),
}
#: Fewer positive teacher windows than this and a tag's AUC rests on a few seconds of one track: not scored.
#: With n positives (and many negatives) an AUC near 0.75 has a standard error of about sqrt(0.08 / n):
#: 0.09 at 10, and windows of one track are not independent, so below 10 it says little.
MIN_POSITIVE_WINDOWS = 10
PROTOCOL = ("student vs the teacher's tags binarised at {threshold:g}, one row per 2.99 s teacher window (the mean of "
            "the student's 100 ms decisions whose 1 s lies inside it); per tag ROC-AUC and trapezoidal PR-AUC; a tag "
            "is scored with >= {min_positive_windows} positive windows; a family is the macro mean over its scored "
            "tags, 95 % interval from resampling whole tracks")


def family_of(labels: Sequence[str], families: dict[str, tuple[str, ...]] = FAMILIES) -> dict[str, str]:
    """Each label's family; raises ValueError for a label in no family or in two (a table that does
    not fit the model's labels would misfile its tags silently)."""
    where: dict[str, str] = {}
    for family, members in families.items():
        for label in members:
            if label in where:
                raise ValueError(f"tag {label!r} is in two families: {where[label]} and {family}")
            where[label] = family
    unknown = [label for label in labels if label not in where]
    if unknown:
        raise ValueError(f"tags in no family: {', '.join(unknown)}")
    return {label: where[label] for label in labels}


def _value(x: float) -> float | None:
    """None for an undefined score, so the result stays valid JSON."""
    return None if np.isnan(x) else round(float(x), 4)


def tag_agreement(student: np.ndarray, teacher: np.ndarray, track: np.ndarray, labels: Sequence[str], *,
                  threshold: float = 0.5, min_positive_windows: int = MIN_POSITIVE_WINDOWS,
                  families: dict[str, tuple[str, ...]] = FAMILIES, bootstrap: int = 200) -> dict[str, Any]:
    """Per tag and per family agreement of ``student`` ``[W, C]`` window scores with ``teacher`` ``[W, C]``
    (binarised at ``threshold``), ``track`` ``[W]`` naming each window's track (see the module docstring)."""
    from edgetag.training import metrics as M

    student, track = np.asarray(student, np.float64), np.asarray(track)
    tags = (np.asarray(teacher) >= threshold).astype(np.int64)
    family = family_of(labels, families)
    roc, pr = M.per_class(M.roc_auc, tags, student), M.per_class(M.pr_auc, tags, student)
    positives = tags.sum(0)
    scored = [c for c in range(len(labels)) if positives[c] >= min_positive_windows and not np.isnan(roc[c])]
    per_tag = {label: {"family": family[label], "positive_windows": int(positives[c]),
                       "positive_tracks": len(set(track[tags[:, c] > 0])), "roc_auc": _value(roc[c]),
                       "pr_auc": _value(pr[c]), "scored": c in scored}
               for c, label in enumerate(labels)}

    def summary(columns: list[int], members: int) -> dict[str, Any]:
        out: dict[str, Any] = {"tags": members, "tags_scored": len(columns),
                               "scored": [labels[c] for c in columns]}
        if columns:
            out["roc_auc"] = _value(np.mean(roc[columns]))
            out["pr_auc"] = _value(np.mean(pr[columns]))
            out["roc_auc_ci95"] = [_value(v) for v in M.track_bootstrap(tags[:, columns], student[:, columns], track,
                                                                        n=bootstrap)]
        return out

    groups = {name: [c for c in scored if family[labels[c]] == name] for name in families}
    both = ~np.isnan(roc)
    return {
        "protocol": PROTOCOL.format(threshold=threshold, min_positive_windows=min_positive_windows),
        "threshold": threshold, "min_positive_windows": min_positive_windows,
        "windows": len(student), "tracks": len(set(track)),
        "families": {name: summary(cols, sum(family[lb] == name for lb in labels)) for name, cols in groups.items()},
        "all": summary(scored, len(labels)),
        # the recipe's macro (the card's teacher_roc_auc): every tag with both classes, however few positives
        "both_classes": {"tags": int(both.sum()), "roc_auc": _value(M.macro(roc)[0]), "pr_auc": _value(M.macro(pr)[0])},
        "tags": per_tag,
    }


def card_record(result: dict[str, Any], precision: str = "fp32") -> dict[str, Any]:
    """The ``provenance.evaluation`` entries for a card: every scored tag's held-out figures (the runtime
    reads ``per_tag``'s ``roc_auc``, `edgetag.runtime.tag_reliability`) and each family's macro, measured
    on the file whose ``precision`` is given (an int8 file is measured itself, not through its fp32 file)."""
    columns = ["roc_auc", "pr_auc", "positive_windows", "positive_tracks"]
    return {
        "per_tag_measured_on": f"this file ({precision})",
        "per_tag": {label: [t[c] for c in columns] for label, t in result["tags"].items() if t["scored"]},
        "per_tag_columns": columns,
        "per_tag_rule": result["protocol"],
        "families": {name: [f.get("roc_auc"), f.get("pr_auc"), f["tags_scored"], f["tags"]]
                     for name, f in result["families"].items()},
        "families_columns": ["roc_auc", "pr_auc", "tags_scored", "tags"],
    }


def table(results: dict[str, dict[str, Any]]) -> str:
    """A markdown table of the families (rows) for each model (``results``: model name -> `tag_agreement`)."""
    names = list(results)
    first = results[names[0]]
    head = "| family | tags (scored) | " + " | ".join(f"{n} ROC-AUC [95 %] / PR-AUC" for n in names) + " |"
    lines = [head, "|---|---|" + "---|" * len(names)]

    def cell(f: dict[str, Any]) -> str:
        if not f["tags_scored"]:
            return "not measured"
        lo, hi = f["roc_auc_ci95"]
        ci = "" if lo is None else f" [{lo:.3f}, {hi:.3f}]"
        return f"{f['roc_auc']:.3f}{ci} / {f['pr_auc']:.3f}"

    for key in [*first["families"], "all"]:
        f = first["all"] if key == "all" else first["families"][key]
        label = f"all (>= {first['min_positive_windows']} positive windows)" if key == "all" else key
        cells = [cell(r["all"] if key == "all" else r["families"][key]) for r in results.values()]
        lines.append(f"| {label} | {f['tags']} ({f['tags_scored']}) | " + " | ".join(cells) + " |")
    both = [r["both_classes"] for r in results.values()]
    lines.append(f"| recipe's macro: every tag with both classes | {both[0]['tags']} | "
                 + " | ".join(f"{b['roc_auc']:.3f} / {b['pr_auc']:.3f}" for b in both) + " |")
    return "\n".join(lines)


def tag_table(results: dict[str, dict[str, Any]]) -> str:
    """A markdown table of every tag the teacher gives in the split, most positive windows first."""
    names = list(results)
    first = results[names[0]]["tags"]
    lines = ["| tag | family | positive windows (tracks) | " + " | ".join(f"{n} ROC-AUC / PR-AUC" for n in names)
             + " |", "|---|---|---|" + "---|" * len(names)]
    for label in sorted((lb for lb, t in first.items() if t["positive_windows"]),
                        key=lambda lb: (-first[lb]["positive_windows"], lb)):
        t = first[label]
        cells = []
        for r in results.values():
            x = r["tags"][label]
            text = "n/a" if x["roc_auc"] is None else f"{x['roc_auc']:.3f} / {x['pr_auc']:.3f}"
            cells.append(text if x["scored"] else f"({text})")
        lines.append(f"| {label} | {t['family']} | {t['positive_windows']} ({t['positive_tracks']}) | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines)
