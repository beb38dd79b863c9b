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

    def gather(self, value) -> list:
        import torch.distributed as dist

        out: list = [None] * self.world_size
        dist.all_gather_object(out, value)
        return out

    def report(self, metrics: dict) -> None:
        pass


def recording(real, path: Path):
    """`evaluate.answer_rows` that also appends the answers it gave ({id: text}) to `path`."""

    def answer_rows(sm, rows, *args, **kw):
        answered, failed = real(sm, rows, *args, **kw)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as fh:
            fh.write(json.dumps({rows[i]["id"]: text for i, text in answered.items()}) + "\n")
        return answered, failed

    return answer_rows


def _worker(rank: int, world: int, init_file: str, spec, patches: tuple[str, ...]) -> None:
    import torch.distributed as dist

    from spacemind_cli.training import evaluate, loop, parallel

    if "unscaled" in patches:  # the wrong normalisation the gradient-scale test must see: 1/step_targets per worker
        parallel.gradient_scale = lambda world_size, step_targets: 1.0 / step_targets
    if "record-eval" in patches:  # each rank writes the eval answers it gave
        evaluate.answer_rows = recording(evaluate.answer_rows, Path(spec.output) / f"eval-rank{rank}.jsonl")
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        loop.train(spec, GlooRuntime(rank, world))
    finally:
        dist.destroy_process_group()


def run_workers(spec, output: Path, world: int = 2, patches: tuple[str, ...] = ()):
    """Train `spec` (its output moved to `output`) in `world` local processes; returns the spec run."""
    import torch.multiprocessing as mp

    spec = dataclasses.replace(spec, output=str(output))
    init = output.parent / f"{output.name}.gloo-init"
    mp.spawn(_worker, args=(world, str(init), spec, patches), nprocs=world, join=True)
    return spec
