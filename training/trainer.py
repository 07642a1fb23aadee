"""The trainer: one loop for every distillation method, on CPU, one GPU or many.

`train(config, run_dir)` runs a `TrainConfig` (see `edgetag.training.config`)
and leaves in ``run_dir``::

    config.yaml, config.json   the resolved config; config.sha256 its hash
    student.pt                 the product (`edgetag.training.checkpoint`), EMA weights when kept
    checkpoints/state-NNNNNNNN.pt  resumable training state (newest ``checkpoint.keep``)
    metrics.csv, eval.csv, metrics.jsonl   per-step and per-evaluation metrics
    features/                  features precomputed per segment (unless ``data.feature_cache``)

Data
    Every segment of the train (and valid) split is decoded at the front end's
    rate and turned into features once with `TorchFrontend` (float64 compute,
    float32 out), cached on disk by content hash and front-end config. A
    training example is a crop of ``data.segment_seconds`` (shorter segments
    are padded with the features of silence). Teacher outputs come from the
    `TeacherCache`: for each segment, the chain of cached windows that
    `fill_cache` wrote is found by path and bounds and *checked* against the
    content hash of the decoded audio (a stale cache is an error, not a silent
    mismatch). Teacher frames are aligned to the student's frames
    (`losses.align_teacher_frames`, nearest, frame centres; CREPE's frame 0 is
    centred at 32 ms); a window student gets their mean over the crop. A
    stateful student whose teacher ran at a coarser hop (CREPE every 100 ms,
    the student every 10 ms) gets KD targets only on the frames that have a
    teacher frame within half a student hop; the others are masked out.

Methods
    ``labels``: masked BCE / cross-entropy (missing labels count for nothing).
    ``kd``: plus soft targets with a temperature (per frame for stateful students).
    ``kd+conreg`` / ``kd+disreg``: plus the teacher-embedding regulariser on
    time-pooled embeddings. ``mean_teacher``: masked labels plus the
    consistency between the student (augmented view) and its EMA (clean view).

Determinism and resuming
    No randomness comes from a shared stream that a resume could not rebuild:
    the sampler's order for global batch position ``p`` of step ``s`` is a
    function of (seed, epoch) or (seed, s); each example's crop and
    augmentations draw from a generator seeded by (seed, s, p); mixup from one
    seeded by (seed, s, rank). Checkpoints (temporary file, fsync, rename)
    hold the model, EMA, regulariser, optimiser, scheduler, scaler, step and
    the torch / CUDA / numpy / python RNG states plus the generator states
    last used. A run killed at any point resumes from its newest readable
    checkpoint and ends with bit-identical weights to an uninterrupted run on
    CPU (tested). Metrics rows after the resumed step are dropped.

Distributed
    Under ``torchrun`` (WORLD_SIZE > 1) the trainer joins the process group
    (nccl on CUDA, gloo on CPU), wraps the model in DistributedDataParallel and
    gives rank r the slice ``[r*B/W, (r+1)*B/W)`` of each global batch of B
    positions. Batch normalisation uses global batch statistics (SyncBatchNorm
    on CUDA, an all-reduce implementation on CPU), so W processes compute the
    same step as one process on the global batch. Mixup pairs examples within
    each process's slice, and masked losses are normalised per process, so
    those two are the only parts that depend on the process count. Only rank 0
    writes checkpoints, metrics and the product; all ranks read the newest
    checkpoint on start (multi-node runs need ``run_dir`` on a shared
    file system).
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import hashlib
import json
import logging
import math
import os
import random
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from edgetag.runtime.atomic import atomic_write, atomic_write_text
from edgetag.training import losses as L
from edgetag.training.augment import Augmenter
from edgetag.training.config import (
    ConfigError,
    TrainConfig,
    config_hash,
    config_to_dict,
    dump_config,
)
from torch import Tensor, nn

log = logging.getLogger(__name__)
# torch.distributed.nn.functional.all_reduce is the autograd-aware all-reduce the CPU global
# batch norm needs; its suggested replacement is not differentiable in every torch version.
warnings.filterwarnings("ignore", message=r"torch\.distributed\.nn\.functional\.all_reduce is deprecated", category=FutureWarning)

__all__ = ["TrainResult", "latest_checkpoint", "train"]

STATE_FORMAT = "edgetag-train-state"
STATE_VERSION = 1


# =============================================================================== small helpers
def _seed(*parts: object) -> int:
    """A 63-bit seed derived from ``parts`` (stable across processes and Python versions)."""
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def _generator(*parts: object) -> torch.Generator:
    return torch.Generator().manual_seed(_seed(*parts))


# =============================================================================== RNG state
def _rng_state() -> dict[str, Any]:
    """torch / CUDA / numpy / python global RNG states as weights_only-loadable data."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, py_gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": {"version": version, "internal": list(internal), "gauss": py_gauss},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


# =============================================================================== distributed
@dataclass
class _Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    owns_group: bool = False

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def _init_distributed(use_cuda: bool) -> _Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _Dist()
    import torch.distributed as dist

    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    owns = False
    if not dist.is_initialized():
        if use_cuda:
            torch.cuda.set_device(local_rank)
        dist.init_process_group("nccl" if use_cuda else "gloo", rank=rank, world_size=world)
        owns = True
    return _Dist(rank=dist.get_rank(), world=dist.get_world_size(), local_rank=local_rank, owns_group=owns)


def _global_batch_norm_forward(self: nn.modules.batchnorm._BatchNorm, x: Tensor) -> Tensor:
    """Batch norm with statistics over every process's batch (all-reduce, differentiable; CPU-capable)."""
    import torch.distributed as dist
    import torch.distributed.nn.functional as dnn

    if not self.training:
        return nn.functional.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)
    dims = [0, *range(2, x.dim())]
    shape = [1, -1] + [1] * (x.dim() - 2)
    count = torch.tensor([float(x.numel() // x.shape[1])], dtype=x.dtype, device=x.device)
    total = dnn.all_reduce(torch.cat([x.sum(dims), count]), op=dist.ReduceOp.SUM)
    n = total[-1]
    mean = total[:-1] / n
    centred = x - mean.view(shape)
    var = dnn.all_reduce(centred.square().sum(dims), op=dist.ReduceOp.SUM) / n
    with torch.no_grad():
        self.num_batches_tracked.add_(1)
        m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
        self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
        self.running_var.mul_(1 - m).add_(var.detach() * (n / max(float(n) - 1.0, 1.0)), alpha=m)
    y = centred * torch.rsqrt(var + self.eps).view(shape)
    if self.affine:
        y = y * self.weight.view(shape) + self.bias.view(shape)
    return y


def _globalise_batch_norm(model: nn.Module, use_cuda: bool) -> nn.Module:
    """BatchNorm over the global batch: SyncBatchNorm on CUDA, the all-reduce version on CPU."""
    if use_cuda:
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            cls = type(module)
            module.__class__ = type(f"Global{cls.__name__}", (cls,), {"forward": _global_batch_norm_forward})
    return model


# =============================================================================== data
@dataclass
class _TeacherTrack:
    """One teacher's outputs for every entry of a split: per-entry arrays at ``rate`` frames/s."""

    identity: str
    rate: float
    scores: list[np.ndarray] | None = None
    embeddings: list[np.ndarray] | None = None
    offset: float = 0.0
    """Time (s) of the centre of teacher frame 0 (CREPE: 0.032, its causal frames start at sample 0)."""


def _teacher_offset(identity: str) -> float:
    """Frame-0 centre of a cached teacher, by name prefix (the table `evaluate` uses), else 0."""
    from edgetag.training.evaluate import _KNOWN_TEACHER_OFFSETS

    name = identity.split("@", 1)[0]
    return next((v for prefix, v in _KNOWN_TEACHER_OFFSETS.items() if name.startswith(prefix)), 0.0)


def _near_teacher_frames(n_teacher: int, teacher_rate: float, student_rate: float, n_student: int,
                         student_offset: float, teacher_offset: float) -> Tensor:
    """[n_student] bool: a teacher frame lies within half a student hop of the student frame.

    A teacher run at a coarser hop than the student (e.g. CREPE every 100 ms, a student
    every 10 ms) gives real targets to only the student frames next to a teacher frame;
    nearest-neighbour alignment would copy each teacher frame onto its neighbours up to
    half a teacher hop away, which is wrong wherever the target moves (pitch glides,
    note changes). With a teacher at least as dense as the student this is all True.
    """
    t_s = student_offset + torch.arange(n_student, dtype=torch.float64) / student_rate
    pos = (t_s - teacher_offset) * teacher_rate
    nearest = torch.floor(pos + 0.5).clamp(0, max(n_teacher - 1, 0))
    gap = (pos - nearest).abs() / teacher_rate  # seconds to the nearest existing teacher frame
    return (gap <= 0.5 / student_rate + 1e-9) & torch.tensor(n_teacher > 0)


@dataclass
class _Split:
    name: str
    paths: list[str]
    features: list[np.ndarray]
    targets: np.ndarray
    mask: np.ndarray
    score_tracks: list[_TeacherTrack] = field(default_factory=list)
    embedding_tracks: list[_TeacherTrack] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.features)


def _feature_key(audio_hash: str, frontend_json: str) -> str:
    return hashlib.sha256(f"edgetag-features-v1|{audio_hash}|{frontend_json}".encode()).hexdigest()


def _decoder_identity() -> str:
    """Versions of what turns a file into samples (a change invalidates `_file_key` memos)."""
    import soundfile
    import soxr

    return f"soundfile {soundfile.__version__}|{soundfile.__libsndfile_version__}|soxr {soxr.__version__}"


def _file_key(path: Path, entry: Any, sample_rate: int, decoder: str) -> str | None:
    """A key for one segment of one file as it is on disk now (path, size, modification time,
    bounds, rate, decoder versions), or None if the file cannot be stat'ed."""
    try:
        st = path.stat()
    except OSError:
        return None
    blob = f"edgetag-file-v1|{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{entry.start!r}|{entry.end!r}|{sample_rate}|{decoder}"
    return hashlib.sha256(blob.encode()).hexdigest()


def _load_split(manifest: Any, split: str, frontend: Any, cache_dir: Path, keep: bool = True) -> tuple[list[Any], list[np.ndarray]]:
    """Features of every readable entry of ``split`` (computed once, cached on disk).

    ``keep=False`` only fills the cache: entries already in it are not read, nothing is
    returned and unreadable files are not reported (the pass that keeps them reports them).

    Features are keyed by the decoded audio's content hash, so the same audio is never
    featurised twice and changed audio is never served stale. Finding that hash means
    decoding the file, which for 20 h of Ogg takes about 13 minutes, on every start and
    resume; so ``by-file/`` memoises it per file state (path, size, modification time,
    bounds, decoder versions), and a file unchanged since it was read is not decoded again.
    """
    from edgetag.training.data import SkipReport, content_hash, read_entry
    from edgetag.training.frontend import TorchFrontend

    torch_frontend = TorchFrontend(frontend)
    fe_json = frontend.to_json()
    sr = frontend.sample_rate
    decoder = _decoder_identity()
    cache_dir.mkdir(parents=True, exist_ok=True)
    entries, feats = [], []
    report = SkipReport()

    def write_atomic(path: Path, save: Callable[[Any], None]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp.", suffix=path.suffix, dir=path.parent)
        with os.fdopen(fd, "wb") as handle:
            save(handle)
        os.replace(tmp, path)

    for entry in manifest.select(split).entries:
        try:
            file_key = _file_key(manifest.resolve(entry), entry, sr, decoder)
        except ValueError:  # a path escaping the root: read_entry reports it
            file_key = None
        memo = cache_dir / "by-file" / file_key[:2] / f"{file_key}.txt" if file_key else None
        f = None
        if memo is not None and memo.is_file():
            key = _feature_key(memo.read_text().strip(), fe_json)
            if not keep and (cache_dir / key[:2] / f"{key}.npy").is_file():
                continue
            with contextlib.suppress(Exception):
                f = np.load(cache_dir / key[:2] / f"{key}.npy")
            if f is not None:
                report.n_ok += 1
        if f is None:
            audio = read_entry(manifest, entry, sr, report)
            if audio is None:
                continue
            h = content_hash(audio, sr, entry.start, entry.end)
            key = _feature_key(h, fe_json)
            path = cache_dir / key[:2] / f"{key}.npy"
            with contextlib.suppress(Exception):
                f = np.load(path)
            if f is None:
                with torch.no_grad():
                    f = torch_frontend(torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))[None])[0].numpy()
                write_atomic(path, lambda handle, f=f: np.save(handle, f))
            if memo is not None:
                write_atomic(memo, lambda handle, h=h: handle.write(h.encode()))
        if keep:
            entries.append(entry)
            feats.append(np.ascontiguousarray(f, dtype=np.float32))
    if keep and report.n_skipped:
        log.warning("%s", report.summary())
    return entries, feats


def _load_split_shared(manifest: Any, split: str, frontend: Any, cache_dir: Path, dist_info: _Dist) -> tuple[list[Any], list[np.ndarray]]:
    """`_load_split`, with the first decoding shared out between the processes of a DDP run.

    Every rank needs every entry's features, but decoding them is the slow part (several
    minutes per 20 h of Ogg/Opus on one core). So each rank first fills the shared cache
    with its share (entries ``i % world == rank``), and after a barrier every rank reads
    the whole split from it. Where ranks do not share the cache folder (nodes without a common
    disk) the second pass simply computes what it misses, so the result is the same.
    """
    if dist_info.active:
        import torch.distributed as dist

        part = manifest.select(split)
        share = dataclasses.replace(part, entries=part.entries[dist_info.rank :: dist_info.world])
        _load_split(share, split, frontend, cache_dir, keep=False)
        dist.barrier()
    return _load_split(manifest, split, frontend, cache_dir)


def _feature_moments(feats: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per-bin mean and standard deviation over every frame of ``feats``, in float64
    one track at a time (a float64 copy of 20 h of frames would need 4 GB)."""
    count = sum(len(f) for f in feats)
    mean = sum(f.sum(0, dtype=np.float64) for f in feats) / count
    var = sum(np.square(f - mean).sum(0) for f in feats) / count
    return mean, np.sqrt(var)


def _match_identity(wanted: str, identities: set[str]) -> str:
    if wanted in identities:
        return wanted
    hits = sorted(i for i in identities if i.split("@", 1)[0] == wanted)
    if len(hits) == 1:
        return hits[0]
    if not hits:
        raise ConfigError(
            f"teacher {wanted!r} has no outputs in the teacher cache; cached teachers: "
            f"{', '.join(sorted(identities)) or 'none'} (run `edgetag teach` first)"
        )
    raise ConfigError(f"teacher {wanted!r} is ambiguous in the cache ({', '.join(hits)}): give the full identity")


class _CacheIndex:
    """The cache's entries indexed by content, for finding the windows that tile a segment.

    Cache keys cover the audio content, not the path (the same audio under two
    names shares an entry), and `fill_cache` cuts long segments into windows of a
    length the cache does not record. So a segment's windows are found as a
    chain: starting at the segment's start, each candidate window ``[start, end)``
    that the cache holds for this teacher is decoded at the teacher's rate and its
    content hash looked up; the match gives the next start. The lookup by hash is
    also the check that the cache was computed from this very audio.
    """

    def __init__(self, cache_dir: str) -> None:
        from edgetag.training.cache import TeacherCache

        self.cache = TeacherCache(cache_dir, part="trainer-read")
        self.ends: dict[tuple[str, Any], set[Any]] = {}
        self.by_hash: dict[tuple[str, str, Any, Any], tuple[str, dict[str, Any]]] = {}
        self.hash_by_path: dict[tuple[str, str, Any, Any], str] = {}
        entries = getattr(self.cache, "_entries", None)
        for key in self.cache:
            meta = entries[key] if entries is not None else self.cache.get(key).meta  # type: ignore[union-attr]
            ident = meta["teacher"]
            self.ends.setdefault((ident, meta["start"]), set()).add(meta["end"])
            self.by_hash[(ident, meta["audio_sha256"], meta["start"], meta["end"])] = (key, meta)
            self.hash_by_path[(ident, meta["path"], meta["start"], meta["end"])] = meta["audio_sha256"]
        self.identities = {i for i, _ in self.ends}

    def chain(self, identity: str, entry: Any, window_hash: Callable[[Any, Any], Iterable[str]]) -> list[tuple[str, dict[str, Any]]] | None:
        """The cached windows tiling ``[entry.start, entry.end)`` in order, or None if there are none.

        ``window_hash(start, end)`` gives the content hashes of that window at each candidate rate.
        """
        out, cur = [], entry.start
        for _ in range(100000):
            ends = self.ends.get((identity, cur), set())
            if entry.end is not None:
                ends = {e for e in ends if e is not None and e <= entry.end + 1e-9}
            # the window that ends the segment first, then the others in time order
            order = sorted(ends, key=lambda e: (e != entry.end, float("inf") if e is None else e))
            hit = None
            for end in order:
                for h in window_hash(cur, end):
                    hit = self.by_hash.get((identity, h, cur, end))
                    if hit is not None:
                        break
                if hit is not None:
                    break
            if hit is None:
                return None
            out.append(hit)
            if hit[1]["end"] == entry.end:
                return out
            cur = hit[1]["end"]
            if cur is None:
                return None
        return None


def _teacher_tracks(config: TrainConfig, manifest: Any, entries: list[Any], n_labels: int, split: str) -> tuple[list[_TeacherTrack], list[_TeacherTrack]]:
    """Cached teacher scores (mapped to the dataset's labels) and embeddings for ``entries``."""
    from edgetag.runtime.audio import AudioError, load_audio
    from edgetag.training.data import content_hash

    t = config.teacher
    index = _CacheIndex(t.cache_dir)  # type: ignore[arg-type]
    kd = config.method not in ("labels", "mean_teacher")
    score_ids = [_match_identity(w, index.identities) for w in t.teachers] if kd else []
    emb_names = t.embedding_teachers if t.embedding_teachers is not None else t.teachers
    emb_ids = [_match_identity(w, index.identities) for w in emb_names] if config.regulariser != "none" else []
    rates = list(dict.fromkeys([config.frontend_config().sample_rate, *t.sample_rates, 16000, 22050, 44100, 48000, 8000, 32000]))
    verified_rate: dict[str, int] = {}
    hashes_rate: dict[str, int] = {}
    collected: dict[str, tuple[float, list[np.ndarray], list[np.ndarray | None]]] = {}
    missing: dict[str, list[str]] = {}
    for ident in dict.fromkeys(score_ids + emb_ids):
        all_scores, all_embs, rate = [], [], None
        for entry in entries:
            path = manifest.resolve(entry)

            def window_hash(start: Any, end: Any, path: Path = path, ident: str = ident) -> Iterator[str]:
                """Content hashes of the window at the teacher's rate (once known), else at each candidate rate."""
                order = ([verified_rate[ident]] if ident in verified_rate else []) + [r for r in rates if r != verified_rate.get(ident)]
                for sr in order:
                    try:
                        wave = load_audio(path, sr, start, end)
                    except (AudioError, OSError, ValueError):  # a window the file cannot give (e.g. past its end)
                        return
                    h = content_hash(wave, sr, start, end)
                    hashes_rate[h] = sr
                    yield h

            def recorded_hash(start: Any, end: Any, entry: Any = entry, ident: str = ident) -> Iterator[str]:
                """The hash the cache recorded for this path and window (``teacher.verify_audio = false``)."""
                h = index.hash_by_path.get((ident, entry.path, start, end))
                if h is not None:
                    yield h

            chain = None if t.verify_audio else index.chain(ident, entry, recorded_hash)
            if chain is None:
                # Verifying, or a window whose audio another file also holds bit for bit (the
                # cache stores it once, under one of the paths): find the windows by content.
                chain = index.chain(ident, entry, window_hash)
            if chain is None:
                missing.setdefault(ident, []).append(entry.path)
                continue
            parts_s, parts_e = [], []
            for key, meta in chain:
                verified_rate[ident] = hashes_rate.get(meta["audio_sha256"], verified_rate.get(ident, rates[0]))
                out = index.cache.get(key)
                if out is None:
                    raise ConfigError(f"teacher cache entry for {entry.path} ({ident}) is unreadable (bad shard); re-run `edgetag teach`")
                n_teacher = out.scores.shape[-1] if out.scores is not None else (
                    max(t.label_columns) + 1 if t.label_columns else n_labels)
                parts_s.append(out.dense_scores(n_teacher))
                if out.embeddings is not None:
                    parts_e.append(np.asarray(out.embeddings, dtype=np.float32))
                rate = float(meta["frame_rate"])
            all_scores.append(np.concatenate(parts_s, axis=0))
            all_embs.append(np.concatenate(parts_e, axis=0) if parts_e else None)
        collected[ident] = (rate or 1.0, all_scores, all_embs)
    if missing:
        ident, paths = next(iter(missing.items()))
        raise ConfigError(
            f"{len(paths)} {split} segment(s) have no cached outputs of teacher {ident} "
            f"(e.g. {paths[0]}), or the audio changed since they were cached; "
            "run `edgetag teach` over the same manifest first"
        )
    score_tracks = []
    for ident in score_ids:
        rate, scores, _ = collected[ident]
        mapped = []
        for s in scores:
            if t.label_columns is not None:
                if len(t.label_columns) != n_labels:
                    raise ConfigError(f"teacher.label_columns: {len(t.label_columns)} columns for {n_labels} dataset labels")
                if max(t.label_columns) >= s.shape[1]:
                    raise ConfigError(f"teacher.label_columns: column {max(t.label_columns)} but teacher {ident} has {s.shape[1]} scores")
                s = s[:, t.label_columns]
            elif s.shape[1] != n_labels:
                raise ConfigError(
                    f"teacher {ident} has {s.shape[1]} labels, the data {n_labels}: set teacher.label_columns "
                    "(the teacher's column for each dataset label)"
                )
            mapped.append(np.ascontiguousarray(s, dtype=np.float32))
        score_tracks.append(_TeacherTrack(ident, rate, scores=mapped, offset=_teacher_offset(ident)))
    emb_tracks = []
    for ident in emb_ids:
        rate, _, embs = collected[ident]
        if any(e is None for e in embs):
            raise ConfigError(f"teacher {ident} stored no embeddings, but the {config.regulariser} regulariser needs them")
        emb_tracks.append(_TeacherTrack(ident, rate, embeddings=[e for e in embs if e is not None], offset=_teacher_offset(ident)))
    return score_tracks, emb_tracks


# =============================================================================== batches
class _Sampler:
    """Which example fills global batch position ``p`` of step ``s``: a pure function of (seed, s, p)."""

    def __init__(self, n: int, batch: int, seed: int, weights: np.ndarray | None = None) -> None:
        if n == 0:
            raise ConfigError("the training split has no readable entries")
        self.n, self.batch, self.seed = n, batch, seed
        self.weights = None if weights is None else torch.from_numpy(weights.astype(np.float64))
        self._perms: dict[int, Tensor] = {}

    def indices(self, step: int) -> list[int]:
        if self.weights is not None:
            g = _generator(self.seed, "balanced", step)
            return torch.multinomial(self.weights, self.batch, replacement=True, generator=g).tolist()
        out = []
        for g_pos in range(step * self.batch, (step + 1) * self.batch):
            epoch, i = divmod(g_pos, self.n)
            perm = self._perms.get(epoch)
            if perm is None:
                perm = torch.randperm(self.n, generator=_generator(self.seed, "epoch", epoch))
                self._perms = {epoch: perm}  # only the current epoch is kept
            out.append(int(perm[i]))
        return out

    def state(self) -> dict[str, Any]:
        return {"n": self.n, "batch": self.batch, "seed": self.seed, "balanced": self.weights is not None}


def _balanced_weights(targets: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per-example weight: mean of 1/frequency over its positive labels (no positive: its own class)."""
    pos = (targets > 0.5) & (mask > 0)
    counts = pos.sum(0).astype(np.float64)
    none = ~pos.any(1)
    w = np.zeros(len(targets))
    for i in range(len(targets)):
        if none[i]:
            w[i] = 1.0 / none.sum()
        else:
            w[i] = float(np.mean(1.0 / counts[pos[i]]))
    return w / w.sum()


@dataclass
class _Batch:
    features: Tensor  # [B, W, F] (augmented, the student's view)
    clean: Tensor  # [B, W, F] (the EMA teacher's view)
    targets: Tensor  # [B, C]
    mask: Tensor  # [B, C]
    valid: Tensor  # [B, W] frames of real audio
    teacher: Tensor | None  # [B, C] (window student) or [B, W, C]
    embeddings: list[Tensor]  # per embedding teacher [B, D_k]
    teacher_ok: Tensor | None = None  # [B, W] float: frames with a teacher frame within half a hop (frame mode)


class _BatchMaker:
    def __init__(self, config: TrainConfig, split: _Split, frontend: Any, window: int, silence: np.ndarray, frame_mode: bool) -> None:
        self.config, self.split, self.frontend = config, split, frontend
        self.window, self.silence, self.frame_mode = window, silence, frame_mode
        self.augmenter = Augmenter(config.augment, frontend)
        self.student_rate = frontend.frame_rate
        self.centre = frontend.win_length / (2.0 * frontend.sample_rate)
        self.last_generator_state: Tensor | None = None
        self.last_teacher_ok: Tensor | None = None

    def _example(self, idx: int, gen: torch.Generator | None) -> tuple[Tensor, Tensor, Tensor | None, list[Tensor]]:
        """One crop: (features [W, F], valid frames [W], teacher target [C] or [W, C] or None, embeddings).

        In frame mode `last_teacher_ok` is set to the crop's [W] mask of frames that have a
        teacher frame within half a student hop (all True for a teacher as dense as the student).
        """
        s, w = self.split, self.window
        feats = s.features[idx]
        n = feats.shape[0]
        offset = int(torch.randint(0, n - w + 1, (1,), generator=gen)) if (gen is not None and n > w) else 0
        crop = feats[offset : offset + w]
        real = crop.shape[0]
        if real < w:
            crop = np.concatenate([crop, np.broadcast_to(self.silence, (w - real, crop.shape[1]))], axis=0)
        x = torch.from_numpy(np.ascontiguousarray(crop))
        valid = torch.zeros(w, dtype=torch.bool)
        valid[:real] = True
        t0 = offset / self.student_rate + self.centre
        teacher = None
        self.last_teacher_ok = None
        if s.score_tracks:
            per = []
            near = torch.ones(w, dtype=torch.bool)
            for track in s.score_tracks:
                scores = track.scores[idx]  # type: ignore[index]
                aligned, ok = L.align_teacher_frames(torch.from_numpy(scores), track.rate, self.student_rate, w,
                                                     student_offset=t0, teacher_offset=track.offset)
                per.append(aligned if self.frame_mode else _masked_time_mean(aligned, ok & valid))
                near &= ok & _near_teacher_frames(scores.shape[0], track.rate, self.student_rate, w, t0, track.offset)
            teacher = torch.stack(per).mean(0)
            if self.frame_mode:
                self.last_teacher_ok = near
        embs = []
        for track in s.embedding_tracks:
            aligned, ok = L.align_teacher_frames(torch.from_numpy(track.embeddings[idx]), track.rate, self.student_rate, w,  # type: ignore[index]
                                                 student_offset=t0, teacher_offset=track.offset)
            embs.append(_masked_time_mean(aligned, ok & valid))
        return x, valid, teacher, embs

    def make(self, step: int, positions: list[int], indices: list[int], rank: int, augment: bool = True) -> _Batch:
        feats, cleans, valids, teachers, embs, oks = [], [], [], [], [], []
        seed = self.config.optim.seed
        for pos, idx in zip(positions, indices):
            gen = _generator(seed, "example", step, pos) if augment else None
            x, valid, teacher, e = self._example(idx, gen)
            near = self.last_teacher_ok
            clean = x
            if augment:
                # The time shift also moves the frame targets and the EMA teacher's clean view,
                # so per-frame targets and the consistency loss stay aligned with the student's view.
                frame_t = teacher if (teacher is not None and self.frame_mode) else None
                xa, (valid_a, frame_t, clean_a, near_a) = self.augmenter.example(
                    x[None], [valid[None], None if frame_t is None else frame_t[None], x[None],
                              None if near is None else near[None]], gen
                )
                x, valid, clean = xa[0], valid_a[0], clean_a[0]  # type: ignore[index]
                if frame_t is not None:
                    teacher = frame_t[0]
                if near_a is not None:
                    near = near_a[0]
                self.last_generator_state = gen.get_state()
            oks.append(near)
            cleans.append(clean)
            feats.append(x)
            valids.append(valid)
            teachers.append(teacher)
            embs.append(e)
        s = self.split
        batch = _Batch(
            features=torch.stack(feats),
            clean=torch.stack(cleans),
            targets=torch.from_numpy(s.targets[indices]),
            mask=torch.from_numpy(s.mask[indices]),
            valid=torch.stack(valids),
            teacher=torch.stack(teachers) if teachers and teachers[0] is not None else None,  # type: ignore[arg-type]
            embeddings=[torch.stack([e[k] for e in embs]) for k in range(len(s.embedding_tracks))],
            teacher_ok=torch.stack(oks).float() if oks and oks[0] is not None else None,  # type: ignore[arg-type]
        )
        if augment and self.config.augment.mixup_alpha > 0:
            gen = _generator(seed, "mixup", step, rank)
            # teacher_ok mixes like a target: a mixed frame's KD weight is the share of it that had a teacher frame.
            extras = [batch.clean, batch.teacher, batch.teacher_ok, *batch.embeddings]
            f, t, m, mixed = self.augmenter.batch(batch.features, batch.targets, batch.mask, extras, gen)
            batch.features, batch.targets, batch.mask = f, t, m
            batch.clean, batch.teacher, batch.teacher_ok = mixed[0], mixed[1], mixed[2]  # type: ignore[assignment]
            batch.embeddings = list(mixed[3:])  # type: ignore[arg-type]
        return batch


def _decision_hop(config: TrainConfig, frontend: Any, window: int) -> int:
    """Frames between a window student's decisions: ``student.decision_seconds``, else half a window."""
    seconds = config.student.decision_seconds
    if seconds is None:
        return max(1, window // 2)
    return max(1, round(seconds * frontend.frame_rate))


def _masked_time_mean(x: Tensor, ok: Tensor) -> Tensor:
    """Mean over frames ``[W, D] -> [D]`` of the frames where ``ok`` (all frames if none)."""
    if not bool(ok.any()):
        return x.mean(0)
    return x[ok].mean(0)


# =============================================================================== model
class _Net(nn.Module):
    """Student plus the embedding regulariser, so one DDP forward covers every trained parameter."""

    def __init__(self, student: nn.Module, regulariser: nn.Module | None) -> None:
        super().__init__()
        self.student = student
        self.regulariser = regulariser

    def forward(self, x: Tensor, teacher_embs: list[Tensor] | None = None, valid: Tensor | None = None) -> tuple[Tensor, Tensor]:
        s = self.student
        if self.regulariser is None or not teacher_embs:
            logits = s(x)
            return logits, logits.new_zeros(())
        emb = s.embed(x)  # [B, D] (window) or [B, W, D] (stateful)
        logits = _head(s, emb)
        pooled = emb if emb.dim() == 2 else _pool(emb, valid)
        return logits, self.regulariser(pooled, teacher_embs)


def _head(student: nn.Module, emb: Tensor) -> Tensor:
    """The student's classifier applied to its `embed` output."""
    name = type(student).__name__
    if name == "CausalConvStudent":
        return student.classifier(emb.transpose(1, 2)).transpose(1, 2)
    return student.classifier(emb)


def _pool(frames: Tensor, valid: Tensor | None) -> Tensor:
    """[B, W, D] -> [B, D]: mean over the valid frames."""
    if valid is None:
        return frames.mean(1)
    w = valid.to(frames.dtype).unsqueeze(-1)
    return (frames * w).sum(1) / w.sum(1).clamp_min(1.0)


def _clip_logits(logits: Tensor, valid: Tensor) -> Tensor:
    return logits if logits.dim() == 2 else _pool(logits, valid)


def _lr_lambda(config: TrainConfig) -> Callable[[int], float]:
    o = config.optim

    def f(step: int) -> float:
        if step < o.warmup_steps:
            return (step + 1) / o.warmup_steps
        if o.schedule == "constant":
            return 1.0
        span = max(1, o.steps - o.warmup_steps)
        progress = min(1.0, (step - o.warmup_steps) / span)
        return o.min_lr_ratio + (1.0 - o.min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return f


# =============================================================================== metrics files
class _MetricsLog:
    """metrics.csv (train rows), eval.csv (evaluations) and metrics.jsonl (both); rank 0 only."""

    def __init__(self, run_dir: Path, config: TrainConfig, start_step: int, enabled: bool) -> None:
        self.enabled = enabled
        self.cfg = config.logging
        self.paths = {"train": run_dir / "metrics.csv", "eval": run_dir / "eval.csv"}
        self.jsonl = run_dir / "metrics.jsonl"
        self.tb = None
        if not enabled:
            return
        # A resumed run drops what the killed run logged after its checkpoint.
        for path in [*self.paths.values(), self.jsonl]:
            if path.exists():
                self._truncate(path, start_step)
        if self.cfg.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(run_dir / "tensorboard"), purge_step=start_step + 1)
            except (ImportError, OSError, RuntimeError) as exc:  # tensorboard not installed
                log.warning("logging.tensorboard is on but TensorBoard is unavailable (%s); CSV/JSONL only", exc)

    @staticmethod
    def _truncate(path: Path, start_step: int) -> None:
        lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
        if path.suffix == ".jsonl":
            kept = [ln for ln in lines if ln.strip() and json.loads(ln).get("step", 0) <= start_step]
        else:
            if not lines:
                return
            header = next(csv.reader([lines[0]]))
            col = header.index("step") if "step" in header else 0
            kept = [lines[0]] + [ln for ln in lines[1:] if ln.strip() and int(next(csv.reader([ln]))[col]) <= start_step]
        atomic_write_text(path, "".join(kept))

    def write(self, kind: str, row: dict[str, Any]) -> None:
        if not self.enabled:
            return
        row = {k: (float(v) if isinstance(v, (np.floating, float)) else v) for k, v in row.items()}
        if self.cfg.jsonl:
            with open(self.jsonl, "a", encoding="utf-8") as f:
                f.write(json.dumps({"kind": kind, **row}, allow_nan=True) + "\n")
        if self.cfg.csv:
            path = self.paths[kind]
            new = not path.exists() or path.stat().st_size == 0
            if not new:
                with open(path, encoding="utf-8") as f:
                    header = next(csv.reader([f.readline()]))
            else:
                header = list(row)
            with open(path, "a", newline="", encoding="utf-8") as f:
                w = csv.DictWriter(f, fieldnames=header, extrasaction="ignore")
                if new:
                    w.writeheader()
                w.writerow(row)
        if self.tb is not None:
            for k, v in row.items():
                if k != "step" and isinstance(v, (int, float)):
                    self.tb.add_scalar(f"{kind}/{k}", v, row["step"])

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


# =============================================================================== checkpoints
def _state_path(run_dir: Path, step: int) -> Path:
    return run_dir / "checkpoints" / f"state-{step:08d}.pt"


def latest_checkpoint(run_dir: str | os.PathLike[str]) -> tuple[Path, dict[str, Any]] | None:
    """The newest readable training-state checkpoint of ``run_dir`` (unreadable ones are skipped)."""
    folder = Path(run_dir) / "checkpoints"
    for path in sorted(folder.glob("state-*.pt"), reverse=True):
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001  (unpickling errors come in many types)
            log.warning("skipping unreadable checkpoint %s (%s)", path, exc)
            continue
        if isinstance(state, dict) and state.get("format") == STATE_FORMAT:
            return path, state
    return None


def _prune(run_dir: Path, keep: int) -> None:
    states = sorted((run_dir / "checkpoints").glob("state-*.pt"))
    for old in states[:-keep]:
        old.unlink(missing_ok=True)


# =============================================================================== the trainer
@dataclass
class TrainResult:
    run_dir: Path
    student_path: Path | None
    state_path: Path | None
    steps: int
    resumed_from: int
    config_hash: str
    metrics: dict[str, float]


def _check_run_dir_config(run_dir: Path, config: TrainConfig, digest: str) -> None:
    """A run directory belongs to one config: resuming with another is an error (logging aside)."""
    old_path = run_dir / "config.json"
    if not old_path.exists():
        return
    old = json.loads(old_path.read_text(encoding="utf-8"))
    new = config_to_dict(config)
    diffs = []
    for section in sorted(set(old) | set(new)):
        if section == "logging":
            continue
        a, b = old.get(section), new.get(section)
        if isinstance(a, dict) and isinstance(b, dict):
            diffs += [f"{section}.{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
        elif a != b:
            diffs.append(f"{section}: {a!r} -> {b!r}")
    if diffs:
        raise ConfigError(
            f"{run_dir} holds a run with another config ({'; '.join(diffs[:8])}); "
            "use a new run directory or the same config"
        )


def train(
    config: TrainConfig,
    run_dir: str | os.PathLike[str],
    *,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
) -> TrainResult:
    """Train (or resume) the student of ``config`` in ``run_dir``; see the module docstring.

    ``on_step(step, metrics)`` is called on every rank after each optimiser step
    (and after that step's checkpoint is written): a hook for progress, tests
    and external stopping (an exception there stops the run like a kill).
    """
    from edgetag.training.checkpoint import StudentCheckpoint, save_checkpoint
    from edgetag.training.data import load_manifest
    from edgetag.training.frontend import TorchFrontend
    from edgetag.training.students import build_student, count_parameters

    run_dir = Path(run_dir)
    o = config.optim
    want_cuda = o.device == "cuda" or (o.device == "auto" and torch.cuda.is_available())
    if o.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("optim.device: cuda, but torch sees no CUDA device")
    dist_info = _init_distributed(want_cuda)
    try:
        return _train(config, run_dir, dist_info, want_cuda, on_step, StudentCheckpoint, save_checkpoint,
                      load_manifest, TorchFrontend, build_student, count_parameters)
    finally:
        if dist_info.owns_group:
            import gc

            import torch.distributed as dist

            # DDP's wrapper sits in reference cycles, and its reducer holds gloo work objects:
            # freed only at interpreter exit, they can abort the process ("terminate called
            # without an active exception"). Free them while the group is still alive.
            gc.collect()
            dist.destroy_process_group()


def _train(config: TrainConfig, run_dir: Path, dist_info: _Dist, use_cuda: bool, on_step: Any, StudentCheckpoint: Any,
           save_checkpoint: Any, load_manifest: Any, TorchFrontend: Any, build_student: Any, count_parameters: Any) -> TrainResult:
    o = config.optim
    world, rank = dist_info.world, dist_info.rank
    if o.batch_size % world:
        raise ConfigError(f"optim.batch_size: {o.batch_size} does not split evenly over {world} processes")
    device = torch.device(f"cuda:{dist_info.local_rank}" if use_cuda else "cpu")
    amp = bool(o.amp and device.type == "cuda")
    amp_dtype = torch.float16 if o.amp_dtype == "float16" else torch.bfloat16
    digest = config_hash(config)
    main = dist_info.main

    run_dir.mkdir(parents=True, exist_ok=True)
    _check_run_dir_config(run_dir, config, digest)
    if dist_info.active:
        import torch.distributed as dist

        dist.barrier()  # every rank has checked the old config before rank 0 replaces it
    if main:
        dump_config(config, run_dir / "config.yaml")
        dump_config(config, run_dir / "config.json")
        (run_dir / "config.sha256").write_text(digest + "\n", encoding="utf-8")

    # ------------------------------------------------------------------ data
    frontend = config.frontend_config()
    d = config.data
    manifest = load_manifest(d.manifest, root=d.root, labels=d.labels)
    labels = list(manifest.labels)
    if not labels:
        raise ConfigError(f"data.manifest: {d.manifest} names no labels")
    feature_dir = Path(d.feature_cache) if d.feature_cache else run_dir / "features"
    if dist_info.active and not d.feature_cache:
        feature_dir = run_dir / "features"
    train_entries, train_feats = _load_split_shared(manifest, d.train_split, frontend, feature_dir, dist_info)
    if not train_entries:
        raise ConfigError(f"data.train_split: no readable entries in split {d.train_split!r} of {d.manifest}")
    targets, mask = _label_matrix(train_entries, labels)
    train_split = _Split(d.train_split, [e.path for e in train_entries], train_feats, targets, mask)
    valid_split = None
    if d.valid_split and d.valid_split in manifest.splits():
        v_entries, v_feats = _load_split_shared(manifest, d.valid_split, frontend, feature_dir, dist_info)
        if v_entries:
            vt, vm = _label_matrix(v_entries, labels)
            valid_split = _Split(d.valid_split, [e.path for e in v_entries], v_feats, vt, vm)
    if config.uses_teacher_cache:
        train_split.score_tracks, train_split.embedding_tracks = _teacher_tracks(config, manifest, train_entries, len(labels), d.train_split)

    window = frontend.num_frames(round(d.segment_seconds * frontend.sample_rate))
    if window < 1:
        raise ConfigError(f"data.segment_seconds: {d.segment_seconds} s is shorter than one front-end frame")
    with torch.no_grad():
        silence = TorchFrontend(frontend)(torch.zeros(1, frontend.win_length))[0, 0].numpy()

    # ------------------------------------------------------------------ model
    torch.manual_seed(o.seed)
    np.random.seed(o.seed % (2**32))
    random.seed(o.seed)
    params = dict(config.student.params)
    from edgetag.training.students import STUDENTS

    is_window = getattr(STUDENTS[config.student.kind], "streaming_mode", "window") == "window"
    if is_window and params.setdefault("window_frames", window) != window:
        raise ConfigError(
            f"student.params.window_frames: {params['window_frames']} but data.segment_seconds gives {window} frames"
        )
    try:
        student = build_student(config.student.kind, frontend.n_bins, len(labels), **params)
    except TypeError as exc:
        raise ConfigError(f"student.params: {exc}") from None
    frame_mode = student.streaming_mode == "stateful"
    mean, std = _feature_moments(train_feats)
    student.feature_mean.copy_(torch.from_numpy(mean).float())
    student.feature_std.copy_(torch.from_numpy(np.maximum(std, 1e-5)).float())

    regulariser: nn.Module | None = None
    if config.regulariser != "none":
        if config.regulariser == "conreg":
            dims = [int(track.embeddings[0].shape[-1]) for track in train_split.embedding_tracks]  # type: ignore[index]
            regulariser = L.ConReg(int(student.embedding_dim), dims)
        else:
            regulariser = L.DisReg()
    student.to(device)
    if regulariser is not None:
        regulariser.to(device)
    ema = L.ModelEMA(student, o.ema_decay) if o.ema_decay > 0 else None
    net: nn.Module = _Net(student, regulariser)
    if dist_info.active:
        from torch.nn.parallel import DistributedDataParallel as DDP

        student = _globalise_batch_norm(student, use_cuda)  # SyncBatchNorm returns a new module
        net = _Net(student, regulariser)
        net = DDP(net, device_ids=[dist_info.local_rank] if use_cuda else None)

    trainable = [p for p in net.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=o.lr, weight_decay=o.weight_decay, eps=o.eps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(config))
    scaler = torch.amp.GradScaler("cuda", enabled=amp and amp_dtype == torch.float16)

    # ------------------------------------------------------------------ resume
    start_step = 0
    found = latest_checkpoint(run_dir)
    if found is not None:
        path, state = found
        if state.get("config_hash") != digest:
            log.warning("%s was written under another config hash; resuming anyway (logging changes only)", path)
        student.load_state_dict(state["model"])
        if regulariser is not None and state.get("regulariser") is not None:
            regulariser.load_state_dict(state["regulariser"])
        if ema is not None and state.get("ema") is not None:
            ema.load_state_dict(state["ema"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        _set_rng_state(state["rng"])
        start_step = int(state["step"])
        if main:
            log.info("resuming from %s (step %d)", path, start_step)

    sampler = _Sampler(len(train_split), o.batch_size, o.seed,
                       _balanced_weights(targets, mask) if config.sampling.class_balanced else None)
    maker = _BatchMaker(config, train_split, frontend, window, silence, frame_mode)
    per_rank = o.batch_size // world
    logger = _MetricsLog(run_dir, config, start_step, main)
    t = config.teacher
    task = d.task

    def save_state(step: int) -> Path:
        state = {
            "format": STATE_FORMAT,
            "version": STATE_VERSION,
            "step": step,
            "config_hash": digest,
            "world_size": world,
            "model": {k: v.detach().cpu() for k, v in student.state_dict().items()},
            "regulariser": None if regulariser is None else regulariser.state_dict(),
            "ema": None if ema is None else ema.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(),
            "rng": _rng_state(),
            "sampler": sampler.state(),
            "augment_generator": maker.last_generator_state,
        }
        path = _state_path(run_dir, step)
        atomic_write(path, lambda handle: torch.save(state, handle))
        _prune(run_dir, config.checkpoint.keep)
        return path

    bar = None
    if main and config.logging.progress:
        from tqdm import tqdm

        bar = tqdm(total=o.steps, initial=start_step, unit="step", desc="distill", dynamic_ncols=True)
    last_state_path: Path | None = None
    metrics: dict[str, float] = {}
    t_last = time.perf_counter()
    try:
        for step in range(start_step, o.steps):
            net.train()
            indices = sampler.indices(step)
            positions = list(range(rank * per_rank, (rank + 1) * per_rank))
            batch = maker.make(step, positions, [indices[p] for p in positions], rank)
            feats = batch.features.to(device, non_blocking=True)
            valid = batch.valid.to(device)
            tmask = batch.mask.to(device)
            ttarg = batch.targets.to(device)
            embs = [e.to(device) for e in batch.embeddings]
            with torch.autocast(device_type=device.type, dtype=amp_dtype, enabled=amp):
                logits, reg_loss = net(feats, embs if regulariser is not None else None, valid)
            logits = logits.float()
            parts: dict[str, Tensor] = {}
            clip = _clip_logits(logits, valid)
            loss = logits.new_zeros(())
            if t.label_enhance and batch.teacher is not None:
                # Teacher-student label enhancing: a confident teacher fills missing labels.
                probs = batch.teacher.to(device).float()
                probs = probs if t.score_kind == "probabilities" else torch.sigmoid(probs)
                if probs.dim() == 3:  # per-frame teacher: pool to the clip like the student
                    probs = _pool(probs, valid)
                ttarg, tmask = L.enhance_labels(ttarg, tmask, probs, t.label_enhance_hi, t.label_enhance_lo)
            if t.label_weight > 0:
                parts["label"] = L.label_loss(task, clip, ttarg, tmask)
                loss = loss + t.label_weight * parts["label"]
            if batch.teacher is not None and t.kd_weight > 0:
                teacher = batch.teacher.to(device)
                kd = L.kd_multiclass if task == "multi_class" else L.kd_multilabel
                if frame_mode:
                    kmask = valid.float()
                    if batch.teacher_ok is not None:  # sparse teacher: only frames next to a teacher frame
                        kmask = kmask * batch.teacher_ok.to(device)
                    kmask = kmask if task == "multi_class" else kmask.unsqueeze(-1)
                else:
                    kmask = None
                parts["kd"] = kd(logits, teacher, t.temperature, t.score_kind, kmask)
                loss = loss + t.kd_weight * parts["kd"]
            if regulariser is not None:
                parts["embedding"] = reg_loss.float()
                loss = loss + t.embedding_weight * parts["embedding"]
            if config.method == "mean_teacher" and ema is not None:
                ema.module.eval()
                with torch.no_grad(), torch.autocast(device_type=device.type, dtype=amp_dtype, enabled=amp):
                    teacher_logits = ema.module(batch.clean.to(device)).float()
                cmask = valid.float().unsqueeze(-1) if frame_mode else None
                parts["consistency"] = L.consistency_loss(logits, teacher_logits, task, cmask)
                rampup = L.sigmoid_rampup(step, t.consistency_rampup_steps)
                loss = loss + t.consistency_weight * rampup * parts["consistency"]

            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            grad_norm = None
            if o.grad_clip > 0:
                scaler.unscale_(optimizer)
                grad_norm = torch.nn.utils.clip_grad_norm_(trainable, o.grad_clip)
            lr = optimizer.param_groups[0]["lr"]
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            if ema is not None:
                ema.update(student)
            done = step + 1

            if not torch.isfinite(loss):
                raise FloatingPointError(f"loss is {float(loss)} at step {done}; lower optim.lr or check the data")
            now = time.perf_counter()
            metrics = {"step": done, "loss": float(loss.detach()), **{k: float(v.detach()) for k, v in parts.items()},
                       "lr": lr, "seconds": now - t_last, "examples_per_s": o.batch_size / max(now - t_last, 1e-9)}
            if grad_norm is not None:
                metrics["grad_norm"] = float(grad_norm)
            if amp:
                metrics["amp_scale"] = float(scaler.get_scale())
            t_last = now
            if dist_info.active:
                import torch.distributed as dist

                names = ["loss", *parts]  # logged as means over the processes
                lt = torch.tensor([metrics[k] for k in names], dtype=torch.float64, device=device)
                dist.all_reduce(lt)
                metrics.update({k: float(v) / world for k, v in zip(names, lt.tolist())})
            if done % config.logging.every == 0 or done == o.steps:
                logger.write("train", metrics)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{metrics['loss']:.4f}", lr=f"{lr:.2e}")
            if o.eval_every and done % o.eval_every == 0 and done < o.steps and valid_split is not None and main:
                ev = _evaluate(ema.module if ema is not None else student, valid_split, window, silence, task, device, frame_mode, maker)
                logger.write("eval", {"step": done, **ev})
            if config.checkpoint.every and done % config.checkpoint.every == 0 and done < o.steps and main:
                last_state_path = save_state(done)
            if on_step is not None:
                on_step(done, metrics)
    finally:
        if bar is not None:
            bar.close()

    # ------------------------------------------------------------------ product
    final_metrics: dict[str, float] = {}
    student_path = None
    if main:
        export_model = build_student(config.student.kind, frontend.n_bins, len(labels), **params)
        source = ema.module if ema is not None else student
        export_model.load_state_dict({k: v.detach().cpu() for k, v in source.state_dict().items()})
        export_model.eval()
        if valid_split is not None and bool(np.any(valid_split.mask)):  # label metrics mean nothing without labels
            final_metrics = _evaluate(export_model, valid_split, window, silence, task, torch.device("cpu"), frame_mode, maker)
            logger.write("eval", {"step": o.steps, **final_metrics})
        if o.steps > start_step or not _state_path(run_dir, o.steps).exists():
            last_state_path = save_state(o.steps)
        else:
            last_state_path = _state_path(run_dir, o.steps)
        manifest_sha = hashlib.sha256(Path(d.manifest).read_bytes()).hexdigest()
        ckpt = StudentCheckpoint(
            student=export_model,
            kind=config.student.kind,
            params=params,
            frontend=frontend,
            task=task,
            labels=labels,
            thresholds=[0.5] * len(labels),
            window_frames=window,  # StudentCheckpoint makes it 1 (frames per call) for a stateful student
            hop_frames=1 if frame_mode else _decision_hop(config, frontend, window),
            provenance={
                "method": config.method,
                "teachers": [tr.identity for tr in train_split.score_tracks],
                "embedding_teachers": [tr.identity for tr in train_split.embedding_tracks],
                "data": {"manifest": str(d.manifest), "manifest_sha256": manifest_sha, "train_split": d.train_split,
                         "train_entries": len(train_split)},
                "training_config_sha256": digest,
                "steps": o.steps,
                "ema": ema is not None,
                "parameters": count_parameters(export_model),
                "world_size": world,
            },
            metrics={k: v for k, v in final_metrics.items() if isinstance(v, (int, float)) and math.isfinite(v)},
        )
        student_path = save_checkpoint(ckpt, run_dir / "student.pt")
    logger.close()
    if dist_info.active:
        import torch.distributed as dist

        dist.barrier()
    return TrainResult(run_dir, student_path, last_state_path, o.steps, start_step, digest, final_metrics)


def _label_matrix(entries: list[Any], labels: list[str]) -> tuple[np.ndarray, np.ndarray]:
    from edgetag.training.data import label_matrix

    return label_matrix(entries, labels)


@torch.no_grad()
def _evaluate(model: nn.Module, split: _Split, window: int, silence: np.ndarray, task: str, device: torch.device,
              frame_mode: bool, maker: _BatchMaker) -> dict[str, float]:
    """Clip scores on the first ``window`` frames of each validation segment: loss and tagging metrics."""
    was_training = model.training
    model.eval()
    eval_maker = _BatchMaker(maker.config, dataclasses.replace(split, score_tracks=[], embedding_tracks=[]), maker.frontend,
                             window, silence, frame_mode)
    scores, losses = [], []
    for start in range(0, len(split), 64):
        idx = list(range(start, min(len(split), start + 64)))
        b = eval_maker.make(0, idx, idx, 0, augment=False)
        logits = model(b.features.to(device)).float()
        clip = _clip_logits(logits, b.valid.to(device))
        losses.append(float(L.label_loss(task, clip, b.targets.to(device), b.mask.to(device))) * len(idx))  # type: ignore[arg-type]
        probs = torch.softmax(clip, -1) if task == "multi_class" else torch.sigmoid(clip)
        scores.append(probs.cpu().numpy())
    model.train(was_training)
    y_score = np.concatenate(scores)
    out: dict[str, float] = {"loss": sum(losses) / len(split)}
    try:
        from edgetag.training.metrics import tagging_metrics

        out.update(tagging_metrics(split.targets, y_score, split.mask, 0.5, task))
    except Exception as exc:  # noqa: BLE001  (metrics are a report, never a reason to lose a run)
        log.warning("tagging metrics failed: %s", exc)
    return {k: float(v) for k, v in out.items()}
