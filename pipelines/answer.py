"""`spacemind answer` as a Ray Data pipeline (or in-process with executor="local").

Planning, resume and output are the library's (`spacemind_cli.jobs.answer`); this module picks
the executor and connects to Ray.
"""

from __future__ import annotations

from spacemind_cli.jobs.answer import run_answer

from .common import job


def run(
    scenes_root,
    *,
    checkpoint,
    output,
    questions=None,
    template=None,
    cache=None,
    executor: str = "ray",
    ray_address: str | None = None,
    num_gpus: int | None = None,
    actors: int | None = None,
    batch_size: int = 8,
    max_new_tokens: int = 16,
    num_frames: int | None = None,
    sampling: str | None = None,
    dtype: str = "auto",
    vggt_weights: str = "fp32",
    cpu_threads: int | None = None,
    device: str | None = None,
    overwrite: bool = False,
    trusted_paths=(),
    progress=None,
) -> dict:
    with job(
        executor,
        checkpoint,
        ray_address=ray_address,
        num_gpus=num_gpus,
        actors=actors,
        device=device,
        dtype=dtype,
        vggt_weights=vggt_weights,
        cpu_threads=cpu_threads,
        num_frames=num_frames,
        sampling=sampling,
        trusted_paths=trusted_paths,
        cache=str(cache) if cache else None,
        batch_size=batch_size,
        max_new_tokens=max_new_tokens,
    ) as (ex, settings):
        return run_answer(
            scenes_root,
            output=output,
            settings=settings,
            executor=ex,
            questions=questions,
            template=template,
            overwrite=overwrite,
            progress=progress,
        )
