"""The trainer's data: every segment of a split as features computed once and cached on disk
(see `edgetag.training.trainer`, "Data"), and `load_train_data`, which gathers what a run
trains and validates on (splits, labels, teacher tracks, crop length, the features of silence)."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from edgetag.runtime.atomic import atomic_write
from edgetag.runtime.frontend import FrontendConfig
from edgetag.training import data
from edgetag.training.config import ConfigError, TrainConfig
from edgetag.training.data import SkipReport, content_hash, label_matrix, load_manifest
from edgetag.training.distributed import Dist
from edgetag.training.frontend import TorchFrontend
from edgetag.training.teacher_tracks import TeacherTrack, teacher_tracks

log = logging.getLogger(__name__)


@dataclass
class Split:
    """One split: per-segment features, label targets and mask [N, C], and the teacher tracks."""

    name: str
    paths: list[str]
    features: list[np.ndarray]
    targets: np.ndarray
    mask: np.ndarray
    score_tracks: list[TeacherTrack] = field(default_factory=list)
    embedding_tracks: list[TeacherTrack] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.features)


@dataclass
class TrainData:
    """What a run trains and validates on."""

    frontend: FrontendConfig
    labels: list[str]
    train: Split
    valid: Split | None
    window: int
    """Student frames per training crop (``data.segment_seconds``)."""
    silence: np.ndarray
    """Features of one frame of silence: the padding of segments shorter than a crop."""
    manifest_sha256: str = ""
    """The manifest's digest when the run loaded it: what the product records, what a resume must match."""


def load_train_data(config: TrainConfig, run_dir: Path, dist_info: Dist) -> TrainData:
    """The train and valid splits of ``data.manifest`` as features, with the teacher tracks the method needs."""
    frontend = config.frontend_config()
    d = config.data
    manifest_sha256 = hashlib.sha256(Path(d.manifest).read_bytes()).hexdigest()  # before it is read: what trains
    manifest = load_manifest(d.manifest, root=d.root, labels=d.labels)
    if not len(manifest):
        raise ConfigError(f"data.manifest: {d.manifest} has no entries (a header and no rows?)")
    labels = list(manifest.labels)
    if not labels:
        raise ConfigError(f"data.manifest: {d.manifest} names no labels")
    _warn_about_misspelt_splits(manifest.splits(), d.train_split, d.valid_split, d.manifest)
    feature_dir = Path(d.feature_cache) if d.feature_cache else run_dir / "features"
    if dist_info.active and not d.feature_cache:
        feature_dir = run_dir / "features"
    train_entries, train_feats = load_split_shared(manifest, d.train_split, frontend, feature_dir, dist_info)
    if not train_entries:
        raise ConfigError(f"data.train_split: no readable entries in split {d.train_split!r} of {d.manifest}")
    targets, mask = label_matrix(train_entries, labels)
    train_split = Split(d.train_split, [e.path for e in train_entries], train_feats, targets, mask)
    valid_split = None
    if d.valid_split and d.valid_split in manifest.splits():
        v_entries, v_feats = load_split_shared(manifest, d.valid_split, frontend, feature_dir, dist_info)
        if v_entries:
            vt, vm = label_matrix(v_entries, labels)
            valid_split = Split(d.valid_split, [e.path for e in v_entries], v_feats, vt, vm)
    if config.uses_teacher_cache:
        train_split.score_tracks, train_split.embedding_tracks = teacher_tracks(config, manifest, train_entries, len(labels), d.train_split)

    window = frontend.num_frames(round(d.segment_seconds * frontend.sample_rate))
    if window < 1:
        raise ConfigError(f"data.segment_seconds: {d.segment_seconds} s is shorter than one front-end frame")
    with torch.no_grad():
        silence = TorchFrontend(frontend)(torch.zeros(1, frontend.win_length))[0, 0].numpy()
    return TrainData(frontend, labels, train_split, valid_split, window, silence, manifest_sha256)


def _warn_about_misspelt_splits(splits: dict[str, int], train: str, valid: str | None, manifest: str) -> None:
    """A split name one typo away from the train or valid split's ('trian') is left out of training: say so."""
    import difflib

    used = [s for s in (train, valid) if s]
    for name, count in splits.items():
        close = difflib.get_close_matches(name, used, n=1, cutoff=0.7) if name not in used else []
        if close:
            log.warning("%s: %d entr%s in split %r, which is not %r: left out of training (a typo?)",
                        manifest, count, "y" if count == 1 else "ies", name, close[0])


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


def load_split(manifest: Any, split: str, frontend: Any, cache_dir: Path, keep: bool = True) -> tuple[list[Any], list[np.ndarray]]:
    """Features of every readable entry of ``split`` (computed once, cached on disk).

    ``keep=False`` only fills the cache: entries already in it are not read, nothing is
    returned and unreadable files are not reported (the pass that keeps them reports them).

    Features are keyed by the decoded audio's content hash, so the same audio is never
    featurised twice and changed audio is never served stale. Finding that hash means
    decoding the file, which for 20 h of Ogg takes about 13 minutes, on every start and
    resume; so ``by-file/`` memoises it per file state (path, size, modification time,
    bounds, decoder versions), and a file unchanged since it was read is not decoded again.
    """
    torch_frontend = TorchFrontend(frontend)
    fe_json = frontend.to_json()
    sr = frontend.sample_rate
    decoder = _decoder_identity()
    cache_dir.mkdir(parents=True, exist_ok=True)
    entries, feats = [], []
    report = SkipReport()


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
            audio = data.read_entry(manifest, entry, sr, report)  # looked up per call: tests wrap it
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
                atomic_write(path, lambda handle, f=f: np.save(handle, f))
            if memo is not None:
                atomic_write(memo, lambda handle, h=h: handle.write(h.encode()))
        if keep:
            entries.append(entry)
            feats.append(np.ascontiguousarray(f, dtype=np.float32))
    if keep and report.n_skipped:
        log.warning("%s", report.summary())
    return entries, feats


def load_split_shared(manifest: Any, split: str, frontend: Any, cache_dir: Path, dist_info: Dist) -> tuple[list[Any], list[np.ndarray]]:
    """`load_split`, with the first decoding shared out between the processes of a DDP run.

    Every rank needs every entry's features, but decoding them is the slow part (several
    minutes per 20 h of Ogg/Opus on one core). So each rank first fills the shared cache
    with its share (entries ``i % world == rank``), and after a barrier every rank reads
    the whole split from it. Where ranks do not share the cache folder (nodes without a common
    disk) the second pass simply computes what it misses, so the result is the same.
    """
    if dist_info.active:
        part = manifest.select(split)
        share = dataclasses.replace(part, entries=part.entries[dist_info.rank :: dist_info.world])
        load_split(share, split, frontend, cache_dir, keep=False)
        dist_info.barrier()
    return load_split(manifest, split, frontend, cache_dir)


def _window_energies(f: np.ndarray, window: int, floor: float) -> np.ndarray:
    """[n_chunks, window, bins] band energies of the whole ``window``-frame chunks of one track (features
    ``ln(energy + floor)``), float64; none for a track shorter than a window."""
    n = len(f) // window
    energies = np.maximum(np.exp(f[: n * window].astype(np.float64)) - floor, 0.0)
    return energies.reshape(n, window, f.shape[-1])


def window_levels(feats: list[np.ndarray], window: int, floor: float) -> list[np.ndarray]:
    """Mean band energy of every whole ``window``-frame chunk of each track: [n_chunks] per track, float64;
    the measure `edgetag.training.students.Student.level_normalised` evens out."""
    return [_window_energies(f, window, floor).mean(axis=(1, 2)) for f in feats]


def level_normalised_moments(feats: list[np.ndarray], window: int, floor: float, reference: float,
                             max_gain_db: float) -> tuple[np.ndarray, np.ndarray]:
    """`feature_moments` of the training features as a level-normalising student sees them: each track cut
    into ``window``-frame chunks, each chunk brought to ``reference`` mean band energy (at most
    ``max_gain_db`` either way), one track at a time."""
    limit = 10.0 ** (max_gain_db / 10.0)
    count, total, squares = 0, 0.0, 0.0
    for f in feats:
        energies = _window_energies(f, window, floor)
        if len(energies) == 0:
            continue
        levels = energies.mean(axis=(1, 2))
        gain = np.clip(reference / np.maximum(levels, 1e-30), 1.0 / limit, limit)[:, None, None]
        x = np.log(energies * gain + floor).reshape(-1, f.shape[-1])
        count, total, squares = count + len(x), total + x.sum(0), squares + np.square(x).sum(0)
    if count == 0:
        raise ValueError(f"no training track is {window} frames long: nothing to take the moments of")
    mean = total / count
    return mean, np.sqrt(np.maximum(squares / count - np.square(mean), 0.0))


def feature_moments(feats: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per-bin mean and standard deviation over every frame of ``feats``, in float64
    one track at a time (a float64 copy of 20 h of frames would need 4 GB)."""
    count = sum(len(f) for f in feats)
    mean = sum(f.sum(0, dtype=np.float64) for f in feats) / count
    var = sum(np.square(f - mean).sum(0) for f in feats) / count
    return mean, np.sqrt(var)

