"""`spacemind extract`: encoder features into a content-addressed Parquet cache."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table

from ..errors import EXIT_PARTIAL
from .common import console, err_console, handle_errors
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
    scenes: Path = typer.Argument(..., help="Scenes root: ROOT/<scene>.mp4, ROOT/<scene>/ or ROOT/<dataset>/<scene>."),
    checkpoint: Path = typer.Option(..., "--checkpoint", "-c", help="SpaceMind checkpoint folder."),
    cache: Path = typer.Option(..., "--cache", help="Feature cache folder (created if missing)."),
    questions: Optional[Path] = typer.Option(None, "--questions", help="Only the scenes this question file uses."),
    num_frames: Optional[int] = typer.Option(None, "--num-frames", "-n", min=1, help="Frames per scene (default: the checkpoint's, 32)."),
    sampling: Optional[str] = typer.Option(None, "--sampling", help="paper (N+2 uniform, ends dropped) | uniform | all."),
    executor: str = typer.Option("ray", "--executor", help="ray: embedded local Ray, or the cluster at --ray-address. local: in-process, no Ray."),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", help="Join this Ray cluster (e.g. 10.0.0.1:6379, or 'auto')."),
    num_gpus: Optional[int] = typer.Option(None, "--num-gpus", help="GPUs to use, one encoder actor each (default: all in the cluster)."),
    actors: Optional[int] = typer.Option(None, "--actors", help="Encoder actors on a CPU-only cluster (default 1)."),
    batch_size: int = typer.Option(1, "--batch-size", min=1, help="Scenes handed to an encoder actor per call under Ray (fewer round trips; each scene is still encoded on its own, so features never depend on it)."),
    dtype: str = typer.Option("auto", "--dtype", help="auto (bf16 on GPU, fp32 on CPU) | bf16 | fp16 | fp32."),
    threads: Optional[int] = typer.Option(
        None, "--threads", min=1,
        help="torch threads per model worker on CPU (default: the worker's own CPUs; a Ray actor's reserved share). "
        "Pin it when two runs must agree bit for bit.",
    ),
    vggt_weights: str = typer.Option(
        "fp32", "--vggt-weights",
        help="fp32: VGGT at the reference's precision (fp32 weights under bf16 autocast, camera head in fp32). "
        "half: VGGT weights in --dtype, 2.1 GiB less memory for VGGT-1B, features deviate slightly (a separate cache key).",
    ),
    device: Optional[str] = typer.Option(None, "--device", help="cuda | cpu (local executor; default: cuda when available)."),
    trust_path: List[Path] = typer.Option([], "--trust-path", help="Allow the checkpoint to reference weights at this path."),
):
    from pipelines.extract import run

    with job_progress("encoding", "scenes") as progress:
        summary = run(
            scenes,
            checkpoint=checkpoint,
            cache=cache,
            questions=str(questions) if questions else None,
            executor=executor,
            ray_address=ray_address,
            num_gpus=num_gpus,
            actors=actors,
            batch_size=batch_size,
            num_frames=num_frames,
            sampling=sampling,
            dtype=dtype,
            vggt_weights=vggt_weights,
            cpu_threads=threads,
            device=device,
            trusted_paths=tuple(str(p) for p in trust_path),
            progress=progress,
        )
    table = Table(title="spacemind extract", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    for key in ("scenes", "encoded", "cached", "failed"):
        table.add_row(key, str(summary[key]))
    rate = summary.get("scenes_per_s")
    table.add_row("throughput", f"{rate:.2f} scenes/s" if rate else "-")
    table.add_row("time", f"{summary['elapsed_s']:.1f} s")
    table.add_row("cache", summary["cache"])
    if summary.get("errors_file"):
        table.add_row("errors", summary["errors_file"])
    console.print(table)
    if summary["failed"] or summary["question_problems"]:
        err_console.print(f"[yellow]{summary['failed']} scene(s) failed; see {summary['errors_file']}[/]")
        raise typer.Exit(EXIT_PARTIAL)
