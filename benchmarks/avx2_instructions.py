"""Instructions per model call on ONNX Runtime's AVX2 kernels: a proxy where no AVX2-only CPU is at hand.

    python -m edgetag.benchmarks.avx2_instructions --model music-tags --model music-tags-int8 [--calls 300]

ONNX Runtime picks its kernels (MLAS) from the CPU's features when it loads. Under valgrind, which
implements AVX2 but not AVX-512 or VNNI and hides them from the program, it picks the kernels an
AVX2-only x86-64 gets (a program that used AVX-512 there would stop on an unhandled instruction). Each
model runs in two processes under ``valgrind --tool=callgrind``: one that loads it and makes one call
(ONNX Runtime's first call does one-time work), one that makes ``--calls`` more, on random features the
shape of a stream's call; the difference of their instruction counts over ``--calls`` is one call's.

Instruction counts are not time: AVX2 int8 kernels spend three instructions (vpmaddubsw, vpmaddwd,
vpaddd) per 32 multiply-adds where fp32 spends four FMAs, and memory traffic differs; read a ratio as a
hint of what an AVX2 CPU will show, and time it on one when you can. Needs valgrind (Debian's
``valgrind``); about a minute per process on a 2-core VM.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

_CALLS_SCRIPT = """
import sys
import numpy as np
from edgetag.runtime.model import load_model
model = load_model(sys.argv[1], threads=1)
card = model.card
x = np.random.default_rng(0).standard_normal((1, card.frames_per_call, card.frontend.n_bins)).astype(np.float32) - 4
states = model.initial_state(1)
for _ in range(int(sys.argv[2])):
    if card.streaming_mode == "window":
        model.run(x)
    else:
        _, states = model.run(x, states)
"""


def instructions(model: str, calls: int, work: Path) -> int:
    """Instructions (callgrind's Ir) of a process that loads ``model`` and makes ``calls`` calls."""
    out = work / f"callgrind.{re.sub(r'[^A-Za-z0-9_.-]', '_', model)}.{calls}"
    done = subprocess.run(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, "-c", _CALLS_SCRIPT, model,
         str(calls)],
        capture_output=True, text=True, check=False, env={**os.environ, "OMP_NUM_THREADS": "1"})
    found = re.search(r"Collected : (\d+)", done.stderr)
    if done.returncode != 0 or not found:
        raise RuntimeError(f"valgrind on {model} failed (exit {done.returncode}): {done.stderr.strip()[-600:]}")
    return int(found.group(1))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", action="append", required=True,
                   help="a built-in model name or an .onnx file (repeat: e.g. music-tags and music-tags-int8)")
    p.add_argument("--calls", type=int, default=300, help="model calls in the measured process (default 300)")
    args = p.parse_args(argv)
    if shutil.which("valgrind") is None:
        print("avx2_instructions: valgrind is not installed (apt-get install valgrind)", file=sys.stderr)
        return 2
    if args.calls < 1:
        p.error("--calls must be >= 1")
    from edgetag.runtime.models import resolve_model

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.model:
            path = str(resolve_model(name))
            base, loaded = instructions(path, 1, Path(tmp)), instructions(path, 1 + args.calls, Path(tmp))
            per_call = (loaded - base) / args.calls
            rows.append((name, per_call))
            print(f"{name}: {per_call / 1e6:.3f} M instructions per call ({args.calls} calls; AVX2 kernels)",
                  flush=True)
    first = rows[0][1]
    for name, per_call in rows[1:]:
        print(f"{name} / {rows[0][0]}: {per_call / first:.2f}x the instructions")
    return 0


if __name__ == "__main__":
    sys.exit(main())
