"""One run at a time per output (issue #22.4): a run holds an exclusive lock on its output
(answer's OUT and its parts, train's NEW_CKPT) for its whole life; a second run into the same
output exits 2 naming the holder's pid; a lock left by a killed run is free for the next one.
Runs sharing a feature cache are not serialised."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "reliability"))

from reliability_support import answer_args, cli, frames_scene, question, write_jsonl  # noqa: E402

HOLD = ("import sys, time\nfrom spacemind_cli.locks import output_lock\n"
        "with output_lock(sys.argv[1]):\n    print('held', flush=True)\n    time.sleep(600)\n")


@pytest.fixture
def holder():
    """Start a process that takes the output lock of a path and keeps it until killed."""
    procs = []

    def start(path: Path) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdout=subprocess.PIPE, text=True, cwd=REPO)
        procs.append(proc)
        assert proc.stdout.readline().strip() == "held"
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def kill9(proc: subprocess.Popen) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


@pytest.fixture
def job(tmp_path) -> tuple[Path, Path]:
    root = tmp_path / "scenes"
    frames_scene(root / "room", n=4, seed=5)
    return root, write_jsonl(tmp_path / "q.jsonl", [question(1, "room", ground_truth=2)])


def test_a_second_answer_into_the_same_output_exits_2_and_a_killed_holder_frees_it(tiny_ckpt, tmp_path, job, holder):
    root, q = job
    out = tmp_path / "answers.jsonl"
    proc = holder(out)
    res = cli(*answer_args(root, q, tiny_ckpt, out))
    assert res.exit_code == 2, res
    assert f"another run is writing {out} (pid {proc.pid})" in " ".join(res.stderr.split())
    assert not out.exists() and not out.with_name(out.name + ".parts").exists()  # nothing touched
    # another output, the same cache: not serialised
    cache = tmp_path / "cache"
    assert cli(*answer_args(root, q, tiny_ckpt, tmp_path / "other.jsonl", "--cache", cache)).exit_code == 0
    kill9(proc)  # a stale lock: the kernel released it with its process
    res = cli(*answer_args(root, q, tiny_ckpt, out, "--cache", cache))
    assert res.exit_code == 0, res
    assert len(out.read_text().splitlines()) == 1
    assert not list(tmp_path.glob(".*.lock"))  # a finished run leaves no lock file


def test_a_second_train_into_the_same_run_exits_2_before_touching_it(tiny_ckpt, tmp_path, job, holder):
    root, q = job
    run = tmp_path / "run"
    args = ["train", root, "--questions", q, "--checkpoint", tiny_ckpt, "--output", run, "--executor", "local",
            "--num-frames", "4", "--max-steps", "1", "--threads", "1"]
    proc = holder(run)
    res = cli(*args)
    assert res.exit_code == 2, res
    assert f"another run is writing {run} (pid {proc.pid})" in " ".join(res.stderr.split())
    assert not run.exists()
    kill9(proc)
    res = cli(*args)
    assert res.exit_code == 0, res
    assert json.loads((run / "training" / "summary.json").read_text())["steps"] == 1


def test_the_lock_is_exclusive_between_processes_and_records_the_pid(tmp_path, holder):
    from spacemind_cli.errors import InputError
    from spacemind_cli.locks import lock_path, output_lock

    out = tmp_path / "o.jsonl"
    proc = holder(out)
    assert lock_path(out).read_text().strip() == str(proc.pid)
    with pytest.raises(InputError, match=rf"another run is writing .*o\.jsonl \(pid {proc.pid}\)"):
        with output_lock(out):
            pass
    kill9(proc)
    with output_lock(out) as path:
        assert path.read_text().strip() == str(os.getpid())
        with pytest.raises(InputError):  # held by this process: a second take in it is refused too
            with output_lock(out):
                pass
    assert not lock_path(out).exists()
