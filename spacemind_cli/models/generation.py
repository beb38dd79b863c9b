"""Greedy decoding with a shared, prefilled prefix.

All questions about a scene share the visual prefix (system prompt + every frame's image tokens,
thousands of tokens). We prefill it once into a KV cache (batch 1) and decode batches of questions
against it without ever copying it: each batch row keeps only its own suffix (question + generated
tokens, left-padded) in a small cache, and attention merges the shared prefix with the row's own
suffix (`prefix_attention`). Each row's real tokens continue the prefix's positions as if it were
alone, so a row's tokens equal those of answering it by itself (see `decode_batch`).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from . import prefix_attention


def _cache_kwarg(lm: nn.Module) -> str:
    # transformers renamed `past_key_values` to `cache` (5.2x); accept both.
    params = inspect.signature(lm.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def new_cache(lm: nn.Module):
    from transformers import DynamicCache

    config: Any = lm.config  # a transformers config (nn.Module types attributes as Tensor | Module)
    return DynamicCache(config=config)


def lm_forward(
    lm: nn.Module, inputs_embeds, cache, attention_mask=None, position_ids=None, **attention_kwargs
) -> torch.Tensor:
    """Run the decoder with a KV cache (mutated in place); returns the last hidden states.

    attention_kwargs reach the attention function (e.g. `prefix_attention.KWARG`)."""
    out = lm(
        inputs_embeds=inputs_embeds,
        attention_mask=attention_mask,
        position_ids=position_ids,
        use_cache=True,
        return_dict=True,  # a config with return_dict=False would make it a tuple
        **{_cache_kwarg(lm): cache},
        **attention_kwargs,
    )
    return out.last_hidden_state


def kv_bytes(cache) -> int:
    """Bytes of keys and values a transformers cache holds."""
    return sum(t.numel() * t.element_size() for layer in cache.layers for t in (layer.keys, layer.values) if t is not None)


@dataclass
class Prefix:
    cache: object  # a transformers Cache holding the prefix's keys/values, batch 1; read only
    length: int

    def shared(self) -> prefix_attention.DecodeSpec:
        """The prefix's per-layer keys/values as decoding reads them (views, no copy)."""
        return prefix_attention.DecodeSpec.from_cache(self.cache)


@torch.no_grad()
def prefill(lm: nn.Module, inputs_embeds: torch.Tensor) -> Prefix:
    """inputs_embeds [1, L, d] -> the prefix KV cache."""
    cache = new_cache(lm)
    lm_forward(lm, inputs_embeds, cache)
    return Prefix(cache=cache, length=inputs_embeds.shape[1])


@torch.no_grad()
def decode_batch(
    lm: nn.Module,
    lm_head: nn.Linear,
    embed: nn.Module,
    prefix: Prefix,
    suffixes: list[list[int]],
    *,
    max_new_tokens: int,
    eos_ids: set[int],
    pad_id: int,
    stats: dict | None = None,
) -> list[list[int]]:
    """Greedy-decode one batch of suffixes after the shared prefix; returns new token ids per row
    (without the EOS token).

    The prefix's keys/values are read in place by every row (never copied or repeated): memory
    for the prefix does not grow with the batch. Each row's own keys/values (its left-padded
    suffix, then its generated tokens) live in a batch cache; a row's attention is the exact
    log-sum-exp merge of attention over the prefix and over its own suffix.

    Equality with answering alone: in fp32 the token ids equal those of transformers' `generate`
    on each full prompt (tests/test_generation.py, tests/test_model.py). The logits themselves
    are not bit-identical to it: the prefix/suffix split and the batch sum in a different order,
    so they agree to ~1e-6 relative, and a token flips only where the top two logits tie that
    closely (not seen in fp32). In bf16 the rounding is ~1e-2, so rare near-ties can flip a
    token between batched and alone.

    stats, if given, receives the key/value bytes held: prefix_kv_bytes (shared, once) and
    suffix_kv_bytes (this batch's own cache at the end).
    """
    device = lm_head.weight.device
    b = len(suffixes)
    if max_new_tokens <= 0:
        return [[] for _ in suffixes]
    prefix_attention.enable(lm)
    shared = {prefix_attention.KWARG: prefix.shared()}
    width = max(len(s) for s in suffixes)
    ids = torch.full((b, width), pad_id, dtype=torch.long, device=device)
    real = torch.zeros((b, width), dtype=torch.bool, device=device)  # which suffix slots hold a token
    for row, s in enumerate(suffixes):
        if s:
            ids[row, width - len(s) :] = torch.tensor(s, dtype=torch.long, device=device)
            real[row, width - len(s) :] = True
    # Each row's real tokens continue the prefix's positions; pads get a harmless position.
    positions = (prefix.length + real.long().cumsum(dim=1) - 1).clamp(min=prefix.length)
    # Mask over the rows' own keys only (the prefix needs none): causal, real tokens only.
    causal = torch.ones((width, width), dtype=torch.bool, device=device).tril()
    mask = causal[None, None] & real[:, None, None, :]  # [b, 1, W, W]

    cache = new_cache(lm)  # the rows' own keys/values, [b, Hk, S, D] per layer
    masks = prefix_attention.masks
    hidden = lm_forward(lm, embed(ids), cache, attention_mask=masks(lm, mask), position_ids=positions, **shared)
    next_pos = positions[:, -1:] + 1

    done = torch.zeros(b, dtype=torch.bool, device=device)
    eos = torch.tensor(sorted(eos_ids), dtype=torch.long, device=device)
    steps: list[torch.Tensor] = []
    for step in range(max_new_tokens):
        token = lm_head(hidden[:, -1]).argmax(dim=-1)  # [B]
        token = torch.where(done, torch.full_like(token, pad_id), token)
        steps.append(token)
        done |= torch.isin(token, eos)
        # One host sync per step: the only one the loop needs.
        if step == max_new_tokens - 1 or bool(done.all()):
            break
        real = torch.cat([real, torch.ones((b, 1), dtype=torch.bool, device=device)], dim=1)
        step_mask = masks(lm, real[:, None, None, :])  # [b, 1, 1, S]
        hidden = lm_forward(lm, embed(token[:, None]), cache, attention_mask=step_mask, position_ids=next_pos, **shared)
        next_pos = next_pos + 1

    if stats is not None:
        stats["prefix_kv_bytes"] = kv_bytes(prefix.cache)
        stats["suffix_kv_bytes"] = kv_bytes(cache)
    out = []
    for row in torch.stack(steps, dim=1).tolist():
        cut = next((i for i, t in enumerate(row) if t in eos_ids), len(row))
        out.append(row[:cut])
    return out
