"""Tests of the encoder-feature cache store (spacemind_cli.cache): layout, integrity, atomicity."""

from __future__ import annotations

import errno
import gc
import json
import math
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from spacemind_cli import files as fsutil
from spacemind_cli.cache import SCHEMA_VERSION, CacheEntry, FeatureCache
from spacemind_cli.errors import CacheError, ResourceError

KEY = "ab" + "0123456789abcdef" * 3


def _tensors(seed: int = 0, frames: int = 2) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "vggt_patch": torch.randn(frames, 5, 8, generator=g).bfloat16(),
        "internvit": torch.randn(frames, 3, 16, generator=g),
        "pose_enc": torch.randn(frames, 9, generator=g),
    }


def _meta(name: str = "scene0000_00", frames: int = 2) -> dict:
    return {
        "scene_key": f"scannet/{name}",
        "dataset": "scannet",
        "scene_name": name,
        "source_path": f"/data/scannet/{name}",
        "frame_indices": list(range(0, 10 * frames, 10)),
        "num_frames": frames,
        "image_sizes": [[518, 392]] * frames,
        "requested_frames": 32,
        "dtype": "bfloat16",
    }


def _bits(t: torch.Tensor) -> bytes:
    return t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def _flip_byte_in_tensor(path: Path, t: torch.Tensor) -> None:
    """Flip one byte in the middle of tensor ``t``'s data inside the Parquet file."""
    raw = bytearray(path.read_bytes())
    data = _bits(t)
    probe = data[len(data) // 2 : len(data) // 2 + 24]
    at = raw.find(probe)
    assert at > 0 and raw.find(probe, at + 1) == -1, "probe must locate the tensor bytes uniquely"
    raw[at + 5] ^= 0x40
    path.write_bytes(bytes(raw))


def _mp_context():
    """Worker processes forked from a clean forkserver that imported torch + the cache once:
    no threads inherited from pytest, and no 1-2 s torch import per child."""
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["torch", "pyarrow.parquet", "spacemind_cli.cache"])
    return ctx


@pytest.fixture
def cache(tmp_path: Path) -> FeatureCache:
    return FeatureCache(tmp_path / "cache")


# --------------------------------------------------------------------------- round trip


def test_round_trip_every_dtype_bit_exact(cache: FeatureCache) -> None:
    special_bf16 = torch.from_numpy(
        np.array([0x7FC1, 0xFF81, 0x8000, 0x0001, 0x7F80, 0xFF80, 0x3F80, 0x0000], dtype=np.uint16).view(np.int16)
    )
    tensors = {
        "f32": torch.randn(3, 4, 5),
        "bf16": torch.cat([torch.randn(40).bfloat16(), special_bf16.view(torch.bfloat16)]).reshape(6, 8),
        "f16": torch.randn(7).half(),
        "i64": torch.tensor([-(2**63), 2**63 - 1, 0, 42]),
        "u8": torch.arange(256, dtype=torch.uint8).reshape(16, 16),
        "f64": torch.tensor([math.pi, -0.0, float("inf")], dtype=torch.float64),
        "boolean": torch.tensor([True, False, True]),
        "scalar0d": torch.tensor(1.25),
        "empty": torch.empty(0, 4, dtype=torch.float32),
        "noncontig": torch.arange(24, dtype=torch.int32).reshape(4, 6).t(),
        "from_numpy": np.arange(12, dtype=np.uint16).reshape(3, 4),
    }
    meta = {
        "scene_key": "arkit/41069021",
        "num_frames": 32,
        "pi": math.pi,
        "tiny": 5e-324,
        "sum": 0.1 + 0.2,
        "big": 2**62 + 1,
        "flag": True,
        "nothing": None,
        "frame_indices": [0, 7, 15],
        "floats": [0.5, 1e-300, -2.25],
        "names": ["a", "b", "ünïcode"],
        "image_sizes": [[518, 392], [392, 518]],
        "layers": {"vggt": [4, 11, 17, 23], "internvit": "last"},
        "dtype": "bfloat16",
    }
    cache.put(KEY, meta, tensors, fingerprint="fp-rt")
    entry = cache.get(KEY)
    gc.collect()  # the Arrow table is gone; the zero-copy tensors must keep their memory alive
    assert isinstance(entry, CacheEntry) and entry.key == KEY and entry.path == cache.path_for(KEY)
    assert list(entry.tensors) == list(tensors)
    for name, want in tensors.items():
        want = torch.from_numpy(want) if isinstance(want, np.ndarray) else want
        got = entry.tensors[name]
        assert got.dtype == want.dtype, name
        assert tuple(got.shape) == tuple(want.shape), name
        assert _bits(got) == _bits(want), name  # bit-exact, NaN payloads and -0.0 included
    assert entry.meta == meta
    assert type(entry.meta["num_frames"]) is int and type(entry.meta["pi"]) is float
    assert entry.meta["sum"] == 0.1 + 0.2 and entry.meta["tiny"] == 5e-324


def test_overwrite_replaces_entry(cache: FeatureCache) -> None:
    cache.put(KEY, _meta(), _tensors(1), fingerprint="fp1")
    cache.put(KEY, _meta("other"), _tensors(2), fingerprint="fp2")
    entry = cache.get(KEY)
    assert entry.meta["scene_name"] == "other"
    assert _bits(entry.tensors["vggt_patch"]) == _bits(_tensors(2)["vggt_patch"])
    assert [i.fingerprint for i in cache.entries()] == ["fp2"]


def test_absent_key(cache: FeatureCache) -> None:
    assert not cache.contains(KEY)
    assert cache.get(KEY) is None
    cache.delete(KEY)  # no error
    assert list(cache.entries()) == []
    with pytest.raises(ValueError):
        cache.path_for("../etc/passwd")
    cache.put(KEY, _meta(), _tensors(), fingerprint="fp")
    assert cache.contains(KEY)
    cache.delete(KEY)
    assert not cache.contains(KEY) and cache.get(KEY) is None


def test_cast_to_is_explicit_and_checked(cache: FeatureCache) -> None:
    t = _tensors()
    cache.put(KEY, _meta(), t, fingerprint="fp")
    assert cache.get(KEY).tensors["internvit"].dtype == torch.float32  # never cast implicitly
    cache.put(KEY, _meta(), t, fingerprint="fp", cast_to="float16")
    got = cache.get(KEY).tensors
    assert got["internvit"].dtype == torch.float16 and got["vggt_patch"].dtype == torch.bfloat16
    assert torch.equal(got["internvit"], t["internvit"].half())
    with pytest.raises(ValueError, match="overflow"):
        cache.put(KEY, _meta(), {"x": torch.tensor([1e6])}, fingerprint="fp", cast_to={"x": "float16"})
    with pytest.raises(ValueError):
        cache.put(KEY, _meta(), {"x": torch.tensor([1])}, fingerprint="fp", cast_to={"x": "float16"})


def test_meta_that_misfits_its_typed_column_is_kept_in_meta_json(cache: FeatureCache) -> None:
    path = cache.put(KEY, {"num_frames": "many", "image_sizes": [[1.5, 2]]}, _tensors(), fingerprint="fp")
    row = pq.read_table(path, columns=["num_frames", "image_sizes"]).to_pylist()[0]
    assert row == {"num_frames": None, "image_sizes": None}
    assert cache.get(KEY).meta == {"num_frames": "many", "image_sizes": [[1.5, 2]]}


def test_bad_inputs_rejected(cache: FeatureCache) -> None:
    with pytest.raises(ValueError, match="tensor name"):
        cache.put(KEY, {}, {"a__shape": torch.zeros(1)}, fingerprint="fp")
    with pytest.raises(ValueError, match="meta"):
        cache.put(KEY, {"obj": object()}, _tensors(), fingerprint="fp")
    assert not cache.contains(KEY)


# --------------------------------------------------------------------------- layout


def test_layout_parquet_contract(cache: FeatureCache) -> None:
    path = cache.put(KEY, _meta(), _tensors(), fingerprint="fp-layout")
    assert path == cache.root / "entries" / KEY[:2] / f"{KEY}.parquet"
    pf = pq.ParquetFile(path)
    md = pf.metadata
    assert md.num_row_groups == 1 and md.num_rows == 1
    kv = md.metadata
    assert kv[b"spacemind.schema_version"] == str(SCHEMA_VERSION).encode()
    assert kv[b"spacemind.key"] == KEY.encode()
    names = pf.schema_arrow.names
    blobs = ["vggt_patch", "internvit", "pose_enc"]
    assert names[-3:] == blobs and not set(blobs) & set(names[:-3])  # scalar columns first, blobs last
    assert names[:4] == ["key", "scene_key", "dataset", "scene_name"]
    for b in blobs:
        assert pf.schema_arrow.field(b).type == pa.large_binary()
        assert {f"{b}__shape", f"{b}__dtype", f"{b}__checksum"} <= set(names)
    rg = md.row_group(0)
    by_path = {rg.column(i).path_in_schema: rg.column(i) for i in range(md.num_columns)}
    for b in blobs:
        col = by_path[b]
        assert not any("DICTIONARY" in e for e in col.encodings), col.encodings
        assert col.compression == "UNCOMPRESSED"
        assert not col.is_stats_set
    assert any("DICTIONARY" in e for e in by_path["scene_key"].encodings)
    row = pq.read_table(path).to_pylist()[0]
    assert row["vggt_patch"] == _bits(_tensors()["vggt_patch"])  # raw bf16 bits, no cast
    assert row["vggt_patch__dtype"] == "bfloat16" and row["vggt_patch__shape"] == [2, 5, 8]
    assert row["vggt_patch__checksum"].startswith("crc32:")
    manifest = json.loads((cache.root / "manifest.json").read_text())
    assert manifest["schema_version"] == SCHEMA_VERSION and "fp-layout" in manifest["fingerprints"]


def test_compression_option(tmp_path: Path) -> None:
    c = FeatureCache(tmp_path / "z", compression="zstd", page_checksums=True)
    t = {"zeros": torch.zeros(64, 64)}
    path = c.put(KEY, {}, t, fingerprint="fp")
    col = pq.ParquetFile(path).metadata.row_group(0).column(pq.ParquetFile(path).schema_arrow.names.index("zeros"))
    assert col.compression == "ZSTD" and col.total_compressed_size < 64 * 64 * 4 // 10
    assert torch.equal(c.get(KEY).tensors["zeros"], t["zeros"])


def test_duckdb_and_pyarrow_read_the_dataset(cache: FeatureCache) -> None:
    import duckdb
    keys = []
    for i in range(3):
        key = f"{i:02x}" + "f" * 30
        keys.append(key)
        cache.put(key, _meta(f"scene{i:04d}_00") | {"extra": i}, _tensors(i), fingerprint=f"fp{i % 2}")
    # a stray temp file must not disturb readers of the glob
    (cache.path_for(keys[0]).parent / f".{keys[0]}.parquet.h.1.abcd.tmp").write_bytes(b"PAR1 half written")
    glob = str(cache.root / "entries" / "**" / "*.parquet")
    rows = duckdb.sql(
        f"SELECT key, scene_name, dataset, num_frames, frame_indices, fingerprint, "
        f"CAST(json_extract(meta_json, '$.extra') AS INTEGER) AS extra, octet_length(pose_enc) AS nb "
        f"FROM read_parquet('{glob}') ORDER BY key"
    ).fetchall()
    assert [r[0] for r in rows] == sorted(keys)
    assert rows[1][1:] == ("scene0001_00", "scannet", 2, [0, 10], "fp1", 1, 2 * 9 * 4)
    import pyarrow.dataset as ds

    table = ds.dataset(str(cache.root / "entries"), format="parquet").to_table(columns=["key", "scene_key"])
    assert sorted(table.column("key").to_pylist()) == sorted(keys)


# --------------------------------------------------------------------------- integrity


def test_truncated_file_is_corrupt(cache: FeatureCache) -> None:
    path = cache.put(KEY, _meta(), _tensors(), fingerprint="fp")
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.truncate(size // 2)
    with pytest.raises(CacheError, match=f"corrupt cache entry {path}") as ei:
        cache.get(KEY)
    assert "\n" not in str(ei.value)
    [(bad_path, reason)] = cache.verify()
    assert bad_path == path and "unreadable" in reason


def test_flipped_tensor_byte_is_detected(cache: FeatureCache) -> None:
    t = {"big": torch.randn(64, 64)}
    path = cache.put(KEY, _meta(), t, fingerprint="fp")
    _flip_byte_in_tensor(path, t["big"])
    with pytest.raises(CacheError, match="checksum mismatch") as ei:
        cache.get(KEY)
    assert str(path) in str(ei.value)
    [(bad_path, reason)] = cache.verify()
    assert bad_path == path and "checksum" in reason


def test_a_tensor_dropped_from_the_row_is_detected(cache: FeatureCache) -> None:
    """The row's tensor list and specs must equal the footer's copy: an entry rewritten without
    one tensor (checksums of the rest still right) is corrupt, never served one tensor short."""
    tensors = _tensors()
    path = cache.put(KEY, _meta(), tensors, fingerprint="fp")
    victim = sorted(tensors)[0]
    table = pq.read_table(path)
    kv = table.schema.metadata
    keep = [n for n in table.column_names if n != victim and not n.startswith(f"{victim}__")]
    table = table.select(keep)
    names = [n for n in table.column("tensor_names")[0].as_py() if n != victim]
    table = table.set_column(table.column_names.index("tensor_names"), "tensor_names", pa.array([names], pa.list_(pa.string())))
    pq.write_table(table.replace_schema_metadata(kv), path)
    with pytest.raises(CacheError, match="lists tensors"):
        cache.get(KEY)


def test_a_caller_can_require_its_tensor_set(cache: FeatureCache) -> None:
    tensors = _tensors()
    cache.put(KEY, _meta(), tensors, fingerprint="fp")
    assert set(cache.get(KEY, tensor_names=list(tensors)).tensors) == set(tensors)
    with pytest.raises(CacheError, match="expected"):
        cache.get(KEY, tensor_names=[*tensors, "another"])
    assert "expected" in cache.check(KEY, tensor_names=sorted(tensors)[1:])


def test_wrong_schema_version_entry(cache: FeatureCache) -> None:
    path = cache.put(KEY, _meta(), _tensors(), fingerprint="fp")
    table = pq.read_table(path)
    kv = dict(table.schema.metadata)
    kv[b"spacemind.schema_version"] = b"2"
    pq.write_table(table.replace_schema_metadata(kv), path)
    with pytest.raises(CacheError, match="schema version 2") as ei:
        cache.get(KEY)
    assert str(path) in str(ei.value)
    [info] = list(cache.entries())
    assert info.error and "schema version 2" in info.error


def test_wrong_schema_version_manifest(tmp_path: Path) -> None:
    root = tmp_path / "c"
    FeatureCache(root)
    m = json.loads((root / "manifest.json").read_text())
    m["schema_version"] = 99
    (root / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(CacheError, match="schema version 99") as ei:
        FeatureCache(root)
    assert str(root / "manifest.json") in str(ei.value) and "\n" not in str(ei.value)
    (root / "manifest.json").write_text("{not json")
    with pytest.raises(CacheError, match="corrupt cache manifest"):
        FeatureCache(root)
    with pytest.raises(CacheError, match="no feature cache"):
        FeatureCache(tmp_path / "missing", create=False)
    assert not (tmp_path / "missing").exists()


@pytest.mark.parametrize("create", [True, False])
def test_a_root_that_is_a_file_is_no_cache(tmp_path: Path, create: bool) -> None:
    a_file = tmp_path / "some.jsonl"
    a_file.write_text('{"id": 1}\n')
    with pytest.raises(CacheError) as ei:
        FeatureCache(a_file, create=create)
    assert str(ei.value) == f"no feature cache at {a_file} (it is a file, not a folder)"
    with pytest.raises(CacheError) as ei:
        FeatureCache(a_file / "cache", create=create)
    assert str(ei.value) == f"no feature cache at {a_file / 'cache'} (part of its path is a file, not a folder)"
    assert a_file.read_text() == '{"id": 1}\n'


def test_a_manifest_that_is_a_folder_or_not_text_is_corrupt(tmp_path: Path) -> None:
    root = tmp_path / "c"
    (root / "manifest.json").mkdir(parents=True)
    with pytest.raises(CacheError, match="corrupt cache manifest .*: a folder, not a file"):
        FeatureCache(root)
    (root / "manifest.json").rmdir()
    (root / "manifest.json").write_bytes(b'{"schema_version": "\xff"}')
    with pytest.raises(CacheError, match=r"corrupt cache manifest .*: not UTF-8 text \(byte 20\)"):
        FeatureCache(root)


def test_entry_under_wrong_key_is_corrupt(cache: FeatureCache) -> None:
    path = cache.put(KEY, _meta(), _tensors(), fingerprint="fp")
    other = "cd" + KEY[2:]
    dest = cache.path_for(other)
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.link(path, dest)
    with pytest.raises(CacheError, match="expected"):
        cache.get(other)


def test_verify_and_entries_stream_footers_only(cache: FeatureCache, monkeypatch: pytest.MonkeyPatch) -> None:
    good = [cache.put(f"{i:02x}aa", _meta(), _tensors(i), fingerprint="fp") for i in range(3)]
    with open(good[1], "r+b") as f:
        f.truncate(100)
    t = _tensors(2)
    _flip_byte_in_tensor(good[2], t["internvit"])
    bad = dict(cache.verify())
    assert set(bad) == {good[1], good[2]}
    assert "unreadable" in bad[good[1]] and "checksum mismatch" in bad[good[2]]
    assert cache.verify(keys=["00aa", "ffff"]) == [(cache.path_for("ffff"), "missing")]

    def no_data_reads(*a, **k):  # entries() must never read row groups (tensors)
        raise AssertionError("entries() read tensor data")

    monkeypatch.setattr(pq.ParquetFile, "read_row_group", no_data_reads)
    infos = {i.key: i for i in cache.entries()}
    assert set(infos) == {"00aa", "01aa", "02aa"}
    assert infos["00aa"].error is None and infos["00aa"].scene_name == "scene0000_00"
    assert infos["00aa"].num_frames == 2 and infos["00aa"].fingerprint == "fp"
    assert infos["01aa"].error and "unreadable" in infos["01aa"].error


# --------------------------------------------------------------------------- temp files, crashes


def test_temp_files_are_ignored_and_cleaned(cache: FeatureCache) -> None:
    path = cache.path_for(KEY)
    path.parent.mkdir(parents=True, exist_ok=True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = fsutil.HOST
    live_tmp = path.parent / f".{path.name}.{host}.{os.getppid()}.aaaa.tmp"
    dead_tmp = path.parent / f".{path.name}.{host}.{dead.pid}.bbbb.tmp"
    for p in (live_tmp, dead_tmp):
        p.write_bytes(b"PAR1" + b"\0" * 100)
    assert not cache.contains(KEY) and cache.get(KEY) is None
    assert list(cache.entries()) == [] and cache.verify() == []
    assert cache.stats()["temp_files"] == 2
    assert cache.clean_temp(older_than=3600, dry_run=True) == [dead_tmp] and dead_tmp.exists()
    assert cache.clean_temp(older_than=3600) == [dead_tmp]
    assert not dead_tmp.exists() and live_tmp.exists()
    old = time.time() - 7200
    os.utime(live_tmp, (old, old))
    assert cache.clean_temp(older_than=3600) == [live_tmp]


def test_failed_replace_leaves_old_entry_and_no_temp(cache: FeatureCache, monkeypatch: pytest.MonkeyPatch) -> None:
    cache.put(KEY, _meta(), _tensors(1), fingerprint="fp")
    other = "ee" + KEY[2:]

    def boom(src, dst):
        raise OSError(errno.EIO, "simulated crash before rename")

    monkeypatch.setattr(fsutil.os, "replace", boom)
    for key in (KEY, other):
        with pytest.raises(ResourceError):
            cache.put(key, _meta("new"), _tensors(2), fingerprint="fp")
    monkeypatch.undo()
    assert not cache.contains(other) and cache.get(other) is None
    assert cache.get(KEY).meta["scene_name"] == "scene0000_00"  # old version intact
    assert list(cache.root.rglob("*.tmp")) == []


def _killed_writer(root: str, key: str) -> None:
    """Child: starts writing a big entry and dies (SIGKILL) after the data is written, before the
    rename: no cleanup code can run, exactly like a power cut or OOM kill."""
    from spacemind_cli import files as fs
    from spacemind_cli.cache import FeatureCache as FC

    c = FC(root)
    c.register_fingerprint("fp-crash")  # the manifest update completes; the entry write dies
    fs.fsync_file = lambda p: os.kill(os.getpid(), signal.SIGKILL)
    c.put(key, {"scene_name": "doomed"}, {"x": torch.ones(1024, 1024)}, fingerprint="fp-crash")


def test_killed_writer_leaves_no_visible_entry(cache: FeatureCache) -> None:
    proc = _mp_context().Process(target=_killed_writer, args=(str(cache.root), KEY))
    proc.start()
    proc.join(60)
    assert proc.exitcode == -signal.SIGKILL
    temps = list(cache.root.rglob("*.tmp"))
    assert len(temps) == 1 and temps[0].stat().st_size > 4 << 20  # the data was written...
    assert not cache.contains(KEY) and cache.get(KEY) is None  # ...but never became visible
    assert list(cache.entries()) == []
    assert "fp-crash" in FeatureCache(cache.root).manifest["fingerprints"]
    assert cache.prune(older_than=1e9, temp_older_than=3600) == []  # dead writer's temp goes
    assert list(cache.root.rglob("*.tmp")) == []


# --------------------------------------------------------------------------- concurrency


def _concurrent_writer(root: str, wid: int, rounds: int) -> None:
    from spacemind_cli.cache import FeatureCache as FC

    c = FC(root)
    for r in range(rounds):
        val = float(wid * 100 + r)
        t = {"feat": torch.full((128, 256), val), "ids": torch.arange(1000) + wid}
        meta = {"scene_name": f"w{wid}r{r}", "value": val}
        c.put("shared00", meta, t, fingerprint=f"fp{wid}", describe={"writer": wid, "round": r})
        c.put(f"own{wid:02d}", meta, t, fingerprint=f"fp{wid}")
        e = c.get("shared00")  # readers racing writers must always see a whole entry
        assert e is not None and torch.all(e.tensors["feat"] == e.meta["value"])
    for i in range(20):  # many overlapping manifest read-modify-writes: none may be lost
        c.register_fingerprint(f"extra-{wid}-{i}", {"i": i})


def test_concurrent_writer_processes(cache: FeatureCache) -> None:
    ctx = _mp_context()
    rounds = 4
    procs = [ctx.Process(target=_concurrent_writer, args=(str(cache.root), w, rounds)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    assert cache.verify() == []
    assert sorted(i.key for i in cache.entries()) == ["own00", "own01", "own02", "own03", "shared00"]
    e = cache.get("shared00")
    wid = int(e.meta["scene_name"][1])
    assert torch.all(e.tensors["feat"] == e.meta["value"]) and torch.equal(e.tensors["ids"], torch.arange(1000) + wid)
    manifest = json.loads((cache.root / "manifest.json").read_text())  # valid JSON
    fps = manifest["fingerprints"]
    assert sorted(f for f in fps if f.startswith("fp")) == ["fp0", "fp1", "fp2", "fp3"]
    assert {f for f in fps if f.startswith("extra")} == {f"extra-{w}-{i}" for w in range(4) for i in range(20)}
    assert all(fps[f"fp{w}"]["writer"] == w and fps[f"fp{w}"]["round"] == rounds - 1 for w in range(4))
    assert list(cache.root.rglob("*.tmp")) == []


# --------------------------------------------------------------------------- resource errors


# A real read-only file system (bind mount, works as root) is exercised end to end in
# tests/reliability/test_resource_faults.py; here the store's own handling is simulated.


def test_simulated_read_only_and_disk_full(cache: FeatureCache, monkeypatch: pytest.MonkeyPatch) -> None:
    cache.put(KEY, _meta(), _tensors(1), fingerprint="fp")
    real_write = pq.write_table

    def half_then_enospc(table, where, **kw):
        real_write(table, where, **kw)
        with open(where, "r+b") as f:
            f.truncate(os.path.getsize(where) // 2)
        raise OSError(errno.ENOSPC, "No space left on device", str(where))

    monkeypatch.setattr(pq, "write_table", half_then_enospc)
    with pytest.raises(ResourceError, match="no space left on device") as ei:
        cache.put(KEY, _meta("x"), _tensors(2), fingerprint="fp")
    assert str(cache.path_for(KEY)) in str(ei.value)
    monkeypatch.undo()

    def erofs(*a, **k):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(fsutil.os, "replace", erofs)
    with pytest.raises(ResourceError, match="read-only file system"):
        cache.put("ff" + KEY[2:], _meta(), _tensors(), fingerprint="fp")
    with pytest.raises(ResourceError, match="read-only file system"):
        cache.register_fingerprint("fp-new", {"x": 1})
    monkeypatch.undo()

    real_open = os.open

    def eacces_on_create(path, flags, *a, **k):
        if flags & os.O_CREAT and str(path).endswith(".tmp"):
            raise OSError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, flags, *a, **k)

    monkeypatch.setattr(fsutil.os, "open", eacces_on_create)
    with pytest.raises(ResourceError, match="permission denied"):
        cache.put(KEY, _meta("y"), _tensors(3), fingerprint="fp")
    monkeypatch.undo()

    # the cache stayed consistent: the old entry, no temp files, manifest unchanged
    assert cache.get(KEY).meta["scene_name"] == "scene0000_00"
    assert cache.verify() == [] and list(cache.root.rglob("*.tmp")) == []
    assert "fp-new" not in json.loads((cache.root / "manifest.json").read_text())["fingerprints"]


def test_memory_or_system_trouble_while_reading_is_not_corruption(cache: FeatureCache, monkeypatch: pytest.MonkeyPatch) -> None:
    """Out of memory or an OS error says nothing about the entry: it is raised, and the good
    entry is neither reported bad nor pruned (nor, by `answer`, recomputed)."""
    from spacemind_cli.cache import entry as entry_format

    path = cache.put(KEY, _meta(), _tensors(), fingerprint="fp")
    for failure, raised in [(MemoryError(), MemoryError), (pa.ArrowMemoryError("malloc of 9 GiB failed"), MemoryError),
                            (OSError(errno.EIO, "Input/output error"), ResourceError)]:
        def fail(*a, _failure=failure, **k):
            raise _failure

        monkeypatch.setattr(pq, "ParquetFile", fail)  # the entry's read and its footer's
        with pytest.raises(raised):
            entry_format.read_entry(path, KEY)
        with pytest.raises(raised):
            cache.get(KEY)
        with pytest.raises(raised):
            cache.prune(bad=True)
        assert path.exists()
    with pytest.raises(ResourceError, match="Input/output error"):
        cache.check(KEY)
    monkeypatch.undo()

    def footer_short_of_memory(*a, **k):
        raise MemoryError

    monkeypatch.setattr(pq, "read_metadata", footer_short_of_memory)  # the listing prune starts from
    with pytest.raises(MemoryError):
        cache.prune(bad=True)
    assert path.exists()
    monkeypatch.undo()
    assert cache.verify() == [] and cache.get(KEY).meta["scene_name"] == "scene0000_00"


# --------------------------------------------------------------------------- prune / stats


def test_prune_and_stats(cache: FeatureCache) -> None:
    old = cache.put("01old", _meta(), _tensors(1), fingerprint="fpA")
    cache.put("02new", _meta(), _tensors(2), fingerprint="fpB")
    cache.put("03new", _meta(), _tensors(3), fingerprint="fpA", describe={"model": "vggt-1b"})
    broken = cache.put("04bad", _meta(), _tensors(4), fingerprint="fpB")
    long_ago = time.time() - 30 * 86400
    os.utime(old, (long_ago, long_ago))
    _flip_byte_in_tensor(broken, _tensors(4)["internvit"])

    s = cache.stats()
    assert s["entries"] == 4 and s["by_fingerprint"]["fpA"]["entries"] == 2
    assert s["by_fingerprint"]["fpA"]["info"]["model"] == "vggt-1b"
    assert s["bytes"] == sum(p.stat().st_size for p in cache.root.rglob("*.parquet"))

    with pytest.raises(ValueError):
        cache.prune()
    dry = cache.prune(older_than=7 * 86400, dry_run=True)
    assert [i.key for i in dry] == ["01old"] and old.exists()
    assert [i.key for i in cache.prune(fingerprint="fpA", older_than=7 * 86400, match="all")] == ["01old"]
    assert not old.exists()
    assert [i.key for i in cache.prune(bad=True, dry_run=True)] == ["04bad"] and broken.exists()
    assert [i.key for i in cache.prune(bad=True)] == ["04bad"] and not broken.exists()
    assert [i.key for i in cache.prune(fingerprint_not_in={"fpB"})] == ["03new"]
    assert [i.key for i in cache.entries()] == ["02new"] and cache.verify() == []
