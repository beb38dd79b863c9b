"""InternVL3 1B, 2B, 8B and 14B in transformers' layout (the `-hf` repositories) at their published
shapes: the configs load through our loader's config path and build (on the meta device: no
weights in memory) with the parameter counts the architecture implies and the sizes the
releases have on disk. The real-bytes part (sharded safetensors with an index through assemble,
inspect and load) runs at toy size in test_internvl_convert.py."""

from __future__ import annotations

import json

import pytest

from spacemind_cli.models import internvl
from spacemind_cli.models.components import internvl_config, meta_internvl

# vision_config of every InternVL3 up to 14B: InternViT-300M-448px-V2.5, as the -hf config.json has it
INTERNVIT_300M_HF = {
    "architectures": ["InternVisionModel"], "attention_bias": True, "attention_dropout": 0.0, "dropout": 0.0,
    "hidden_act": "gelu", "hidden_dropout_prob": 0.0, "hidden_size": 1024, "image_size": [448, 448],
    "initializer_factor": 0.1, "initializer_range": 1e-10, "intermediate_size": 4096, "layer_norm_eps": 1e-06,
    "layer_scale_init_value": 0.1, "model_type": "internvl_vision", "norm_type": "layer_norm",
    "num_attention_heads": 16, "num_channels": 3, "num_hidden_layers": 24, "patch_size": [14, 14],
    "projection_dropout": 0.0, "torch_dtype": "bfloat16", "use_absolute_position_embeddings": True,
    "use_mask_token": False, "use_mean_pooling": True, "use_qk_norm": False,
}  # fmt: skip

# Qwen2.5 text configs: (hidden, layers, heads, kv heads, intermediate); all with InternVL's
# 151,674-token vocabulary, rope theta 1e6, untied lm_head. Sizes on disk (bf16, GB) from
# InternVL's documentation.
QWEN25 = {
    "1B": ((896, 24, 14, 2, 4864), 1.8),  # Qwen2.5-0.5B
    "2B": ((1536, 28, 12, 2, 8960), 4.2),  # Qwen2.5-1.5B
    "8B": ((3584, 28, 28, 4, 18944), 15.9),  # Qwen2.5-7B
    "14B": ((5120, 48, 40, 8, 13824), 30.2),  # Qwen2.5-14B
}
VOCAB = 151674


def hf_config(size: str) -> dict:
    (hidden, layers, heads, kv, inter), _ = QWEN25[size]
    text = {
        "architectures": ["Qwen2ForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 151643,
        "eos_token_id": 151645, "hidden_act": "silu", "hidden_size": hidden, "initializer_range": 0.02,
        "intermediate_size": inter, "max_position_embeddings": 32768, "max_window_layers": 70, "model_type": "qwen2",
        "num_attention_heads": heads, "num_hidden_layers": layers, "num_key_value_heads": kv, "rms_norm_eps": 1e-06,
        "rope_scaling": {"factor": 2.0, "rope_type": "dynamic", "type": "dynamic"}, "rope_theta": 1000000.0,
        "sliding_window": None, "torch_dtype": "bfloat16", "use_cache": True, "use_sliding_window": False,
        "vocab_size": VOCAB,
    }  # fmt: skip
    return {
        "architectures": ["InternVLForConditionalGeneration"], "downsample_ratio": 0.5, "image_seq_length": 256,
        "image_token_id": 151667, "model_type": "internvl", "projector_hidden_act": "gelu", "text_config": text,
        "torch_dtype": "bfloat16", "transformers_version": "4.52.0.dev0", "vision_config": INTERNVIT_300M_HF,
        "vision_feature_layer": -1, "vision_feature_select_strategy": "default",
    }  # fmt: skip


def expected_counts(size: str) -> dict[str, int]:
    """Parameter counts from the architecture, written out."""
    (h, layers, heads, kv, inter), _ = QWEN25[size]
    hd = h // heads
    attn = (h * h + h) + 2 * (h * kv * hd + kv * hd) + h * h  # q, k, v with bias; o without
    mlp = 3 * h * inter
    llm = VOCAB * h + layers * (attn + mlp + 2 * h) + h + VOCAB * h  # embeddings, layers, norm, lm_head
    d = 1024
    vlayer = 3 * (d * d + d) + (d * d + d) + (d * 4096 + 4096) + (4096 * d + d) + 4 * d + 2 * d
    vision = 24 * vlayer + (3 * 14 * 14 * d + d) + d + (32 * 32 + 1) * d  # layers, patch conv, CLS, positions
    projector = 2 * 4 * d + (4 * d * h + h) + (h * h + h)  # LayerNorm(4096), linear_1, linear_2
    return {"vision": vision, "projector": projector, "llm": llm}


@pytest.mark.parametrize("size", list(QWEN25))
def test_published_hf_shapes_load_with_the_right_parameter_counts(tmp_path, size):
    (tmp_path / "config.json").write_text(json.dumps(hf_config(size)))
    config, raw = internvl_config(tmp_path)  # what assemble and inspect read
    loaded = internvl._config(str(tmp_path), True)  # what the loader builds the model from
    assert not loaded.tie_word_embeddings  # the top level does not say: Qwen2.5's own lm_head, as the LLM's config says
    assert (config.image_token_id, config.image_seq_length, config.downsample_ratio) == (151667, 256, 0.5)
    assert config.text_config.vocab_size == VOCAB and config.text_config.rope_parameters["rope_theta"] == 1e6
    model = meta_internvl(loaded)
    inner = model.model
    counts = {
        "vision": sum(p.numel() for p in inner.vision_tower.parameters()),
        "projector": sum(p.numel() for p in inner.multi_modal_projector.parameters()),
        "llm": sum(p.numel() for p in inner.language_model.parameters()) + model.lm_head.weight.numel(),
    }
    assert counts == expected_counts(size)
    assert model.lm_head.weight is not inner.language_model.embed_tokens.weight  # untied: counted twice above
    # with 256 tokens per 448 px frame and the sizes on disk of the bf16 releases
    assert internvl.tokens_per_image(model) == 256
    _, disk_gb = QWEN25[size]
    assert abs(2 * sum(counts.values()) / 1e9 - disk_gb) / disk_gb < 0.05
