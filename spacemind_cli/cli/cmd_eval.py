"""`spacemind eval`: official benchmark scores."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .common import handle_errors, not_built

HELP = "Score an answers file (ours, or lmms-eval sample logs) with the official VSI-Bench / SQA3D / SPBench metrics."


@handle_errors
def eval_command(
    answers: Path = typer.Argument(..., help="Answers JSONL/Parquet from `spacemind answer`, or lmms-eval samples JSONL."),
    benchmark: str = typer.Option("auto", "--benchmark", help="auto | vsibench | sqa3d | spbench"),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the scores (official keys) as JSON."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Write a per-category bar chart PNG."),
):
    not_built("eval", "issue #6")
