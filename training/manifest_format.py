"""The manifest file format: a CSV or JSON Lines manifest's text parsed into validated entries
(`parse_entries`, every problem listed with its line in a `ManifestError`), and an entry's labels
as tokens again (`labels_to_tokens`). `edgetag.training.data` reads (`load_manifest`) and writes
(`write_manifest`) manifest files with them.

Manifest format
===============

A manifest lists audio segments, one per row, in CSV (``.csv``) or JSON Lines
(``.jsonl``; ``.json`` and ``.ndjson`` are read as JSON Lines too). Fields:

``path`` (required)
    The audio file, relative to the manifest's root directory (by default the
    directory holding the manifest). Absolute paths, ``..`` components and
    symlinks that resolve outside the root are refused: a manifest from
    someone else must not be able to read arbitrary files.
``start``, ``end`` (optional, seconds)
    The segment ``[start, end)``. Empty (CSV) or ``null`` (JSONL) means the
    start or the end of the file.
``split`` (required)
    Any non-empty string, usually ``train``, ``valid`` or ``test``.
``labels`` (required, may be empty)
    The entry's labels. Each label of the vocabulary is, for each entry, in
    one of three states: **positive** (1), **negative** (0) or **missing**
    (unknown: not annotated, so a loss must ignore it; this is *not* the same
    as negative). Tokens:

    * ``name`` or ``name=1``: positive;
    * ``name=0``: explicitly negative;
    * ``name=?``: missing.

    In CSV the tokens are joined with ``;`` (``dog;cat=?;bird=0``). In JSONL
    ``labels`` is a list of tokens (``["dog", "cat=?"]``), a ``;``-joined
    string, or an object mapping names to ``1``/``0``/``null`` (``null`` or
    ``"?"`` meaning missing): ``{"dog": 1, "cat": null, "bird": 0}``.
``missing`` (optional)
    More missing labels (``;``-joined in CSV, a list or string in JSONL), or
    ``*``: every label of the vocabulary not named in ``labels`` is missing
    for this entry (for audio that was never annotated, or annotated for a
    few labels only).

A label not mentioned for an entry is **negative** (the usual closed-world
multi-label convention), unless the entry says ``missing: *``. The vocabulary
is the sorted set of every label named anywhere in the manifest (positive,
negative or missing), unless the caller passes a fixed ``labels`` list.
Other columns or keys are kept, as strings (CSV) or JSON values, in
`ManifestEntry.extra`.

Example CSV::

    path,start,end,labels,missing,split
    clips/a.wav,,,dog;cat=0,,train
    clips/b.flac,1.5,4.0,speech,music,valid
    clips/c.ogg,,,,*,train

Example JSONL::

    {"path": "clips/a.wav", "labels": ["dog", "cat=0"], "split": "train"}
    {"path": "clips/b.flac", "start": 1.5, "end": 4.0, "labels": {"speech": 1, "music": null}, "split": "valid"}
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from edgetag.training.manifest_entry import ManifestEntry, UnsafePathError, resolve_under_root

__all__ = [
    "ManifestError",
    "labels_to_tokens",
    "manifest_kind",
    "parse_entries",
]

#: Most problems a single ManifestError lists before it stops collecting.
_MAX_PROBLEMS = 50


class ManifestError(ValueError):
    """A manifest could not be read; names the file and line of every problem."""

    def __init__(self, source: str, problems: Sequence[tuple[int, str]]):
        self.source = source
        #: (line number, message) pairs; line 0 means the file as a whole.
        self.problems = list(problems)
        lines = [f"{source}:{ln}: {msg}" if ln else f"{source}: {msg}" for ln, msg in self.problems]
        head = f"{len(self.problems)} problem(s) in manifest {source}"
        super().__init__(head + ":\n  " + "\n  ".join(lines))



def _check_label_name(name: str) -> str:
    name = name.strip()
    if not name:
        raise ValueError("empty label name")
    if name == "*" or any(c in name for c in ";=\n\r"):
        raise ValueError(f"label name {name!r} may not be '*' or contain ';', '=' or newlines")
    return name


def _parse_label_tokens(tokens: Iterable[str]) -> tuple[set[str], set[str], set[str]]:
    """Parse ``name``, ``name=1``, ``name=0``, ``name=?`` tokens."""
    pos: set[str] = set()
    neg: set[str] = set()
    mis: set[str] = set()
    for tok in tokens:
        if not isinstance(tok, str):
            raise ValueError(f"label token must be a string, got {tok!r}")
        tok = tok.strip()
        if not tok:
            continue  # tolerate "a;;b" and trailing ';'
        name, sep, value = tok.partition("=")
        name = _check_label_name(name)
        value = value.strip()
        if not sep or value == "1":
            pos.add(name)
        elif value == "0":
            neg.add(name)
        elif value == "?":
            mis.add(name)
        else:
            raise ValueError(f"label token {tok!r}: value must be 1, 0 or ?, got {value!r}")
    return pos, neg, mis


def _parse_labels(value: Any) -> tuple[set[str], set[str], set[str]]:
    if value is None:
        return set(), set(), set()
    if isinstance(value, str):
        return _parse_label_tokens(value.split(";"))
    if isinstance(value, list):
        return _parse_label_tokens(value)
    if isinstance(value, dict):
        pos: set[str] = set()
        neg: set[str] = set()
        mis: set[str] = set()
        for name, v in value.items():
            name = _check_label_name(str(name))
            # bool is an int subclass: accept true/false as 1/0 on purpose.
            if v is None or v == "?":
                mis.add(name)
            elif v in (1, "1") and not isinstance(v, float):
                pos.add(name)
            elif v in (0, "0") and not isinstance(v, float):
                neg.add(name)
            else:
                raise ValueError(f"label {name!r}: value must be 1, 0 or null/'?', got {v!r}")
        return pos, neg, mis
    raise ValueError(f"'labels' must be a list, a string or an object, got {type(value).__name__}")


def _parse_missing(value: Any) -> tuple[set[str], bool]:
    if value is None:
        return set(), False
    if isinstance(value, str):
        items = value.split(";")
    elif isinstance(value, list):
        items = value
    else:
        raise ValueError(f"'missing' must be a list or a string, got {type(value).__name__}")
    names: set[str] = set()
    missing_all = False
    for item in items:
        if not isinstance(item, str):
            raise ValueError(f"'missing' items must be strings, got {item!r}")
        item = item.strip()
        if not item:
            continue
        if item == "*":
            missing_all = True
        else:
            names.add(_check_label_name(item))
    return names, missing_all


def _parse_time(value: Any, key: str) -> float | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        raise ValueError(f"{key} must be a number of seconds, got {value!r}")
    try:
        t = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{key} must be a number of seconds, got {value!r}") from None
    if not math.isfinite(t):
        raise ValueError(f"{key} must be finite, got {value!r}")
    if t < 0:
        raise ValueError(f"{key} must be >= 0, got {t}")
    return t


_KNOWN_KEYS = ("path", "start", "end", "labels", "missing", "split")


def _parse_row(row: Mapping[str, Any], root: Path) -> ManifestEntry:
    """Validate one row (already split into fields); raises ValueError."""
    path = row.get("path")
    if not isinstance(path, str) or not path.strip():
        raise ValueError(f"'path' is required and must be a non-empty string, got {path!r}")
    try:
        resolve_under_root(root, path)
    except UnsafePathError as e:
        raise ValueError(f"refused path: {e}") from None
    split = row.get("split")
    if not isinstance(split, str) or not split.strip():
        raise ValueError(f"'split' is required and must be a non-empty string, got {split!r}")
    start = _parse_time(row.get("start"), "start")
    end = _parse_time(row.get("end"), "end")
    if start is not None and end is not None and end <= start:
        raise ValueError(f"end ({end}) must be greater than start ({start})")
    if "labels" not in row:
        raise ValueError("'labels' is required (it may be empty)")
    pos, neg, mis = _parse_labels(row.get("labels"))
    more_missing, missing_all = _parse_missing(row.get("missing"))
    mis |= more_missing
    for a, b, what in ((pos, neg, "positive and negative"), (pos, mis, "positive and missing"),
                       (neg, mis, "negative and missing")):
        both = a & b
        if both:
            raise ValueError(f"label(s) {sorted(both)} are both {what}")
    extra = {k: v for k, v in row.items() if k not in _KNOWN_KEYS}
    return ManifestEntry(
        path=path.strip(),
        split=split.strip(),
        start=start,
        end=end,
        positives=frozenset(pos),
        negatives=frozenset(neg),
        missing=frozenset(mis),
        missing_all=missing_all,
        extra=extra,
    )


def _iter_csv_rows(text: str) -> Iterator[tuple[int, dict[str, Any] | Exception]]:
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        return
    except csv.Error as e:
        yield 1, ValueError(f"unreadable CSV header: {e}")
        return
    header = [h.strip() for h in header]
    dupes = sorted(h for h, c in Counter(header).items() if c > 1)
    if dupes:
        yield 1, ValueError(f"duplicate columns in header: {dupes}")
        return
    required = {"path", "labels", "split"} - set(header)
    if required:
        yield 1, ValueError(f"header lacks required column(s) {sorted(required)}; got {header}")
        return
    last = reader.line_num
    while True:
        start_line = last + 1
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            yield start_line, ValueError(f"malformed CSV: {e}")
            return
        last = reader.line_num
        if not fields or all(not f.strip() for f in fields):
            continue  # blank line
        if fields[0].lstrip().startswith("#"):
            continue  # comment line
        if len(fields) != len(header):
            yield start_line, ValueError(f"expected {len(header)} fields ({','.join(header)}), got {len(fields)}")
            continue
        yield start_line, dict(zip(header, fields, strict=True))


def _iter_jsonl_rows(text: str) -> Iterator[tuple[int, dict[str, Any] | Exception]]:
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            yield lineno, ValueError(f"invalid JSON: {e.msg} (column {e.colno})")
            continue
        if not isinstance(obj, dict):
            yield lineno, ValueError(f"each line must be a JSON object, got {type(obj).__name__}")
            continue
        yield lineno, obj


def manifest_kind(path: Path) -> str:
    """``"csv"`` or ``"jsonl"``, from the file suffix."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".jsonl", ".json", ".ndjson"):
        return "jsonl"
    raise ValueError(f"cannot tell the manifest format of {path}: use a .csv or .jsonl file name")


def parse_entries(
    text: str, kind: str, root: Path, source: str, fixed: Sequence[str] | None = None
) -> list[ManifestEntry]:
    """Every row of a manifest's ``text`` (``kind`` from `manifest_kind`) as a validated entry.

    Paths are checked against ``root``; ``fixed``, a fixed vocabulary, makes every other label a
    problem. Raises `ManifestError` naming ``source`` and listing every malformed row with its
    line number (up to 50).
    """
    rows = _iter_csv_rows(text) if kind == "csv" else _iter_jsonl_rows(text)
    entries: list[ManifestEntry] = []
    problems: list[tuple[int, str]] = []
    for lineno, row in rows:
        if len(problems) >= _MAX_PROBLEMS:
            problems.append((lineno, "... stopped after this many problems"))
            break
        if isinstance(row, Exception):
            problems.append((lineno, str(row)))
            continue
        try:
            entry = _parse_row(row, root)
        except ValueError as e:
            problems.append((lineno, str(e)))
            continue
        if fixed is not None:
            unknown = entry.mentioned_labels - set(fixed)
            if unknown:
                problems.append((lineno, f"label(s) {sorted(unknown)} not in the given vocabulary"))
                continue
        entries.append(dataclasses.replace(entry, line=lineno))
    if problems:
        raise ManifestError(source, problems)
    return entries


def labels_to_tokens(entry: ManifestEntry) -> list[str]:
    """The entry's labels as manifest tokens: positives, then ``name=0`` and ``name=?``."""
    return (
        sorted(entry.positives)
        + [f"{n}=0" for n in sorted(entry.negatives)]
        + [f"{n}=?" for n in sorted(entry.missing)]
    )
