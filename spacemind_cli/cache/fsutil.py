"""Crash-safe file operations for the feature cache: temp names, atomic publish, locks.

One job: make every file the cache exposes appear whole or not at all.

- A writer writes ``.<name>.<host>.<pid>.<random>.tmp`` in the destination directory (a dot-name
  every reader skips), flushes + fsyncs it, then ``os.replace``s it over the final name and fsyncs
  the directory. Concurrent writers of one name each own a temp file; the last replace wins and
  both versions are complete. A crash leaves at most a temp file, which ``stale_temp_files`` finds.
- Read-modify-write of small shared files (the manifest) runs under an exclusive ``fcntl.flock``
  on a lock file, so several writer processes never lose each other's updates.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import secrets
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

TEMP_SUFFIX = ".tmp"
_HOST = socket.gethostname().replace(".", "_") or "host"


def temp_name(final: Path) -> Path:
    """A fresh temp path next to ``final`` that readers ignore (leading dot, ``.tmp`` suffix)."""
    return final.with_name(f".{final.name}.{_HOST}.{os.getpid()}.{secrets.token_hex(4)}{TEMP_SUFFIX}")


def is_temp_name(name: str) -> bool:
    return name.startswith(".") and name.endswith(TEMP_SUFFIX)


def _temp_owner(name: str) -> tuple[str, int] | None:
    """(host, pid) of the writer that made temp file ``name``, or None if it does not parse."""
    parts = name[: -len(TEMP_SUFFIX)].split(".")
    if len(parts) < 4:
        return None
    try:
        return parts[-3], int(parts[-2])
    except ValueError:
        return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_stale_temp(path: Path, *, older_than: float | None, now: float | None = None) -> bool:
    """A temp file is stale when it is older than ``older_than`` seconds, or when it was made on
    this host by a process that no longer exists (a crashed writer). Writers on other hosts
    sharing the directory (NFS) are only judged by age."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return False
    if older_than is not None and (now or time.time()) - st.st_mtime > older_than:
        return True
    owner = _temp_owner(path.name)
    return owner is not None and owner[0] == _HOST and owner[1] != os.getpid() and not _pid_alive(owner[1])


def fsync_dir(path: Path) -> None:
    """fsync a directory so a rename in it survives power loss (best effort on odd filesystems)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as exc:  # e.g. EINVAL on some network filesystems
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(final: Path, write: Callable[[Path], None], *, durable: bool = True) -> None:
    """Create ``final`` atomically: ``write(temp)`` fills a fresh temp file, which is fsynced and
    renamed over ``final``. On any error the temp file is removed and the error re-raised; the
    previous ``final`` (if any) is left untouched."""
    tmp = temp_name(final)
    # Claim the name exclusively (O_EXCL) so two writers can never share a temp file.
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
    try:
        write(tmp)
        if durable:
            fsync_file(tmp)
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if durable:
        fsync_dir(final.parent)


def atomic_write_bytes(final: Path, data: bytes) -> None:
    def _write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()

    atomic_write(final, _write)


@contextlib.contextmanager
def locked(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive flock on ``lock_path`` (created if missing) for the block. Each call
    opens its own file description, so threads of one process exclude each other too."""
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
