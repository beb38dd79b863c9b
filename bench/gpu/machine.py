"""The machine: what it is (`env`: device, versions, the dense bf16 peak and HBM bandwidth assumed)
and what its kernels reach (`micro`: a bf16 matmul, SDPA on VGGT's global- and frame-attention
shapes, the MLP's first linear). The kernel rates bound what VGGT can reach (see targets)."""

from __future__ import annotations

import os
import platform
from datetime import UTC, datetime

import torch

from .context import GIB, Ctx, ratio, rnd, time_calls

# Dense BF16 tensor-core peaks (TFLOP/s) = half of NVIDIA's datasheet "with sparsity" figure, and
# HBM bandwidth (TB/s). First match on the device name wins (so GH200 before H200, NVL/PCIe first).
GPU_SPECS = [
    (("GH200",), "GH200 (H100 SXM-class compute)", 989.0, 4.0),
    (("H200", "NVL"), "H200 NVL", 835.0, 4.8),
    (("H200",), "H200 SXM", 989.0, 4.8),
    (("H100", "PCIe"), "H100 PCIe", 756.0, 2.0),
    (("H100", "NVL"), "H100 NVL", 835.0, 3.9),
    (("H100",), "H100 SXM", 989.0, 3.35),
    (("A100",), "A100", 312.0, 2.0),
    (("L40S",), "L40S", 362.0, 0.864),
]


def section_env(ctx: Ctx) -> dict:
    import transformers

    from spacemind_cli.runtime import has_flash_attn

    env = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "mode": ("tiny (toy architectures; figures only prove the code runs)" if ctx.args.tiny
                 else "full size, random weights"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "cuda": torch.version.cuda,
        "device_type": ctx.device.type,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "dtype": str(ctx.dtype).removeprefix("torch."),
        "flash_attn_installed": has_flash_attn(),
        "time_budget_s": ctx.budget,
        "packages": package_versions(("peft", "accelerate", "av", "pyarrow", "psutil")),
    }
    peak, hbm, label, source = None, None, None, None
    if ctx.cuda:
        props = torch.cuda.get_device_properties(ctx.device)
        name = props.name
        env.update(device=name, capability=list(torch.cuda.get_device_capability(ctx.device)),
                   total_memory_gib=rnd(props.total_memory / GIB, 2), sm_count=props.multi_processor_count,
                   sdpa_backends={"flash": torch.backends.cuda.flash_sdp_enabled(),
                                  "mem_efficient": torch.backends.cuda.mem_efficient_sdp_enabled(),
                                  "math": torch.backends.cuda.math_sdp_enabled(),
                                  "cudnn": getattr(torch.backends.cuda, "cudnn_sdp_enabled", lambda: None)()})
        for keys, lab, tf, bw in GPU_SPECS:
            if all(k.lower() in name.lower() for k in keys):
                peak, hbm, label = tf, bw, lab
                source = f"datasheet dense BF16 for {lab} (half the with-sparsity figure), assumed from the device name"
                break
    else:
        env["device"] = f"CPU ({platform.processor() or platform.machine()})"
    if ctx.args.peak_tflops:
        peak, source = float(ctx.args.peak_tflops), "--peak-tflops"
    env["peak_bf16_tflops"] = peak
    env["peak_source"] = source or "no datasheet figure for this device: the measured bf16 matmul rate (micro) is used"
    env["spec_label"] = label
    env["hbm_tbps"] = hbm
    ctx.peak_tflops, ctx.hbm_tbps = peak, hbm
    return env


def package_versions(names) -> dict[str, str | None]:
    """Installed versions (None: missing): the train section needs peft, the e2e videos PyAV."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in names:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def section_micro(ctx: Ctx) -> dict:
    from spacemind_cli.models.tiny import tiny_vggt_config
    from spacemind_cli.models.vggt import VGGTConfig

    cfg = tiny_vggt_config() if ctx.args.tiny else VGGTConfig()
    S, C, heads = ctx.sizes.target_frames, cfg.embed_dim, cfg.num_heads
    P = 1 + cfg.num_register_tokens + (cfg.img_size // cfg.patch_size) ** 2
    out = {"matmul": matmul_rate(ctx, ctx.sizes.matmul_n),
           "sdpa_global": sdpa_rate(ctx, 1, heads, S * P, C // heads),  # one sequence over all frames
           "sdpa_frame": sdpa_rate(ctx, S, heads, P, C // heads),  # one sequence per frame
           "mlp_fc1": linear_rate(ctx, S * P, C, 4 * C)}
    if ctx.peak_tflops is None:
        ctx.peak_tflops = out["matmul"]["tflops"]
        ctx.results.setdefault("env", {})["peak_bf16_tflops"] = ctx.peak_tflops
    out["matmul_fraction_of_peak"] = rnd(ratio(out["matmul"]["tflops"], ctx.peak_tflops), 3)
    out["sdpa_global_fraction_of_peak"] = rnd(ratio(out["sdpa_global"]["tflops"], ctx.peak_tflops), 3)
    ctx.cleanup()
    return out


def matmul_rate(ctx: Ctx, n: int) -> dict:
    a = torch.randn(n, n, device=ctx.device, dtype=ctx.dtype)
    b = torch.randn(n, n, device=ctx.device, dtype=ctx.dtype)
    t = min(time_calls(ctx, lambda: a @ b, warmup=2, reps=5))
    return {"shape": [n, n, n], "s": rnd(t, 6), "tflops": rnd(2 * n**3 / t / 1e12, 4)}


def sdpa_rate(ctx: Ctx, B: int, heads: int, L: int, head_dim: int) -> dict:
    q, k, v = (torch.randn(B, heads, L, head_dim, device=ctx.device, dtype=ctx.dtype) for _ in range(3))
    t = min(time_calls(ctx, lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v), warmup=1, reps=3))
    flops = 4 * B * L * L * heads * head_dim  # QK^T and A.V
    return {"shape": [B, heads, L, head_dim], "s": rnd(t, 6), "tflops": rnd(flops / t / 1e12, 4)}


def linear_rate(ctx: Ctx, T: int, d_in: int, d_out: int) -> dict:
    x = torch.randn(T, d_in, device=ctx.device, dtype=ctx.dtype)
    w = torch.randn(d_out, d_in, device=ctx.device, dtype=ctx.dtype)
    t = min(time_calls(ctx, lambda: torch.nn.functional.linear(x, w), warmup=1, reps=3))
    return {"shape": [T, d_in, d_out], "s": rnd(t, 6), "tflops": rnd(2 * T * d_in * d_out / t / 1e12, 4)}
