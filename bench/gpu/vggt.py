"""VGGT alone: frames/s, TFLOP/s (counted analytically, `vggt_flops`) and peak memory per frame
count, in three configurations (`CONFIGURATIONS`), all run with the aggregator under bf16 autocast:

  naive      fp32 weights, all 24 layers kept (as the reference returns them; VGGT's demo setup)
  ours       fp32 weights, only the layers SpaceMind needs kept: the library's default
             (`SpaceMind.from_pretrained(..., vggt_weights="fp32")`, the reference's precision)
  ours_half  weights in bf16, the same layers: the `vggt_weights="half"` opt-in

One build: naive and ours run on the fp32 weights, then the model is cast to bf16 in place for
ours_half. The targets judge `ours` (the default) against `naive`.
"""

from __future__ import annotations

import statistics
import time

import torch

from .build import build_vggt, spacemind_config, vggt_dtype, vggt_layers_to_run
from .context import GIB, Ctx, Mem, oom_line, param_bytes, param_count, ratio, rnd

FLOP_FORMULA = (
    "S frames of HxW, patch p, width C, MLP width Cm = mlp_ratio*C, n = (H/p)(W/p) patches, P = 1 + R + n "
    "tokens per frame (camera + R=4 registers + patches; DINOv2 has cls + 4 registers + patches = P too). "
    "One block over T tokens whose attention spans L tokens: linear = 2*T*(4*C^2 + 2*C*Cm) "
    "(qkv 3C^2, proj C^2, fc1, fc2), attention = 4*T*L*C (QK^T and AV). "
    "Aggregator = patch conv 2*S*n*(3*p^2)*C + DINOv2 depth_d x block(T=S*P, L=P) + depth x frame "
    "block(T=S*P, L=P) + depth x global block(T=S*P, L=S*P). Not counted (<1%): norms, RoPE, softmax, "
    "GELU, residuals, the camera head (S tokens)."
)


def vggt_flops(cfg, S: int, H: int, W: int) -> dict:
    """FLOPs of one aggregator call over S frames of HxW, by part (see FLOP_FORMULA)."""
    p, C = cfg.patch_size, cfg.embed_dim
    cm = cfg.mlp_ratio * C
    n = (H // p) * (W // p)
    P = 1 + cfg.num_register_tokens + n
    T = S * P
    lin = 2 * T * (4 * C * C + 2 * C * cm)
    out = {"patch_conv": 2 * S * n * 3 * p * p * C}
    if cfg.patch_embed != "conv":
        dcm = cfg.patch_embed_mlp_ratio * C
        out["dinov2_linear"] = cfg.patch_embed_depth * 2 * T * (4 * C * C + 2 * C * dcm)
        out["dinov2_attention"] = cfg.patch_embed_depth * 4 * T * P * C
    out["frame_linear"] = cfg.depth * lin
    out["frame_attention"] = cfg.depth * 4 * T * P * C
    out["global_linear"] = cfg.depth * lin
    out["global_attention"] = cfg.depth * 4 * T * T * C
    out["total"] = sum(out.values())
    return out


# name -> (weights: "fp32" or the compute dtype, which layers are kept, what it is)
CONFIGURATIONS = {
    "naive": ("fp32", "all", "fp32 weights under bf16 autocast (VGGT's demo setup), camera head fp32, all layers kept"),
    "ours": ("fp32", "needed", "fp32 weights, aggregator under bf16 autocast, camera head fp32, only the layers "
             "SpaceMind needs kept: the library default (vggt_weights='fp32', the reference's precision)"),
    "ours_half": ("half", "needed", "bf16 weights, bf16 autocast, camera head bf16, only the layers SpaceMind "
                  "needs kept: the vggt_weights='half' opt-in"),
}


def geometry(ctx: Ctx, vggt, images: torch.Tensor, layers: tuple[int, ...]):
    """VGGT's part of `SpaceMind.encode`: the aggregator under autocast to the compute dtype, the
    camera head (in its weights' dtype, autocast off) on layer -1. `layers` must hold -1."""
    with torch.no_grad(), ctx.autocast(ctx.dtype):
        tokens, _ = vggt.aggregate(images, layers=layers)
        pose = vggt.camera_pose(tokens[layers.index(-1)])
    return tokens, pose


def measure(ctx: Ctx, vggt, S: int, layers: tuple[int, ...], flops: float) -> dict:
    """One configuration at S frames: a warmup call, then sizes.reps timed calls (the first under
    Mem); seconds per call = the median."""
    size = vggt.config.img_size
    images = torch.rand(1, S, 3, size, size, device=ctx.device)
    out = geometry(ctx, vggt, images, layers)  # warmup (kernel selection, allocator)
    kept = sum(t.numel() * t.element_size() for t in out[0])
    del out
    ctx.sync()
    times = []
    mem = Mem(ctx, base_bytes=param_bytes(vggt))
    with mem:
        t0 = time.perf_counter()
        out = geometry(ctx, vggt, images, layers)
        ctx.sync()
        times.append(time.perf_counter() - t0)
        del out
    for _ in range(ctx.sizes.reps - 1):
        t0 = time.perf_counter()
        out = geometry(ctx, vggt, images, layers)
        ctx.sync()
        times.append(time.perf_counter() - t0)
        del out
    t = statistics.median(times)
    tflops = flops / t / 1e12
    return {
        "frames": S, "s_per_call": rnd(t, 5), "runs_s": [rnd(x, 5) for x in times], "frames_per_s": rnd(S / t, 3),
        "tflop_per_call": rnd(flops / 1e12, 6), "tflops": rnd(tflops, 4),
        "fraction_of_peak": rnd(ratio(tflops, ctx.peak_tflops), 4), "kept_output_gib": rnd(kept / GIB, 4),
        "weights_gib": rnd(param_bytes(vggt) / GIB, 4), **mem.figures(),
    }


def run_configuration(ctx: Ctx, vggt, name: str, layers: tuple[int, ...], sizes: list[int], reserve: float) -> dict:
    """`measure` at every frame count, smallest first; a size whose time (estimated from the
    previous one) would eat into `reserve` is skipped, an OOM skips the larger sizes."""
    cfg = vggt.config
    res: dict = {}
    last = None  # (seconds per call, flops) of the previous size
    for S in sizes:
        flops = vggt_flops(cfg, S, cfg.img_size, cfg.img_size)["total"]
        if last is not None:
            est = last[0] * flops / last[1] * (1 + ctx.sizes.reps) * 1.3
            if est > ctx.left() - reserve:
                res[str(S)] = {"skipped": f"estimated {est:.0f}s exceeds the time left"}
                continue
        ctx.log(f"vggt {name}: {S} frames")
        try:
            r = measure(ctx, vggt, S, layers, flops)
            ctx.cleanup()
        except torch.cuda.OutOfMemoryError as exc:
            ctx.cleanup()
            res[str(S)] = {"error": oom_line(exc, 200)}
            for bigger in sizes[sizes.index(S) + 1:]:
                res[str(bigger)] = {"skipped": f"OOM at {S} frames"}
            break
        res[str(S)] = r
        last = (r["s_per_call"], flops)
        ctx.log(f"  {r['frames_per_s']} frames/s, {r['tflops']} TFLOP/s, peak {r['peak_gib']} GiB")
    return res


def compare(o: dict, n: dict, h: dict) -> dict:
    """Ratios at one frame count: ours (default) vs naive, ours_half vs ours."""
    return {
        "speed_ours_vs_naive": rnd(ratio(o.get("frames_per_s"), n.get("frames_per_s")), 3),
        "peak_memory_ours_vs_naive": rnd(ratio(o.get("peak_gib"), n.get("peak_gib")), 3),
        "speed_half_vs_ours": rnd(ratio(h.get("frames_per_s"), o.get("frames_per_s")), 3),
        "peak_memory_half_vs_ours": rnd(ratio(h.get("peak_gib"), o.get("peak_gib")), 3),
        "memory_saved_by_half_gib": (rnd(o["peak_gib"] - h["peak_gib"], 4)
                                     if o.get("peak_gib") is not None and h.get("peak_gib") is not None else None),
    }


def section_vggt(ctx: Ctx) -> dict:
    sizes = sorted(ctx.sizes.vggt_frames)
    ctx.log("vggt: loading VGGT from its hub folder (VGGT.from_pretrained, fp32)")
    t0 = time.perf_counter()
    vggt = build_vggt(ctx, torch.float32)
    cfg = vggt.config
    needed = vggt_layers_to_run(spacemind_config(ctx))
    layers = {"all": tuple(range(-cfg.depth, 0)), "needed": needed}
    res: dict = {
        "config": "VGGT-1B (VGGTConfig())" if not ctx.args.tiny else "tiny (models/tiny.py)",
        "params": param_count(vggt), "build_s": rnd(time.perf_counter() - t0, 3),
        "image": [cfg.img_size, cfg.img_size], "flop_formula": FLOP_FORMULA,
        "layers_needed": list(needed),
        **{f"{name}_setup": what for name, (_, _, what) in CONFIGURATIONS.items()},
        "flops": {str(S): {k: rnd(v / 1e12, 4) for k, v in vggt_flops(cfg, S, cfg.img_size, cfg.img_size).items()}
                  for S in sizes},
    }
    reserve = ctx.reserve(ctx.after("vggt"))  # keep time for the later sections (end to end, training, ...)
    for name, (weights, kept, _) in CONFIGURATIONS.items():
        want = torch.float32 if weights == "fp32" else ctx.dtype
        if next(vggt.parameters()).dtype != want:
            vggt.to(want)  # in place: one build serves every configuration (fp32 ones first)
        res[f"params_bytes_{name}"] = param_bytes(vggt)
        res[name] = run_configuration(ctx, vggt, name, layers[kept], sizes, reserve)
    res["ratios"] = {str(S): compare(*(res[n].get(str(S), {}) for n in ("ours", "naive", "ours_half"))) for S in sizes}
    ctx.vggt = vggt.to(vggt_dtype(ctx))  # what the build section's SpaceMind runs (--vggt-weights)
    return res
