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


def _umask(mask: int) -> int:
    return os.umask(mask)


def test_file_modes_follow_the_umask_and_a_replaced_file_keeps_its_mode(tmp_path: Path) -> None:
    """The deliberate choice: new files get 0666 minus the umask, as from any Unix tool (0644 under 022, 0600
    under 077), never mkstemp's 0600; rewriting a file keeps the mode its owner gave it."""
    old = _umask(0o022)
    try:
        assert (atomic_write(tmp_path / "index.json", lambda h: h.write(b"{}")).stat().st_mode & 0o777) == 0o644
        os.umask(0o077)
        assert (atomic_write(tmp_path / "private.pt", lambda h: h.write(b"x")).stat().st_mode & 0o777) == 0o600
        (tmp_path / "index.json").chmod(0o640)
        os.umask(0o022)
        assert (atomic_write(tmp_path / "index.json", lambda h: h.write(b"[]")).stat().st_mode & 0o777) == 0o640
    finally:
        os.umask(old)


def _writer_killed_mid_write(folder: Path, name: str, *, kill: bool) -> tuple[subprocess.Popen, Path]:
    """A real process inside atomic_write (its temp file created, nothing written yet); SIGKILLed when ``kill``."""
    import signal
    import sys
    import time

    code = ("import sys, time; from edgetag.runtime.atomic import atomic_write; "
            "atomic_write(sys.argv[1], lambda handle: time.sleep(60))")
    proc = subprocess.Popen([sys.executable, "-c", code, str(folder / name)])
    deadline = time.monotonic() + 60
    while not list(folder.glob(f".{name}.{proc.pid}.*.tmp")):
        assert time.monotonic() < deadline and proc.poll() is None, "the writer never started its write"
        time.sleep(0.05)
    if kill:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    (temp,) = folder.glob(f".{name}.{proc.pid}.*.tmp")
    return proc, temp


def test_a_kill_mid_write_leaves_a_temp_file_that_the_next_start_removes(tmp_path: Path) -> None:
    from edgetag.runtime.atomic import remove_stale_temps

    _, dead = _writer_killed_mid_write(tmp_path, "state-00000003.pt", kill=True)
    assert dead.stat().st_size == 0  # what a kill during torch.save leaves
    live, running = _writer_killed_mid_write(tmp_path, "student.pt", kill=False)
    try:
        (tmp_path / ".notes.txt").write_text("not ours")
        assert remove_stale_temps(tmp_path) == [dead]
        assert not dead.exists() and running.exists() and (tmp_path / ".notes.txt").exists()  # a live write is kept
    finally:
        live.kill()
        live.wait(timeout=30)
    assert remove_stale_temps(tmp_path) == [running]
    assert remove_stale_temps(tmp_path / "no-such-folder") == []
