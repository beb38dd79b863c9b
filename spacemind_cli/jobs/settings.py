"""Settings a job hands to its stages (picklable: Ray ships them to every worker)."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, replace

from ..errors import InputError
from ..fingerprint import text_digest
from ..scenes import Sampling

DTYPES = ("auto", "bf16", "fp16", "fp32")


@dataclass(frozen=True)
class JobSettings:
    checkpoint: str
    encoder_fingerprint: str
    checkpoint_id: str
    preprocess: dict  # PreprocessConfig.to_dict() of the checkpoint
    vggt_layers: tuple[int, ...]
    num_frames: int = 32
    sampling: str = "paper"
    dtype: str = "fp32"  # resolved: bf16 | fp16 | fp32 (the driver decides, so keys match)
    vggt_weights: str = "fp32"  # fp32: the reference's precision; half: VGGT weights in `dtype` (opt-in)
    device: str | None = None  # None: cuda when the worker has one, else cpu
    trusted_paths: tuple[str, ...] = ()
    cache: str | None = None
    write_cache: bool = True
    # extract: read every cached entry whole (checksums) before counting it as done, so that a
    # damaged entry is re-encoded, not reported as cached; answering reads hits whole anyway.
    verify_cached: bool = False
    batch_size: int = 8
    max_new_tokens: int = 16
    max_questions_per_item: int = 64
    # torch threads of a model worker on CPU; None: the worker's own CPU allotment (a Ray actor's
    # reserved CPUs, the local process's CPUs). CPU float results can depend on the thread count
    # (reduction order): runs that must agree bit for bit pin it.
    cpu_threads: int | None = None
    extra: dict = field(default_factory=dict)

    @property
    def frame_sampling(self) -> Sampling:
        return Sampling(self.num_frames, self.sampling)

    def feature_key(self, scene_digest: str) -> str:
        """The cache key of a scene's encoder features: everything that shapes them."""
        return text_digest(
            {
                "scene": scene_digest,
                "sampling": self.frame_sampling.to_dict(),
                "preprocess": self.preprocess,
                "encoders": self.encoder_fingerprint,
                "dtype": self.dtype,
                "vggt_weights": self.vggt_weights,
                "layers": list(self.vggt_layers),
            }
        )

    def run_key(self) -> str:
        """Answers made under equal run keys are interchangeable (resume reuses them)."""
        return text_digest(
            {
                "checkpoint": self.checkpoint_id,
                "sampling": self.frame_sampling.to_dict(),
                "dtype": self.dtype,
                "vggt_weights": self.vggt_weights,
                "max_new_tokens": self.max_new_tokens,
            }
        )

    def to_dict(self) -> dict:
        return asdict(self)


def make_settings(
    checkpoint: str | os.PathLike,
    *,
    num_frames: int | None = None,
    sampling: str | None = None,
    dtype: str = "auto",
    vggt_weights: str = "fp32",
    use_gpu: bool = False,
    trusted_paths=(),
    **kwargs,
) -> JobSettings:
    """Read what the job needs from the checkpoint's files (no model load)."""
    from ..models.spacemind import VGGT_WEIGHTS, checkpoint_id, encoder_fingerprint, load_config

    config = load_config(checkpoint)
    if dtype not in DTYPES:
        raise InputError(f"--dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if dtype == "auto":
        dtype = "bf16" if use_gpu else "fp32"
    if vggt_weights not in VGGT_WEIGHTS:
        raise InputError(f"--vggt-weights must be one of {', '.join(VGGT_WEIGHTS)}, got {vggt_weights!r}")
    if dtype == "fp32":
        vggt_weights = "fp32"  # "half" of fp32 is fp32: one key for one computation
    trusted = tuple(str(p) for p in trusted_paths)
    settings = JobSettings(
        checkpoint=str(os.path.abspath(checkpoint)),
        encoder_fingerprint=encoder_fingerprint(checkpoint, trusted),
        checkpoint_id=checkpoint_id(checkpoint, trusted),
        preprocess=config.preprocess.to_dict(),
        vggt_layers=tuple(config.vggt_layers),
        num_frames=num_frames or config.num_frames,
        sampling=sampling or config.sampling,
        dtype=dtype,
        vggt_weights=vggt_weights,
        trusted_paths=trusted,
        **kwargs,
    )
    settings.frame_sampling  # validates
    return settings


def with_updates(settings: JobSettings, **changes) -> JobSettings:
    return replace(settings, **changes)
