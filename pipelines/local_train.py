"""Training in this process (`--executor local`): the training loop's runtime with one worker,
the counterpart of `ray_train.py`."""

from __future__ import annotations


class LocalRuntime:
    """The training loop's runtime in one process: one worker, nothing to synchronise."""

    rank = 0
    world_size = 1

    def device(self, requested: str | None) -> str:
        from spacemind_cli.runtime import pick_device

        return pick_device(requested)

    def prepare(self, module, shard: bool = False):
        return module

    def all_reduce_sum(self, values: list[float]) -> list[float]:
        return list(values)

    def gather(self, value) -> list:
        return [value]

    def report(self, metrics: dict) -> None:
        pass


def fit(spec, progress=None) -> dict:
    """Train in this process (`--executor local`)."""
    from spacemind_cli.training.loop import train

    return {**train(spec, LocalRuntime(), progress), "workers": 1}
