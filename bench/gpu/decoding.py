"""The decode section: decode memory and time against batch size, shared prefix vs the old deep
copy + repeat, on the device, with the InternVL3-8B-shaped LLM already built (Qwen2.5-7B shapes,
bf16) and a prefix as long as the end-to-end workload's (32 frames: ~8.2k tokens).

The measurement is `bench.decode.measure` (see its docstring): per batch size (1, 2, 4, 8, 16) both
paths on the same prefilled prefix, seconds per batch, key/value bytes held, and the peak bytes
a call allocates above what was live before it (`torch.cuda.max_memory_allocated`). The goal
"prefix memory independent of batch size" is judged on what one extra row adds to the peak
(least-squares slope over the batch sizes): the old path adds a copy of the prefix's keys/values
plus the row's own work (its suffix's activations and keys/values); the shared-prefix path should
add only the row's own work. So the saving per extra row, old slope - new slope, in prefixes
(/ the prefix's key/value bytes) must be at least PREFIX_SAVING_MIN: ~1 when no row copies the
prefix, ~0 for a path that copies it per row. The new path's own slope is reported beside it
(the row's own work: at full size mostly the MLP activations of its ~50-130 suffix tokens).
"""

from __future__ import annotations

import copy

from .context import Ctx, ratio, rnd

PREFIX_SAVING_MIN = 0.9  # (old - new) peak bytes per extra row / the prefix's key/value bytes, at least


def decode_sizes(ctx: Ctx):
    """bench.decode.Sizes describing ctx.sm's LLM and the workload's prefix and questions."""
    from bench.decode import Sizes
    from bench.workload import scene_prompts

    sm, z = ctx.sm, ctx.sizes
    t = sm.internvl.config.text_config
    prompts = ctx.prompts or scene_prompts(0, 8)
    return Sizes(hidden=t.hidden_size, layers=t.num_hidden_layers, heads=t.num_attention_heads,
                 kv_heads=t.num_key_value_heads, intermediate=t.intermediate_size, vocab=t.vocab_size,
                 prefix_len=len(sm.prefix_ids(z.frames)), suffix_lens=[len(sm.suffix_ids(p)) for p in prompts[:8]],
                 max_new_tokens=z.max_new_tokens, batches=list(z.memory_batches), repeats=z.memory_repeats,
                 dtype=str(sm.dtype).removeprefix("torch."))


def section_decode(ctx: Ctx) -> dict:
    from bench.decode import measure
    from spacemind_cli.models import internvl

    if ctx.sm is None:
        raise RuntimeError("the model was not built (see the build section)")
    sizes = decode_sizes(ctx)
    ctx.log(f"decode: prefix {sizes.prefix_len} tokens, batches {sizes.batches}, old copy + repeat vs shared prefix")
    parts = internvl.parts(ctx.sm.internvl)
    # --tiny (CPU) compares the two paths' greedy tokens on an fp32 copy: the toy LM's bf16 near-ties
    # break differently per path with the seed and thread count, which says nothing about the code.
    # A GPU run compares them in bf16, on the measured LLM.
    check = [p.float() for p in copy.deepcopy(parts)] if ctx.args.tiny else None
    res = measure(ctx.device, sizes, log=lambda m: ctx.log(f"  {m}"), parts=parts, check_parts=check)
    del check
    res["model"] = "the build section's LLM (InternVL3-8B shape: Qwen2.5-7B), random ids for prefix and suffixes"
    s, prefix_kv = res["summary"], res["prefix_kv_bytes"]
    new_row, old_row = s.get("new_peak_extra_bytes_per_row"), s.get("old_peak_extra_bytes_per_row")
    saving = None if new_row is None or old_row is None else ratio(old_row - new_row, prefix_kv)
    res["goal"] = {
        "what": "prefix memory independent of batch size: per extra row, the shared-prefix path's peak grows by at "
        f"least {PREFIX_SAVING_MIN:g} of a prefix (its key/value bytes) less than the old path's, which copies the "
        "prefix per row (slopes of peak_extra_bytes over the batch sizes; both paths pay the row's own work)",
        "prefix_kv_bytes": prefix_kv,
        "new_peak_growth_per_row_bytes": new_row, "old_peak_growth_per_row_bytes": old_row,
        "saving_per_row_vs_prefix_kv": rnd(saving, 4),
        "new_growth_per_row_vs_prefix_kv": rnd(ratio(new_row, prefix_kv), 4),
        "old_growth_per_row_vs_prefix_kv": rnd(ratio(old_row, prefix_kv), 4),
        "min_saving": PREFIX_SAVING_MIN,
        "met": None if saving is None else saving >= PREFIX_SAVING_MIN,
        "tokens_equal_everywhere": s["tokens_equal_everywhere"],
    }
    res["lora_beside"] = lora_beside_cost(ctx)
    largest = res["batches"][-1]
    res["largest_batch"] = {"batch": largest["batch"], "time_old_vs_new": largest["ratios_old_vs_new"]["time"],
                            "peak_old_vs_new": largest["ratios_old_vs_new"]["peak_extra_bytes"]}
    ctx.cleanup()
    return res


LORA_RANKS = (8, 256)  # what the fullsize CPU run trained; the paper's recipe


def lora_beside_cost(ctx: Ctx) -> dict:
    """What a trained adapter kept beside the weights (`answer`'s default in bf16) costs a decode
    batch: 8 questions, max_new_tokens each (no stop token), after a prefilled prefix, with a
    random rank-r adapter on every linear layer of the LLM vs none (what a merged adapter costs)."""
    import time

    import torch
    from torch import nn

    from bench.workload import scene_prompts
    from spacemind_cli.models import generation, internvl
    from spacemind_cli.models.lora import LoraDelta, add_lora_delta

    sm, z = ctx.sm, ctx.sizes
    lm, head, embed = internvl.parts(sm.internvl)
    device = next(lm.parameters()).device
    suffixes = [sm.suffix_ids(p) for p in (ctx.prompts or scene_prompts(0, 8))[:8]]
    prefix_len = min(len(sm.prefix_ids(z.frames)), 4096)
    with torch.no_grad():
        ids = torch.randint(0, sm.internvl.config.text_config.vocab_size, (1, prefix_len), device=device)
        prefix = generation.prefill(lm, embed(ids))

    def batch_s() -> float:
        best = float("inf")
        for _ in range(2):
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            with torch.no_grad():
                generation.decode_batch(lm, head, embed, prefix, suffixes, max_new_tokens=z.max_new_tokens,
                                        eos_ids=set(), pad_id=internvl.pad_token_id(sm.tokenizer))
            if device.type == "cuda":
                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - t0)
        return best

    linears = [m for m in lm.modules() if isinstance(m, nn.Linear)]
    out = {"prefix_tokens": prefix_len, "batch": len(suffixes), "new_tokens": z.max_new_tokens,
           "adapted_linears": len(linears), "none_s": rnd(batch_s(), 4)}
    for r in LORA_RANKS:
        hooks = []
        for m in linears:
            a = torch.randn(r, m.in_features, device=device, dtype=m.weight.dtype) / m.in_features**0.5
            m.lora_delta = LoraDelta(a, torch.randn(m.out_features, r, device=device, dtype=m.weight.dtype) * 0.01, 2.0)
            hooks.append(m.register_forward_hook(add_lora_delta))
        seconds = batch_s()
        for m, hook in zip(linears, hooks):
            hook.remove()
            del m.lora_delta
        out[f"rank_{r}_s"] = rnd(seconds, 4)
        out[f"rank_{r}_vs_none"] = rnd(ratio(seconds, out["none_s"]), 3)
    return out
