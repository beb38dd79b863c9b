"""Shared-prefix attention for InternVL's language model (Qwen2 in transformers), in one place.

Every question about a scene shares its visual prefix (system prompt + all frames' image tokens,
~8,200 tokens at 32 frames) and adds a few dozen tokens of its own. Two jobs exploit that:

* decoding (`generation.decode_batch`): the prefix's keys/values are prefilled once, batch 1, and
  never copied; each batch row holds only its own suffix (question + generated tokens) in a normal
  cache. A suffix query attends to the prefix (no mask: it sees all of it) and to its row's own
  suffix (causal + left padding), and the two halves are merged exactly by their log-sum-exp:

      out = (exp(lse_p) * out_p + exp(lse_s) * out_s) / (exp(lse_p) + exp(lse_s))

* packed training (`packing`): one sequence `[prefix][q1 a1][q2 a2]...`; prefix rows are plain
  causal attention over the prefix, and all question rows attend in one SDPA call to
  [prefix keys ; question keys] under one small boolean mask [T, P + T] (prefix columns visible,
  block-diagonal causal among question columns). Differentiable; works under gradient
  checkpointing.

How it plugs into transformers (5.17 .. 5.24 checked): `enable(lm)` registers an attention
function under `spacemind_prefix+<base>` (base: the model's own implementation, "sdpa" or
"eager"; a flash-attn LM becomes "sdpa", see `enable`) with
`AttentionInterface`, the base's mask function under the same name with `AttentionMaskInterface`,
and points the LM config at that name. The function runs the base implementation unchanged
unless the forward call carries the keyword `KWARG` (keyword arguments of the decoder's forward
reach the attention function), so every other call, `generate` included, computes exactly what it
did before. Calls carrying the keyword also pass their mask as a dict per layer type, so
transformers' mask creation is skipped (it would otherwise mistake the packed positions for
separate packed sequences).
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

log = logging.getLogger(__name__)

KWARG = "spacemind_prefix"  # the forward keyword carrying a DecodeSpec or a PackedSpec
NAME = "spacemind_prefix"  # registered as f"{NAME}+{base}"
# Scores materialised at once by `attend_lse` (fp32 elements, 16 MiB): bounds decode's transient
# memory whatever the batch (queries are chunked; a decode step at full size fits in one chunk).
SCORE_BUDGET = 1 << 22
_GQA_KWARG = tuple(int(x) for x in torch.__version__.split(".")[:2]) >= (2, 5)  # SDPA's enable_gqa


@dataclass(frozen=True)
class DecodeSpec:
    """The shared prefix for decoding: per layer keys/values [1, Hk, P, D], read only."""

    keys: Sequence[torch.Tensor]
    values: Sequence[torch.Tensor]

    @classmethod
    def from_cache(cls, cache) -> DecodeSpec:
        layers = cache.layers
        return cls(keys=[layer.keys for layer in layers], values=[layer.values for layer in layers])

    @property
    def length(self) -> int:
        return int(self.keys[0].shape[2])


@dataclass(frozen=True)
class PackedSpec:
    """A packed training sequence: the first `prefix_len` tokens are the shared prefix, the rest
    are question segments; the question rows' mask arrives as the attention mask."""

    prefix_len: int


# ----------------------------------------------------------------------------------- registration
def enable(lm: nn.Module) -> str:
    """Route `lm`'s attention through this module (idempotent); returns the registered name.

    Calls without `KWARG` keep running the model's own implementation with its own masks."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface

    config: Any = lm.config  # a transformers config (nn.Module types attributes as Tensor | Module)
    current = config._attn_implementation or "eager"
    base = current.removeprefix(NAME + "+")  # already ours (e.g. a model unpickled in a new process)
    if "flash" in base:
        # transformers' flash integration picks its kernel from the config's name, which we
        # replace: the LM's other calls go through torch SDPA (its own flash kernel on CUDA).
        log.info("shared-prefix attention: the LM's %s calls now run through sdpa", base)
        base = "sdpa"
    if base not in ("eager", "sdpa"):
        raise ValueError(f"shared-prefix attention supports eager, sdpa and flash bases, not {base!r}")
    name = f"{NAME}+{base}"
    if name not in AttentionMaskInterface._global_mapping:  # registrations are process-wide
        AttentionInterface.register(name, functools.partial(_attention, base=base))
        AttentionMaskInterface.register(name, ALL_MASK_ATTENTION_FUNCTIONS[base])
    config._attn_implementation = name
    return name


def masks(lm: nn.Module, mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """One prepared mask per layer type: transformers then skips its own mask creation."""
    types = getattr(lm.config, "layer_types", None) or ["full_attention"]
    if any(t != "full_attention" for t in types):
        raise ValueError(f"shared-prefix attention supports full attention layers only, got {sorted(set(types))}")
    return {"full_attention": mask}


def _base_function(base: str, module: nn.Module):
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    if base == "eager":  # not registered: each model file has its own
        return sys.modules[type(module).__module__].eager_attention_forward
    return ALL_ATTENTION_FUNCTIONS[base]


def _attention(module, query, key, value, attention_mask, *, base: str, **kwargs):
    """transformers' attention signature: query [B, H, T, D], key/value [B, Hk, S, D] ->
    ([B, T, H, D], weights or None)."""
    spec = kwargs.pop(KWARG, None)
    if spec is None:
        return _base_function(base, module)(module, query, key, value, attention_mask, **kwargs)
    if kwargs.get("sliding_window") is not None:
        raise NotImplementedError("shared-prefix attention does not support sliding-window layers")
    scale = kwargs.get("scaling") or query.shape[-1] ** -0.5
    if isinstance(spec, DecodeSpec):
        return _decode(module, query, key, value, attention_mask, spec, scale), None
    if isinstance(spec, PackedSpec):
        dropout = kwargs.get("dropout", 0.0) if module.training else 0.0
        return _packed(query, key, value, attention_mask, spec, scale, dropout), None
    raise TypeError(f"{KWARG} must be a DecodeSpec or a PackedSpec, got {type(spec).__name__}")


# ----------------------------------------------------------------------------------- decoding
def attend_lse(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float, mask: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax attention that also returns its log-sum-exp, in fp32 (no gradient needed).

    q [B, Hk, M, D], k/v [B, Hk, S, D], mask bool broadcastable to [B, Hk, M, S] (True = attend)
    -> out [B, Hk, M, D] fp32, lse [B, Hk, M] fp32 (-inf, and out 0, where a query sees no key).
    Queries are processed in chunks so at most SCORE_BUDGET scores exist at once. Inputs are
    upcast to fp32 (scores rounded to bf16 would move the softmax by ~1%): in bf16 a step reads
    the prefix and an fp32 copy of it per layer, once per batch rather than once per row. A
    fused kernel that returns the log-sum-exp (e.g. flash-attn's `flash_attn_with_kvcache(...,
    return_softmax_lse=True)`) would save that copy; not used, as flash-attn is optional.
    """
    b, hk, m, _ = q.shape
    s = k.shape[2]
    kt = k.float().transpose(-1, -2)  # [B, Hk, D, S]
    vf = v.float()
    step = max(1, SCORE_BUDGET // max(1, b * hk * s))
    outs, lses = [], []
    for i in range(0, m, step):
        scores = torch.matmul(q[:, :, i : i + step].float(), kt).mul_(scale)  # [B, Hk, m, S], the one big buffer
        if mask is not None:
            scores.masked_fill_(~(mask if mask.shape[-2] == 1 else mask[..., i : i + step, :]), float("-inf"))
        top = scores.amax(dim=-1, keepdim=True)  # [B, Hk, m, 1]; -inf where a query sees no key
        top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
        weights = scores.sub_(top).exp_()  # in place: no second score-sized buffer
        denom = weights.sum(dim=-1, keepdim=True)  # [B, Hk, m, 1]; 0 where a query sees no key
        out = torch.matmul(weights, vf) / denom.clamp(min=torch.finfo(denom.dtype).tiny)  # 0 there
        outs.append(out)
        lses.append((top + denom.log()).squeeze(-1))
    return torch.cat(outs, dim=2), torch.cat(lses, dim=2)


def merge(out_a: torch.Tensor, lse_a: torch.Tensor, out_b: torch.Tensor, lse_b: torch.Tensor) -> torch.Tensor:
    """Attention over the union of two disjoint key sets from each set's output and log-sum-exp:
    out [..., M, D], lse [..., M] (at least one of the two finite per query)."""
    lse = torch.logaddexp(lse_a, lse_b)
    return torch.exp(lse_a - lse)[..., None] * out_a + torch.exp(lse_b - lse)[..., None] * out_b


def _decode(module, q, k, v, mask, spec: DecodeSpec, scale: float) -> torch.Tensor:
    """q [b, H, t, D]; k/v [b, Hk, S, D]: the rows' own suffix keys (the decode cache);
    mask [b, 1, t, S] bool over those keys; the prefix spec.keys[layer] [1, Hk, P, D]
    -> [b, t, H, D]."""
    b, h, t, d = q.shape
    hk = k.shape[1]
    g = h // hk  # query heads per KV head (GQA): head j uses KV head j // g
    kp, vp = spec.keys[module.layer_idx], spec.values[module.layer_idx]
    # The prefix is the same for every row and every query sees all of it: fold rows and the
    # heads that share a KV head into the query axis, one batch-1 product over one prefix copy.
    qp = q.reshape(b, hk, g, t, d).permute(1, 2, 0, 3, 4).reshape(1, hk, g * b * t, d)
    out_p, lse_p = attend_lse(qp, kp, vp, scale)  # [1, Hk, g*b*t, D], [1, Hk, g*b*t]
    out_p = out_p.reshape(hk, g, b, t, d).permute(2, 0, 1, 3, 4)  # [b, Hk, g, t, D]
    lse_p = lse_p.reshape(hk, g, b, t).permute(2, 0, 1, 3)  # [b, Hk, g, t]
    # Each row's own suffix: small, masked (causal + the row's left padding).
    s = k.shape[2]
    qs = q.reshape(b, hk, g * t, d)
    ms = mask.reshape(b, 1, 1, t, s).expand(b, 1, g, t, s).reshape(b, 1, g * t, s)
    out_s, lse_s = attend_lse(qs, k, v, scale, ms)
    out = merge(out_p, lse_p, out_s.reshape(b, hk, g, t, d), lse_s.reshape(b, hk, g, t))
    return out.reshape(b, h, t, d).transpose(1, 2).to(q.dtype).contiguous()


# ----------------------------------------------------------------------------------- training
def packed_mask(prefix_len: int, segment_lengths: Sequence[int], device=None) -> torch.Tensor:
    """The question rows' mask [1, 1, T, P + T], T = sum of segment lengths: every prefix column
    visible, block-diagonal causal among the question columns."""
    lengths = torch.tensor(list(segment_lengths), dtype=torch.long, device=device)
    seg = torch.repeat_interleave(torch.arange(len(lengths), device=device), lengths)  # [T]
    idx = torch.arange(seg.numel(), device=device)
    own = (seg[:, None] == seg[None, :]) & (idx[None, :] <= idx[:, None])  # [T, T]
    prefix = torch.ones(seg.numel(), prefix_len, dtype=torch.bool, device=device)
    return torch.cat([prefix, own], dim=1)[None, None]


def _sdpa(q, k, v, g: int, **kw) -> torch.Tensor:
    if g > 1 and _GQA_KWARG and kw.get("attn_mask") is None:
        return F.scaled_dot_product_attention(q, k, v, enable_gqa=True, **kw)
    if g > 1:  # with a mask, CUDA's GQA support falls back to the math kernel: expand instead
        k, v = (x.repeat_interleave(g, dim=1) for x in (k, v))
    return F.scaled_dot_product_attention(q, k, v, **kw)


def _packed(q, k, v, mask, spec: PackedSpec, scale: float, dropout: float) -> torch.Tensor:
    """q [1, H, P + T, D], k/v [1, Hk, P + T, D], mask [1, 1, T, P + T] -> [1, P + T, H, D]."""
    if q.shape[0] != 1:
        raise ValueError(f"packed shared-prefix attention takes one sequence per call, got batch {q.shape[0]}")
    p = spec.prefix_len
    n = q.shape[2]
    if mask is None or tuple(mask.shape[-2:]) != (n - p, n):
        got = None if mask is None else tuple(mask.shape)
        raise ValueError(f"packed attention needs the question rows' mask [1, 1, {n - p}, {n}], got {got}")
    g = q.shape[1] // k.shape[1]
    kw = dict(scale=scale, dropout_p=dropout)
    # Prefix rows: plain causal attention over the prefix (flash-eligible: no mask).
    head = _sdpa(q[:, :, :p], k[:, :, :p], v[:, :, :p], g, is_causal=True, **kw)  # [1, H, P, D]
    # Question rows: one call over every key, one small mask.
    tail = _sdpa(q[:, :, p:], k, v, g, attn_mask=mask.to(q.device), **kw)  # [1, H, T, D]
    return torch.cat([head, tail], dim=2).transpose(1, 2).contiguous()
