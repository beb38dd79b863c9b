"""A training run's hyperparameters: the paper's recipe by default (SpaceMind, arXiv 2511.23075:
CGMF trained fully + LoRA r256 / alpha 512 on the LLM, LR 2e-5, warm-up 0.03, cosine, global batch
64 questions, 2 epochs, bf16 on GPU, 32 frames, encoders frozen). Saved as
NEW_CKPT/training/config.json; a rerun with equal settings resumes, other settings are refused."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ..defaults import DEFAULTS
from ..errors import InputError
from ..models.config_dict import config_from_dict

TRAINABLE = ("cgmf", "lora", "projector")
CGMF_PARTS = ("camera_bias", "importance", "camera_memory", "camera_gate")
# The LLM's linear layers LoRA adapts (Qwen2: attention and MLP projections; never lm_head).
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 2
    max_steps: int | None = None  # stop after this many optimizer steps (within the epochs)
    lr: float = 2e-5
    warmup_ratio: float = 0.03
    schedule: str = "cosine"  # cosine | constant (after the warm-up)
    batch_size: int = 64  # global, in questions, as in the paper
    # most questions of one scene in one packed sequence, drawn at random: 4 makes a 64-question step
    # span >= 16 scenes while the prefix still runs once per 4 questions (bench/results/packing.md)
    questions_per_pack: int = 4
    train: tuple[str, ...] = ("cgmf", "lora")
    lora_rank: int = 256
    lora_alpha: int = 512
    lora_dropout: float = 0.0
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    adam_betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = 1e-8
    seed: int = 0
    save_every: int = 500  # steps between saved training states (and always at the end)
    eval_every: int = 0  # steps between evaluations on --eval-questions (0: at the end only)
    eval_batch_size: int = DEFAULTS.decode_batch  # eval questions of one scene decoded together
    # in the LLM; None: "auto", decided by the run's memory estimate (training/memory.py): on for the
    # 8B model on one 80 GB GPU, off on CPU and for small models
    gradient_checkpointing: bool | None = None
    fsdp: bool = False  # shard the model over the Ray Train workers (FSDP2) when one GPU's memory is short
    # CGMF ablations (the paper's Table 4): parts switched off, or no fusion at all (LoRA only)
    fusion: str = "cgmf"  # cgmf | none
    cgmf_off: tuple[str, ...] = ()  # of CGMF_PARTS
    cgmf: dict = field(default_factory=dict)  # other CGMF sizes (d_a, num_heads, hidden) for a fresh CGMF

    def __post_init__(self):
        object.__setattr__(self, "train", tuple(self.train))
        object.__setattr__(self, "cgmf_off", tuple(self.cgmf_off))
        object.__setattr__(self, "adam_betas", tuple(self.adam_betas))
        bad = [t for t in self.train if t not in TRAINABLE]
        if bad or not self.train:
            raise InputError(f"--train takes a comma list of {', '.join(TRAINABLE)}, got {','.join(self.train) or 'nothing'}")
        if self.fusion not in ("cgmf", "none"):
            raise InputError(f"--fusion must be cgmf or none, got {self.fusion!r}")
        if self.fusion == "none" and "cgmf" in self.train:
            raise InputError("--fusion none has no CGMF to train: use --train lora (and projector)")
        bad = [p for p in self.cgmf_off if p not in CGMF_PARTS]
        if bad:
            raise InputError(f"--cgmf-off takes a comma list of {', '.join(CGMF_PARTS)}, got {','.join(bad)}")
        for name, value, low in (("--epochs", self.epochs, 1), ("--batch-size", self.batch_size, 1),
                                 ("--questions-per-pack", self.questions_per_pack, 1), ("--lora-rank", self.lora_rank, 1),
                                 ("--save-every", self.save_every, 1), ("--eval-batch-size", self.eval_batch_size, 1)):
            if not isinstance(value, int) or value < low:
                raise InputError(f"{name} must be an integer >= {low}, got {value!r}")
        if self.max_steps is not None and self.max_steps < 1:
            raise InputError(f"--max-steps must be >= 1, got {self.max_steps}")
        if not 0 <= self.warmup_ratio < 1:
            raise InputError(f"--warmup-ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.lr <= 0:
            raise InputError(f"--lr must be positive, got {self.lr}")
        if self.schedule not in ("cosine", "constant"):
            raise InputError(f"--schedule must be cosine or constant, got {self.schedule!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        try:
            return config_from_dict(cls, d, where="training config")
        except ValueError as exc:
            raise InputError(str(exc)) from None


@dataclass(frozen=True)
class TrainSettings:
    """What a training worker computes with besides the hyperparameters: settled by the train job
    from its JobSettings (training never imports `jobs/`); picklable, Ray Train ships it."""

    cache: str  # the feature cache, absolute
    encoder_fingerprint: str  # of the base checkpoint's encoders: the cached features' key part
    dtype: str  # resolved: bf16 | fp16 | fp32
    num_frames: int  # the frames the features were made from: the new checkpoint's default
    sampling: str
    max_new_tokens: int  # answers to the eval questions
    device: str | None = None  # None: cuda when the worker has one
    cpu_threads: int | None = None  # torch threads on CPU; None: the worker's own CPUs
    trusted_paths: tuple[str, ...] = ()
    has_vggt: bool = True  # False: a plain-InternVL base (fusion none): its features are InternViT's alone
