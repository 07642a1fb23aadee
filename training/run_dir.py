"""What the trainer writes in its run directory besides checkpoints and the product: the
resolved config (a run directory belongs to one config) and the metrics files."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
from edgetag.runtime.atomic import atomic_write_text, remove_stale_temps
from edgetag.training.config import ConfigError, TrainConfig, config_to_dict, dump_config
from edgetag.training.distributed import Dist

log = logging.getLogger(__name__)


def prepare_run_dir(run_dir: Path, config: TrainConfig, digest: str, dist_info: Dist) -> None:
    """Create ``run_dir`` (refusing one that holds another config's run) and write the config files."""
    run_dir.mkdir(parents=True, exist_ok=True)
    _check_run_dir_config(run_dir, config, digest)
    dist_info.barrier()  # every rank has checked the old config before rank 0 replaces it
    if dist_info.main:
        # a run killed mid-write (a checkpoint, the product) left its temp file: nothing reads it, remove it
        stale = remove_stale_temps(run_dir) + remove_stale_temps(run_dir / "checkpoints")
        if stale:
            log.info("removed %d temporary file(s) left by a killed run: %s", len(stale),
                     ", ".join(str(p.relative_to(run_dir)) for p in stale))
        dump_config(config, run_dir / "config.yaml")
        dump_config(config, run_dir / "config.json")
        (run_dir / "config.sha256").write_text(digest + "\n", encoding="utf-8")


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


class MetricsLog:
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
