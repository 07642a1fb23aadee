"""A model card as text for people, in 80 columns: what ``edgetag info`` and ``edgetag models`` print.

Every string that comes from a card is escaped (`edgetag.runtime.model_card.printable`)
before it is laid out, so a card cannot send escape codes to a terminal. Words
longer than a line (a path, a hash) overflow rather than being cut.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from edgetag.runtime.model_card import printable

#: Columns the text fits in.
WIDTH = 80
#: ``info``'s field names ("front end", "provenance") take this many columns, then the value.
KEY_WIDTH = 11


def wrap(text: str, first: str, rest: str, width: int = WIDTH) -> list[str]:
    """``text`` after ``first`` (a field name, an indent), wrapped at ``width`` with ``rest`` before the other lines.

    Splits at spaces only; a word too long for what is left of the first line starts the next one
    (when that has more room); a word too long for any line overflows.
    """
    return _fill([w for w in printable(text).split(" ") if w], first, rest, width)


def wrap_items(items: Sequence[str], first: str, rest: str, width: int = WIDTH) -> list[str]:
    """``items`` joined by commas and wrapped as `wrap` does, but never inside an item (``teacher_roc_auc 0.925``)."""
    items = [printable(i) for i in items]
    return _fill([f"{i}," for i in items[:-1]] + items[-1:], first, rest, width)


def _fill(words: list[str], first: str, rest: str, width: int) -> list[str]:
    lines: list[str] = []
    line, on_first, empty = first, True, True
    for word in words:
        sep = "" if empty else " "
        if len(line) + len(sep) + len(word) <= width:
            line, empty = line + sep + word, False
        elif not empty:  # the line is full: the word starts the next
            lines.append(line)
            line, on_first = rest + word, False
        elif on_first and len(rest) < len(first):  # a long first word: below the name, where it has room
            lines.append(line.rstrip())
            line, on_first, empty = rest + word, False, False
        else:  # no line has room for it
            line, empty = line + word, False
    lines.append(line.rstrip())
    return lines


def field(name: str, text: str) -> list[str]:
    """``name`` padded to `KEY_WIDTH`, then ``text`` with a hanging indent."""
    return wrap(text, f"{name:<{KEY_WIDTH - 1}} ", " " * KEY_WIDTH)


def _scalar(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value).lower() if value is not None else "none"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def tree(data: dict[str, Any], indent: str = "  ") -> list[str]:
    """A nested dict as indented ``key: value`` lines: sub-dicts one level deeper, lists of plain values
    joined by commas (wrapped), lists holding dicts as ``-`` items."""
    lines: list[str] = []
    for key, value in sorted(data.items()):
        head = f"{indent}{printable(str(key))}:"
        if isinstance(value, dict):
            lines += [head] + (tree(value, indent + "  ") if value else [f"{indent}  (empty)"])
        elif isinstance(value, (list, tuple)) and any(isinstance(v, (dict, list, tuple)) for v in value):
            lines.append(head)
            for item in value:
                if isinstance(item, dict):
                    sub = tree(item, indent + "    ")
                    lines += [f"{indent}  - {sub[0].lstrip()}", *sub[1:]] if sub else [f"{indent}  - (empty)"]
                else:
                    lines += wrap(", ".join(_scalar(v) for v in item) if isinstance(item, (list, tuple))
                                  else _scalar(item), f"{indent}  - ", f"{indent}    ")
        elif isinstance(value, (list, tuple)):
            lines += wrap(", ".join(_scalar(v) for v in value) or "(none)", head + " ", indent + "    ")
        else:
            lines += wrap(_scalar(value), head + " ", indent + "    ")
    return lines


def columns(cells: Sequence[str], indent: str = "  ", gap: int = 4, width: int = WIDTH) -> list[str]:
    """``cells`` in as many columns as fit in ``width``, filled down each column first (as ``ls``)."""
    cells = [printable(c) for c in cells]
    if not cells:
        return []
    cell = max(len(c) for c in cells)
    n_cols = max(1, (width - len(indent) + gap) // (cell + gap))
    n_rows = -(-len(cells) // n_cols)
    out = []
    for r in range(n_rows):
        row = [cells[c * n_rows + r] for c in range(n_cols) if c * n_rows + r < len(cells)]
        out.append((indent + (" " * gap).join(f"{c:<{cell}}" for c in row)).rstrip())
    return out


def label_cells(labels: Sequence[str], thresholds: Sequence[float],
                unreliable: Mapping[str, float] | None = None) -> list[str]:
    """``label  (threshold)`` per label, the form `columns` lays out; a label in ``unreliable`` is marked
    (`edgetag.runtime.tag_reliability.mark`)."""
    from edgetag.runtime.tag_reliability import mark

    return [f"{mark(label, unreliable or {})}  ({threshold:.3g})" for label, threshold in zip(labels, thresholds)]


def describe_task(card: Any) -> str:
    """What a model outputs, in words: ``pitch, 360 bins from 31.7 Hz to 2.0 kHz, decoded to f0/note/cents``,
    or ``tags, 50 labels (multi-label: each scored on its own)``."""
    from edgetag.runtime.pitch import bin_frequencies, is_pitch_model

    if is_pitch_model(card):
        f = bin_frequencies()
        return (f"pitch, {card.n_labels} bins from {f[0]:.1f} Hz to {f[-1] / 1000:.1f} kHz, "
                "decoded to f0/note/cents")
    if card.task == "multi_label":
        return f"tags, {card.n_labels} labels (multi-label: each scored on its own)"
    return f"classes, {card.n_labels} labels (multi-class: scores sum to 1)"


def metric_lines(metrics: dict[str, float], indent: str = "  ") -> list[str]:
    """``name  value`` per metric, the values in one column."""
    if not metrics:
        return [f"{indent}(none recorded)"]
    width = max(len(printable(k)) for k in metrics)
    return [f"{indent}{printable(k):<{width}}  {v:.4g}" for k, v in sorted(metrics.items())]
