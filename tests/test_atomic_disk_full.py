"""A full disk during an atomic write: a one-line error naming the folder and the free space, no temp file left."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from edgetag.runtime.atomic import DiskFullError, atomic_write


def test_enospc_becomes_a_clear_error_and_the_target_survives(tmp_path: Path) -> None:
    target = tmp_path / "model.npy"
    target.write_bytes(b"old")

    def fails(handle) -> None:
        handle.write(b"x" * 1000)
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(DiskFullError, match=r"no space left on the device holding .* while writing model\.npy"):
        atomic_write(target, fails)
    assert target.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["model.npy"]


def test_a_real_full_filesystem(tmp_path: Path) -> None:
    """A 1 MB tmpfs (root only): writing 2 MB fails with DiskFullError and leaves the folder empty."""
    folder = tmp_path / "small"
    folder.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(folder)], capture_output=True).returncode:
        pytest.skip("this machine does not allow mounting a tmpfs")
    try:
        with pytest.raises(DiskFullError, match=r"MB free after removing the partial file"):
            atomic_write(folder / "big.npy", lambda handle: np.save(handle, np.zeros(1 << 18)))
        assert list(folder.iterdir()) == []
    finally:
        subprocess.run(["umount", str(folder)], check=False)
