"""Builds and runs the C++ unit tests of the core (cpp_ext/tests/, one file per unit).

The core is configured out of tree with the Python binding off, so this needs
only cmake and a C++17 compiler (no Python headers, no pybind11).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
CXX_CANDIDATES = ("c++", "g++", "clang++", "cl")


def _find_compiler() -> str | None:
    cxx = os.environ.get("CXX")
    if cxx and shutil.which(cxx):
        return shutil.which(cxx)
    for name in CXX_CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


def _run(cmd: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)


def _find_binary(build_dir: Path) -> Path:
    name = "edgetag_core_tests.exe" if os.name == "nt" else "edgetag_core_tests"
    # Single-config generators put it in cpp_ext/; multi-config ones in cpp_ext/Release/.
    for candidate in (build_dir / "cpp_ext" / name, build_dir / "cpp_ext" / "Release" / name):
        if candidate.is_file():
            return candidate
    found = sorted(build_dir.rglob(name))
    if not found:
        pytest.fail(f"built, but {name} was not found under {build_dir}")
    return found[0]


def test_cpp_core_unit_tests(tmp_path: Path) -> None:
    cmake = shutil.which("cmake")
    if cmake is None:
        pytest.skip("cmake not found on PATH: cannot build the C++ core tests")
    try:
        version = _run([cmake, "--version"], timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"cmake at {cmake} does not run ({exc}): cannot build the C++ core tests")
    if version.returncode != 0:
        pytest.skip(f"cmake at {cmake} does not run: {(version.stderr or version.stdout).strip()[:200]}")
    if _find_compiler() is None:
        pytest.skip(f"no C++ compiler found on PATH (tried $CXX and {', '.join(CXX_CANDIDATES)})")

    build_dir = tmp_path / "build"
    configure = _run(
        [
            cmake, "-S", str(REPO_ROOT), "-B", str(build_dir),
            "-DEDGETAG_BUILD_PYTHON=OFF", "-DEDGETAG_BUILD_TESTS=ON", "-DCMAKE_BUILD_TYPE=Release",
        ],
        timeout=300,
    )
    assert configure.returncode == 0, f"cmake configure failed:\n{configure.stdout}\n{configure.stderr}"

    build = _run([cmake, "--build", str(build_dir), "--config", "Release", "-j2"], timeout=600)
    assert build.returncode == 0, f"cmake build failed:\n{build.stdout}\n{build.stderr}"

    binary = _find_binary(build_dir)
    result = _run([str(binary)], timeout=300)
    output = result.stdout + result.stderr
    summary = re.findall(r"^(\d+) passed, (\d+) failed$", result.stdout, flags=re.MULTILINE)
    assert result.returncode == 0, f"C++ core tests failed (exit code {result.returncode}):\n{output}"
    assert summary, f"no 'N passed, N failed' line in the test output:\n{output}"
    passed, failed = map(int, summary[-1])
    assert failed == 0, output
    assert passed > 0, output
