"""Safetensors weight files: the one place their headers are checked and the library's errors
become a CheckpointError naming the file (exit 3, one line), wherever weights are opened.

    header, data_start = read_header(path)      # checked against the file's size; no tensor read
    with open_weights(path) as handle: ...      # safetensors' safe_open, its errors ours
    state = load_weights(path)                  # every tensor

A file is whole when its 8-byte header length, its JSON header and every tensor's data offsets
fit the file, and the last tensor ends where the file does (the format has no padding after the
data): a truncated shard, a cut header ("invalid header length") or a file that is not
safetensors at all is refused before any tensor is read.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import struct
from collections.abc import Iterator
from pathlib import Path

from .errors import CheckpointError

MAX_HEADER = 100 << 20  # safetensors' own bound on the header (100 MB)
DTYPE_BYTES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "F8_E8M0": 1, "I16": 2, "U16": 2, "F16": 2,
               "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8, "C64": 8}


def broken(path: str | os.PathLike, reason: str) -> CheckpointError:
    return CheckpointError(f"{path}: broken safetensors weights ({reason})")


def read_header(path: str | os.PathLike) -> tuple[dict, int]:
    """(the header's tensor entries, the offset their data starts at), after checking the header
    and every tensor's extent against the file's size. Reads the header only."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            raw = fh.read(8)
            if len(raw) != 8:
                raise broken(path, f"{size} bytes, shorter than the 8-byte header length")
            (n,) = struct.unpack("<Q", raw)
            if n > MAX_HEADER or 8 + n > size:
                raise broken(path, f"invalid header length {n} for a file of {size} bytes")
            text = fh.read(n)
    except FileNotFoundError:
        raise CheckpointError(f"{path} does not exist") from None
    except IsADirectoryError:
        raise CheckpointError(f"{path} is a folder, not a safetensors file") from None
    try:
        header = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise broken(path, f"header is not JSON: {exc}") from None
    if not isinstance(header, dict):
        raise broken(path, "header is not a JSON object")
    header.pop("__metadata__", None)
    data = size - 8 - n
    end = 0
    for name, info in header.items():
        try:
            start, stop = (int(v) for v in info["data_offsets"])
            count = math.prod(int(d) for d in info["shape"])
            width = DTYPE_BYTES.get(str(info["dtype"]))
        except (KeyError, TypeError, ValueError):
            raise broken(path, f"tensor {name} has no valid dtype, shape and data_offsets") from None
        if not 0 <= start <= stop:
            raise broken(path, f"tensor {name} has data offsets {start}..{stop}")
        if stop > data:
            raise broken(path, f"truncated: tensor {name} ends at byte {8 + n + stop}, the file has {size}")
        if width is not None and (stop - start) != count * width:
            raise broken(path, f"tensor {name} holds {stop - start} bytes for {count} x {info['dtype']}")
        end = max(end, stop)
    if end != data:
        raise broken(path, f"{data - end} bytes after the last tensor's data")
    return header, 8 + n


def check_files(paths) -> None:
    """Every file's header and size (read_header), in order; the first broken one is the error."""
    for path in paths:
        read_header(path)


@contextlib.contextmanager
def open_weights(path: str | os.PathLike) -> Iterator:
    """safetensors' `safe_open` (PyTorch tensors on the CPU) of a checked file; an error while
    reading a tensor (the file changed under us) names the file too."""
    from safetensors import safe_open

    read_header(path)
    try:
        handle = safe_open(str(path), framework="pt", device="cpu")
    except Exception as exc:  # safetensors raises its own error types (SafetensorError)
        raise broken(path, _reason(exc)) from None
    with handle:
        try:
            yield handle
        except CheckpointError:
            raise
        except Exception as exc:
            if type(exc).__name__ == "SafetensorError":
                raise broken(path, _reason(exc)) from None
            raise


def load_weights(path: str | os.PathLike) -> dict:
    """Every tensor of a checked safetensors file, on the CPU."""
    with open_weights(path) as handle:
        return {name: handle.get_tensor(name) for name in handle.keys()}


def _reason(exc: Exception) -> str:
    return " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
