"""The trainer's resumable state: ``checkpoints/state-NNNNNNNN.pt`` files (model, EMA,
regulariser, optimiser, scheduler, scaler, step and every RNG state), written atomically,
pruned to the newest ``checkpoint.keep``, and read back on start (see
`edgetag.training.trainer`, "Determinism and resuming")."""

from __future__ import annotations

import logging
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from edgetag.runtime.atomic import atomic_write
from edgetag.training.train_model import TrainModel
from torch import Tensor

log = logging.getLogger(__name__)

STATE_FORMAT = "edgetag-train-state"
STATE_VERSION = 1


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


def state_path(run_dir: Path, step: int) -> Path:
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


class ResumeError(ValueError):
    """A run folder's newest state cannot be resumed by this run (other data, another student)."""


def save_state(run_dir: Path, step: int, keep: int, digest: str, data_digest: str, world: int, model: TrainModel,
               sampler_state: dict[str, Any], generator_state: Tensor | None) -> Path:
    """Write the state after ``step`` optimiser steps, then keep only the newest ``keep`` states.

    ``data_digest``: the manifest's sha256, so that a resume on changed data is refused."""
    state = {
        "format": STATE_FORMAT,
        "version": STATE_VERSION,
        "step": step,
        "config_hash": digest,
        "manifest_sha256": data_digest,
        "world_size": world,
        "model": {k: v.detach().cpu() for k, v in model.student.state_dict().items()},
        "regulariser": None if model.regulariser is None else model.regulariser.state_dict(),
        "ema": None if model.ema is None else model.ema.state_dict(),
        "optimizer": model.optimizer.state_dict(),
        "scheduler": model.scheduler.state_dict(),
        "scaler": model.scaler.state_dict(),
        "rng": _rng_state(),
        "sampler": sampler_state,
        "augment_generator": generator_state,
    }
    path = state_path(run_dir, step)
    atomic_write(path, lambda handle: torch.save(state, handle))
    _prune(run_dir, keep)
    return path


def resume(run_dir: Path, model: TrainModel, digest: str, data_digest: str, manifest: str) -> int:
    """Load the newest readable state of ``run_dir`` into ``model`` and the RNGs; the step it
    was written after (0: nothing to resume). `ResumeError` when the state was trained on another
    manifest (``data_digest``, the sha256 of ``manifest`` now) or for another student."""
    found = latest_checkpoint(run_dir)
    if found is None:
        return 0
    path, state = found
    before = state.get("manifest_sha256")  # states written before it was recorded have none
    if before is not None and before != data_digest:
        # going on would mix two datasets in one run, and the student would name data it never saw
        raise ResumeError(f"{run_dir} holds a run trained on another manifest ({path.name}: sha256 {before[:12]}..., "
                          f"{manifest} now {data_digest[:12]}...): the data changed since the run started; "
                          "restore the manifest, or start a new --run-dir")
    if state.get("config_hash") != digest:
        log.warning("%s was written under another config hash; resuming anyway (logging changes only)", path)
    try:
        model.student.load_state_dict(state["model"])
    except RuntimeError as exc:  # a state of another student shape (copied in from another run)
        first = str(exc).strip().splitlines()[0:2]
        raise ResumeError(f"{path} does not fit this run's student ({' '.join(first)[:200]}): it comes from "
                          f"another run or config; move it out of {path.parent} or use another --run-dir") from None
    if model.regulariser is not None and state.get("regulariser") is not None:
        model.regulariser.load_state_dict(state["regulariser"])
    if model.ema is not None and state.get("ema") is not None:
        model.ema.load_state_dict(state["ema"])
    model.optimizer.load_state_dict(state["optimizer"])
    model.scheduler.load_state_dict(state["scheduler"])
    model.scaler.load_state_dict(state["scaler"])
    _set_rng_state(state["rng"])
    return int(state["step"])
