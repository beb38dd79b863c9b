"""Writing files safely: every file spacemind produces appears whole or not at all.

- Temp files: a writer writes ``.<name>.<host>.<pid>.<random>.tmp`` beside the final name (a
  dot-name every reader skips), fsyncs it, ``os.replace``s it over the final name and fsyncs the
  directory. Concurrent writers of one name each own a temp file; the last rename wins and both
  versions are complete. A crash leaves at most a temp file, which ``is_stale_temp`` recognises
  (its writer is dead, or it is old) and the next run removes.
- OS failures (disk full, read-only, permission) become ``ResourceError`` (exit 5), a path that
  cannot be a file (a folder, under a file) ``InputError`` (exit 2); the temp file is removed and
  the previous file untouched.
- Read-modify-write of small shared files (the cache manifest) runs under ``locked``.

Rows to Arrow tables and Parquet files are in ``tables.py``.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import secrets
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from .errors import resource_error

TEMP_SUFFIX = ".tmp"
HOST = socket.gethostname().replace(".", "_") or "host"
_OPEN_TEMPS: set[str] = set()  # temp files this process is writing right now


# ---------------------------------------------------------------------------------- temp files


def temp_name(final: Path) -> Path:
    """A fresh temp path next to ``final`` that readers ignore (leading dot, ``.tmp`` suffix)."""
    return final.with_name(f".{final.name}.{HOST}.{os.getpid()}.{secrets.token_hex(4)}{TEMP_SUFFIX}")


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
    return owner is not None and owner[0] == HOST and owner[1] != os.getpid() and not _pid_alive(owner[1])


def remove_quietly(path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def remove_stale_temps(path: Path) -> None:
    """Remove the temp files of `path` (`.<name>.*.tmp` beside it) left by writers that died on
    this host (kill -9, power loss), or by an earlier job of this process that could not remove
    them (e.g. the disk had turned read-only); temp files of live writers stay."""
    prefix = f".{path.name}."
    mine = f".{HOST}.{os.getpid()}."  # this process's temp files: ".<host>.<pid>."
    try:
        names = [n for n in os.listdir(path.parent) if n.startswith(prefix) and is_temp_name(n)]
    except OSError:
        return
    for name in names:
        tmp = path.parent / name
        orphan = mine in name[len(prefix) - 1 :] and str(tmp) not in _OPEN_TEMPS
        if orphan or is_stale_temp(tmp, older_than=None):
            remove_quietly(tmp)


def claim_temp(path: Path) -> tuple[int, str]:
    """Create a fresh temp file beside `path` exclusively (O_EXCL: two writers never share one);
    returns (fd, name). Call `release_temp(name)` when done with it."""
    tmp = str(temp_name(path))
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    _OPEN_TEMPS.add(tmp)
    return fd, tmp


def release_temp(tmp: str) -> None:
    _OPEN_TEMPS.discard(str(tmp))


# ---------------------------------------------------------------------------------- atomic writes


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


def fsync_file(path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_target(path: Path, *, durable: bool = True) -> Iterator[str]:
    """Yields a temp path beside `path` to write; on success it is fsynced (`durable`) and
    replaces `path` in one rename, on any failure it is removed and `path` left as it was.
    OSErrors become ResourceError (disk full, read-only, permission) or InputError (a bad path)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = claim_temp(path)
        os.close(fd)
    except OSError as exc:
        raise resource_error(exc, path) from exc
    try:
        yield tmp
        if durable:
            fsync_file(tmp)
        os.replace(tmp, path)
        if durable:
            fsync_dir(path.parent)
    except OSError as exc:
        remove_quietly(tmp)
        raise resource_error(exc, path) from exc
    except BaseException:
        remove_quietly(tmp)
        raise
    finally:
        release_temp(tmp)


def atomic_write(path: Path, write: Callable[[str], None], *, durable: bool = True) -> None:
    """write(temp_path) fills a temp file, which then replaces `path` atomically."""
    with atomic_target(path, durable=durable) as tmp:
        write(tmp)


def atomic_write_text(path: Path, write: Callable, *, durable: bool = True) -> None:
    """write(fh) into a temp text file (UTF-8) that then replaces `path` atomically."""
    with atomic_target(path, durable=durable) as tmp:
        with open(tmp, "w", encoding="utf-8") as fh:
            write(fh)


def atomic_write_bytes(path: Path, data: bytes, *, durable: bool = True) -> None:
    with atomic_target(path, durable=durable) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)


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


def json_line(obj) -> str:
    """One JSONL line, UTF-8 text kept readable; text that is not valid Unicode (file names with
    non-UTF-8 bytes reach us as lone surrogates) is written as JSON escapes instead of failing."""
    text = json.dumps(obj, ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = json.dumps(obj)
    return text + "\n"
