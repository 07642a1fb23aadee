"""One manifest row and where its audio may live: `ManifestEntry` (a segment, its split, and each
label positive, negative or missing) and `resolve_under_root`, which refuses paths that could read
outside the manifest's root (`UnsafePathError`).

The file format is in `edgetag.training.manifest_format`; a loaded manifest, its label matrices
and its audio are in `edgetag.training.data`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, Literal

__all__ = [
    "ManifestEntry",
    "UnsafePathError",
    "resolve_under_root",
]

LabelState = Literal[0, 1] | None


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
