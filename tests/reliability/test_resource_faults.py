"""6. Resource faults: a full disk and a read-only output or cache directory give one clear line
and exit 5, leave the output and the cache consistent (whole shards, whole entries, no temp
files), and a rerun once there is room (or write access) completes with exactly the
uninterrupted run's output.

Each fault runs twice: for real (a 2 MiB tmpfs; a read-only bind mount: we are root here) and
simulated in-process (ENOSPC at fsync past a byte budget; EROFS from every write call under the
folder), so the suite proves the same on a CI runner that cannot mount. If mounting fails the
"real" variant falls back to the simulation (said in its output), never to a skip;
SPACEMIND_TEST_NO_MOUNT=1 forces that fallback, to check the unprivileged path on a root box.
"""

from __future__ import annotations

import builtins
import errno
import io
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from reliability_support import answer_args, cli, read_jsonl, stable, temp_files

N = 6  # scenes of base_root
MiB = 1 << 20


def _try(*cmd) -> bool:
    if cmd[0] == "mount" and os.environ.get("SPACEMIND_TEST_NO_MOUNT") == "1":
        return False  # behave as on an unprivileged CI runner
    try:
        return subprocess.run(cmd, capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def _under(path, root: Path) -> bool:
    try:
        p = os.path.realpath(os.fsdecode(path))
    except TypeError:
        return False
    return p == str(root) or p.startswith(str(root) + os.sep)


# ------------------------------------------------------------------------------ a small disk


class SmallDisk:
    """A folder with 2 MiB of room: a tmpfs, or an in-process simulation (fsync fails with ENOSPC
    once the files under it exceed the budget, as on filesystems with delayed allocation)."""

    def __init__(self, path: Path, monkeypatch, mode: str):
        self.path, self.mode = path, mode
        path.mkdir()
        if mode == "tmpfs" and not _try("mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(path)):
            print("cannot mount a tmpfs here; simulating ENOSPC instead")
            self.mode = "simulated"
        self.mounted = self.mode == "tmpfs"
        self.path = Path(os.path.realpath(path))
        if self.mode == "simulated":
            real_fsync = os.fsync

            def fsync(fd):
                target = os.readlink(f"/proc/self/fd/{fd}")
                if _under(target, self.path) and self.used() > 2 * MiB:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                return real_fsync(fd)

            monkeypatch.setattr(os, "fsync", fsync)

    def used(self) -> int:
        return sum(f.stat().st_size for f in self.path.rglob("*") if f.is_file())

    def free_bytes(self) -> int:
        if self.mounted:
            st = os.statvfs(self.path)
            return st.f_bavail * st.f_frsize
        return 2 * MiB - self.used()

    def fill(self, leave: int) -> None:
        """Leave about `leave` bytes free."""
        size = max(0, self.free_bytes() - leave)
        with open(self.path / "filler", "wb") as fh:
            fh.write(b"\0" * size)

    def make_room(self) -> None:
        (self.path / "filler").unlink()

    def close(self) -> None:
        if self.mounted:
            _try("umount", "-l", str(self.path))


@pytest.fixture(params=["tmpfs", "simulated"])
def small_disk(request, tmp_path, monkeypatch):
    disk = SmallDisk(tmp_path / "disk", monkeypatch, request.param)
    yield disk
    monkeypatch.undo()
    disk.close()


# ------------------------------------------------------------------------------ a read-only folder


class ReadOnly:
    """Make a folder read-only: a read-only bind mount, or an in-process simulation (every call
    that would create, write, rename or remove something under it fails with EROFS)."""

    def __init__(self, path: Path, monkeypatch, mode: str):
        self.path = Path(os.path.realpath(path))
        self.mode, self.monkeypatch, self.mounted = mode, monkeypatch, False
        if mode == "mount":
            if _try("mount", "--bind", str(self.path), str(self.path)):
                if _try("mount", "-o", "remount,bind,ro", str(self.path)):
                    self.mounted = True
                else:
                    _try("umount", str(self.path))
            if not self.mounted:
                print("cannot bind-mount read-only here; simulating EROFS instead")
                self.mode = "simulated"
        if self.mode == "simulated":
            self._patch()

    def _patch(self) -> None:
        root, mp = self.path, self.monkeypatch

        def erofs(path):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fsdecode(path))

        def guard(real, writes=lambda *a, **k: True, arg=0):
            def wrapper(*args, **kwargs):
                target = args[arg] if len(args) > arg else None
                if target is not None and not isinstance(target, int) and _under(target, root) and writes(*args, **kwargs):
                    erofs(target)
                return real(*args, **kwargs)
            return wrapper

        write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
        open_writes = lambda file, mode="r", *a, **k: any(c in mode for c in "wax+")  # noqa: E731
        mp.setattr(os, "open", guard(os.open, lambda path, flags, *a, **k: bool(flags & write_flags)))
        mp.setattr(os, "mkdir", guard(os.mkdir, lambda path, *a, **k: not os.path.exists(path)))
        for name in ("replace", "rename", "unlink", "remove", "rmdir"):
            mp.setattr(os, name, guard(getattr(os, name)))
        mp.setattr(os, "replace", guard(os.replace, arg=1))
        mp.setattr(io, "open", guard(io.open, open_writes))
        mp.setattr(builtins, "open", guard(builtins.open, open_writes))

    def release(self) -> None:
        if self.mounted:
            _try("umount", str(self.path))
            self.mounted = False
        self.monkeypatch.undo()


@pytest.fixture(params=["mount", "simulated"])
def read_only(request, monkeypatch):
    made = []

    def make(path: Path) -> ReadOnly:
        ro = ReadOnly(path, monkeypatch, request.param)
        made.append(ro)
        return ro

    yield make
    for ro in made:
        ro.release()


# ------------------------------------------------------------------------------ helpers


def summary_of(out: Path) -> dict:
    return json.loads(out.with_name(out.name + ".summary.json").read_text())


def assert_resource_error(res, reason: str, where: Path) -> None:
    assert res.exit_code == 5, res
    msg = " ".join(res.stderr.split())
    assert reason in msg and str(where) in msg, msg
    assert "Traceback" not in res.stderr


def whole_shards(out: Path) -> set[int]:
    """Indices in the shards; every shard must parse whole (no torn writes)."""
    done = set()
    for shard in out.with_name(out.name + ".parts").glob("shard-*.jsonl"):
        for line in shard.read_text().splitlines():
            done.add(json.loads(line)["i"])
    return done


def entries(cache: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in cache.glob("entries/*/*.parquet")}


# ------------------------------------------------------------------------------ disk full


def test_output_disk_full_exits_5_and_a_rerun_with_room_equals_uninterrupted(small_disk, base_root, base_questions,
                                                                              tiny_ckpt, baseline):
    out = small_disk.path / "answers.jsonl"
    small_disk.fill(leave=12 * 1024)
    res = cli(*answer_args(base_root, base_questions, tiny_ckpt, out))
    assert_resource_error(res, "no space left on device", small_disk.path)
    assert not out.exists()
    kept = whole_shards(out)
    assert len(kept) < 4 * N
    assert temp_files(small_disk.path) == []

    small_disk.make_room()
    res = cli(*answer_args(base_root, base_questions, tiny_ckpt, out))
    assert res.exit_code == 0, res
    assert summary_of(out)["resumed"] == len(kept)
    assert stable(read_jsonl(out)) == stable(read_jsonl(baseline))
    assert temp_files(small_disk.path) == []


def test_cache_disk_full_answers_still_complete_and_the_cache_stays_whole(small_disk, tmp_path, base_root,
                                                                          base_questions, tiny_ckpt, baseline, base_cache):
    cache = small_disk.path / "cache"
    entry_size = max(p.stat().st_size for p in base_cache.glob("entries/*/*.parquet"))
    small_disk.fill(leave=int(2.5 * entry_size) + 16 * 1024)
    out = tmp_path / "a.jsonl"
    res = cli(*answer_args(base_root, base_questions, tiny_ckpt, out, "--cache", cache))
    assert res.exit_code == 0, res
    assert "no space left on device" in " ".join(res.stderr.split())
    assert stable(read_jsonl(out)) == stable(read_jsonl(baseline))
    statuses = summary_of(out)["cache"]
    assert statuses.get("write-failed", 0) >= 1 and statuses.get("miss", 0) >= 1, statuses
    verify = cli("cache", "verify", cache)
    assert verify.exit_code == 0, verify  # what is there is whole
    assert temp_files(cache) == []
    written = entries(cache)
    assert 0 < len(written) < N
    assert all(base_entry == written[name] for name, base_entry in entries(base_cache).items() if name in written)

    small_disk.make_room()
    again = cli(*answer_args(base_root, base_questions, tiny_ckpt, tmp_path / "b.jsonl", "--cache", cache))
    assert again.exit_code == 0, again
    assert summary_of(tmp_path / "b.jsonl")["cache"] == {"hit": len(written), "miss": N - len(written)}
    assert entries(cache) == entries(base_cache)


def test_extract_on_a_full_disk_exits_5_and_a_rerun_with_room_completes(small_disk, base_root, tiny_ckpt, base_cache):
    cache = small_disk.path / "cache"
    entry_size = max(p.stat().st_size for p in base_cache.glob("entries/*/*.parquet"))
    small_disk.fill(leave=int(2.5 * entry_size) + 16 * 1024)
    args = ["extract", base_root, "--checkpoint", tiny_ckpt, "--cache", cache, "--executor", "local", "--num-frames", "4", "--threads", "1"]
    res = cli(*args)
    assert_resource_error(res, "no space left on device", cache)
    done = entries(cache)
    assert 0 < len(done) < N
    assert cli("cache", "verify", cache).exit_code == 0 and temp_files(cache) == []

    small_disk.make_room()
    res = cli(*args)
    assert res.exit_code == 0, res
    s = json.loads((cache / "extract.summary.json").read_text())
    assert s["cached"] == len(done) and s["encoded"] == N - len(done)
    assert entries(cache) == entries(base_cache)


# ------------------------------------------------------------------------------ read-only


def test_read_only_output_folder_exits_5_and_a_writable_rerun_equals_uninterrupted(read_only, tmp_path, base_root,
                                                                                    base_questions, tiny_ckpt, baseline):
    folder = tmp_path / "outdir"
    folder.mkdir()
    out = folder / "answers.jsonl"
    ro = read_only(folder)
    res = cli(*answer_args(base_root, base_questions, tiny_ckpt, out))
    assert_resource_error(res, "read-only file system", folder)
    ro.release()
    assert list(folder.iterdir()) == []  # nothing written, nothing half-written

    res = cli(*answer_args(base_root, base_questions, tiny_ckpt, out))
    assert res.exit_code == 0, res
    assert stable(read_jsonl(out)) == stable(read_jsonl(baseline))


def test_output_folder_turning_read_only_mid_job(read_only, tmp_path, base_root, base_questions, tiny_ckpt, baseline):
    """The disk is remounted read-only while the job runs (an ext4 error does that): exit 5 with
    every finished scene kept; the rerun asks only the rest."""
    from spacemind_cli.jobs import output as output_mod

    folder = tmp_path / "outdir"
    folder.mkdir()
    out = folder / "answers.jsonl"
    state = {"shards": 0, "ro": None}
    real_write = output_mod.AnswerStore.write

    def write(self, records):
        real_write(self, records)
        state["shards"] += 1
        if state["shards"] == 2:
            state["ro"] = read_only(folder)

    mp = pytest.MonkeyPatch()
    mp.setattr(output_mod.AnswerStore, "write", write)
    try:
        res = cli(*answer_args(base_root, base_questions, tiny_ckpt, out))
    finally:
        mp.undo()
    assert_resource_error(res, "read-only file system", folder)
    state["ro"].release()
    kept = whole_shards(out)
    assert len(kept) == 8  # two scenes of four questions
    res = cli(*answer_args(base_root, base_questions, tiny_ckpt, out))
    assert res.exit_code == 0, res
    assert summary_of(out)["resumed"] == 8
    assert stable(read_jsonl(out)) == stable(read_jsonl(baseline))
    assert temp_files(folder) == []


def test_read_only_cache_serves_hits_and_extract_refuses_it(read_only, tmp_path, base_root, base_questions, tiny_ckpt,
                                                            baseline, base_cache):
    cache = tmp_path / "cache"
    shutil.copytree(base_cache, cache)
    missing = sorted(cache.glob("entries/*/*.parquet"))[:2]
    for p in missing:
        p.unlink()
    before = entries(cache)
    ro = read_only(cache)

    out = tmp_path / "a.jsonl"
    res = cli(*answer_args(base_root, base_questions, tiny_ckpt, out, "--cache", cache))
    assert res.exit_code == 0, res  # answers do not need the cache to be writable
    assert "read-only file system" in " ".join(res.stderr.split())
    assert summary_of(out)["cache"] == {"hit": N - 2, "write-failed": 2}
    assert stable(read_jsonl(out)) == stable(read_jsonl(baseline))

    res = cli("extract", base_root, "--checkpoint", tiny_ckpt, "--cache", cache, "--executor", "local", "--num-frames", "4", "--threads", "1")
    assert_resource_error(res, "read-only file system", cache)
    ro.release()
    assert entries(cache) == before and temp_files(cache) == []

    res = cli("extract", base_root, "--checkpoint", tiny_ckpt, "--cache", cache, "--executor", "local", "--num-frames", "4", "--threads", "1")
    assert res.exit_code == 0, res
    assert entries(cache) == entries(base_cache)


def test_prune_on_a_read_only_cache_exits_5(read_only, tmp_path, base_cache):
    cache = tmp_path / "cache"
    shutil.copytree(base_cache, cache)
    victim = sorted(cache.glob("entries/*/*.parquet"))[0]
    victim.write_bytes(victim.read_bytes()[:64])
    ro = read_only(cache)
    res = cli("cache", "prune", cache, "--bad")
    assert_resource_error(res, "read-only file system", victim)
    ro.release()
    assert victim.exists()



# ------------------------------------------------------------------------------ a cache path that is not a folder


def test_a_cache_write_refused_for_its_path_fails_in_one_line(tmp_path, base_root, base_questions, tiny_ckpt,
                                                             baseline, base_cache, monkeypatch):
    """Not a resource fault (exit 2, not 5) but the same path through the job: a cache write that
    fails because a file stands where a folder belongs is reported in one line, no traceback, and
    the answers complete."""
    from spacemind_cli.cache import FeatureCache
    from spacemind_cli.errors import resource_error

    def put(self, key, *args, **kwargs):
        raise resource_error(OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR)), self.path_for(key))

    monkeypatch.setattr(FeatureCache, "put", put)
    cache = tmp_path / "cache"
    shutil.copytree(base_cache, cache)
    for p in sorted(cache.glob("entries/*/*.parquet"))[:2]:
        p.unlink()
    out = tmp_path / "a.jsonl"
    res = cli(*answer_args(base_root, base_questions, tiny_ckpt, out, "--cache", cache))
    assert res.exit_code == 0, res
    assert "part of its path is a file, not a folder" in " ".join(res.stderr.split())
    assert "Traceback" not in res.stderr
    assert summary_of(out)["cache"] == {"hit": N - 2, "write-failed": 2}
    assert stable(read_jsonl(out)) == stable(read_jsonl(baseline))
