"""Options that several commands share (answer, extract, train), declared once: the same flag,
the same help. Each command builds one `RunOptions` from them (`run_options`)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import typer

from ..defaults import DEFAULTS
from ..errors import InputError
from ..jobs.settings import RunOptions

log = logging.getLogger(__name__)

SCENES = typer.Argument(..., metavar="SCENES", help="Scenes root: ROOT/<scene>.mp4, ROOT/<scene>/ (frames) or ROOT/<dataset>/<scene>.")
CHECKPOINT = typer.Option(..., "--checkpoint", "-c", help="SpaceMind checkpoint folder (see `spacemind checkpoint`).")
NUM_FRAMES = typer.Option(None, "--num-frames", "-n", min=1, help=f"Frames per scene (default: the checkpoint's, {DEFAULTS.num_frames}).")
SAMPLING = typer.Option(None, "--sampling", help="paper (N+2 uniform, ends dropped) | uniform | all.")
EXECUTOR = typer.Option(None, "--executor", show_default=DEFAULTS.executor, help="ray: embedded local Ray, or the cluster at --ray-address. local: in-process, no Ray.")
RAY_ADDRESS = typer.Option(None, "--ray-address", help="Join this Ray cluster (e.g. 10.0.0.1:6379, or 'auto').")
NUM_GPUS = typer.Option(None, "--num-gpus", help="GPUs to use, one model worker each (default: all in the cluster).")
ACTORS = typer.Option(None, "--actors", help="Model workers on a CPU-only Ray cluster (default 1).")
DTYPE = typer.Option(None, "--dtype", show_default=DEFAULTS.dtype, help="auto (bf16 on GPU, fp32 on CPU) | bf16 | fp16 | fp32.")
VGGT_WEIGHTS = typer.Option(
    None, "--vggt-weights", show_default=DEFAULTS.vggt_weights,
    help="fp32: VGGT at the reference's precision (fp32 weights under bf16 autocast, camera head in fp32). "
    "half: VGGT weights in --dtype, 2.1 GiB less memory for VGGT-1B, features deviate slightly (a separate cache key).",
)
MERGE_LORA = typer.Option(
    None, "--merge-lora/--no-merge-lora",
    help="A trained checkpoint's LoRA adapter merged into the weights (the base's speed) or kept beside them. "
    "Default: merged only in fp32; in bf16 merging rounds the adapter away (bench/results/lora_answer.md).",
)
THREADS = typer.Option(
    None, "--threads", min=1,
    help="torch threads per model worker on CPU (default: the worker's own CPUs; a Ray worker's reserved share). "
    "Pin it when two runs must agree bit for bit.",
)
DEVICE = typer.Option(None, "--device", help="cuda | cpu (local executor; default: cuda when available).")
TRUST_PATH = typer.Option([], "--trust-path", help="Allow the checkpoint to reference weights at this path.")


def run_options(*, checkpoint: Path, trust_path: Sequence[Path] = (), threads: int | None = None, **fields) -> RunOptions:
    """The command's RunOptions: its flags under their RunOptions names."""
    return RunOptions(checkpoint=checkpoint, trusted_paths=tuple(str(p) for p in trust_path), cpu_threads=threads,
                      **fields)


def renamed(old_value, old_flag: str, new_value, new_flag: str):
    """The value of an option given under its deprecated name or its new one (not both)."""
    if old_value is None:
        return new_value
    if new_value is not None:
        raise InputError(f"{old_flag} is the old name of {new_flag}; give only {new_flag}")
    log.warning("%s is deprecated; use %s", old_flag, new_flag)
    return old_value
