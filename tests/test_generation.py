"""Shared-prefix batched greedy decoding equals transformers' own generate on each full prompt."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from spacemind_cli.models import generation, internvl
from spacemind_cli.models.preprocess import prepare
from spacemind_cli.models.spacemind import SpaceMind
from spacemind_cli.scenes import Sampling, discover_scenes, load_clip

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
FRAMES = 6
MAX_NEW = 12
PROMPTS = [  # different lengths, so rows are left-padded differently in every batch
    "How many chair are in this room?",
    "Describe the scene.",
    "What is the size of this room (in square meters)? If multiple rooms are shown, estimate the size of the combined space.",
    "Options: A. left B. right",
    "red?",
    "Measuring from the closest point of each object, what is the distance between the sofa and the lamp (in meters)?",
    "If I am standing by the sofa and facing the tv, is the bed to my left or right?",
    "What will be the first-time appearance order of the following categories in the video: chair, table, lamp?",
    "0",
    "Answer with the option's letter from the given choices directly. Which is closest to the bed? A. tv B. plant C. cabinet",
]


pytestmark = pytest.mark.usefixtures("one_torch_thread")




@pytest.fixture(scope="module")
def sm(ckpt) -> SpaceMind:
    return SpaceMind.from_pretrained(ckpt)


@pytest.fixture(scope="module")
def encs(sm):
    scenes = discover_scenes(EXAMPLES / "videos" / "synthetic")
    return [sm.encode(prepare(load_clip(s, Sampling(FRAMES)).frames, sm.config.preprocess)) for s in scenes[1:3]]


@pytest.fixture(scope="module")
def alone(sm, encs):
    return [[sm.answer_alone(e, p, max_new_tokens=MAX_NEW) for p in PROMPTS] for e in encs]


def _full_embeds(sm, enc, prompt):
    _, _, embed = internvl.parts(sm.internvl)
    prefix = sm.prefix_embeds(sm.fuse(enc))
    return torch.cat([prefix, embed(torch.tensor([sm.suffix_ids(prompt)]))], dim=1)


def _hf_ids(sm, enc, prompt, max_new_tokens, eos):
    """transformers' generate on the full prompt, no sharing: new token ids."""
    embeds = _full_embeds(sm, enc, prompt)
    out = sm.internvl.generate(
        inputs_embeds=embeds,
        attention_mask=torch.ones(embeds.shape[:2], dtype=torch.long),
        max_new_tokens=max_new_tokens,
        do_sample=False,
        num_beams=1,
        eos_token_id=sorted(eos),
        pad_token_id=internvl.pad_token_id(sm.tokenizer),
    )
    return out[0].tolist()


@pytest.mark.parametrize("batch_size", [1, 2, 3, 8])
def test_batched_shared_prefix_equals_answer_alone(sm, encs, alone, batch_size):
    for enc, want in zip(encs, alone):
        assert sm.answer(enc, PROMPTS, batch_size=batch_size, max_new_tokens=MAX_NEW) == want


def test_answers_are_not_trivial(alone):
    # The equality above means little if every row said the same thing.
    assert len(set(alone[0])) >= len(PROMPTS) - 2
    assert sum(a != b for a, b in zip(*alone)) >= len(PROMPTS) - 2
    assert all(a for a in alone[0])


def _decode(sm, prefix, prompts, max_new_tokens, eos):
    lm, head, embed = internvl.parts(sm.internvl)
    return generation.decode_batch(
        lm, head, embed, prefix, [sm.suffix_ids(p) for p in prompts],
        max_new_tokens=max_new_tokens, eos_ids=set(eos), pad_id=internvl.pad_token_id(sm.tokenizer),
    )  # fmt: skip


def test_token_ids_equal_transformers_generate(sm, encs):
    enc = encs[0]
    eos = internvl.eos_token_ids(sm.internvl, sm.tokenizer)
    prefix = sm.prefill(sm.fuse(enc))
    got = _decode(sm, prefix, PROMPTS[:5], MAX_NEW, eos)
    for p, row in zip(PROMPTS[:5], got):
        ref = _hf_ids(sm, enc, p, MAX_NEW, eos)  # ends with the EOS when it stopped early
        assert row == (ref[:-1] if ref[-1] in eos else ref)


def test_eos_in_one_row_does_not_affect_the_others(sm, encs):
    enc = encs[0]
    prompts = PROMPTS[:4]
    prefix = sm.prefill(sm.fuse(enc))
    never = {len(sm.tokenizer) + 7}  # an id the model cannot produce: no row stops
    free = _decode(sm, prefix, prompts, MAX_NEW, never)
    assert all(len(r) == MAX_NEW for r in free)
    # Declare a token row 0 makes early as EOS, one that some other row never makes.
    fake = next(t for t in free[0][1:6] if any(t not in r for r in free[1:]))
    expected = [r[: r.index(fake)] if fake in r else r for r in free]
    got = _decode(sm, prefix, prompts, MAX_NEW, {fake})
    assert got == expected
    assert len(got[0]) < MAX_NEW and any(len(r) == MAX_NEW for r in got[1:])
    # transformers agrees on every row: it stops at the EOS (and returns it).
    for p, row in zip(prompts, got):
        ref = _hf_ids(sm, enc, p, MAX_NEW, {fake})
        assert ref == (row + [fake] if len(row) < MAX_NEW else row)
    # The prefix cache is shared, never mutated by a batch.
    assert prefix.cache.get_seq_length() == prefix.length
    assert _decode(sm, prefix, prompts, MAX_NEW, {fake}) == expected


@pytest.mark.parametrize("n", [0, 1, 3])
def test_max_new_tokens_respected(sm, encs, n):
    enc = encs[1]
    never = {len(sm.tokenizer) + 7}
    prefix = sm.prefill(sm.fuse(enc))
    rows = _decode(sm, prefix, PROMPTS[:3], n, never)
    assert [len(r) for r in rows] == [n] * 3
    if n:
        answers = sm.answer(enc, PROMPTS[:3], max_new_tokens=n)
        assert answers == [sm.answer_alone(enc, p, max_new_tokens=n) for p in PROMPTS[:3]]
        assert all(len(sm.tokenizer(a, add_special_tokens=False)["input_ids"]) <= n + 1 for a in answers)


def test_one_batch_of_every_length_with_early_stops_equals_transformers(sm, encs):
    """All ten prompts (3 to ~30 suffix tokens) in one batch, with an EOS that stops some rows
    early: every row equals transformers' generate on its own full prompt."""
    enc = encs[1]
    prefix = sm.prefill(sm.fuse(enc))
    never = {len(sm.tokenizer) + 7}
    free = _decode(sm, prefix, PROMPTS, MAX_NEW, never)
    lengths = {len(sm.suffix_ids(p)) for p in PROMPTS}
    assert len(lengths) >= 8
    # The token that stops the most rows early while leaving at least one row running to the end.
    tokens = {t for r in free for t in r[:-1]}
    fake = max(sorted(tokens), key=lambda t: sum(t in r[:-1] for r in free) if any(t not in r for r in free) else -1)
    got = _decode(sm, prefix, PROMPTS, MAX_NEW, {fake})
    assert sum(len(r) < MAX_NEW for r in got) >= 2 and any(len(r) == MAX_NEW for r in got)
    for p, row in zip(PROMPTS, got):
        ref = _hf_ids(sm, enc, p, MAX_NEW, {fake})
        assert ref == (row + [fake] if len(row) < MAX_NEW else row)


def test_prefix_is_shared_never_copied(sm, encs, monkeypatch):
    """Rows read the one prefix cache in place: no deep copy, no repeat along the batch, and the
    key/value bytes held for the prefix do not grow with the batch."""
    from transformers import DynamicCache

    from spacemind_cli.models import prefix_attention

    prefix = sm.prefill(sm.fuse(encs[0]))
    ptrs = [layer.keys.data_ptr() for layer in prefix.cache.layers]

    def refuse(*a, **k):
        raise AssertionError("the prefix cache must not be copied or repeated")

    monkeypatch.setattr(DynamicCache, "batch_repeat_interleave", refuse)
    monkeypatch.setattr(DynamicCache, "__deepcopy__", refuse, raising=False)
    calls = []
    real_decode = prefix_attention._decode
    monkeypatch.setattr(prefix_attention, "_decode", lambda *a: calls.append(a[1].shape[0]) or real_decode(*a))
    never = {len(sm.tokenizer) + 7}
    per_batch = {}
    for b in (1, 8):
        stats = {}
        _decode_stats(sm, prefix, PROMPTS[:b], 3, never, stats)
        per_batch[b] = stats
    assert calls and set(calls) == {1, 8}  # the shared-prefix path ran, at both batch sizes
    assert per_batch[1]["prefix_kv_bytes"] == per_batch[8]["prefix_kv_bytes"] == generation.kv_bytes(prefix.cache)
    # Own cache: b rows x (widest suffix + 2 generated tokens) slots.
    lm = internvl.parts(sm.internvl)[0]
    cfg = lm.config
    per_token = 2 * cfg.num_hidden_layers * cfg.num_key_value_heads * (cfg.hidden_size // cfg.num_attention_heads) * 4
    for b, stats in per_batch.items():
        width = max(len(sm.suffix_ids(p)) for p in PROMPTS[:b])
        assert stats["suffix_kv_bytes"] == b * (width + 2) * per_token
    assert [layer.keys.data_ptr() for layer in prefix.cache.layers] == ptrs
    assert prefix.cache.get_seq_length() == prefix.length


def _decode_stats(sm, prefix, prompts, max_new_tokens, eos, stats):
    lm, head, embed = internvl.parts(sm.internvl)
    return generation.decode_batch(
        lm, head, embed, prefix, [sm.suffix_ids(p) for p in prompts],
        max_new_tokens=max_new_tokens, eos_ids=set(eos), pad_id=internvl.pad_token_id(sm.tokenizer), stats=stats,
    )  # fmt: skip
