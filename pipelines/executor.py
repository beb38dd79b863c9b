"""How work runs: the executor interface, and opening a job (choosing the executor, settling the
job's settings). The executors themselves: `local.py` (in-process) and `ray.py` (Ray Data).

Every executor moves the planned work items through the same library stages
(`spacemind_cli.jobs.stages`): `load_item` on CPU, then one model stage per worker, and hands
each `ItemResult` to the job's callback on the driver, in completion order. A new executor (a
Slurm array, a process pool) implements `Executor` and is added to `make_executor`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Protocol

from spacemind_cli.jobs.records import ItemResult, WorkItem
from spacemind_cli.jobs.settings import JobSettings, RunOptions, make_settings
from spacemind_cli.jobs.stages import ModelStage


class Executor(Protocol):
    name: str

    def uses_gpu(self) -> bool:
        """Whether the model workers have GPUs (it settles dtype "auto", part of every cache key)."""

    def run(self, items: Sequence[WorkItem], stage: type[ModelStage], settings: JobSettings,
            on_result: Callable[[ItemResult], None]) -> dict:
        """Run every item through load_item and `stage`; call on_result on the driver for each.
        An exception raised by on_result stops the run and propagates. Returns executor facts for
        the summary ({"executor": name, ...})."""

    def close(self) -> None:
        """Release workers (and an embedded Ray)."""


def make_executor(options: RunOptions, *, worker_logs: bool = True) -> Executor:
    """`worker_logs=False`: workers' console output stays in Ray's log files (Ray Train's workers
    and controller print a line per report; failures still reach the driver as errors)."""
    if options.executor == "local":
        from .local import LocalExecutor

        return LocalExecutor(device=options.device)
    from .ray import RayExecutor

    assert options.scenes_per_call is not None  # RunOptions filled in its default
    return RayExecutor(address=options.ray_address, num_gpus=options.num_gpus, actors=options.actors,
                       items_per_call=options.scenes_per_call, log_to_driver=worker_logs)


@contextlib.contextmanager
def open_job(options: RunOptions, *, verify_cached: bool = False,
             worker_logs: bool = True) -> Iterator[tuple[Executor, JobSettings]]:
    """(executor, settings) for one job; the executor (and an embedded Ray) is closed after.

    The executor comes first: whether the workers have GPUs decides the dtype ("auto"), which is
    part of every cache key, so the driver settles it once for all workers."""
    executor = make_executor(options, worker_logs=worker_logs)
    try:
        yield executor, make_settings(options, use_gpu=executor.uses_gpu(), verify_cached=verify_cached)
    finally:
        executor.close()
