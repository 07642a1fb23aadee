"""Manifests and their audio for training: a loaded `Manifest` and its label matrices
(`label_matrix`), reading and writing manifest files (`load_manifest`, `write_manifest`), the
entries' audio with bad files skipped and counted (`iter_audio`, `read_entry`, `SkipReport`), and
the content hash that keys caches of teacher outputs (`content_hash`).

A manifest's rows are `edgetag.training.manifest_entry.ManifestEntry`; the file format (CSV or
JSON Lines, three-state labels) is described and parsed in `edgetag.training.manifest_format`.

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
import os
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
from edgetag.training.manifest_entry import ManifestEntry, UnsafePathError, resolve_under_root
from edgetag.training.manifest_format import ManifestError, labels_to_tokens, manifest_kind, parse_entries

log = logging.getLogger(__name__)

__all__ = [
    "AudioError",
    "AudioInfo",
    "AudioNotFoundError",
    "AudioReadError",
    "Manifest",
    "NonFiniteAudioError",
    "SegmentRangeError",
    "SkipReport",
    "audio_info",
    "content_hash",
    "iter_audio",
    "label_matrix",
    "load_audio",
    "load_manifest",
    "write_manifest",
]


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
    kind = manifest_kind(path)
    root_path = Path(root) if root is not None else path.parent
    if not root_path.is_dir():
        raise FileNotFoundError(f"manifest root {root_path} is not a directory")
    try:
        text = path.read_text(encoding="utf-8-sig")  # tolerate a BOM from spreadsheets
    except UnicodeDecodeError as e:
        raise ManifestError(str(path), [(0, f"not UTF-8 text: {e}")]) from None
    fixed = None if labels is None else list(labels)
    if fixed is not None and len(set(fixed)) != len(fixed):
        raise ValueError("the labels argument has duplicates")
    entries = parse_entries(text, kind, root_path, str(path), fixed)
    vocab = tuple(fixed) if fixed is not None else tuple(sorted(set().union(*(e.mentioned_labels for e in entries))))
    return Manifest(entries=entries, labels=vocab, root=root_path, source=path)


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
    kind = manifest_kind(path)
    f = io.StringIO(newline="")
    if kind == "csv":
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["path", "start", "end", "labels", "missing", "split", *extra_columns])
        for e in entries:
            w.writerow([
                e.path,
                "" if e.start is None else repr(e.start),
                "" if e.end is None else repr(e.end),
                ";".join(labels_to_tokens(e)),
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
            obj["labels"] = labels_to_tokens(e)
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


def skip_reason(err: Exception) -> str:
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
        reason = skip_reason(e)
        msg = f"{entry.path} (line {entry.line}): {e}"
        report.add_skip(reason, msg)
        log.warning("skipping %s [%s]", msg, reason)
        return None
    report.n_ok += 1
    return audio
