"""The Ray Data executor: work items -> CPU load tasks -> a pool of model actors -> the driver.

    from_items(items) ─ map_batches(load, CPU tasks) ─ map_batches(ModelStageActor, ActorPool,
    num_gpus=1 each) ─ iter_rows() on the driver, which hands each result to the job as it arrives.

Both stages are the library's (`spacemind_cli.jobs.stages`), exactly what the local executor runs
in-process. The model is loaded once per actor from the checkpoint path (weights never travel
through the object store); rows carry paths, questions and uint8 frames (`jobs.records`).
"""

from __future__ import annotations

import dataclasses
import logging
import warnings
from collections.abc import Callable, Sequence

import numpy as np

from spacemind_cli.errors import ResourceError, SpacemindError
from spacemind_cli.jobs.records import ItemResult, LoadedItem, WorkItem
from spacemind_cli.jobs.settings import JobSettings
from spacemind_cli.jobs.stages import ModelStage, load_item

from . import ray_runtime

log = logging.getLogger(__name__)

# Fractions of a CPU: on small machines a pool of whole-CPU actors starves the load tasks.
LOAD_TASK_CPUS = 0.5  # decoding is CPU-bound: more concurrent decoders than cores only thrash
CPU_ACTOR_CPUS = 0.5  # the least a CPU model actor reserves
LOAD_RESERVE_CPUS = 1.0  # left to the load tasks when CPU model actors size their share
GPU_ACTOR_CPUS = 1.0
ACTOR_RESTARTS = 3  # Ray's default is to restart forever; a scene that kills actors must end


def rows_to_batch(rows: list[dict]) -> dict[str, np.ndarray]:
    """Ray Data's numpy batch format: one array per column. Frames of different sizes stay one
    array per row (an object array), never padded."""
    batch = {}
    for k in rows[0]:
        col = np.empty(len(rows), dtype=object)
        col[:] = [r[k] for r in rows]
        batch[k] = col
    return batch


def batch_to_rows(batch: dict[str, np.ndarray]) -> list[dict]:
    n = len(next(iter(batch.values())))
    return [{k: batch[k][i] for k in batch} for i in range(n)]


def load_batch(batch: dict[str, np.ndarray], settings: JobSettings) -> dict[str, np.ndarray]:
    """The load stage as a Ray Data CPU task."""
    return rows_to_batch([load_item(WorkItem.from_row(row), settings).to_row() for row in batch_to_rows(batch)])


class ModelStageActor:
    """A model stage as a Ray Data actor: rows in, results out."""

    def __init__(self, stage: type[ModelStage], settings: JobSettings):
        import ray

        self.stage = stage(settings)
        self.stage.actor.node = ray.get_runtime_context().get_node_id()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return rows_to_batch([self.stage.process(LoadedItem.from_row(row)).to_row() for row in batch_to_rows(batch)])


def cpu_actor_share(total_cpus: float, largest_node_cpus: float, actors: int) -> float:
    """CPUs each CPU model actor reserves: an equal share of the cluster's CPUs after the load
    tasks' reserve, in whole CPUs, no more than one node can give, at least CPU_ACTOR_CPUS."""
    share = min((total_cpus - LOAD_RESERVE_CPUS) // max(1, actors), largest_node_cpus - LOAD_RESERVE_CPUS)
    return max(CPU_ACTOR_CPUS, float(int(share)))


class RayExecutor:
    name = "ray"

    def __init__(self, address: str | None = None, num_gpus: int | None = None, actors: int | None = None,
                 items_per_call: int = 1, log_to_driver: bool = True):
        self.items_per_call = max(1, items_per_call)  # work items per model-actor call
        self.started = ray_runtime.connect(address, log_to_driver=log_to_driver)
        self.address = address
        self.gpus_in_cluster = ray_runtime.cluster_gpus()
        if num_gpus is not None and num_gpus > self.gpus_in_cluster:
            raise SpacemindError(f"--num-gpus {num_gpus} asked for, but the Ray cluster has {self.gpus_in_cluster} GPU(s)")
        self.use_gpu = self.gpus_in_cluster > 0 and num_gpus != 0
        self.pool_size = (num_gpus or self.gpus_in_cluster) if self.use_gpu else (actors or 1)

    def uses_gpu(self) -> bool:
        return self.use_gpu

    def run(self, items: Sequence[WorkItem], stage: type[ModelStage], settings: JobSettings,
            on_result: Callable[[ItemResult], None]) -> dict:
        import ray
        from ray.data import ActorPoolStrategy, DataContext

        items = list(items)
        actors = min(self.pool_size, max(1, len(items)))
        actor_cpus = GPU_ACTOR_CPUS if self.use_gpu else cpu_actor_share(*ray_runtime.cluster_cpus(), actors)
        if not self.use_gpu and settings.cpu_threads is None:
            # torch threads = the CPUs this actor reserved, never the driver's count: several
            # actors per node, or nodes unlike the driver, must not oversubscribe their cores.
            settings = dataclasses.replace(settings, cpu_threads=max(1, int(actor_cpus)))
        ray_runtime.quiet_ray_data_console()
        ctx = DataContext.get_current()
        ctx.enable_progress_bars = False  # the CLI shows its own
        ctx.execution_options.preserve_order = False
        ctx.execution_options.verbose_progress = False
        ds = ray.data.from_items([item.to_row() for item in items], override_num_blocks=max(1, len(items)))
        ds = ds.map_batches(load_batch, fn_kwargs={"settings": settings}, batch_size=1, batch_format="numpy",
                            num_cpus=LOAD_TASK_CPUS)
        with warnings.catch_warnings():
            # Restart limits have no named parameter yet; `ray_remote_args` is the only way.
            warnings.simplefilter("ignore", DeprecationWarning)
            ds = ds.map_batches(
                ModelStageActor,
                fn_constructor_kwargs={"stage": stage, "settings": settings},
                compute=ActorPoolStrategy(size=actors),
                batch_size=self.items_per_call,
                batch_format="numpy",
                num_gpus=1 if self.use_gpu else 0,
                num_cpus=actor_cpus,
                max_restarts=ACTOR_RESTARTS,
                max_task_retries=ACTOR_RESTARTS,
            )
        try:
            for row in ds.iter_rows():
                on_result(ItemResult.from_row(row))
        except SpacemindError:
            raise
        except Exception as exc:
            # Everything already delivered has been written; a rerun resumes from there. Workers
            # that die past their restarts were lost to the machine (OOM killer, node down, kill),
            # not to bad input: a resource error (exit 5), not a usage error (exit 2).
            msg = " ".join(str(exc).split())
            raise ResourceError(f"the Ray pipeline failed: {type(exc).__name__}: {msg[:400]}; rerun to resume") from exc
        return {"executor": self.name, "actors": actors, "gpus": self.use_gpu}

    def close(self) -> None:
        if self.started:
            ray_runtime.shutdown()
