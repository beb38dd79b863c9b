"""Gradient checkpointing by default where the memory estimate needs it: the estimate from the
model's config (the README's figures for InternVL3-8B), the decision, and the job's use of it."""

from __future__ import annotations

import json
import shutil

import pytest

from spacemind_cli.training import memory
from spacemind_cli.training.config import TrainConfig

# InternVL3-8B-hf's config.json, the sizes the estimate reads
FULL = {
    "image_seq_length": 256,
    "text_config": {"hidden_size": 3584, "num_hidden_layers": 28, "intermediate_size": 18944, "vocab_size": 151674,
                    "num_attention_heads": 28, "num_key_value_heads": 4, "tie_word_embeddings": False},
    "vision_config": {"hidden_size": 1024, "num_hidden_layers": 24, "intermediate_size": 4096},
}
CGMF_PARAMS = 45_000_000


def full_estimate(checkpointing: bool, **kw) -> dict:
    cfg = TrainConfig()
    sizes = {"frames": 32, "questions_per_pack": cfg.questions_per_pack, "lora_rank": cfg.lora_rank,
             "cgmf_params": CGMF_PARAMS, **kw}
    return memory.training_memory(memory.model_shape(FULL), checkpointing=checkpointing, **sizes)


def test_the_estimate_of_the_full_size_model_is_the_readmes_arithmetic():
    s = memory.model_shape(FULL)
    assert memory.llm_params(s) / 1e9 == pytest.approx(7.6, abs=0.05)
    assert memory.lora_params(s, 256) / 1e6 == pytest.approx(646, abs=1)  # r256 on 7 linears x 28 layers
    assert s.vision_params / 1e6 == pytest.approx(302, abs=1)  # InternViT-300M
    without, with_gc = full_estimate(False), full_estimate(True)
    assert without["trained"] == pytest.approx(11.1, abs=0.1)  # LoRA 10.3 + CGMF 0.7
    assert 60 < without["total"] < 72 and without["activations"] > 35
    assert with_gc["activations"] < 4 and with_gc["total"] < 32
    # whole-scene packs (18 questions) cost more activations than packs of 4
    assert full_estimate(False, questions_per_pack=18)["activations"] > without["activations"]


def test_auto_turns_it_on_for_the_full_model_on_an_80_gb_gpu():
    gb = full_estimate(False)["total"]
    on, why = memory.decide_gradient_checkpointing(None, on_gpu=True, gpu_bytes=80e9, estimate_gb=gb)
    assert on and why.startswith("on:") and "80 GB" in why
    assert memory.decide_gradient_checkpointing(None, on_gpu=True, gpu_bytes=None, estimate_gb=gb)[0]  # assumed 80 GB
    assert not memory.decide_gradient_checkpointing(None, on_gpu=True, gpu_bytes=141e9, estimate_gb=gb)[0]  # an H200


def test_auto_leaves_it_off_for_a_tiny_model_and_on_cpu():
    from spacemind_cli.models.tiny import build_tiny

    config = build_tiny(0)[2].config.to_dict()
    s = memory.model_shape(config)
    assert s is not None and s.hidden == 64 and s.layers == 2
    gb = memory.training_memory(s, frames=32, questions_per_pack=4, lora_rank=8, cgmf_params=10_000,
                                checkpointing=False)["total"]
    assert gb < 1
    assert memory.decide_gradient_checkpointing(None, on_gpu=True, gpu_bytes=80e9, estimate_gb=gb) == \
        (False, f"off: ~{gb:.0f} GB estimated without it fits 64 GB of the GPU")
    on, why = memory.decide_gradient_checkpointing(None, on_gpu=False, gpu_bytes=None, estimate_gb=999.0)
    assert not on and "CPU" in why
    assert not memory.decide_gradient_checkpointing(None, on_gpu=True, gpu_bytes=80e9, estimate_gb=None)[0]
    assert memory.model_shape({"vision_config": {}}) is None


def test_an_explicit_choice_wins():
    assert memory.decide_gradient_checkpointing(False, on_gpu=True, gpu_bytes=80e9, estimate_gb=500.0) == \
        (False, "off: asked for")
    assert memory.decide_gradient_checkpointing(True, on_gpu=False, gpu_bytes=None, estimate_gb=0.1) == \
        (True, "on: asked for")


class _Executor:
    def __init__(self, gpu: bool):
        self.gpu = gpu

    def uses_gpu(self) -> bool:
        return self.gpu


@pytest.mark.parametrize("full,gpu,asked,expect", [
    (True, True, None, True), (False, True, None, False), (True, False, None, False),
    (True, True, False, False), (False, False, True, True),
])  # fmt: skip
def test_the_train_job_decides_from_the_base_checkpoint(tiny_ckpt, tmp_path, monkeypatch, full, gpu, asked, expect):
    """The job reads the base's InternVL config: full-size sizes on a GPU run turn it on (no GPU
    here: an 80 GB one assumed), the tiny model's do not, a flag wins."""
    import torch

    from spacemind_cli.jobs.settings import JobSettings
    from spacemind_cli.jobs.train import _gradient_checkpointing
    from spacemind_cli.models.checkpoint import load_config

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    base = tmp_path / "base"
    shutil.copytree(tiny_ckpt, base, ignore=shutil.ignore_patterns("*.safetensors"))
    shutil.copy(tiny_ckpt / "fusion.safetensors", base / "fusion.safetensors")
    if full:
        (base / "internvl" / "config.json").write_text(json.dumps(FULL))
    settings = JobSettings(checkpoint=str(base), encoder_fingerprint="", checkpoint_id="", preprocess={}, vggt_layers=(-1,),
                           num_frames=32, sampling="paper", dtype="bf16", vggt_weights="fp32", batch_size=8,
                           max_new_tokens=16)
    on, why = _gradient_checkpointing(base, load_config(base), TrainConfig(gradient_checkpointing=asked), settings,
                                      _Executor(gpu))
    assert on is expect, why
    if asked is not None:
        assert why.endswith("asked for")
