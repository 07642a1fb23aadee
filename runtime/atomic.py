"""Atomic file writes: a reader sees the old file or the new one, never half of one.

Every file edgetag must not lose or corrupt when a run is killed (checkpoints,
cache shards and indexes, manifests) is written through `atomic_write`: a
temporary file in the same folder, flushed and fsynced, renamed over the
target, then the folder fsynced so the rename itself survives a crash.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import IO, BinaryIO


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Make a rename in ``path`` durable (best effort: not every filesystem allows it)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write(path: str | os.PathLike[str], write: Callable[[BinaryIO], None]) -> Path:
    """Call ``write(handle)`` on a temporary file, then move it over ``path``.

    On any error (or a kill) the target keeps its previous content and the
    temporary file is removed (or, after a kill, left as a dot-file that no
    reader opens and that `remove_stale_temps` removes: its name carries the
    writer's pid).

    File modes are deliberately those of any Unix tool: a new file gets
    0666 minus the umask (0644 under the usual 022; 0600 under 077 for
    private runs), a replaced file keeps its mode; never mkstemp's 0600.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_temp(path)
    try:
        if path.exists():  # a replaced file keeps the mode its owner gave it
            with contextlib.suppress(OSError):
                os.fchmod(fd, path.stat().st_mode & 0o7777)
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        written = _size(tmp)
        full = out_of_space(exc, path.parent)  # judged before the partial file frees its space
        Path(tmp).unlink(missing_ok=True)
        if full:
            raise disk_full(path.parent, f"{path.name} ({written / 1e6:.1f} MB written when it failed)") from exc
        raise
    fsync_dir(path.parent)
    return path


def _create_temp(path: Path) -> tuple[int, str]:
    """A new, empty ``.NAME.PID.XXXXXXXX.tmp`` next to ``path``, created 0666 so the kernel applies the
    caller's umask at this moment, as open() would (mkstemp would make it 0600)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        try:
            return os.open(tmp, flags, 0o666), str(tmp)
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, f"no free temporary name next to {path}")


class DiskFullError(OSError):
    """A write that ran out of space; its partial file has been removed and the target is unchanged."""


def disk_full(folder: Path, what: str, advice: str = "free some space and run again") -> DiskFullError:
    """The error for a write of ``what`` into ``folder`` that ran out of space (its partial file already removed)."""
    return DiskFullError(
        errno.ENOSPC,
        f"no space left on the device holding {folder} ({_free_bytes(folder) / 1e6:.1f} MB free after removing the "
        f"partial file) while writing {what}: {advice}",
    )


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def _free_bytes(folder: Path) -> int:
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return 0


def out_of_space(exc: BaseException, folder: Path) -> bool:
    """Whether a failed write ran out of space: ENOSPC in the exception or what it was raised from
    (torch.save raises its own error on top of it), or a short write ("N requested and M written",
    errno unset: numpy, torch) on a device with under 16 MiB free. Call it before removing the partial file."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            break
        if isinstance(seen, OSError) and seen.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        seen = seen.__cause__ or seen.__context__
    return "requested and" in str(exc) and "written" in str(exc) and _free_bytes(folder) < 16 << 20


#: ``.TARGET.PID.XXXXXXXX.tmp``: atomic_write's temporary files (mkstemp adds 8 characters); PID absent in
#: files from before the pid was recorded.
_TEMP_NAME = re.compile(r"^\.(?P<target>.+?)(?:\.(?P<pid>\d+))?\.[A-Za-z0-9_]{8}\.tmp$")


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists, under another user
        return True
    return True


def remove_stale_temps(folder: str | os.PathLike[str], target: str | None = None) -> list[Path]:
    """Remove the temporary files that killed `atomic_write` calls left in ``folder``; returns them.

    A temp file whose writer (the pid in its name) still runs on this machine is kept: it
    may be a write in progress. Call it when a run starts, before it writes. ``target``: only
    the temps of that file name, and only those that carry their writer's pid (a folder the user
    chose may hold other programs' dot-files that look alike).
    """
    removed = []
    with contextlib.suppress(FileNotFoundError):
        for entry in Path(folder).iterdir():
            match = _TEMP_NAME.match(entry.name)
            if not match or not entry.is_file() or (match["pid"] and _alive(int(match["pid"]))):
                continue
            if target is not None and (match["target"] != target or not match["pid"]):
                continue
            with contextlib.suppress(FileNotFoundError):
                entry.unlink()
                removed.append(entry)
    return removed


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    return atomic_write(path, lambda handle: handle.write(data))


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


class ReplacingTextFile:
    """A text file written next to ``path`` (``handle``) that `commit` moves over it, fsynced; until then the
    old file stays as it was, and `discard` removes the new one. For outputs written as a run goes (``tag -o``)
    that must not be emptied by a run that writes nothing. A symbolic link is followed: its target is replaced
    and the link stays a link. The folder must exist (commands make it, saying so). Use `open_text_output`,
    which also writes into FIFOs and devices."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path).resolve() if Path(path).is_symlink() else Path(path)
        fd, self._tmp = _create_temp(self.path)
        if self.path.exists():  # a replaced file keeps the mode its owner gave it
            with contextlib.suppress(OSError):
                os.fchmod(fd, self.path.stat().st_mode & 0o7777)
        self.handle = os.fdopen(fd, "w", encoding="utf-8")

    def commit(self) -> Path:
        try:
            self.handle.flush()
            os.fsync(self.handle.fileno())
            self.handle.close()
            os.replace(self._tmp, self.path)
        except BaseException:
            self.discard()
            raise
        fsync_dir(self.path.parent)
        return self.path

    def discard(self) -> None:
        with contextlib.suppress(OSError):
            self.handle.close()
        Path(self._tmp).unlink(missing_ok=True)

    def keep_as(self, path: str | os.PathLike[str]) -> Path:
        """Move what was written to ``path`` instead (a run cut short: ``X.partial``), leaving ``self.path`` as it
        was; the writer is closed. An existing file there is never replaced (it is what an earlier run kept):
        the first free name of ``X.partial``, ``X.partial.1``, ``X.partial.2``, ... is used and returned."""
        try:
            self.handle.flush()
            os.fsync(self.handle.fileno())
            self.handle.close()
            kept = _move_to_free_name(Path(self._tmp), Path(path))
        except BaseException:
            self.discard()
            raise
        fsync_dir(kept.parent)
        return kept


def _move_to_free_name(source: Path, target: Path, tries: int = 1000) -> Path:
    """Rename ``source`` to ``target``, or to ``target.1``, ``target.2``, ... when taken, never replacing a file.

    A hard link claims the name atomically (two runs cut at once cannot take the same one); where the
    filesystem has no hard links, a name that does not exist yet is taken with a rename.
    """
    for i in range(tries):
        candidate = target if i == 0 else target.with_name(f"{target.name}.{i}")
        try:
            os.link(source, candidate)
        except FileExistsError:
            continue
        except OSError:  # no hard links here (some network and FUSE filesystems)
            if os.path.lexists(candidate):  # a dangling link is taken too
                continue
            os.rename(source, candidate)
            return candidate
        source.unlink()
        return candidate
    raise FileExistsError(errno.EEXIST, f"{target} and {tries - 1} numbered names after it are all taken")


def hold_lock(path: Path, busy: Callable[[str], OSError]) -> IO[str]:
    """An exclusive advisory lock on the file ``path`` (made if missing), held while the returned open file is
    (close it, or exit, to release); the file names this process. When another process holds it, raises
    ``busy(holder)``, ``holder`` being what that process wrote ("pid N"). POSIX ``flock``: a killed holder's
    lock goes with it, so no stale lock ever needs removing."""
    import fcntl

    handle = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - held open by the caller
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise busy(holder) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()}")
    handle.flush()
    return handle


class StreamingTextFile:
    """`ReplacingTextFile`'s interface over a plain ``open(path, "w")``: for a FIFO or a device (``/dev/stdout``,
    ``/dev/null``), which must be written into, never replaced by a regular file. `discard` only closes."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.handle = open(self.path, "w", encoding="utf-8")  # noqa: SIM115 - closed by commit or discard

    def commit(self) -> Path:
        self.handle.close()
        return self.path

    def discard(self) -> None:
        with contextlib.suppress(OSError):
            self.handle.close()


def check_output_path(path: str | os.PathLike[str], inputs: tuple[str | os.PathLike[str], ...] = ()) -> None:
    """Refuses, before anything is written, an output path that is a folder, lies under a file, or is one of
    ``inputs`` (the files the command reads: writing there would destroy its own input), with an `OSError`
    whose ``strerror`` says what to do."""
    target = Path(path)
    if target.is_symlink():
        try:
            target.resolve(strict=True)
        except FileNotFoundError:
            pass  # a link to a file still to be written
        except (OSError, RuntimeError):  # RuntimeError: a loop, before Python 3.13
            raise OSError(errno.ELOOP, f"{target} is a symbolic link that leads round in a loop") from None
    if target.is_dir():
        raise IsADirectoryError(errno.EISDIR, f"{target} is a folder: give a file name to write into (e.g. "
                                f"{target / 'out.jsonl'})")
    folder = next((p for p in target.parents if p.exists()), None)  # the nearest one there already
    if folder is not None and not folder.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, f"{folder} is a file, not a folder, so {target} cannot be "
                                 "written: give another path")
    for given in inputs if target.exists() else ():
        try:
            same = os.path.samefile(target, given)
        except OSError:  # an input that does not exist (its own error comes when it is read)
            continue
        if same:
            alias = f" ({given})" if os.fspath(given) != os.fspath(target) else ""
            raise FileExistsError(errno.EEXIST, f"{target} is also an input file{alias}: writing there would "
                                  "destroy it; give another output file")


def is_special_file(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` (or what its link points to) exists and is not a regular file or a folder: a FIFO, a
    device (``/dev/stdout``, ``/dev/null``) or a socket, which a writer must write into, never replace."""
    target = Path(path)
    return target.exists() and not target.is_file() and not target.is_dir()


def open_text_output(path: str | os.PathLike[str],
                     inputs: tuple[str | os.PathLike[str], ...] = ()) -> ReplacingTextFile | StreamingTextFile:
    """The writer for an output file a command writes as it runs and commits at its end (``tag -o``): a regular
    file (a new one, or a link to one) is written beside it and replaces it on `commit` (`ReplacingTextFile`); a
    FIFO or a device is written into (`StreamingTextFile`). `check_output_path` first."""
    check_output_path(path, inputs)
    return StreamingTextFile(path) if is_special_file(path) else ReplacingTextFile(path)
