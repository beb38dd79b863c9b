"""Loading InternVL weights is strict: a folder that does not hold exactly the weights its config
needs is refused with one line naming the keys and the folder (exit 3), never run with random
weights. Older key names still load, and embedding tying follows the language model's config."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from spacemind_cli.errors import CheckpointError
from spacemind_cli.models import internvl
from spacemind_cli.models.tiny import build_tiny

# transformers 4.x / original InternVL-hf names -> the 5.x names the model uses
LEGACY = (("model.language_model.", "language_model.model."), ("lm_head.", "language_model.lm_head."),
          ("model.vision_tower.", "vision_tower."), ("model.multi_modal_projector.", "multi_modal_projector."))


def legacy_name(key: str) -> str:
    for new, old in LEGACY:
        if key.startswith(new):
            return old + key[len(new):]
    return key


@pytest.fixture(scope="module")
def tiny_internvl(tmp_path_factory):
    _, _, model, tokenizer, _ = build_tiny(0)
    folder = tmp_path_factory.mktemp("internvl") / "tiny"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder, {k: v.clone() for k, v in model.state_dict().items()}


def variant(src: Path, dst: Path, edit) -> Path:
    shutil.copytree(src, dst)
    weights = dst / "model.safetensors"
    save_file(edit(load_file(str(weights))), str(weights), metadata={"format": "pt"})
    return dst


def load(folder: Path):
    return internvl.load(str(folder), device="cpu", dtype=torch.float32)


def test_the_older_key_naming_loads_the_same_weights(tiny_internvl, tmp_path):
    folder, state = tiny_internvl
    old = variant(folder, tmp_path / "old", lambda sd: {legacy_name(k): v for k, v in sd.items()})
    assert any(k.startswith("language_model.model.") for k in load_file(str(old / "model.safetensors")))
    model, _ = load(old)
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k


def test_missing_weights_are_refused_by_name(tiny_internvl, tmp_path):
    folder, _ = tiny_internvl
    cut = variant(folder, tmp_path / "cut", lambda sd: {k: v for k, v in sd.items() if ".layers.1." not in k})
    with pytest.raises(CheckpointError) as err:
        load(cut)
    msg = err.value.message
    assert str(cut) in msg and "missing weights" in msg and "model.language_model.layers.1." in msg and "\n" not in msg


def test_unexpected_weights_are_refused_by_name(tiny_internvl, tmp_path):
    folder, _ = tiny_internvl
    extra = variant(folder, tmp_path / "extra", lambda sd: {**sd, "model.language_model.layers.7.mlp.up_proj.weight": torch.zeros(2, 2)})
    with pytest.raises(CheckpointError, match="unexpected weights .*layers.7.mlp.up_proj"):
        load(extra)


def test_a_missing_shard_is_refused_naming_the_shard_and_its_weights(tiny_internvl, tmp_path):
    folder, _ = tiny_internvl
    _, _, model, tokenizer, _ = build_tiny(0)
    sharded = tmp_path / "sharded"
    model.save_pretrained(sharded, max_shard_size="100KB")
    tokenizer.save_pretrained(sharded)
    index = json.loads((sharded / "model.safetensors.index.json").read_text())["weight_map"]
    gone = sorted(set(index.values()))[1]
    (sharded / gone).unlink()
    with pytest.raises(CheckpointError) as err:
        load(sharded)
    msg = err.value.message
    held = sorted(k for k, shard in index.items() if shard == gone)
    assert str(sharded) in msg and gone in msg and held[0] in msg and f"{len(held)} weights" in msg


def test_the_cli_exits_3_on_a_checkpoint_with_a_missing_shard(tiny_ckpt, tmp_path, examples):
    import subprocess
    import sys

    ckpt = tmp_path / "ckpt"
    shutil.copytree(tiny_ckpt, ckpt)
    _, _, model, _, _ = build_tiny(0)
    (ckpt / "internvl" / "model.safetensors").unlink()
    model.save_pretrained(tmp_path / "shards", max_shard_size="100KB")
    for f in (tmp_path / "shards").glob("model*"):
        shutil.copy(f, ckpt / "internvl" / f.name)
    shard = sorted((ckpt / "internvl").glob("model-*.safetensors"))[-1]
    shard.unlink()
    proc = subprocess.run(
        [sys.executable, "-m", "spacemind_cli", "answer", str(examples / "videos"), "--questions",
         str(examples / "questions.jsonl"), "--checkpoint", str(ckpt), "--output", str(tmp_path / "a.jsonl"),
         "--executor", "local", "--num-frames", "2"],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 3, proc.stderr
    assert shard.name in proc.stderr and "Traceback" not in proc.stderr


def test_tying_follows_the_language_models_config(tiny_internvl, tmp_path, capfd):
    """InternVL3-8B-hf's config.json has no top-level tie_word_embeddings (InternVLConfig's
    default is to tie) while its Qwen2.5 LLM has its own lm_head: load it untied, silently."""
    folder, state = tiny_internvl
    untold = tmp_path / "untold"
    shutil.copytree(folder, untold)
    cfg = json.loads((untold / "config.json").read_text())
    assert cfg["text_config"]["tie_word_embeddings"] is False
    cfg.pop("tie_word_embeddings", None)
    (untold / "config.json").write_text(json.dumps(cfg))
    model, _ = load(untold)
    assert model.config.tie_word_embeddings is False
    head, embed = model.lm_head.weight, model.model.language_model.embed_tokens.weight
    assert head.data_ptr() != embed.data_ptr()
    assert torch.equal(head, state["lm_head.weight"])
    assert "tie" not in capfd.readouterr().err
