"""Tiny random-weight SpaceMind checkpoints: the real architectures at toy sizes.

Used by every test and by the README's quickstart: the whole pipeline (decode, preprocess, VGGT,
InternViT, CGMF, Qwen2 LLM, prefix sharing, caching) runs on a CPU in seconds.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from .cgmf import CGMF, CGMFConfig
from .preprocess import PreprocessConfig
from .vggt import VGGT, VGGTConfig

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<img>", "</img>", "<IMG_CONTEXT>"]

# Text the tiny BPE is trained on: enough of the benchmarks' wording that prompts tokenise into
# words rather than bytes. Changing it changes every tiny checkpoint.
_CORPUS = [
    "These are frames of a video.",
    "Please answer the question using a single word or phrase.",
    "Answer with the option's letter from the given choices directly.",
    "Options: A. B. C. D. left right back front-left front-right back-left back-right",
    "How many chair table sofa lamp bed tv plant cabinet are in this room?",
    "Measuring from the closest point of each object, what is the distance between the",
    "What is the length of the longest dimension (length, width, or height) of the measured in centimeters?",
    "What is the size of this room (in square meters)? If multiple rooms are shown, estimate the size of the combined space.",
    "which of these objects is the closest to the If I am standing by the and facing the is the to my left or right?",
    "What will be the first-time appearance order of the following categories in the video:",
    "You are a robot beginning at the and facing the. You want to navigate to the. Turn left turn right go forward",
    "Describe the scene. What colour is the largest object? red green blue yellow white black",
    "0 1 2 3 4 5 6 7 8 9 10 0.5 1.5 2.5 meters centimeters square",
    "system user assistant Frame",
]


def tiny_tokenizer():
    """A byte-level BPE tokenizer (like Qwen2's) with InternVL's special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=512,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS * 4, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        model_max_length=8192,  # the tiny LLM's context (max_position_embeddings)
    )


def tiny_internvl_config(tokenizer):
    from transformers import InternVLConfig

    vocab = len(tokenizer)
    return InternVLConfig(
        vision_config=dict(
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=64,
            image_size=64,
            patch_size=4,  # 16x16 patches -> pixel shuffle 0.5 -> 64 tokens per frame
            initializer_range=0.1,
        ),
        text_config=dict(
            model_type="qwen2",
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            vocab_size=vocab,
            max_position_embeddings=8192,
            # Wider than transformers' default 0.02 so attention is peaked and answers depend on
            # the frames and the question (a near-uniform toy LM says the same thing everywhere).
            initializer_range=0.3,
            tie_word_embeddings=False,
            eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
            pad_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
        ),
        image_token_id=tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>"),
        image_seq_length=64,
        downsample_ratio=0.5,
        tie_word_embeddings=False,
    )


def tiny_vggt_config() -> VGGTConfig:
    return VGGTConfig(
        img_size=56,
        patch_size=14,
        embed_dim=32,
        depth=2,
        num_heads=4,
        patch_embed="dinov2",
        patch_embed_depth=2,
        patch_embed_heads=4,
        camera_trunk_depth=2,
        camera_num_heads=4,
    )


def _randomise_scales(module: torch.nn.Module, generator: torch.Generator) -> None:
    """LayerScale/norm parameters start at constants; perturb them so every weight matters."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith("gamma") or ("norm" in name and name.endswith("weight")):
                p.add_(torch.randn(p.shape, generator=generator) * 0.1)


def build_tiny(seed: int = 0):
    """(SpaceMindConfig, VGGT, InternVL model, tokenizer, CGMF) with seeded random weights."""
    from transformers import GenerationConfig, InternVLForConditionalGeneration

    from .checkpoint import SpaceMindConfig

    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    tokenizer = tiny_tokenizer()
    icfg = tiny_internvl_config(tokenizer)
    model = InternVLForConditionalGeneration(icfg).eval()
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    model.generation_config = GenerationConfig(
        eos_token_id=[eos], pad_token_id=tokenizer.pad_token_id, do_sample=False, max_new_tokens=16
    )
    with torch.no_grad():
        # An untrained LM picks EOS as often as any token, and byte fragments that decode to
        # nothing printable; make both rarer so toy answers read as text.
        model.lm_head.weight[eos].mul_(0.25)
        for tid in range(len(tokenizer)):
            text = tokenizer.decode([tid])
            if "\ufffd" in text or not text.strip() or not text.isprintable():
                model.lm_head.weight[tid].mul_(0.1)

    vggt = VGGT(tiny_vggt_config()).eval()
    _randomise_scales(vggt, generator)

    cgmf_cfg = CGMFConfig(d_v=64, d_s=64, d_a=32, num_heads=4, hidden=32, init="random")
    fusion = CGMF(cgmf_cfg).eval()
    config = SpaceMindConfig(
        cgmf=cgmf_cfg,
        preprocess=PreprocessConfig(vggt_size=56, vit_size=64),
    )
    return config, vggt, model, tokenizer, fusion


def write_tiny_checkpoint(out_dir: str | Path, seed: int = 0) -> Path:
    from .spacemind import SpaceMind

    config, vggt, model, tokenizer, fusion = build_tiny(seed)
    sm = SpaceMind(config, vggt, model, tokenizer, fusion)
    out = Path(out_dir)
    sm.save_pretrained(out)
    meta = {"tiny": True, "seed": seed}
    (out / "TINY.json").write_text(json.dumps(meta) + "\n")
    return out
