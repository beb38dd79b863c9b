"""One run at a time per output: an exclusive lock on a job's output for the life of the run.

    with output_lock(Path("answers.jsonl")):   # a second run: InputError "another run is writing ..."
        ...

The lock is `flock` on a file beside the output (`.answers.jsonl.lock`, holding the holder's pid
for the message): the kernel releases it when its process ends, however it ends (kill -9
included), so a lock left by a dead run is simply free for the next one. The file is removed by
the run that held it, while it still holds it; a run that locked a file removed meanwhile tries
again on the new one, so two runs never hold locks on two different files for one output.
Only the driver takes it: workers (Ray, Ray Train) write through the driver or into files of
their own and never lock. Runs sharing a feature cache do not lock anything (the cache's
writes are atomic).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from .errors import InputError, resource_error


def lock_path(output: Path) -> Path:
    return output.with_name(f".{output.name}.lock")


@contextlib.contextmanager
def output_lock(output: str | Path) -> Iterator[Path]:
    output = Path(output)
    path = lock_path(output)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = _acquire(output, path)
    except OSError as exc:  # named by the output the user gave, not by our lock file
        raise resource_error(exc, output) from exc
    try:
        yield path
    finally:
        with contextlib.suppress(OSError):
            path.unlink()  # while still held: the next run locks a new file
        os.close(fd)  # releases the lock


def _acquire(output: Path, path: Path) -> int:
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise InputError(f"another run is writing {output} (pid {holder}); wait for it to end, or give "
                             "another output") from None
        except BaseException:
            os.close(fd)
            raise
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            return fd
        os.close(fd)  # its holder removed it as we locked it: lock the file now there
