"""Training on Ray Train: one worker per GPU (or N CPU workers), data parallel (DDP; gloo on CPU,
NCCL on GPU), the library's training loop in every worker (`spacemind_cli.training.loop`).

The loop saves its state every --save-every steps into NEW_CKPT/training/state (every worker
reads it, so the folder is on storage they share, as the feature cache is); when a worker is lost,
Ray Train restarts the group (up to MAX_FAILURES times) and every worker resumes from that state.
Ray Train is told the metrics only: a copy of each state in its own storage would add nothing.
A rerun of the same command after the driver itself died resumes from the same folder. The driver
shows progress by reading the log the first worker appends to, and takes the run's result from
the file the first worker writes at the end.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
from pathlib import Path

from spacemind_cli.errors import SpacemindError
from spacemind_cli.files import atomic_write_text
from spacemind_cli.runtime import torch_threads

from . import ray_runtime
from .ray import lost_workers_error, spacemind_error_in, worker_exception_in

log = logging.getLogger(__name__)

MAX_FAILURES = 2  # worker-group restarts after a lost worker before the run gives up
CPU_WORKER_CPUS = 1.0


class RayTrainRuntime:
    """The training loop's runtime inside a Ray Train worker."""

    def __init__(self):
        import ray.train

        ctx = ray.train.get_context()
        self.rank = ctx.get_world_rank()
        self.world_size = ctx.get_world_size()

    def device(self, requested: str | None) -> str:
        import ray.train.torch

        return str(ray.train.torch.get_device()) if requested is None else requested

    def prepare(self, module, shard: bool = False):
        import ray.train.torch

        if self.world_size == 1:
            return module
        if shard:
            from spacemind_cli.training.parallel import shard as fully_shard

            return fully_shard(module)
        return ray.train.torch.prepare_model(module, move_to_device=False, parallel_strategy="ddp",
                                             parallel_strategy_kwargs={"find_unused_parameters": False})

    def all_reduce_sum(self, values: list[float]) -> list[float]:
        import torch
        import torch.distributed as dist

        if self.world_size == 1:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64)
        if dist.get_backend() == "nccl":
            t = t.cuda()
        dist.all_reduce(t)
        return t.cpu().tolist()

    def gather(self, value) -> list:
        import torch.distributed as dist

        if self.world_size == 1:
            return [value]
        out: list = [None] * self.world_size
        dist.all_gather_object(out, value)  # pickled; NCCL sends it through the current CUDA device
        return out

    def report(self, metrics: dict) -> None:
        import ray.train

        ray.train.report({k: v for k, v in metrics.items() if isinstance(v, (int, float))})


def _worker(config: dict) -> None:
    from spacemind_cli.training.loop import train

    runtime = RayTrainRuntime()
    result = train(config["spec"], runtime)
    if runtime.rank == 0:
        atomic_write_text(_result_path(config["spec"]), lambda fh: fh.write(json.dumps(result) + "\n"))


def _result_path(spec) -> Path:
    return Path(spec.output).resolve() / "training" / "result.json"


def cpu_worker_share(num_workers: int, cluster_cpus: float, largest_node_cpus: float) -> float:
    """CPUs each CPU worker counts as its own: its share of the cluster's cores, never more than
    one node holds."""
    return min(cluster_cpus // num_workers, largest_node_cpus)


def fit(spec, progress=None, *, num_workers: int = 1, use_gpu: bool = False) -> dict:
    """Run the training loop on `num_workers` Ray Train workers (Ray must be initialised)."""
    from ray.train import CheckpointConfig, FailureConfig, LoggingConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    training_dir = Path(spec.output).resolve() / "training"
    _result_path(spec).unlink(missing_ok=True)
    if not use_gpu:
        threads = torch_threads(spec.settings.cpu_threads, cpu_worker_share(num_workers, *ray_runtime.cluster_cpus()))
        spec = dataclasses.replace(spec, settings=dataclasses.replace(spec.settings, cpu_threads=threads))
    trainer = TorchTrainer(
        _worker,
        train_loop_config={"spec": spec},
        scaling_config=ScalingConfig(num_workers=num_workers, use_gpu=use_gpu,
                                     resources_per_worker=None if use_gpu else {"CPU": CPU_WORKER_CPUS}),
        run_config=RunConfig(
            name="ray-train",
            storage_path=str(training_dir / "ray"),
            checkpoint_config=CheckpointConfig(num_to_keep=2),
            failure_config=FailureConfig(max_failures=MAX_FAILURES),
            # Ray Train's INFO lines (each report, each checkpoint) would bury our progress bar;
            # its log files keep them
            logging_config=LoggingConfig(log_level="ERROR"),  # type: ignore[call-arg]  # accepted by Ray Train v2's RunConfig; the stubs are v1's
        ),
    )
    stop = threading.Event()
    watcher = threading.Thread(target=_follow_log, args=(training_dir / "log.jsonl", progress, stop), daemon=True)
    if progress:
        watcher.start()
    try:
        error = trainer.fit().error
    except Exception as exc:
        error = exc
    finally:
        stop.set()
        if progress:
            watcher.join(timeout=5)
    if error is not None:
        ours = spacemind_error_in(error)
        if ours is not None:  # a worker's bad input or checkpoint, with its own message and exit code
            raise ours from None
        failure = worker_exception_in(error)
        if failure is not None:  # not lost: it raised, and will again on a rerun
            log.debug("a training worker failed", exc_info=failure)  # the traceback, for -vv
            reason = " ".join(str(failure).split())[:400]
            raise SpacemindError(f"a training worker failed: {type(failure).__name__}: {reason}") from None
        raise lost_workers_error(error) from error  # workers lost past their restarts: rerun to resume
    try:
        result = json.loads(_result_path(spec).read_text())
    except (OSError, ValueError) as exc:
        raise lost_workers_error(exc) from exc
    return {**result, "workers": num_workers}


def _read_log(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            pass  # a line being written
    return out


def _follow_log(path: Path, progress, stop: threading.Event) -> None:
    """Hand each new log line to the progress callback (the first worker writes the log)."""
    seen = len(_read_log(path))
    while not stop.wait(0.5):
        rows = _read_log(path)
        for row in rows[seen:]:
            progress({**row, "phase": "train"})
        seen = len(rows)
