"""The shared-prefix attention mechanism itself: the log-sum-exp merge, the registration that
leaves every other call unchanged, decoding against a shared prefix and packed attention, each
against transformers' own full-sequence forward."""

from __future__ import annotations

import re

import pytest
import torch

from spacemind_cli.models import generation
from spacemind_cli.models import prefix_attention as pa

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _qwen2(attn="sdpa", heads=6, kv_heads=2, seed=0):
    """A small random Qwen2 decoder with GQA (3 query heads per KV head)."""
    from transformers import Qwen2Config, Qwen2Model

    torch.manual_seed(seed)
    cfg = Qwen2Config(
        hidden_size=48, intermediate_size=96, num_hidden_layers=2, num_attention_heads=heads,
        num_key_value_heads=kv_heads, vocab_size=97, max_position_embeddings=512, initializer_range=0.2,
    )  # fmt: skip
    return Qwen2Model._from_config(cfg, attn_implementation=attn).eval()


def _x(*shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _reference_attention(q, k, v, mask):
    """Plain softmax attention in float64: q [B, H, M, D], k/v [B, H, S, D], mask [B, H, M, S]."""
    scores = (q.double() @ k.double().transpose(-1, -2)) / q.shape[-1] ** 0.5
    scores = scores.masked_fill(~mask, float("-inf"))
    return torch.softmax(scores, dim=-1) @ v.double()


@pytest.mark.parametrize("budget", [pa.SCORE_BUDGET, 7])  # 7: one query per chunk
def test_attend_lse_and_merge_equal_attention_over_the_union(budget, monkeypatch):
    monkeypatch.setattr(pa, "SCORE_BUDGET", budget)
    b, h, m, d = 2, 3, 5, 8
    q = _x(b, h, m, d, seed=1)
    ka, va = _x(b, h, 7, d, seed=2), _x(b, h, 7, d, seed=3)
    kb, vb = _x(b, h, 4, d, seed=4), _x(b, h, 4, d, seed=5)
    mask_b = torch.ones(b, 1, m, 4, dtype=torch.bool).tril(diagonal=-1)  # query 0 sees none of set b
    out_a, lse_a = pa.attend_lse(q, ka, va, d**-0.5)
    out_b, lse_b = pa.attend_lse(q, kb, vb, d**-0.5, mask_b)
    assert torch.isneginf(lse_b[..., 0]).all() and torch.equal(out_b[..., 0, :], torch.zeros(b, h, d))
    assert torch.isfinite(lse_b[..., 1:]).all()
    want_lse = torch.logsumexp((q.double() @ ka.double().transpose(-1, -2)) / d**0.5, dim=-1)
    torch.testing.assert_close(lse_a.double(), want_lse, atol=1e-5, rtol=1e-6)
    got = pa.merge(out_a, lse_a, out_b, lse_b)
    full_mask = torch.cat([torch.ones(b, 1, m, 7, dtype=torch.bool), mask_b], dim=-1).expand(b, h, m, 11)
    want = _reference_attention(q, torch.cat([ka, kb], 2), torch.cat([va, vb], 2), full_mask)
    torch.testing.assert_close(got.double(), want, atol=1e-6, rtol=1e-5)


def test_packed_mask_known_values():
    got = pa.packed_mask(2, [2, 3, 1])[0, 0].int().tolist()
    assert got == [
        # prefix | seg 0 | seg 1   | seg 2
        [1, 1, 1, 0, 0, 0, 0, 0],
        [1, 1, 1, 1, 0, 0, 0, 0],
        [1, 1, 0, 0, 1, 0, 0, 0],
        [1, 1, 0, 0, 1, 1, 0, 0],
        [1, 1, 0, 0, 1, 1, 1, 0],
        [1, 1, 0, 0, 0, 0, 0, 1],
    ]


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_enable_changes_nothing_without_the_keyword(attn):
    lm = _qwen2(attn)
    x = _x(2, 9, 48, seed=6)
    pad = torch.ones(2, 9, dtype=torch.long)
    pad[1, :3] = 0  # left padding in row 1
    before = [lm(inputs_embeds=x).last_hidden_state, lm(inputs_embeds=x, attention_mask=pad).last_hidden_state]
    cache = generation.new_cache(lm)
    generation.lm_forward(lm, x[:1, :6], cache)
    before.append(generation.lm_forward(lm, x[:1, 6:], cache))
    assert pa.enable(lm) == f"spacemind_prefix+{attn}"
    assert pa.enable(lm) == f"spacemind_prefix+{attn}"  # idempotent
    after = [lm(inputs_embeds=x).last_hidden_state, lm(inputs_embeds=x, attention_mask=pad).last_hidden_state]
    cache = generation.new_cache(lm)
    generation.lm_forward(lm, x[:1, :6], cache)
    after.append(generation.lm_forward(lm, x[:1, 6:], cache))
    for a, b in zip(before, after):
        assert torch.equal(a, b)


def test_enable_registers_again_where_the_name_is_unknown(monkeypatch):
    """A model whose config already names our function (unpickled in a fresh process, where
    nothing is registered yet) works again after enable()."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    lm = _qwen2()
    x = _x(1, 5, 48, seed=8)
    want = lm(inputs_embeds=x).last_hidden_state
    name = pa.enable(lm)
    monkeypatch.delitem(AttentionInterface._global_mapping, name)
    monkeypatch.delitem(AttentionMaskInterface._global_mapping, name)
    with pytest.raises(KeyError, match=re.escape(name)):
        lm(inputs_embeds=x)
    assert pa.enable(lm) == name
    assert torch.equal(lm(inputs_embeds=x).last_hidden_state, want)


def test_a_flash_attention_lm_runs_its_other_calls_through_sdpa():
    """transformers' flash integration reads its kernel from the config's name, which enable()
    replaces: a flash-attn LM gets sdpa as the base (no flash-attn needed to check it here)."""
    lm, ref = _qwen2("sdpa"), _qwen2("sdpa")
    lm.config._attn_implementation = "flash_attention_2"
    assert pa.enable(lm) == "spacemind_prefix+sdpa"
    x = _x(1, 7, 48, seed=9)
    assert torch.equal(lm(inputs_embeds=x).last_hidden_state, ref(inputs_embeds=x).last_hidden_state)


def test_enable_refuses_an_unknown_base():
    lm = _qwen2()
    lm.config._attn_implementation = "flex_attention"
    with pytest.raises(ValueError, match="flex_attention"):
        pa.enable(lm)


def _full_forward(lm, embeds):
    return lm(inputs_embeds=embeds).last_hidden_state  # transformers' own causal path


@pytest.mark.parametrize("heads,kv_heads", [(6, 2), (4, 4)])
def test_decode_against_a_shared_prefix_equals_the_full_sequence(heads, kv_heads):
    lm = _qwen2(heads=heads, kv_heads=kv_heads)
    p, lengths = 11, [4, 1, 6]
    prefix_x = _x(1, p, 48, seed=7)
    rows = [_x(1, n + 2, 48, seed=10 + i) for i, n in enumerate(lengths)]  # suffix + 2 decode steps
    prefix = generation.prefill(lm, prefix_x)
    kept = [(t.data_ptr(), t.clone()) for layer in prefix.cache.layers for t in (layer.keys, layer.values)]
    pa.enable(lm)
    b, w = len(lengths), max(lengths)
    x = torch.zeros(b, w, 48)
    real = torch.zeros(b, w, dtype=torch.bool)
    for i, n in enumerate(lengths):
        x[i, w - n :] = rows[i][0, :n]
        real[i, w - n :] = True
    positions = (p + real.long().cumsum(1) - 1).clamp(min=p)
    mask = torch.ones(w, w, dtype=torch.bool).tril()[None, None] & real[:, None, None, :]
    cache = generation.new_cache(lm)
    spec = {pa.KWARG: prefix.shared()}
    got = [generation.lm_forward(lm, x, cache, attention_mask=pa.masks(lm, mask), position_ids=positions, **spec)]
    for step in range(2):
        real = torch.cat([real, torch.ones(b, 1, dtype=torch.bool)], 1)
        step_x = torch.cat([rows[i][:, n + step] for i, n in enumerate(lengths)])[:, None]
        pos = torch.tensor([[p + n + step] for n in lengths])
        got.append(generation.lm_forward(lm, step_x, cache, attention_mask=pa.masks(lm, real[:, None, None, :]), position_ids=pos, **spec))
    for i, n in enumerate(lengths):
        want = _full_forward(lm, torch.cat([prefix_x, rows[i]], dim=1))[0, p:]
        mine = torch.cat([got[0][i, w - n :], got[1][i], got[2][i]])
        torch.testing.assert_close(mine, want, atol=2e-5, rtol=1e-5)
    # The shared prefix was read in place, never written.
    now = [t for layer in prefix.cache.layers for t in (layer.keys, layer.values)]
    assert all(t.data_ptr() == ptr and torch.equal(t, old) for t, (ptr, old) in zip(now, kept))
    assert all(layer.keys.shape[0] == 1 for layer in prefix.cache.layers)


def _packed_forward(lm, prefix_x, segs):
    p = prefix_x.shape[1]
    x = torch.cat([prefix_x] + segs, dim=1)
    positions = torch.cat([torch.arange(p)] + [p + torch.arange(s.shape[1]) for s in segs])[None]
    mask = pa.packed_mask(p, [s.shape[1] for s in segs])
    pa.enable(lm)
    out = lm(inputs_embeds=x, attention_mask=pa.masks(lm, mask), position_ids=positions, **{pa.KWARG: pa.PackedSpec(p)})
    return out.last_hidden_state


def test_packed_attention_equals_separate_sequences():
    lm = _qwen2()
    prefix_x = _x(1, 13, 48, seed=20)
    segs = [_x(1, n, 48, seed=21 + n) for n in (3, 7, 1, 5)]
    separate = [_full_forward(lm, torch.cat([prefix_x, s], dim=1)) for s in segs]
    got = _packed_forward(lm, prefix_x, segs)
    for ref in separate:
        torch.testing.assert_close(got[0, :13], ref[0, :13], atol=1e-5, rtol=1e-5)
    start = 13
    for s, ref in zip(segs, separate):
        torch.testing.assert_close(got[0, start : start + s.shape[1]], ref[0, 13:], atol=1e-5, rtol=1e-5)
        start += s.shape[1]


def test_wrong_uses_are_refused():
    lm = _qwen2()
    pa.enable(lm)
    x = _x(1, 6, 48, seed=30)
    with pytest.raises(TypeError, match="DecodeSpec or a PackedSpec"):
        lm(inputs_embeds=x, **{pa.KWARG: "nonsense"})
    with pytest.raises(ValueError, match="question rows' mask"):
        lm(inputs_embeds=x, attention_mask=pa.masks(lm, pa.packed_mask(2, [3])), **{pa.KWARG: pa.PackedSpec(2)})
    with pytest.raises(ValueError, match="one sequence per call"):
        two = torch.cat([x, x])
        lm(inputs_embeds=two, attention_mask=pa.masks(lm, pa.packed_mask(2, [4])), **{pa.KWARG: pa.PackedSpec(2)})
