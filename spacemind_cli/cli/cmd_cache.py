"""`spacemind cache ls|info|verify|prune`."""

from __future__ import annotations

from pathlib import Path

import typer

from .common import handle_errors, not_built

app = typer.Typer(help="Inspect, verify and prune a feature cache.", no_args_is_help=True)


@app.command("ls")
@handle_errors
def ls(cache: Path = typer.Argument(..., help="Feature cache folder.")):
    """List entries: scene, frames, size, fingerprint."""
    not_built("cache ls", "issue #4")


@app.command("info")
@handle_errors
def info(cache: Path = typer.Argument(..., help="Feature cache folder.")):
    """Totals: entries, bytes, fingerprints."""
    not_built("cache info", "issue #4")


@app.command("verify")
@handle_errors
def verify(cache: Path = typer.Argument(..., help="Feature cache folder.")):
    """Check every entry's checksums and schema; exit 4 naming bad entries."""
    not_built("cache verify", "issue #4")


@app.command("prune")
@handle_errors
def prune(cache: Path = typer.Argument(..., help="Feature cache folder.")):
    """Delete entries by age or fingerprint, or those that fail verification."""
    not_built("cache prune", "issue #4")
