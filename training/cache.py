"""Teacher-output cache: run each teacher once over a dataset, store its outputs.

Layout of a cache directory::

    DIR/index.json               merged index (after a finished run / `merge_indexes`)
    DIR/index-<part>.json        index part written by one writer (rank) while it runs
    DIR/shards/<part>-<uuid>.npy one shard: a flat uint8 .npy holding many arrays

Keys
    ``sha256(content hash of the decoded segment | start | end | teacher identity |
    teacher config hash)``. The content hash (`edgetag.training.data.content_hash`)
    covers the decoded samples at the teacher's rate and the segment bounds, the
    identity covers the teacher's name and weights, the config hash the settings that
    change its outputs (sample rate, hop, normalisation, top-k ...).

Shards and index
    A shard is written as a whole: arrays are buffered in memory until
    ``shard_entries`` entries or ``shard_bytes`` bytes, or for ``flush_seconds``
    (so a run killed after an hour loses at most that much work), then written to a temporary
    file, fsynced and renamed into place; only then is the writer's index part
    (which records the shard's sha256) atomically replaced. A run killed at any
    point leaves at most an unreferenced shard or temporary file, which is never
    read and is deleted by the next merge. Each shard's sha256 is checked the first
    time it is opened; a mismatch (bit rot, truncation, tampering) logs a warning,
    drops the shard's entries (so `fill_cache` recomputes them) and the shard is
    never read.

Arrays are stored as float16 (scores and embeddings); with ``topk`` set and more
labels than ``topk``, scores are stored as the top-k indices (int32) and values
(float16) per frame instead.

Long segments are cut into windows of ``chunk_seconds`` (each window is one cache
entry, keyed by its own start/end) so memory stays bounded whatever the file length;
`edgetag.training.teach.fill_cache` fills a cache. `CacheWindows` is the one way to find
the windows that tile a manifest segment (the trainer and ``edgetag evaluate`` read
through it), `TeacherCacheLookup` one entry's outputs of one teacher.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import numpy as np
from edgetag.runtime.atomic import atomic_write_bytes, disk_full, fsync_dir, out_of_space

log = logging.getLogger(__name__)

INDEX_VERSION = 1
_ALIGN = 16  # byte alignment of each array inside a shard (so views of any dtype are aligned)
#: Teacher attributes that do not change outputs, left out of the config hash.
_CONFIG_IGNORE = {"training", "batch_size", "weights_path", "name"}


# --------------------------------------------------------------------------
# Keys
# --------------------------------------------------------------------------


def teacher_config(teacher: Any, topk: int | None = None) -> dict[str, Any]:
    """The settings of ``teacher`` that change its outputs, as a JSON-able dict.

    Class-level declarations (rate, frame rate, label count, embedding width) plus
    every public instance attribute of a simple type (e.g. CREPE's ``hop_length`` and
    ``normalization``), minus ones that only affect speed (``batch_size``).
    """
    cfg: dict[str, Any] = {
        "class": type(teacher).__qualname__,
        "sample_rate": int(teacher.sample_rate),
        "frame_rate": float(teacher.frame_rate),
        "score_kind": getattr(teacher, "score_kind", None),
        "task": getattr(teacher, "task", None),
        "n_labels": len(getattr(teacher, "labels", [])),
        "embedding_dim": int(getattr(teacher, "embedding_dim", 0)),
        "topk": topk,
        "storage": "float16",
    }
    for k, v in sorted(vars(teacher).items()):
        if k.startswith("_") or k in _CONFIG_IGNORE:
            continue
        if isinstance(v, (bool, int, float, str)) or v is None:
            cfg[f"attr.{k}"] = v
    return cfg


def config_hash(teacher: Any, topk: int | None = None) -> str:
    """Short sha256 of `teacher_config`."""
    blob = json.dumps(teacher_config(teacher, topk), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def make_key(audio_hash: str, start: float | None, end: float | None, identity: str, cfg_hash: str) -> str:
    """The cache key of one segment's outputs from one teacher configuration."""

    def fmt(t: float | None) -> str:
        return "none" if t is None else float(t).hex()

    blob = f"edgetag-cache-v1|{audio_hash}|{fmt(start)}|{fmt(end)}|{identity}|{cfg_hash}"
    return hashlib.sha256(blob.encode()).hexdigest()


# --------------------------------------------------------------------------
# Small file helpers
# --------------------------------------------------------------------------


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# --------------------------------------------------------------------------
# The cache
# --------------------------------------------------------------------------


@dataclass
class CachedOutput:
    """One cache entry, as read-only views into a memory-mapped shard."""

    scores: np.ndarray | None
    """float16 [T, C], or None when only the top-k was stored."""
    embeddings: np.ndarray | None
    """float16 [T, D], or None."""
    topk_indices: np.ndarray | None = None
    """int32 [T, k] when stored as top-k."""
    topk_values: np.ndarray | None = None
    """float16 [T, k] when stored as top-k."""
    meta: dict[str, Any] = field(default_factory=dict)

    def dense_scores(self, n_labels: int, fill: float = 0.0) -> np.ndarray:
        """Scores as a dense float32 [T, n_labels] (top-k entries scattered into ``fill``)."""
        if self.scores is not None:
            return np.asarray(self.scores, dtype=np.float32)
        assert self.topk_indices is not None and self.topk_values is not None
        out = np.full((self.topk_indices.shape[0], n_labels), fill, np.float32)
        np.put_along_axis(out, self.topk_indices.astype(np.int64), self.topk_values.astype(np.float32), axis=1)
        return out


class TeacherCache:
    """Sharded, checksummed store of teacher outputs.

    ``part`` names this writer (``r0``, ``r1`` ... one per rank): its shards are
    named after it and its index entries go to ``index-<part>.json``, so ranks never
    write the same file. Reading sees the union of ``index.json`` and all parts.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        part: str = "r0",
        shard_entries: int = 4096,
        shard_bytes: int = 256 << 20,
        flush_seconds: float = 120.0,
    ) -> None:
        self.directory = Path(directory)
        self.shard_dir = self.directory / "shards"
        self.shard_dir.mkdir(parents=True, exist_ok=True)
        self.part = part
        self.shard_entries = int(shard_entries)
        self.shard_bytes = int(shard_bytes)
        self.flush_seconds = float(flush_seconds)
        self._pending_since = 0.0
        self._entries: dict[str, dict[str, Any]] = {}
        self._shards: dict[str, dict[str, Any]] = {}
        self._my_shards: set[str] = set()
        self._verified: set[str] = set()
        self._bad: dict[str, str] = {}  # shard name -> why
        self._maps: dict[str, np.ndarray] = {}
        # The shard being filled: list of (key, meta, [(name, array)]).
        self._pending: list[tuple[str, dict[str, Any], list[tuple[str, np.ndarray]]]] = []
        self._pending_bytes = 0
        self.shards_written = 0
        self.dropped_entries = 0
        self._load()

    # -- index ------------------------------------------------------------

    @property
    def _part_path(self) -> Path:
        return self.directory / f"index-{self.part}.json"

    def _index_files(self) -> list[Path]:
        # index.json first, then parts in name order: later files win on a key clash.
        files = [self.directory / "index.json"] if (self.directory / "index.json").exists() else []
        return files + sorted(self.directory.glob("index-*.json"))

    def _load(self) -> None:
        for path in self._index_files():
            try:
                data = json.loads(path.read_text())
                if data.get("version") != INDEX_VERSION:
                    raise ValueError(f"index version {data.get('version')!r}, expected {INDEX_VERSION}")
            except (OSError, ValueError) as e:
                # Index files are replaced atomically, so this is damage from outside: lose its entries.
                log.warning("teacher cache: ignoring unreadable index %s: %s", path, e)
                continue
            mine = path == self._part_path
            for name, meta in data["shards"].items():
                self._shards[name] = meta
                if mine:
                    self._my_shards.add(name)
            for key, meta in data["entries"].items():
                if meta["shard"] in data["shards"]:
                    self._entries[key] = meta

    def _write_part(self) -> None:
        shards = {n: self._shards[n] for n in sorted(self._my_shards) if n not in self._bad}
        entries = {k: v for k, v in self._entries.items() if v["shard"] in shards}
        blob = json.dumps({"version": INDEX_VERSION, "shards": shards, "entries": entries}, sort_keys=True)
        atomic_write_bytes(self._part_path, blob.encode())

    # -- reading ----------------------------------------------------------

    def __len__(self) -> int:
        return len(self._entries)

    def keys(self) -> list[str]:
        """Stored keys, sorted."""
        return sorted(self._entries)

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def entries(self, teacher: str | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
        """(key, metadata) of every stored entry, sorted by key; ``teacher``: only identities of that name.

        The one way to read the index (`edgetag.training.teacher_tracks` and
        `edgetag.training.evaluate` look windows up through it): ``teacher`` is a
        registry name (matches ``name@...``) or a full identity. The metadata is
        the index's own dict: read it, don't change it.
        """
        for key in sorted(self._entries):
            meta = self._entries[key]
            ident = str(meta.get("teacher", ""))
            if teacher is None or ident == teacher or ident.split("@", 1)[0] == teacher:
                yield key, meta

    def _drop_shard(self, name: str, why: str) -> None:
        n = sum(1 for v in self._entries.values() if v["shard"] == name)
        if n:
            log.warning("teacher cache: shard %s is %s; dropping its %d entries (they will be recomputed)", name, why, n)
        else:  # already superseded (e.g. seen again by a merge after the recompute)
            log.info("teacher cache: superseded shard %s is %s; setting it aside", name, why)
        self._bad[name] = why
        self.dropped_entries += n
        self._entries = {k: v for k, v in self._entries.items() if v["shard"] != name}
        self._maps.pop(name, None)

    def _open(self, name: str) -> np.ndarray | None:
        """The shard as a uint8 memmap, after checking its sha256 once; None if it is bad."""
        if name in self._bad:
            return None
        if name in self._maps:
            return self._maps[name]
        path = self.shard_dir / name
        meta = self._shards.get(name)
        if meta is None:
            self._drop_shard(name, "not in any index")
            return None
        if name not in self._verified:
            if not path.is_file():
                self._drop_shard(name, "missing")
                return None
            digest = _sha256_file(path)
            if digest != meta["sha256"]:
                self._drop_shard(name, f"corrupt (sha256 {digest[:12]}..., index says {meta['sha256'][:12]}...)")
                return None
            self._verified.add(name)
        try:
            mm = np.load(path, mmap_mode="r")
        except (OSError, ValueError) as e:
            self._drop_shard(name, f"unreadable ({e})")
            return None
        self._maps[name] = mm
        return mm

    def verify(self, keys: Iterable[str] | None = None) -> int:
        """Check the shards holding ``keys`` (default: all); returns entries dropped as bad."""
        before = len(self._entries)
        names = {self._entries[k]["shard"] for k in (self._entries if keys is None else keys) if k in self._entries}
        for name in sorted(names):
            self._open(name)
        return before - len(self._entries)

    def contains(self, key: str, verify: bool = True) -> bool:
        """Whether ``key`` is stored (and, with ``verify``, its shard passes its checksum)."""
        if any(k == key for k, _, _ in self._pending):
            return True
        meta = self._entries.get(key)
        if meta is None:
            return False
        return not verify or self._open(meta["shard"]) is not None

    __contains__ = contains

    def get(self, key: str) -> CachedOutput | None:
        """The stored outputs of ``key`` (memory-mapped, read-only), or None."""
        meta = self._entries.get(key)
        if meta is None:
            return None
        mm = self._open(meta["shard"])
        if mm is None:
            return None
        arrays: dict[str, np.ndarray] = {}
        for name, (offset, dtype, shape) in meta["arrays"].items():
            dt = np.dtype(dtype)
            nbytes = int(np.prod(shape)) * dt.itemsize
            arrays[name] = mm[offset : offset + nbytes].view(dt).reshape(shape)
        return CachedOutput(
            scores=arrays.get("scores"),
            embeddings=arrays.get("embeddings"),
            topk_indices=arrays.get("topk_indices"),
            topk_values=arrays.get("topk_values"),
            meta={k: v for k, v in meta.items() if k != "arrays"},
        )

    def size_bytes(self) -> int:
        """Bytes of the referenced shards."""
        return sum(int(m["bytes"]) for n, m in self._shards.items() if n not in self._bad)

    # -- writing ----------------------------------------------------------

    def put(self, key: str, arrays: dict[str, np.ndarray], meta: dict[str, Any] | None = None) -> None:
        """Queue one entry; it becomes durable when its shard is flushed."""
        items = [(n, np.ascontiguousarray(a)) for n, a in arrays.items() if a is not None]
        if not self._pending:
            self._pending_since = time.monotonic()
        self._pending.append((key, dict(meta or {}), items))
        self._pending_bytes += sum(a.nbytes + _ALIGN for _, a in items)
        if (len(self._pending) >= self.shard_entries or self._pending_bytes >= self.shard_bytes
                or time.monotonic() - self._pending_since >= self.flush_seconds):
            self.flush()

    def flush(self) -> None:
        """Write the pending entries as one shard, then record it in this writer's index part."""
        if not self._pending:
            return
        chunks: list[bytes] = []
        offset = 0
        new_entries: dict[str, dict[str, Any]] = {}
        name = f"{self.part}-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:12]}.npy"
        for key, meta, items in self._pending:
            layout: dict[str, list[Any]] = {}
            for arr_name, a in items:
                layout[arr_name] = [offset, a.dtype.str, list(a.shape)]
                raw = a.tobytes()
                pad = (-len(raw)) % _ALIGN
                chunks.append(raw + b"\0" * pad)
                offset += len(raw) + pad
            new_entries[key] = {**meta, "shard": name, "arrays": layout}
        flat = np.frombuffer(b"".join(chunks), dtype=np.uint8)
        del chunks
        path = self.shard_dir / name
        tmp = self.shard_dir / f".tmp-{name}"
        # Write, fsync, rename: the final name only ever holds a complete shard.
        try:
            with open(tmp, "wb") as f:
                np.lib.format.write_array(f, flat, allow_pickle=False)
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:
            full = out_of_space(exc, self.shard_dir)
            tmp.unlink(missing_ok=True)
            if full:  # stops the run: no clip is to blame
                raise disk_full(self.shard_dir, f"a {flat.nbytes / 1e6:.1f} MB teacher-cache shard",
                                "free some space and run `edgetag teach` again (it resumes: windows already cached "
                                "are not computed again)") from exc
            raise
        digest = _sha256_file(tmp)
        size = tmp.stat().st_size
        os.replace(tmp, path)
        fsync_dir(self.shard_dir)
        self._shards[name] = {"sha256": digest, "bytes": size, "entries": len(new_entries)}
        self._my_shards.add(name)
        self._verified.add(name)
        self._entries.update(new_entries)
        # The shard is referenced only once this atomic index write lands.
        self._write_part()
        self._pending.clear()
        self._pending_bytes = 0
        self.shards_written += 1

    def close(self) -> None:
        self.flush()
        self._maps.clear()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            self.close()


def merge_indexes(directory: str | os.PathLike[str], cleanup: bool = True) -> dict[str, int]:
    """Merge ``index.json`` and every ``index-*.json`` part into one ``index.json``.

    Every shard is checked against its sha256 (bad ones are left out and renamed
    ``*.corrupt``). With ``cleanup``, the parts, temporary files and shards no index
    references (leftovers of killed runs) are deleted. Run it only when no writer
    is active (rank 0 after a barrier). Returns counts.
    """
    directory = Path(directory)
    cache = TeacherCache(directory, part="merge")
    for name in sorted(cache._shards):  # all shards, also ones whose keys a newer part overrides
        cache._open(name)
    good = {n: m for n, m in cache._shards.items() if n not in cache._bad}
    entries = {k: v for k, v in cache._entries.items() if v["shard"] in good}
    used = {v["shard"] for v in entries.values()}
    shards = {n: m for n, m in good.items() if n in used}
    blob = json.dumps({"version": INDEX_VERSION, "shards": shards, "entries": entries}, sort_keys=True)
    atomic_write_bytes(directory / "index.json", blob.encode())
    removed = 0
    if cleanup:
        for part in directory.glob("index-*.json"):
            part.unlink(missing_ok=True)
        for name in cache._bad:
            p = cache.shard_dir / name
            if p.exists():
                os.replace(p, p.with_name(p.name + ".corrupt"))
        for p in cache.shard_dir.iterdir():
            if p.name.startswith(".tmp-") or (p.suffix == ".npy" and p.name not in shards):
                p.unlink(missing_ok=True)
                removed += 1
        for p in directory.glob(".tmp-*"):
            p.unlink(missing_ok=True)
        fsync_dir(directory)
    return {"entries": len(entries), "shards": len(shards), "bad_shards": len(cache._bad), "removed_files": removed}


# --------------------------------------------------------------------------
# Looking windows up
# --------------------------------------------------------------------------


def _bound(x: float | None) -> float | None:
    """A segment bound as a lookup key: 6 decimals, so a manifest's float and the stored one agree."""
    return None if x is None else round(float(x), 6)


class CacheWindows:
    """The one lookup of cached windows: which stored windows tile a manifest segment.

    `edgetag.training.teach.fill_cache` cuts long segments into windows of a length the cache
    does not record, so a segment's windows are found as a chain from its start: the next
    window starts where the last one ended; a window ending at the segment's end closes the
    chain, otherwise the one reaching furthest continues it. A window matches by the content
    hash the cache recorded for this path and these bounds, or, given ``window_hash``, by the
    hash of the audio decoded now: the check that the cache was computed from this very audio,
    which also finds audio that another file holds bit for bit (the cache stores it once, under
    one of the paths).
    """

    def __init__(self, cache: TeacherCache, teacher: str | None = None) -> None:
        self.cache = cache
        # (identity, start key) -> {end key: stored end}
        self._ends: dict[tuple[str, float | None], dict[float | None, float | None]] = {}
        self._by_hash: dict[tuple[str, str, float | None, float | None], tuple[str, dict[str, Any]]] = {}
        self._recorded: dict[tuple[str, str, float | None, float | None], str] = {}
        for key, meta in cache.entries(teacher):
            ident, start, end = str(meta["teacher"]), _bound(meta["start"]), _bound(meta["end"])
            self._ends.setdefault((ident, start), {})[end] = meta["end"]
            self._by_hash[(ident, meta["audio_sha256"], start, end)] = (key, meta)
            self._recorded[(ident, str(meta["path"]), start, end)] = meta["audio_sha256"]
        self.identities = {ident for ident, _ in self._ends}

    def chain(
        self,
        identity: str,
        path: str,
        start: float | None,
        end: float | None,
        window_hash: Callable[[float | None, float | None], Iterable[str]] | None = None,
    ) -> list[tuple[str, dict[str, Any]]] | None:
        """(key, metadata) of the windows tiling ``[start, end)`` of ``path`` in order; None if one is missing.

        ``window_hash(start, end)``: the content hashes of that window of the audio (one per
        candidate sample rate); without it, the hash the cache recorded for ``path``.
        """
        out: list[tuple[str, dict[str, Any]]] = []
        cur, cur_key, last = start, _bound(start), _bound(end)
        for _ in range(len(self._by_hash) + 1):
            ends = self._ends.get((identity, cur_key), {})
            fitting = [e for e in ends if last is None or (e is not None and e <= last + 1e-6)]
            # the window that closes the segment first, then the others from the furthest
            order = sorted(fitting, key=lambda e: (e != last, -(float("inf") if e is None else e)))
            hit = None
            for e in order:
                if window_hash is None:
                    hashes: Iterable[str] = [h for h in [self._recorded.get((identity, str(path), cur_key, e))] if h]
                else:
                    hashes = window_hash(cur, ends[e])
                for h in hashes:
                    hit = self._by_hash.get((identity, h, cur_key, e))
                    if hit is not None:
                        break
                if hit is not None:
                    break
            if hit is None:
                return None
            out.append(hit)
            stop = hit[1]["end"]
            if _bound(stop) == last:
                return out
            if stop is None:
                return None
            cur, cur_key = stop, _bound(stop)
        return None


@dataclass
class TeacherScores:
    """One manifest entry's outputs of one teacher, gathered from its cache windows."""

    scores: np.ndarray
    """float32 [T, C], the windows' frames concatenated."""
    times: np.ndarray
    """float64 [T], seconds from the entry's start (frame 0 of each window at the window's start + offset)."""
    frame_rate: float


class TeacherCacheLookup:
    """Finds a manifest entry's cached outputs of one teacher without loading the teacher.

    ``teacher`` is a registry name (``musicnn-mtt``: matches identities
    ``musicnn-mtt@...``) or a full identity (``name@hash``). When the cache
    holds outputs of several identities or configurations for that name, pass
    the identity; several configurations of one identity are refused.
    """

    def __init__(self, directory: str | os.PathLike[str], teacher: str) -> None:
        self.cache = TeacherCache(directory, part="read")
        self.teacher = teacher
        versions = {(str(m.get("teacher", "")), str(m.get("config", ""))) for _, m in self.cache.entries(teacher)}
        if not versions:
            raise ValueError(f"teacher cache {directory} has no outputs of teacher {teacher!r}")
        if len(versions) > 1:
            found = ", ".join(f"{i} (config {c[:12]})" for i, c in sorted(versions))
            raise ValueError(f"teacher cache {directory} holds several versions of {teacher!r}: {found}; name one identity")
        ((self.identity, self.config),) = versions
        self.name = self.identity.split("@", 1)[0]
        self.windows = CacheWindows(self.cache, self.identity)

    def get(self, entry: Any, n_labels: int) -> TeacherScores | None:
        """The entry's outputs: windows chained from ``entry.start`` to ``entry.end``; None if incomplete."""
        chain = self.windows.chain(self.identity, entry.path, entry.start, entry.end)
        if chain is None:
            return None
        origin = 0.0 if entry.start is None else float(entry.start)
        parts: list[tuple[float, np.ndarray]] = []
        rate = None
        for key, meta in chain:
            out = self.cache.get(key)
            if out is None:
                return None
            rate = float(out.meta.get("frame_rate", 0.0)) or rate
            start = _bound(meta["start"])
            parts.append(((0.0 if start is None else start) - origin, out.dense_scores(n_labels)))
        if not parts or not rate:
            return None
        scores = np.concatenate([p for _, p in parts]).astype(np.float32)
        times = np.concatenate([t0 + np.arange(len(p)) / rate for t0, p in parts])
        return TeacherScores(scores=scores, times=times, frame_rate=rate)


def iter_cache(directory: str | os.PathLike[str]) -> Iterator[tuple[str, CachedOutput]]:
    """Every (key, output) of a cache, in key order (shards checked on first use)."""
    cache = TeacherCache(directory, part="read")
    for key in cache:
        out = cache.get(key)
        if out is not None:
            yield key, out
