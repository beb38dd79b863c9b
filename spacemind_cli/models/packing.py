"""Shared-prefix packing for training: several questions about one scene in one sequence.

All questions about a scene share its visual prefix (~8,200 tokens at 32 frames) against ~50
tokens for a question and its answer. Trained as separate samples, every question pays for the
whole prefix again; packed, the prefix is computed once:

    separate:  [prefix][q1 a1 <|im_end|>]   [prefix][q2 a2 <|im_end|>]   ...
    packed:    [prefix][q1 a1 <|im_end|>][q2 a2 <|im_end|>]...

In the packed sequence each question segment attends to the prefix and to itself only (causal
inside; `prefix_attention`), and its positions continue the prefix's as if it were alone
(segment token j has position P + j). Every token therefore sees exactly what it sees in its
separate sample, so per-token losses, and with the reduction below the loss and its gradients,
equal those of separate samples (up to float summation order).

Targets: the answer tokens and the end-of-turn token; the prefix and every prompt token are
-100. Labels follow transformers' convention (unshifted: position t is predicted from t - 1).
One global shift is right for a packed sequence because every segment starts with a prompt
token, whose label is -100: a segment's last token never learns to predict the next segment.

Loss reduction: the sum of token cross-entropies over the whole global batch (every scene of an
optimizer step, across gradient accumulation and data-parallel ranks) divided by the number of
target tokens in that batch (`num_targets`, counted before the step, as transformers'
`num_items_in_batch`). A constant divisor makes the loss independent of how tokens are grouped
into sequences, which is what makes packed == separate; a mean per sequence would weight a
question by 1 / (targets in whatever sequence it landed in), and changes with the packing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from . import prefix_attention

IGNORE = -100


@dataclass(frozen=True)
class Segment:
    prompt_ids: list[int]  # the question turn, e.g. SpaceMind.suffix_ids(prompt): never empty
    answer_ids: list[int]  # the answer, without the end-of-turn token (pack appends it)


@dataclass
class Packed:
    """One training sequence: a prefix of `prefix_len` tokens (embeddings supplied by the caller)
    followed by `ids`."""

    prefix_len: int
    ids: torch.Tensor  # [T] every segment's prompt + answer + end-of-turn tokens, in order
    position_ids: torch.Tensor  # [1, P + T]
    labels: torch.Tensor  # [1, P + T] target token or -100, unshifted
    segment_lengths: list[int]

    @property
    def num_targets(self) -> int:
        return int((self.labels != IGNORE).sum())

    @property
    def length(self) -> int:
        return self.prefix_len + int(self.ids.numel())

    def attention_mask(self, device=None) -> torch.Tensor:
        """The question rows' mask [1, 1, T, P + T] (prefix visible, each segment causal on itself)."""
        return prefix_attention.packed_mask(self.prefix_len, self.segment_lengths, device)


def _check(prefix_len: int, segments: Sequence[Segment]) -> None:
    if prefix_len < 1:
        raise ValueError(f"a packed sequence needs a prefix, got prefix_len={prefix_len}")
    if not segments:
        raise ValueError("a packed sequence needs at least one segment")
    for i, seg in enumerate(segments):
        if not seg.prompt_ids:
            # The first target would be predicted from the prefix's last token, which all
            # segments share: it can predict only one of them.
            raise ValueError(f"segment {i} has no prompt tokens; every segment must start with its question")


def pack(prefix_len: int, segments: Sequence[Segment], end_id: int) -> Packed:
    """[prefix][prompt_0 answer_0 end][prompt_1 answer_1 end]... with per-segment positions."""
    _check(prefix_len, segments)
    ids: list[int] = []
    labels: list[int] = [IGNORE] * prefix_len
    positions: list[int] = list(range(prefix_len))
    lengths = []
    for seg in segments:
        tokens = list(seg.prompt_ids) + list(seg.answer_ids) + [end_id]
        ids += tokens
        labels += [IGNORE] * len(seg.prompt_ids) + tokens[len(seg.prompt_ids) :]
        positions += range(prefix_len, prefix_len + len(tokens))
        lengths.append(len(tokens))
    return Packed(
        prefix_len=prefix_len,
        ids=torch.tensor(ids, dtype=torch.long),
        position_ids=torch.tensor([positions], dtype=torch.long),
        labels=torch.tensor([labels], dtype=torch.long),
        segment_lengths=lengths,
    )


def separate(prefix_len: int, segments: Sequence[Segment], end_id: int) -> list[Packed]:
    """The same questions as separate samples, [prefix][prompt answer end] each: the reference."""
    _check(prefix_len, segments)
    return [pack(prefix_len, [seg], end_id) for seg in segments]


def num_targets(segments: Sequence[Segment]) -> int:
    """Target tokens these segments contribute (answers + one end-of-turn each)."""
    return sum(len(seg.answer_ids) + 1 for seg in segments)


def inputs_embeds(embed: nn.Module, prefix_embeds: torch.Tensor, packed: Packed) -> torch.Tensor:
    """prefix_embeds [1, P, d] (may carry gradients, e.g. from the CGMF) -> [1, P + T, d]."""
    if prefix_embeds.shape[:2] != (1, packed.prefix_len):
        raise ValueError(f"prefix embeddings {tuple(prefix_embeds.shape)} do not match prefix_len {packed.prefix_len}")
    tokens = embed(packed.ids.to(prefix_embeds.device))[None].to(prefix_embeds.dtype)  # [1, T, d]
    return torch.cat([prefix_embeds, tokens], dim=1)


def loss_sum(lm: nn.Module, lm_head: nn.Module, embeds: torch.Tensor, packed: Packed) -> torch.Tensor:
    """Sum of the token cross-entropies of `packed`'s targets (fp32 scalar, differentiable).

    embeds [1, P + T, d] from `inputs_embeds`. One segment runs transformers' own causal path
    (a separate sample); several run the shared-prefix attention. Logits are computed only at
    the rows that predict a target (a prefix of 8k rows times a 150k vocabulary would not fit).
    """
    device = embeds.device
    if embeds.shape[1] != packed.length:
        raise ValueError(f"embeddings hold {embeds.shape[1]} tokens, the packed sequence {packed.length}")
    kwargs = dict(inputs_embeds=embeds, position_ids=packed.position_ids.to(device), use_cache=False, return_dict=True)
    if len(packed.segment_lengths) > 1:
        prefix_attention.enable(lm)
        kwargs["attention_mask"] = prefix_attention.masks(lm, packed.attention_mask(device))
        kwargs[prefix_attention.KWARG] = prefix_attention.PackedSpec(packed.prefix_len)
    hidden = lm(**kwargs).last_hidden_state  # [1, P + T, d]
    targets = packed.labels[0, 1:].to(device)  # row t predicts token t + 1
    rows = (targets != IGNORE).nonzero(as_tuple=True)[0]
    logits = lm_head(hidden[0, rows])  # [targets, vocab]
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))  # bf16 -> fp32, fp64 stays
    return F.cross_entropy(logits, targets[rows], reduction="sum")
