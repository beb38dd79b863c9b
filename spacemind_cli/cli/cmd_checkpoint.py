"""`spacemind checkpoint tiny|assemble|inspect`."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from ..defaults import DEFAULTS
from ..errors import EXIT_CHECKPOINT, InputError
from .common import console, fail, handle_errors, summary_table

app = typer.Typer(
    help=(
        "Make, assemble and inspect SpaceMind checkpoints. A checkpoint is one folder: config.json, "
        "fusion.safetensors (CGMF), internvl/ (HF-format InternVL3), vggt/ (VGGT-1B), optional lora/."
    ),
    no_args_is_help=True,
)


@app.command("tiny")
@handle_errors
def tiny(
    out_dir: Path = typer.Argument(..., metavar="OUT_DIR", help="Folder to write the checkpoint to."),
    seed: int = typer.Option(0, "--seed", help="Random seed for the weights."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing checkpoint folder."),
):
    """Write a complete tiny random-weight checkpoint (real architectures at toy sizes): runs the
    whole pipeline on a CPU in seconds. Answers are noise; use it for tests and demos."""
    from ..models.tiny import write_tiny_checkpoint

    if out_dir.exists() and not out_dir.is_dir():  # --force too: it replaces a checkpoint, not a file
        raise InputError(f"{out_dir} exists and is not a folder")
    if (out_dir / "config.json").exists() and not force:
        raise InputError(f"{out_dir} already holds a checkpoint; pass --force to overwrite it")
    write_tiny_checkpoint(out_dir, seed=seed)
    console.print(f"tiny checkpoint written to {out_dir}")


@app.command("assemble")
@handle_errors
def assemble(
    out_dir: Path = typer.Argument(..., metavar="OUT_DIR", help="Folder to write the checkpoint to."),
    base: Path = typer.Option(..., "--base", help="InternVL folder: transformers' layout (e.g. InternVL3-8B-hf) or InternVL's original layout (e.g. InternVL3-8B, most fine-tunes; converted, no remote code run)."),
    vggt: Path | None = typer.Option(None, "--vggt", help="VGGT-1B folder (config.json + model.safetensors or model.pt) or weight file; not needed with --fusion none."),
    fusion_weights: Path | None = typer.Option(None, "--fusion-weights", help="Trained CGMF weights (safetensors); default: a fresh CGMF that leaves InternVL's tokens unchanged."),
    lora: Path | None = typer.Option(None, "--lora", help="PEFT LoRA adapter folder for the LLM."),
    fusion: str = typer.Option("cgmf", "--fusion", help="cgmf | none (plain InternVL baseline)."),
    num_frames: int = typer.Option(DEFAULTS.num_frames, "--num-frames", help="Default frames per scene."),
):
    """Build a checkpoint from an InternVL folder and a VGGT-1B folder (weights hard-linked when possible;
    an original-layout InternVL folder is converted to transformers' layout)."""
    from ..models.assemble import assemble as do_assemble

    path = do_assemble(
        out_dir, base=base, vggt=vggt, fusion_weights=fusion_weights, lora=lora, fusion=fusion, num_frames=num_frames
    )
    console.print(f"checkpoint assembled in {path}")


@app.command("inspect")
@handle_errors
def inspect(ckpt_dir: Path = typer.Argument(..., metavar="CKPT", help="Checkpoint folder.")):
    """Show components, parameter counts, dtypes, settings, fingerprints and missing weights (no weights loaded)."""
    from ..models.inspect import inspect as do_inspect

    report = do_inspect(ckpt_dir)
    table = Table(title=f"checkpoint {ckpt_dir}")
    for col in ("component", "parameters", "dtypes", "source"):
        table.add_column(col)
    for comp in report.get("components", []):
        table.add_row(comp["name"], f"{comp.get('parameters', 0):,}", ", ".join(comp.get("dtypes", [])), str(comp.get("source", "")))
    console.print(table)
    console.print(summary_table("settings", [(k, str(v)) for k, v in [*report.get("config", {}).items(),
                                                                       *report.get("fingerprints", {}).items()]]))
    for missing in report.get("missing", []):
        console.print(f"[yellow]missing:[/] {missing}")
    if not report["complete"]:  # scripts use inspect as a check
        fail(f"checkpoint {ckpt_dir} is incomplete or broken (see above)", EXIT_CHECKPOINT)
