"""`spacemind answer`: a question file over a folder of scenes."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .common import handle_errors, not_built

HELP = (
    "Answer a question file (JSONL/JSON/Parquet, VSI-Bench schema) over a scenes root. Each scene is "
    "encoded once, its visual prefix prefilled once and shared by all its questions. Resumable: rerun "
    "the same command to finish an interrupted job."
)


@handle_errors
def answer(
    scenes: Path = typer.Argument(..., help="Scenes root: ROOT/<scene>.mp4, ROOT/<scene>/ or ROOT/<dataset>/<scene>."),
    questions: Optional[Path] = typer.Option(None, "--questions", help="Question file (.jsonl, .json, .parquet)."),
    template: Optional[Path] = typer.Option(None, "--template", help="Template questions asked of every scene (annotation job)."),
    checkpoint: Path = typer.Option(..., "--checkpoint", "-c", help="SpaceMind checkpoint folder."),
    output: Path = typer.Option(..., "--output", "-o", help="Answers: OUT.jsonl, OUT.parquet, or a folder for --template."),
    cache: Optional[Path] = typer.Option(None, "--cache", help="Feature cache to read from and fill."),
    executor: str = typer.Option("ray", "--executor", help="ray (embedded local Ray, or --ray-address) | local (in-process, no Ray)."),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", help="Join this Ray cluster instead of an embedded one."),
    num_gpus: Optional[int] = typer.Option(None, "--num-gpus", help="Model actors (one GPU each); default: every GPU, or 1 actor on CPU."),
    batch_size: int = typer.Option(8, "--batch-size", "-b", help="Questions decoded together per scene."),
    max_new_tokens: int = typer.Option(16, "--max-new-tokens", help="Generated tokens per answer (VSI-Bench uses 16)."),
    num_frames: Optional[int] = typer.Option(None, "--num-frames", "-n", help="Frames per scene (default: the checkpoint's, 32)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Start over instead of resuming."),
):
    not_built("answer", "issue #5")
