"""Training workers as local processes over a gloo process group, without Ray: the loop's
runtime as Ray Train gives it (rank, world size, DDP or FSDP, all-reduce), cheap enough for
tests that compare one step of one worker with two."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path


class GlooRuntime:
    def __init__(self, rank: int, world_size: int):
        self.rank, self.world_size = rank, world_size

    def device(self, requested: str | None) -> str:
        return requested or "cpu"

    def prepare(self, module, shard: bool = False):
        if self.world_size == 1:
            return module
        if shard:
            from spacemind_cli.training.parallel import shard as fully_shard

            return fully_shard(module)
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(module, find_unused_parameters=False)

    def all_reduce_sum(self, values: list[float]) -> list[float]:
        import torch
        import torch.distributed as dist

        t = torch.tensor(values, dtype=torch.float64)
        dist.all_reduce(t)
        return t.tolist()

    def report(self, metrics: dict) -> None:
        pass


def _worker(rank: int, world: int, init_file: str, spec, patch: str | None) -> None:
    import torch.distributed as dist

    from spacemind_cli.training import loop, parallel

    if patch == "unscaled":  # the wrong normalisation the gradient-scale test must see: 1/step_targets per worker
        parallel.gradient_scale = lambda world_size, step_targets: 1.0 / step_targets
    if patch == "record-eval":  # each rank writes the eval questions it answered
        from spacemind_cli.training import evaluate as ev

        real = ev.evaluate

        def recording(sm, rows, *args, **kw):
            answered = Path(spec.output) / "training" / f"eval-rank{rank}.jsonl"
            with open(answered, "a") as fh:
                fh.write(json.dumps(sorted(r["id"] for r in rows)) + "\n")
            return real(sm, rows, *args, **kw)

        ev.evaluate = recording
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        loop.train(spec, GlooRuntime(rank, world))
    finally:
        dist.destroy_process_group()


def run_workers(spec, output: Path, world: int = 2, patch: str | None = None):
    """Train `spec` (its output moved to `output`) in `world` local processes; returns the spec run."""
    import torch.multiprocessing as mp

    spec = dataclasses.replace(spec, output=str(output))
    init = output.parent / f"{output.name}.gloo-init"
    mp.spawn(_worker, args=(world, str(init), spec, patch), nprocs=world, join=True)
    return spec
