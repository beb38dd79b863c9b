"""SpaceMind set up for training: the frozen model of a base checkpoint with its trainable parts
switched on, as one module whose forward is a packed scene's loss.

    trainable     CGMF (fully), LoRA on the LLM's linear layers (PEFT), the projector on request
    frozen        everything else; the encoders are not even run (features come from the cache)
    master weights fp32; on GPU the forward runs under bf16 autocast (the paper trains in bf16)
"""

from __future__ import annotations

import logging
import warnings

import torch
from torch import nn

from ..errors import CheckpointError
from ..models.cgmf import CGMF, CGMFConfig
from .config import CGMF_PARTS, LORA_TARGETS, TrainConfig

log = logging.getLogger(__name__)

# Module paths LoRA adapts, in transformers 5.x InternVLForConditionalGeneration names: the LLM's
# attention and MLP projections, never the vision tower (its features are cached) or lm_head.
LORA_MODULES = rf"model\.language_model\.layers\.\d+\.(self_attn|mlp)\.({'|'.join(LORA_TARGETS)})"
PROJECTOR = "model.multi_modal_projector"


def fusion_for(base, cfg: TrainConfig) -> CGMF | None:
    """The CGMF a run trains: the base checkpoint's when the architecture is unchanged, else a
    fresh one (an ablation switches parts off, so the base weights no longer fit); None for
    fusion "none"."""
    if cfg.fusion == "none":
        return None
    if not base.has_vggt:
        raise CheckpointError("the base checkpoint has no VGGT (assembled with --fusion none and no --vggt); "
                              "train it with --fusion none, or assemble one with --vggt for a CGMF")
    base_cfg = base.config.cgmf
    wanted = CGMFConfig.from_dict({**base_cfg.to_dict(), **cfg.cgmf, **{p: p not in cfg.cgmf_off for p in CGMF_PARTS}})
    if base.fusion is not None and wanted == base_cfg:
        return base.fusion
    log.info("training a fresh CGMF (%s)", "parts off: " + ", ".join(cfg.cgmf_off) if cfg.cgmf_off else "new sizes")
    # residual_zero: the new CGMF starts as the identity, so step 0 is the base model's behaviour
    fresh = CGMF(CGMFConfig.from_dict({**wanted.to_dict(), "init": "residual_zero"}))
    return fresh.to(device=base.device, dtype=base.dtype)


class TrainableSpaceMind(nn.Module):
    def __init__(self, sm, cfg: TrainConfig):
        super().__init__()
        from peft import LoraConfig, get_peft_model

        self.sm = sm
        self.cfg = cfg
        sm.requires_grad_(False)
        sm.fusion = fusion_for(sm, cfg)
        if sm.fusion is not None and "cgmf" in cfg.train:
            sm.fusion.requires_grad_(True)
        # The PeftModel is kept for its config and `unload`, never as a submodule: its parameters
        # are sm.internvl's, and registering it would list every LoRA tensor twice in the state
        # dict (FSDP would gather and save each twice).
        object.__setattr__(self, "peft", None)
        if "lora" in cfg.train:
            lora = LoraConfig(r=cfg.lora_rank, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                              target_modules=LORA_MODULES, bias="none")
            # Injects LoRA layers into sm.internvl in place: SpaceMind's own paths use them.
            with warnings.catch_warnings():  # PEFT asks transformers a deprecated question
                warnings.simplefilter("ignore", FutureWarning)
                object.__setattr__(self, "peft", get_peft_model(sm.internvl, lora))
        if "projector" in cfg.train:
            sm.internvl.get_submodule(PROJECTOR).requires_grad_(True)
        if cfg.gradient_checkpointing:
            lm = sm.internvl.model.language_model
            # transformers 5.2x renamed it; 5.17 has only the old name
            enable = getattr(lm, "activation_checkpointing_enable", None) or lm.gradient_checkpointing_enable
            enable()
        self.train()

    def train(self, mode: bool = True):
        # The encoders stay in eval. The LLM follows `mode`: transformers checkpoints activations
        # only in train mode, and LoRA's dropout acts only then (Qwen2 itself has no dropout,
        # attention_dropout 0.0, so its maths is the same in both modes).
        self.sm.eval()
        self.sm.internvl.model.language_model.train(mode)
        if self.sm.fusion is not None:
            self.sm.fusion.train(mode and "cgmf" in self.cfg.train)
        return self

    def trainable(self) -> dict[str, nn.Parameter]:
        """The parameters the optimizer updates, by stable name."""
        return {n: p for n, p in self.sm.named_parameters() if p.requires_grad}

    def forward(self, encoded, segments: list) -> tuple[torch.Tensor, int]:
        """(sum of target-token cross-entropies, target tokens) of one packed scene's questions
        (`SpaceMind.segment`s)."""
        return self.sm.segments_loss_sum(encoded, segments, packed=True)

    def trainable_state(self) -> dict[str, torch.Tensor]:
        return {n: p.detach().float().cpu().contiguous() for n, p in self.trainable().items()}

    def load_trainable_state(self, state: dict[str, torch.Tensor]) -> None:
        params = self.trainable()
        missing, extra = sorted(set(params) - set(state)), sorted(set(state) - set(params))
        if missing or extra:
            raise ValueError(f"training state does not fit this model: missing {missing[:3]}, unexpected {extra[:3]}")
        with torch.no_grad():
            for n, p in params.items():
                p.copy_(state[n].to(device=p.device, dtype=p.dtype))
