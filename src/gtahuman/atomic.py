"""Atomic file writes: write to a temporary file beside the target, then ``os.replace``.

A crash mid-write leaves the old file (or none), never a truncated one. A write that runs out of
space raises `DiskFullError`, which names the file and the free space, whatever the writer
raised (torch.save, for one, reports a full disk as "[enforce fail at inline_container.cc] unexpected
pos" with the ENOSPC only in the exception's context).
"""
from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from pathlib import Path
from typing import IO, Iterator


_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


class DiskFullError(OSError):
    """A write ran out of disk space (or quota); the message names the file and the free space."""


def ran_out_of_space(err: BaseException) -> bool:
    """Whether ``err`` or an exception it was raised from / during is ENOSPC or EDQUOT."""
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno in _NO_SPACE:
            return True
        err = err.__cause__ or err.__context__
    return False


def disk_full_error(path: Path, err: BaseException) -> DiskFullError:
    try:
        free = f"{shutil.disk_usage(path.parent).free / 2**20:,.0f} MB free there"
    except OSError:
        free = "free space unknown"
    return DiskFullError(errno.ENOSPC, f"disk full at {path} ({free}); the write was abandoned and the "
                                       f"previous {path.name}, if any, is intact", str(path))


def _default_mode() -> int:
    """Permissions a plain ``open()`` would give (mkstemp's are 0600, unreadable to others)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file for writing; on clean exit it replaces ``path`` atomically."""
    if not any(m in mode for m in "wx"):
        raise ValueError(f"atomic_open needs a write mode, got {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode.replace("x", "w")) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _default_mode())
        os.replace(tmp, path)
    except BaseException as err:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if ran_out_of_space(err) and not isinstance(err, DiskFullError):
            raise disk_full_error(path, err) from err
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_open(path, "w") as f:
        f.write(text)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_open(path, "wb") as f:
        f.write(data)


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path`` for a writer that wants a path (np.save, PIL);
    on success it is moved over ``path`` atomically, on failure removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, _default_mode())
        os.replace(tmp, path)
    except BaseException as err:
        if ran_out_of_space(err) and not isinstance(err, DiskFullError):
            raise disk_full_error(path, err) from err
        raise
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def file_lock(path: str | os.PathLike) -> Iterator[None]:
    """An exclusive lock between processes (and threads) on this machine, held on ``path``.

    Caches built on first use (the mini world, dataset indices, crop caches) are guarded with it
    so that runs started together build each one once instead of colliding in its staging folder.
    The lock goes with the process: a killed holder never leaves it stuck. No-op without fcntl.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl  # POSIX only (see the except branch)
    except ImportError:  # not POSIX
        yield
        return
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
