"""Choosing an executor."""

from __future__ import annotations

from spacemind_cli.errors import InputError
from spacemind_cli.jobs.executor import LocalExecutor

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
