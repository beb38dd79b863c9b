"""The file format of one feature-cache entry: a one-row, one-row-group Parquet file.

One job: turn (key, meta, tensors, fingerprint) into an Arrow table, and a file back into exactly
what was written, or refuse it. Columns, scalar columns first, then one raw-bytes blob per tensor::

    key, scene_key, dataset, scene_name, source_path, frame_indices, num_frames, requested_frames,
    image_sizes, dtype, fingerprint, schema_version, created, spacemind_version, tensor_names,
    nbytes, meta_json, meta_checksum,
    <t>__shape list<int64>, <t>__dtype string, <t>__checksum string   (for each tensor t)
    <t> large_binary                                                  (for each tensor t)

The Parquet key-value metadata repeats the key, fingerprint, meta and every tensor's
(shape, dtype, checksum) (``spacemind.*``), so listing reads only footers.

Reading trusts nothing it has not checked (``read_entry``): every column has the Arrow type it
was written with, every value decodes to the Python type it must have, the meta matches its
checksum, the row's tensor list and specs equal the footer's independent copy (so a damaged
`tensor_names` cannot make a tensor vanish silently), and every tensor's bytes match their
CRC-32. Any failure, whatever exception the damage provokes inside pyarrow, is ``Corrupt``;
but not running out of memory (MemoryError, raised as is) or an error of the operating system
(an OSError with an errno: ResourceError), which say nothing about the file's bytes: such an
entry must not be recomputed or pruned as bad.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from spacemind_cli.cache import tensors as tcodec
from spacemind_cli.errors import ResourceError
from spacemind_cli.version import __version__ as SPACEMIND_VERSION

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
LAYOUT = "parquet-entry-per-file"
KV = "spacemind."
TENSOR_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")

# Well-known meta keys with a typed column each (nullable, same type in every entry).
META_COLUMNS: list[tuple[str, pa.DataType]] = [
    ("scene_key", pa.string()),
    ("dataset", pa.string()),
    ("scene_name", pa.string()),
    ("source_path", pa.string()),
    ("frame_indices", pa.list_(pa.int64())),
    ("num_frames", pa.int64()),
    ("requested_frames", pa.int64()),
    ("image_sizes", pa.list_(pa.list_(pa.int64()))),
    ("dtype", pa.string()),
]
STORE_COLUMNS: list[tuple[str, pa.DataType]] = [
    ("fingerprint", pa.string()),
    ("schema_version", pa.int32()),
    ("created", pa.float64()),
    ("spacemind_version", pa.string()),
    ("tensor_names", pa.list_(pa.string())),
    ("nbytes", pa.int64()),
    ("meta_json", pa.string()),
    ("meta_checksum", pa.string()),
]
RESERVED = {"key"} | {n for n, _ in STORE_COLUMNS} | {n for n, _ in META_COLUMNS}
_SHAPE, _DTYPE, _CHECKSUM = "__shape", "__dtype", "__checksum"
# Every scalar column's Arrow type, as written and as checked on reading: the one place it is said.
_TYPES: dict[str, pa.DataType] = {"key": pa.string(), **dict(STORE_COLUMNS)}
_SPEC_TYPES = {_SHAPE: pa.list_(pa.int64()), _DTYPE: pa.string(), _CHECKSUM: pa.string()}


class Corrupt(Exception):
    """An entry that exists but cannot be trusted; ``str`` is the one-line reason."""


def short(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def dump_json(obj: Any, what: str) -> str:
    try:
        return json.dumps(obj, default=json_default, sort_keys=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what} must hold only scalars, strings and lists: {short(exc)}") from None


def _utf8(text: str) -> bool:
    """False for text Arrow cannot store: lone surrogates, e.g. a file name that is not UTF-8."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _fits(value: Any, typ: pa.DataType) -> bool:
    """Whether ``value`` converts to ``typ`` exactly (pyarrow alone would truncate 1.5 to 1)."""
    if pa.types.is_list(typ):
        return isinstance(value, list) and all(v is None or _fits(v, typ.value_type) for v in value)
    if pa.types.is_string(typ):
        return isinstance(value, str) and _utf8(value)
    if pa.types.is_int64(typ):
        return isinstance(value, int) and not isinstance(value, bool) and -(2**63) <= value < 2**63
    return False


def _leaf_paths(f: pa.Field) -> list[str]:
    """Parquet column paths of an Arrow field (per-column writer options are keyed by them)."""
    t = f.type
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return [f"{f.name}.list.{p}" for p in _leaf_paths(pa.field("element", t.value_type))]
    return [f.name]


def check_tensor_name(name: Any) -> None:
    if not isinstance(name, str) or not TENSOR_NAME_RE.match(name) or "__" in name:
        raise ValueError(f"invalid tensor name {name!r} (identifier without '__')")
    if name in RESERVED:
        raise ValueError(f"tensor name {name!r} is a reserved column name")


# ---------------------------------------------------------------------------------------- write


def build_table(key: str, meta: Mapping[str, Any], enc: dict[str, tcodec.Encoded], fingerprint: str) -> pa.Table:
    if not isinstance(meta, Mapping):
        raise ValueError(f"meta must be a dict, got {type(meta).__name__}")
    for k in meta:
        if not isinstance(k, str):
            raise ValueError(f"meta keys must be strings, got {k!r}")
    if "key" in meta and meta["key"] != key:
        raise ValueError(f"meta['key'] = {meta['key']!r} differs from the entry key {key!r}")
    if "fingerprint" in meta and meta["fingerprint"] != fingerprint:
        raise ValueError(f"meta['fingerprint'] = {meta['fingerprint']!r} differs from fingerprint={fingerprint!r}")
    meta_json = dump_json(dict(meta), "meta")
    plain = json.loads(meta_json)  # what readers will get back: tuples -> lists, numpy -> python

    cols: dict[str, pa.Array] = {"key": pa.array([key], _TYPES["key"])}
    for name, typ in META_COLUMNS:
        value = plain.get(name)
        if name == "num_frames" and value is None and isinstance(plain.get("frame_indices"), list):
            value = len(plain["frame_indices"])
        if value is None or _fits(value, typ):
            cols[name] = pa.array([value], typ)
        else:  # the typed column is an index for SQL readers; meta_json keeps the value exactly
            log.warning("meta[%r] = %.80r does not fit column type %s; the column is left null", name, value, typ)
            cols[name] = pa.nulls(1, typ)
    # Only a caller-supplied time goes into the file: identical inputs must give identical
    # bytes (Ray and local runs, reruns). When the entry was written is the file's mtime.
    created = plain.get("created")
    if not isinstance(created, (int, float)) or isinstance(created, bool):
        created = None
    store = {
        "fingerprint": fingerprint,
        "schema_version": SCHEMA_VERSION,
        "created": None if created is None else float(created),
        "spacemind_version": str(plain.get("spacemind_version", SPACEMIND_VERSION)),
        "tensor_names": list(enc),
        "nbytes": sum(e.nbytes for e in enc.values()),
        "meta_json": meta_json,
        "meta_checksum": tcodec.checksum(meta_json.encode()),
    }
    cols.update((name, pa.array([store[name]], typ)) for name, typ in STORE_COLUMNS)
    for name, e in enc.items():
        for suffix, value in ((_SHAPE, list(e.shape)), (_DTYPE, e.dtype), (_CHECKSUM, e.checksum)):
            cols[f"{name}{suffix}"] = pa.array([value], _SPEC_TYPES[suffix])
    for name, e in enc.items():  # zero-copy: the blob's data buffer is the tensor's memory
        offsets = pa.py_buffer(np.array([0, e.nbytes], dtype=np.int64))
        cols[name] = pa.Array.from_buffers(pa.large_binary(), 1, [None, offsets, pa.py_buffer(e.data)])

    tensors_kv = {
        n: {"shape": list(e.shape), "dtype": e.dtype, "checksum": e.checksum, "nbytes": e.nbytes}
        | ({"cast_from": e.cast_from} if e.cast_from else {})
        for n, e in enc.items()
    }
    kv = {
        f"{KV}schema_version": str(SCHEMA_VERSION),
        f"{KV}layout": LAYOUT,
        f"{KV}key": key,
        f"{KV}fingerprint": fingerprint,
        f"{KV}version": SPACEMIND_VERSION,
        f"{KV}meta": meta_json,
        f"{KV}tensors": json.dumps(tensors_kv, separators=(",", ":")),
    }
    if created is not None:
        kv[f"{KV}created"] = repr(float(created))
    return pa.table(cols).replace_schema_metadata(kv)


def write_options(table: pa.Table, tensor_names: Iterable[str], compression: str | None,
                  compression_level: int | None, page_checksums: bool) -> dict:
    blobs = set(tensor_names)
    scalar_paths = [p for f in table.schema if f.name not in blobs for p in _leaf_paths(f)]
    codec = compression or "none"
    opts: dict[str, Any] = dict(
        row_group_size=1,
        use_dictionary=scalar_paths,  # never on tensor blobs
        write_statistics=scalar_paths,  # min/max of a 200 MB blob is useless and costs a scan
        compression={p: "zstd" for p in scalar_paths} | {n: codec for n in blobs},
        write_page_checksum=page_checksums,
        store_schema=True,
    )
    if compression and compression_level is not None:
        opts["compression_level"] = {n: compression_level for n in blobs}
    return opts


# ---------------------------------------------------------------------------------------- read


def raise_unless_damage(exc: Exception, path: Path) -> None:
    """Raise `exc` as what it is when it says nothing about the file's bytes, so that a good entry
    is neither recomputed nor pruned as bad: MemoryError (pyarrow's ArrowMemoryError too) as is;
    an OSError with an errno (permissions, an I/O error, too many open files) as a ResourceError.
    Returns for anything else: Arrow's own IO and parse errors on a damaged file carry no errno."""
    if isinstance(exc, MemoryError):
        raise exc
    if isinstance(exc, OSError) and exc.errno is not None:
        reason = "permission denied" if isinstance(exc, PermissionError) else exc.strerror or short(exc)
        raise ResourceError(f"cannot read {path}: {reason}") from exc


def footer_kv(md: pq.FileMetaData) -> dict[str, str]:
    return {k.decode(errors="replace"): v.decode(errors="replace") for k, v in (md.metadata or {}).items()}


def read_entry(
    path: Path,
    key: str,
    *,
    fingerprint: str | None = None,
    tensor_names: Iterable[str] | None = None,
    page_checksums: bool = False,
    verify_data: bool = True,
) -> tuple[dict, dict[str, torch.Tensor]]:
    """Read and fully verify one entry: exactly the meta and tensors that were written.
    ``verify_data=False`` skips the tensors' checksums only (every other check stays): for a reader
    that verified the same file earlier in its run, such as training, which reads a scene every
    epoch.

    Raises FileNotFoundError when absent, MemoryError as is, ResourceError when the system
    cannot read it (permissions, an I/O error, too many open files: an OSError with an errno),
    and ``Corrupt`` for anything else wrong with the file, including entries of another schema and,
    when given, entries made by other encoder weights (``fingerprint``) or holding another set of
    tensors than the caller needs (``tensor_names``)."""
    try:
        with pa.OSFile(str(path)) as f:  # one open: a concurrent replace cannot mix two files
            pf = pq.ParquetFile(f, pre_buffer=True, page_checksum_verification=page_checksums)
            md = pf.metadata
            kv = footer_kv(md)
            version = kv.get(f"{KV}schema_version")
            if version is None:
                raise Corrupt("not a spacemind cache entry (no schema version in its metadata)")
            if version != str(SCHEMA_VERSION):
                raise Corrupt(f"schema version {version}, this spacemind reads version {SCHEMA_VERSION}")
            if md.num_row_groups != 1 or md.num_rows != 1:
                raise Corrupt(f"{md.num_row_groups} row groups / {md.num_rows} rows, expected 1 / 1")
            table = pf.read_row_group(0, use_threads=True)
    except (FileNotFoundError, Corrupt):
        raise
    except Exception as exc:  # whatever a damaged file makes pyarrow raise
        raise_unless_damage(exc, path)
        raise Corrupt(f"unreadable parquet ({short(exc)})") from None
    try:
        return _decode(table, kv, key, fingerprint, None if tensor_names is None else set(tensor_names), verify_data)
    except (Corrupt, MemoryError):
        raise
    except Exception as exc:  # a damaged value that decodes to something unexpected
        raise Corrupt(f"undecodable entry ({type(exc).__name__}: {short(exc)})") from None


def _decode(
    table: pa.Table, kv: dict[str, str], key: str, fingerprint: str | None, wanted: set[str] | None,
    verify_data: bool = True,
) -> tuple[dict, dict[str, torch.Tensor]]:
    def column(name: str, typ: pa.DataType) -> pa.Array:
        if name not in table.column_names:
            raise Corrupt(f"missing column {name!r}")
        col = table.column(name)
        if col.type != typ:
            raise Corrupt(f"column {name!r} is {col.type}, expected {typ}")
        arr = col.chunk(0) if col.num_chunks == 1 else pa.concat_arrays(col.chunks)
        if len(arr) != 1:
            raise Corrupt(f"column {name!r} holds {len(arr)} values, expected 1")
        return arr

    def scalar(name: str, typ: pa.DataType, check) -> Any:
        value = column(name, typ)[0].as_py()
        if not check(value):
            raise Corrupt(f"column {name!r} holds {value!r:.80}")
        return value

    def is_str(v) -> bool:
        return isinstance(v, str)

    def is_int(v) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    if scalar("key", _TYPES["key"], is_str) != key:
        raise Corrupt(f"holds key {table.column('key')[0].as_py()!r}, expected {key!r}")
    row_fp = scalar("fingerprint", _TYPES["fingerprint"], is_str)
    if fingerprint is not None and row_fp != fingerprint:
        # Every checksum can be right and the features still belong to other weights (a
        # copied or hand-merged cache): only the fingerprint tells.
        raise Corrupt(f"made by other encoder weights (fingerprint {row_fp[:12]}, expected {fingerprint[:12]})")
    version = scalar("schema_version", _TYPES["schema_version"], is_int)
    if version != SCHEMA_VERSION:
        raise Corrupt(f"row schema version {version}, expected {SCHEMA_VERSION}")
    meta_json = scalar("meta_json", _TYPES["meta_json"], is_str)
    if tcodec.checksum(meta_json.encode()) != scalar("meta_checksum", _TYPES["meta_checksum"], is_str):
        raise Corrupt("meta checksum mismatch")
    meta = json.loads(meta_json)
    if not isinstance(meta, dict):
        raise Corrupt("meta is not a JSON object")
    names = scalar("tensor_names", _TYPES["tensor_names"],
                   lambda v: isinstance(v, list) and all(is_str(n) and TENSOR_NAME_RE.match(n) for n in v))
    if len(set(names)) != len(names):
        raise Corrupt("tensor names repeat")

    # The footer holds an independent copy of what was written: the row must agree with it.
    if kv.get(f"{KV}key") != key:
        raise Corrupt(f"footer key {kv.get(f'{KV}key')!r} differs from {key!r}")
    if kv.get(f"{KV}fingerprint") != row_fp:
        raise Corrupt("footer fingerprint differs from the row")
    if kv.get(f"{KV}meta") != meta_json:
        raise Corrupt("footer meta differs from the row")
    try:
        specs = json.loads(kv.get(f"{KV}tensors", ""))
    except ValueError:
        raise Corrupt("footer tensor specs are not valid JSON") from None
    if not isinstance(specs, dict) or list(specs) != names:
        raise Corrupt(f"the row lists tensors {names}, the footer {list(specs) if isinstance(specs, dict) else specs!r:.80}")
    if wanted is not None and set(names) != wanted:
        raise Corrupt(f"holds tensors {sorted(names)}, expected {sorted(wanted)}")

    jobs: list[tuple[str, pa.Buffer, list[int], str, str]] = []
    for name in names:
        shape = scalar(f"{name}{_SHAPE}", _SPEC_TYPES[_SHAPE], lambda v: isinstance(v, list) and all(is_int(d) and d >= 0 for d in v))
        tag = scalar(f"{name}{_DTYPE}", _SPEC_TYPES[_DTYPE], lambda v: v in tcodec.DTYPE_TAGS)
        cks = scalar(f"{name}{_CHECKSUM}", _SPEC_TYPES[_CHECKSUM], is_str)
        spec = specs[name]
        if not isinstance(spec, dict) or (spec.get("shape"), spec.get("dtype"), spec.get("checksum")) != (shape, tag, cks):
            raise Corrupt(f"tensor {name!r}: footer spec differs from the row")
        if cks.partition(":")[0] != tcodec.CHECKSUM_ALGO:
            raise Corrupt(f"tensor {name!r}: unknown checksum {cks!r}")
        if name not in table.column_names:
            raise Corrupt(f"missing tensor column {name!r}")
        arr = column(name, table.column(name).type)
        if arr.null_count or not (pa.types.is_large_binary(arr.type) or pa.types.is_binary(arr.type)):
            raise Corrupt(f"tensor {name!r}: column is not one binary value")
        off_dtype = np.int64 if pa.types.is_large_binary(arr.type) else np.int32
        offsets = np.frombuffer(arr.buffers()[1], dtype=off_dtype)[arr.offset : arr.offset + 2]
        start, end = int(offsets[0]), int(offsets[1])
        try:
            want = tcodec.expected_nbytes(shape, tag)
        except ValueError as exc:
            raise Corrupt(f"tensor {name!r}: {exc}") from None
        if end - start != want:
            raise Corrupt(f"tensor {name!r}: {end - start} bytes, shape {shape} {tag} needs {want}")
        data = arr.buffers()[2]
        buf = data.slice(start, want) if data is not None else pa.py_buffer(b"")
        jobs.append((name, buf, shape, tag, cks))

    actual = tcodec.checksums([j[1] for j in jobs]) if verify_data else [j[4] for j in jobs]
    for (name, _, _, _, cks), got in zip(jobs, actual):
        if got != cks:
            raise Corrupt(f"tensor {name!r}: checksum mismatch (stored {cks}, data {got})")
    return meta, {name: tcodec.decode(buf, shape, tag) for name, buf, shape, tag, _ in jobs}
