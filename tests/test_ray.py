"""The Ray Data pipelines: same answers as the local executor, actor faults, a real 2-node cluster."""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from process_support import our_processes

from pipelines import answer as run_answer
from pipelines import extract as run_extract

pytestmark = pytest.mark.ray

VOLATILE = ("timing", "cache")


def rows(path: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(line).items() if k not in VOLATILE} for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def local_answers(tiny_ckpt, examples, tmp_path_factory):
    out = tmp_path_factory.mktemp("local") / "a.jsonl"
    run_answer(examples / "videos", checkpoint=tiny_ckpt, output=out, questions=str(examples / "questions.jsonl"),
               executor="local", cpu_threads=1)
    return out


def _kill_model_actor_once():
    """Progress callback that SIGKILLs the Ray model actor the first time a result arrives."""
    state = {"killed": None}

    def callback(event):
        if state["killed"] is None and "done" in event:  # not the model-load event, sent before any actor
            actors = our_processes("model_stage_share")
            if actors:
                actors[0].kill()
            state["killed"] = actors[0].pid if actors else 0
    return callback, state


def test_ray_answers_equal_local_and_survive_a_killed_actor(tiny_ckpt, examples, local_answers, tmp_path):
    out = tmp_path / "ray.jsonl"
    cache = tmp_path / "cache"
    callback, state = _kill_model_actor_once()
    summary = run_answer(examples / "videos", checkpoint=tiny_ckpt, output=out, questions=str(examples / "questions.jsonl"),
                         executor="ray", cache=cache, progress=callback, cpu_threads=1)
    assert state["killed"], "no model actor process was found to kill"
    assert summary["answered"] == 68 and summary["failed"] == 0
    assert rows(out) == rows(local_answers)
    assert len({a["pid"] for a in summary["actors"]}) == 2  # the restarted actor took over
    assert summary["route"] == "node"  # one machine: actors read their own scenes, nothing through Ray Data


def test_extract_ray_and_local_write_identical_cache_entries(tiny_ckpt, examples, tmp_path):
    ray_cache, local_cache = tmp_path / "ray", tmp_path / "local"
    callback, state = _kill_model_actor_once()
    s_ray = run_extract(examples / "videos", checkpoint=tiny_ckpt, cache=ray_cache, executor="ray", batch_size=2, cpu_threads=1,
                        progress=callback)
    s_local = run_extract(examples / "videos", checkpoint=tiny_ckpt, cache=local_cache, executor="local", cpu_threads=1)
    assert state["killed"], "no model actor process was found to kill"
    # The killed actor may have written its entry before dying; the resent scene then finds it cached.
    assert s_ray["encoded"] + s_ray["cached"] == s_local["encoded"] == 4 and s_ray["failed"] == 0
    ray_files = {p.name: p.read_bytes() for p in ray_cache.glob("entries/*/*.parquet")}
    local_files = {p.name: p.read_bytes() for p in local_cache.glob("entries/*/*.parquet")}
    assert ray_files.keys() == local_files.keys() and len(ray_files) == 4
    assert ray_files == local_files  # byte-identical entries for identical inputs

    again = run_extract(examples / "videos", checkpoint=tiny_ckpt, cache=ray_cache, executor="ray")
    assert again["encoded"] == 0 and again["cached"] == 4


def test_extract_on_one_machine_takes_the_node_route(tiny_ckpt, examples, tmp_path, monkeypatch):
    """extract through Ray on one machine runs the node route (actors reading their own scenes,
    results streamed back), like answer: no Ray Data pipeline, so no frames through the object
    store, and the same cache entries as the local executor, key for key and byte for byte."""
    import pipelines.ray

    def no_dataset(*args, **kwargs):
        raise AssertionError("extract on one machine went through the Ray Data route")

    monkeypatch.setattr(pipelines.ray, "_run_dataset", no_dataset)
    ray_cache, local_cache = tmp_path / "ray", tmp_path / "local"
    s_ray = run_extract(examples / "videos", checkpoint=tiny_ckpt, cache=ray_cache, executor="ray", cpu_threads=1,
                        scenes_per_call=3)  # the cluster route's option: one machine does not use it
    s_local = run_extract(examples / "videos", checkpoint=tiny_ckpt, cache=local_cache, executor="local", cpu_threads=1)
    assert s_ray["route"] == "node" and s_local["route"] is None
    assert s_ray["encoded"] == s_local["encoded"] == 4 and s_ray["failed"] == 0
    ray_files = {p.relative_to(ray_cache): p.read_bytes() for p in ray_cache.glob("entries/*/*.parquet")}
    local_files = {p.relative_to(local_cache): p.read_bytes() for p in local_cache.glob("entries/*/*.parquet")}
    assert sorted(ray_files) == sorted(local_files) and len(ray_files) == 4
    assert ray_files == local_files


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ray_cli() -> str:
    return str(Path(sys.executable).with_name("ray"))


@pytest.mark.slow
def test_answer_on_a_real_two_node_cluster(tiny_ckpt, examples, local_answers, tmp_path):
    port = _free_port()
    # Token authentication, set explicitly for every process: left to Ray, the head enables it when
    # ~/.ray/auth_token exists while a joining node does not, and an earlier in-process ray.init
    # sets RAY_AUTH_MODE for us, so the verdict would depend on the machine and the test order.
    token = tmp_path / "auth_token"
    token.write_text(secrets.token_hex(32))
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token))
    common = ["--num-cpus=1", "--disable-usage-stats", "--node-ip-address=127.0.0.1"]
    head = subprocess.run([_ray_cli(), "start", "--head", f"--port={port}", "--include-dashboard=false", *common],
                          capture_output=True, text=True, env=env, timeout=180)
    assert head.returncode == 0, head.stderr
    try:
        worker = subprocess.run([_ray_cli(), "start", f"--address=127.0.0.1:{port}", *common],
                                capture_output=True, text=True, env=env, timeout=180)
        assert worker.returncode == 0, worker.stderr
        out = tmp_path / "cluster.jsonl"
        proc = subprocess.run(
            [sys.executable, "-m", "spacemind_cli", "answer", str(examples / "videos"),
             "--questions", str(examples / "questions.jsonl"), "--checkpoint", str(tiny_ckpt),
             "--output", str(out), "--ray-address", f"127.0.0.1:{port}", "--actors", "2", "--threads", "1"],
            capture_output=True, text=True, env=env, timeout=600,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        # Our actors' warnings stay out of the terminal. (Ray Data's own map workers take their
        # constructor arguments from the object store and log a line about it per actor; that one
        # is Ray's, see ray-project/ray#53727, and the embedded route avoids it.)
        assert "not writable" not in proc.stderr and "UserWarning" not in proc.stderr
        summary = json.loads(out.with_name(out.name + ".summary.json").read_text())
        assert summary["route"] == "dataset"  # a cluster: the Ray Data pipeline
        nodes = {a["node"] for a in summary["actors"] if a["questions"]}
        assert len(nodes) == 2, summary["actors"]  # work ran on both nodes
        assert rows(out) == rows(local_answers)
    finally:
        subprocess.run([_ray_cli(), "stop", "--force"], capture_output=True, env=env, timeout=120)
        time.sleep(1)
    leftover = [p for p in psutil.process_iter(["cmdline"]) if f"--gcs-address=127.0.0.1:{port}" in " ".join(p.info["cmdline"] or [])]
    assert not leftover  # the cluster this test started is gone


def test_the_cli_on_an_embedded_ray_prints_our_output_not_rays(tiny_ckpt, examples, tmp_path):
    """The default executor from the command line: Ray's own notices (its actor-argument warning
    among them) stay out of the user's terminal."""
    out = tmp_path / "a.jsonl"
    proc = subprocess.run(
        [sys.executable, "-m", "spacemind_cli", "answer", str(examples / "videos"), "--questions",
         str(examples / "questions.jsonl"), "--checkpoint", str(tiny_ckpt), "--output", str(out), "--num-frames", "2"],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "constructor arguments in the object store" not in proc.stderr
    assert "core_worker" not in proc.stderr
    assert json.loads(out.with_name(out.name + ".summary.json").read_text())["route"] == "node"


def test_a_model_that_cannot_load_in_an_actor_stops_the_job_with_its_own_error(tiny_ckpt, examples, tmp_path):
    """The node route waits for each actor's model to load: a load that fails for a reason no
    restart mends (here the checkpoint changed since the job was planned) ends the job with that
    error and its exit code, not as actors lost to the machine after several reloads."""
    import dataclasses

    from pipelines.executor import open_job
    from spacemind_cli.errors import CacheError
    from spacemind_cli.jobs.plan import plan_extract
    from spacemind_cli.jobs.settings import RunOptions
    from spacemind_cli.jobs.stages import EncodeStage
    from spacemind_cli.scenes import discover_scenes

    items = plan_extract(discover_scenes(examples / "videos")).items
    got = []
    with open_job(RunOptions(tiny_ckpt, cache=tmp_path / "cache", executor="ray", cpu_threads=1)) as (executor, settings):
        planned_for_another = dataclasses.replace(settings, encoder_fingerprint="0" * 32)
        with pytest.raises(CacheError, match="changed while the job ran") as caught:
            executor.run(items, EncodeStage, planned_for_another, got.append)
    assert got == [] and "\n" not in str(caught.value)


def test_our_error_is_found_inside_what_ray_raises():
    from ray.exceptions import RayTaskError
    from ray.train.v2.api.exceptions import WorkerGroupError

    from pipelines.ray import spacemind_error_in
    from spacemind_cli.errors import CacheError, InputError

    ours = InputError("the training examples differ")
    assert spacemind_error_in(WorkerGroupError("worker 0 failed", {0: ours, 1: RuntimeError("gloo")})) is ours
    try:
        raise CacheError("bad entry")
    except CacheError as exc:
        task_error = RayTaskError("setup", "traceback text", exc).as_instanceof_cause()
    found = spacemind_error_in(task_error)
    assert type(found) is CacheError and str(found) == "bad entry"  # the cause, not Ray's wrapper
    assert spacemind_error_in(WorkerGroupError("lost", {0: RuntimeError("killed")})) is None


def test_a_worker_that_raised_is_told_from_a_lost_one():
    """A Ray Train worker's own exception (a file it cannot read) fails the same way on a rerun:
    it is not passed off as a lost worker ("rerun to resume"); a loss is Ray's own error, even
    when the lost worker's peers then fail in their collectives."""
    from ray.exceptions import ActorDiedError
    from ray.train.v2.api.exceptions import WorkerGroupError

    from pipelines.ray import worker_exception_in

    raised = FileNotFoundError(2, "No such file or directory", "run/training/examples.parquet")
    assert worker_exception_in(WorkerGroupError("failed", {0: raised})) is raised
    assert worker_exception_in(WorkerGroupError("lost", {0: ActorDiedError(), 1: RuntimeError("gloo: connection closed")})) is None
    assert worker_exception_in(RuntimeError("no worker failures")) is None


def _cpus_back_to_ray(timeout: float = 30.0) -> bool:
    import ray

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ray.available_resources().get("CPU", 0) == ray.cluster_resources().get("CPU"):
            return True
        time.sleep(0.1)
    return False


def test_cpu_model_work_runs_in_a_pooled_process_kept_warm_for_the_next_job(tiny_ckpt, examples, tmp_path):
    """On one node a CPU share of a job is a Ray task, not an actor: its process goes back to
    Ray's pool when the job ends (its CPUs free for a training job at once) with torch and
    transformers imported, and the driver's next job runs there, as the local executor's jobs
    share its one process."""
    from pipelines import ray_runtime

    started = ray_runtime.connect(None)  # a driver that keeps its Ray between jobs
    try:
        first = run_extract(examples / "videos", checkpoint=tiny_ckpt, cache=tmp_path / "a", executor="ray", cpu_threads=1)
        assert _cpus_back_to_ray()
        second = run_extract(examples / "videos", checkpoint=tiny_ckpt, cache=tmp_path / "b", executor="ray", cpu_threads=1)
        assert _cpus_back_to_ray()
    finally:
        if started:
            ray_runtime.shutdown()
    assert first["encoded"] == second["encoded"] == 4
    pids = [{a["pid"] for a in s["actors"]} for s in (first, second)]
    assert len(pids[0]) == 1 and pids[1] == pids[0]


def test_a_gpu_share_gets_a_process_of_its_own_that_ends_with_the_job():
    """Ray reuses a task's process unless told otherwise; a GPU's process must end with its job,
    so that the GPU's memory is free for what runs next (a training job)."""
    from pipelines import ray_runtime
    from pipelines.ray import NodeRoute

    started = ray_runtime.connect(None)
    try:
        gpu, cpu = NodeRoute(1, use_gpu=True), NodeRoute(1, use_gpu=False)
    finally:
        if started:
            ray_runtime.shutdown()
    assert gpu.task._default_options["max_calls"] == 1 and gpu.task._default_options["num_gpus"] == 1
    assert cpu.task._default_options["max_calls"] == 0  # unlimited: the process stays warm


def test_a_job_stopped_early_leaves_no_model_work_running(tiny_ckpt, tmp_path, caplog):
    """When the driver stops a job (Ctrl-C, a full disk on its side), the workers' tasks are
    cancelled: nothing goes on encoding the rest of the job into a long-lived Ray's processes, and
    the cancelled tasks are not taken for dead workers (no warning, nothing sent again)."""
    import logging

    caplog.set_level(logging.WARNING, logger="pipelines.ray")
    from bench.workload import build
    from pipelines import ray_runtime

    scenes = build(tmp_path / "workload", 24, 1).scenes_root

    class Stop(Exception):
        pass

    def stop_on_first_result(event):
        if event.get("done"):
            raise Stop

    cache = tmp_path / "cache"
    started = ray_runtime.connect(None)
    try:
        with pytest.raises(Stop):
            run_extract(scenes, checkpoint=tiny_ckpt, cache=cache, executor="ray", cpu_threads=1,
                        progress=stop_on_first_result)
        assert _cpus_back_to_ray()  # the task has ended (cancelled, or done)
    finally:
        if started:
            ray_runtime.shutdown()
    written = len(list(cache.glob("entries/*/*.parquet")))
    assert 1 <= written <= 12, written  # uncancelled, the worker would have encoded all 24
    assert not [r for r in caplog.records if "died" in r.getMessage()]
