"""What the user asked a job for (`RunOptions`, built once by the CLI or a caller) and what every
worker of that job computes with (`JobSettings`, settled by the driver from the options and the
checkpoint's files; picklable: Ray ships it to every worker)."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

from ..defaults import DEFAULTS
from ..errors import InputError
from ..fingerprint import text_digest
from ..scenes import Sampling

DTYPES = ("auto", "bf16", "fp16", "fp32")
EXECUTORS = ("ray", "local")


@dataclass(frozen=True)
class RunOptions:
    """A job's options, as given. None is "not given": the run defaults (`defaults.DEFAULTS`) fill
    it in here; what depends on the checkpoint or the workers (frames, sampling, dtype "auto") is
    settled by `make_settings`."""

    checkpoint: str | os.PathLike
    cache: str | os.PathLike | None = None
    # what is computed
    num_frames: int | None = None  # default: the checkpoint's
    sampling: str | None = None  # paper | uniform | all; default: the checkpoint's
    dtype: str | None = None  # auto: bf16 with GPUs, fp32 without
    vggt_weights: str | None = None  # fp32: the reference's precision; half: opt-in, in `dtype`
    merge_lora: bool | None = None  # a LoRA adapter merged into the weights; default: only fp32 ones
    batch_size: int | None = None  # answer's decode batch: questions of one scene decoded together
    max_new_tokens: int | None = None
    trusted_paths: tuple[str, ...] = ()
    # how it runs
    executor: str | None = None  # ray | local
    ray_address: str | None = None
    num_gpus: int | None = None
    actors: int | None = None  # model workers on a CPU-only Ray cluster
    scenes_per_call: int | None = None  # scenes per model-actor call (Ray, multi-node: the Ray Data route)
    device: str | None = None  # cuda | cpu; default: cuda when the worker has one
    cpu_threads: int | None = None  # torch threads per CPU model worker; default: its own CPUs

    def __post_init__(self):
        object.__setattr__(self, "trusted_paths", tuple(str(p) for p in self.trusted_paths))
        for name, default in (("dtype", DEFAULTS.dtype), ("vggt_weights", DEFAULTS.vggt_weights),
                              ("batch_size", DEFAULTS.decode_batch), ("max_new_tokens", DEFAULTS.max_new_tokens),
                              ("executor", DEFAULTS.executor), ("scenes_per_call", DEFAULTS.scenes_per_call)):
            if getattr(self, name) is None:
                object.__setattr__(self, name, default)
        for flag, value in (("--batch-size", self.batch_size), ("--max-new-tokens", self.max_new_tokens),
                            ("--scenes-per-call", self.scenes_per_call)):
            if not isinstance(value, int) or value < 1:
                raise InputError(f"{flag} must be an integer >= 1, got {value!r}")
        if self.executor not in EXECUTORS:
            raise InputError(f"--executor must be one of {', '.join(EXECUTORS)}, got {self.executor!r}")
        if self.dtype not in DTYPES:
            raise InputError(f"--dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if self.executor == "local" and self.ray_address:
            raise InputError("--ray-address needs --executor ray")


@dataclass(frozen=True)
class JobSettings:
    checkpoint: str
    encoder_fingerprint: str
    checkpoint_id: str
    preprocess: dict  # PreprocessConfig.to_dict() of the checkpoint
    vggt_layers: tuple[int, ...]
    num_frames: int
    sampling: str
    dtype: str  # resolved: bf16 | fp16 | fp32 (the driver decides, so keys match)
    vggt_weights: str  # fp32: the reference's precision; half: VGGT weights in `dtype` (opt-in)
    batch_size: int  # answer's decode batch
    max_new_tokens: int
    has_vggt: bool = True  # False: a plain-InternVL checkpoint (fusion none, no VGGT); features are InternViT's
    device: str | None = None  # None: cuda when the worker has one, else cpu
    trusted_paths: tuple[str, ...] = ()
    cache: str | None = None
    # extract: read every cached entry whole (checksums) before counting it as done, so that a
    # damaged entry is re-encoded, not reported as cached; answering reads hits whole anyway.
    verify_cached: bool = False
    # the checkpoint's LoRA adapter merged into the weights (True) or beside them (False); None: no adapter
    merge_lora: bool | None = None
    # torch threads of a model worker on CPU; None: the worker's own CPU allotment (a Ray worker's
    # reserved CPUs, the local process's CPUs). CPU float results can depend on the thread count
    # (reduction order): runs that must agree bit for bit pin it.
    cpu_threads: int | None = None

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
                # merged into bf16 weights, an adapter answers otherwise (keys of runs without one unchanged)
                **({"merge_lora": self.merge_lora} if self.merge_lora is not None else {}),
            }
        )

    def to_dict(self) -> dict:
        return asdict(self)


def make_settings(options: RunOptions, *, use_gpu: bool = False, verify_cached: bool = False) -> JobSettings:
    """Settle `options` against the checkpoint's files (no model load) and the workers' devices."""
    from ..models.checkpoint import checkpoint_id, encoder_fingerprint, load_config
    from ..models.spacemind import VGGT_WEIGHTS, lora_merged
    from ..runtime import compute_dtype

    checkpoint = options.checkpoint
    config = load_config(checkpoint)
    dtype = options.dtype
    if dtype == "auto":
        dtype = "bf16" if use_gpu else "fp32"
    vggt_weights = options.vggt_weights
    if vggt_weights not in VGGT_WEIGHTS:
        raise InputError(f"--vggt-weights must be one of {', '.join(VGGT_WEIGHTS)}, got {vggt_weights!r}")
    if dtype == "fp32":
        vggt_weights = "fp32"  # "half" of fp32 is fp32: one key for one computation
    trusted = options.trusted_paths
    # RunOptions.__post_init__ filled in every run default
    assert dtype is not None and options.batch_size is not None and options.max_new_tokens is not None
    settings = JobSettings(
        checkpoint=str(os.path.abspath(checkpoint)),
        encoder_fingerprint=encoder_fingerprint(checkpoint, trusted),
        checkpoint_id=checkpoint_id(checkpoint, trusted),
        preprocess=config.preprocess.to_dict(),
        vggt_layers=tuple(config.vggt_layers),
        has_vggt=config.vggt is not None,
        num_frames=options.num_frames or config.num_frames,
        sampling=options.sampling or config.sampling,
        dtype=dtype,
        vggt_weights=vggt_weights,
        device=options.device,
        trusted_paths=trusted,
        cache=str(options.cache) if options.cache else None,
        verify_cached=verify_cached,
        batch_size=options.batch_size,
        max_new_tokens=options.max_new_tokens,
        cpu_threads=options.cpu_threads,
        merge_lora=lora_merged(compute_dtype("cpu", dtype), options.merge_lora) if config.lora else None,
    )
    _ = settings.frame_sampling  # validates
    return settings
