"""Loading never holds two copies of the weights (issue #18 §3): bf16 shards loaded in fp32 are
cast one shard at a time and unmapped once consumed, so a load's peak memory stays near the
weights it leaves in memory. transformers' own loader, which `internvl.load` called before, keeps
every shard mapped beside the fp32 copy (~1.5x): measured here too, so the test sees the
difference it guards.

Each load runs in a fresh interpreter that imports torch and transformers first; the ratio is
(peak RSS during the load - RSS before it) / bytes of the loaded weights. A memory ratio on a
fixed folder, not a time: the same on any machine."""

from __future__ import annotations

import pytest
import torch

from bench.load_memory import measure_in_child, write_folder
from spacemind_cli.models import internvl, loading

BOUND = 1.3  # shards of 20 MB, weights 160 MB in fp32: one shard beside the weights is ~1.13x


@pytest.fixture(scope="module")
def bf16_shards(tmp_path_factory):
    return write_folder(tmp_path_factory.mktemp("load_memory") / "internvl", quick=True, shard_size="20MB")


def test_bf16_shards_load_in_fp32_without_a_second_copy(bf16_shards):
    assert len(list(bf16_shards.glob("model-*.safetensors"))) > 3
    ours = measure_in_child(bf16_shards, "spacemind", "fp32")
    theirs = measure_in_child(bf16_shards, "transformers", "fp32")
    assert ours["weight_bytes"] == theirs["weight_bytes"] > 100 * 2**20
    assert ours["ratio"] < BOUND, ours
    assert theirs["ratio"] > BOUND, theirs  # what the bound guards against is measurable here


def test_the_loaded_weights_are_exactly_transformers_own(bf16_shards):
    from transformers import InternVLForConditionalGeneration

    for dtype in (torch.float32, torch.bfloat16):
        ours, _ = internvl.load(str(bf16_shards), device="cpu", dtype=dtype)
        theirs = InternVLForConditionalGeneration.from_pretrained(str(bf16_shards), dtype=dtype)
        a, b = ours.state_dict(), theirs.state_dict()
        assert set(a) == set(b)
        for k in a:
            assert a[k].dtype == b[k].dtype == dtype and torch.equal(a[k], b[k]), k
        assert not any(p.requires_grad for p in ours.parameters())
        assert ours.generation_config.eos_token_id == theirs.generation_config.eos_token_id


def test_a_tied_lm_head_is_the_loaded_embedding(bf16_shards, tmp_path):
    import json
    import shutil

    from safetensors.torch import load_file, save_file

    tied = tmp_path / "tied"
    shutil.copytree(bf16_shards, tied)
    cfg = json.loads((tied / "config.json").read_text())
    cfg["tie_word_embeddings"] = cfg["text_config"]["tie_word_embeddings"] = True
    (tied / "config.json").write_text(json.dumps(cfg))
    index = json.loads((tied / internvl.SHARD_INDEX).read_text())
    head = next(k for k in index["weight_map"] if k.endswith("lm_head.weight"))  # transformers saves older names
    shard = tied / index["weight_map"].pop(head)
    save_file({k: v for k, v in load_file(str(shard)).items() if k != head}, str(shard), metadata={"format": "pt"})
    (tied / internvl.SHARD_INDEX).write_text(json.dumps(index))
    model, _ = internvl.load(str(tied), device="cpu", dtype=torch.float32)
    assert model.lm_head.weight is model.model.language_model.embed_tokens.weight
    assert not loading.on_meta(model)


def test_a_reader_remaps_its_shard_as_it_goes(bf16_shards):
    """Views handed out stay valid after the shard is remapped and closed."""
    shard = sorted(bf16_shards.glob("model-*.safetensors"))[0]
    with loading.ShardReader(shard, window=1) as reader:
        keys = reader.keys()
        views = [reader.get(k) for k in keys]
    with loading.ShardReader(shard) as again:
        for k, v in zip(keys, views):
            assert torch.equal(v, again.get(k).clone()), k
