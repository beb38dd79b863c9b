"""3. Cache integrity: truncated entries, flipped bytes, foreign schema versions and entries made by
other encoder weights are detected (per-tensor CRC-32, meta checksum, footer checks, fingerprint
checks), never used silently: `answer --cache` recomputes them (answers equal to a cache-less
run), `extract` re-encodes them, `cache verify` exits 4 naming them, `cache prune --bad` /
`--keep-checkpoint` removes exactly them, and a cache of a foreign schema is refused (exit 4).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
from reliability_support import answer_args, cli, read_jsonl, stable

N = 6  # scenes of base_root


@pytest.fixture
def cache(base_cache, tmp_path) -> Path:
    dst = tmp_path / "cache"
    shutil.copytree(base_cache, dst)
    return dst


def entry_files(cache: Path) -> list[Path]:
    return sorted(cache.glob("entries/*/*.parquet"))


def entry_of(cache: Path, scene: str) -> Path:
    for p in entry_files(cache):
        if json.loads(pq.read_metadata(p).metadata[b"spacemind.meta"])["scene_key"] == scene:
            return p
    raise AssertionError(scene)


def answer_with_cache(tmp_path, base_root, base_questions, ckpt, cache, name="a.jsonl"):
    out = tmp_path / name
    res = cli(*answer_args(base_root, base_questions, ckpt, out, "--cache", cache))
    summary = json.loads(out.with_name(out.name + ".summary.json").read_text()) if res.exit_code in (0, 1) else None
    return res, out, summary


def assert_verify_names(cache: Path, bad: list[Path], reason: str) -> None:
    res = cli("cache", "verify", cache)
    assert res.exit_code == 4, res
    flat = " ".join(res.stderr.split())
    for p in bad:
        assert f"bad {p}" in flat, (p, flat)
    assert reason in flat
    assert f"{len(bad)} of {N} entries are bad" in flat


def flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x5A
    path.write_bytes(bytes(data))


def blob_offset(path: Path, tensor: str) -> int:
    """A byte offset inside a tensor's raw-bytes blob (from the Parquet column chunk)."""
    md = pq.read_metadata(path)
    rg = md.row_group(0)
    for i in range(rg.num_columns):
        col = rg.column(i)
        if col.path_in_schema == tensor:
            return col.data_page_offset + col.total_compressed_size // 2
    raise AssertionError(tensor)


def rewrite_footer(path: Path, **changes) -> None:
    """Rewrite an entry with some footer key-value metadata replaced (checksums left valid)."""
    table = pq.read_table(path)
    kv = dict(table.schema.metadata)
    for k, v in changes.items():
        kv[f"spacemind.{k}".encode()] = str(v).encode()
    pq.write_table(table.replace_schema_metadata(kv), path)


# ------------------------------------------------------------------------------ truncation, flipped bytes


@pytest.mark.parametrize("cut", [0.5, 0.99, 0.0], ids=["half", "last-byte", "empty"])
def test_truncated_entry_is_named_by_verify_and_recomputed_by_answer(tmp_path, base_root, base_questions, tiny_ckpt,
                                                                     baseline, cache, cut):
    victim = entry_of(cache, "room2")
    victim.write_bytes(victim.read_bytes()[: int(victim.stat().st_size * cut)])
    assert_verify_names(cache, [victim], "unreadable parquet")

    res, out, summary = answer_with_cache(tmp_path, base_root, base_questions, tiny_ckpt, cache)
    assert res.exit_code == 0, res
    assert summary["cache"] == {"hit": N - 1, "refreshed": 1}
    assert stable(read_jsonl(out)) == stable(read_jsonl(baseline))
    assert {r["cache"] for r in read_jsonl(out) if r["scene"] == "room2"} == {"refreshed"}
    assert cli("cache", "verify", cache).exit_code == 0  # rewritten whole


@pytest.mark.parametrize("where", ["vggt-patch-blob", "vit-blob", "camera-blob"])
def test_flipped_byte_in_a_tensor_is_named_by_verify_and_recomputed_by_answer(tmp_path, base_root, base_questions,
                                                                              tiny_ckpt, baseline, cache, where):
    victim = entry_of(cache, "clip")
    names = pq.read_metadata(victim).schema.names
    tensor = {"vggt-patch-blob": [n for n in names if "patch" in n and "__" not in n],
              "vit-blob": [n for n in names if "vit" in n and "__" not in n],
              "camera-blob": [n for n in names if "camera" in n and "__" not in n]}[where][0]
    flip(victim, blob_offset(victim, tensor))
    assert_verify_names(cache, [victim], f"tensor '{tensor}': checksum mismatch")

    res, out, summary = answer_with_cache(tmp_path, base_root, base_questions, tiny_ckpt, cache)
    assert res.exit_code == 0, res
    assert summary["cache"] == {"hit": N - 1, "refreshed": 1}
    assert stable(read_jsonl(out)) == stable(read_jsonl(baseline))


def small_fixed_entry(root: Path):
    """An entry whose bytes depend on nothing but this code and the pyarrow version: fixed key,
    meta (no paths, no times), fingerprint and tensor values, in the shapes answering uses."""
    from spacemind_cli.cache import FeatureCache

    fc = FeatureCache(root)
    key = "ab" + "0" * 30
    tensors = {
        "vggt_patch": torch.arange(24, dtype=torch.float32).reshape(1, 2, 3, 4),
        "vggt_camera": torch.arange(8, dtype=torch.float32).reshape(1, 2, 1, 4) * 0.5,
        "internvit": torch.arange(12, dtype=torch.bfloat16).reshape(2, 3, 2),
        "pose_enc": torch.linspace(-1, 1, 18).reshape(2, 9),
    }
    meta = {"scene_key": "synthetic/room", "dataset": "synthetic", "scene_name": "room", "source_path": "room.mp4",
            "frame_indices": [3, 7], "num_frames": 2, "requested_frames": 2, "image_sizes": [[48, 64], [48, 64]],
            "dtype": "fp32", "layers": [-1], "notes": []}
    path = fc.put(key, meta, tensors, fingerprint="f" * 32)
    return fc, key, path, meta, tensors


def test_every_flipped_bit_position_is_detected_or_harmless(tmp_path):
    """A flipped bit at EVERY byte offset of an entry (bit `offset % 8`): reading it either raises
    CacheError or returns exactly the tensors and meta that were written. Never a missing tensor,
    another type, or any other exception."""
    from spacemind_cli.errors import CacheError

    fc, key, path, meta, tensors = small_fixed_entry(tmp_path / "cache")
    original = path.read_bytes()
    assert fc.get(key).meta == meta
    detected = 0
    for offset in range(len(original)):
        data = bytearray(original)
        data[offset] ^= 1 << (offset % 8)
        path.write_bytes(bytes(data))
        try:
            entry = fc.get(key, fingerprint="f" * 32)
        except CacheError:
            detected += 1
            continue
        assert entry.meta == meta, f"flip at byte {offset} changed meta silently"
        assert entry.tensors.keys() == tensors.keys(), f"flip at byte {offset} changed the tensor set silently"
        for k, v in tensors.items():
            got = entry.tensors[k]
            assert got.dtype == v.dtype and torch.equal(got, v), f"flip at byte {offset} changed tensor {k} silently"
    assert detected > len(original) // 2  # most of a small entry is checked metadata


# ------------------------------------------------------------------------------ schema versions


def test_entry_of_another_schema_version_is_not_used(tmp_path, base_root, base_questions, tiny_ckpt, baseline, cache):
    victim = entry_of(cache, "room0")
    rewrite_footer(victim, schema_version=2)
    assert_verify_names(cache, [victim], "schema version 2, this spacemind reads version 1")
    listed = cli("cache", "ls", cache)
    assert listed.exit_code == 0 and "unreadable: schema version 2" in " ".join(listed.stdout.split()), listed

    res, out, summary = answer_with_cache(tmp_path, base_root, base_questions, tiny_ckpt, cache)
    assert res.exit_code == 0, res
    assert summary["cache"] == {"hit": N - 1, "refreshed": 1}
    assert stable(read_jsonl(out)) == stable(read_jsonl(baseline))
    assert cli("cache", "verify", cache).exit_code == 0


@pytest.mark.parametrize("command", ["answer", "extract", "verify", "ls", "prune"])
def test_cache_of_another_schema_version_is_refused(tmp_path, base_root, base_questions, tiny_ckpt, cache, command):
    manifest = cache / "manifest.json"
    m = json.loads(manifest.read_text())
    m["schema_version"] = 99
    manifest.write_text(json.dumps(m))
    before = {p: p.read_bytes() for p in entry_files(cache)}
    out = tmp_path / "a.jsonl"
    args = {
        "answer": answer_args(base_root, base_questions, tiny_ckpt, out, "--cache", cache),
        "extract": ["extract", base_root, "--checkpoint", tiny_ckpt, "--cache", cache, "--executor", "local"],
        "verify": ["cache", "verify", cache],
        "ls": ["cache", "ls", cache],
        "prune": ["cache", "prune", cache, "--bad"],
    }[command]
    res = cli(*args)
    assert res.exit_code == 4, res
    msg = " ".join(res.stderr.split())
    assert f"cache {manifest} has schema version 99" in msg and "reads schema version 1" in msg
    assert len(res.stderr.strip().splitlines()) == 1
    assert not out.exists() and not out.with_name(out.name + ".parts").exists()  # refused before starting
    assert {p: p.read_bytes() for p in entry_files(cache)} == before  # nothing touched


def test_corrupt_manifest_is_refused(tmp_path, base_root, base_questions, tiny_ckpt, cache):
    (cache / "manifest.json").write_text('{"schema_version": 1, "fingerp')
    res, out, _ = answer_with_cache(tmp_path, base_root, base_questions, tiny_ckpt, cache)
    assert res.exit_code == 4, res
    assert "corrupt cache manifest" in res.stderr and "invalid JSON" in res.stderr
    assert not out.exists()


# ------------------------------------------------------------------------------ entries made by other weights


@pytest.fixture(scope="module")
def other_ckpt(tmp_path_factory) -> Path:
    from spacemind_cli.models.tiny import write_tiny_checkpoint

    return write_tiny_checkpoint(tmp_path_factory.mktemp("other") / "tiny-seed1", seed=1)


@pytest.fixture(scope="module")
def other_cache(base_root, other_ckpt, tmp_path_factory) -> Path:
    cache = tmp_path_factory.mktemp("othercache") / "cache"
    res = cli("extract", base_root, "--checkpoint", other_ckpt, "--cache", cache, "--executor", "local", "--num-frames", "4", "--threads", "1")
    assert res.exit_code == 0, res
    return cache


def test_entries_of_other_weights_are_never_hits_and_prune_keep_checkpoint_removes_them(
        tmp_path, base_root, base_questions, tiny_ckpt, other_ckpt, other_cache, baseline):
    cache = tmp_path / "shared"
    shutil.copytree(other_cache, cache)
    res, out, summary = answer_with_cache(tmp_path, base_root, base_questions, tiny_ckpt, cache)
    assert res.exit_code == 0, res
    assert summary["cache"] == {"miss": N}  # other weights' entries are other keys: never hits
    assert stable(read_jsonl(out)) == stable(read_jsonl(baseline))
    info = cli("cache", "info", cache)
    assert info.exit_code == 0 and info.stdout.count("fingerprint ") == 2, info

    theirs = set(entry_files(other_cache))
    pruned = cli("cache", "prune", cache, "--keep-checkpoint", tiny_ckpt)
    assert pruned.exit_code == 0 and f"removed {N} entries" in pruned.stdout, pruned
    assert {p.name for p in entry_files(cache)}.isdisjoint({p.name for p in theirs})
    assert len(entry_files(cache)) == N

    again, out2, summary2 = answer_with_cache(tmp_path, base_root, base_questions, tiny_ckpt, cache, "b.jsonl")
    assert summary2["cache"] == {"hit": N}


def test_entry_of_other_weights_under_our_key_is_detected(tmp_path, base_root, base_questions, tiny_ckpt, other_ckpt,
                                                          other_cache, baseline, cache):
    """Another checkpoint's features stored under our key (a copied or hand-merged cache): every
    checksum is valid, only the encoder fingerprint betrays it. Never used; prune removes it."""
    from spacemind_cli.cache import FeatureCache
    from spacemind_cli.models.checkpoint import encoder_fingerprint

    ours, theirs = FeatureCache(cache), FeatureCache(other_cache, create=False)
    victim = entry_of(cache, "room4")
    donor = theirs.get(entry_of(other_cache, "room4").stem)
    fp_other = encoder_fingerprint(other_ckpt)
    assert fp_other != encoder_fingerprint(tiny_ckpt)
    ours.put(victim.stem, donor.meta, donor.tensors, fingerprint=fp_other)
    assert cli("cache", "verify", cache).exit_code == 0  # internally consistent: only the fingerprint is foreign

    res, out, summary = answer_with_cache(tmp_path, base_root, base_questions, tiny_ckpt, cache)
    assert res.exit_code == 0, res
    assert summary["cache"] == {"hit": N - 1, "refreshed": 1}
    assert stable(read_jsonl(out)) == stable(read_jsonl(baseline))
    assert FeatureCache(cache).info(victim.stem).fingerprint == encoder_fingerprint(tiny_ckpt)  # recomputed

    ours.put(victim.stem, donor.meta, donor.tensors, fingerprint=fp_other)
    pruned = cli("cache", "prune", cache, "--keep-checkpoint", tiny_ckpt)
    assert pruned.exit_code == 0 and "removed 1 entries" in pruned.stdout and str(victim) in pruned.stdout.replace("\n", "")


# ------------------------------------------------------------------------------ prune --bad, extract over damage


def test_prune_bad_removes_exactly_the_bad_entries(tmp_path, base_root, base_questions, tiny_ckpt, baseline, cache):
    cut, flipped = entry_of(cache, "room1"), entry_of(cache, "room3")
    cut.write_bytes(cut.read_bytes()[:100])
    flip(flipped, blob_offset(flipped, [n for n in pq.read_metadata(flipped).schema.names if "__" not in n and "vit" in n][0]))
    dry = cli("cache", "prune", cache, "--bad", "--dry-run")
    assert dry.exit_code == 0 and "would remove 2 entries" in dry.stdout and len(entry_files(cache)) == N, dry
    res = cli("cache", "prune", cache, "--bad")
    assert res.exit_code == 0 and "removed 2 entries" in res.stdout, res
    assert set(entry_files(cache)).isdisjoint({cut, flipped}) and len(entry_files(cache)) == N - 2
    assert cli("cache", "verify", cache).exit_code == 0

    res, out, summary = answer_with_cache(tmp_path, base_root, base_questions, tiny_ckpt, cache)
    assert summary["cache"] == {"hit": N - 2, "miss": 2}
    assert stable(read_jsonl(out)) == stable(read_jsonl(baseline))


def test_extract_reencodes_entries_it_cannot_use(base_root, tiny_ckpt, base_cache, other_ckpt, other_cache, cache):
    """`extract` over a damaged cache must not count unusable entries as cached."""
    from spacemind_cli.cache import FeatureCache
    from spacemind_cli.models.checkpoint import encoder_fingerprint

    cut, old, flipped = entry_of(cache, "room1"), entry_of(cache, "clip"), entry_of(cache, "room2")
    cut.write_bytes(cut.read_bytes()[:500])
    rewrite_footer(old, schema_version=0)
    flip(flipped, blob_offset(flipped, "vggt_patch"))  # footer intact: only reading the tensors tells
    donor = FeatureCache(other_cache, create=False).get(entry_of(other_cache, "room4").stem)
    FeatureCache(cache).put(entry_of(cache, "room4").stem, donor.meta, donor.tensors, fingerprint=encoder_fingerprint(other_ckpt))
    res = cli("extract", base_root, "--checkpoint", tiny_ckpt, "--cache", cache, "--executor", "local", "--num-frames", "4", "--threads", "1")
    assert res.exit_code == 0, res
    summary = json.loads((cache / "extract.summary.json").read_text())
    assert summary["cached"] == N - 4 and summary["encoded"] == 4
    assert cli("cache", "verify", cache).exit_code == 0
    assert {p.name: p.read_bytes() for p in entry_files(cache)} == {p.name: p.read_bytes() for p in entry_files(base_cache)}
