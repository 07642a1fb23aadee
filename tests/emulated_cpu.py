"""Run Python under an emulated AVX2-only x86-64 CPU (qemu-user, TCG), whatever CPU the tests run on.

ONNX Runtime picks its int8 kernels by instruction set, so an int8 file can
compute differently on an AVX2 machine than on the AVX-512 VNNI one it was
made on. qemu's ``-cpu Haswell`` reports AVX2 and no AVX-512 or VNNI (and qemu
7.2's TCG emulates no AVX-512 at all), so ONNX Runtime takes its AVX2 kernels
there on every host: these tests pass or fail for the same reason on every CPU.
Debian's ``qemu-user`` package provides ``qemu-x86_64`` (.ci/run installs it).
"""

from __future__ import annotations

import platform
import shutil
import subprocess
import sys

import pytest

QEMU = shutil.which("qemu-x86_64")
EMULATED_CPU = "Haswell"


def require_emulator() -> str:
    if platform.machine() != "x86_64":
        pytest.skip("the emulated-AVX2 check runs on x86-64 hosts")
    if QEMU is None:
        pytest.skip("qemu-x86_64 not installed (apt-get install qemu-user)")
    return QEMU


def run_emulated(args: list[str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """``python ARGS`` under the emulated Haswell CPU; qemu's notes on unemulated CPUID bits are dropped."""
    qemu = require_emulator()
    done = subprocess.run([qemu, "-cpu", EMULATED_CPU, sys.executable, *args], capture_output=True, text=True,
                          timeout=timeout)
    done.stderr = "\n".join(line for line in done.stderr.splitlines() if "TCG doesn't support" not in line)
    return done
