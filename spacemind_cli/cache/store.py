"""Content-addressed store of frozen-encoder features: one Parquet file per scene entry.

Layout (the contract; any Arrow reader can open it)::

    ROOT/manifest.json                          schema version, spacemind version, created, fingerprints
    ROOT/.manifest.lock                         flock for manifest read-modify-write
    ROOT/entries/<key[:2]>/<key>.parquet        one entry: ONE row, ONE row group
    ROOT/entries/<key[:2]>/.<key>.parquet.<host>.<pid>.<rand>.tmp   in-flight write (readers skip)

Columns of an entry, scalar columns first, then one raw-bytes blob per tensor::

    key, scene_key, dataset, scene_name, source_path, frame_indices, num_frames, requested_frames,
    image_sizes, dtype, fingerprint, schema_version, created, spacemind_version, tensor_names,
    nbytes, meta_json, meta_checksum,
    <t>__shape list<int64>, <t>__dtype string, <t>__checksum string   (for each tensor t)
    <t> large_binary                                                  (for each tensor t)

- The well-known meta keys above get typed (nullable) columns with a fixed type, so
  ``read_parquet('ROOT/entries/**/*.parquet')`` sees one schema across entries (a value that does
  not fit its column type leaves the column null, with a warning); ``meta_json`` holds
  the whole ``meta`` dict exactly (ints stay ints, floats round-trip bit-exactly) and is what
  ``get`` returns. Other meta keys are queryable with ``json_extract(meta_json, '$.k')``.
- Tensor blobs are the tensor's little-endian bytes (bf16 as its raw 16-bit patterns, tag
  ``bfloat16``), PLAIN encoded (no dictionary), uncompressed unless ``compression=`` is asked for,
  no statistics. ``<t>__checksum`` is ``crc32:<hex>`` of the blob (see ``tensors.py`` for why).
- The Parquet key-value metadata repeats what ``entries()`` needs (``spacemind.schema_version``,
  ``spacemind.key``, ``spacemind.fingerprint``, ``spacemind.created``, ``spacemind.meta``,
  ``spacemind.tensors``), so listing reads only file footers.

Writes are atomic (temp file + fsync + ``os.replace``, see ``fsutil.py``); a reader sees a whole
entry or none. ``get`` verifies size and checksum of every tensor and raises ``CacheError`` on any
mismatch; the caller recomputes and overwrites.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from spacemind_cli import __version__ as SPACEMIND_VERSION
from spacemind_cli.cache import fsutil
from spacemind_cli.cache import tensors as tcodec
from spacemind_cli.errors import CacheError, ResourceError, resource_error

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
LAYOUT = "parquet-entry-per-file"
MANIFEST = "manifest.json"
LOCK = ".manifest.lock"
ENTRIES = "entries"
SUFFIX = ".parquet"

_KV = "spacemind."
_KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{1,199}$")
_TENSOR_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")
_SPEC_SUFFIXES = ("__shape", "__dtype", "__checksum")

# Well-known meta keys with a typed column each (nullable, same type in every entry).
_META_COLUMNS: list[tuple[str, pa.DataType]] = [
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
_STORE_COLUMNS: list[tuple[str, pa.DataType]] = [
    ("fingerprint", pa.string()),
    ("schema_version", pa.int32()),
    ("created", pa.float64()),
    ("spacemind_version", pa.string()),
    ("tensor_names", pa.list_(pa.string())),
    ("nbytes", pa.int64()),
    ("meta_json", pa.string()),
    ("meta_checksum", pa.string()),
]
_RESERVED = {"key"} | {n for n, _ in _STORE_COLUMNS}


@dataclass
class CacheEntry:
    key: str
    meta: dict
    tensors: dict[str, torch.Tensor]
    path: Path


@dataclass
class EntryInfo:
    """What ``entries()`` reports for one file, from its footer only (never the tensors)."""

    key: str
    path: Path
    bytes: int
    created: float  # file mtime (time of the last committed write)
    fingerprint: str | None = None
    scene_key: str | None = None
    dataset: str | None = None
    scene_name: str | None = None
    num_frames: int | None = None
    schema_version: int | None = None
    meta: dict = field(default_factory=dict)
    error: str | None = None  # set when the footer cannot be read or describes a foreign schema


class _Corrupt(Exception):
    """Internal: an entry that exists but cannot be trusted; ``str`` is the one-line reason."""


def _corrupt_error(path: Path, reason: str) -> CacheError:
    return CacheError(f"corrupt cache entry {path}: {reason}")


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _dump_json(obj: Any, what: str) -> str:
    try:
        return json.dumps(obj, default=_json_default, sort_keys=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what} must hold only scalars, strings and lists: {_short(exc)}") from None


def _fits(value: Any, typ: pa.DataType) -> bool:
    """Whether ``value`` converts to ``typ`` exactly (pyarrow alone would truncate 1.5 to 1)."""
    if pa.types.is_list(typ):
        return isinstance(value, list) and all(v is None or _fits(v, typ.value_type) for v in value)
    if pa.types.is_string(typ):
        return isinstance(value, str) and _utf8(value)
    if pa.types.is_int64(typ):
        return isinstance(value, int) and not isinstance(value, bool) and -(2**63) <= value < 2**63
    return False


def _utf8(text: str) -> bool:
    """False for text Arrow cannot store: lone surrogates, e.g. a file name that is not UTF-8."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _leaf_paths(f: pa.Field) -> list[str]:
    """Parquet column paths of an Arrow field (per-column writer options are keyed by them)."""
    t = f.type
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return [f"{f.name}.list.{p}" for p in _leaf_paths(pa.field("element", t.value_type))]
    return [f.name]


def _manifest_error(path: Path, reason: str) -> CacheError:
    return CacheError(f"corrupt cache manifest {path}: {reason}")


class FeatureCache:
    """Put/get encoder features by key. Thread- and multi-process-safe; see the module docstring.

    ``compression``: codec for tensor blobs (``None`` = uncompressed, the default; ``"zstd"`` saves
    5-15% on activations and costs read speed). ``page_checksums``: also write Parquet page CRCs
    and verify them on read (off by default: the per-tensor CRC already covers the data, see
    ``bench/cache_io.py`` for the cost). ``durable``: fsync files and directories on commit.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        *,
        create: bool = True,
        compression: str | None = None,
        compression_level: int | None = None,
        page_checksums: bool = False,
        durable: bool = True,
    ):
        self.root = Path(root).expanduser()
        self.compression = compression
        self.compression_level = compression_level
        self.page_checksums = page_checksums
        self.durable = durable
        self._manifest_path = self.root / MANIFEST
        self.manifest: dict = self._open_manifest(create)

    def __repr__(self) -> str:
        return f"FeatureCache({str(self.root)!r})"

    # ------------------------------------------------------------------ manifest

    def _read_manifest(self) -> dict | None:
        path = self._manifest_path
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except PermissionError as exc:
            raise ResourceError(f"cannot read {path}: permission denied") from exc
        try:
            m = json.loads(text)
        except ValueError as exc:
            raise _manifest_error(path, f"invalid JSON ({_short(exc)})") from None
        if not isinstance(m, dict):
            raise _manifest_error(path, "not a JSON object")
        version = m.get("schema_version")
        if version != SCHEMA_VERSION:
            raise CacheError(
                f"cache {path} has schema version {version!r}; this spacemind {SPACEMIND_VERSION} "
                f"reads schema version {SCHEMA_VERSION} (use another cache root or clear this one)"
            )
        if not isinstance(m.get("fingerprints", {}), dict):
            raise _manifest_error(path, "'fingerprints' is not an object")
        m.setdefault("fingerprints", {})
        return m

    def _write_manifest(self, m: dict) -> None:
        data = (json.dumps(m, indent=2, sort_keys=True, default=_json_default) + "\n").encode()
        fsutil.atomic_write_bytes(self._manifest_path, data)

    def _open_manifest(self, create: bool) -> dict:
        m = self._read_manifest()
        if m is not None:
            return m
        if not create:
            raise CacheError(f"no feature cache at {self.root} (missing {MANIFEST})")
        try:
            (self.root / ENTRIES).mkdir(parents=True, exist_ok=True)
            with fsutil.locked(self.root / LOCK):
                m = self._read_manifest()  # another process may have created it meanwhile
                if m is None:
                    m = {
                        "schema_version": SCHEMA_VERSION,
                        "layout": LAYOUT,
                        "spacemind_version": SPACEMIND_VERSION,
                        "created": time.time(),
                        "fingerprints": {},
                    }
                    self._write_manifest(m)
                    log.info("created feature cache at %s", self.root)
        except OSError as exc:
            raise resource_error(exc, self.root) from exc
        return m

    def reload_manifest(self) -> dict:
        m = self._read_manifest()
        if m is None:
            raise CacheError(f"no feature cache at {self.root} (missing {MANIFEST})")
        self.manifest = m
        return m

    def register_fingerprint(self, fingerprint: str, info: Mapping[str, Any] | None = None) -> None:
        """Record ``fingerprint`` (with an optional JSON-able description) in the manifest.
        Atomic read-modify-write under the lock file: concurrent writers never lose an update."""
        if not isinstance(fingerprint, str) or not fingerprint:
            raise ValueError("fingerprint must be a non-empty string")
        info = dict(info or {})
        json.loads(_dump_json(info, "fingerprint description"))  # validate before taking the lock
        try:
            with fsutil.locked(self.root / LOCK):
                m = self._read_manifest()
                if m is None:
                    raise CacheError(f"no feature cache at {self.root} (missing {MANIFEST})")
                fps = m["fingerprints"]
                old = fps.get(fingerprint)
                new = {**(old or {"first_seen": time.time()}), **info}
                if new != old:
                    fps[fingerprint] = new
                    self._write_manifest(m)
                self.manifest = m
        except OSError as exc:
            raise resource_error(exc, self._manifest_path) from exc

    def _ensure_fingerprint(self, fingerprint: str, describe: Mapping[str, Any] | None) -> None:
        known = self.manifest.get("fingerprints", {}).get(fingerprint)
        if describe:
            describe = json.loads(_dump_json(dict(describe), "fingerprint description"))  # as stored
        if known is not None and (not describe or all(known.get(k) == v for k, v in describe.items())):
            return
        self.register_fingerprint(fingerprint, describe)

    # ------------------------------------------------------------------ paths

    def path_for(self, key: str) -> Path:
        if not isinstance(key, str) or not _KEY_RE.match(key):
            raise ValueError(f"invalid cache key {key!r} (expected 2-200 chars of [A-Za-z0-9_-])")
        return self.root / ENTRIES / key[:2] / f"{key}{SUFFIX}"

    def contains(self, key: str) -> bool:
        """True when a committed entry file exists (no read; it may still fail verification)."""
        return self.path_for(key).is_file()

    # ------------------------------------------------------------------ put

    def _build_table(
        self, key: str, meta: Mapping[str, Any], enc: dict[str, tcodec.Encoded], fingerprint: str, created: float
    ) -> pa.Table:
        if not isinstance(meta, Mapping):
            raise ValueError(f"meta must be a dict, got {type(meta).__name__}")
        for k in meta:
            if not isinstance(k, str):
                raise ValueError(f"meta keys must be strings, got {k!r}")
        if "key" in meta and meta["key"] != key:
            raise ValueError(f"meta['key'] = {meta['key']!r} differs from the entry key {key!r}")
        if "fingerprint" in meta and meta["fingerprint"] != fingerprint:
            raise ValueError(f"meta['fingerprint'] = {meta['fingerprint']!r} differs from fingerprint={fingerprint!r}")
        meta_json = _dump_json(dict(meta), "meta")
        plain = json.loads(meta_json)  # what readers will get back: tuples -> lists, numpy -> python

        cols: dict[str, pa.Array] = {"key": pa.array([key], pa.string())}
        for name, typ in _META_COLUMNS:
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
        created_col = plain.get("created")
        if not isinstance(created_col, (int, float)) or isinstance(created_col, bool):
            created_col = None
        cols.update(
            fingerprint=pa.array([fingerprint], pa.string()),
            schema_version=pa.array([SCHEMA_VERSION], pa.int32()),
            created=pa.array([None if created_col is None else float(created_col)], pa.float64()),
            spacemind_version=pa.array([str(plain.get("spacemind_version", SPACEMIND_VERSION))], pa.string()),
            tensor_names=pa.array([list(enc)], pa.list_(pa.string())),
            nbytes=pa.array([sum(e.nbytes for e in enc.values())], pa.int64()),
            meta_json=pa.array([meta_json], pa.string()),
            meta_checksum=pa.array([tcodec.checksum(meta_json.encode())], pa.string()),
        )
        for name, e in enc.items():
            cols[f"{name}__shape"] = pa.array([list(e.shape)], pa.list_(pa.int64()))
            cols[f"{name}__dtype"] = pa.array([e.dtype], pa.string())
            cols[f"{name}__checksum"] = pa.array([e.checksum], pa.string())
        for name, e in enc.items():  # zero-copy: the blob's data buffer is the tensor's memory
            offsets = pa.py_buffer(np.array([0, e.nbytes], dtype=np.int64))
            cols[name] = pa.Array.from_buffers(pa.large_binary(), 1, [None, offsets, pa.py_buffer(e.data)])

        tensors_kv = {
            n: {"shape": list(e.shape), "dtype": e.dtype, "checksum": e.checksum, "nbytes": e.nbytes}
            | ({"cast_from": e.cast_from} if e.cast_from else {})
            for n, e in enc.items()
        }
        kv = {
            f"{_KV}schema_version": str(SCHEMA_VERSION),
            f"{_KV}layout": LAYOUT,
            f"{_KV}key": key,
            f"{_KV}fingerprint": fingerprint,
            f"{_KV}version": SPACEMIND_VERSION,
            f"{_KV}meta": meta_json,
            f"{_KV}tensors": json.dumps(tensors_kv, separators=(",", ":")),
        }
        if created_col is not None:
            kv[f"{_KV}created"] = repr(float(created_col))
        return pa.table(cols).replace_schema_metadata(kv)

    def _write_options(self, table: pa.Table, tensor_names: Iterable[str]) -> dict:
        blobs = set(tensor_names)
        scalar_paths = [p for f in table.schema if f.name not in blobs for p in _leaf_paths(f)]
        codec = self.compression or "none"
        compression = {p: "zstd" for p in scalar_paths} | {n: codec for n in blobs}
        opts: dict[str, Any] = dict(
            row_group_size=1,
            use_dictionary=scalar_paths,  # never on tensor blobs
            write_statistics=scalar_paths,  # min/max of a 200 MB blob is useless and costs a scan
            compression=compression,
            write_page_checksum=self.page_checksums,
            store_schema=True,
        )
        if self.compression and self.compression_level is not None:
            opts["compression_level"] = {n: self.compression_level for n in blobs}
        return opts

    def put(
        self,
        key: str,
        meta: Mapping[str, Any],
        tensors: Mapping[str, torch.Tensor | np.ndarray],
        *,
        fingerprint: str,
        describe: Mapping[str, Any] | None = None,
        cast_to: str | Mapping[str, str] | None = None,
    ) -> Path:
        """Store one entry atomically (replacing any previous one) and return its path.

        ``describe``: JSON-able description of ``fingerprint`` for the manifest. ``cast_to``: an
        explicit, checked downcast of float32/float64 tensors (``"float16"`` or ``"bfloat16"``, or
        a ``{name: dtype}`` dict); float16 refuses values beyond +-65504. Nothing is cast otherwise.
        Raises ``ResourceError`` on a full / read-only / forbidden disk (no partial entry is left).
        """
        path = self.path_for(key)
        if not isinstance(fingerprint, str) or not fingerprint:
            raise ValueError("fingerprint must be a non-empty string")
        if not isinstance(tensors, Mapping):
            raise ValueError(f"tensors must be a dict of name -> tensor, got {type(tensors).__name__}")
        enc: dict[str, tcodec.Encoded] = {}
        for name, value in tensors.items():
            if not isinstance(name, str) or not _TENSOR_NAME_RE.match(name) or "__" in name:
                raise ValueError(f"invalid tensor name {name!r} (identifier without '__')")
            if name in _RESERVED or name in dict(_META_COLUMNS):
                raise ValueError(f"tensor name {name!r} is a reserved column name")
            if isinstance(cast_to, Mapping):  # per tensor: refuses a non-float source
                enc[name] = tcodec.encode(name, value, cast_to=cast_to.get(name), with_checksum=False)
            else:  # blanket: applies to float32/float64 tensors only
                enc[name] = tcodec.encode(name, value, cast_to=cast_to, float_only=True, with_checksum=False)
        sums = tcodec.checksums([e.data for e in enc.values()])
        enc = {n: dataclasses.replace(e, checksum=c) for (n, e), c in zip(enc.items(), sums)}
        table = self._build_table(key, meta, enc, fingerprint, time.time())
        opts = self._write_options(table, enc)

        self._ensure_fingerprint(fingerprint, describe)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fsutil.atomic_write(path, lambda tmp: pq.write_table(table, str(tmp), **opts), durable=self.durable)
        except OSError as exc:
            log.warning("cache write failed for %s: %s", path, _short(exc))
            raise resource_error(exc, path) from exc
        log.debug("cached %s (%d bytes of tensors)", path, sum(e.nbytes for e in enc.values()))
        return path

    # ------------------------------------------------------------------ get / verify

    def _read(
        self, path: Path, key: str, *, deep: bool = False, fingerprint: str | None = None
    ) -> tuple[dict, dict[str, torch.Tensor]]:
        """Read and fully verify one entry. Raises FileNotFoundError when absent, ``_Corrupt``
        when present but untrustworthy. ``deep`` adds cross-checks of footer vs row (verify);
        ``fingerprint`` refuses an entry made by other encoder weights."""
        try:
            with pa.OSFile(str(path)) as f:  # one open: a concurrent replace cannot mix two files
                pf = pq.ParquetFile(f, pre_buffer=True, page_checksum_verification=self.page_checksums)
                md = pf.metadata
                kv = {k.decode(errors="replace"): v.decode(errors="replace") for k, v in (md.metadata or {}).items()}
                version = kv.get(f"{_KV}schema_version")
                if version is None:
                    raise _Corrupt("not a spacemind cache entry (no schema version in its metadata)")
                if version != str(SCHEMA_VERSION):
                    raise _Corrupt(f"schema version {version}, this spacemind reads version {SCHEMA_VERSION}")
                if md.num_row_groups != 1 or md.num_rows != 1:
                    raise _Corrupt(f"{md.num_row_groups} row groups / {md.num_rows} rows, expected 1 / 1")
                table = pf.read_row_group(0, use_threads=True)
        except (FileNotFoundError, _Corrupt):
            raise
        except PermissionError as exc:
            raise ResourceError(f"cannot read {path}: permission denied") from exc
        except (OSError, pa.ArrowException, ValueError, EOFError) as exc:
            raise _Corrupt(f"unreadable parquet ({_short(exc)})") from None

        def scalar(name: str) -> Any:
            if name not in table.column_names:
                raise _Corrupt(f"missing column {name!r}")
            return table.column(name)[0].as_py()

        if scalar("key") != key:
            raise _Corrupt(f"holds key {scalar('key')!r}, expected {key!r}")
        if fingerprint is not None and scalar("fingerprint") != fingerprint:
            # Every checksum can be right and the features still belong to other weights (a
            # copied or hand-merged cache): only the fingerprint tells.
            raise _Corrupt(
                f"made by other encoder weights (fingerprint {str(scalar('fingerprint'))[:12]}, expected {fingerprint[:12]})"
            )
        if scalar("schema_version") != SCHEMA_VERSION:
            raise _Corrupt(f"row schema version {scalar('schema_version')}, expected {SCHEMA_VERSION}")
        meta_json = scalar("meta_json")
        if meta_json is None or tcodec.checksum(meta_json.encode()) != scalar("meta_checksum"):
            raise _Corrupt("meta checksum mismatch")
        meta = json.loads(meta_json)
        if not isinstance(meta, dict):
            raise _Corrupt("meta is not a JSON object")
        names = scalar("tensor_names") or []

        jobs: list[tuple[str, pa.Buffer, list[int], str, str]] = []
        for name in names:
            shape, tag, cks = scalar(f"{name}__shape"), scalar(f"{name}__dtype"), scalar(f"{name}__checksum")
            if tag not in tcodec.DTYPE_TAGS or shape is None or cks is None:
                raise _Corrupt(f"tensor {name!r}: bad dtype/shape/checksum record ({tag!r}, {shape!r})")
            col = table.column(name) if name in table.column_names else None
            if col is None:
                raise _Corrupt(f"missing tensor column {name!r}")
            arr = col.chunk(0) if col.num_chunks == 1 else pa.concat_arrays(col.chunks)
            if len(arr) != 1 or arr.null_count or not (
                pa.types.is_large_binary(arr.type) or pa.types.is_binary(arr.type)
            ):
                raise _Corrupt(f"tensor {name!r}: column is not one binary value")
            off_dtype = np.int64 if pa.types.is_large_binary(arr.type) else np.int32
            offsets = np.frombuffer(arr.buffers()[1], dtype=off_dtype)[arr.offset : arr.offset + 2]
            start, end = int(offsets[0]), int(offsets[1])
            try:
                want = tcodec.expected_nbytes(shape, tag)
            except ValueError as exc:
                raise _Corrupt(f"tensor {name!r}: {exc}") from None
            if end - start != want:
                raise _Corrupt(f"tensor {name!r}: {end - start} bytes, shape {shape} {tag} needs {want}")
            data = arr.buffers()[2]
            buf = data.slice(start, want) if data is not None else pa.py_buffer(b"")
            jobs.append((name, buf, shape, tag, cks))

        for name, _, _, _, cks in jobs:
            if cks.partition(":")[0] != tcodec.CHECKSUM_ALGO:
                raise _Corrupt(f"tensor {name!r}: unknown checksum {cks!r}")
        actual = tcodec.checksums([j[1] for j in jobs])
        for (name, _, _, _, cks), got in zip(jobs, actual):
            if got != cks:
                raise _Corrupt(f"tensor {name!r}: checksum mismatch (stored {cks}, data {got})")

        if deep:
            self._cross_check(kv, key, meta_json, jobs, scalar)
        out = {name: tcodec.decode(buf, shape, tag) for name, buf, shape, tag, _ in jobs}
        return meta, out

    @staticmethod
    def _cross_check(kv: dict, key: str, meta_json: str, jobs: list, scalar: Callable[[str], Any]) -> None:
        if kv.get(f"{_KV}key") != key:
            raise _Corrupt(f"footer key {kv.get(f'{_KV}key')!r} differs from {key!r}")
        if kv.get(f"{_KV}fingerprint") != scalar("fingerprint"):
            raise _Corrupt("footer fingerprint differs from the row")
        if kv.get(f"{_KV}meta") != meta_json:
            raise _Corrupt("footer meta differs from the row")
        try:
            specs = json.loads(kv.get(f"{_KV}tensors", ""))
        except ValueError:
            raise _Corrupt("footer tensor specs are not valid JSON") from None
        if list(specs) != [j[0] for j in jobs]:
            raise _Corrupt("footer tensor list differs from the row")
        for name, _, shape, tag, cks in jobs:
            s = specs[name]
            if (s.get("shape"), s.get("dtype"), s.get("checksum")) != (shape, tag, cks):
                raise _Corrupt(f"tensor {name!r}: footer spec differs from the row")

    def get(
        self, key: str, *, device: str | torch.device = "cpu", fingerprint: str | None = None
    ) -> CacheEntry | None:
        """The verified entry, or None when absent. Raises ``CacheError`` ("corrupt cache entry
        <path>: <reason>") when the file exists but is truncated, altered or of another schema,
        or (when ``fingerprint`` is given) was made by other encoder weights.
        CPU tensors share memory with the Arrow read buffers (no copy)."""
        path = self.path_for(key)
        try:
            meta, tensors = self._read(path, key, fingerprint=fingerprint)
        except FileNotFoundError:
            return None
        except _Corrupt as exc:
            log.warning("corrupt cache entry %s: %s", path, exc)
            raise _corrupt_error(path, str(exc)) from None
        dev = torch.device(device)
        if dev.type != "cpu":
            tensors = {n: t.to(dev) for n, t in tensors.items()}
        return CacheEntry(key=key, meta=meta, tensors=tensors, path=path)

    def info(self, key: str) -> EntryInfo | None:
        """What ``entries()`` reports for one key (footer only, no tensor read), or None when
        absent. ``error`` is set for an unreadable footer or a foreign schema."""
        return self._info(key, self.path_for(key))

    def check(self, key: str) -> str | None:
        """Full verification of one entry: None when good (or absent), else the one-line reason."""
        try:
            self._read(self.path_for(key), key, deep=True)
        except FileNotFoundError:
            return None
        except _Corrupt as exc:
            return str(exc)
        return None

    def verify(self, *, keys: Iterable[str] | None = None) -> list[tuple[Path, str]]:
        """Read and check every entry (or ``keys``): checksums, schema, shapes vs bytes, footer vs
        row, file name vs key. Returns ``(path, reason)`` for each bad one (a listed key that does
        not exist is reported as missing). Holds one entry in memory at a time."""
        bad: list[tuple[Path, str]] = []
        if keys is None:
            items: Iterable[tuple[str, Path]] = ((k, p) for k, p in self._files())
        else:
            items = ((k, self.path_for(k)) for k in keys)
        for key, path in items:
            try:
                self._read(path, key, deep=True)
            except FileNotFoundError:
                if keys is not None:
                    bad.append((path, "missing"))
            except _Corrupt as exc:
                bad.append((path, str(exc)))
        for path, reason in bad:
            log.warning("bad cache entry %s: %s", path, reason)
        return bad

    # ------------------------------------------------------------------ listing

    def _shards(self) -> list[Path]:
        try:
            with os.scandir(self.root / ENTRIES) as it:
                return sorted(Path(e.path) for e in it if e.is_dir(follow_symlinks=False) and not e.name.startswith("."))
        except FileNotFoundError:
            return []

    def _files(self) -> Iterator[tuple[str, Path]]:
        """(key, path) of every committed entry file; temp files and strangers are skipped."""
        for shard in self._shards():
            try:
                with os.scandir(shard) as it:
                    names = sorted(e.name for e in it if e.is_file(follow_symlinks=False))
            except FileNotFoundError:
                continue
            for name in names:
                if name.startswith(".") or not name.endswith(SUFFIX):
                    continue
                key = name[: -len(SUFFIX)]
                if _KEY_RE.match(key) and key[:2] == shard.name:
                    yield key, shard / name

    def _info(self, key: str, path: Path) -> EntryInfo | None:
        try:
            st = path.stat()
        except FileNotFoundError:
            return None
        info = EntryInfo(key=key, path=path, bytes=st.st_size, created=st.st_mtime)
        try:
            md = pq.read_metadata(str(path))
            kv = {k.decode(errors="replace"): v.decode(errors="replace") for k, v in (md.metadata or {}).items()}
            version = kv.get(f"{_KV}schema_version")
            info.schema_version = int(version) if version and version.isdigit() else None
            info.fingerprint = kv.get(f"{_KV}fingerprint")
            info.meta = json.loads(kv.get(f"{_KV}meta", "{}"))
            if not isinstance(info.meta, dict):
                raise ValueError("meta is not an object")
            info.scene_key = info.meta.get("scene_key")
            info.dataset = info.meta.get("dataset")
            info.scene_name = info.meta.get("scene_name")
            nf = info.meta.get("num_frames")
            fi = info.meta.get("frame_indices")
            info.num_frames = nf if isinstance(nf, int) else (len(fi) if isinstance(fi, list) else None)
            if version is None:
                info.error = "not a spacemind cache entry (no schema version in its metadata)"
            elif info.schema_version != SCHEMA_VERSION:
                info.error = f"schema version {version}, this spacemind reads version {SCHEMA_VERSION}"
            elif kv.get(f"{_KV}key") != key:
                info.error = f"footer key {kv.get(f'{_KV}key')!r} differs from the file name"
        except FileNotFoundError:
            return None
        except (OSError, pa.ArrowException, ValueError) as exc:
            info.error = f"unreadable parquet footer ({_short(exc)})"
        return info

    def entries(self) -> Iterator[EntryInfo]:
        """Stream one ``EntryInfo`` per committed entry, reading file footers only. Entries whose
        footer is unreadable are still listed, with ``error`` set."""
        for key, path in self._files():
            info = self._info(key, path)
            if info is not None:
                yield info

    def __iter__(self) -> Iterator[EntryInfo]:
        return self.entries()

    def stats(self) -> dict:
        by_fp: dict[str, dict] = {}
        n = total = unreadable = 0
        for info in self.entries():
            n += 1
            total += info.bytes
            if info.error:
                unreadable += 1
            fp = info.fingerprint or "?"
            d = by_fp.setdefault(fp, {"entries": 0, "bytes": 0})
            d["entries"] += 1
            d["bytes"] += info.bytes
        described = self.manifest.get("fingerprints", {})
        for fp, d in by_fp.items():
            d["info"] = described.get(fp)
        temps = list(self._temp_files())
        return {
            "root": str(self.root),
            "schema_version": SCHEMA_VERSION,
            "entries": n,
            "bytes": total,
            "unreadable": unreadable,
            "by_fingerprint": by_fp,
            "fingerprints_registered": len(described),
            "temp_files": len(temps),
        }

    # ------------------------------------------------------------------ removal

    def delete(self, key: str) -> None:
        path = self.path_for(key)
        try:
            path.unlink()
        except FileNotFoundError:
            return
        except OSError as exc:
            raise resource_error(exc, path) from exc
        log.debug("deleted cache entry %s", path)

    def _temp_files(self) -> Iterator[Path]:
        dirs = [self.root, *self._shards()]
        for d in dirs:
            try:
                with os.scandir(d) as it:
                    names = [e.name for e in it if e.is_file(follow_symlinks=False)]
            except FileNotFoundError:
                continue
            for name in names:
                if fsutil.is_temp_name(name):
                    yield d / name

    def clean_temp(self, *, older_than: float | None = 3600.0, dry_run: bool = False) -> list[Path]:
        """Remove temp files left by crashed writers: older than ``older_than`` seconds, or made on
        this host by a process that no longer exists. In-flight writes of live processes stay."""
        now = time.time()
        stale = [p for p in self._temp_files() if fsutil.is_stale_temp(p, older_than=older_than, now=now)]
        if not dry_run:
            for p in stale:
                try:
                    p.unlink()
                except FileNotFoundError:
                    pass
                except OSError as exc:
                    raise resource_error(exc, p) from exc
        if stale:
            log.info("%s %d stale temp file(s) in %s", "would remove" if dry_run else "removed", len(stale), self.root)
        return stale

    def prune(
        self,
        *,
        older_than: float | None = None,
        fingerprint_not_in: set[str] | None = None,
        fingerprint: str | None = None,
        bad: bool = False,
        dry_run: bool = False,
        match: str = "any",
        temp_older_than: float | None = 3600.0,
    ) -> list[EntryInfo]:
        """Remove entries and return them (or, with ``dry_run``, only return them).

        Criteria: ``older_than`` seconds since the entry was written; a ``fingerprint`` not in
        ``fingerprint_not_in``; equal to ``fingerprint``; ``bad`` (fails full verification, which
        reads every entry). ``match="any"`` removes entries meeting at least one given criterion,
        ``"all"`` only those meeting every one. Stale temp files (see ``clean_temp``) go too.
        """
        if match not in ("any", "all"):
            raise ValueError(f"match must be 'any' or 'all', got {match!r}")
        now = time.time()
        tests: list[Callable[[EntryInfo], bool]] = []
        if older_than is not None:
            tests.append(lambda i: now - i.created > older_than)
        if fingerprint_not_in is not None:
            keep = set(fingerprint_not_in)
            tests.append(lambda i: i.fingerprint not in keep)
        if fingerprint is not None:
            tests.append(lambda i: i.fingerprint == fingerprint)
        if bad:  # last: the expensive one, skipped when the cheap ones already decided
            tests.append(lambda i: i.error is not None or self.check(i.key) is not None)
        if not tests:
            raise ValueError("prune needs a criterion: older_than, fingerprint_not_in, fingerprint or bad")
        combine = any if match == "any" else all

        chosen: list[EntryInfo] = []
        for info in self.entries():
            if not combine(t(info) for t in tests):
                continue
            chosen.append(info)
            if dry_run:
                continue
            try:
                if info.path.stat().st_mtime != info.created:
                    chosen.pop()  # rewritten since we looked: leave the fresh entry alone
                    continue
                info.path.unlink()
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise resource_error(exc, info.path) from exc
        if temp_older_than is not None:
            self.clean_temp(older_than=temp_older_than, dry_run=dry_run)
        log.info("%s %d cache entr%s", "would prune" if dry_run else "pruned", len(chosen), "y" if len(chosen) == 1 else "ies")
        return chosen
