"""Every run default, written once. `RunOptions` (jobs/settings.py) fills what a caller left unset
from here, the CLI shows these values in `--help`, and the model's own functions (a checkpoint's
frame count, `SpaceMind.answer`) default to them too, which is why they live below both `jobs/`
and `models/`. Training's defaults are `training.config.TrainConfig`'s fields."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Defaults:
    num_frames: int = 32  # frames per scene (the paper's); a checkpoint's config may set its own
    sampling: str = "paper"  # N+2 uniform, ends dropped (the paper's); uniform | all
    decode_batch: int = 8  # questions of one scene decoded together (`answer --batch-size`)
    max_new_tokens: int = 16  # generated tokens per answer (VSI-Bench's)
    dtype: str = "auto"  # bf16 with GPUs, fp32 without
    vggt_weights: str = "fp32"  # the reference's precision; half: opt-in
    executor: str = "ray"
    scenes_per_call: int = 1  # scenes per model-actor call on a multi-node Ray cluster (`extract`)


DEFAULTS = Defaults()
