"""VGGT at the reference's precision (fp32 weights, bf16 autocast) vs the `--vggt-weights half` opt-in.

    python -m bench.vggt_precision            # writes bench/results/vggt_precision.json / .md
    python -m bench.vggt_precision --quick    # smaller model (the test's smoke run)

* weights: the bytes VGGT-1B's aggregator + camera head hold in each precision, counted on the
  full-size architecture (built on the meta device: parameter shapes, no random init).
* deviation and time: a mid-size random VGGT (same architecture, fewer/narrower blocks) on this
  CPU under bf16 autocast, 8 frames: the relative error of the half-weight features against the
  reference-precision ones, and each run's time (fastest of --repeats), same process.
  GPU peak memory at 32 frames is measured by `python -m bench.gpu` (vggt section) when a GPU is lent.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from bench.common import write_results
from spacemind_cli.models.vggt import VGGT, VGGTConfig

RESULTS = Path(__file__).resolve().parent / "results"


def weight_bytes(config: VGGTConfig) -> dict:
    with torch.device("meta"):
        model = VGGT(config)
    n = sum(p.numel() for p in model.parameters())
    return {"parameters": n, "fp32_bytes": 4 * n, "half_bytes": 2 * n, "saved_bytes": 2 * n}


def mid_config(quick: bool) -> VGGTConfig:
    return VGGTConfig(img_size=224, patch_size=14, embed_dim=128 if quick else 256, depth=2 if quick else 4,
                      num_heads=4, patch_embed="dinov2", patch_embed_depth=2, patch_embed_heads=4,
                      camera_trunk_depth=2, camera_num_heads=4)


def features(model: VGGT, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float]:
    t0 = time.perf_counter()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        (tokens,), _ = model.aggregate(images, layers=(-1,))
        pose = model.camera_pose(tokens)
    return tokens.float(), pose.float(), time.perf_counter() - t0


def run(quick: bool = False, repeats: int = 2, frames: int = 8) -> dict:
    torch.manual_seed(0)
    cfg = mid_config(quick)
    ref = VGGT(cfg).eval()
    half = VGGT(cfg).eval()
    half.load_state_dict(ref.state_dict())
    half.to(torch.bfloat16)
    images = torch.rand(1, 2 if quick else frames, 3, cfg.img_size, cfg.img_size)
    ref_runs = [features(ref, images) for _ in range(repeats)]
    half_runs = [features(half, images) for _ in range(repeats)]
    (rt, rp, _), (ht, hp, _) = ref_runs[0], half_runs[0]

    def rel(a, b):
        return float((a - b).norm() / b.norm())

    t_ref, t_half = min(r[2] for r in ref_runs), min(r[2] for r in half_runs)
    return {
        "vggt_1b_weights": weight_bytes(VGGTConfig()),
        "mid_model": {"embed_dim": cfg.embed_dim, "depth": cfg.depth, "frames": images.shape[1], "image": cfg.img_size},
        "relative_deviation_of_half": {"tokens": rel(ht, rt), "pose_enc": rel(hp, rp)},
        "cpu_forward_s": {"reference": t_ref, "half": t_half, "half_vs_reference": t_ref / t_half},
        "torch": torch.__version__,
    }


def to_markdown(r: dict) -> str:
    w = r["vggt_1b_weights"]
    d = r["relative_deviation_of_half"]
    t = r["cpu_forward_s"]
    return "\n".join([
        "# VGGT precision: reference (fp32 weights, bf16 autocast) vs `--vggt-weights half`",
        "",
        f"- VGGT-1B aggregator + camera head: {w['parameters'] / 1e9:.3f} B parameters; weights "
        f"{w['fp32_bytes'] / 2**30:.2f} GiB in fp32, {w['half_bytes'] / 2**30:.2f} GiB in half: "
        f"**{w['saved_bytes'] / 2**30:.2f} GiB saved** (counted from the full-size architecture).",
        f"- Mid-size random VGGT on this CPU ({r['mid_model']}): half-weight features deviate from "
        f"the reference precision by {d['tokens']:.2e} (tokens) and {d['pose_enc']:.2e} (pose encoding), "
        "relative L2.",
        f"- CPU forward: reference {t['reference']:.3f} s, half {t['half']:.3f} s "
        f"(half is {t['half_vs_reference']:.2f}x the reference's speed; CPU bf16 matmuls, not a GPU figure).",
        "- GPU peak memory at 32 frames: `python -m bench.gpu` (vggt section), measured only when a GPU is lent.",
        "",
    ])


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", type=Path, default=RESULTS / "vggt_precision.json")
    args = ap.parse_args(argv)
    r = run(args.quick, args.repeats)
    write_results(args.out, r, to_markdown(r))


if __name__ == "__main__":
    main()
