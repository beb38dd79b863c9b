"""`spacemind checkpoint tiny|inspect|assemble`."""

from __future__ import annotations

from pathlib import Path

import typer

from .common import handle_errors, not_built

app = typer.Typer(help="Make, assemble and inspect SpaceMind checkpoints.", no_args_is_help=True)


@app.command("tiny")
@handle_errors
def tiny(
    out_dir: Path = typer.Argument(..., help="Folder to write the checkpoint to."),
    seed: int = typer.Option(0, "--seed", help="Random seed for the weights."),
):
    """Write a complete tiny random-weight checkpoint (real architectures, tiny sizes) for tests and demos."""
    not_built("checkpoint tiny", "issue #3")


@app.command("inspect")
@handle_errors
def inspect(ckpt_dir: Path = typer.Argument(..., help="Checkpoint folder.")):
    """Show components, parameter counts, dtypes and missing weights."""
    not_built("checkpoint inspect", "issue #3")
