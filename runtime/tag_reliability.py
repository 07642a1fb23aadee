"""Which tags of a model to believe: its held-out agreement with the teacher, per tag, from the card.

A card may hold, under ``provenance.evaluation``, the held-out ROC-AUC of each
tag against the teacher it was distilled from (``per_tag``: label -> a row
whose columns ``per_tag_columns`` names, one of them ``roc_auc``; written by
``benchmarks/tag_families.py --write-card`` and the music-tag recipe, see
`edgetag.training.tag_families`). A tag whose held-out ROC-AUC is below
`UNRELIABLE_BELOW` is *unreliable*: ``edgetag info`` (labels table), the live
view of ``listen`` and the summary of ``tag`` put `MARK` after it and explain
it once in a `legend` line. A tag without a measured AUC (the teacher gave it
too rarely on the held-out music) is not marked: nothing is known of it.

Torch-free, and forgiving: a malformed record marks nothing rather than
refusing a model that runs.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

#: Held-out ROC-AUC below this marks a tag: well under it, a tag is barely better than chance against the teacher.
UNRELIABLE_BELOW = 0.75
#: Put after an unreliable tag's name.
MARK = "?"


def held_out_auc(card: Any) -> dict[str, float]:
    """Each tag's held-out ROC-AUC recorded in ``card``, by label ({} when none is recorded)."""
    evaluation = card.provenance.get("evaluation") if isinstance(card.provenance, dict) else None
    if not isinstance(evaluation, dict) or not isinstance(evaluation.get("per_tag"), dict):
        return {}
    columns = evaluation.get("per_tag_columns", ["roc_auc"])
    if not isinstance(columns, list) or "roc_auc" not in columns:
        return {}
    at = columns.index("roc_auc")
    known = set(card.labels)
    out: dict[str, float] = {}
    for label, row in evaluation["per_tag"].items():
        value = row[at] if isinstance(row, list) and len(row) > at else None
        if label in known and isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            out[label] = float(value)
    return out


def unreliable_tags(card: Any, below: float = UNRELIABLE_BELOW) -> dict[str, float]:
    """The tags whose held-out ROC-AUC is below ``below``, with it, in label order."""
    auc = held_out_auc(card)
    return {label: auc[label] for label in card.labels if label in auc and auc[label] < below}


def mark(label: str, unreliable: Mapping[str, float]) -> str:
    """``label`` with `MARK` after it when it is unreliable."""
    return f"{label}{MARK}" if label in unreliable else label


def legend(unreliable: Mapping[str, float], shown: Iterable[str] | None = None) -> str:
    """One line that explains `MARK`, naming the marked tags among ``shown`` (default: all) with their AUC;
    "" when none of them is marked."""
    named = [label for label in dict.fromkeys(unreliable if shown is None else shown) if label in unreliable]
    if not named:
        return ""
    tags = ", ".join(f"{label} {unreliable[label]:.2f}" for label in named)
    return f"{MARK} unreliable: held-out ROC-AUC against the teacher below {UNRELIABLE_BELOW:g} ({tags})"
