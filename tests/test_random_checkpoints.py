"""The random full-shape checkpoint writer (models/random_checkpoints.py): published layouts and
shapes, values that do not depend on how the files are cut, folders the loaders take strictly.
Full shapes are checked on the meta device; files are written at the tiny shapes."""

from __future__ import annotations

import json

import pytest
import torch

from spacemind_cli.models import random_checkpoints as rc
from spacemind_cli.models.tiny import tiny_internvl_config, tiny_tokenizer, tiny_vggt_config


@pytest.fixture(scope="module")
def tiny_raw():
    tok = tiny_tokenizer()
    return tiny_internvl_config(tok).to_dict(), tok


def _tensors(folder):
    from safetensors import safe_open

    out = {}
    for f in sorted(folder.glob("*.safetensors")):
        with safe_open(str(f), framework="pt") as fh:
            out.update({k: fh.get_tensor(k) for k in fh.keys()})
    return out


def test_full_vocab_tokenizer_has_internvl3s_size_and_special_ids():
    tok = rc.full_vocab_tokenizer()
    assert len(tok) == 151674
    ids = {t: tok.convert_tokens_to_ids(t) for t in ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<img>", "</img>", "<IMG_CONTEXT>", "</box>")}
    assert ids == {"<|endoftext|>": 151643, "<|im_start|>": 151644, "<|im_end|>": 151645, "<img>": 151665,
                   "</img>": 151666, "<IMG_CONTEXT>": 151667, "</box>": 151673}
    assert tok.eos_token_id == 151645 and tok.pad_token_id == 151643
    text = "How many chair(s) are in this room?"
    ids = tok(f"<img><IMG_CONTEXT></img>{text}", add_special_tokens=False)["input_ids"]
    assert ids[:3] == [151665, 151667, 151666] and tok.decode(ids[3:]) == text
    assert len(ids) < 20  # words, not bytes: the tiny tokenizer's merges are there
    # the filler rows decode to text (random answers read as pseudo-words)
    assert tok.decode([100_000]).strip().isalpha()


def test_internvl3_1b_hf_shape_on_meta():
    specs = {s.name: s for s in rc.internvl_hf_specs()}
    assert sum(s.nbytes for s in specs.values()) // 2 == 938_193_024  # InternVL3-1B: 0.94 B parameters, bf16
    assert specs["model.language_model.embed_tokens.weight"].shape == (151674, 896)
    assert specs["lm_head.weight"].shape == (151674, 896)  # Qwen2.5's own LM head, not tied
    assert specs["model.vision_tower.encoder.layer.23.attention.q_proj.weight"].shape == (1024, 1024)
    assert specs["model.multi_modal_projector.linear_1.weight"].shape == (896, 4096)
    assert {s.dtype for s in specs.values()} == {torch.bfloat16}


def test_vggt_1b_hub_shape_on_meta():
    from spacemind_cli.models.vggt import VGGT, VGGTConfig

    specs = rc.vggt_specs(VGGTConfig.from_dict(rc.VGGT_1B_HUB_CONFIG))
    with torch.device("meta"):
        model = VGGT(VGGTConfig())
    assert {s.name: s.shape for s in specs} == {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert {s.dtype for s in specs} == {torch.float32}


def test_values_are_a_function_of_the_name_not_of_the_sharding(tmp_path, tiny_raw):
    raw, tok = tiny_raw
    a = rc.write_internvl_hf(tmp_path / "a", raw_config=raw, tokenizer=tok, shard_bytes=50_000)
    b = rc.write_internvl_hf(tmp_path / "b", raw_config=raw, tokenizer=tok, shard_bytes=10**9)
    c = rc.write_internvl_hf(tmp_path / "c", raw_config=raw, tokenizer=tok, seed=1)
    assert len(list(a.glob("*.safetensors"))) > 2 and len(list(b.glob("*.safetensors"))) == 1
    ta, tb, tc = _tensors(a), _tensors(b), _tensors(c)
    assert ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)
    big = "model.language_model.embed_tokens.weight"
    assert not torch.equal(ta[big], tc[big])
    assert ta[big].dtype == torch.bfloat16 and 0.015 < ta[big].float().std().item() < 0.025
    index = json.loads((a / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"]) == set(ta)
    assert all((a / shard).is_file() for shard in index["weight_map"].values())
    assert index["metadata"]["total_size"] == sum(t.numel() * t.element_size() for t in ta.values())


def test_written_folders_load_strictly_and_run(tmp_path, tiny_raw):
    from spacemind_cli.models import internvl
    from spacemind_cli.models.vggt import VGGT

    raw, tok = tiny_raw
    folder = rc.write_internvl_hf(tmp_path / "ivl", raw_config=raw, tokenizer=tok, shard_bytes=50_000)
    model, tokenizer = internvl.load(str(folder), device="cpu", dtype=torch.float32)  # strict: raises on any gap
    assert len(tokenizer) == len(tok)
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([[1, 2, 3]])).logits
    assert torch.isfinite(logits).all()

    vfolder = rc.write_vggt_hub(tmp_path / "vggt", hub_config=tiny_vggt_config().to_dict())
    vggt = VGGT.from_pretrained(vfolder)
    want = {k: v for k, v in _tensors(vfolder).items()}
    got = vggt.state_dict()
    assert all(torch.equal(got[k], want[k]) for k in want)
    size = vggt.config.img_size
    with torch.no_grad():
        tokens, _ = vggt.aggregate(torch.rand(1, 2, 3, size, size), layers=(-1,))
    assert torch.isfinite(tokens[0]).all()


def test_original_layout_holds_the_hf_weights_bit_for_bit(tmp_path, tiny_raw):
    from spacemind_cli.models.internvl_convert import convert_folder, detect_layout

    raw, tok = tiny_raw
    hf = rc.write_internvl_hf(tmp_path / "hf", raw_config=raw, tokenizer=tok, shard_bytes=50_000)
    orig = rc.write_internvl_original_from_hf(tmp_path / "orig", hf, shard_bytes=50_000)
    assert detect_layout(orig) == "original" and detect_layout(hf) == "transformers"
    keys = set(_tensors(orig))
    assert {k.split(".")[0] for k in keys} == {"vision_model", "mlp1", "language_model"}
    assert any(k.endswith("attn.qkv.weight") for k in keys) and "language_model.lm_head.weight" in keys
    cfg = json.loads((orig / "config.json").read_text())
    assert {"vision_config", "llm_config", "auto_map"} <= set(cfg)
    back = convert_folder(orig, tmp_path / "back")
    assert back["image_token_id"] == tok.convert_tokens_to_ids("<IMG_CONTEXT>")
    # transformers loads both spellings: model.vision_tower.* (as saved today) and vision_tower.*
    # (as its converter writes them)
    spelled = (("model.vision_tower.", "vision_tower."), ("model.multi_modal_projector.", "multi_modal_projector."),
               ("model.language_model.", "language_model.model."), ("lm_head.", "language_model.lm_head."))

    def one_spelling(key):
        return next((new + key[len(old):] for old, new in spelled if key.startswith(old)), key)

    want = {one_spelling(k): v for k, v in _tensors(hf).items()}
    got = {one_spelling(k): v for k, v in _tensors(tmp_path / "back").items()}
    assert want.keys() == got.keys() and all(torch.equal(want[k], got[k]) for k in want)


def test_single_file_writer_matches_safetensors(tmp_path):
    from safetensors.torch import load_file

    specs = [rc.TensorSpec("b.weight", (3, 5), torch.float32), rc.TensorSpec("a.bias", (7,), torch.bfloat16),
             rc.TensorSpec("c.scalar", (), torch.float32)]
    rc.write_single_safetensors(tmp_path / "m.safetensors", specs, lambda s: torch.arange(
        max(1, int(torch.tensor(s.shape).prod())), dtype=s.dtype).reshape(s.shape))
    got = load_file(str(tmp_path / "m.safetensors"))
    assert torch.equal(got["b.weight"], torch.arange(15, dtype=torch.float32).reshape(3, 5))
    assert torch.equal(got["a.bias"], torch.arange(7, dtype=torch.bfloat16))
    assert got["c.scalar"].shape == () and got["c.scalar"].item() == 0


def test_refuses_a_folder_that_holds_something(tmp_path, tiny_raw):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError):
        rc.write_vggt_hub(tmp_path / "x", hub_config=tiny_vggt_config().to_dict())
    assert (tmp_path / "x" / "keep.txt").read_text() == "mine"
