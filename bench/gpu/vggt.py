"""VGGT alone: frames/s, TFLOP/s (counted analytically, `vggt_flops`) and peak memory per frame
count, ours vs a naive configuration."""

from __future__ import annotations

import statistics
import time

import torch

from .build import build_vggt
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


def measure(ctx: Ctx, vggt, S: int, layers: tuple[int, ...], autocast_on: bool, flops: float) -> dict:
    """One configuration at S frames: a warmup call, then sizes.reps timed calls (the first under
    Mem); seconds per call = the median."""
    size = vggt.config.img_size
    images = torch.rand(1, S, 3, size, size, device=ctx.device)

    def call():
        with torch.no_grad(), ctx.autocast(torch.bfloat16, enabled=autocast_on):
            tokens, _ = vggt.aggregate(images, layers=layers)
            pose = vggt.camera_pose(tokens[-1])
        return tokens, pose

    out = call()  # warmup (kernel selection, allocator)
    kept = sum(t.numel() * t.element_size() for t in out[0])
    del out
    ctx.sync()
    times = []
    mem = Mem(ctx, base_bytes=param_bytes(vggt))
    with mem:
        t0 = time.perf_counter()
        out = call()
        ctx.sync()
        times.append(time.perf_counter() - t0)
        del out
    for _ in range(ctx.sizes.reps - 1):
        t0 = time.perf_counter()
        out = call()
        ctx.sync()
        times.append(time.perf_counter() - t0)
        del out
    t = statistics.median(times)
    tflops = flops / t / 1e12
    return {
        "frames": S, "s_per_call": rnd(t, 5), "runs_s": [rnd(x, 5) for x in times], "frames_per_s": rnd(S / t, 3),
        "tflop_per_call": rnd(flops / 1e12, 6), "tflops": rnd(tflops, 4),
        "fraction_of_peak": rnd(ratio(tflops, ctx.peak_tflops), 4), "kept_output_gib": rnd(kept / GIB, 4),
        **mem.figures(),
    }


def section_vggt(ctx: Ctx) -> dict:
    sizes = sorted(ctx.sizes.vggt_frames)
    ctx.log("vggt: building VGGT (meta -> to_empty, fp32 for the naive configuration)")
    t0 = time.perf_counter()
    vggt = build_vggt(ctx, torch.float32)
    cfg = vggt.config
    res: dict = {
        "config": "VGGT-1B (VGGTConfig())" if not ctx.args.tiny else "tiny (models/tiny.py)",
        "params": param_count(vggt), "build_s": rnd(time.perf_counter() - t0, 3),
        "image": [cfg.img_size, cfg.img_size], "flop_formula": FLOP_FORMULA,
        "ours_setup": f"{str(ctx.dtype).removeprefix('torch.')} weights, bf16 autocast"
        f"{'' if ctx.dtype != torch.float32 else ' off'}, only layer -1 kept, camera head in the weights' dtype",
        "naive_setup": "fp32 weights under bf16 autocast (VGGT's demo setup), camera head fp32, all "
        f"{cfg.depth} layers kept",
        "flops": {}, "naive": {}, "ours": {}, "ratios": {},
    }
    for S in sizes:
        res["flops"][str(S)] = {k: rnd(v / 1e12, 4) for k, v in vggt_flops(cfg, S, cfg.img_size, cfg.img_size).items()}
    reserve = ctx.reserve(150.0)  # keep time for the end-to-end section
    last = None  # (frames, seconds per call, flops) of the previous case, to estimate the next one

    def run_all(name: str, layers, autocast_on: bool):
        nonlocal last
        for S in sizes:
            flops = vggt_flops(cfg, S, cfg.img_size, cfg.img_size)["total"]
            if last is not None:
                est = last[1] * flops / last[2] * (1 + ctx.sizes.reps) * 1.3
                if est > ctx.left() - reserve:
                    res[name][str(S)] = {"skipped": f"estimated {est:.0f}s exceeds the time left"}
                    continue
            ctx.log(f"vggt {name}: {S} frames")
            try:
                r = measure(ctx, vggt, S, layers, autocast_on, flops)
                ctx.cleanup()
            except torch.cuda.OutOfMemoryError as exc:
                ctx.cleanup()
                res[name][str(S)] = {"error": oom_line(exc, 200)}
                for bigger in sizes[sizes.index(S) + 1:]:
                    res[name][str(bigger)] = {"skipped": f"OOM at {S} frames"}
                break
            res[name][str(S)] = r
            last = (S, r["s_per_call"], flops)
            ctx.log(f"  {r['frames_per_s']} frames/s, {r['tflops']} TFLOP/s, peak {r['peak_gib']} GiB")

    # naive first, on the fp32 weights; then the same model cast to bf16 in place ("ours")
    run_all("naive", tuple(range(cfg.depth)), autocast_on=True)
    vggt.to(ctx.dtype)
    res["params_bytes_ours"] = param_bytes(vggt)
    last = None
    run_all("ours", (-1,), autocast_on=ctx.dtype != torch.float32)
    for S in sizes:
        o, n = res["ours"].get(str(S), {}), res["naive"].get(str(S), {})
        res["ratios"][str(S)] = {
            "speed_ours_vs_naive": rnd(ratio(o.get("frames_per_s"), n.get("frames_per_s")), 3),
            "peak_memory_ours_vs_naive": rnd(ratio(o.get("peak_gib"), n.get("peak_gib")), 3),
        }
    ctx.vggt = vggt
    return res
