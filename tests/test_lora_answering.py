"""A trained adapter answers as it was trained (issue #19 §4).

The training model (PEFT's LoRA on the frozen base, `TrainableSpaceMind`) is exported as `train`
exports it, then loaded as `answer` loads it:
- in fp32 the adapter is merged (exact there) and the checkpoint answers as the training model:
  logits to 1e-5 of their scale, every greedy token the same;
- in bf16 the adapter stays beside the weights and the checkpoint computes what the training model
  computes in eval mode under bf16 autocast (training's own precision). Merging it into bf16
  weights instead moves every adapted weight by up to half a bf16 step: the logits move by about
  as much as bf16 arithmetic itself moves the base model's.

The bf16 noise is defined here as the largest relative deviation (per position, L2 over the
vocabulary) between the base model run in bf16 and in fp32 on the same inputs; its weights are
bf16, as published checkpoints are, so the noise is the arithmetic's alone. The unmerged path must
stay within a tenth of it, and the merged path must exceed that (it is ~0.9x the noise here).
"""

from __future__ import annotations

import shutil
from types import SimpleNamespace

import pytest
import torch

from spacemind_cli.models import internvl
from spacemind_cli.models.lora import unmerged_modules
from spacemind_cli.models.spacemind import EncoderOutputs, SpaceMind
from spacemind_cli.runtime import autocast
from spacemind_cli.training.config import TrainConfig
from spacemind_cli.training.export import export_checkpoint
from spacemind_cli.training.model import TrainableSpaceMind
from spacemind_cli.training.parallel import export_tensors

PROMPT = "How many chair(s) are in this room?"
TOKENS = 12
CFG = TrainConfig(lora_rank=8, lora_alpha=16, train=("cgmf", "lora"))


def features(sm: SpaceMind) -> EncoderOutputs:
    g = torch.Generator().manual_seed(3)
    d_s, frames = sm.config.cgmf.d_s, 2
    vit = sm.internvl.config.vision_config.hidden_size * 4
    return EncoderOutputs(vggt_patch=torch.randn(1, frames, 16, d_s, generator=g),
                          vggt_camera=torch.randn(1, frames, 1, d_s, generator=g),
                          internvit=torch.randn(frames, sm.tokens_per_frame, vit, generator=g),
                          pose_enc=torch.randn(frames, 9, generator=g))


@torch.no_grad()
def logits(sm: SpaceMind, enc: EncoderOutputs) -> torch.Tensor:
    """The question's positions' logits after the scene's prefix, [T, vocab] in fp32."""
    lm, head, embed = internvl.parts(sm.internvl)
    prefix = sm.prefix_embeds(sm.fuse(enc))
    suffix = embed(torch.tensor([sm.suffix_ids(PROMPT)]))
    hidden = lm(inputs_embeds=torch.cat([prefix, suffix], 1)).last_hidden_state
    return head(hidden[:, -suffix.shape[1]:]).float()[0]


def greedy(sm: SpaceMind, enc: EncoderOutputs) -> list[int]:
    return sm.tokenizer(sm.answer(enc, [PROMPT], max_new_tokens=TOKENS)[0])["input_ids"]


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(((a - b).norm(dim=-1) / b.norm(dim=-1)).max())


def trainable(base, dtype: torch.dtype, state=None) -> TrainableSpaceMind:
    """The training model as `train` builds it: frozen weights in `dtype`, trained ones in fp32."""
    model = TrainableSpaceMind(SpaceMind.from_pretrained(base, dtype=dtype), CFG)
    for p in model.trainable().values():
        p.data = p.data.float()
    if state is None:  # a trained adapter: PEFT starts B at zero, training moves it
        g = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for name, p in model.trainable().items():
                if "lora_B" in name:
                    p.copy_(torch.randn(p.shape, generator=g) * 0.01)
    else:
        model.load_trainable_state(state)
    return model.train(False)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_ckpt):
    """(bf16 base checkpoint, its training model in fp32, the exported checkpoint)."""
    root = tmp_path_factory.mktemp("lora_answering")
    base = root / "base"
    shutil.copytree(tiny_ckpt, base)
    model, _ = internvl.load(str(base / "internvl"), device="cpu", dtype=torch.bfloat16)
    model.save_pretrained(base / "internvl")  # bf16 weights, as published checkpoints hold them
    training = trainable(base, torch.float32)
    spec = SimpleNamespace(output=str(root / "trained"), base_checkpoint=str(base),
                           settings=SimpleNamespace(trusted_paths=(), num_frames=32, sampling="paper"))
    export_checkpoint(spec, training, CFG, export_tensors(training, False))
    return base, training, root / "trained"


def test_in_fp32_the_exported_checkpoint_answers_as_the_training_model(trained):
    base, training, out = trained
    enc = features(training.sm)
    want, want_tokens = logits(training.sm, enc), greedy(training.sm, enc)
    plain = SpaceMind.from_pretrained(base)
    assert greedy(plain, enc) != want_tokens  # the adapter changes the answer: equality below means something
    for merge in (None, False):  # fp32 merges by default; the side path answers the same
        exported = SpaceMind.from_pretrained(out, merge_lora=merge)
        assert bool(unmerged_modules(exported.internvl)) == (merge is False)
        got = logits(exported, enc)
        assert float((got - want).abs().max()) <= 1e-5 * float(want.abs().max())
        assert greedy(exported, enc) == want_tokens and len(want_tokens) >= TOKENS // 2


def test_in_bf16_the_adapter_beside_the_weights_answers_as_training_computes(trained):
    base, training, out = trained
    enc = features(training.sm)
    noise = rel(logits(SpaceMind.from_pretrained(base, dtype=torch.bfloat16), enc),
                logits(SpaceMind.from_pretrained(base), enc))
    assert noise > 0
    in_bf16 = trainable(base, torch.bfloat16, training.trainable_state())
    with autocast("cpu", torch.bfloat16):  # as training runs and evaluates in bf16
        want = logits(in_bf16.sm, enc)
    side = SpaceMind.from_pretrained(out, dtype=torch.bfloat16)  # the default in bf16: not merged
    assert unmerged_modules(side.internvl)
    assert rel(logits(side, enc), want) <= noise / 10
    merged = SpaceMind.from_pretrained(out, dtype=torch.bfloat16, merge_lora=True)
    assert not unmerged_modules(merged.internvl)
    assert rel(logits(merged, enc), want) > noise / 10  # what the side path avoids is visible here


def test_a_model_with_its_adapter_beside_the_weights_is_not_saved_without_it(trained, tmp_path):
    from spacemind_cli.errors import CheckpointError

    _, _, out = trained
    with pytest.raises(CheckpointError, match="merge_lora=True"):
        SpaceMind.from_pretrained(out, dtype=torch.bfloat16).save_pretrained(tmp_path / "saved")


def test_answer_settles_merging_from_the_dtype_and_the_flag(trained, tiny_ckpt):
    """`--merge-lora/--no-merge-lora` reaches the model; the choice is part of the run key (merged
    into bf16 weights, an adapter answers otherwise); a checkpoint without an adapter keeps its key."""
    from typer.testing import CliRunner

    from spacemind_cli.cli.main import app
    from spacemind_cli.jobs.settings import RunOptions, make_settings

    _, _, out = trained
    settle = {(dtype, flag): make_settings(RunOptions(checkpoint=out, dtype=dtype, merge_lora=flag))
              for dtype in ("fp32", "bf16") for flag in (None, True, False)}
    assert [settle["fp32", f].merge_lora for f in (None, True, False)] == [True, True, False]
    assert [settle["bf16", f].merge_lora for f in (None, True, False)] == [False, True, False]
    assert settle["bf16", None].run_key() != settle["bf16", True].run_key()
    assert settle["bf16", None].run_key() == settle["bf16", False].run_key()
    plain = make_settings(RunOptions(checkpoint=tiny_ckpt, merge_lora=True))
    assert plain.merge_lora is None and plain.run_key() == make_settings(RunOptions(checkpoint=tiny_ckpt)).run_key()
    usage = CliRunner().invoke(app, ["answer", "--help"], terminal_width=200).output
    assert "--merge-lora" in usage and "--no-merge-lora" in usage


def test_a_hard_linked_weight_file_is_not_hashed_again(tmp_path, monkeypatch):
    """A trained checkpoint hard-links its base's weights: their fingerprints come from the memo,
    not from hashing gigabytes again under the new path. A copy (another file) is hashed."""
    import hashlib
    import os

    from spacemind_cli import fingerprint

    monkeypatch.setenv("SPACEMIND_HOME", str(tmp_path / "home"))
    hashed = []

    def counting(*a, **k):
        hashed.append(1)
        return hashlib.blake2b(*a, **k)

    monkeypatch.setattr(fingerprint, "hashlib", SimpleNamespace(blake2b=counting))
    weights = tmp_path / "base" / "model.safetensors"
    weights.parent.mkdir()
    weights.write_bytes(os.urandom(1 << 16))
    digest = fingerprint.file_digest(weights)
    (tmp_path / "trained").mkdir()
    os.link(weights, tmp_path / "trained" / "model.safetensors")
    shutil.copy2(weights, tmp_path / "copy.safetensors")
    assert len(hashed) == 1
    assert fingerprint.file_digest(tmp_path / "trained" / "model.safetensors") == digest and len(hashed) == 1
    assert fingerprint.file_digest(tmp_path / "copy.safetensors") == digest and len(hashed) == 2
