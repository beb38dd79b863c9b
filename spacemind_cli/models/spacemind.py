"""SpaceMind: VGGT (geometry) + InternViT (appearance) -> CGMF -> InternVL's LLM.

    frames ─┬─ InternViT (one tile/frame) ─ pixel shuffle ─ projector ─ f_v [S, n, d_v]
            └─ VGGT aggregator (all frames jointly) ─ layer(s) ─┬─ f_c camera token [S, 1, d_s]
                                                                └─ f_s patch tokens  [S, M, d_s]
    CGMF(f_v, f_s, f_c) ─ f_fused [S, n, d_v] ─ at the <IMG_CONTEXT> positions ─ LLM ─ answer

The frozen encoders' outputs (`EncoderOutputs`) are what the feature cache stores; everything
after them (projector, CGMF, LLM) runs per answer job. A scene is encoded and fused once and its
visual prefix prefilled once; every question about it reuses that prefix.

The checkpoint folder's layout, config and fingerprints: `checkpoint.py`.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..defaults import DEFAULTS
from ..errors import CheckpointError
from ..runtime import autocast
from . import generation, internvl, packing
from .cgmf import CGMF
from .checkpoint import SpaceMindConfig, checkpoint_id, encoder_fingerprint, read_json, resolve_component, versions
from .preprocess import PreparedClip, vggt_tensor, vit_tensor

log = logging.getLogger(__name__)

VGGT_WEIGHTS = ("fp32", "half")  # see SpaceMind.from_pretrained


def prefix_text(prompt, tokens_per_frame: int, num_frames: int) -> str:
    """The visual prefix of a scene's user turn (`prompt`: the checkpoint's PromptConfig)."""
    block = f"{internvl.IMG_START}{internvl.IMG_CONTEXT * tokens_per_frame}{internvl.IMG_END}"
    frames = "\n".join((f"Frame{i + 1}: " if prompt.frame_prefix else "") + block for i in range(num_frames))
    system = f"<|im_start|>system\n{prompt.system_message}<|im_end|>\n" if prompt.system_message else ""
    return f"{system}<|im_start|>user\n{frames}\n"


def suffix_text(prompt: str) -> str:
    """A question's part of the turn, after the prefix, up to where the answer starts."""
    return f"{prompt}<|im_end|>\n<|im_start|>assistant\n"


def lora_merged(dtype: torch.dtype, merge_lora: bool | None) -> bool:
    """Whether a LoRA adapter is merged into the weights: as asked, else only into fp32 weights.
    Merged, a model runs at the base's speed; in bf16 merging rounds the adapter away (each weight
    moves by up to half a bf16 step, as much as training moved it), so there it stays on the side."""
    return merge_lora if merge_lora is not None else dtype == torch.float32


@dataclass
class EncoderOutputs:
    """The frozen encoders' outputs for one ordered clip (what the feature cache stores). A
    checkpoint without VGGT (fusion "none") has InternViT's features alone (the VGGT ones None)."""

    vggt_patch: torch.Tensor | None  # [L, S, M_s, d_s] patch tokens of the configured layers
    vggt_camera: torch.Tensor | None  # [L, S, 1, d_s] camera token (token 0) of those layers
    internvit: torch.Tensor  # [S, n, 4 * vit_hidden] InternViT after pixel shuffle, before the projector
    pose_enc: torch.Tensor | None  # [S, 9] camera head output: T(3), quaternion(4), fov_h, fov_w

    TENSORS = ("vggt_patch", "vggt_camera", "internvit", "pose_enc")
    INTERNVIT_ONLY = ("internvit",)

    @classmethod
    def names(cls, has_vggt: bool = True) -> tuple[str, ...]:
        """The tensors an entry holds for a checkpoint with or without VGGT."""
        return cls.TENSORS if has_vggt else cls.INTERNVIT_ONLY

    @property
    def num_frames(self) -> int:
        return int(self.internvit.shape[0])

    def tensors(self) -> dict[str, torch.Tensor]:
        return {k: getattr(self, k) for k in self.TENSORS if getattr(self, k) is not None}

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor]) -> EncoderOutputs:
        return cls(vggt_patch=tensors.get("vggt_patch"), vggt_camera=tensors.get("vggt_camera"),
                   internvit=tensors["internvit"], pose_enc=tensors.get("pose_enc"))

    def to(self, device) -> EncoderOutputs:
        def move(t: torch.Tensor | None) -> torch.Tensor | None:
            return t.to(device) if t is not None else None

        return EncoderOutputs(move(self.vggt_patch), move(self.vggt_camera), self.internvit.to(device),
                              move(self.pose_enc))


class SpaceMind(nn.Module):
    def __init__(self, config: SpaceMindConfig, vggt, internvl_model, tokenizer, fusion: CGMF | None):
        super().__init__()
        self.config = config
        self.vggt = vggt
        self.internvl = internvl_model
        self.tokenizer = tokenizer
        self.fusion = fusion
        self._prefix_ids: dict[int, list[int]] = {}
        self.encoder_fingerprint: str | None = None
        self.checkpoint_id: str | None = None
        self._load_vggt: Callable[[], Any] | None = None  # set by from_pretrained(lazy_vggt=True)
        self.has_llm = True

    # ---------------------------------------------------------------- loading / saving
    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike,
        *,
        device: str = "cpu",
        dtype: torch.dtype | None = None,
        trusted_paths=(),
        llm: bool = True,
        lazy_vggt: bool = False,
        vggt_weights: str = "fp32",
        merge_lora: bool | None = None,
    ) -> SpaceMind:
        """Load a checkpoint folder.

        llm=False loads only what encoding needs (VGGT + InternViT; no projector, CGMF or LLM
        weights are read): for `spacemind extract`. lazy_vggt=True defers loading VGGT until a
        scene actually needs encoding (answering from a warm cache never does).

        merge_lora: a LoRA adapter (`lora/`) is merged into the weights (True) or kept on the side of
        each adapted Linear (False); None (default) merges only fp32 weights, where merging is exact
        (`lora_merged`).

        vggt_weights="fp32" (default) keeps VGGT at the reference's precision whatever `dtype`
        is: fp32 weights, the aggregator under autocast to `dtype`, the camera head in fp32, as
        facebookresearch/vggt runs it. "half" stores VGGT's weights in `dtype` instead (half the
        memory, 2.1 GiB less for VGGT-1B; features deviate from the reference's).
        """
        if vggt_weights not in VGGT_WEIGHTS:  # a bad argument, not a bad checkpoint: refused before any loading
            raise ValueError(f"vggt_weights must be one of {', '.join(VGGT_WEIGHTS)}, got {vggt_weights!r}")
        from .vggt import VGGT

        root = Path(path)
        if not root.is_dir():
            raise CheckpointError(f"checkpoint {root} is not a folder")
        config = SpaceMindConfig.from_dict(read_json(root / "config.json"))
        dtype = dtype or torch.float32
        from ..runtime import lm_attention_implementation

        base = resolve_component(root, config.base, "base (InternVL)", trusted_paths)
        vggt_path = resolve_component(root, config.vggt, "vggt", trusted_paths) if config.vggt is not None else None
        if llm:
            model, tokenizer = internvl.load(
                base, device=device, dtype=dtype, attn_implementation=lm_attention_implementation(device)
            )
        else:
            model, tokenizer = internvl.load_vision_only(base, device=device, dtype=dtype), None

        vggt_dtype = torch.float32 if vggt_weights == "fp32" else dtype

        def load_vggt():
            if vggt_path is None:  # never reached by encode (it skips VGGT): a caller asked for it
                raise CheckpointError(f"checkpoint {root} has no VGGT (fusion = none, assembled without --vggt)")
            return VGGT.from_pretrained(vggt_path, device=device, dtype=vggt_dtype).eval().requires_grad_(False)

        vggt = None if lazy_vggt or vggt_path is None else load_vggt()

        fusion = None
        if config.fusion == "cgmf" and llm:
            fusion = CGMF(config.cgmf)
            weights = root / config.fusion_weights
            if not weights.exists():
                raise CheckpointError(f"{weights} missing (fusion = cgmf needs CGMF weights)")
            from ..weights import load_weights

            state = load_weights(weights)
            try:
                fusion.load_state_dict(state, strict=True)
            except RuntimeError as exc:
                raise CheckpointError(f"{weights} does not match the CGMF config: {str(exc).splitlines()[0]}") from None
            fusion.to(device=device, dtype=dtype).eval().requires_grad_(False)
        if config.lora and llm:
            from .lora import apply_lora

            lora_path = resolve_component(root, config.lora, "lora", trusted_paths)
            apply_lora(model, lora_path, merge=lora_merged(dtype, merge_lora))

        sm = cls(config, vggt, model, tokenizer, fusion)
        sm._load_vggt = load_vggt
        sm.has_llm = llm
        sm.encoder_fingerprint = encoder_fingerprint(root, trusted_paths)
        sm.checkpoint_id = checkpoint_id(root, trusted_paths)
        return sm

    def save_pretrained(self, out_dir: str | os.PathLike) -> None:
        """Write a self-contained checkpoint folder (InternVL and VGGT weights included)."""
        from .lora import unmerged_modules

        if unmerged_modules(self.internvl):
            raise CheckpointError("this model carries a LoRA adapter beside its weights; load it with merge_lora=True to save it")
        from safetensors.torch import save_file
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        self.internvl.save_pretrained(out / "internvl", safe_serialization=True)
        self.tokenizer.save_pretrained(out / "internvl")
        if self.has_vggt:
            self._encoder_vggt().save_pretrained(out / "vggt")
        config = SpaceMindConfig.from_dict(self.config.to_dict())
        config.base, config.vggt, config.lora = "internvl", "vggt" if self.has_vggt else None, None
        config.versions = versions()
        if self.fusion is not None:
            state = {k: v.detach().contiguous().cpu() for k, v in self.fusion.state_dict().items()}
            save_file(state, str(out / config.fusion_weights))
        (out / "config.json").write_text(json.dumps(config.to_dict(), indent=2) + "\n")

    # ---------------------------------------------------------------- properties
    @property
    def device(self) -> torch.device:
        # The vision tower is always loaded (the LLM may not be: llm=False).
        return next(self.internvl.model.vision_tower.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.internvl.model.vision_tower.parameters()).dtype

    @property
    def has_vggt(self) -> bool:
        """False for a plain-InternVL checkpoint (fusion none, no VGGT): nothing VGGT is computed."""
        return self.config.vggt is not None

    def _encoder_vggt(self):
        if self.vggt is None:
            assert self._load_vggt is not None, "a checkpoint without VGGT has no VGGT encoder"
            self.vggt = self._load_vggt()
        return self.vggt

    def _require_llm(self) -> None:
        if not self.has_llm:
            raise CheckpointError("this model was loaded for encoding only (llm=False); load it with llm=True to answer")

    @property
    def tokens_per_frame(self) -> int:
        return internvl.tokens_per_image(self.internvl)

    def vggt_layers_to_run(self) -> tuple[int, ...]:
        layers = tuple(self.config.vggt_layers)
        return layers if -1 in layers else layers + (-1,)

    # ---------------------------------------------------------------- encoders
    @torch.no_grad()
    def encode(self, clip: PreparedClip) -> EncoderOutputs:
        """Both frozen encoders over one ordered clip (InternViT alone for a checkpoint without VGGT)."""
        device, dtype = self.device, self.dtype
        pixels = vit_tensor(clip.vit, self.config.preprocess, device, dtype)
        internvit = internvl.vision_features(self.internvl, pixels).to(dtype).contiguous()
        if not self.has_vggt:
            return EncoderOutputs(vggt_patch=None, vggt_camera=None, internvit=internvit, pose_enc=None)
        images = vggt_tensor(clip.vggt, device, torch.float32)  # [1, S, 3, H, W]
        run = self.vggt_layers_to_run()
        vggt = self._encoder_vggt()
        # VGGT's aggregator under autocast to the compute dtype, as the reference runs it
        with autocast(device, dtype):
            tokens, start = vggt.aggregate(images, layers=run)
            pose = vggt.camera_pose(tokens[run.index(-1)])
        keep = [tokens[run.index(layer)] for layer in self.config.vggt_layers]
        stacked = torch.stack([t[0] for t in keep])  # [L, S, P, d_s]
        return EncoderOutputs(
            vggt_patch=stacked[:, :, start:].to(dtype).contiguous(),
            vggt_camera=stacked[:, :, :1].to(dtype).contiguous(),
            internvit=internvit,
            pose_enc=pose[0].float().contiguous(),
        )

    # ---------------------------------------------------------------- fusion
    @torch.no_grad()
    def fuse(self, enc: EncoderOutputs) -> torch.Tensor:
        """Encoder outputs -> the tokens placed at the image positions, [S, n, d_v]."""
        return self.fuse_with_grad(enc)

    def fuse_with_grad(self, enc: EncoderOutputs) -> torch.Tensor:
        """`fuse` for training: gradients flow into whatever requires them (the CGMF)."""
        self._require_llm()
        enc = enc.to(self.device)
        f_v = internvl.project(self.internvl, enc.internvit.to(self.dtype))
        if self.fusion is None:
            return f_v
        assert enc.vggt_patch is not None and enc.vggt_camera is not None  # a fusion checkpoint has VGGT
        # Several configured layers are averaged (the paper uses the last one only).
        f_s = enc.vggt_patch.to(self.dtype).mean(dim=0)
        f_c = enc.vggt_camera.to(self.dtype).mean(dim=0)
        return self.fusion(f_v, f_s, f_c)

    # ---------------------------------------------------------------- prompts
    def prefix_text(self, num_frames: int) -> str:
        return prefix_text(self.config.prompt, self.tokens_per_frame, num_frames)

    @staticmethod
    def suffix_text(prompt: str) -> str:
        return suffix_text(prompt)

    def prefix_ids(self, num_frames: int) -> list[int]:
        if num_frames not in self._prefix_ids:
            ids = self.tokenizer(self.prefix_text(num_frames), add_special_tokens=False)["input_ids"]
            self._prefix_ids[num_frames] = list(ids)
        return self._prefix_ids[num_frames]

    def suffix_ids(self, prompt: str) -> list[int]:
        return list(self.tokenizer(self.suffix_text(prompt), add_special_tokens=False)["input_ids"])

    def prefix_embeds(self, fused: torch.Tensor) -> torch.Tensor:
        """fused [S, n, d_v] -> the prefix's input embeddings [1, L, d_v] with image tokens placed."""
        _, _, embed = internvl.parts(self.internvl)
        ids = torch.tensor([self.prefix_ids(fused.shape[0])], device=self.device)
        embeds = embed(ids)
        mask = ids == self.internvl.config.image_token_id
        if int(mask.sum()) != fused.shape[0] * fused.shape[1]:
            raise CheckpointError(
                f"prompt has {int(mask.sum())} image tokens for {fused.shape[0] * fused.shape[1]} features; "
                "tokenizer and config disagree on image_seq_length"
            )
        return embeds.masked_scatter(mask[..., None], fused.to(embeds.dtype))

    # ---------------------------------------------------------------- generation
    @torch.no_grad()
    def prefill(self, fused: torch.Tensor) -> generation.Prefix:
        lm, _, _ = internvl.parts(self.internvl)
        return generation.prefill(lm, self.prefix_embeds(fused))

    @torch.no_grad()
    def generate(self, prefix: generation.Prefix, prompts: list[str], *,
                 max_new_tokens: int = DEFAULTS.max_new_tokens) -> list[str]:
        """Greedy answers to `prompts` (one batch) after a prefilled visual prefix."""
        lm, head, embed = internvl.parts(self.internvl)
        ids = generation.decode_batch(
            lm,
            head,
            embed,
            prefix,
            [self.suffix_ids(p) for p in prompts],
            max_new_tokens=max_new_tokens,
            eos_ids=internvl.eos_token_ids(self.internvl, self.tokenizer),
            pad_id=internvl.pad_token_id(self.tokenizer),
        )
        return [self.tokenizer.decode(row, skip_special_tokens=True).strip() for row in ids]

    @torch.no_grad()
    def answer(
        self, clip_or_features, prompts: list[str], *, batch_size: int = DEFAULTS.decode_batch,
        max_new_tokens: int = DEFAULTS.max_new_tokens,
    ) -> list[str]:
        """Answer many questions about one scene: encode (unless given features), fuse and
        prefill once, decode in batches (see `answering.answer_questions`). Raises
        QuestionError for a question that cannot be answered."""
        from ..errors import QuestionError
        from .answering import answer_questions

        enc = clip_or_features if isinstance(clip_or_features, EncoderOutputs) else self.encode(clip_or_features)
        prefix = self.prefill(self.fuse(enc))
        answers, failures = answer_questions(self, prefix, list(enumerate(prompts)), batch_size=batch_size,
                                             max_new_tokens=max_new_tokens, name=lambda i: f"#{i}")
        if failures:
            raise QuestionError(failures[0].error)
        texts = {a.key: a.text for a in answers}
        return [texts[i] for i in range(len(prompts))]

    # ---------------------------------------------------------------- training
    def end_of_turn_id(self) -> int:
        tid = self.tokenizer.convert_tokens_to_ids("<|im_end|>")
        if tid is None or tid == self.tokenizer.unk_token_id:
            raise CheckpointError("tokenizer lacks <|im_end|>, the end-of-turn token answers are trained to end with")
        return int(tid)

    def segment(self, prompt: str, answer: str) -> packing.Segment:
        """One training question: its user turn (as `generate` sees it) and its answer's tokens."""
        answer_ids = self.tokenizer(answer, add_special_tokens=False)["input_ids"]
        return packing.Segment(prompt_ids=self.suffix_ids(prompt), answer_ids=list(answer_ids))

    def scene_loss_sum(
        self, enc: EncoderOutputs, pairs: list[tuple[str, str]], *, packed: bool = True
    ) -> tuple[torch.Tensor, int]:
        """(sum of answer-token cross-entropies, number of target tokens) for (prompt, answer)
        pairs about one scene. Gradients flow into the CGMF (through the prefix's image tokens)
        and into the LLM's trainable weights (e.g. LoRA). packed=True runs the prefix once for
        all pairs; packed=False runs one sample per pair (the reference). Divide the sum over a
        whole optimizer step by that step's total target count (see `packing`)."""
        return self.segments_loss_sum(enc, [self.segment(p, a) for p, a in pairs], packed=packed)

    def segments_loss_sum(
        self, enc: EncoderOutputs, segments: list[packing.Segment], *, packed: bool = True
    ) -> tuple[torch.Tensor, int]:
        """`scene_loss_sum` for questions already tokenized (`segment`): training tokenizes each
        question once per run, not once per step."""
        lm, head, embed = internvl.parts(self.internvl)
        prefix = self.prefix_embeds(self.fuse_with_grad(enc))  # [1, P, d]
        end = self.end_of_turn_id()
        plan = [packing.pack(prefix.shape[1], segments, end)] if packed else packing.separate(prefix.shape[1], segments, end)
        losses = [packing.loss_sum(lm, head, packing.inputs_embeds(embed, prefix, p), p) for p in plan]
        total = sum(losses[1:], losses[0])
        return total, packing.num_targets(segments)

    @torch.no_grad()
    def answer_alone(self, enc: EncoderOutputs, prompt: str, *, max_new_tokens: int = DEFAULTS.max_new_tokens) -> str:
        """One question, no sharing, through transformers' own `generate` on the full prompt:
        the reference the shared-prefix path must equal, and the peer-style baseline."""
        _, _, embed = internvl.parts(self.internvl)
        prefix = self.prefix_embeds(self.fuse(enc))
        suffix = embed(torch.tensor([self.suffix_ids(prompt)], device=self.device))
        embeds = torch.cat([prefix, suffix], dim=1)
        eos = sorted(internvl.eos_token_ids(self.internvl, self.tokenizer))
        out = self.internvl.generate(
            inputs_embeds=embeds,
            attention_mask=torch.ones(embeds.shape[:2], dtype=torch.long, device=self.device),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            num_beams=1,
            eos_token_id=eos,
            pad_token_id=internvl.pad_token_id(self.tokenizer),
        )
        return self.tokenizer.decode(out[0], skip_special_tokens=True).strip()


