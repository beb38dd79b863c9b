"""Choosing an executor and settling a job's settings (shared by the answer and extract pipelines)."""

from __future__ import annotations

import contextlib

from spacemind_cli.errors import InputError
from spacemind_cli.jobs.executor import LocalExecutor
from spacemind_cli.jobs.settings import make_settings

EXECUTORS = ("ray", "local")


def make_executor(name: str, *, ray_address=None, num_gpus=None, actors=None, device=None, items_per_call=1):
    if name == "local":
        if ray_address:
            raise InputError("--ray-address needs --executor ray")
        return LocalExecutor(device=device)
    if name == "ray":
        from .executor import RayExecutor

        return RayExecutor(address=ray_address, num_gpus=num_gpus, actors=actors, items_per_call=items_per_call)
    raise InputError(f"--executor must be one of {', '.join(EXECUTORS)}, got {name!r}")


@contextlib.contextmanager
def job(
    executor: str,
    checkpoint,
    *,
    ray_address=None,
    num_gpus=None,
    actors=None,
    items_per_call: int = 1,
    device=None,
    dtype: str = "auto",
    **settings,
):
    """(executor, settings) for one job; the executor (and an embedded Ray) is closed after.

    The executor comes first: whether the workers have GPUs decides the dtype ("auto"), which is
    part of every cache key, so the driver settles it once for all workers."""
    ex = make_executor(
        executor, ray_address=ray_address, num_gpus=num_gpus, actors=actors, device=device, items_per_call=items_per_call
    )
    try:
        yield ex, make_settings(checkpoint, dtype=dtype, use_gpu=ex.uses_gpu(), device=device, **settings)
    finally:
        ex.close()
