"""Content-addressed store of frozen-encoder features: one Parquet file per scene entry.

Layout (the contract; any Arrow reader can open it)::

    ROOT/manifest.json                          schema version, spacemind version, created, fingerprints
    ROOT/.manifest.lock                         flock for manifest read-modify-write
    ROOT/entries/<key[:2]>/<key>.parquet        one entry: ONE row, ONE row group
    ROOT/entries/<key[:2]>/.<key>.parquet.<host>.<pid>.<rand>.tmp   in-flight write (readers skip)

Each entry file's format (columns, footer metadata, how a read is verified) is ``entry.py``'s.
The well-known meta keys get typed (nullable) columns with a fixed type, so
``read_parquet('ROOT/entries/**/*.parquet')`` sees one schema across entries; ``meta_json`` holds
the whole ``meta`` dict exactly and is what ``get`` returns. Listing reads only file footers.

Writes are atomic (temp file + fsync + ``os.replace``, see ``spacemind_cli/files.py``); a reader sees a whole
entry or none. ``get`` returns exactly the meta and tensors that were written, or raises
``CacheError``; the caller recomputes and overwrites.
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
import pyarrow.parquet as pq
import torch

from spacemind_cli import files as fsutil
from spacemind_cli.cache import entry as entry_format
from spacemind_cli.cache import tensors as tcodec
from spacemind_cli.cache.entry import KV, LAYOUT, SCHEMA_VERSION
from spacemind_cli.errors import CacheError, ResourceError, resource_error
from spacemind_cli.version import __version__ as SPACEMIND_VERSION

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
LOCK = ".manifest.lock"
ENTRIES = "entries"
SUFFIX = ".parquet"

_KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{1,199}$")


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


def _corrupt_error(path: Path, reason: str) -> CacheError:
    return CacheError(f"corrupt cache entry {path}: {reason}")


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
        except NotADirectoryError:  # the root, or a folder above it, is a file: no cache can be there
            what = "it is a file" if self.root.is_file() else "part of its path is a file"
            raise CacheError(f"no feature cache at {self.root} ({what}, not a folder)") from None
        except IsADirectoryError:
            raise _manifest_error(path, "a folder, not a file") from None
        except PermissionError as exc:
            raise ResourceError(f"cannot read {path}: permission denied") from exc
        except UnicodeDecodeError as exc:
            raise _manifest_error(path, f"not UTF-8 text (byte {exc.start})") from None
        try:
            m = json.loads(text)
        except ValueError as exc:
            raise _manifest_error(path, f"invalid JSON ({entry_format.short(exc)})") from None
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
        data = (json.dumps(m, indent=2, sort_keys=True, default=entry_format.json_default) + "\n").encode()
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
        json.loads(entry_format.dump_json(info, "fingerprint description"))  # validate before taking the lock
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
            describe = json.loads(entry_format.dump_json(dict(describe), "fingerprint description"))  # as stored
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
            entry_format.check_tensor_name(name)
            if isinstance(cast_to, Mapping):  # per tensor: refuses a non-float source
                enc[name] = tcodec.encode(name, value, cast_to=cast_to.get(name), with_checksum=False)
            else:  # blanket: applies to float32/float64 tensors only
                enc[name] = tcodec.encode(name, value, cast_to=cast_to, float_only=True, with_checksum=False)
        sums = tcodec.checksums([e.data for e in enc.values()])
        enc = {n: dataclasses.replace(e, checksum=c) for (n, e), c in zip(enc.items(), sums)}
        table = entry_format.build_table(key, meta, enc, fingerprint)
        opts = entry_format.write_options(table, enc, self.compression, self.compression_level, self.page_checksums)

        self._ensure_fingerprint(fingerprint, describe)
        try:
            fsutil.atomic_write(path, lambda tmp: pq.write_table(table, str(tmp), **opts), durable=self.durable)
        except ResourceError as exc:  # disk full, read-only: no partial entry is left
            log.warning("cache write failed for %s: %s", path, exc.message)
            raise
        log.debug("cached %s (%d bytes of tensors)", path, sum(e.nbytes for e in enc.values()))
        return path

    # ------------------------------------------------------------------ get / verify

    def _read(
        self, path: Path, key: str, *, fingerprint: str | None = None, tensor_names: Iterable[str] | None = None,
        verify_data: bool = True,
    ) -> tuple[dict, dict[str, torch.Tensor]]:
        return entry_format.read_entry(
            path, key, fingerprint=fingerprint, tensor_names=tensor_names, page_checksums=self.page_checksums,
            verify_data=verify_data,
        )

    def get(
        self,
        key: str,
        *,
        device: str | torch.device = "cpu",
        fingerprint: str | None = None,
        tensor_names: Iterable[str] | None = None,
        verify_data: bool = True,
    ) -> CacheEntry | None:
        """The entry exactly as written, or None when absent. Raises ``CacheError`` ("corrupt
        cache entry <path>: <reason>") when the file exists but is truncated, altered or of
        another schema, or, when given, was made by other encoder weights (``fingerprint``) or
        holds another set of tensors (``tensor_names``). ``verify_data=False``: the tensors'
        checksums are not computed (for a file this reader verified before; see read_entry).
        CPU tensors share memory with the Arrow read buffers (no copy)."""
        path = self.path_for(key)
        try:
            meta, tensors = self._read(path, key, fingerprint=fingerprint, tensor_names=tensor_names,
                                       verify_data=verify_data)
        except FileNotFoundError:
            return None
        except entry_format.Corrupt as exc:
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

    def check(self, key: str, *, tensor_names: Iterable[str] | None = None) -> str | None:
        """Full verification of one entry: None when good (or absent), else the one-line reason."""
        try:
            self._read(self.path_for(key), key, tensor_names=tensor_names)
        except FileNotFoundError:
            return None
        except entry_format.Corrupt as exc:
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
                self._read(path, key)
            except FileNotFoundError:
                if keys is not None:
                    bad.append((path, "missing"))
            except entry_format.Corrupt as exc:
                bad.append((path, str(exc)))
        for path, reason in bad:
            log.warning("bad cache entry %s: %s", path, reason)
        return bad

    # ------------------------------------------------------------------ listing

    def _shard_dirs(self) -> list[Path]:
        try:
            with os.scandir(self.root / ENTRIES) as it:
                return sorted(Path(e.path) for e in it if e.is_dir(follow_symlinks=False) and not e.name.startswith("."))
        except FileNotFoundError:
            return []

    def _files(self) -> Iterator[tuple[str, Path]]:
        """(key, path) of every committed entry file; temp files and strangers are skipped."""
        for shard in self._shard_dirs():
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
            kv = entry_format.footer_kv(md)
            version = kv.get(f"{KV}schema_version")
            info.schema_version = int(version) if version and version.isdigit() else None
            info.fingerprint = kv.get(f"{KV}fingerprint")
            info.meta = json.loads(kv.get(f"{KV}meta", "{}"))
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
            elif kv.get(f"{KV}key") != key:
                info.error = f"footer key {kv.get(f'{KV}key')!r} differs from the file name"
        except FileNotFoundError:
            return None
        except Exception as exc:  # whatever a damaged footer makes pyarrow or json raise
            entry_format.raise_unless_damage(exc, path)  # not an error for prune --bad to act on
            info.error = f"unreadable parquet footer ({entry_format.short(exc)})"
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
        dirs = [self.root, *self._shard_dirs()]
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
