"""Shared-prefix packing for training: the packed inputs, and loss and gradients equal to the same
questions trained as separate samples, with a CGMF feeding the prefix and LoRA on the LLM."""

from __future__ import annotations

import pytest
import torch

from spacemind_cli.models import packing, prefix_attention
from spacemind_cli.models.packing import IGNORE, Segment
from spacemind_cli.models.spacemind import EncoderOutputs, SpaceMind
from spacemind_cli.models.tiny import build_tiny

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FRAMES = 2
PAIRS = [  # prompts and answers of different lengths
    ("How many chair are in this room?", "3"),
    ("What is the size of this room (in square meters)? If multiple rooms are shown, estimate the size of the combined space.", "25.5 square meters"),
    ("Describe the scene.", "a room with a red sofa, a lamp and a table"),
    ("Options: A. left B. right", "B"),
]  # fmt: skip


def test_pack_known_values():
    segs = [Segment([1, 2], [3]), Segment([4], [5, 6]), Segment([7, 8, 9], [])]
    p = packing.pack(3, segs, end_id=99)
    assert p.ids.tolist() == [1, 2, 3, 99, 4, 5, 6, 99, 7, 8, 9, 99]
    assert p.position_ids.tolist() == [[0, 1, 2, 3, 4, 5, 6, 3, 4, 5, 6, 3, 4, 5, 6]]
    assert p.labels.tolist() == [[IGNORE] * 3 + [IGNORE, IGNORE, 3, 99, IGNORE, 5, 6, 99, IGNORE, IGNORE, IGNORE, 99]]
    assert p.segment_lengths == [4, 4, 4] and p.length == 15
    assert p.num_targets == packing.num_targets(segs) == 6
    alone = packing.separate(3, segs, end_id=99)
    assert [s.ids.tolist() for s in alone] == [[1, 2, 3, 99], [4, 5, 6, 99], [7, 8, 9, 99]]
    assert alone[1].position_ids.tolist() == [[0, 1, 2, 3, 4, 5, 6]]
    assert alone[1].labels.tolist() == [[IGNORE] * 3 + [IGNORE, 5, 6, 99]]
    assert sum(s.num_targets for s in alone) == p.num_targets
    assert p.attention_mask().shape == (1, 1, 12, 15)


def test_pack_refuses_bad_segments():
    with pytest.raises(ValueError, match="segment 1 has no prompt tokens"):
        packing.pack(3, [Segment([1], [2]), Segment([], [3])], end_id=9)
    with pytest.raises(ValueError, match="at least one segment"):
        packing.pack(3, [], end_id=9)
    with pytest.raises(ValueError, match="needs a prefix"):
        packing.separate(0, [Segment([1], [2])], end_id=9)


def _trainable_model(checkpointing: bool) -> SpaceMind:
    """Tiny SpaceMind with a trainable CGMF and PEFT LoRA (random A and B, so every LoRA weight
    gets a gradient) on every linear layer of the LLM; everything else frozen."""
    from peft import LoraConfig, get_peft_model

    config, vggt, model, tokenizer, fusion = build_tiny(seed=0)
    lora = LoraConfig(
        r=4, lora_alpha=8, lora_dropout=0.0, init_lora_weights=False,
        target_modules=r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)",
    )  # fmt: skip
    torch.manual_seed(1)
    get_peft_model(model, lora)  # injects LoRA into `model` in place and freezes its other weights
    fusion.requires_grad_(True)
    sm = SpaceMind(config, vggt, model, tokenizer, fusion)
    sm.train()
    if checkpointing:
        enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
        enable()  # the new name from transformers 5.2x; 5.17 has only gradient_checkpointing_enable
    return sm


def _encoder_outputs(seed: int, dtype=torch.float32) -> EncoderOutputs:
    g = torch.Generator().manual_seed(seed)
    return EncoderOutputs(
        vggt_patch=torch.randn(1, FRAMES, 16, 64, generator=g, dtype=dtype),
        vggt_camera=torch.randn(1, FRAMES, 1, 64, generator=g, dtype=dtype),
        internvit=torch.randn(FRAMES, 64, 128, generator=g, dtype=dtype),
        pose_enc=torch.randn(FRAMES, 9, generator=g, dtype=dtype),
    )


def _trained(sm: SpaceMind) -> dict[str, torch.nn.Parameter]:
    named = {f"fusion.{n}": p for n, p in sm.fusion.named_parameters()}
    named.update({n: p for n, p in sm.internvl.named_parameters() if p.requires_grad})
    return named


def _loss_and_grads(sm, scenes, packed: bool):
    """One optimizer step's loss over several scenes: token CE sum / global target count."""
    for p in _trained(sm).values():
        p.grad = None
    sums, counts = zip(*(sm.scene_loss_sum(enc, pairs, packed=packed) for enc, pairs in scenes))
    loss = sum(sums) / sum(counts)
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in _trained(sm).items()}


def _full_precision_rms_norm(self, x):
    # transformers' Qwen2RMSNorm computes in fp32 even for an fp64 model; in fp64 throughout, the
    # only differences left between packed and separate are summation order at ~1e-16.
    return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.variance_epsilon))


@pytest.mark.parametrize(
    "dtype,checkpointing",
    [(torch.float32, False), (torch.float32, True), (torch.float64, False)],
    ids=["fp32", "fp32-gradient-checkpointing", "fp64"],
)
def test_packed_loss_and_gradients_equal_separate_samples(dtype, checkpointing, monkeypatch):
    sm = _trainable_model(checkpointing)
    if dtype == torch.float64:
        from transformers.models.qwen2 import modeling_qwen2

        monkeypatch.setattr(modeling_qwen2.Qwen2RMSNorm, "forward", _full_precision_rms_norm)
    sm.internvl.to(dtype)
    sm.fusion.to(dtype)
    trained = _trained(sm)
    n_lora = sum("lora_" in n for n in trained)
    assert n_lora == 2 * 7 * 2  # A and B, 7 linear layers, 2 decoder layers
    assert sum(n.startswith("fusion.") for n in trained) == len(list(sm.fusion.parameters()))
    assert not any(p.requires_grad for n, p in sm.internvl.named_parameters() if "lora_" not in n)
    scenes = [(_encoder_outputs(1, dtype), PAIRS), (_encoder_outputs(2, dtype), PAIRS[1:][::-1])]
    lengths = {len(sm.segment(p, a).prompt_ids) + len(sm.segment(p, a).answer_ids) for p, a in PAIRS}
    assert len(lengths) == len(PAIRS)  # segments of different lengths

    calls = []
    real_packed = prefix_attention._packed
    monkeypatch.setattr(prefix_attention, "_packed", lambda *a: calls.append(1) or real_packed(*a))
    packed_loss, packed_grads = _loss_and_grads(sm, scenes, packed=True)
    # The shared-prefix path ran once per layer and scene, and again in backward when checkpointing.
    assert len(calls) == len(scenes) * 2 * (2 if checkpointing else 1)
    calls.clear()
    alone_loss, alone_grads = _loss_and_grads(sm, scenes, packed=False)
    assert not calls  # the reference is transformers' own path
    assert packed_grads.keys() == alone_grads.keys() == trained.keys()
    assert all(g.dtype == dtype for g in packed_grads.values())
    # fp32: the two sum the same terms in different orders; the noise that leaves is relative to
    # a gradient tensor's magnitude (observed <= 8e-6 of its max here), not to each element.
    rel = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(packed_loss, alone_loss, atol=rel / 10, rtol=rel)
    for name in trained:
        want = alone_grads[name]
        atol = rel / 10 + rel * want.abs().max().item()
        torch.testing.assert_close(packed_grads[name], want, atol=atol, rtol=rel, msg=name)
    # The equality is not vacuous: the CGMF (through the prefix) and every LoRA weight learn.
    for name, grad in packed_grads.items():
        if name.startswith("fusion.") and "ln_" not in name or "lora_" in name:
            assert grad.abs().max() > 1e-6, name


def test_packed_processes_the_prefix_once():
    sm = _trainable_model(False)
    segments = [sm.segment(p, a) for p, a in PAIRS]
    prefix_len = len(sm.prefix_ids(FRAMES))
    end = sm.end_of_turn_id()
    packed = packing.pack(prefix_len, segments, end)
    alone = packing.separate(prefix_len, segments, end)
    suffix = sum(len(s.prompt_ids) + len(s.answer_ids) + 1 for s in segments)
    assert packed.length == prefix_len + suffix
    assert sum(a.length for a in alone) == len(PAIRS) * prefix_len + suffix
    assert packed.num_targets == sum(a.num_targets for a in alone)
