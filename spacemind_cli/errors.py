"""Error types and the process exit codes they map to.

Every error carries a one-line message that names its culprit (file, line, scene or question),
so the CLI can print it as is. Exit codes are part of the CLI contract (see `spacemind --help`).
"""

from __future__ import annotations

import errno

EXIT_OK = 0
EXIT_PARTIAL = 1  # the job ran; some scenes or questions failed (listed in *.errors.jsonl)
EXIT_USAGE = 2  # bad input that stops the job before it starts (missing root, empty question file)
EXIT_CHECKPOINT = 3  # checkpoint missing, incomplete or unsafe
EXIT_CACHE = 4  # cache corrupt or refused
EXIT_RESOURCE = 5  # disk full, permission denied, read-only output
EXIT_INTERRUPTED = 130


class SpacemindError(Exception):
    """Base class: a user-facing, one-line error."""

    exit_code = EXIT_USAGE

    def __init__(self, message: str):
        # A newline in a message would break the one-line contract (and *.errors.jsonl greps).
        super().__init__(" ".join(str(message).split()))

    @property
    def message(self) -> str:
        return str(self)


class InputError(SpacemindError):
    """Bad user input that stops the job (missing root, unreadable question file...)."""


class SceneError(SpacemindError):
    """One scene cannot be read; the job goes on with the others."""

    exit_code = EXIT_PARTIAL


class QuestionError(SpacemindError):
    """One question is malformed; the job goes on with the others."""

    exit_code = EXIT_PARTIAL


class CheckpointError(SpacemindError):
    exit_code = EXIT_CHECKPOINT


class CacheError(SpacemindError):
    exit_code = EXIT_CACHE


class ResourceError(SpacemindError):
    """Out of disk, permission denied, read-only output directory."""

    exit_code = EXIT_RESOURCE


# Why a write failed, in words, for the errnos a user meets: the disk or the system refused it...
_RESOURCE_REASONS = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EROFS: "read-only file system",
}
# ...or the path itself is wrong, which no room or permission would fix: bad input (exit 2).
_PATH_REASONS = {
    errno.EISDIR: "it is a folder",
    errno.ENOTDIR: "part of its path is a file, not a folder",
    errno.EEXIST: "part of its path is a file, not a folder",  # mkdir(exist_ok=True) met a file
    errno.ENAMETOOLONG: "its name is too long",
    errno.ELOOP: "too many levels of symbolic links",
}


def os_reason(exc: OSError) -> str:
    """The one-line reason of an OSError, without the file name Python appends to str(exc)."""
    known = _RESOURCE_REASONS.get(exc.errno) or _PATH_REASONS.get(exc.errno) if exc.errno is not None else None
    return known or exc.strerror or str(exc)


def resource_error(exc: OSError, path) -> InputError | ResourceError:
    """Turn an OSError from a write into a clear one-line error naming the path: an InputError
    (exit 2) when the path is wrong (a folder, under a file, too long), else a ResourceError
    (exit 5: disk full, permission denied, read-only, an I/O error)."""
    cls = InputError if exc.errno in _PATH_REASONS else ResourceError
    return cls(f"cannot write {path}: {os_reason(exc)}")


def os_error(exc: OSError) -> InputError | ResourceError:
    """An OSError that no layer turned into a spacemind error, as one line naming its file:
    ResourceError for a full, read-only or forbidden disk, InputError for anything else."""
    cls = ResourceError if exc.errno in _RESOURCE_REASONS else InputError
    where = f"{exc.filename}: " if exc.filename is not None else ""
    return cls(f"{where}{os_reason(exc)}")


def json_problem(exc) -> str:
    """A json.JSONDecodeError's reason and column, e.g. "Expecting value at column 3". Some of
    Python's messages already end in "at" ("Invalid control character at"): said once, not twice."""
    return f"{exc.msg.removesuffix(' at')} at column {exc.colno}"


def error_class(name: str) -> type[SpacemindError]:
    """A SpacemindError subclass by name: how a worker's job-stopping failure crosses a process
    boundary as text (a Ray result) and is raised again, exit code included, on the driver."""
    classes: list[type[SpacemindError]] = [SpacemindError, *SpacemindError.__subclasses__()]
    for cls in classes:
        if cls.__name__ == name:
            return cls
    return SpacemindError
