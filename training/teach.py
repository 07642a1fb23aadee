"""Filling the teacher-output cache (`edgetag teach`): run each teacher once over a manifest.

`fill_cache` decodes every manifest segment at each teacher's sample rate, cuts
long segments into windows of ``chunk_seconds`` (one cache entry each, so memory
stays bounded whatever the file length), skips windows already stored (a killed
run resumes where it stopped) and writes through `edgetag.training.cache.TeacherCache`,
which owns the layout, the keys and the checksums. Under torchrun each rank
fills its own part of the cache and rank 0 merges the index parts at the end.
A writer holds an exclusive lock on its part, so two runs never write one part.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from edgetag.runtime.atomic import DiskFullError, hold_lock
from edgetag.runtime.audio import AudioError, audio_info, load_audio
from edgetag.training.cache import TeacherCache, config_hash, make_key, merge_indexes
from edgetag.training.data import Manifest, SkipReport, content_hash, load_manifest, skip_reason
from edgetag.training.manifest_entry import UnsafePathError

log = logging.getLogger(__name__)


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
    no_annotation: int = 0
    """Rows or windows an annotation teacher (``reference-f0``) has no reference for: not stored."""

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
            *([f"{self.no_annotation} rows or windows without a reference annotation (not stored)"] if self.no_annotation else []),
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
        from edgetag.training.teachers.reference import AnnotationError

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
                # annotation teachers need no audio where a row has no annotation: skip its decoding
                if all(getattr(m, "reads_annotations", False) and not m.has_annotation(entry) for m, _, _ in info):
                    summary.no_annotation += 1
                    summary.skips.n_ok += 1
                    if bar is not None:
                        bar.update(1)
                    continue
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
                                if getattr(m, "reads_annotations", False):  # e.g. reference-f0: no model to run
                                    targets = m.annotation_scores(entry, manifest.root, ws, we, len(wave))
                                    if targets is None:
                                        summary.no_annotation += 1
                                        continue
                                    cache.put(key, {"scores": targets.astype(np.float16)}, meta)
                                    summary.windows_computed += 1
                                    continue
                                queue(ti, key, wave, meta)
                except DiskFullError:
                    raise  # the device, not this clip: stop (the cache resumes after space is freed)
                except (AudioError, AnnotationError, UnsafePathError, OSError) as e:
                    reason = skip_reason(e)
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
    directory.mkdir(parents=True, exist_ok=True)
    return hold_lock(directory / f".{part}.lock", lambda holder: CacheBusyError(
        f"another edgetag teach ({holder}) is writing {directory} as {part}: wait for it to finish, or give "
        "this run another --out folder (two runs writing one folder would delete each other's shards)"))
