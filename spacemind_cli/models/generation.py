"""Greedy decoding with a shared, prefilled prefix.

All questions about a scene share the visual prefix (system prompt + every frame's image
tokens, thousands of tokens). We prefill it once into a KV cache and, per batch of questions,
repeat that cache along the batch, append the left-padded question suffixes and decode.
Pads sit between prefix and suffix, masked out, and each row's positions continue from the
prefix as if it were alone, so a row's tokens equal those of answering it by itself.
"""

from __future__ import annotations

import copy
import inspect
from dataclasses import dataclass

import torch
from torch import nn


def _cache_kwarg(lm: nn.Module) -> str:
    # transformers renamed `past_key_values` to `cache` (5.2x); accept both.
    params = inspect.signature(lm.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def new_cache(lm: nn.Module):
    from transformers import DynamicCache

    return DynamicCache(config=lm.config)


def lm_forward(lm: nn.Module, inputs_embeds, cache, attention_mask=None, position_ids=None) -> torch.Tensor:
    """Run the decoder with a KV cache (mutated in place); returns the last hidden states."""
    out = lm(
        inputs_embeds=inputs_embeds,
        attention_mask=attention_mask,
        position_ids=position_ids,
        use_cache=True,
        return_dict=True,  # a config with return_dict=False would make it a tuple
        **{_cache_kwarg(lm): cache},
    )
    return out.last_hidden_state


@dataclass
class Prefix:
    cache: object  # a transformers Cache holding the prefix's keys/values, batch 1
    length: int


@torch.no_grad()
def prefill(lm: nn.Module, inputs_embeds: torch.Tensor) -> Prefix:
    """inputs_embeds [1, L, d] -> the prefix KV cache."""
    cache = new_cache(lm)
    lm_forward(lm, inputs_embeds, cache)
    return Prefix(cache=cache, length=inputs_embeds.shape[1])


@torch.no_grad()
def decode_batch(
    lm: nn.Module,
    lm_head: nn.Module,
    embed: nn.Module,
    prefix: Prefix,
    suffixes: list[list[int]],
    *,
    max_new_tokens: int,
    eos_ids: set[int],
    pad_id: int,
) -> list[list[int]]:
    """Greedy-decode one batch of suffixes after the shared prefix; returns new token ids per row
    (without the EOS token)."""
    device = lm_head.weight.device
    b = len(suffixes)
    if max_new_tokens <= 0:
        return [[] for _ in suffixes]
    width = max(len(s) for s in suffixes)
    ids = torch.full((b, width), pad_id, dtype=torch.long, device=device)
    suffix_mask = torch.zeros((b, width), dtype=torch.long, device=device)
    for row, s in enumerate(suffixes):
        if s:
            ids[row, width - len(s) :] = torch.tensor(s, dtype=torch.long, device=device)
            suffix_mask[row, width - len(s) :] = 1
    mask = torch.cat([torch.ones((b, prefix.length), dtype=torch.long, device=device), suffix_mask], dim=1)
    # Each row's real tokens continue the prefix's positions; pads get a harmless position.
    positions = (prefix.length + suffix_mask.cumsum(dim=1) - 1).clamp(min=prefix.length)

    cache = copy.deepcopy(prefix.cache)
    if b > 1:
        cache.batch_repeat_interleave(b)
    hidden = lm_forward(lm, embed(ids), cache, attention_mask=mask, position_ids=positions)
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
        mask = torch.cat([mask, torch.ones((b, 1), dtype=torch.long, device=device)], dim=1)
        hidden = lm_forward(lm, embed(token[:, None]), cache, attention_mask=mask, position_ids=next_pos)
        next_pos = next_pos + 1

    out = []
    for row in torch.stack(steps, dim=1).tolist():
        cut = next((i for i, t in enumerate(row) if t in eos_ids), len(row))
        out.append(row[:cut])
    return out
