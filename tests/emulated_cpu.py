"""Run Python under an emulated AVX2-only x86-64 CPU (qemu-user, TCG), whatever CPU the tests run on.

ONNX Runtime picks its int8 kernels by instruction set, so an int8 file can
compute differently on an AVX2 machine than on the AVX-512 VNNI one it was
made on. qemu's ``-cpu Haswell`` reports AVX2 and no AVX-512 or VNNI (and qemu
7.2's TCG emulates no AVX-512 at all), so ONNX Runtime takes its AVX2 kernels
there on every host: these tests pass or fail for the same reason on every CPU.
Debian's ``qemu-user`` package provides ``qemu-x86_64`` (.ci/run installs it).
"""

from __future__ import annotations

import functools
import os
import platform
import shutil
import subprocess
import sys

import pytest

QEMU = shutil.which("qemu-x86_64")
EMULATED_CPU = "Haswell"


#: Set by .ci/run where it installed qemu-user: a missing emulator is then a failure, not a skip.
REQUIRED = os.environ.get("EDGETAG_REQUIRE_QEMU") == "1"
_PROBE = "from edgetag.runtime.verify import _cpu_features as f; c = f(); print(int(c['AVX2']), int(c['AVX512F']))"


def _unavailable(reason: str) -> None:
    if REQUIRED:
        pytest.fail(f"{reason}, and EDGETAG_REQUIRE_QEMU=1 says this machine must run the emulated-CPU tests")
    pytest.skip(reason)


@functools.cache
def require_emulator() -> str:
    """qemu-x86_64, checked to present AVX2 and no AVX-512 (CPUID, as ONNX Runtime reads it) to the guest."""
    if platform.machine() != "x86_64":
        _unavailable("the emulated-AVX2 check runs on x86-64 hosts")
    if QEMU is None:
        _unavailable("qemu-x86_64 not installed (apt-get install qemu-user)")
    assert QEMU is not None
    probe = subprocess.run([QEMU, "-cpu", EMULATED_CPU, sys.executable, "-c", _PROBE], capture_output=True, text=True,
                           timeout=300)
    if probe.returncode or probe.stdout.split() != ["1", "0"]:
        # qemu before 7.2 emulates no AVX2: its guest would run SSE kernels and prove nothing about AVX2
        _unavailable(f"qemu-x86_64 -cpu {EMULATED_CPU} does not present AVX2 without AVX-512 "
                     f"(AVX2, AVX512F = {probe.stdout.split()}; qemu >= 7.2 emulates AVX2)")
    return QEMU


def run_emulated(args: list[str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """``python ARGS`` under the emulated Haswell CPU; qemu's notes on unemulated CPUID bits are dropped."""
    qemu = require_emulator()
    done = subprocess.run([qemu, "-cpu", EMULATED_CPU, sys.executable, *args], capture_output=True, text=True,
                          timeout=timeout)
    done.stderr = "\n".join(line for line in done.stderr.splitlines() if "TCG doesn't support" not in line)
    return done
