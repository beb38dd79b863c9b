"""--profile: torch.profiler top ops (self device time) for one VGGT call at the target frame count
and one decode batch; in the JSON and as tables in `<out>.profile.txt` beside it."""

from __future__ import annotations

from pathlib import Path

import torch

from .build import spacemind_config, vggt_layers_to_run
from .context import Ctx, rnd
from .vggt import geometry


def top_ops(prof, sort_keys) -> tuple[str, list[dict]]:
    """(the profiler's table sorted by the first key it accepts, the 15 ops with most self time)."""
    avgs = prof.key_averages()
    table = None
    for key in sort_keys:
        try:
            table = avgs.table(sort_by=key, row_limit=25)
            break
        except Exception:
            continue

    def attr(ev, *names):
        for n in names:
            if hasattr(ev, n):
                return getattr(ev, n)
        return 0.0

    rows = []
    for ev in avgs:
        rows.append({
            "name": ev.key, "calls": ev.count,
            "self_device_ms": rnd(attr(ev, "self_device_time_total", "self_cuda_time_total") / 1000, 3),
            "device_total_ms": rnd(attr(ev, "device_time_total", "cuda_time_total") / 1000, 3),
            "self_cpu_ms": rnd(ev.self_cpu_time_total / 1000, 3),
        })
    k = "self_device_ms" if any(r["self_device_ms"] for r in rows) else "self_cpu_ms"
    rows.sort(key=lambda r: -(r[k] or 0))
    return table or "", rows[:15]


def profile_vggt(ctx: Ctx, S: int, acts, keys) -> tuple[str, list[dict]]:
    """One VGGT call as SpaceMind.encode makes it (ctx.vggt: --vggt-weights), after a warmup."""
    from torch.profiler import profile

    layers = vggt_layers_to_run(spacemind_config(ctx))
    size = ctx.vggt.config.img_size
    images = torch.rand(1, S, 3, size, size, device=ctx.device)
    geometry(ctx, ctx.vggt, images, layers)
    ctx.sync()
    with profile(activities=acts) as prof:
        geometry(ctx, ctx.vggt, images, layers)
        ctx.sync()
    return top_ops(prof, keys)


def section_profile(ctx: Ctx) -> dict:
    from torch.profiler import ProfilerActivity, profile

    from spacemind_cli.files import atomic_write_text

    if ctx.vggt is None:
        raise RuntimeError("no VGGT model to profile")
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if ctx.cuda else [])
    keys = (["self_device_time_total", "self_cuda_time_total", "self_cpu_time_total"] if ctx.cuda
            else ["self_cpu_time_total"])
    S = ctx.sizes.target_frames
    t_vggt, rows_vggt = profile_vggt(ctx, S, acts, keys)
    out = {"vggt": {"frames": S, "top_ops": rows_vggt}}
    out["vggt"]["vggt_weights"] = ctx.args.vggt_weights
    text = f"== VGGT ({ctx.args.vggt_weights} weights), {S} frames ==\n{t_vggt}\n"
    if ctx.sm is not None and ctx.prefix is not None:
        prompts = (ctx.prompts * 4)[: ctx.sizes.batch_size]
        with profile(activities=acts) as prof:
            ctx.sm.generate(ctx.prefix, prompts, max_new_tokens=ctx.sizes.max_new_tokens)
            ctx.sync()
        t_dec, rows_dec = top_ops(prof, keys)
        out["decode"] = {"batch": len(prompts), "max_new_tokens": ctx.sizes.max_new_tokens, "top_ops": rows_dec}
        text += f"\n== decode batch {len(prompts)} x {ctx.sizes.max_new_tokens} tokens ==\n{t_dec}\n"
    else:
        out["decode"] = {"skipped": "no prefilled prefix (e2e section did not run)"}
    path = Path(ctx.args.out).with_suffix(".profile.txt")
    atomic_write_text(path, lambda fh: fh.write(text), durable=False)
    out["table_file"] = shown_path(path)
    ctx.cleanup()
    return out


def shown_path(path: Path) -> str:
    """`path` relative to the working directory when inside it (no machine path in the results)."""
    full, cwd = path.resolve(), Path.cwd().resolve()
    return str(full.relative_to(cwd)) if full.is_relative_to(cwd) else str(path)
