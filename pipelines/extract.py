"""`spacemind extract` as a Ray Data pipeline (or in-process with executor="local")."""

from __future__ import annotations

from spacemind_cli.jobs.extract import run_extract

from .common import job


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
    vggt_weights: str = "fp32",
    cpu_threads: int | None = None,
    device: str | None = None,
    trusted_paths=(),
    progress=None,
) -> dict:
    with job(
        executor,
        checkpoint,
        ray_address=ray_address,
        num_gpus=num_gpus,
        actors=actors,
        items_per_call=batch_size,
        device=device,
        dtype=dtype,
        vggt_weights=vggt_weights,
        cpu_threads=cpu_threads,
        num_frames=num_frames,
        sampling=sampling,
        trusted_paths=trusted_paths,
        cache=str(cache),
        verify_cached=True,
    ) as (ex, settings):
        return run_extract(scenes_root, settings=settings, executor=ex, questions=questions, progress=progress)
