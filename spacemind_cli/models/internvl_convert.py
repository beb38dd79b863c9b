"""InternVL's original layout -> transformers' layout, as transformers' own converter does it.

Most InternVL fine-tunes (and the non-`-hf` OpenGVLab repositories) are published in the layout
InternVL's own code writes: an `InternVLChatModel` (remote code) with keys `vision_model.*`,
`mlp1.{0,1,3}.*`, `language_model.model.*`, `language_model.lm_head.*` and a config holding
`vision_config`, `llm_config`, `template`, `downsample_ratio` and `auto_map`. transformers ships a
converter for them (`src/transformers/models/internvl/convert_internvl_weights_to_hf.py`, a repo
script that loads the model with `trust_remote_code=True`); this module does the same conversion
from the files alone: no remote code is imported or run, and weights are converted one shard at
a time (never the whole model in memory), dtypes kept.

What the converter defines and we match: the key renames (`KEY_MAP`), the vision tower's fused
`attn.qkv` split into q/k/v by rows [:d], [d:2d], [-d:] (weight and bias), InternLM2's
`attention.wqkv` split per KV group (q heads of a group, then its k, then its v), and the config
translation (`hf_config_dict`). Where it hard-codes a value per repository name (image token id
151667 or 92546, EOS 151645 or 92542) we read the same tokens from the folder's tokenizer
(`<IMG_CONTEXT>`, `<|im_end|>`), which gives those ids for the published tokenizers.

Where we go beyond it: `image_seq_length`, `downsample_ratio` and `vision_feature_layer` come from
the original config (`force_image_size`/`image_size`, `patch_size`, `downsample_ratio`,
`select_layer`) instead of transformers' defaults (equal for every published InternVL3), and an
unknown key is an error naming it instead of a silent pass-through.

The inverse (`to_original_layout`, `original_config`) writes the original layout from a
transformers one; tests and `bench.fullsize` build original-layout folders with it.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import CheckpointError

log = logging.getLogger(__name__)

SHARD_INDEX = "model.safetensors.index.json"


# ------------------------------------------------------------------------------------------ key map
@dataclass(frozen=True)
class KeyRule:
    """One original key pattern and its transformers name. Placeholders in braces match the parts
    in `_PLACEHOLDERS` and carry over; `split` names a function in `SPLITS` when one original
    tensor is several transformers tensors (the transformers pattern then has `{part}`)."""

    original: str
    hf: str
    split: str | None = None


_PLACEHOLDERS = {"n": r"\d+", "p": r"weight|bias", "fc": r"fc1|fc2", "qk": r"q|k", "rest": r".+"}

_V = "vision_model.encoder.layers.{n}."
_VH = "vision_tower.encoder.layer.{n}."
_L = "language_model.model.layers.{n}."
_LH = "language_model.model.layers.{n}."

# The one declarative key map: transformers' ORIGINAL_TO_CONVERTED_KEY_MAPPING_{VISION,MULTI,
# TEXT_LLAMA} written as whole-key patterns (so it can be inverted), per part of the model. The
# transformers side is what its converter writes and what `save_pretrained` writes today
# (`vision_tower.*`, `multi_modal_projector.*`, `language_model.model.*`, `language_model.lm_head.*`);
# transformers renames them to its module names (`model.vision_tower.*`, ..., `lm_head.*`) on load.
KEY_MAP: dict[str, tuple[KeyRule, ...]] = {
    "vision": (
        KeyRule("vision_model.embeddings.class_embedding", "vision_tower.embeddings.cls_token"),
        KeyRule("vision_model.embeddings.position_embedding", "vision_tower.embeddings.position_embeddings"),
        KeyRule("vision_model.embeddings.patch_embedding.{p}", "vision_tower.embeddings.patch_embeddings.projection.{p}"),
        KeyRule(_V + "attn.qkv.{p}", _VH + "attention.{part}_proj.{p}", split="vision_qkv"),
        KeyRule(_V + "attn.proj.{p}", _VH + "attention.projection_layer.{p}"),
        KeyRule(_V + "attn.{qk}_norm.{p}", _VH + "attention.{qk}_norm.{p}"),
        KeyRule(_V + "ls1", _VH + "lambda_1"),
        KeyRule(_V + "ls2", _VH + "lambda_2"),
        KeyRule(_V + "norm1.{p}", _VH + "layernorm_before.{p}"),
        KeyRule(_V + "norm2.{p}", _VH + "layernorm_after.{p}"),
        KeyRule(_V + "mlp.{fc}.{p}", _VH + "mlp.{fc}.{p}"),
    ),
    "projector": (
        KeyRule("mlp1.0.{p}", "multi_modal_projector.layer_norm.{p}"),
        KeyRule("mlp1.1.{p}", "multi_modal_projector.linear_1.{p}"),
        KeyRule("mlp1.3.{p}", "multi_modal_projector.linear_2.{p}"),
    ),
    # LLMs written with transformers' own names (Qwen2, Qwen3, LLaMA, InternLM3)
    "llm": (
        KeyRule("language_model.lm_head.{p}", "language_model.lm_head.{p}"),
        KeyRule("language_model.model.{rest}", "language_model.model.{rest}"),
    ),
    # InternLM2 (InternVL2 / InternVL2.5 2B, 8B, 26B): transformers' TEXT_LLAMA renames + wqkv split
    "llm_internlm2": (
        KeyRule("language_model.model.tok_embeddings.{p}", "language_model.model.embed_tokens.{p}"),
        KeyRule(_L + "attention.wqkv.{p}", _LH + "self_attn.{part}_proj.{p}", split="internlm2_wqkv"),
        KeyRule(_L + "attention.wo.{p}", _LH + "self_attn.o_proj.{p}"),
        KeyRule(_L + "feed_forward.w1.{p}", _LH + "mlp.gate_proj.{p}"),
        KeyRule(_L + "feed_forward.w2.{p}", _LH + "mlp.down_proj.{p}"),
        KeyRule(_L + "feed_forward.w3.{p}", _LH + "mlp.up_proj.{p}"),
        KeyRule(_L + "attention_norm.{p}", _LH + "input_layernorm.{p}"),
        KeyRule(_L + "ffn_norm.{p}", _LH + "post_attention_layernorm.{p}"),
        KeyRule("language_model.model.norm.{p}", "language_model.model.norm.{p}"),
        KeyRule("language_model.output.{p}", "language_model.lm_head.{p}"),
    ),
}

# llm_config.architectures[0] -> (transformers config class for text_config, LLM key rules).
# transformers' converter builds LLaMA-style LLMs (InternLM2, InternLM3) as LlamaConfig.
LLM_ARCHITECTURES = {
    "Qwen2ForCausalLM": ("Qwen2Config", "llm"),
    "Qwen3ForCausalLM": ("Qwen3Config", "llm"),
    "LlamaForCausalLM": ("LlamaConfig", "llm"),
    "InternLM3ForCausalLM": ("LlamaConfig", "llm"),
    "InternLM2ForCausalLM": ("LlamaConfig", "llm_internlm2"),
}
# text_config.model_type -> the original LLM architecture `original_config` writes
_ORIGINAL_LLM = {"qwen2": "Qwen2ForCausalLM", "qwen3": "Qwen3ForCausalLM", "llama": "InternLM2ForCausalLM"}

# transformers' UNNECESSARY_CONFIG_KEYS: remote-code and MoE settings dropped from both sub-configs
DROPPED_CONFIG_KEYS = (
    "_name_or_path", "_attn_implementation_autoset", "auto_map", "use_bfloat16", "use_flash_attn", "bias",
    "laux_allreduce", "moe_coeff_ratio", "moe_intermediate_size", "moe_output_scale", "noisy_gate_policy",
    "shared_expert_intermediate_size", "use_residual", "use_moe", "use_rts", "use_weighted_residual",
    "moe_config", "num_experts", "num_routed_experts", "num_shared_experts", "capacity_factor",
    "eval_capacity_factor", "drop_path_rate",
)  # fmt: skip
# original vision setting -> transformers' name (converter: qk_normalization, qkv_bias, dropout prob)
VISION_RENAMED = {"qk_normalization": "use_qk_norm", "qkv_bias": "attention_bias"}


def _compile(template: str, split_parts: tuple[str, ...] = ()) -> re.Pattern:
    out, pos = [], 0
    for m in re.finditer(r"\{(\w+)\}", template):
        out.append(re.escape(template[pos : m.start()]))
        name = m.group(1)
        alt = "|".join(split_parts) if name == "part" else _PLACEHOLDERS[name]
        out.append(f"(?P<{name}>{alt})")
        pos = m.end()
    out.append(re.escape(template[pos:]))
    return re.compile("".join(out))


# ------------------------------------------------------------------------------------------ splits
def split_vision_qkv(qkv: torch.Tensor, dim: int) -> dict[str, torch.Tensor]:
    """InternViT's fused attn.qkv (weight [3d, d] or bias [3d]) -> q, k, v: rows [:d], [d:2d], [-d:]."""
    if qkv.shape[0] != 3 * dim:
        raise ValueError(f"fused qkv has {qkv.shape[0]} rows, expected 3 x {dim}")
    return {"q": qkv[:dim].contiguous(), "k": qkv[dim : 2 * dim].contiguous(), "v": qkv[-dim:].contiguous()}


def merge_vision_qkv(parts: dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.cat([parts["q"], parts["k"], parts["v"]], dim=0).contiguous()


def split_internlm2_wqkv(wqkv: torch.Tensor, num_heads: int, num_kv_heads: int, head_dim: int) -> dict[str, torch.Tensor]:
    """InternLM2's fused attention.wqkv -> q, k, v. Its rows are grouped per KV head: the group's
    `num_heads // num_kv_heads` query heads, then its key head, then its value head, each
    `head_dim` rows (transformers' rearrange "(h gs d) z -> h gs d z", gs = 2 + groups)."""
    groups = num_heads // num_kv_heads
    gs = groups + 2
    if wqkv.shape[0] != num_kv_heads * gs * head_dim:
        raise ValueError(f"fused wqkv has {wqkv.shape[0]} rows, expected {num_kv_heads} x {gs} x {head_dim}")
    rest = tuple(wqkv.shape[1:])
    grouped = wqkv.reshape(num_kv_heads, gs, head_dim, *rest)
    return {
        "q": grouped[:, :groups].reshape(-1, *rest).contiguous(),
        "k": grouped[:, -2].reshape(-1, *rest).contiguous(),
        "v": grouped[:, -1].reshape(-1, *rest).contiguous(),
    }


def merge_internlm2_wqkv(parts: dict[str, torch.Tensor], num_heads: int, num_kv_heads: int, head_dim: int) -> torch.Tensor:
    groups = num_heads // num_kv_heads
    rest = tuple(parts["q"].shape[1:])
    q = parts["q"].reshape(num_kv_heads, groups, head_dim, *rest)
    k = parts["k"].reshape(num_kv_heads, 1, head_dim, *rest)
    v = parts["v"].reshape(num_kv_heads, 1, head_dim, *rest)
    return torch.cat([q, k, v], dim=1).reshape(-1, *rest).contiguous()


SPLIT_PARTS = ("q", "k", "v")


@dataclass(frozen=True)
class _Shapes:
    """The sizes the splits need, from a transformers InternVL config dict."""

    vision_hidden: int
    num_heads: int
    num_kv_heads: int
    head_dim: int

    @classmethod
    def of(cls, hf: dict) -> _Shapes:
        text, vision = hf["text_config"], hf["vision_config"]
        heads = int(text["num_attention_heads"])
        head_dim = text.get("head_dim") or int(text["hidden_size"]) // heads
        return cls(int(vision["hidden_size"]), heads, int(text.get("num_key_value_heads") or heads), int(head_dim))

    def split(self, name: str, tensor: torch.Tensor) -> dict[str, torch.Tensor]:
        if name == "vision_qkv":
            return split_vision_qkv(tensor, self.vision_hidden)
        return split_internlm2_wqkv(tensor, self.num_heads, self.num_kv_heads, self.head_dim)

    def merge(self, name: str, parts: dict[str, torch.Tensor]) -> torch.Tensor:
        if name == "vision_qkv":
            return merge_vision_qkv(parts)
        return merge_internlm2_wqkv(parts, self.num_heads, self.num_kv_heads, self.head_dim)


class KeyMap:
    """`KEY_MAP` for one LLM kind, compiled both ways."""

    def __init__(self, llm_rules: str):
        self.rules = KEY_MAP["vision"] + KEY_MAP["projector"] + KEY_MAP[llm_rules]
        self._fwd = [(_compile(r.original), r) for r in self.rules]
        self._inv = [(_compile(r.hf, SPLIT_PARTS if r.split else ()), r) for r in self.rules]

    def to_hf(self, key: str) -> tuple[KeyRule, dict[str, str]] | None:
        for pattern, rule in self._fwd:
            m = pattern.fullmatch(key)
            if m:
                return rule, m.groupdict()
        return None

    def to_original(self, key: str) -> tuple[KeyRule, dict[str, str]] | None:
        for pattern, rule in self._inv:
            m = pattern.fullmatch(key)
            if m:
                return rule, m.groupdict()
        return None


def convert_items(items: Iterable[tuple[str, torch.Tensor]], hf: dict, llm_rules: str, where: str = "") -> Iterator[tuple[str, torch.Tensor]]:
    """Original-layout (key, tensor) pairs -> transformers' (key, tensor) pairs."""
    keymap, shapes = KeyMap(llm_rules), _Shapes.of(hf)
    for key, tensor in items:
        found = keymap.to_hf(key)
        if found is None:
            raise CheckpointError(f"{where or 'original InternVL weights'}: weight {key} is not in InternVL's original layout")
        rule, groups = found
        if rule.split is None:
            yield rule.hf.format(**groups), tensor
            continue
        try:
            parts = shapes.split(rule.split, tensor)
        except ValueError as exc:
            raise CheckpointError(f"{where or 'original InternVL weights'}: {key}: {exc}") from None
        for part, value in parts.items():
            yield rule.hf.format(part=part, **groups), value


# transformers' module names (a model's state_dict) -> the names it writes to files
_ON_DISK = (
    ("model.vision_tower.", "vision_tower."),
    ("model.multi_modal_projector.", "multi_modal_projector."),
    ("model.language_model.", "language_model.model."),
    ("lm_head.", "language_model.lm_head."),
)


def _on_disk(key: str) -> str:
    for module_name, file_name in _ON_DISK:
        if key.startswith(module_name):
            return file_name + key[len(module_name) :]
    return key


def to_original_layout(hf_state_dict_items: Iterable[tuple[str, torch.Tensor]], config) -> Iterator[tuple[str, torch.Tensor]]:
    """transformers' (key, tensor) pairs -> InternVL's original-layout pairs (the inverse of
    `convert_items`). `config` is the transformers InternVL config (object or dict); keys may be
    a model's state_dict names or the names in its files. Fused
    tensors are emitted once all their parts have been seen. A tied lm_head is not written (as
    InternVL's own save leaves it out)."""
    hf = config if isinstance(config, dict) else config.to_dict()
    llm_rules = LLM_ARCHITECTURES[_ORIGINAL_LLM[hf["text_config"]["model_type"]]][1]
    keymap, shapes = KeyMap(llm_rules), _Shapes.of(hf)
    pending: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in hf_state_dict_items:
        found = keymap.to_original(_on_disk(key))
        if found is None:
            raise ValueError(f"{key} is not in transformers' InternVL layout")
        rule, groups = found
        if rule.split is None:
            yield rule.original.format(**groups), tensor
            continue
        part = groups.pop("part")
        name = rule.original.format(**groups)
        parts = pending.setdefault(name, {})
        parts[part] = tensor
        if len(parts) == len(SPLIT_PARTS):
            yield name, shapes.merge(rule.split, pending.pop(name))
    if pending:
        raise ValueError(f"fused weights with missing parts: {', '.join(sorted(pending))}")


# ------------------------------------------------------------------------------------------ configs
def is_original_config(raw: dict) -> bool:
    return isinstance(raw, dict) and isinstance(raw.get("llm_config"), dict) and isinstance(raw.get("vision_config"), dict)


def llm_architecture(raw: dict, where: str) -> str:
    archs = raw["llm_config"].get("architectures") or []
    arch = archs[0] if archs else None
    if arch not in LLM_ARCHITECTURES:
        raise CheckpointError(
            f"{where}: llm_config architecture {arch!r} is not one InternVL's original layout is converted for "
            f"({', '.join(LLM_ARCHITECTURES)})"
        )
    return arch


def hf_config_dict(raw: dict, *, image_token_id: int, eos_token_id: int, where: str) -> dict:
    """The transformers InternVLConfig (as a dict) for an original config, as transformers'
    `get_internvl_config` translates it (see the module docstring for the few differences)."""
    from transformers import InternVLConfig, InternVLVisionConfig, LlamaConfig, Qwen2Config, Qwen3Config

    classes = {"Qwen2Config": Qwen2Config, "Qwen3Config": Qwen3Config, "LlamaConfig": LlamaConfig}
    arch = llm_architecture(raw, where)
    if raw.get("ps_version", "v2") != "v2":
        raise CheckpointError(f"{where}: ps_version {raw.get('ps_version')!r}; only v2 pixel shuffle (transformers') is supported")
    llm = {k: v for k, v in raw["llm_config"].items() if k not in DROPPED_CONFIG_KEYS}
    llm.pop("model_type", None)  # the config class says it
    # InternVL2.5/3 configs often ask for flash_attention_2 here; the loader picks the backend
    llm.pop("attn_implementation", None)
    llm["use_cache"] = True
    if arch == "Qwen2ForCausalLM":
        llm["eos_token_id"] = eos_token_id  # the converter's InternVL3 rule: <|im_end|>
    vision = {k: v for k, v in raw["vision_config"].items() if k not in DROPPED_CONFIG_KEYS}
    vision.pop("model_type", None)
    vision["use_absolute_position_embeddings"] = True
    if "attention_probs_dropout_prob" in vision:
        p = vision.pop("attention_probs_dropout_prob")
        vision["attention_dropout"] = p
        vision["projection_dropout"] = p
    for old, new in VISION_RENAMED.items():
        if old in vision:
            vision[new] = vision.pop(old)

    image_size = raw.get("force_image_size") or vision.get("image_size")
    if isinstance(image_size, (list, tuple)):
        image_size = image_size[0]
    patch = vision.get("patch_size")
    patch = patch[0] if isinstance(patch, (list, tuple)) else patch
    ratio = float(raw.get("downsample_ratio", 0.5))
    if image_size is None or patch is None:
        raise CheckpointError(f"{where}: the original InternVL config gives no image size or patch size")
    try:
        text_cfg = classes[LLM_ARCHITECTURES[arch][0]](**llm)
        vision_cfg = InternVLVisionConfig(**vision)
        tie = bool(text_cfg.tie_word_embeddings)
        config = InternVLConfig(
            text_config=text_cfg,
            vision_config=vision_cfg,
            image_token_id=int(image_token_id),
            image_seq_length=int((int(image_size) // int(patch)) ** 2 * ratio**2),
            downsample_ratio=ratio,
            vision_feature_layer=int(raw.get("select_layer", -1)),
            tie_word_embeddings=tie,
        )
    except (TypeError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{where}: cannot translate the original InternVL config ({' '.join(str(exc).split())[:200]})") from None
    config.architectures = ["InternVLForConditionalGeneration"]
    return config.to_dict()


def original_config(hf_config, *, template: str = "internvl2_5") -> dict:
    """The config.json InternVL's own code writes for the model `hf_config` describes (the
    inverse of `hf_config_dict`, with the remote-code keys a published folder has)."""
    hf = hf_config if isinstance(hf_config, dict) else hf_config.to_dict()
    text, vision = dict(hf["text_config"]), dict(hf["vision_config"])
    arch = _ORIGINAL_LLM[text["model_type"]]
    llm = {k: v for k, v in text.items() if k not in ("transformers_version", "id2label", "label2id")}
    llm["architectures"] = [arch]
    llm["model_type"] = {"InternLM2ForCausalLM": "internlm2"}.get(arch, text["model_type"])
    if arch == "InternLM2ForCausalLM":
        llm["auto_map"] = {"AutoConfig": "configuration_internlm2.InternLM2Config",
                           "AutoModelForCausalLM": "modeling_internlm2.InternLM2ForCausalLM"}
        llm["bias"] = False
    vis = {k: v for k, v in vision.items() if k not in ("transformers_version", "id2label", "label2id")}
    for old, new in VISION_RENAMED.items():
        vis[old] = vis.pop(new)
    vis.update(
        architectures=["InternVisionModel"], model_type="intern_vit_6b", use_flash_attn=False, drop_path_rate=0.0,
        auto_map={"AutoConfig": "configuration_intern_vit.InternVisionConfig",
                  "AutoModel": "modeling_intern_vit.InternVisionModel"},
    )  # fmt: skip
    image_size = vision["image_size"]
    image_size = image_size[0] if isinstance(image_size, (list, tuple)) else image_size
    vis["image_size"] = image_size
    patch = vision["patch_size"]
    vis["patch_size"] = patch[0] if isinstance(patch, (list, tuple)) else patch
    return {
        "architectures": ["InternVLChatModel"],
        "auto_map": {
            "AutoConfig": "configuration_internvl_chat.InternVLChatConfig",
            "AutoModel": "modeling_internvl_chat.InternVLChatModel",
            "AutoModelForCausalLM": "modeling_internvl_chat.InternVLChatModel",
        },
        "model_type": "internvl_chat",
        "downsample_ratio": hf.get("downsample_ratio", 0.5),
        "force_image_size": image_size,
        "select_layer": hf.get("vision_feature_layer", -1),
        "ps_version": "v2",
        "template": template,
        "dynamic_image_size": True,
        "use_thumbnail": True,
        "max_dynamic_patch": 12,
        "min_dynamic_patch": 1,
        "tie_word_embeddings": bool(text.get("tie_word_embeddings", False)),
        "use_backbone_lora": 0,
        "use_llm_lora": 0,
        "llm_config": llm,
        "vision_config": vis,
    }


# ------------------------------------------------------------------------------------------ folders
INTERNVL_LAYOUTS = ("transformers", "original")


def detect_layout(folder: Path) -> str:
    """'transformers' or 'original', from the folder's config.json; anything else is a
    CheckpointError naming the folder."""
    cfg = folder / "config.json"
    try:
        raw = json.loads(cfg.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"InternVL folder {folder} has no config.json") from None
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{cfg} is not valid JSON: {exc}") from None
    if isinstance(raw, dict) and raw.get("model_type") == "internvl":
        return "transformers"
    if is_original_config(raw):
        return "original"
    got = raw.get("model_type") if isinstance(raw, dict) else type(raw).__name__
    raise CheckpointError(
        f"{folder} is neither transformers' InternVL layout (config model_type 'internvl', the -hf repositories) "
        f"nor InternVL's original layout (config with llm_config and vision_config); its model_type is {got!r}"
    )


# Files of an original folder that are copied as they are: the tokenizer and image processor.
# Its config.json and generation_config.json are rewritten, its *.py (remote code) left out.
_COPIED_SUFFIXES = (".json", ".txt", ".model", ".tiktoken", ".jinja")
_NOT_COPIED = ("config.json", "generation_config.json", SHARD_INDEX)


def _tokenizer_ids(folder: Path) -> tuple[int, int]:
    """(<IMG_CONTEXT> id, <|im_end|> id) from the folder's tokenizer, loaded without remote code."""
    from transformers import AutoTokenizer

    from .internvl import _transformers_quiet

    try:
        with _transformers_quiet():  # it warns that config.json's model_type is not one it knows
            tok = AutoTokenizer.from_pretrained(str(folder), local_files_only=True, trust_remote_code=False)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise CheckpointError(
            f"{folder}: its tokenizer does not load without remote code ({' '.join(str(exc).split())[:160]}); "
            "use the transformers-layout (-hf) release of this model"
        ) from None
    ids = []
    for token in ("<IMG_CONTEXT>", "<|im_end|>"):
        tid = tok.convert_tokens_to_ids(token)
        if not isinstance(tid, int) or tid == tok.unk_token_id:
            raise CheckpointError(f"{folder}: tokenizer lacks InternVL's {token} token")
        ids.append(int(tid))
    return ids[0], ids[1]


@dataclass(frozen=True)
class OriginalFolder:
    """An original-layout folder read without its weights."""

    raw: dict  # its config.json
    hf: dict  # the transformers InternVLConfig it converts to, as a dict
    architecture: str  # llm_config.architectures[0]
    im_end: int  # <|im_end|>, where InternVL's chat turns end

    @property
    def llm_rules(self) -> str:
        return LLM_ARCHITECTURES[self.architecture][1]


def read_original(folder: Path) -> OriginalFolder:
    """An original-layout folder's config, translated, and its tokenizer's ids; no weights read."""
    from .checkpoint import read_json

    raw = read_json(folder / "config.json")
    where = str(folder / "config.json")
    arch = llm_architecture(raw, where)
    image_token_id, im_end = _tokenizer_ids(folder)
    hf = hf_config_dict(raw, image_token_id=image_token_id, eos_token_id=im_end, where=where)
    template = raw.get("template")
    if template not in (None, "internvl2_5"):
        log.warning("%s: chat template %r; spacemind prompts with InternVL's internvl2_5 template", folder, template)
    return OriginalFolder(raw, hf, arch, im_end)


def _weight_files(folder: Path) -> list[Path]:
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        pickled = sorted(p.name for p in folder.iterdir() if p.suffix in (".bin", ".pt", ".pth"))
        hint = f" (it has {', '.join(pickled[:2])}: pickled weights are never read)" if pickled else ""
        raise CheckpointError(f"InternVL folder {folder} holds no .safetensors weights{hint}")
    return files


def convert_folder(src: Path, dst: Path) -> dict:
    """Write transformers' layout of the original-layout folder `src` into `dst` (created):
    config.json, generation_config.json, one output shard per input shard + the index, the
    tokenizer and image-processor files. Returns the transformers config dict."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    orig = read_original(src)
    hf = orig.hf
    files = _weight_files(src)
    dst.mkdir(parents=True, exist_ok=True)
    weight_map: dict[str, str] = {}
    total = 0
    n = len(files)
    for i, f in enumerate(files):
        name = "model.safetensors" if n == 1 else f"model-{i + 1:05d}-of-{n:05d}.safetensors"
        out: dict[str, torch.Tensor] = {}
        try:
            with safe_open(str(f), framework="pt", device="cpu") as handle:
                items = ((k, handle.get_tensor(k)) for k in handle.keys())
                for key, tensor in convert_items(items, hf, orig.llm_rules, where=str(f)):
                    if key in weight_map or key in out:
                        raise CheckpointError(f"{f}: weight {key} appears twice after conversion")
                    out[key] = tensor
        except (OSError, RuntimeError) as exc:  # safetensors raises SafetensorError (a RuntimeError subclass)
            raise CheckpointError(f"{f} is not a readable safetensors file ({' '.join(str(exc).split())[:160]})") from None
        save_file(out, str(dst / name), metadata={"format": "pt"})
        for key, tensor in out.items():
            weight_map[key] = name
            total += tensor.numel() * tensor.element_size()
        del out  # one shard in memory at a time
    if n > 1:
        index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
        (dst / SHARD_INDEX).write_text(json.dumps(index, indent=2) + "\n")
    (dst / "config.json").write_text(json.dumps(hf, indent=2, sort_keys=True) + "\n")
    if orig.architecture != "Qwen2ForCausalLM":
        # the converter's LLaMA rule: generation stops at <|im_end|>, not at the LLM config's </s>
        (dst / "generation_config.json").write_text(json.dumps({"eos_token_id": orig.im_end}, indent=2) + "\n")
    for entry in sorted(src.iterdir()):
        if entry.is_file() and not entry.name.startswith(".") and entry.suffix in _COPIED_SUFFIXES \
                and entry.name not in _NOT_COPIED:
            (dst / entry.name).write_bytes(entry.read_bytes())
    log.info("converted %s from InternVL's original layout (%d shard(s), %s LLM)", src, n, orig.architecture)
    return hf
