"""The transformers APIs we use, pinned down where they drift between versions (5.17 .. 5.2x).

Run against the installed transformers and, through .ci/drift.sh, against 5.17.0. Differences
found between 5.17.0 and 5.24.0 and what guards them:
  * the decoder's cache argument: `past_key_values` (5.17) -> `cache` (5.2x, the old name
    deprecated) -> generation._cache_kwarg picks the one in the signature;
  * DynamicCache.crop(positive n): "keep n tokens" (deprecated) in 5.17, ValueError from 5.18;
    crop(-n) removes n tokens in both; max_cache_len / max_batch_size / get_max_cache_shape
    exist in 5.17 only. Our decoding uses none of these (deepcopy + batch_repeat_interleave);
  * get_image_features picks hidden states with `output_hidden_states=True` (5.17) or the
    `select_hidden_states` decorator (5.2x); both return BaseModelOutputWithPooling with the
    projected features in pooler_output (4.x returned a tensor); with config.return_dict=False
    both return a tuple whose first item is the vision tower's output, not the features;
  * InternVLModel's output: image_hidden_states (5.17) -> image_outputs (5.2x). Not used.
"""

from __future__ import annotations

import copy
import functools

import pytest
import torch
import transformers
from packaging.version import Version
from torch import nn

from spacemind_cli.models import generation, internvl
from spacemind_cli.models.components import safetensors_header
from spacemind_cli.models.internvl import WEIGHT_PREFIXES
from spacemind_cli.models.spacemind import SpaceMind

TF = Version(transformers.__version__)


pytestmark = pytest.mark.usefixtures("one_torch_thread")




@pytest.fixture(scope="module")
def model(ckpt):
    m, _ = internvl.load(str(ckpt / "internvl"), device="cpu", dtype=torch.float32)
    return m


@pytest.fixture(scope="module")
def pixels():
    return torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))


# ----------------------------------------------------------------------------------- image features
def test_image_features_handles_every_return_style(model, pixels, monkeypatch):
    from transformers.modeling_outputs import BaseModelOutputWithPooling

    want = internvl.project(model, internvl.vision_features(model, pixels))
    last = torch.zeros(2, 257, 32)
    styles = {
        "output object (5.x)": BaseModelOutputWithPooling(last_hidden_state=last, pooler_output=want),
        "tuple (return_dict=False)": (last, want),
    }
    for style, ret in styles.items():
        monkeypatch.setattr(model, "get_image_features", lambda pixel_values, ret=ret, **kw: ret)
        assert torch.equal(internvl.image_features(model, pixels), want), style
    monkeypatch.setattr(model, "get_image_features", lambda pixel_values, **kw: {"features": want})
    with pytest.raises(TypeError, match="unexpected get_image_features output"):
        internvl.image_features(model, pixels)


def test_real_get_image_features_returns_pooled_projection(model, pixels):
    out = model.get_image_features(pixel_values=pixels)
    assert not isinstance(out, torch.Tensor) and out.pooler_output.shape == (2, 64, 64)
    torch.testing.assert_close(out.pooler_output, internvl.project(model, internvl.vision_features(model, pixels)))


def test_return_dict_false_config_is_harmless(model, pixels, monkeypatch):
    """A config with return_dict=False turns transformers' outputs into tuples; our paths ask for
    output objects explicitly."""
    want = internvl.image_features(model, pixels)
    lm, _, _ = internvl.parts(model)
    embeds = torch.randn(1, 5, 64, generator=torch.Generator().manual_seed(1))
    ref = generation.prefill(lm, embeds)
    monkeypatch.setattr(model.config, "return_dict", False)
    monkeypatch.setattr(lm.config, "return_dict", False)
    assert torch.equal(internvl.image_features(model, pixels), want)
    again = generation.prefill(lm, embeds)
    assert again.cache.get_seq_length() == 5
    for a, b in zip(ref.cache.layers, again.cache.layers):
        assert torch.equal(a.keys, b.keys)


def test_vision_tower_outputs_we_read(model, pixels):
    out = model.model.vision_tower(pixel_values=pixels, return_dict=True, output_hidden_states=True)
    assert out.last_hidden_state.shape == (2, 257, 32)
    assert len(out.hidden_states) == model.config.vision_config.num_hidden_layers + 1
    feats = model.model.pixel_shuffle(out.last_hidden_state[:, 1:].reshape(2, 16, 16, 32), scale_factor=0.5)
    assert feats.shape == (2, 8, 8, 128)


# ----------------------------------------------------------------------------------- decoder / cache
def test_cache_kwarg_follows_the_signature():
    class NewStyle(nn.Module):
        def forward(self, inputs_embeds=None, attention_mask=None, position_ids=None, cache=None, use_cache=None, **kw):
            return cache

    class OldStyle(nn.Module):
        def forward(self, inputs_embeds=None, attention_mask=None, position_ids=None, past_key_values=None, **kw):
            return past_key_values

    class Decorated(OldStyle):  # transformers wraps forward in decorators (functools.wraps)
        @functools.wraps(NewStyle.forward)
        def forward(self, *a, **kw):
            return kw.get("cache")

    assert generation._cache_kwarg(NewStyle()) == "cache"
    assert generation._cache_kwarg(OldStyle()) == "past_key_values"
    assert generation._cache_kwarg(Decorated()) == "cache"


def test_real_decoder_signature_and_cache_filled(model):
    import inspect

    lm, _, _ = internvl.parts(model)
    params = inspect.signature(lm.forward).parameters
    name = generation._cache_kwarg(lm)
    assert name in params
    assert name == ("cache" if "cache" in params else "past_key_values")
    for kw in ("inputs_embeds", "attention_mask", "position_ids", "use_cache"):
        assert kw in params, kw
    if TF < Version("5.18"):
        assert name == "past_key_values"
    # Passed under the right name the cache is filled (a swallowed kwarg would leave it empty).
    prefix = generation.prefill(lm, torch.randn(1, 7, 64))
    assert prefix.cache.get_seq_length() == 7 and prefix.length == 7


def test_dynamic_cache_apis_we_rely_on(model):
    from transformers import DynamicCache

    lm, _, _ = internvl.parts(model)
    prefix = generation.prefill(lm, torch.randn(1, 6, 64, generator=torch.Generator().manual_seed(2)))
    assert isinstance(prefix.cache, DynamicCache)
    copied = copy.deepcopy(prefix.cache)
    copied.batch_repeat_interleave(3)
    assert copied.layers[0].keys.shape[0] == 3 and prefix.cache.layers[0].keys.shape[0] == 1
    assert torch.equal(copied.layers[0].keys[2], prefix.cache.layers[0].keys[0])
    copied.crop(-2)  # negative: remove that many tokens, in every version
    assert copied.get_seq_length() == 4 and prefix.cache.get_seq_length() == 6
    # A positive crop changed meaning: "keep n" (deprecated) in 5.17, refused from 5.18.
    other = copy.deepcopy(prefix.cache)
    if TF < Version("5.18"):
        other.crop(5)
        assert other.get_seq_length() == 5
    else:
        with pytest.raises(ValueError):
            other.crop(5)
    import inspect

    assert "config" in inspect.signature(DynamicCache.__init__).parameters


def test_generate_with_inputs_embeds_returns_only_new_tokens(model):
    embeds = torch.randn(1, 9, 64, generator=torch.Generator().manual_seed(3))
    never = model.config.text_config.vocab_size + 5
    out = model.generate(
        inputs_embeds=embeds,
        attention_mask=torch.ones(1, 9, dtype=torch.long),
        max_new_tokens=4,
        do_sample=False,
        eos_token_id=[never],
        pad_token_id=0,
    )
    assert out.shape == (1, 4)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_from_pretrained_dtype(ckpt, dtype):
    m, tok = internvl.load(str(ckpt / "internvl"), device="cpu", dtype=dtype)
    assert {p.dtype for p in m.parameters()} == {dtype}
    assert not m.training and not any(p.requires_grad for p in m.parameters())
    assert tok.convert_tokens_to_ids("<IMG_CONTEXT>") == m.config.image_token_id


def test_spacemind_runs_in_bf16(ckpt):
    sm = SpaceMind.from_pretrained(ckpt, dtype=torch.bfloat16)
    assert sm.dtype == torch.bfloat16 and sm.fusion.q_proj.weight.dtype == torch.bfloat16
    from spacemind_cli.models.spacemind import EncoderOutputs

    g = torch.Generator().manual_seed(4)
    enc = EncoderOutputs(
        vggt_patch=torch.randn(1, 2, 16, 64, generator=g).bfloat16(),
        vggt_camera=torch.randn(1, 2, 1, 64, generator=g).bfloat16(),
        internvit=torch.randn(2, 64, 128, generator=g).bfloat16(),
        pose_enc=torch.zeros(2, 9),
    )
    assert sm.fuse(enc).dtype == torch.bfloat16
    out = sm.answer(enc, ["Describe the scene.", "0"], max_new_tokens=4)
    assert len(out) == 2


def test_saved_weight_names_are_ones_we_classify(model, tmp_path):
    """encoder_fingerprint and inspect find the vision tower / projector / LLM by key prefix in
    whatever naming this transformers writes."""
    model.save_pretrained(tmp_path / "m")
    header = safetensors_header(next((tmp_path / "m").glob("*.safetensors")))
    for key in header:
        groups = [p for p in WEIGHT_PREFIXES.values() if key.startswith(p)]
        assert len(groups) == 1, key
    assert any(k.startswith(WEIGHT_PREFIXES["vision"]) for k in header)
    reloaded, _ = internvl.load(str(tmp_path / "m"), device="cpu", dtype=torch.float32)
    for (n1, p1), (n2, p2) in zip(model.state_dict().items(), reloaded.state_dict().items()):
        assert n1 == n2 and torch.equal(p1, p2)
