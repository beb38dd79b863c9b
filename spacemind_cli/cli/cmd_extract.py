"""`spacemind extract`: encoder features into a content-addressed Parquet cache."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .common import handle_errors, not_built

HELP = (
    "Encode scenes once with the frozen encoders (VGGT + InternViT) into a feature cache that "
    "[cyan]answer[/] reuses. An identical run skips scenes already cached."
)


@handle_errors
def extract(
    scenes: Path = typer.Argument(..., help="Scenes root: ROOT/<scene>.mp4, ROOT/<scene>/ or ROOT/<dataset>/<scene>."),
    checkpoint: Path = typer.Option(..., "--checkpoint", "-c", help="SpaceMind checkpoint folder."),
    cache: Path = typer.Option(..., "--cache", help="Feature cache folder (created if missing)."),
    questions: Optional[Path] = typer.Option(None, "--questions", help="Only the scenes this question file uses."),
    num_frames: Optional[int] = typer.Option(None, "--num-frames", "-n", help="Frames per scene (default: the checkpoint's, 32)."),
    sampling: Optional[str] = typer.Option(None, "--sampling", help="paper | uniform | all (default: the checkpoint's)."),
    executor: str = typer.Option("ray", "--executor", help="ray (embedded local Ray, or --ray-address) | local (in-process, no Ray)."),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", help="Join this Ray cluster instead of an embedded one."),
    num_gpus: Optional[int] = typer.Option(None, "--num-gpus", help="Encoder actors (one GPU each); default: every GPU, or 1 actor on CPU."),
    batch_size: int = typer.Option(1, "--batch-size", help="Scenes per encoder call."),
    device: Optional[str] = typer.Option(None, "--device", help="cuda | cpu (default: cuda when available)."),
):
    not_built("extract", "issue #4")
