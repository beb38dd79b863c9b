"""A training run's resumable state, one folder per saved step, written whole or not at all:

    NEW_CKPT/training/state/step-00000120/
        trainable.safetensors   the trained parameters (CGMF, LoRA, projector) in fp32, by name
        optimizer.pt            AdamW's state (tensors and numbers only: read with weights_only=True)
        state.json              step, epoch, scheduler state, the config digest it belongs to

A folder is staged under a dot-name and renamed into place, so a kill -9 leaves either the whole
step or nothing; the newest complete step is where a rerun continues. Older steps beyond
`keep` are removed after a newer one lands.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import resource_error
from ..fingerprint import text_digest

PREFIX = "step-"


@dataclass
class SavedState:
    step: int  # optimizer steps done
    path: Path
    meta: dict


def step_dir(root: Path, step: int) -> Path:
    return root / f"{PREFIX}{step:08d}"


def save_state(root: Path, step: int, trainable: dict[str, torch.Tensor], optimizer_state: dict, meta: dict,
               keep: int = 2) -> Path:
    from safetensors.torch import save_file

    final = step_dir(root, step)
    staging = root / f".{final.name}.{uuid.uuid4().hex}"
    try:
        staging.mkdir(parents=True)
        save_file(trainable, str(staging / "trainable.safetensors"))
        torch.save(optimizer_state, staging / "optimizer.pt")
        (staging / "state.json").write_text(json.dumps({**meta, "step": step}, indent=2) + "\n")
        for f in staging.iterdir():
            fd = os.open(f, os.O_RDONLY)
            os.fsync(fd)
            os.close(fd)
        if final.exists():  # the same step saved again (a rerun that re-exports): replace it
            shutil.rmtree(final)
        os.replace(staging, final)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise resource_error(exc, final) from exc
    for old in saved_steps(root)[:-keep]:
        shutil.rmtree(old.path, ignore_errors=True)
    return final


def read_saved(path: Path) -> SavedState | None:
    """The state saved in folder `path`, or None when it is incomplete or unreadable."""
    try:
        meta = json.loads((path / "state.json").read_text())
        step = int(meta["step"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if (path / "trainable.safetensors").is_file() and (path / "optimizer.pt").is_file():
        return SavedState(step, path, meta)
    return None


def saved_steps(root: Path) -> list[SavedState]:
    """Complete saved steps, oldest first (staging folders of a killed writer are not listed)."""
    if not root.is_dir():
        return []
    found = [read_saved(p) for p in root.iterdir() if p.name.startswith(PREFIX) and p.is_dir()]
    return sorted((s for s in found if s is not None), key=lambda s: s.step)


def examples_digest(rows: list[dict]) -> str:
    """What a saved state records of the examples it was trained on (their step plan)."""
    return text_digest(json.dumps(rows, sort_keys=True, ensure_ascii=False))


def resume_refusal(saved: SavedState | None, digest: str) -> str | None:
    """Why `saved` cannot be resumed on examples of digest `digest`, or None when it can."""
    if saved is None or saved.meta.get("examples") == digest:
        return None
    return (f"the training examples differ from those of the state saved at step {saved.step} ({saved.path}): "
            "the data changed, or a scene that failed before has features now; rerun with --overwrite to start over")


def latest_state(root: Path) -> SavedState | None:
    steps = saved_steps(root)
    return steps[-1] if steps else None


def load_state(saved: SavedState, device) -> tuple[dict[str, torch.Tensor], dict]:
    from ..weights import load_weights

    trainable = load_weights(saved.path / "trainable.safetensors")
    optimizer_state = torch.load(saved.path / "optimizer.pt", map_location=device, weights_only=True)
    return trainable, optimizer_state


def remove_staging(root: Path) -> None:
    """Staging folders left by a writer that was killed mid-save."""
    if root.is_dir():
        for p in root.iterdir():
            if p.name.startswith(f".{PREFIX}"):
                shutil.rmtree(p, ignore_errors=True)
