"""Random-weight checkpoint folders at full shape, in the layouts people download.

What a user gets from the hub, with random values instead of trained ones, so the loaders, the
converters and the whole pipeline can be run at real sizes without a download:

  * `write_internvl_hf`: InternVL3-1B-hf's folder (transformers' layout): `config.json` with the
    published values, bf16 safetensors shards with `model.safetensors.index.json`, a tokenizer
    with the full 151,674-row vocabulary and InternVL's special tokens at their published ids
    (`full_vocab_tokenizer`), `preprocessor_config.json`;
  * `write_vggt_hub`: facebook/VGGT-1B's folder: `config.json` (the hub mixin's constructor
    arguments) + fp32 `model.safetensors` holding the aggregator and camera head;
  * `write_internvl_original_from_hf`: the same InternVL weights in InternVL's original layout
    (`vision_model.*`, `mlp1.*`, `language_model.*`; a config with vision_config, llm_config and
    auto_map), read back shard by shard from an -hf folder.

Every tensor is drawn from its own generator seeded by (seed, name), in the dtype it is stored in,
and written shard by shard: at most one shard is in memory, never the whole model. The values are
small (`init_tensor`: matrices N(0, 0.02), biases 0, layer scales 0.1, norm weights 1), so the
models run without overflow in bf16 and fp32.
"""

from __future__ import annotations

import json
import os
import shutil
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .internvl import SHARD_INDEX

WEIGHT_STD = 0.02  # transformers' initializer_range for Qwen2 and most LMs
LAYER_SCALE = 0.1  # InternViT's layer_scale_init_value
SHARD_BYTES = 512 << 20  # small enough that even the 1B model is several shards (the index path)

# InternVL3's Qwen2.5 tokenizer: 151,643 BPE tokens, then these at 151643.. in this order
# (InternVL3-1B's tokenizer_config.json added_tokens_decoder; True = special).
QWEN2_BPE_SIZE = 151643
INTERNVL_ADDED_TOKENS = (
    ("<|endoftext|>", True), ("<|im_start|>", True), ("<|im_end|>", True), ("<|object_ref_start|>", True),
    ("<|object_ref_end|>", True), ("<|box_start|>", True), ("<|box_end|>", True), ("<|quad_start|>", True),
    ("<|quad_end|>", True), ("<|vision_start|>", True), ("<|vision_end|>", True), ("<|vision_pad|>", True),
    ("<|image_pad|>", True), ("<|video_pad|>", True), ("<tool_call>", False), ("</tool_call>", False),
    ("<|fim_prefix|>", False), ("<|fim_middle|>", False), ("<|fim_suffix|>", False), ("<|fim_pad|>", False),
    ("<|repo_name|>", False), ("<|file_sep|>", False), ("<img>", True), ("</img>", True), ("<IMG_CONTEXT>", True),
    ("<quad>", True), ("</quad>", True), ("<ref>", True), ("</ref>", True), ("<box>", True), ("</box>", True),
)  # fmt: skip
FULL_VOCAB = QWEN2_BPE_SIZE + len(INTERNVL_ADDED_TOKENS)  # 151,674

# OpenGVLab/InternVL3-1B-hf's config.json (InternViT-300M-448px-V2_5 + Qwen2.5-0.5B).
INTERNVL3_1B_HF_CONFIG: dict[str, Any] = {
    "architectures": ["InternVLForConditionalGeneration"],
    "model_type": "internvl",
    "downsample_ratio": 0.5,
    "image_seq_length": 256,
    "image_token_id": 151667,
    "projector_hidden_act": "gelu",
    "vision_feature_layer": -1,
    "vision_feature_select_strategy": "default",
    "torch_dtype": "bfloat16",
    "text_config": {
        "model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"], "hidden_act": "silu",
        "hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24, "num_attention_heads": 14,
        "num_key_value_heads": 2, "vocab_size": FULL_VOCAB, "max_position_embeddings": 32768,
        "max_window_layers": 70, "rope_theta": 1000000.0, "rms_norm_eps": 1e-06, "attention_dropout": 0.0,
        "initializer_range": 0.02, "bos_token_id": 151643, "eos_token_id": 151645, "tie_word_embeddings": False,
        "use_sliding_window": False, "sliding_window": None, "use_cache": True, "torch_dtype": "bfloat16",
    },
    "vision_config": {
        "model_type": "internvl_vision", "architectures": ["InternVisionModel"], "hidden_size": 1024,
        "num_hidden_layers": 24, "num_attention_heads": 16, "intermediate_size": 4096, "image_size": [448, 448],
        "patch_size": [14, 14], "num_channels": 3, "hidden_act": "gelu", "norm_type": "layer_norm",
        "layer_norm_eps": 1e-06, "use_qk_norm": False, "attention_bias": True, "layer_scale_init_value": 0.1,
        "use_absolute_position_embeddings": True, "use_mask_token": False, "use_mean_pooling": True,
        "hidden_dropout_prob": 0.0, "attention_dropout": 0.0, "projection_dropout": 0.0,
        "initializer_range": 1e-10, "initializer_factor": 0.1, "torch_dtype": "bfloat16",
    },
}  # fmt: skip

# OpenGVLab/InternVL3-8B-hf: the same vision tower and projector shape, Qwen2.5-7B as the LLM.
INTERNVL3_8B_HF_CONFIG = {
    **INTERNVL3_1B_HF_CONFIG,
    "text_config": {
        **INTERNVL3_1B_HF_CONFIG["text_config"], "hidden_size": 3584, "intermediate_size": 18944,
        "num_hidden_layers": 28, "num_attention_heads": 28, "num_key_value_heads": 4, "max_window_layers": 28,
    },
}  # fmt: skip

# facebook/VGGT-1B's config.json is its constructor's arguments (PyTorchModelHubMixin). We write
# the aggregator and camera head only (what SpaceMind loads), so the other heads are switched off.
VGGT_1B_HUB_CONFIG = {
    "img_size": 518, "patch_size": 14, "embed_dim": 1024,
    "enable_camera": True, "enable_point": False, "enable_depth": False, "enable_track": False,
}  # fmt: skip

# InternVL's image preprocessing (ImageNet statistics, one 448 px tile per frame).
INTERNVL_PREPROCESSOR = {
    "image_processor_type": "GotOcr2ImageProcessorFast", "do_resize": True, "size": {"height": 448, "width": 448},
    "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
    "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225], "do_convert_rgb": True,
    "crop_to_patches": False, "min_patches": 1, "max_patches": 12,
}  # fmt: skip


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int, ...]
    dtype: torch.dtype

    @property
    def nbytes(self) -> int:
        n = self.dtype.itemsize
        for s in self.shape:
            n *= s
        return n


# ------------------------------------------------------------------------------------------ values
def init_tensor(
    name: str, shape: tuple[int, ...], dtype: torch.dtype, seed: int, std: float = WEIGHT_STD, device: str = "cpu"
) -> torch.Tensor:
    """The random value of tensor `name` (on the CPU): a pure function of (seed, name, shape,
    device), whatever the order tensors are written in. Matrices N(0, std), biases 0, layer scales
    0.1, other vectors (norm weights) 1. `device` only says where the values are drawn (a GPU
    draws a 15 GB model in seconds; its values differ from the CPU's)."""
    if name.endswith(("gamma", "lambda_1", "lambda_2", "ls1", "ls2")):
        return torch.full(shape, LAYER_SCALE, dtype=dtype)
    if len(shape) < 2:
        return torch.zeros(shape, dtype=dtype) if name.endswith("bias") else torch.ones(shape, dtype=dtype)
    gen = torch.Generator(device=device).manual_seed((seed * 1_000_003 + zlib.crc32(name.encode())) & 0x7FFF_FFFF_FFFF_FFFF)
    out = torch.empty(shape, dtype=dtype, device=device)
    out.normal_(0.0, std, generator=gen)
    return out.cpu()


def meta_specs(module: torch.nn.Module, dtype: torch.dtype) -> list[TensorSpec]:
    """Every tensor of `module`'s state dict (built on the meta device) as it is stored."""
    return [TensorSpec(k, tuple(v.shape), dtype if v.is_floating_point() else v.dtype) for k, v in module.state_dict().items()]


def random_tensors(specs: Iterable[TensorSpec], seed: int, device: str = "cpu") -> Iterator[tuple[str, torch.Tensor]]:
    for s in specs:
        yield s.name, init_tensor(s.name, s.shape, s.dtype, seed, device=device)


# ------------------------------------------------------------------------------------------ files
def write_sharded(
    out: Path, tensors: Iterable[tuple[str, torch.Tensor]], *, shard_bytes: int = SHARD_BYTES, total: int
) -> list[str]:
    """Write (name, tensor) pairs into `model-0000i-of-0000n.safetensors` shards of at most
    `shard_bytes` (a larger tensor gets a shard of its own) + the index, as transformers'
    save_pretrained does. `total` is the tensors' byte count (the index says it). Only the shard
    being filled is in memory. Returns the shard names."""
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    shards: list[list[str]] = []
    weight_map: dict[str, int] = {}
    pending: dict[str, torch.Tensor] = {}
    size = 0

    def flush() -> None:
        nonlocal pending, size
        if pending:
            shards.append(list(pending))
            save_file(pending, str(out / f".shard-{len(shards)}.tmp"), metadata={"format": "pt"})
            pending, size = {}, 0

    for name, t in tensors:
        nb = t.numel() * t.element_size()
        if pending and size + nb > shard_bytes:
            flush()
        pending[name] = t.contiguous()
        weight_map[name] = len(shards) + 1
        size += nb
    flush()
    n = len(shards)
    names = [f"model-{i:05d}-of-{n:05d}.safetensors" for i in range(1, n + 1)]
    for i, name in enumerate(names, start=1):
        os.replace(out / f".shard-{i}.tmp", out / name)
    index = {"metadata": {"total_size": total}, "weight_map": {k: names[i - 1] for k, i in sorted(weight_map.items())}}
    (out / SHARD_INDEX).write_text(json.dumps(index, indent=2) + "\n")
    return names


def _write_json(path: Path, obj: dict) -> None:
    path.write_text(json.dumps(obj, indent=2) + "\n")


def _fresh_folder(out: str | os.PathLike) -> Path:
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out} exists and is not an empty folder")
    out.mkdir(parents=True, exist_ok=True)
    return out


# ------------------------------------------------------------------------------------------ tokenizer
def _filler_words(count: int, taken: set[str]) -> Iterator[str]:
    """`count` distinct byte-level tokens (a space + lowercase letters) not in `taken`: the BPE
    rows no merge ever produces, so prompts tokenise as the tiny tokenizer's do while the
    vocabulary has the real size (and random answers decode to pseudo-words)."""
    letters = "abcdefghijklmnopqrstuvwxyz"
    made, i = 0, 0
    while made < count:
        word, j = "", i
        while True:
            word = letters[j % 26] + word
            j = j // 26 - 1
            if j < 0:
                break
        i += 1
        token = "\u0120" + word  # byte-level "Ġ" = a leading space
        if token not in taken:
            made += 1
            yield token


def full_vocab_tokenizer():
    """A byte-level BPE tokenizer with InternVL3's vocabulary size (151,674) and its added tokens
    at their published ids (<|endoftext|> 151643, <|im_end|> 151645, <img> 151665, <IMG_CONTEXT>
    151667 ...). The merges are the tiny tokenizer's (models/tiny.py); the rest of the 151,643 BPE
    rows are unreachable filler words. Built offline in seconds."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from .tiny import SPECIAL_TOKENS, tiny_tokenizer

    tiny = json.loads(tiny_tokenizer().backend_tokenizer.to_str())["model"]
    vocab = {tok: i for tok, i in tiny["vocab"].items() if tok not in SPECIAL_TOKENS}
    vocab = {tok: i for i, tok in enumerate(sorted(vocab, key=vocab.__getitem__))}
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in tiny["merges"]]
    for word in _filler_words(QWEN2_BPE_SIZE - len(vocab), set(vocab)):
        vocab[word] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    for text, special in INTERNVL_ADDED_TOKENS:
        added = AddedToken(text, special=special, normalized=False)
        (tok.add_special_tokens if special else tok.add_tokens)([added])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>", model_max_length=32768
    )
    if len(fast) != FULL_VOCAB or fast.convert_tokens_to_ids("<IMG_CONTEXT>") != 151667:
        raise AssertionError(f"full-vocabulary tokenizer came out with {len(fast)} tokens")  # a tokenizers change
    return fast


# ------------------------------------------------------------------------------------------ InternVL
def internvl_hf_config(raw: dict | None = None):
    from transformers import InternVLConfig

    raw = dict(raw or INTERNVL3_1B_HF_CONFIG)
    # Tying as internvl.load reads it: the LLM's own setting unless the top level says (the -hf
    # configs do not; InternVLConfig alone would tie Qwen2.5's separate lm_head).
    raw.setdefault("tie_word_embeddings", bool((raw.get("text_config") or {}).get("tie_word_embeddings", False)))
    return InternVLConfig(**{k: v for k, v in raw.items() if k not in ("architectures", "model_type")})


def internvl_hf_specs(raw: dict | None = None) -> list[TensorSpec]:
    """The tensors of an -hf folder for config `raw` (default InternVL3-1B-hf), as stored (bf16)."""
    from transformers import InternVLForConditionalGeneration

    cfg = internvl_hf_config(raw)
    with torch.device("meta"):
        model = InternVLForConditionalGeneration(cfg)
    keep = set(dict(model.named_parameters(remove_duplicate=True)))  # tied rows once, buffers never
    return [s for s in meta_specs(model, torch.bfloat16) if s.name in keep]


def write_internvl_hf(
    out: str | os.PathLike,
    *,
    seed: int = 0,
    raw_config: dict | None = None,
    tokenizer=None,
    shard_bytes: int = SHARD_BYTES,
    device: str = "cpu",
) -> Path:
    """An InternVL -hf folder with random bf16 weights: default InternVL3-1B-hf's config and the
    full-vocabulary tokenizer (`full_vocab_tokenizer`); `raw_config` + `tokenizer` for another
    shape (InternVL3-8B-hf, the tiny one)."""
    out = _fresh_folder(out)
    raw = dict(raw_config or INTERNVL3_1B_HF_CONFIG)
    specs = internvl_hf_specs(raw)
    total = sum(s.nbytes for s in specs)
    write_sharded(out, random_tensors(specs, seed, device), shard_bytes=shard_bytes, total=total)
    _write_json(out / "config.json", raw)
    _write_json(out / "preprocessor_config.json", INTERNVL_PREPROCESSOR)
    (tokenizer if tokenizer is not None else full_vocab_tokenizer()).save_pretrained(out)
    return out


def internvl_hf_tensors(folder: str | os.PathLike) -> Iterator[tuple[str, torch.Tensor]]:
    """Every tensor of a sharded folder, shard by shard (one shard's tensors alive at a time)."""
    from safetensors import safe_open

    folder = Path(folder)
    index = json.loads((folder / SHARD_INDEX).read_text())["weight_map"]
    for shard in sorted(set(index.values())):
        with safe_open(str(folder / shard), framework="pt") as fh:
            for key in fh.keys():
                yield key, fh.get_tensor(key)


def write_internvl_original(
    out: str | os.PathLike,
    hf_folder: str | os.PathLike,
    *,
    to_original: Callable[[Iterable[tuple[str, torch.Tensor]]], Iterable[tuple[str, torch.Tensor]]],
    original_config: Callable[[dict], dict],
    shard_bytes: int = SHARD_BYTES,
) -> Path:
    """The weights of the -hf folder `hf_folder` in InternVL's original layout (`vision_model.*`,
    `mlp1.*`, `language_model.model.*`, `language_model.lm_head.*`; a config with vision_config,
    llm_config and auto_map): what OpenGVLab publishes as InternVL3-1B. `to_original` maps
    (hf key, tensor) pairs to original ones (the inverse of transformers' converter) and
    `original_config` the config dict. Read and written shard by shard."""
    out = _fresh_folder(out)
    hf_folder = Path(hf_folder)
    total = json.loads((hf_folder / SHARD_INDEX).read_text())["metadata"]["total_size"]
    write_sharded(out, to_original(internvl_hf_tensors(hf_folder)), shard_bytes=shard_bytes, total=total)
    _write_json(out / "config.json", original_config(json.loads((hf_folder / "config.json").read_text())))
    for f in sorted(hf_folder.iterdir()):
        if f.name.startswith("tokenizer") or f.name in ("special_tokens_map.json", "preprocessor_config.json"):
            shutil.copy2(f, out / f.name)
    return out


def write_internvl_original_from_hf(
    out: str | os.PathLike, hf_folder: str | os.PathLike, *, shard_bytes: int = SHARD_BYTES
) -> Path:
    """InternVL's original layout of the -hf folder `hf_folder` (same weights, bit for bit), by
    the inverse of transformers' converter (`internvl_convert.to_original_layout`,
    `original_config`): what OpenGVLab publishes as e.g. InternVL3-1B."""
    from .internvl_convert import original_config, to_original_layout

    hf = internvl_hf_config(json.loads((Path(hf_folder) / "config.json").read_text())).to_dict()
    return write_internvl_original(
        out, hf_folder, to_original=lambda items: to_original_layout(items, hf),
        original_config=lambda _raw: original_config(hf), shard_bytes=shard_bytes,
    )  # fmt: skip


# ------------------------------------------------------------------------------------------ VGGT
def vggt_specs(config=None) -> list[TensorSpec]:
    """The aggregator + camera head tensors of VGGT (default VGGT-1B), as the hub stores them (fp32)."""
    from .vggt import VGGT, VGGTConfig

    with torch.device("meta"):
        model = VGGT(config or VGGTConfig())
    return meta_specs(model, torch.float32)


def write_vggt_hub(out: str | os.PathLike, *, seed: int = 0, hub_config: dict | None = None, device: str = "cpu") -> Path:
    """facebook/VGGT-1B's folder layout with random fp32 weights: config.json + model.safetensors
    (one file, as the hub has it, written one tensor at a time). `hub_config`: another shape."""
    from .vggt import VGGTConfig

    out = _fresh_folder(out)
    raw = dict(hub_config or VGGT_1B_HUB_CONFIG)
    specs = vggt_specs(VGGTConfig.from_dict(raw))
    write_single_safetensors(
        out / "model.safetensors", specs, lambda s: init_tensor(s.name, s.shape, s.dtype, seed, device=device)
    )
    _write_json(out / "config.json", raw)
    return out


_ST_NAMES = {torch.float32: "F32", torch.bfloat16: "BF16", torch.float16: "F16", torch.int64: "I64"}


def write_single_safetensors(path: Path, specs: list[TensorSpec], value: Callable[[TensorSpec], torch.Tensor]) -> None:
    """One safetensors file written tensor by tensor (header first, then each tensor's bytes), so
    a file larger than memory allows can be written: safetensors' save_file needs all at once."""
    header: dict[str, dict] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for s in sorted(specs, key=lambda s: s.name):
        header[s.name] = {"dtype": _ST_NAMES[s.dtype], "shape": list(s.shape), "data_offsets": [offset, offset + s.nbytes]}
        offset += s.nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # tensor data 8-byte aligned, as safetensors writes it
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(len(raw).to_bytes(8, "little"))
        fh.write(raw)
        for s in sorted(specs, key=lambda s: s.name):
            t = value(s).contiguous()
            fh.write(t.reshape(-1).view(torch.uint8).numpy())  # type: ignore[arg-type]  # numpy's stubs omit ndarray's buffer protocol
    os.replace(tmp, path)
