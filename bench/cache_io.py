"""I/O benchmark of the encoder-feature cache store (spacemind_cli.cache.FeatureCache).

One realistic entry (scale=1.0: 32 frames; VGGT patch tokens [32,1369,2048] bf16 + camera tokens
[32,1,2048] bf16, InternViT features [32,256,4096] bf16, pose [32,9] fp32; ~247 MB) is written
and read back through the store, and the same tensors through baselines measured in the same
process: ``torch.save``/``torch.load`` and an Arrow ``fixed_shape_tensor`` Parquet table.

MB = 1e6 bytes of tensor data (not file bytes). Every timed write starts after os.sync() (so one
case's dirty pages do not throttle the next) and ends with fsync, so writes measure the disk. "cold-ish": the entry file's pages are dropped
from the page cache with posix_fadvise(DONTNEED) first (the VM host may still cache the disk).
Reads include full verification (size + CRC-32 of every tensor) unless the name says otherwise.

    python -m bench.cache_io [--scale 1.0] [--repeats 3]   # writes bench/results/cache_io.json
"""

from __future__ import annotations

import argparse
import functools
import gc
import hashlib
import os
import shutil
import statistics
import tempfile
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from bench.common import machine_info, write_json
from spacemind_cli.cache import FeatureCache

KEY = "5ce0" + "0123456789abcdef" * 3 + "abcdefabcdef"


def make_entry(scale: float = 1.0, seed: int = 0) -> tuple[dict, dict[str, torch.Tensor]]:
    s = max(1, round(32 * scale))
    g = torch.Generator().manual_seed(seed)
    # Activations are roughly normal; bf16 random normals compress about like real ones (a little).
    tensors = {
        "vggt_patch": torch.randn(s, 1369, 2048, generator=g).bfloat16(),
        "vggt_camera": torch.randn(s, 1, 2048, generator=g).bfloat16(),
        "internvit": torch.randn(s, 256, 4096, generator=g).bfloat16(),
        "pose_enc": torch.randn(s, 9, generator=g),
    }
    meta = {
        "scene_key": "scannet/scene0000_00",
        "dataset": "scannet",
        "scene_name": "scene0000_00",
        "source_path": "/data/scannet/posed_images/scene0000_00",
        "frame_indices": list(range(0, 10 * s, 10)),
        "num_frames": s,
        "requested_frames": 32,
        "image_sizes": [[518, 392]] * s,
        "dtype": "bfloat16",
        "layers": {"vggt": [4, 11, 17, 23], "internvit": [-1]},
    }
    return meta, tensors


def _drop_cache(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def _timed(fn, repeats: int, before=None) -> list[float]:
    out = []
    for _ in range(repeats):
        if before is not None:
            before()
        gc.collect()
        t0 = time.perf_counter()
        res = fn()
        out.append(time.perf_counter() - t0)
        del res
    return out


def _rate(nbytes: int, times: list[float]) -> dict:
    rates = [nbytes / t / 1e6 for t in times]
    return {"median": round(statistics.median(rates), 1), "best": round(max(rates), 1), "runs": [round(r, 1) for r in rates]}


def _checksum_speeds(buf: memoryview) -> dict:
    algos = {
        "zlib.crc32": lambda b: zlib.crc32(b),
        "zlib.adler32": lambda b: zlib.adler32(b),
        "blake2b": lambda b: hashlib.blake2b(b, digest_size=16).digest(),
        "sha256": lambda b: hashlib.sha256(b).digest(),
    }
    out = {}
    for name, fn in algos.items():
        fn(buf[: 1 << 20])
        t = min(_timed(functools.partial(fn, buf), 2))
        out[name] = round(len(buf) / t / 1e9, 2)
    return out


class _Case:
    """One way of storing the entry: ``write()`` (ends with fsync), ``read()`` (returns tensors)."""

    path: Path
    extra: dict

    def write(self) -> None: ...

    def read(self): ...

    def check(self, tensors) -> None:
        got = self.read()
        assert all(got[n].dtype == t.dtype and torch.equal(got[n], t) for n, t in tensors.items()), type(self).__name__


class _StoreCase(_Case):
    def __init__(self, root: Path, meta, tensors, **opts):
        self.cache = FeatureCache(root, **opts)
        self.path = self.cache.path_for(KEY)
        self.meta, self.tensors = meta, tensors
        self.extra = {"options": opts}

    def write(self) -> None:
        self.cache.put(KEY, self.meta, self.tensors, fingerprint="bench-fp", describe={"bench": True})

    def read(self):
        return self.cache.get(KEY).tensors

    def parquet_only(self):  # the Parquet read alone, without our checks or torch views
        return pq.ParquetFile(self.path, page_checksum_verification=self.cache.page_checksums).read_row_group(0)

    def verify(self):
        bad = self.cache.verify(keys=[KEY])
        assert not bad, bad


class _TorchSaveCase(_Case):
    def __init__(self, root: Path, tensors):
        self.path, self.tensors = root / "entry.pt", tensors
        self.extra = {"note": "pickle-based; no integrity check on read"}

    def write(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            torch.save(self.tensors, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    def read(self):
        return torch.load(self.path, weights_only=True)


class _RawFileCase(_Case):
    def __init__(self, root: Path, tensors):
        self.path, self.tensors = root / "entry.raw", tensors
        self.bufs = [t.reshape(-1).view(torch.uint8).numpy() for t in tensors.values()]
        self.extra = {"note": "reference: the tensor bytes with plain write()+fsync / read(); no format, no checks"}

    def write(self) -> None:
        with open(self.path, "wb") as f:
            for b in self.bufs:
                f.write(memoryview(b))
            f.flush()
            os.fsync(f.fileno())

    def read(self):
        data = bytearray(self.path.stat().st_size)
        with open(self.path, "rb", buffering=0) as f:
            f.readinto(data)  # one copy, like any reader that fills its own buffer
        out, at = {}, 0
        for n, t in self.tensors.items():
            nb = t.numel() * t.element_size()
            out[n] = torch.frombuffer(data, dtype=t.dtype, count=t.numel(), offset=at).reshape(t.shape)
            at += nb
        return out


class _FixedShapeCase(_Case):
    """One row per frame; each tensor a fixed_shape_tensor column (bf16 as uint16 storage)."""

    def __init__(self, root: Path, tensors):
        self.path, self.tensors = root / "entry_fst.parquet", tensors
        self.extra = {"note": "one row per frame, fixed_shape_tensor columns; no integrity check on read"}

    def write(self) -> None:
        cols = {}
        for name, t in self.tensors.items():
            a = (t.view(torch.uint16) if t.dtype == torch.bfloat16 else t).numpy()
            typ = pa.fixed_shape_tensor(pa.from_numpy_dtype(a.dtype), list(a.shape[1:]))
            storage = pa.FixedSizeListArray.from_arrays(pa.array(a.reshape(-1)), int(np.prod(a.shape[1:])))
            cols[name] = pa.ExtensionArray.from_storage(typ, storage)
        tmp = self.path.with_suffix(".tmp")
        pq.write_table(pa.table(cols), tmp, compression="none", use_dictionary=False, write_statistics=False)
        fd = os.open(tmp, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)
        os.replace(tmp, self.path)

    def read(self):
        table = pq.read_table(self.path)
        out = {}
        for name, t in self.tensors.items():
            arr = table.column(name).combine_chunks().storage.flatten().to_numpy(zero_copy_only=False)
            x = torch.from_numpy(arr if arr.flags.writeable else arr.copy())
            out[name] = (x.view(torch.bfloat16) if t.dtype == torch.bfloat16 else x).reshape(t.shape)
        return out


def run(tmpdir: str | os.PathLike, scale: float = 1.0, repeats: int = 3) -> dict:
    """Measure every case, interleaved round by round (so drifting machine load and page-cache
    state hit all cases alike), and return the results as a JSON-able dict."""
    tmpdir = Path(tmpdir)
    tmpdir.mkdir(parents=True, exist_ok=True)
    meta, tensors = make_entry(scale)
    nbytes = sum(t.numel() * t.element_size() for t in tensors.values())
    res: dict = {
        "env": machine_info() | {"pyarrow": pa.__version__, "zlib": zlib.ZLIB_RUNTIME_VERSION},
        "entry": {
            "scale": scale,
            "repeats": repeats,
            "tensors": {
                n: {"shape": list(t.shape), "dtype": str(t.dtype).removeprefix("torch."), "bytes": t.numel() * t.element_size()}
                for n, t in tensors.items()
            },
            "tensor_bytes": nbytes,
        },
    }
    biggest = tensors["vggt_patch"].reshape(-1).view(torch.uint8).numpy()
    res["checksum_GBps"] = _checksum_speeds(memoryview(biggest))
    bufs = [t.reshape(-1).view(torch.uint8).numpy() for t in tensors.values()]
    with ThreadPoolExecutor(2) as ex:
        t = min(_timed(lambda: list(ex.map(zlib.crc32, bufs)), 3))
    res["checksum_GBps"]["zlib.crc32 per tensor, 2 threads (store path)"] = round(nbytes / t / 1e9, 2)

    for sub in ("store", "store_page_checksums", "store_zstd", "baselines"):
        (tmpdir / sub).mkdir(exist_ok=True)
    cases: dict[str, _Case] = {
        "store": _StoreCase(tmpdir / "store", meta, tensors),
        "store_page_checksums": _StoreCase(tmpdir / "store_page_checksums", meta, tensors, page_checksums=True),
        "store_zstd": _StoreCase(tmpdir / "store_zstd", meta, tensors, compression="zstd", compression_level=3),
        "raw_file": _RawFileCase(tmpdir / "baselines", tensors),
        "torch_save": _TorchSaveCase(tmpdir / "baselines", tensors),
        "fixed_shape_tensor_parquet": _FixedShapeCase(tmpdir / "baselines", tensors),
    }
    times: dict[str, dict[str, list[float]]] = {n: {} for n in cases}

    def measure(what: str, fn_of, before_of=None, only=None) -> None:
        for _ in range(repeats):
            for name, case in cases.items():
                if only and not isinstance(case, only):
                    continue
                before = before_of(case) if before_of else None
                times[name].setdefault(what, []).extend(_timed(fn_of(case), 1, before=before))

    for case in cases.values():  # untimed first write: creates files, manifests, shard dirs
        case.write()
    measure("write_mbps", lambda c: c.write, lambda c: os.sync)
    measure("read_cold_mbps", lambda c: c.read, lambda c: (lambda: _drop_cache(c.path)))
    for case in cases.values():
        case.read()  # warm the page cache
    measure("read_warm_mbps", lambda c: c.read)
    measure("parquet_read_only_warm_mbps", lambda c: c.parquet_only, only=_StoreCase)
    measure("verify_mbps", lambda c: c.verify, only=_StoreCase)
    for case in cases.values():
        case.check(tensors)

    out: dict = {}
    for name, case in cases.items():
        out[name] = {"file_bytes": case.path.stat().st_size, **case.extra}
        out[name].update({what: _rate(nbytes, ts) for what, ts in times[name].items()})
    res["store"] = out.pop("store")
    res["store_page_checksums"] = out.pop("store_page_checksums")
    res["store_zstd"] = out.pop("store_zstd")
    res["baselines"] = out
    res["env"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    shutil.rmtree(tmpdir / "baselines", ignore_errors=True)

    res["entry"]["file_bytes"] = res["store"]["file_bytes"]
    res["entry"]["overhead_bytes"] = res["store"]["file_bytes"] - nbytes
    res["store_zstd"]["size_vs_uncompressed"] = round(res["store_zstd"]["file_bytes"] / res["store"]["file_bytes"], 3)
    s, b = res["store"], res["baselines"]
    med = lambda d, m: d[m]["median"]  # noqa: E731
    res["ratios"] = {
        f"{m}_vs_{base}": round(med(s, m) / med(b[base], m), 2)
        for base in b
        for m in ("write_mbps", "read_cold_mbps", "read_warm_mbps")
    }
    res["ratios"]["read_warm_with_verify_vs_parquet_only"] = round(
        med(s, "read_warm_mbps") / med(s, "parquet_read_only_warm_mbps"), 2
    )
    for variant in ("store_page_checksums", "store_zstd"):
        for m in ("write_mbps", "read_cold_mbps", "read_warm_mbps"):
            res["ratios"][f"{variant}_{m}_vs_store"] = round(med(res[variant], m) / med(s, m), 2)
    return res


def _summary(res: dict) -> str:
    s = res["store"]
    lines = [
        f"entry: {res['entry']['tensor_bytes'] / 1e6:.1f} MB of tensors, {res['entry']['file_bytes'] / 1e6:.1f} MB on disk "
        f"(+{res['entry']['overhead_bytes']} bytes)",
        f"store: write {s['write_mbps']['median']:.0f} MB/s, read cold-ish {s['read_cold_mbps']['median']:.0f} MB/s, "
        f"warm {s['read_warm_mbps']['median']:.0f} MB/s (parquet alone {s['parquet_read_only_warm_mbps']['median']:.0f}), "
        f"verify {s['verify_mbps']['median']:.0f} MB/s",
        "checksums GB/s: " + ", ".join(f"{k} {v}" for k, v in res["checksum_GBps"].items()),
        f"page checksums: read warm {res['store_page_checksums']['read_warm_mbps']['median']:.0f} MB/s, "
        f"cold-ish {res['store_page_checksums']['read_cold_mbps']['median']:.0f} MB/s; "
        f"zstd: size x{res['store_zstd']['size_vs_uncompressed']}, read warm {res['store_zstd']['read_warm_mbps']['median']:.0f} MB/s, "
        f"write {res['store_zstd']['write_mbps']['median']:.0f} MB/s",
    ]
    for name, b in res["baselines"].items():
        lines.append(
            f"{name}: write {b['write_mbps']['median']:.0f} MB/s, read cold-ish {b['read_cold_mbps']['median']:.0f}, "
            f"warm {b['read_warm_mbps']['median']:.0f} MB/s"
        )
    lines.append("ratios (store / baseline): " + ", ".join(f"{k} {v}" for k, v in res["ratios"].items()))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=1.0, help="fraction of the 32 frames (default 1.0)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--tmpdir", default=None, help="where to write (default: a fresh temp dir)")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "cache_io.json"))
    args = ap.parse_args(argv)
    tmp = Path(args.tmpdir) if args.tmpdir else Path(tempfile.mkdtemp(prefix="spacemind-cache-bench-"))
    try:
        res = run(tmp, scale=args.scale, repeats=args.repeats)
    finally:
        if not args.tmpdir:
            shutil.rmtree(tmp, ignore_errors=True)
    out = Path(args.out)
    write_json(out, res)
    print(_summary(res))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
