"""Tensors <-> raw little-endian bytes, dtype tags and checksums for the feature cache.

One job: turn a ``torch.Tensor`` / ``np.ndarray`` into a flat byte buffer plus a (shape, dtype tag,
checksum) description, and back, without lossy casts and with as few copies as possible.

- bf16 is stored as its raw 16-bit patterns under the tag ``"bfloat16"`` (never cast to fp32/fp16).
- Reading is zero-copy: ``torch.from_dlpack`` over the Arrow buffer (the tensor keeps the Arrow
  memory alive), unless the buffer is misaligned for the dtype, then one copy.
- Checksum: CRC-32 of each tensor's bytes (``zlib.crc32``, the polynomial of Parquet page CRCs and
  gzip). Measured on the 2-core dev VM over a 180 MB buffer (bench/cache_io.py): zlib.crc32
  6.8-7 GB/s on one core, adler32 4.0, sha256 2.0, blake2b 1.4 GB/s. zlib releases the GIL, so
  the tensors of an entry are hashed in parallel threads (a persistent pool: starting threads per
  read cost ~5 ms). Parquet page checksums (``write_page_checksum``) were measured too: they
  cost ~1/3 of warm read speed, cover only the pages (not what the decoder hands back), and
  need every reader to opt in; they stay an option (``FeatureCache(page_checksums=True)``).
  CRC-32 catches all burst errors up to 32 bits and any odd number of flipped bits: a guard
  against storage/transfer corruption, not a malicious writer (the cache is no trust boundary).
  The tag names its algorithm (``"crc32:0123abcd"``) so it can change in a later schema.
"""

from __future__ import annotations

import os
import sys
import threading
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from math import prod
from typing import Any

import numpy as np
import pyarrow as pa
import torch

CHECKSUM_ALGO = "crc32"

# dtype tag -> (torch dtype, item size). Tags are the torch dtype names without "torch.".
_TORCH_DTYPES: dict[str, torch.dtype] = {
    "float64": torch.float64,
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "int64": torch.int64,
    "int32": torch.int32,
    "int16": torch.int16,
    "int8": torch.int8,
    "uint8": torch.uint8,
    "uint16": torch.uint16,
    "uint32": torch.uint32,
    "uint64": torch.uint64,
    "bool": torch.bool,
}
DTYPE_TAGS = frozenset(_TORCH_DTYPES)
_TAG_OF_TORCH = {v: k for k, v in _TORCH_DTYPES.items()}
# Parquet stores one value per page; Arrow caps a page at 2^31 - 1 bytes.
MAX_TENSOR_BYTES = 2**31 - 1 - 2**20

_FLOAT16_MAX = 65504.0


def itemsize(tag: str) -> int:
    return torch.empty((), dtype=torch_dtype(tag)).element_size()


def torch_dtype(tag: str) -> torch.dtype:
    try:
        return _TORCH_DTYPES[tag]
    except KeyError:
        raise ValueError(f"unsupported tensor dtype {tag!r}") from None


def dtype_tag(dtype: torch.dtype) -> str:
    try:
        return _TAG_OF_TORCH[dtype]
    except KeyError:
        raise ValueError(f"unsupported tensor dtype {dtype}") from None


def checksum(buf: Any) -> str:
    """Checksum tag of a bytes-like object (``"crc32:%08x"``)."""
    return f"{CHECKSUM_ALGO}:{zlib.crc32(buf) & 0xFFFFFFFF:08x}"


_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()
_PARALLEL_BYTES = 8 << 20


def _reset_pool() -> None:  # a forked child must not use its parent's (thread-less) pool
    global _POOL
    _POOL = None


os.register_at_fork(after_in_child=_reset_pool)


def _pool() -> ThreadPoolExecutor:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1), thread_name_prefix="cache-crc")
        return _POOL


def checksums(bufs: list[Any]) -> list[str]:
    """``checksum`` of several buffers, in parallel threads when worth it (zlib releases the GIL
    on large inputs; a persistent pool, since starting threads per read costs milliseconds)."""
    if len(bufs) > 1 and sum(memoryview(b).nbytes for b in bufs) >= _PARALLEL_BYTES:
        return list(_pool().map(checksum, bufs))
    return [checksum(b) for b in bufs]


@dataclass(frozen=True)
class Encoded:
    """A tensor as a flat byte view plus what is needed to rebuild it bit-exactly."""

    data: np.ndarray  # 1-D uint8 view of the tensor memory (no copy when it was contiguous)
    shape: tuple[int, ...]
    dtype: str
    checksum: str
    cast_from: str | None = None

    @property
    def nbytes(self) -> int:
        return int(self.data.nbytes)


def _as_torch(name: str, value: Any) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        t = value.detach()
        if t.device.type != "cpu":
            t = t.cpu()
        return t
    if isinstance(value, np.ndarray):
        a = value
        if a.dtype.name == "bfloat16":  # ml_dtypes.bfloat16: keep the raw bits
            a = np.ascontiguousarray(a).view(np.uint16)
            return torch.from_numpy(a).view(torch.bfloat16)
        if not a.dtype.isnative:
            a = a.astype(a.dtype.newbyteorder("="))
        try:
            return torch.from_numpy(np.ascontiguousarray(a))
        except TypeError:
            raise ValueError(f"tensor {name!r}: unsupported numpy dtype {a.dtype}") from None
    raise ValueError(f"tensor {name!r}: expected a torch.Tensor or numpy.ndarray, got {type(value).__name__}")


def _cast(name: str, t: torch.Tensor, target: str) -> torch.Tensor:
    """Explicit, checked downcast (fp32/fp64 -> fp16/bf16). Refuses values fp16 cannot hold."""
    if target not in ("float16", "bfloat16"):
        raise ValueError(f"tensor {name!r}: cast_to must be 'float16' or 'bfloat16', got {target!r}")
    if t.dtype not in (torch.float32, torch.float64):
        if t.dtype == torch_dtype(target):
            return t
        raise ValueError(f"tensor {name!r}: cast_to={target} only applies to float32/float64, not {dtype_tag(t.dtype)}")
    if target == "float16" and t.numel():
        finite = t[torch.isfinite(t)]
        peak = float(finite.abs().max()) if finite.numel() else 0.0
        if peak > _FLOAT16_MAX:
            raise ValueError(
                f"tensor {name!r}: cannot cast to float16 without overflow (max |x| = {peak:.6g} > {_FLOAT16_MAX:g})"
            )
    return t.to(torch_dtype(target))


def encode(
    name: str, value: Any, *, cast_to: str | None = None, float_only: bool = False, with_checksum: bool = True
) -> Encoded:
    """Flatten one tensor to a uint8 view; computes its checksum. Copies only when it must
    (non-contiguous input, a device tensor, an explicit ``cast_to``). With ``float_only``,
    ``cast_to`` silently skips tensors that are not float32/float64 (a blanket option). Without
    ``with_checksum`` the checksum is left empty for the caller to fill (see ``checksums``)."""
    t = _as_torch(name, value)
    tag = dtype_tag(t.dtype)  # raises for complex, quantized...
    cast_from = None
    if float_only and tag not in ("float32", "float64"):
        cast_to = None
    if cast_to is not None and cast_to != tag:
        cast_from = tag
        t = _cast(name, t, cast_to)
        tag = dtype_tag(t.dtype)
    shape = tuple(int(s) for s in t.shape)
    t = t.contiguous()
    if sys.byteorder != "little":  # pragma: no cover - every supported platform is little-endian
        raise RuntimeError("the feature cache stores little-endian bytes; big-endian hosts are not supported")
    data = t.reshape(-1).view(torch.uint8).numpy() if t.numel() else np.empty(0, dtype=np.uint8)
    if data.nbytes > MAX_TENSOR_BYTES:
        raise ValueError(f"tensor {name!r} is {data.nbytes} bytes; one cached tensor holds at most {MAX_TENSOR_BYTES}")
    cks = checksum(data) if with_checksum else ""
    return Encoded(data=data, shape=shape, dtype=tag, checksum=cks, cast_from=cast_from)


def expected_nbytes(shape: list[int] | tuple[int, ...], tag: str) -> int:
    if any(int(s) < 0 for s in shape):
        raise ValueError(f"negative dimension in shape {list(shape)}")
    return prod(int(s) for s in shape) * itemsize(tag)


def decode(buf: pa.Buffer, shape: list[int] | tuple[int, ...], tag: str) -> torch.Tensor:
    """Rebuild a tensor over an Arrow buffer without copying (DLPack: the tensor keeps the Arrow
    memory alive). The buffers come from one Parquet read into private heap memory (never a file
    mapping), so the tensor may be used and even written like any other. ``buf.size`` must
    already be checked against shape x dtype."""
    dtype = torch_dtype(tag)
    shape = tuple(int(s) for s in shape)
    if prod(shape) == 0:
        return torch.empty(shape, dtype=dtype)
    raw = torch.from_dlpack(pa.Array.from_buffers(pa.uint8(), buf.size, [None, buf]))
    t = raw.view(dtype)
    if buf.address % t.element_size():  # misaligned for the dtype: one copy to be safe
        t = t.clone()
    return t.reshape(shape)
