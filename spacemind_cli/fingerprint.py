"""Content fingerprints of files and weights, cheap to recompute.

Cache keys must change whenever a scene's frames or the encoder weights change, and stay equal
when the same content is copied elsewhere (another disk, another node). So fingerprints hash
content, never paths or mtimes. Hashing a 5 GB weight file costs seconds; a small memo keyed by
the file's identity (device, inode, name), size and mtime skips the re-hash when nothing changed.
Hard links are one file: a trained checkpoint links its base's weights, and they are not hashed
again under the new path (VGGT-1B and an InternVL base: ~7 GB, tens of seconds on a loaded CPU).
The memo is only a shortcut: a changed file has a new size or mtime and is hashed again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import threading
from pathlib import Path

log = logging.getLogger(__name__)

_CHUNK = 4 << 20
_memo_lock = threading.Lock()
_memory_memo: dict[tuple, str] = {}


def _memo_path() -> Path | None:
    base = os.environ.get("SPACEMIND_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "spacemind")
    if os.environ.get("SPACEMIND_NO_MEMO"):
        return None
    return Path(base) / "fingerprints.sqlite"


def _memo_get(key: tuple) -> str | None:
    with _memo_lock:
        if key in _memory_memo:
            return _memory_memo[key]
    path = _memo_path()
    if path is None or not path.exists():
        return None
    try:
        with sqlite3.connect(path, timeout=5) as db:
            row = db.execute("SELECT digest FROM memo WHERE key = ?", (json.dumps(key),)).fetchone()
    except sqlite3.Error:
        return None
    return row[0] if row else None


def _memo_put(key: tuple, digest: str) -> None:
    with _memo_lock:
        _memory_memo[key] = digest
    path = _memo_path()
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with sqlite3.connect(path, timeout=5) as db:
            db.execute("CREATE TABLE IF NOT EXISTS memo (key TEXT PRIMARY KEY, digest TEXT)")
            db.execute("INSERT OR REPLACE INTO memo VALUES (?, ?)", (json.dumps(key), digest))
    except (sqlite3.Error, OSError) as exc:  # a read-only home must not stop the job
        log.debug("fingerprint memo not written (%s)", exc)


def _stat_key(kind: str, path: Path, *extra) -> tuple:
    st = path.stat()
    return (kind, st.st_dev, st.st_ino, path.name, st.st_size, st.st_mtime_ns, *extra)


def file_digest(path: str | os.PathLike) -> str:
    """blake2b-128 of a file's bytes."""
    path = Path(path)
    key = _stat_key("file", path)
    cached = _memo_get(key)
    if cached:
        return cached
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    digest = h.hexdigest()
    _memo_put(key, digest)
    return digest


def files_digest(paths: list[Path], names: list[str] | None = None) -> str:
    """Digest of an ordered list of files (names included, so reordering changes it)."""
    h = hashlib.blake2b(digest_size=16)
    for i, p in enumerate(paths):
        name = names[i] if names else p.name
        h.update(name.encode() + b"\0" + file_digest(p).encode() + b"\n")
    return h.hexdigest()


def safetensors_digest(files: list[Path], prefixes: tuple[str, ...]) -> str:
    """Digest of the tensors whose names start with one of `prefixes` across safetensors files:
    names, dtypes, shapes and bytes, in name order. Other tensors (an LLM beside the vision
    tower) do not affect it, so fine-tuning the LLM keeps encoder caches valid."""
    h = hashlib.blake2b(digest_size=16)
    found = 0
    for path in sorted(files, key=lambda p: p.name):
        key = _stat_key("safetensors", path, prefixes)
        digest = _memo_get(key)
        if digest is None:
            digest, count = _hash_safetensors_file(path, prefixes)
            _memo_put(key, f"{digest}:{count}")
        else:
            digest, count = digest.split(":")[0], int(digest.split(":")[1])
        found += int(count)
        h.update(digest.encode())
    if not found:
        raise ValueError(f"no tensors named {', '.join(prefixes)}* in {', '.join(str(f) for f in files)}")
    return h.hexdigest()


def _hash_safetensors_file(path: Path, prefixes: tuple[str, ...]) -> tuple[str, int]:
    from .weights import read_header

    header, base = read_header(path)  # checked against the file's size: a truncated file is named
    names = sorted(k for k in header if k != "__metadata__" and k.startswith(prefixes))
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as fh:
        for name in names:
            info = header[name]
            start, end = info["data_offsets"]
            h.update(f"{name}|{info['dtype']}|{info['shape']}\n".encode())
            fh.seek(base + start)
            remaining = end - start
            while remaining:
                chunk = fh.read(min(_CHUNK, remaining))
                if not chunk:
                    raise ValueError(f"{path} is truncated (tensor {name})")
                h.update(chunk)
                remaining -= len(chunk)
    return h.hexdigest(), len(names)


def text_digest(obj) -> str:
    """Digest of a JSON-able object (canonical form)."""
    data = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.blake2b(data, digest_size=16).hexdigest()
