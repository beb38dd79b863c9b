"""Error types and the process exit codes they map to.

Every error carries a one-line message that names its culprit (file, line, scene or question),
so the CLI can print it as is. Exit codes are part of the CLI contract (see `spacemind --help`).
"""

from __future__ import annotations

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


def resource_error(exc: OSError, path) -> ResourceError:
    """Turn an OSError from a write into a clear one-line ResourceError naming the path."""
    import errno

    reason = {
        errno.ENOSPC: "no space left on device",
        errno.EDQUOT: "disk quota exceeded",
        errno.EACCES: "permission denied",
        errno.EPERM: "operation not permitted",
        errno.EROFS: "read-only file system",
    }.get(exc.errno, exc.strerror or str(exc))
    return ResourceError(f"cannot write {path}: {reason}")


def error_class(name: str) -> type[SpacemindError]:
    """A SpacemindError subclass by name: how a worker's job-stopping failure crosses a process
    boundary as text (a Ray result) and is raised again, exit code included, on the driver."""
    for cls in (SpacemindError, *SpacemindError.__subclasses__()):
        if cls.__name__ == name:
            return cls
    return SpacemindError
