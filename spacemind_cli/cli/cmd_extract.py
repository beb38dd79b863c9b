"""`spacemind extract`: encoder features into a content-addressed Parquet cache."""

from __future__ import annotations

from pathlib import Path

import typer

from ..defaults import DEFAULTS
from ..errors import EXIT_PARTIAL
from . import options as opt
from .common import console, err_console, handle_errors, summary_table
from .progress import job_progress

HELP = (
    "Encode scenes once with the frozen encoders (VGGT + InternViT) into a feature cache that "
    "`spacemind answer --cache` reuses.\n\n"
    "Entries are keyed by the scene's content, frame sampling, preprocessing, encoder weights, dtype "
    "and VGGT layers: an identical run skips cached scenes, a changed setting never gets a stale entry. "
    "Scenes that cannot be read are listed in CACHE/extract.errors.jsonl."
)


@handle_errors
def extract(
    scenes: Path = opt.SCENES,
    checkpoint: Path = opt.CHECKPOINT,
    cache: Path = typer.Option(..., "--cache", help="Feature cache folder (created if missing)."),
    questions: Path | None = typer.Option(None, "--questions", help="Only the scenes this question file uses."),
    num_frames: int | None = opt.NUM_FRAMES,
    sampling: str | None = opt.SAMPLING,
    executor: str | None = opt.EXECUTOR,
    ray_address: str | None = opt.RAY_ADDRESS,
    num_gpus: int | None = opt.NUM_GPUS,
    actors: int | None = opt.ACTORS,
    scenes_per_call: int | None = typer.Option(
        None, "--scenes-per-call", min=1, show_default=str(DEFAULTS.scenes_per_call),
        help="Scenes handed to an encoder actor per call on a multi-node Ray cluster (fewer round trips). Not used on "
        "one machine, where workers stream their scenes. Each scene is still encoded on its own, so features never "
        "depend on it."),
    batch_size: int | None = typer.Option(None, "--batch-size", min=1, hidden=True,
                                          help="Deprecated name of --scenes-per-call."),
    dtype: str | None = opt.DTYPE,
    threads: int | None = opt.THREADS,
    vggt_weights: str | None = opt.VGGT_WEIGHTS,
    device: str | None = opt.DEVICE,
    trust_path: list[Path] = opt.TRUST_PATH,
):
    from .. import api

    scenes_per_call = opt.renamed(batch_size, "--batch-size", scenes_per_call, "--scenes-per-call")
    options = opt.run_options(
        checkpoint=checkpoint, cache=cache, executor=executor, ray_address=ray_address, num_gpus=num_gpus,
        actors=actors, scenes_per_call=scenes_per_call, num_frames=num_frames, sampling=sampling, dtype=dtype,
        vggt_weights=vggt_weights, threads=threads, device=device, trust_path=trust_path,
    )
    with job_progress("encoding", "scenes") as progress:
        summary = api.extract(scenes, options=options, questions=questions, progress=progress)
    s = summary
    console.print(summary_table("spacemind extract", [
        ("scenes", s.scenes), ("encoded", s.encoded), ("cached", s.cached), ("failed", s.failed),
        ("throughput", f"{s.scenes_per_s:.2f} scenes/s" if s.scenes_per_s else "-"), ("time", f"{s.elapsed_s:.1f} s"),
        ("cache", s.cache), ("errors", s.errors_file),
    ]))
    if s.failed or s.question_problems:
        err_console.print(f"[yellow]{s.failed} scene(s) failed; see {s.errors_file}[/]")
        raise typer.Exit(EXIT_PARTIAL)
