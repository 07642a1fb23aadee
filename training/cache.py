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
entry, keyed by its own start/end) so memory stays bounded whatever the file length.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import numpy as np
from edgetag.runtime.atomic import DiskFullError, atomic_write_bytes, disk_full, fsync_dir, out_of_space
from edgetag.runtime.audio import AudioError, audio_info, load_audio
from edgetag.training.data import (
    Manifest,
    SkipReport,
    UnsafePathError,
    _skip_reason,
    content_hash,
    load_manifest,
)

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
# Filling the cache
# --------------------------------------------------------------------------


@dataclass
class FillSummary:
    """What `fill_cache` did."""

    entries: int = 0
    """Manifest entries this rank was given."""
    windows_computed: int = 0
    """Teacher x window outputs computed and stored in this run."""
    windows_cached: int = 0
    """Teacher x window outputs found in the cache already (resume)."""
    audio_seconds: float = 0.0
    """Seconds of audio decoded (per sample rate)."""
    skips: SkipReport = field(default_factory=SkipReport)
    seconds: float = 0.0
    cache_entries: int = 0
    cache_bytes: int = 0
    rank: int = 0
    world_size: int = 1
    recomputed_bad: int = 0
    """Entries dropped because their shard failed its checksum."""

    def text(self) -> str:
        lines = [
            (
                f"rank {self.rank}/{self.world_size}: {self.entries} entries, "
                f"{self.skips.n_ok} read, {self.skips.n_skipped} skipped"
            ),
            (
                f"computed {self.windows_computed} teacher outputs, {self.windows_cached} already cached"
                + (f", {self.recomputed_bad} dropped as corrupt" if self.recomputed_bad else "")
            ),
            f"audio {self.audio_seconds:.1f} s decoded in {self.seconds:.1f} s wall",
            f"cache {self.cache_entries} entries, {self.cache_bytes / 1e6:.2f} MB",
        ]
        if self.skips.n_skipped:
            lines.append(self.skips.summary())
        return "\n".join(lines)


def _dist_env() -> tuple[int, int]:
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def _windows(start: float | None, end: float | None, duration: float | None, chunk: float) -> list[tuple[float | None, float | None]]:
    """Cut ``[start, end)`` into windows of ``chunk`` seconds; the last one keeps the open end."""
    s = 0.0 if start is None else float(start)
    e = end if end is not None else duration
    if e is None or e - s <= chunk:
        return [(start, end)]
    out: list[tuple[float | None, float | None]] = []
    n = math.ceil((e - s) / chunk - 1e-9)
    for i in range(n):
        ws = s + i * chunk
        we = s + (i + 1) * chunk
        last = i == n - 1
        out.append((start if i == 0 else ws, end if last else we))
    # Too short a tail would give a teacher no frames: fold it into the previous window.
    if len(out) > 1 and (e - (s + (n - 1) * chunk)) < 0.25 * chunk:
        out[-2] = (out[-2][0], out[-1][1])
        out.pop()
    return out


def fill_cache(
    teachers: Sequence[Any],
    manifest: Manifest | str | os.PathLike[str],
    cache_dir: str | os.PathLike[str],
    batch_size: int = 8,
    device: str | None = None,
    rank: int | None = None,
    world_size: int | None = None,
    progress: bool = True,
    *,
    root: str | os.PathLike[str] | None = None,
    split: str | None = None,
    chunk_seconds: float = 30.0,
    topk: int | None = None,
    shard_entries: int = 4096,
    shard_bytes: int = 256 << 20,
    merge: bool | None = None,
) -> FillSummary:
    """Run each teacher once over the manifest's segments and store the outputs.

    Args:
        teachers: `Teacher` instances or registered names.
        manifest: a `Manifest` or a manifest path (with ``root``).
        cache_dir: the cache directory (created if needed).
        batch_size: windows per teacher call (only equal-length windows are batched,
            so no padding changes any output).
        device: ``"cpu"``, ``"cuda"`` (``cuda:LOCAL_RANK`` under torchrun) or None
            (CUDA if available).
        rank, world_size: this process takes entries ``i % world_size == rank``.
            None: from the RANK / WORLD_SIZE environment (torchrun), else 0 / 1.
        progress: show a tqdm bar (rate and ETA).
        split: only entries of this split.
        chunk_seconds: long segments are cut into windows of this length.
        topk: store only the top-k scores per frame when a teacher has more labels.
        shard_entries, shard_bytes: when to close a shard.
        merge: merge the index parts at the end (default: when world_size is 1, or
            on rank 0 after a barrier when torch.distributed is running).

    Already-stored keys are skipped (their shards' checksums are checked first), so
    a killed run resumes where its last shard ended. Unreadable files are counted in
    ``summary.skips``, not fatal.
    """
    import torch

    t0 = time.perf_counter()
    env_rank, env_world = _dist_env()
    rank = env_rank if rank is None else int(rank)
    world_size = env_world if world_size is None else int(world_size)
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is outside world_size {world_size}")
    # one writer per part, taken before the teachers load: a second `edgetag teach` on this folder
    # (same rank) would share the part file, and its merge would delete this run's shards
    part_lock = _lock_part(Path(cache_dir), f"r{rank}")
    try:
        distributed = owns_group = False
        if world_size > 1 and "RANK" in os.environ and "WORLD_SIZE" in os.environ:
            import torch.distributed as dist

            if not dist.is_initialized():
                # gloo works on CPU and GPU alike; we only need barriers.
                dist.init_process_group("gloo", rank=rank, world_size=world_size)
                owns_group = True
            distributed = True

        if device is None or device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device == "cuda":
            if not torch.cuda.is_available():
                raise ValueError("--device cuda, but torch sees no CUDA device")
            device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"

        if not isinstance(manifest, Manifest):
            manifest = load_manifest(manifest, root=root)
        from edgetag.training.teachers import get_teacher

        models = [get_teacher(t) if isinstance(t, str) else t for t in teachers]
        for m in models:
            m.eval().to(device)
        info = [(m, m.identity(), config_hash(m, topk)) for m in models]
        rates = sorted({int(m.sample_rate) for m in models})

        entries = [e for e in manifest.entries if split is None or e.split == split]
        mine = [e for i, e in enumerate(entries) if i % world_size == rank]
        summary = FillSummary(entries=len(mine), rank=rank, world_size=world_size)
        cache = TeacherCache(cache_dir, part=f"r{rank}", shard_entries=shard_entries, shard_bytes=shard_bytes)

        # pending[(teacher index, n_samples)] -> list of (key, waveform, meta): equal lengths batch without padding.
        pending: dict[tuple[int, int], list[tuple[str, np.ndarray, dict[str, Any]]]] = {}

        def run_batch(ti: int, items: list[tuple[str, np.ndarray, dict[str, Any]]]) -> None:
            teacher = info[ti][0]
            x = torch.from_numpy(np.stack([w for _, w, _ in items])).to(device)
            with torch.inference_mode():
                out = teacher(x)
            scores = out.scores.float()
            emb = out.embeddings
            for b, (key, _, meta) in enumerate(items):
                arrays: dict[str, np.ndarray] = {}
                s = scores[b]
                if topk is not None and s.shape[-1] > topk:
                    vals, idx = torch.topk(s, topk, dim=-1)
                    arrays["topk_indices"] = idx.to(torch.int32).cpu().numpy()
                    arrays["topk_values"] = vals.cpu().numpy().astype(np.float16)
                else:
                    arrays["scores"] = s.cpu().numpy().astype(np.float16)
                if emb is not None:
                    arrays["embeddings"] = emb[b].float().cpu().numpy().astype(np.float16)
                cache.put(key, arrays, meta)
                summary.windows_computed += 1

        def queue(ti: int, key: str, wave: np.ndarray, meta: dict[str, Any]) -> None:
            group = pending.setdefault((ti, len(wave)), [])
            group.append((key, wave, meta))
            if len(group) >= batch_size:
                run_batch(ti, pending.pop((ti, len(wave))))
            # Bound memory when lengths vary a lot: run whatever is waiting.
            if sum(len(g) for g in pending.values()) > 4 * batch_size:
                drain()

        def drain() -> None:
            for k in list(pending):
                run_batch(k[0], pending.pop(k))

        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(mine), unit="entry", desc=f"teach r{rank}" if world_size > 1 else "teach", dynamic_ncols=True)
        try:
            for entry in mine:
                try:
                    path = manifest.resolve(entry)
                    duration = None
                    if entry.end is None:
                        duration = audio_info(path).duration
                    for ws, we in _windows(entry.start, entry.end, duration, chunk_seconds):
                        for sr in rates:
                            wave = load_audio(path, sr, ws, we)
                            summary.audio_seconds += len(wave) / sr
                            h = content_hash(wave, sr, ws, we)
                            for ti, (m, ident, cfg) in enumerate(info):
                                if int(m.sample_rate) != sr:
                                    continue
                                key = make_key(h, ws, we, ident, cfg)
                                if cache.contains(key):
                                    summary.windows_cached += 1
                                    continue
                                meta = {
                                    "teacher": ident,
                                    "config": cfg,
                                    "path": entry.path,
                                    "start": ws,
                                    "end": we,
                                    "audio_sha256": h,
                                    "frame_rate": float(m.frame_rate),
                                }
                                queue(ti, key, wave, meta)
                except DiskFullError:
                    raise  # the device, not this clip: stop (the cache resumes after space is freed)
                except (AudioError, UnsafePathError, OSError) as e:
                    reason = _skip_reason(e)
                    msg = f"{entry.path} (line {entry.line}): {e}"
                    summary.skips.add_skip(reason, msg)
                    log.warning("skipping %s [%s]", msg, reason)
                else:
                    summary.skips.n_ok += 1
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(new=summary.windows_computed, cached=summary.windows_cached, skipped=summary.skips.n_skipped)
            drain()
            cache.flush()
        finally:
            if bar is not None:
                bar.close()
        summary.recomputed_bad = cache.dropped_entries
        cache.close()

        if merge is None:
            merge = world_size == 1 or distributed
        if distributed:
            import torch.distributed as dist

            dist.barrier()  # every rank's shards and index part are on disk
        if merge and rank == 0:
            merge_indexes(cache_dir)
        if distributed:
            import torch.distributed as dist

            dist.barrier()  # nobody reads the merged index before it exists
        final = TeacherCache(cache_dir, part=f"r{rank}")
        summary.cache_entries = len(final)
        summary.cache_bytes = final.size_bytes()
        summary.seconds = time.perf_counter() - t0
        if owns_group:
            import torch.distributed as dist

            dist.destroy_process_group()
        return summary
    finally:
        part_lock.close()


class CacheBusyError(OSError):
    """Another process is writing the same part of a teacher cache."""


def _lock_part(directory: Path, part: str) -> Any:
    """An exclusive lock on ``directory/.PART.lock`` held by the returned open file; `CacheBusyError` if taken."""
    import fcntl

    directory.mkdir(parents=True, exist_ok=True)
    handle = open(directory / f".{part}.lock", "a+")  # noqa: SIM115 - held open for the run's duration
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise CacheBusyError(
            f"another edgetag teach ({holder}) is writing {directory} as {part}: wait for it to finish, or give "
            "this run another --out folder (two runs writing one folder would delete each other's shards)"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()}")
    handle.flush()
    return handle


def iter_cache(directory: str | os.PathLike[str]) -> Iterator[tuple[str, CachedOutput]]:
    """Every (key, output) of a cache, in key order (shards checked on first use)."""
    cache = TeacherCache(directory, part="read")
    for key in cache:
        out = cache.get(key)
        if out is not None:
            yield key, out
