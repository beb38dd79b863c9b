"""InternVL's original layout -> transformers' layout (models/internvl_convert.py).

The original-layout folders here are written by the test from a transformers-layout model
through the inverse of the converter's key map (`to_original_layout`, `original_config`); both
folders must then give identical logits and answers.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from spacemind_cli.errors import CheckpointError
from spacemind_cli.models import internvl
from spacemind_cli.models.internvl_convert import (
    KEY_MAP,
    convert_folder,
    convert_items,
    detect_layout,
    hf_config_dict,
    merge_internlm2_wqkv,
    merge_vision_qkv,
    original_config,
    split_internlm2_wqkv,
    split_vision_qkv,
    to_original_layout,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ----------------------------------------------------------------------------------- splits
def test_vision_qkv_split_known_values():
    w = torch.arange(12.0).reshape(6, 2)  # d = 2: rows 0-1 q, 2-3 k, 4-5 v
    parts = split_vision_qkv(w, 2)
    assert parts["q"].tolist() == [[0, 1], [2, 3]]
    assert parts["k"].tolist() == [[4, 5], [6, 7]]
    assert parts["v"].tolist() == [[8, 9], [10, 11]]
    b = parts_b = split_vision_qkv(torch.tensor([1.0, 2, 3, 4, 5, 6]), 2)
    assert (b["q"].tolist(), b["k"].tolist(), b["v"].tolist()) == ([1, 2], [3, 4], [5, 6])
    assert torch.equal(merge_vision_qkv(parts), w) and torch.equal(merge_vision_qkv(parts_b), torch.tensor([1.0, 2, 3, 4, 5, 6]))
    with pytest.raises(ValueError, match="3 x 4"):
        split_vision_qkv(w, 4)


def test_internlm2_wqkv_split_per_kv_group_known_values():
    # 4 query heads, 2 KV heads, head_dim 1: rows per KV group are [q, q, k, v]:
    # group 0 = rows 0..3 (q0 q1 k0 v0), group 1 = rows 4..7 (q2 q3 k1 v1)
    w = torch.arange(8.0)[:, None] * torch.tensor([[1.0, 10.0]])  # [8, hidden 2]
    parts = split_internlm2_wqkv(w, num_heads=4, num_kv_heads=2, head_dim=1)
    assert parts["q"][:, 0].tolist() == [0, 1, 4, 5]
    assert parts["k"][:, 0].tolist() == [2, 6]
    assert parts["v"][:, 0].tolist() == [3, 7]
    assert parts["q"][:, 1].tolist() == [0, 10, 40, 50]
    # head_dim 2, 2 query heads, 1 KV head: rows [q0 q0 q1 q1 k k v v]
    w2 = torch.arange(8.0)[:, None]
    p2 = split_internlm2_wqkv(w2, num_heads=2, num_kv_heads=1, head_dim=2)
    assert (p2["q"][:, 0].tolist(), p2["k"][:, 0].tolist(), p2["v"][:, 0].tolist()) == ([0, 1, 2, 3], [4, 5], [6, 7])
    # a bias splits the same way
    pb = split_internlm2_wqkv(torch.arange(8.0), num_heads=4, num_kv_heads=2, head_dim=1)
    assert (pb["q"].tolist(), pb["k"].tolist(), pb["v"].tolist()) == ([0, 1, 4, 5], [2, 6], [3, 7])
    assert torch.equal(merge_internlm2_wqkv(parts, 4, 2, 1), w)
    assert torch.equal(merge_internlm2_wqkv(p2, 2, 1, 2), w2)
    with pytest.raises(ValueError, match="rows"):
        split_internlm2_wqkv(w, num_heads=4, num_kv_heads=2, head_dim=2)


def test_key_map_matches_transformers_converter_renames():
    """The whole-key rules give the names transformers' regex renames give (then its llava prefixes)."""
    hf = {"text_config": {"num_attention_heads": 4, "num_key_value_heads": 2, "hidden_size": 8, "model_type": "qwen2"},
          "vision_config": {"hidden_size": 2}}
    t = torch.zeros(6, 2)
    cases = {
        "vision_model.embeddings.class_embedding": "vision_tower.embeddings.cls_token",
        "vision_model.embeddings.position_embedding": "vision_tower.embeddings.position_embeddings",
        "vision_model.embeddings.patch_embedding.weight": "vision_tower.embeddings.patch_embeddings.projection.weight",
        "vision_model.encoder.layers.11.ls1": "vision_tower.encoder.layer.11.lambda_1",
        "vision_model.encoder.layers.11.ls2": "vision_tower.encoder.layer.11.lambda_2",
        "vision_model.encoder.layers.3.norm1.bias": "vision_tower.encoder.layer.3.layernorm_before.bias",
        "vision_model.encoder.layers.3.norm2.weight": "vision_tower.encoder.layer.3.layernorm_after.weight",
        "vision_model.encoder.layers.3.attn.proj.bias": "vision_tower.encoder.layer.3.attention.projection_layer.bias",
        "vision_model.encoder.layers.3.attn.q_norm.weight": "vision_tower.encoder.layer.3.attention.q_norm.weight",
        "vision_model.encoder.layers.3.mlp.fc2.weight": "vision_tower.encoder.layer.3.mlp.fc2.weight",
        "mlp1.0.weight": "multi_modal_projector.layer_norm.weight",
        "mlp1.1.bias": "multi_modal_projector.linear_1.bias",
        "mlp1.3.weight": "multi_modal_projector.linear_2.weight",
        "language_model.model.layers.0.self_attn.q_proj.bias": "language_model.model.layers.0.self_attn.q_proj.bias",
        "language_model.model.embed_tokens.weight": "language_model.model.embed_tokens.weight",
        "language_model.lm_head.weight": "language_model.lm_head.weight",
    }
    for old, new in cases.items():
        assert [k for k, _ in convert_items([(old, t)], hf, "llm")] == [new], old
    split = [k for k, _ in convert_items([("vision_model.encoder.layers.5.attn.qkv.bias", torch.zeros(6))], hf, "llm")]
    assert split == [f"vision_tower.encoder.layer.5.attention.{p}_proj.bias" for p in "qkv"]
    internlm2 = {
        "language_model.model.tok_embeddings.weight": "language_model.model.embed_tokens.weight",
        "language_model.model.layers.2.attention.wo.weight": "language_model.model.layers.2.self_attn.o_proj.weight",
        "language_model.model.layers.2.feed_forward.w1.weight": "language_model.model.layers.2.mlp.gate_proj.weight",
        "language_model.model.layers.2.feed_forward.w2.weight": "language_model.model.layers.2.mlp.down_proj.weight",
        "language_model.model.layers.2.feed_forward.w3.weight": "language_model.model.layers.2.mlp.up_proj.weight",
        "language_model.model.layers.2.attention_norm.weight": "language_model.model.layers.2.input_layernorm.weight",
        "language_model.model.layers.2.ffn_norm.weight": "language_model.model.layers.2.post_attention_layernorm.weight",
        "language_model.model.norm.weight": "language_model.model.norm.weight",
        "language_model.output.weight": "language_model.lm_head.weight",
    }
    for old, new in internlm2.items():
        assert [k for k, _ in convert_items([(old, t)], hf, "llm_internlm2")] == [new], old
    wqkv = [k for k, _ in convert_items([("language_model.model.layers.1.attention.wqkv.weight", torch.zeros(16, 8))], hf, "llm_internlm2")]
    assert wqkv == [f"language_model.model.layers.1.self_attn.{p}_proj.weight" for p in "qkv"]
    with pytest.raises(CheckpointError, match="vision_model.encoder.layers.0.attn.rope"):
        list(convert_items([("vision_model.encoder.layers.0.attn.rope", t)], hf, "llm"))
    assert set(KEY_MAP) == {"vision", "projector", "llm", "llm_internlm2"}


# ----------------------------------------------------------------------------------- folders
def _perturb_constants(model: torch.nn.Module, seed: int) -> None:
    """Norms, layer scales, biases and the CLS token start as constants: make every tensor
    distinct so a swapped rename (ls1/ls2, norm1/norm2, q/k/v) changes the logits."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.numel() and bool(p.min() == p.max()):
                p.add_(torch.randn(p.shape, generator=g) * 0.2)


def _twin_model(llm: str, seed: int = 0):
    """(transformers InternVL model, tokenizer) at toy size: Qwen2 (InternVL3) with InternViT-300M-style
    attention (qkv bias, no qk norm), or InternLM2 (LLaMA-style, InternVL2.5) / Qwen3 (InternVL3.5)
    with InternViT-6B-style attention (qk norm, RMS norm)."""
    from transformers import InternVLForConditionalGeneration

    from spacemind_cli.models.tiny import tiny_internvl_config, tiny_tokenizer

    torch.manual_seed(seed)
    tok = tiny_tokenizer()
    cfg = tiny_internvl_config(tok).to_dict()
    if llm == "qwen2":
        cfg["vision_config"].update(attention_bias=True, use_qk_norm=False)
    else:
        cfg["vision_config"].update(attention_bias=False, use_qk_norm=True, norm_type="rms_norm")
        text = {k: cfg["text_config"][k] for k in (
            "hidden_size", "intermediate_size", "num_hidden_layers", "vocab_size", "max_position_embeddings",
            "initializer_range", "tie_word_embeddings", "eos_token_id", "pad_token_id")}  # fmt: skip
        model_type = {"internlm2": "llama", "qwen3": "qwen3"}[llm]  # InternLM2 becomes a LlamaConfig
        cfg["text_config"] = {**text, "model_type": model_type, "num_attention_heads": 4, "num_key_value_heads": 2}
    from transformers import InternVLConfig

    model = InternVLForConditionalGeneration(InternVLConfig(**cfg)).eval()
    _perturb_constants(model, seed)
    return model, tok


def _write_shards(state: dict[str, torch.Tensor], folder: Path, n: int, stem: str = "model") -> None:
    keys = list(state)
    size = -(-len(keys) // n)
    weight_map = {}
    for i in range(n):
        name = f"{stem}-{i + 1:05d}-of-{n:05d}.safetensors"
        part = {k: state[k].contiguous() for k in keys[i * size : (i + 1) * size]}
        save_file(part, str(folder / name), metadata={"format": "pt"})
        weight_map.update({k: name for k in part})
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))


def write_twins(root: Path, llm: str, dtype=torch.bfloat16) -> tuple[Path, Path]:
    """(transformers-layout folder, original-layout folder) of one random model."""
    model, tok = _twin_model(llm)
    model = model.to(dtype)
    hf_dir, orig_dir = root / f"{llm}-hf", root / f"{llm}-original"
    model.save_pretrained(hf_dir, max_shard_size="200KB")
    tok.save_pretrained(hf_dir)
    orig_dir.mkdir(parents=True)
    state = dict(to_original_layout(model.state_dict().items(), model.config))
    _write_shards(state, orig_dir, 3)
    (orig_dir / "config.json").write_text(json.dumps(original_config(model.config), indent=2))
    tok.save_pretrained(orig_dir)
    # remote code that must never run (nor be copied): importing it would raise
    (orig_dir / "modeling_internvl_chat.py").write_text("raise RuntimeError('remote code ran')\n")
    return hf_dir, orig_dir


def _logits(folder: Path) -> torch.Tensor:
    model, tok = internvl.load(str(folder), device="cpu", dtype=torch.float32)
    cfg = model.config
    ids = tok("Frame1: ", add_special_tokens=False)["input_ids"]
    ids = ids + tok.convert_tokens_to_ids(["<img>"]) + [cfg.image_token_id] * cfg.image_seq_length
    ids = ids + tok("</img>\nHow many chair are in this room?", add_special_tokens=False)["input_ids"]
    pixels = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids]), pixel_values=pixels).logits


@pytest.mark.parametrize("llm", ["qwen2", "internlm2", "qwen3"])
def test_original_layout_converts_to_identical_logits(tmp_path, llm):
    hf_dir, orig_dir = write_twins(tmp_path, llm)
    raw = json.loads((orig_dir / "config.json").read_text())
    assert "auto_map" in raw and "llm_config" in raw and raw["template"] == "internvl2_5"
    keys = set()
    for f in orig_dir.glob("*.safetensors"):
        keys |= set(load_file(str(f)))
    assert "mlp1.1.weight" in keys and "vision_model.encoder.layers.0.attn.qkv.weight" in keys
    if llm == "internlm2":
        assert "language_model.model.layers.0.attention.wqkv.weight" in keys and "language_model.output.weight" in keys
    else:
        assert "language_model.lm_head.weight" in keys

    assert detect_layout(hf_dir) == "transformers" and detect_layout(orig_dir) == "original"
    out = tmp_path / "converted"
    convert_folder(orig_dir, out)
    assert not (out / "modeling_internvl_chat.py").exists()
    converted = {}
    for f in sorted(out.glob("*.safetensors")):
        converted.update(load_file(str(f)))
    assert len(list(out.glob("*.safetensors"))) == 3  # shard by shard, one output per input shard
    index = json.loads((out / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"]) == set(converted)
    reference = {}
    for f in hf_dir.glob("*.safetensors"):
        reference.update(load_file(str(f)))
    assert set(converted) == set(reference)
    for k, v in reference.items():
        assert converted[k].dtype == torch.bfloat16 and torch.equal(converted[k], v), k

    a, b = _logits(hf_dir), _logits(out)
    assert torch.equal(a, b)
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model_type"] == "internvl" and "auto_map" not in cfg and "auto_map" not in cfg["vision_config"]
    assert cfg["image_seq_length"] == 64 and cfg["tie_word_embeddings"] is False
    if llm == "internlm2":
        # the converter's LLaMA rule: generation ends at <|im_end|>
        from spacemind_cli.models.tiny import tiny_tokenizer

        im_end = tiny_tokenizer().convert_tokens_to_ids("<|im_end|>")
        assert json.loads((out / "generation_config.json").read_text())["eos_token_id"] == im_end


def test_a_swapped_rename_changes_the_logits(tmp_path):
    """The logits comparison sees a wrong map: ls1 and ls2 exchanged in one layer."""
    hf_dir, orig_dir = write_twins(tmp_path, "qwen2", dtype=torch.float32)
    for f in orig_dir.glob("*.safetensors"):
        state = load_file(str(f))
        a, b = "vision_model.encoder.layers.0.ls1", "vision_model.encoder.layers.0.ls2"
        if a in state and b in state:
            state[a], state[b] = state[b], state[a]
            save_file(state, str(f), metadata={"format": "pt"})
            break
    else:
        pytest.fail("ls1 and ls2 of layer 0 not in one shard")
    convert_folder(orig_dir, tmp_path / "converted")
    assert not torch.equal(_logits(hf_dir), _logits(tmp_path / "converted"))


# ----------------------------------------------------------------------------------- configs
INTERNVIT_300M = {
    "architectures": ["InternVisionModel"], "attention_dropout": 0.0, "drop_path_rate": 0.1, "dropout": 0.0,
    "hidden_act": "gelu", "hidden_size": 1024, "image_size": 448, "initializer_factor": 0.1,
    "initializer_range": 1e-10, "intermediate_size": 4096, "layer_norm_eps": 1e-06, "model_type": "intern_vit_6b",
    "norm_type": "layer_norm", "num_attention_heads": 16, "num_channels": 3, "num_hidden_layers": 24,
    "patch_size": 14, "qk_normalization": False, "qkv_bias": True, "use_flash_attn": True, "use_moe": False,
    "num_experts": 8, "moe_coeff_ratio": 0.5, "capacity_factor": 1.2, "torch_dtype": "bfloat16",
    "auto_map": {"AutoConfig": "configuration_intern_vit.InternVisionConfig"},
}  # fmt: skip
QWEN25_05B = {
    "architectures": ["Qwen2ForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 151643, "eos_token_id": 151643,
    "hidden_act": "silu", "hidden_size": 896, "initializer_range": 0.02, "intermediate_size": 4864,
    "max_position_embeddings": 32768, "max_window_layers": 70, "model_type": "qwen2", "moe_config": None,
    "num_attention_heads": 14, "num_hidden_layers": 24, "num_key_value_heads": 2, "rms_norm_eps": 1e-06,
    "rope_scaling": {"factor": 2.0, "rope_type": "dynamic", "type": "dynamic"}, "rope_theta": 1000000.0,
    "sliding_window": None, "torch_dtype": "bfloat16", "use_bfloat16": True, "use_cache": False,
    "use_sliding_window": False, "vocab_size": 151674, "_name_or_path": "./pretrained/Qwen2.5-0.5B-Instruct",
}  # fmt: skip
# InternVL3-1B's config.json as OpenGVLab publishes it (remote-code layout)
INTERNVL3_1B_ORIGINAL = {
    "architectures": ["InternVLChatModel"],
    "auto_map": {"AutoConfig": "configuration_internvl_chat.InternVLChatConfig",
                 "AutoModel": "modeling_internvl_chat.InternVLChatModel"},
    "downsample_ratio": 0.5, "dynamic_image_size": True, "force_image_size": 448, "llm_config": QWEN25_05B,
    "max_dynamic_patch": 12, "min_dynamic_patch": 1, "model_type": "internvl_chat", "ps_version": "v2",
    "select_layer": -1, "template": "internvl2_5", "tie_word_embeddings": False, "use_thumbnail": True,
    "vision_config": INTERNVIT_300M,
}  # fmt: skip


def test_published_original_config_translates_as_transformers_converter_does():
    hf = hf_config_dict(INTERNVL3_1B_ORIGINAL, image_token_id=151667, eos_token_id=151645, where="cfg")
    v, t = hf["vision_config"], hf["text_config"]
    assert v["use_qk_norm"] is False and v["attention_bias"] is True and v["use_absolute_position_embeddings"] is True
    for dropped in ("qk_normalization", "qkv_bias", "auto_map", "use_flash_attn", "num_experts", "drop_path_rate", "capacity_factor"):
        assert dropped not in v, dropped
    assert "moe_config" not in t and "use_bfloat16" not in t and "_name_or_path" not in t or t["_name_or_path"] == ""
    assert t["model_type"] == "qwen2" and t["eos_token_id"] == 151645 and t["use_cache"] is True
    assert (t["hidden_size"], t["num_hidden_layers"], t["num_attention_heads"], t["num_key_value_heads"]) == (896, 24, 14, 2)
    assert t["vocab_size"] == 151674 and t["rope_parameters"]["rope_theta"] == 1000000.0
    assert hf["image_token_id"] == 151667 and hf["image_seq_length"] == 256 and hf["downsample_ratio"] == 0.5
    assert hf["model_type"] == "internvl" and hf["tie_word_embeddings"] is False
    from transformers import InternVLConfig, InternVLForConditionalGeneration

    with torch.device("meta"):
        model = InternVLForConditionalGeneration(InternVLConfig(**hf))
    vision = sum(p.numel() for p in model.model.vision_tower.parameters())
    assert vision == 24 * 12_598_272 + 603_136 + 1024 + 1025 * 1024  # InternViT-300M: layers, patch conv, CLS, positions
    with pytest.raises(CheckpointError, match="ps_version"):
        hf_config_dict({**INTERNVL3_1B_ORIGINAL, "ps_version": "v1"}, image_token_id=1, eos_token_id=2, where="cfg")
    with pytest.raises(CheckpointError, match="MixtralForCausalLM"):
        bad = {**INTERNVL3_1B_ORIGINAL, "llm_config": {**QWEN25_05B, "architectures": ["MixtralForCausalLM"]}}
        hf_config_dict(bad, image_token_id=1, eos_token_id=2, where="cfg")


def test_detect_layout_names_a_folder_of_neither_layout(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llava"}))
    with pytest.raises(CheckpointError, match=rf"{tmp_path} is neither .* model_type is 'llava'"):
        detect_layout(tmp_path)


# ----------------------------------------------------------------------------------- assemble
def test_assemble_takes_the_original_layout_and_answers_as_its_twin(tmp_path, examples):
    """Through the CLI: both layouts assembled (plain InternVL, no VGGT) answer identically."""
    from typer.testing import CliRunner

    from spacemind_cli.cli.main import app
    from spacemind_cli.models.inspect import inspect
    from spacemind_cli.models.preprocess import prepare
    from spacemind_cli.models.spacemind import SpaceMind
    from spacemind_cli.scenes import Sampling, discover_scenes, load_clip

    hf_dir, orig_dir = write_twins(tmp_path, "qwen2")
    index = json.loads((hf_dir / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 1  # transformers' layout sharded with an index, as published
    runner = CliRunner()
    for name, folder in (("from-hf", hf_dir), ("from-original", orig_dir)):
        res = runner.invoke(app, ["checkpoint", "assemble", str(tmp_path / name), "--base", str(folder), "--fusion", "none"])
        assert res.exit_code == 0, res.output
    converted = tmp_path / "from-original" / "internvl"
    assert (converted / "model.safetensors.index.json").is_file() and not (converted / "modeling_internvl_chat.py").exists()
    report = inspect(tmp_path / "from-original")
    assert report["missing"] == []
    assert [c["parameters"] for c in report["components"]] == [c["parameters"] for c in inspect(tmp_path / "from-hf")["components"]]

    questions = ["How many chair are in this room?", "Describe the scene."]
    a, b = SpaceMind.from_pretrained(tmp_path / "from-hf"), SpaceMind.from_pretrained(tmp_path / "from-original")
    clip = prepare(load_clip(discover_scenes(examples / "videos")[0], Sampling(2)).frames, a.config.preprocess)
    enc_a, enc_b = a.encode(clip), b.encode(clip)
    assert torch.equal(enc_a.internvit, enc_b.internvit)
    assert a.answer(enc_a, questions) == b.answer(enc_b, questions)

    (tmp_path / "llava").mkdir()
    (tmp_path / "llava" / "config.json").write_text(json.dumps({"model_type": "llava"}))
    res = runner.invoke(app, ["checkpoint", "assemble", str(tmp_path / "x"), "--base", str(tmp_path / "llava"), "--fusion", "none"])
    assert res.exit_code == 3 and "is neither transformers' InternVL layout" in res.output
    assert len(res.output.strip().splitlines()) == 1
