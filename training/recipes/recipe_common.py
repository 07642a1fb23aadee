"""What the recipes share: running a step, the teacher-cache command, which rows a split holds,
writing MIDI, rendering it with fluidsynth."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shlex
import struct
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

SOUNDFONTS = ("/usr/share/sounds/sf2/FluidR3_GM.sf2", "/usr/share/sounds/sf2/default-GM.sf2")
TICKS_PER_BEAT = 480
TEMPO_US = 500_000  # 120 bpm: 960 ticks per second
TICKS_PER_S = TICKS_PER_BEAT * 1_000_000 // TEMPO_US


def run_step(cmd: Sequence[str], log: Path | None = None, *, env: dict[str, str] | None = None) -> float:
    """Print and run one step (its output to ``log`` if given, appended); raise on failure; return the wall time."""
    print("$", " ".join(shlex.quote(c) for c in cmd), flush=True)
    full_env = None if env is None else {**os.environ, **env}
    t0 = time.perf_counter()
    if log is None:
        subprocess.run(list(cmd), check=True, env=full_env)
    else:
        with open(log, "a") as f:
            subprocess.run(list(cmd), check=True, stdout=f, stderr=subprocess.STDOUT, env=full_env)
    return time.perf_counter() - t0


def teach_command(procs: int) -> list[str]:
    """The `edgetag teach` command, under torchrun with ``procs`` processes when more than one
    (each takes a slice of the entries; run them with OMP_NUM_THREADS=1, one per core)."""
    if procs <= 1:
        return ["edgetag", "teach"]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={procs}",
            "-m", "edgetag.runtime.cli", "teach"]


def split_rows_sha1(manifest: str | Path, split: str) -> str:
    """sha1 over a JSONL manifest's lines of ``split``: which rows a teacher cache or an
    evaluation covered, so that adding held-out rows makes a recipe measure them again."""
    digest = hashlib.sha1()
    for line in Path(manifest).read_text(encoding="utf-8").splitlines():
        if line.strip() and json.loads(line).get("split") == split:
            digest.update(line.encode() + b"\n")
    return digest.hexdigest()


def _vlq(n: int) -> bytes:
    out = [n & 0x7F]
    n >>= 7
    while n:
        out.append(0x80 | (n & 0x7F))
        n >>= 7
    return bytes(reversed(out))


def write_midi(path: Path, events: list[tuple[int, int, bytes]]) -> None:
    """Format-0 MIDI file from (tick, order, message bytes); order breaks ties (offs before ons)."""
    track = bytearray(b"\x00\xff\x51\x03" + TEMPO_US.to_bytes(3, "big"))
    now = 0
    for tick, _, msg in sorted(events, key=lambda e: (e[0], e[1])):
        track += _vlq(tick - now) + msg
        now = tick
    track += b"\x00\xff\x2f\x00"
    path.write_bytes(b"MThd" + struct.pack(">IHHH", 6, 0, 1, TICKS_PER_BEAT) + b"MTrk" + struct.pack(">I", len(track)) + track)


def render_clips(events: list[tuple[int, int, bytes]], n_clips: int, seconds: float, slot: float, *, soundfont: str,
                 rate: int, tmp: Path, name: str, rng: random.Random, level_db: tuple[float, float],
                 fluidsynth_args: Sequence[str] = ()) -> list[np.ndarray]:
    """Render clips laid out every ``slot`` seconds in one MIDI file (one fluidsynth call for all),
    then cut them apart: ``seconds`` each, mono float32, peak at a random level in ``level_db`` dBFS."""
    mid, wav = tmp / f"{name}.mid", tmp / f"{name}.wav"
    write_midi(mid, events)
    cmd = ["fluidsynth", "-ni", "-q", *fluidsynth_args, "-g", "0.5", "-r", str(rate), "-F", str(wav), soundfont, str(mid)]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import soundfile as sf

    audio, sr = sf.read(str(wav), dtype="float32", always_2d=True)
    if sr != rate:
        raise RuntimeError(f"fluidsynth wrote {sr} Hz, asked for {rate}")
    audio = audio.mean(axis=1)
    n = round(seconds * rate)
    out = []
    for j in range(n_clips):
        s = round(j * slot * rate)
        x = np.zeros(n, dtype=np.float32)
        seg = audio[s : s + n]
        x[: len(seg)] = seg
        peak = float(np.abs(x).max())
        if peak > 0:
            x *= 10 ** (rng.uniform(*level_db) / 20) / peak  # random level, never clipping
        out.append(x)
    return out
