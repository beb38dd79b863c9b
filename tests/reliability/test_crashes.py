"""2. Crashes: kill -9 of `spacemind answer` / `spacemind extract` at random points and at every
commit point, Ray model actors killed mid-batch until the pipeline gives up; each time a plain
rerun must finish the job with exactly the uninterrupted run's output (ignoring the volatile
`timing` and `cache` fields): no row lost, none duplicated, no temp file left behind.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from process_support import our_processes
from reliability_support import (
    REPO,
    answer_args,
    cli,
    cli_env,
    frames_scene,
    mp4_scene,
    question,
    read_jsonl,
    stable,
    temp_files,
    write_jsonl,
)

N_SCENES = 12
CRASH_AT = Path(__file__).with_name("crash_at.py")


@pytest.fixture(scope="module")
def job(tmp_path_factory, tiny_ckpt):
    """12 scenes (11 frame folders, 1 video), 3 questions each, plus one question about a missing
    scene (so the run has an errors file too), and the uninterrupted run's output."""
    base = tmp_path_factory.mktemp("crashjob")
    root = base / "scenes"
    for i in range(N_SCENES - 1):
        frames_scene(root / f"s{i:02d}", n=4, seed=200 + i)
    mp4_scene(root / "video.mp4", n=8, seed=3)
    scenes = [f"s{i:02d}" for i in range(N_SCENES - 1)] + ["video"]
    rows = [question(f"{s}-{k}", s, t) for k, t in enumerate(["How many chair(s) are in this room?",
                                                              "What colour is the largest object?",
                                                              "How many lamp(s) are in this room?"]) for s in scenes]
    rows.insert(7, question("ghost", "no_such_scene"))
    qfile = write_jsonl(base / "q.jsonl", rows)
    out = base / "ref" / "answers.jsonl"
    res = cli(*answer_args(root, qfile, tiny_ckpt, out))
    assert res.exit_code == 1, res  # the ghost question
    ref = read_jsonl(out)
    assert len(ref) == 3 * N_SCENES
    ref_errors = read_jsonl(out.with_name(out.name + ".errors.jsonl"))
    assert [e["id"] for e in ref_errors] == ["ghost"]
    return {"root": root, "q": qfile, "ref": ref, "ref_errors": ref_errors, "n_items": N_SCENES}


def shard_records(parts: Path) -> list[dict]:
    out = []
    for p in sorted(parts.glob("shard-*.jsonl")):
        out += [json.loads(line) for line in p.read_text().splitlines() if line.strip()]
    return out


def paused_run(point: str, args: list, after: int, tmp_path: Path) -> subprocess.Popen:
    """Start `spacemind ARGS` and return once it is paused at the `after`-th `point` (see
    crash_at.py): the test then signals it at a known point, never after a guessed delay."""
    marker = tmp_path / f"paused-at-{point}-{after}"
    env = {**cli_env(), "PAUSE_AT": point, "PAUSE_AFTER": str(after), "PAUSE_MARKER": str(marker)}
    proc = subprocess.Popen([sys.executable, str(CRASH_AT), *map(str, args)], env=env, cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not marker.exists():
        if proc.poll() is not None:
            raise AssertionError(f"the job ended (exit {proc.returncode}) before pausing at {point} #{after}: "
                                 f"{proc.stderr.read()[-2000:]}")
        assert time.monotonic() < deadline, f"never paused at {point} #{after}"
        time.sleep(0.01)
    return proc


def kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)


def assert_same_as_reference(job, out: Path) -> None:
    rows = read_jsonl(out)
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids)), "duplicate rows"
    assert ids == [r["id"] for r in job["ref"]], "missing or reordered rows"
    assert stable(rows) == stable(job["ref"])
    errors = read_jsonl(out.with_name(out.name + ".errors.jsonl"))
    assert errors == job["ref_errors"]  # the same failure, listed once
    assert temp_files(out.parent) == [], "temp files left behind"


# ------------------------------------------------------------------------------ answer: kill -9 at random points


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_answer_killed_at_a_random_point_then_rerun_equals_uninterrupted(job, tiny_ckpt, tmp_path, seed):
    rng = random.Random(seed)
    nth = rng.randint(1, job["n_items"] - 4)
    point = rng.choice(["shard-before", "shard-after"])  # an item's answers in hand, or just written
    out = tmp_path / "answers.jsonl"
    parts = out.with_name(out.name + ".parts")
    kill(paused_run(point, answer_args(job["root"], job["q"], tiny_ckpt, out), nth, tmp_path))
    assert not out.exists(), "a final output appeared before the job finished"
    kept = {r["i"] for r in shard_records(parts)}
    assert len(kept) == 3 * (nth if point == "shard-after" else nth - 1)  # one shard per scene of 3 questions

    res = cli(*answer_args(job["root"], job["q"], tiny_ckpt, out))
    assert res.exit_code == 1, res  # only the ghost question fails
    summary = json.loads(out.with_name(out.name + ".summary.json").read_text())
    assert summary["resumed"] == len(kept) and summary["answered"] == 3 * N_SCENES - len(kept)
    assert_same_as_reference(job, out)


def test_answer_interrupted_with_ctrl_c_exits_130_and_a_rerun_resumes(job, tiny_ckpt, tmp_path):
    out = tmp_path / "answers.jsonl"
    parts = out.with_name(out.name + ".parts")
    proc = paused_run("shard-after", answer_args(job["root"], job["q"], tiny_ckpt, out), 3, tmp_path)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "interrupted" in stderr and "rerun the same command to resume" in stderr and "Traceback" not in stderr
    assert temp_files(tmp_path) == []  # a clean stop leaves no temp file at all
    kept = {r["i"] for r in shard_records(parts)}
    assert len(kept) == 3 * 3

    res = cli(*answer_args(job["root"], job["q"], tiny_ckpt, out))
    assert res.exit_code == 1, res
    assert json.loads(out.with_name(out.name + ".summary.json").read_text())["resumed"] == len(kept)
    assert_same_as_reference(job, out)


# ------------------------------------------------------------------------------ answer: kill -9 at each commit point


def crash_run(point: str, *args, after: int = 0) -> int:
    env = {**cli_env(), "CRASH_AT": point, "CRASH_AFTER": str(after)}
    proc = subprocess.run([sys.executable, str(CRASH_AT), *map(str, args)], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    return proc.returncode


def test_answer_killed_mid_compaction_and_mid_final_write(job, tiny_ckpt, tmp_path):
    """First crash: the merged shard is in place, the shards it replaces are not yet removed (the
    same rows twice on disk). Second crash (the rerun): the final file is fully written to its temp
    name, not renamed. The third run must still produce each row exactly once."""
    out = tmp_path / "answers.jsonl"
    parts = out.with_name(out.name + ".parts")
    args = answer_args(job["root"], job["q"], tiny_ckpt, out)
    assert crash_run("compact-unlink", *args) == -signal.SIGKILL
    records = shard_records(parts)
    assert len(records) > len({r["i"] for r in records}), "the crash should leave rows duplicated across shards"

    assert crash_run("final-replace", *args) == -signal.SIGKILL
    assert not out.exists()
    assert [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")], "the final temp file should be left"

    res = cli(*args)
    assert res.exit_code == 1, res
    summary = json.loads(out.with_name(out.name + ".summary.json").read_text())
    assert summary["answered"] == 0 and summary["resumed"] == 3 * N_SCENES
    assert_same_as_reference(job, out)


# ------------------------------------------------------------------------------ extract: kill -9 then rerun


@pytest.fixture(scope="module")
def ref_cache(job, tiny_ckpt, tmp_path_factory) -> dict[str, bytes]:
    cache = tmp_path_factory.mktemp("refcache") / "cache"
    res = cli("extract", job["root"], "--checkpoint", tiny_ckpt, "--cache", cache, "--executor", "local", "--num-frames", "4", "--threads", "1")
    assert res.exit_code == 0, res
    return entries(cache)


def entries(cache: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in cache.glob("entries/*/*.parquet")}


def assert_cache_complete(cache: Path, ref: dict[str, bytes]) -> None:
    res = cli("cache", "verify", cache)
    assert res.exit_code == 0 and f"all {N_SCENES} entries verified" in res.stdout, res
    assert temp_files(cache) == [], "temp files left in the cache"
    assert entries(cache) == ref  # byte-identical to an uninterrupted extract
    info = cli("cache", "info", cache)
    assert info.exit_code == 0 and "temp files" in info.stdout


@pytest.mark.parametrize("seed", [4, 5])
def test_extract_killed_at_a_random_point_then_rerun_completes_the_cache(job, tiny_ckpt, ref_cache, tmp_path, seed):
    after = random.Random(seed).randint(1, N_SCENES - 5)
    cache = tmp_path / "cache"
    args = ["extract", job["root"], "--checkpoint", tiny_ckpt, "--cache", cache, "--executor", "local", "--num-frames", "4", "--threads", "1"]
    kill(paused_run("cache-after", args, after, tmp_path))
    done = len(list(cache.glob("entries/*/*.parquet")))
    assert done == after

    res = cli(*args)
    assert res.exit_code == 0, res
    summary = json.loads((cache / "extract.summary.json").read_text())
    assert summary["cached"] == done and summary["encoded"] == N_SCENES - done
    assert_cache_complete(cache, ref_cache)


def test_extract_killed_while_an_entry_is_being_published(job, tiny_ckpt, ref_cache, tmp_path):
    """The entry is fully written to its temp file, not renamed: readers never see it, the rerun
    encodes that scene again and removes the dead writer's temp file."""
    cache = tmp_path / "cache"
    args = ["extract", job["root"], "--checkpoint", tiny_ckpt, "--cache", cache, "--executor", "local", "--num-frames", "4", "--threads", "1"]
    assert crash_run("cache-replace", *args, after=3) == -signal.SIGKILL
    assert len(entries(cache)) == 3
    assert len(temp_files(cache / "entries")) == 1  # the entry in flight
    listed = cli("cache", "ls", cache)
    assert listed.exit_code == 0 and "3 entries" in listed.stdout, listed

    res = cli(*args)
    assert res.exit_code == 0, res
    assert_cache_complete(cache, ref_cache)


# ------------------------------------------------------------------------------ Ray: actors killed until the pipeline gives up


@pytest.fixture(scope="module")
def ray_cluster():
    """One embedded Ray for the Ray tests of this module (the executor joins it, leaves it up)."""
    from pipelines import ray_runtime

    started = ray_runtime.connect(None)
    yield
    if started:
        ray_runtime.shutdown()


def model_actor_pids() -> list[int]:
    return [proc.pid for proc in our_processes("model_stage_share")]


def kill_actor_on_every_result(limit: int):
    """Progress callback: each time a result arrives, SIGKILL the model actor, which by then is
    working on its next item (mid-batch), up to `limit` times."""
    killed: list[int] = []

    def callback(event):
        deadline = time.monotonic() + 30
        while len(killed) < limit and time.monotonic() < deadline:
            # the actor that sent this result, or (if Ray is restarting it) its successor
            alive = [pid for pid in model_actor_pids() if pid not in killed]
            for pid in alive:
                try:
                    psutil.Process(pid).kill()
                    killed.append(pid)
                except psutil.NoSuchProcess:
                    pass
            if alive:
                return
            time.sleep(0.05)

    return callback, killed


@pytest.mark.ray
def test_ray_actor_killed_mid_batch_past_its_restarts_fails_cleanly_and_a_rerun_resumes(job, tiny_ckpt, tmp_path, ray_cluster):
    from pipelines import answer as run
    from pipelines.ray import ACTOR_RESTARTS
    from spacemind_cli.errors import EXIT_RESOURCE, SpacemindError

    out = tmp_path / "answers.jsonl"
    kwargs = dict(checkpoint=tiny_ckpt, output=out, questions=str(job["q"]), num_frames=4, max_new_tokens=4, batch_size=4,
                  cpu_threads=1)
    callback, killed = kill_actor_on_every_result(ACTOR_RESTARTS + 1)
    with pytest.raises(SpacemindError) as failure:
        run(job["root"], executor="ray", progress=callback, **kwargs)
    assert len(killed) == ACTOR_RESTARTS + 1
    msg = failure.value.message
    assert "the Ray pipeline failed" in msg and "rerun to resume" in msg and "\n" not in msg
    assert failure.value.exit_code == EXIT_RESOURCE  # lost workers, not bad input
    parts = out.with_name(out.name + ".parts")
    written = {r["i"] for r in shard_records(parts)}
    assert 0 < len(written) < 3 * N_SCENES and not out.exists()

    res = cli(*answer_args(job["root"], job["q"], tiny_ckpt, out))  # the rerun (local: same run key)
    assert res.exit_code == 1, res
    summary = json.loads(out.with_name(out.name + ".summary.json").read_text())
    assert summary["resumed"] == len(written)
    assert_same_as_reference(job, out)


@pytest.mark.ray
def test_ray_extract_actor_killed_mid_batch_past_its_restarts_then_rerun_completes(job, tiny_ckpt, ref_cache, tmp_path, ray_cluster):
    from pipelines import extract as run
    from pipelines.ray import ACTOR_RESTARTS
    from spacemind_cli.errors import SpacemindError

    cache = tmp_path / "cache"
    callback, killed = kill_actor_on_every_result(ACTOR_RESTARTS + 1)
    with pytest.raises(SpacemindError, match="rerun to resume"):
        run(job["root"], checkpoint=tiny_ckpt, cache=cache, executor="ray", num_frames=4, progress=callback, cpu_threads=1)
    assert len(killed) == ACTOR_RESTARTS + 1
    done = len(entries(cache))
    assert 0 < done < N_SCENES

    res = cli("extract", job["root"], "--checkpoint", tiny_ckpt, "--cache", cache, "--executor", "ray", "--num-frames", "4", "--threads", "1")
    assert res.exit_code == 0, res
    summary = json.loads((cache / "extract.summary.json").read_text())
    assert summary["cached"] == done and summary["encoded"] == N_SCENES - done
    assert_cache_complete(cache, ref_cache)
