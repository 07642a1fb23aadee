"""Data manifests, audio loading and label matrices for training.

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

Audio
=====

`load_audio` (it lives in `edgetag.runtime.audio`, which the runtime uses too,
and is re-exported here) decodes with libsndfile (through soundfile: WAV, FLAC, Ogg
Vorbis, Ogg Opus and MP3 with libsndfile >= 1.1), reads only the requested
segment (seeking, plus a few milliseconds of context on each side so that
the resampler's filter sees real signal rather than zeros at the edges),
averages the channels to mono and resamples with soxr at quality ``"HQ"``
(20-bit precision, a steep linear-phase filter; ``"VHQ"`` can be asked for).
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import logging
import math
import os
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, Literal

import numpy as np

from edgetag.runtime.atomic import atomic_write
from edgetag.runtime.audio import (
    DEFAULT_RESAMPLE_QUALITY,
    AudioError,
    AudioInfo,
    AudioNotFoundError,
    AudioReadError,
    NonFiniteAudioError,
    SegmentRangeError,
    audio_info,
    load_audio,
)

log = logging.getLogger(__name__)

__all__ = [
    "AudioError",
    "AudioInfo",
    "AudioNotFoundError",
    "AudioReadError",
    "Manifest",
    "ManifestEntry",
    "ManifestError",
    "NonFiniteAudioError",
    "SegmentRangeError",
    "SkipReport",
    "UnsafePathError",
    "audio_info",
    "content_hash",
    "iter_audio",
    "label_matrix",
    "load_audio",
    "load_manifest",
    "resolve_under_root",
    "write_manifest",
]

#: Most problems a single ManifestError lists before it stops collecting.
_MAX_PROBLEMS = 50

LabelState = Literal[0, 1] | None

# --------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------


class ManifestError(ValueError):
    """A manifest could not be read; names the file and line of every problem."""

    def __init__(self, source: str, problems: Sequence[tuple[int, str]]):
        self.source = source
        #: (line number, message) pairs; line 0 means the file as a whole.
        self.problems = list(problems)
        lines = [f"{source}:{ln}: {msg}" if ln else f"{source}: {msg}" for ln, msg in self.problems]
        head = f"{len(self.problems)} problem(s) in manifest {source}"
        super().__init__(head + ":\n  " + "\n  ".join(lines))


class UnsafePathError(ValueError):
    """A manifest path is absolute, uses ``..`` or resolves outside the root."""


# --------------------------------------------------------------------------
# Paths
# --------------------------------------------------------------------------


def _is_within(path: str, root: str) -> bool:
    return path == root or os.path.commonpath([path, root]) == root


def resolve_under_root(root: str | os.PathLike[str], rel: str) -> Path:
    """Return ``root / rel``, refusing paths that could read outside ``root``.

    Refused: empty paths, absolute paths (POSIX or Windows style), any ``..``
    component (with ``/`` or ``\\`` as separator), NUL bytes, and paths whose
    symlinks resolve outside the root. The returned path is not resolved
    (symlinks that stay inside the root are fine), and need not exist.

    Raises:
        UnsafePathError: with the reason.
    """
    if not isinstance(rel, str) or not rel.strip():
        raise UnsafePathError("empty path")
    if "\x00" in rel:
        raise UnsafePathError(f"path {rel!r} contains a NUL byte")
    if PurePosixPath(rel).is_absolute() or PureWindowsPath(rel).anchor:
        raise UnsafePathError(f"path {rel!r} is absolute; manifest paths must be relative to the root")
    # Split on both separators so a Windows-style "..\\x" is refused too.
    if ".." in rel.replace("\\", "/").split("/"):
        raise UnsafePathError(f"path {rel!r} contains '..'; manifest paths must stay inside the root")
    root_real = os.path.realpath(root)
    candidate = Path(root) / rel
    real = os.path.realpath(candidate)
    if not _is_within(real, root_real):
        raise UnsafePathError(
            f"path {rel!r} resolves to {real}, outside the root {root_real} (through a symlink)"
        )
    return candidate


# --------------------------------------------------------------------------
# Manifest
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class ManifestEntry:
    """One row of a manifest: an audio segment, its labels and its split."""

    path: str
    """Path relative to the manifest root, as written in the manifest."""
    split: str
    start: float | None = None
    """Segment start in seconds (None: start of file)."""
    end: float | None = None
    """Segment end in seconds, exclusive (None: end of file)."""
    positives: frozenset[str] = frozenset()
    negatives: frozenset[str] = frozenset()
    """Labels stated negative explicitly (``name=0``)."""
    missing: frozenset[str] = frozenset()
    """Labels whose value is unknown for this entry."""
    missing_all: bool = False
    """True when ``missing: *``: every label not stated is unknown."""
    line: int = 0
    """Line in the manifest file where the row starts (0 if built in code)."""
    extra: Mapping[str, Any] = field(default_factory=dict)
    """Other columns or keys of the row."""

    def label_state(self, label: str) -> LabelState:
        """1 (positive), 0 (negative) or None (missing) for ``label``."""
        if label in self.positives:
            return 1
        if label in self.negatives:
            return 0
        if label in self.missing or self.missing_all:
            return None
        return 0

    @property
    def mentioned_labels(self) -> frozenset[str]:
        """Every label this entry names, whatever its state."""
        return self.positives | self.negatives | self.missing


@dataclass
class Manifest:
    """A loaded manifest: entries, label vocabulary and the root they live under."""

    entries: list[ManifestEntry]
    labels: tuple[str, ...]
    """The label vocabulary, in column order for `label_matrix`."""
    root: Path
    """Directory the entry paths are relative to."""
    source: Path | None = None
    """The manifest file, when loaded from one."""

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self) -> Iterator[ManifestEntry]:
        return iter(self.entries)

    def __getitem__(self, i: int) -> ManifestEntry:
        return self.entries[i]

    def splits(self) -> dict[str, int]:
        """Number of entries per split."""
        return dict(Counter(e.split for e in self.entries))

    def select(self, split: str | Iterable[str]) -> Manifest:
        """The entries of one split (or several), keeping the full vocabulary.

        Keeping the vocabulary means label matrices of different splits have
        the same columns.
        """
        wanted = {split} if isinstance(split, str) else set(split)
        return dataclasses.replace(self, entries=[e for e in self.entries if e.split in wanted])

    def resolve(self, entry: ManifestEntry) -> Path:
        """``root / entry.path``, re-checked for escapes (see `resolve_under_root`).

        Checked again at read time because a symlink may have changed since
        the manifest was loaded.
        """
        return resolve_under_root(self.root, entry.path)

    def label_matrix(self) -> tuple[np.ndarray, np.ndarray]:
        """``(targets, mask)`` for all entries; see `label_matrix`."""
        return label_matrix(self.entries, self.labels)


def label_matrix(
    entries: Sequence[ManifestEntry], labels: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Targets and mask for masked multi-label losses.

    Returns:
        ``targets``: float32 ``[n, n_labels]``, 1 for positive, 0 otherwise.
        ``mask``: float32 ``[n, n_labels]``, 0 where the label is missing for
        that entry (its target is then 0 but must not count), 1 elsewhere.
        Use e.g. ``(bce(logits, targets) * mask).sum() / mask.sum()``.
    """
    index = {name: j for j, name in enumerate(labels)}
    if len(index) != len(labels):
        raise ValueError("label vocabulary has duplicates")
    n = len(entries)
    targets = np.zeros((n, len(labels)), dtype=np.float32)
    mask = np.ones((n, len(labels)), dtype=np.float32)
    for i, e in enumerate(entries):
        unknown = e.mentioned_labels - index.keys()
        if unknown:
            raise ValueError(
                f"entry {e.path!r} (line {e.line}) has labels not in the vocabulary: {sorted(unknown)}"
            )
        if e.missing_all:
            mask[i, :] = 0.0
            for name in e.positives | e.negatives:
                mask[i, index[name]] = 1.0
        for name in e.missing:
            mask[i, index[name]] = 0.0
        for name in e.positives:
            targets[i, index[name]] = 1.0
    return targets, mask


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


def _manifest_kind(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".jsonl", ".json", ".ndjson"):
        return "jsonl"
    raise ValueError(f"cannot tell the manifest format of {path}: use a .csv or .jsonl file name")


def load_manifest(
    path: str | os.PathLike[str],
    root: str | os.PathLike[str] | None = None,
    *,
    labels: Sequence[str] | None = None,
) -> Manifest:
    """Read a CSV or JSONL manifest (format chosen by the file suffix).

    Args:
        path: The manifest file.
        root: Directory the entry paths are relative to; by default the
            manifest's own directory.
        labels: A fixed vocabulary (e.g. a model's label list). Labels outside
            it are errors. By default the sorted set of labels in the file.

    Returns:
        The `Manifest`. Files are not opened here: a missing or corrupt audio
        file is found (and counted) by `iter_audio`.

    Raises:
        ManifestError: listing every malformed row with its line number
            (up to 50), including paths that escape the root.
        FileNotFoundError: the manifest or the root does not exist.
    """
    path = Path(path)
    kind = _manifest_kind(path)
    root_path = Path(root) if root is not None else path.parent
    if not root_path.is_dir():
        raise FileNotFoundError(f"manifest root {root_path} is not a directory")
    try:
        text = path.read_text(encoding="utf-8-sig")  # tolerate a BOM from spreadsheets
    except UnicodeDecodeError as e:
        raise ManifestError(str(path), [(0, f"not UTF-8 text: {e}")]) from None
    rows = _iter_csv_rows(text) if kind == "csv" else _iter_jsonl_rows(text)
    fixed = None if labels is None else list(labels)
    if fixed is not None and len(set(fixed)) != len(fixed):
        raise ValueError("the labels argument has duplicates")

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
            entry = _parse_row(row, root_path)
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
        raise ManifestError(str(path), problems)
    vocab = tuple(fixed) if fixed is not None else tuple(sorted(set().union(*(e.mentioned_labels for e in entries))))
    return Manifest(entries=entries, labels=vocab, root=root_path, source=path)


def _labels_to_tokens(entry: ManifestEntry) -> list[str]:
    return (
        sorted(entry.positives)
        + [f"{n}=0" for n in sorted(entry.negatives)]
        + [f"{n}=?" for n in sorted(entry.missing)]
    )


def write_manifest(
    path: str | os.PathLike[str],
    entries: Iterable[ManifestEntry],
    *,
    extra_columns: Sequence[str] = (),
) -> Path:
    """Write entries as CSV or JSONL (by suffix), readable by `load_manifest`.

    Missing labels are written as ``name=?`` tokens and ``missing: *`` as the
    ``missing`` field. ``extra_columns`` picks which `ManifestEntry.extra`
    keys to write (CSV needs a fixed header; JSONL writes those keys too).
    The file is written to a temporary name and renamed, so a reader never
    sees half a manifest.
    """
    path = Path(path)
    kind = _manifest_kind(path)
    f = io.StringIO(newline="")
    if kind == "csv":
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["path", "start", "end", "labels", "missing", "split", *extra_columns])
        for e in entries:
            w.writerow([
                e.path,
                "" if e.start is None else repr(e.start),
                "" if e.end is None else repr(e.end),
                ";".join(_labels_to_tokens(e)),
                "*" if e.missing_all else "",
                e.split,
                *(e.extra.get(c, "") for c in extra_columns),
            ])
    else:
        for e in entries:
            obj: dict[str, Any] = {"path": e.path}
            if e.start is not None:
                obj["start"] = e.start
            if e.end is not None:
                obj["end"] = e.end
            obj["labels"] = _labels_to_tokens(e)
            if e.missing_all:
                obj["missing"] = "*"
            obj["split"] = e.split
            for c in extra_columns:
                if c in e.extra:
                    obj[c] = e.extra[c]
            f.write(json.dumps(obj, ensure_ascii=False) + "\n")
    return atomic_write(path, lambda handle: handle.write(f.getvalue().encode("utf-8")))


def content_hash(
    audio: np.ndarray,
    sample_rate: int,
    start: float | None = None,
    end: float | None = None,
) -> str:
    """sha256 (hex) of decoded audio, for keying caches of teacher outputs.

    Covers the float32 little-endian sample bytes, the number of samples, the
    sample rate and the segment bounds as given (so two segments that happen
    to decode to the same samples still get different keys, and a cache keyed
    by it is invalidated when the decoder, resampler or file changes). It
    does not cover the file path: the same audio under two names shares an
    entry.
    """
    a = np.ascontiguousarray(audio, dtype="<f4")
    if a.ndim != 1:
        raise ValueError(f"content_hash expects mono audio [n], got shape {a.shape}")

    def fmt(t: float | None) -> str:
        return "none" if t is None else float(t).hex()  # exact, no rounding ambiguity

    h = hashlib.sha256()
    h.update(f"edgetag-audio-v1|sr={int(sample_rate)}|start={fmt(start)}|end={fmt(end)}|n={a.size}|".encode())
    h.update(a.tobytes())
    return h.hexdigest()


# --------------------------------------------------------------------------
# Iterating over a manifest without dying on one bad file
# --------------------------------------------------------------------------


@dataclass
class SkipReport:
    """Counts of entries read and skipped, grouped by reason."""

    n_ok: int = 0
    by_reason: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)
    """Up to ``max_examples`` messages per reason."""
    max_examples: int = 5

    @property
    def n_skipped(self) -> int:
        return sum(self.by_reason.values())

    def add_skip(self, reason: str, message: str) -> None:
        self.by_reason[reason] += 1
        ex = self.examples.setdefault(reason, [])
        if len(ex) < self.max_examples:
            ex.append(message)

    def summary(self) -> str:
        """One line of totals, then one line per reason with an example."""
        total = self.n_ok + self.n_skipped
        lines = [f"read {self.n_ok} of {total} entries, skipped {self.n_skipped}"]
        for reason, n in self.by_reason.most_common():
            lines.append(f"  {reason}: {n} (e.g. {self.examples[reason][0]})")
        return "\n".join(lines)


def _skip_reason(err: Exception) -> str:
    if isinstance(err, AudioError):
        return err.reason
    if isinstance(err, UnsafePathError):
        return "path escapes root"
    if isinstance(err, FileNotFoundError):
        return "missing file"
    if isinstance(err, PermissionError):
        return "permission denied"
    return "unreadable"


def iter_audio(
    manifest: Manifest,
    sample_rate: int,
    *,
    split: str | None = None,
    report: SkipReport | None = None,
    quality: str = DEFAULT_RESAMPLE_QUALITY,
    log_summary: bool = True,
) -> Iterator[tuple[ManifestEntry, np.ndarray]]:
    """Yield ``(entry, audio)`` for each readable entry, skipping bad ones.

    A file that is missing, corrupt, has NaN/Inf samples, a segment outside
    it, or a path escaping the root is logged (warning), counted in
    ``report`` under its reason and skipped: a long run must not die on one
    bad file. Pass your own `SkipReport` to read the counts afterwards; the
    summary is logged when the iteration finishes.
    """
    report = report if report is not None else SkipReport()
    entries = manifest.entries if split is None else [e for e in manifest.entries if e.split == split]
    for entry in entries:
        audio = read_entry(manifest, entry, sample_rate, report, quality=quality)
        if audio is not None:
            yield entry, audio
    if log_summary and report.n_skipped:
        log.warning("%s", report.summary())


def read_entry(
    manifest: Manifest,
    entry: ManifestEntry,
    sample_rate: int,
    report: SkipReport,
    *,
    quality: str = DEFAULT_RESAMPLE_QUALITY,
) -> np.ndarray | None:
    """One entry's audio, or None when it cannot be read (logged and counted in ``report``,
    as `iter_audio` does for each entry)."""
    try:
        path = manifest.resolve(entry)
        audio = load_audio(path, sample_rate, entry.start, entry.end, quality=quality)
    except (AudioError, UnsafePathError, OSError) as e:
        reason = _skip_reason(e)
        msg = f"{entry.path} (line {entry.line}): {e}"
        report.add_skip(reason, msg)
        log.warning("skipping %s [%s]", msg, reason)
        return None
    report.n_ok += 1
    return audio
