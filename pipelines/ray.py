"""The Ray executor: the library's stages on Ray workers, with Ray's fault handling.

Two routes, one executor:

* **One node** (an embedded Ray, or a one-machine cluster): one model worker per GPU (or per CPU
  share), each a streaming Ray task over its share of the items, reading its scenes ahead on a
  thread pool and running the model stage, exactly what the local executor does in one process.
  Results stream back to the driver as they finish. Nothing heavy crosses the object store:
  items are paths and prompts, results are answers. CPU tasks run in Ray's pooled worker
  processes, warmed while the driver plans and kept warm for the driver's next job.
* **A cluster**: a Ray Data pipeline, so that scenes are decoded wherever there are CPUs and the
  model actors anywhere there are GPUs:

      from_items(items) ─ map_batches(load, CPU tasks) ─ map_batches(ModelStageActor, ActorPool,
      num_gpus=1 each) ─ iter_rows() on the driver, which hands each result to the job.

Both routes: the model loaded once per worker from the checkpoint path (weights never travel
through the object store); when a worker dies (OOM killer, a kill, a lost node) its unfinished
items are done again by another, up to ACTOR_RESTARTS times, after which the job stops with a
resource error (exit 5); a rerun resumes from what was written.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from spacemind_cli.errors import ResourceError, SpacemindError
from spacemind_cli.jobs.records import ItemResult, LoadedItem, WorkItem
from spacemind_cli.jobs.settings import JobSettings
from spacemind_cli.jobs.stages import ModelStage, drop_job_caches, load_ahead, load_item
from spacemind_cli.runtime import torch_threads

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


def lost_workers_error(exc: BaseException) -> ResourceError:
    # Workers that die past their restarts were lost to the machine (OOM killer, node down, kill),
    # not to bad input: a resource error (exit 5), not a usage error (exit 2).
    msg = " ".join(str(exc).split())
    return ResourceError(f"the Ray pipeline failed: {type(exc).__name__}: {msg[:400]}; rerun to resume")


def spacemind_error_in(exc: BaseException | None, depth: int = 0) -> SpacemindError | None:
    """Our own error inside what Ray raised for a worker (its bad input, checkpoint or cache), if
    any: it keeps its message and exit code instead of passing for a lost worker."""
    if exc is None or depth > 8:
        return None
    # Ray's task errors are also instances of their cause's class, with Ray's traceback as their
    # text: the cause itself is what carries our one-line message.
    inner = [getattr(exc, "cause", None), exc.__cause__, exc.__context__, getattr(exc, "controller_failure", None),
             *getattr(exc, "worker_failures", {}).values()]
    for e in inner:
        if isinstance(e, BaseException) and (found := spacemind_error_in(e, depth + 1)) is not None:
            return found
    return exc if isinstance(exc, SpacemindError) else None


def worker_exception_in(exc: BaseException | None) -> BaseException | None:
    """An exception a Ray Train worker raised itself (a bug, or a file it could not read), as
    opposed to a worker lost to the machine (Ray's own errors): rerunning will not mend it."""
    import ray.exceptions

    failures = [f for f in getattr(exc, "worker_failures", {}).values() if isinstance(f, BaseException)]
    # A lost worker shows as Ray's error, and its peers then fail in their collectives (a gloo or
    # NCCL error of their own): any Ray error among them means a loss.
    if not failures or any(isinstance(f, ray.exceptions.RayError) for f in failures):
        return None
    return failures[0]


class RayExecutor:
    name = "ray"

    def __init__(self, address: str | None = None, num_gpus: int | None = None, actors: int | None = None,
                 items_per_call: int = 1, log_to_driver: bool = True):
        self.items_per_call = max(1, items_per_call)  # work items per model-actor call (Ray Data route)
        self.started = ray_runtime.connect(address, log_to_driver=log_to_driver)
        self.address = address
        self.gpus_in_cluster = ray_runtime.cluster_gpus()
        if num_gpus is not None and num_gpus > self.gpus_in_cluster:
            raise SpacemindError(f"--num-gpus {num_gpus} asked for, but the Ray cluster has {self.gpus_in_cluster} GPU(s)")
        self.use_gpu = self.gpus_in_cluster > 0 and num_gpus != 0
        self.pool_size = (num_gpus or self.gpus_in_cluster) if self.use_gpu else (actors or 1)
        # One node: warm the pooled worker processes now (torch and transformers imported), while
        # the driver settles the job and plans it.
        self.single_node = ray_runtime.alive_nodes() == 1
        self.node = NodeRoute(self.pool_size, self.use_gpu) if self.single_node else None

    def uses_gpu(self) -> bool:
        return self.use_gpu

    def run(self, items: Sequence[WorkItem], stage: type[ModelStage], settings: JobSettings,
            on_result: Callable[[ItemResult], None]) -> dict:
        items = list(items)
        actors = min(self.pool_size, max(1, len(items)))
        if self.node is not None:
            self.node.run(items, stage, settings, on_result)
        else:
            _run_dataset(items, stage, settings, on_result, actors=actors, use_gpu=self.use_gpu,
                         items_per_call=self.items_per_call)
        return {"executor": self.name, "route": "node" if self.single_node else "dataset", "actors": actors,
                "gpus": self.use_gpu}

    def close(self) -> None:
        if self.started:
            ray_runtime.shutdown()


# ---------------------------------------------------------------------------------- one node


def model_stage_share(stage: type[ModelStage], settings: JobSettings, readers: int,
                      item_rows: list[dict]) -> Iterator[dict]:
    """A worker's share of a job, as one streaming Ray task: the model loaded, the share's scenes
    read ahead on `readers` threads, each result yielded as soon as it is done.

    A task, not an actor: a CPU task's process goes back to Ray's worker pool when it ends, with
    torch and transformers still imported, and the next job of this driver runs there warm (as
    the local executor's jobs share its one process); its CPUs are Ray's again at once (a
    training job needs them next). A GPU task gets a process of its own (`max_calls` 1), so a
    GPU and its memory are free when the job ends."""
    import gc

    import ray

    drop_job_caches()  # a pooled process may have served an earlier job: no stale manifest
    model = stage(settings)
    model.actor.node = ray.get_runtime_context().get_node_id()
    try:
        items = [WorkItem.from_row(row) for row in item_rows]
        for result in model.process_stream(load_ahead(items, settings, readers)):
            yield result.to_row()
    finally:
        del model  # the weights leave the pooled process with the job
        gc.collect()


def warm_worker() -> None:
    """The imports a model stage needs, taken in a pooled worker process while the driver plans
    the job, so that the job's first task finds them done."""
    from spacemind_cli.jobs import stages  # noqa: F401  (torch)
    from spacemind_cli.models import internvl

    internvl.import_modeling()  # transformers' InternVL: the slowest import of all


class NodeRoute:
    """One node's model workers: each worker's share of a job as a streaming Ray task, results
    streamed back to the driver as they finish; the share's unfinished items are sent again when
    its worker dies."""

    def __init__(self, workers: int, use_gpu: bool):
        import ray

        total, _ = ray_runtime.cluster_cpus()
        self.workers, self.use_gpu = workers, use_gpu
        self.share = max(1, int((total - (1 if use_gpu else 0)) // workers))  # next to GPUs the driver keeps one CPU
        # Options on ray.remote itself: `max_calls` is a function's, not a call's.
        self.task: Any = ray.remote(  # Ray types a streaming call as one ObjectRef
            num_cpus=self.share, num_gpus=1 if use_gpu else 0, num_returns="streaming",
            max_retries=0,  # unfinished items are resent by the driver, done ones never again
            max_calls=1 if use_gpu else 0,  # a GPU's process ends with the job, its memory with it
        )(model_stage_share)
        if not use_gpu:  # a GPU task's process is not kept: nothing to warm
            warm = ray.remote(warm_worker).options(num_cpus=self.share)
            self.warming = [warm.remote() for _ in range(workers)]

    def run(self, items: list[WorkItem], stage, settings: JobSettings, on_result) -> None:
        import ray

        if not self.use_gpu:
            settings = dataclasses.replace(settings, cpu_threads=torch_threads(settings.cpu_threads, self.share))
        readers = max(1, self.share - 1)
        workers = max(1, min(self.workers, len(items)))
        shares = [items[w::workers] for w in range(workers)]
        results: queue.Queue = queue.Queue()
        stop = threading.Event()
        running: dict[int, Any] = {}  # share -> its task now, cancelled when the job stops early

        def drive(w: int) -> None:
            """Stream share w's items; when its worker dies, send what it had not finished again,
            up to ACTOR_RESTARTS times."""
            left = {it.item_id: it for it in shares[w]}
            failures = 0
            while left and not stop.is_set():
                try:
                    running[w] = call = self.task.remote(stage, settings, readers, [it.to_row() for it in left.values()])
                    if stop.is_set():  # stopped while this was being sent: the driver's cancel may have missed it
                        ray.cancel(call)
                        return
                    for ref in call:
                        result = ItemResult.from_row(ray.get(ref))
                        left.pop(result.item_id, None)
                        results.put(result)
                        if stop.is_set():
                            return
                except Exception as exc:  # the worker died, or the model could not load
                    if stop.is_set():  # cancelled: the job has stopped
                        return
                    if (ours := spacemind_error_in(exc)) is not None:
                        results.put(ours)  # a bad checkpoint or cache: no rerun mends it
                        return
                    failures += 1
                    if failures > ACTOR_RESTARTS:
                        results.put(lost_workers_error(exc))
                        return
                    log.warning("a model worker died (%s); sending its %d unfinished item(s) again",
                                type(exc).__name__, len(left))
            results.put(None)

        threads = [threading.Thread(target=drive, args=(w,), daemon=True, name=f"spacemind-ray-{w}")
                   for w in range(workers)]
        for t in threads:
            t.start()
        try:
            finished = 0
            while finished < workers:
                got = results.get()
                if got is None:
                    finished += 1
                elif isinstance(got, Exception):
                    raise got
                else:
                    on_result(got)
        except BaseException:
            stop.set()
            for call in list(running.values()):  # a job stopped early leaves no task working on
                ray.cancel(call)
            raise
        finally:
            stop.set()


# ---------------------------------------------------------------------------------- a cluster


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
    """A model stage as a Ray Data actor: rows in, results out. Its stage and settings are class
    attributes of a subclass made per job (`bound`), so that Ray holds no constructor arguments
    in its object store (which it warns about for restartable actors)."""

    STAGE: type[ModelStage] | None = None
    SETTINGS: JobSettings | None = None

    def __init__(self):
        import ray

        self.stage = self.STAGE(self.SETTINGS)
        self.stage.actor.node = ray.get_runtime_context().get_node_id()

    @classmethod
    def bound(cls, stage: type[ModelStage], settings: JobSettings) -> type[ModelStageActor]:
        return type(cls.__name__, (cls,), {"STAGE": stage, "SETTINGS": settings})

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        loaded = (LoadedItem.from_row(row) for row in batch_to_rows(batch))
        return rows_to_batch([result.to_row() for result in self.stage.process_stream(loaded)])


def _run_dataset(items: list[WorkItem], stage, settings: JobSettings, on_result, *, actors: int, use_gpu: bool,
                 items_per_call: int) -> None:
    import ray
    from ray.data import ActorPoolStrategy, DataContext, Dataset

    actor_cpus = GPU_ACTOR_CPUS if use_gpu else cpu_actor_share(*ray_runtime.cluster_cpus(), actors)
    if not use_gpu:
        settings = dataclasses.replace(settings, cpu_threads=torch_threads(settings.cpu_threads, actor_cpus))
    ray_runtime.quiet_ray_data_console()
    ctx = DataContext.get_current()
    ctx.enable_progress_bars = False  # the CLI shows its own
    ctx.execution_options.preserve_order = False
    ctx.execution_options.verbose_progress = False
    ds: Dataset = ray.data.from_items([item.to_row() for item in items], override_num_blocks=max(1, len(items)))
    # Ray's stubs omit the extra parameters fn_kwargs supplies
    ds = ds.map_batches(load_batch, fn_kwargs={"settings": settings}, batch_size=1,  # type: ignore[arg-type]
                        batch_format="numpy", num_cpus=LOAD_TASK_CPUS)
    with warnings.catch_warnings():
        # Restart limits have no named parameter yet; `ray_remote_args` is the only way.
        warnings.simplefilter("ignore", DeprecationWarning)
        ds = ds.map_batches(
            ModelStageActor.bound(stage, settings),
            compute=ActorPoolStrategy(size=actors),
            batch_size=items_per_call,
            batch_format="numpy",
            num_gpus=1 if use_gpu else 0,
            num_cpus=actor_cpus,
            max_restarts=ACTOR_RESTARTS,
            max_task_retries=ACTOR_RESTARTS,
        )
    try:
        for row in ds.iter_rows():
            on_result(ItemResult.from_row(row))
    except Exception as exc:  # everything already delivered has been written; a rerun resumes
        if (ours := spacemind_error_in(exc)) is not None:
            raise ours from None
        raise lost_workers_error(exc) from exc
