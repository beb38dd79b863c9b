"""The Ray Data executor: list of work items -> CPU load tasks -> GPU actor pool -> results.

    from_items(items) ─ map_batches(load_batch, CPU tasks) ─ map_batches(ModelStage, ActorPool,
    num_gpus=1 each) ─ iter_rows() on the driver, which writes answers as they arrive.

Both stages are the library's (`spacemind_cli.jobs.stages`), exactly what `--executor local`
runs in-process. The model is loaded once per actor from the checkpoint path (weights never
travel through the object store); items carry only paths, questions and uint8 frames.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import warnings
from typing import Callable, Iterable

from spacemind_cli.errors import ResourceError, SpacemindError
from spacemind_cli.jobs.settings import JobSettings
from spacemind_cli.jobs.stages import ModelStage, load_batch

from . import ray_runtime

log = logging.getLogger(__name__)

# Fractions of a CPU: on small machines a pool of whole-CPU actors starves the load tasks.
LOAD_TASK_CPUS = 0.5  # decoding is CPU-bound: more concurrent decoders than cores only thrash
CPU_ACTOR_CPUS = 0.5  # the least a CPU model actor reserves
LOAD_RESERVE_CPUS = 1.0  # left to the load tasks when CPU model actors size their share
GPU_ACTOR_CPUS = 1.0
ACTOR_RESTARTS = 3  # Ray's default is to restart forever; a scene that kills actors must end


def cpu_actor_share(total_cpus: float, largest_node_cpus: float, actors: int) -> float:
    """CPUs each CPU model actor reserves: an equal share of the cluster's CPUs after the load
    tasks' reserve, in whole CPUs, no more than one node can give, at least CPU_ACTOR_CPUS."""
    share = min((total_cpus - LOAD_RESERVE_CPUS) // max(1, actors), largest_node_cpus - LOAD_RESERVE_CPUS)
    return max(CPU_ACTOR_CPUS, float(int(share)))


class RayExecutor:
    name = "ray"

    def __init__(
        self,
        address: str | None = None,
        num_gpus: int | None = None,
        actors: int | None = None,
        items_per_call: int = 1,
    ):
        self.items_per_call = max(1, items_per_call)  # work items per model-actor call
        self.started = ray_runtime.connect(address)
        self.address = address
        self.gpus_in_cluster = ray_runtime.cluster_gpus()
        if num_gpus is not None and num_gpus > self.gpus_in_cluster:
            raise SpacemindError(f"--num-gpus {num_gpus} asked for, but the Ray cluster has {self.gpus_in_cluster} GPU(s)")
        self.use_gpu = self.gpus_in_cluster > 0 and num_gpus != 0
        if self.use_gpu:
            self.pool_size = num_gpus or self.gpus_in_cluster
        else:
            self.pool_size = actors or 1

    def uses_gpu(self) -> bool:
        return self.use_gpu

    def run(self, items: Iterable[dict], on_result: Callable[[dict], None], settings: JobSettings, mode: str) -> dict:
        import ray
        from ray.data import ActorPoolStrategy, DataContext

        items = list(items)
        actors = min(self.pool_size, max(1, len(items)))
        actor_cpus = GPU_ACTOR_CPUS if self.use_gpu else self.cpu_actor_share(actors)
        if not self.use_gpu and settings.cpu_threads is None:
            # torch threads = the CPUs this actor reserved, never the driver's count: several
            # actors per node, or nodes unlike the driver, must not oversubscribe their cores.
            settings = dataclasses.replace(settings, cpu_threads=max(1, int(actor_cpus)))
        ray_runtime.quiet_ray_data_console()
        ctx = DataContext.get_current()
        ctx.enable_progress_bars = False  # the CLI shows its own
        ctx.execution_options.preserve_order = False
        ctx.execution_options.verbose_progress = False
        ds = ray.data.from_items([{"item": json.dumps(i)} for i in items], override_num_blocks=max(1, len(items)))
        ds = ds.map_batches(
            load_batch,
            fn_kwargs={"settings": settings},
            batch_size=1,
            batch_format="numpy",
            num_cpus=LOAD_TASK_CPUS,
        )
        with warnings.catch_warnings():
            # Restart limits have no named parameter yet; `ray_remote_args` is the only way.
            warnings.simplefilter("ignore", DeprecationWarning)
            ds = ds.map_batches(
                ModelStage,
                fn_constructor_kwargs={"settings": settings, "mode": mode},
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
                on_result(json.loads(row["result"]))
        except SpacemindError:
            raise
        except Exception as exc:
            # Everything already delivered has been written; a rerun resumes from there. Workers
            # that die past their restarts were lost to the machine (OOM killer, node down, kill),
            # not to bad input: a resource error (exit 5), not a usage error (exit 2).
            msg = " ".join(str(exc).split())
            raise ResourceError(f"the Ray pipeline failed: {type(exc).__name__}: {msg[:400]}; rerun to resume") from exc
        return {"executor": self.name, "actors": self.pool_size, "gpus": self.use_gpu}

    def cpu_actor_share(self, actors: int) -> float:
        return cpu_actor_share(*ray_runtime.cluster_cpus(), actors)

    def close(self) -> None:
        if self.started:
            ray_runtime.shutdown()
