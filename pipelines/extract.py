"""`spacemind extract` as a Ray Data pipeline (or in-process with executor="local")."""

from __future__ import annotations

from spacemind_cli.jobs.extract import run_extract
from spacemind_cli.jobs.settings import make_settings

from .common import make_executor


def run(
    scenes_root,
    *,
    checkpoint,
    cache,
    questions=None,
    executor: str = "ray",
    ray_address: str | None = None,
    num_gpus: int | None = None,
    actors: int | None = None,
    batch_size: int = 1,
    num_frames: int | None = None,
    sampling: str | None = None,
    dtype: str = "auto",
    device: str | None = None,
    trusted_paths=(),
    progress=None,
) -> dict:
    ex = make_executor(
        executor, ray_address=ray_address, num_gpus=num_gpus, actors=actors, device=device, items_per_call=batch_size
    )
    try:
        settings = make_settings(
            checkpoint,
            num_frames=num_frames,
            sampling=sampling,
            dtype=dtype,
            use_gpu=ex.uses_gpu(),
            trusted_paths=trusted_paths,
            cache=str(cache),
            device=device,
        )
        return run_extract(scenes_root, settings=settings, executor=ex, questions=questions, progress=progress)
    finally:
        ex.close()
