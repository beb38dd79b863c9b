"""The models every section runs, loaded as a user loads them (nothing is downloaded).

The random-weight checkpoint folders are written once per run, in the published layouts, by the
library's writer (`spacemind_cli/models/random_checkpoints.py`, values drawn on the device, written
shard by shard), and loaded through the library's loaders, so a lent GPU measures the path users
take (`model_folders`):

  * VGGT-1B's hub folder (config.json + fp32 model.safetensors): `VGGT.from_pretrained`, with fp32
    weights (the library's default) or weights in the compute dtype (`--vggt-weights half`);
  * InternVL3-8B-hf's folder: InternViT-300M + Qwen2.5-7B, the full 151,674-row vocabulary and a
    tokenizer with InternVL's added tokens at their published ids, bf16 shards + index;
  * `checkpoint assemble` of the two (fresh CGMF at d_v 3584, d_s 2048, d_a 1024), loaded by
    `SpaceMind.from_pretrained`. The LM head's EOS rows are then zeroed in memory, so greedy
    decoding never stops early (every answer is exactly max_new_tokens long).

With --tiny the same code writes and loads the tiny architectures (models/tiny.py); it also builds
the full-size models on the meta device and pushes meta tensors through them
(`full_size_meta_check`), so a typo in a full-size config fails on a CPU, not on the GPU.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import torch

from .context import GIB, Ctx, param_count, rnd

# VGGT's precision in the assembled SpaceMind, --vggt-weights (as SpaceMind.from_pretrained's vggt_weights).
VGGT_WEIGHTS = {"fp32": "fp32 weights, aggregator under bf16 autocast, camera head fp32 (the library default)",
                "half": "weights in the compute dtype (bf16), camera head bf16 (the opt-in)"}


def on_meta(factory, dtype: torch.dtype):
    """factory() built on the meta device with `dtype` as the default dtype."""
    prev = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device("meta"):
            return factory()
    finally:
        torch.set_default_dtype(prev)


def model_folders(ctx: Ctx) -> dict:
    """{"internvl", "vggt", "checkpoint": Path, "write": {...timings and sizes}}: the random
    folders of this run, written on the first call (under a temp folder removed at the end)."""
    if ctx.models is not None:
        return ctx.models
    from spacemind_cli.models import random_checkpoints as rc
    from spacemind_cli.models.assemble import assemble as assemble_checkpoint
    from spacemind_cli.models.tiny import tiny_internvl_config, tiny_tokenizer, tiny_vggt_config

    root = Path(tempfile.mkdtemp(prefix="spacemind-gpu-models-"))
    ctx.models_dir = root
    draw = "cuda" if ctx.cuda else "cpu"
    t0 = time.perf_counter()
    if ctx.args.tiny:
        tok = tiny_tokenizer()
        rc.write_internvl_hf(root / "internvl", raw_config=tiny_internvl_config(tok).to_dict(), tokenizer=tok,
                             shard_bytes=200_000)
    else:
        rc.write_internvl_hf(root / "internvl", raw_config=rc.INTERNVL3_8B_HF_CONFIG, device=draw,
                             shard_bytes=4 << 30)
    t1 = time.perf_counter()
    rc.write_vggt_hub(root / "vggt", hub_config=tiny_vggt_config().to_dict() if ctx.args.tiny else None, device=draw)
    t2 = time.perf_counter()
    cgmf = {k: v for k, v in asdict(cgmf_config(ctx.args.tiny)).items() if k not in ("d_v", "d_s")}
    assemble_checkpoint(root / "checkpoint", base=root / "internvl", vggt=root / "vggt", cgmf_overrides=cgmf,
                        num_frames=ctx.sizes.frames)
    t3 = time.perf_counter()

    def size(folder: Path) -> int:
        return sum(f.stat().st_size for f in folder.iterdir() if f.is_file())

    ctx.models = {
        "internvl": root / "internvl", "vggt": root / "vggt", "checkpoint": root / "checkpoint",
        "write": {"internvl_s": rnd(t1 - t0, 2), "vggt_s": rnd(t2 - t1, 2), "assemble_s": rnd(t3 - t2, 2),
                  "internvl_gib": rnd(size(root / "internvl") / GIB, 3), "vggt_gib": rnd(size(root / "vggt") / GIB, 3),
                  "drawn_on": draw},
    }
    return ctx.models


def build_vggt(ctx: Ctx, dtype: torch.dtype):
    """VGGT loaded from the run's hub folder by `VGGT.from_pretrained` (weights in `dtype`)."""
    from spacemind_cli.models.vggt import VGGT

    return VGGT.from_pretrained(model_folders(ctx)["vggt"], device=ctx.device, dtype=dtype).eval().requires_grad_(False)


def vggt_dtype(ctx: Ctx) -> torch.dtype:
    """VGGT's weight dtype in the assembled SpaceMind (--vggt-weights)."""
    return torch.float32 if ctx.args.vggt_weights == "fp32" else ctx.dtype


def cgmf_config(tiny: bool):
    from spacemind_cli.models.cgmf import CGMFConfig

    return CGMFConfig(d_v=64, d_s=64, d_a=32, num_heads=4, hidden=32, init="random") if tiny else CGMFConfig()


def spacemind_config(ctx: Ctx):
    """The SpaceMind config the benchmark assembles (the paper's preprocessing at full size)."""
    from spacemind_cli.models.checkpoint import SpaceMindConfig
    from spacemind_cli.models.preprocess import PreprocessConfig

    pre = PreprocessConfig(vggt_size=56, vit_size=64) if ctx.args.tiny else PreprocessConfig()
    return SpaceMindConfig(cgmf=cgmf_config(ctx.args.tiny), preprocess=pre, num_frames=ctx.sizes.frames)


def vggt_layers_to_run(config) -> tuple[int, ...]:
    """The VGGT layers `SpaceMind.encode` asks the aggregator for: the configured ones plus -1
    (the camera head's input), as `SpaceMind.vggt_layers_to_run`."""
    layers = tuple(config.vggt_layers)
    return layers if -1 in layers else layers + (-1,)


def assemble(ctx: Ctx) -> dict:
    """SpaceMind.from_pretrained on the run's assembled checkpoint -> ctx.sm (the VGGT the vggt
    section loaded from the same folder is reused: one copy on the device)."""
    from transformers import GenerationConfig

    from spacemind_cli.models import internvl
    from spacemind_cli.models.spacemind import SpaceMind

    folders = model_folders(ctx)
    t0 = time.perf_counter()
    sm = SpaceMind.from_pretrained(folders["checkpoint"], device=str(ctx.device), dtype=ctx.dtype,
                                   vggt_weights=ctx.args.vggt_weights, lazy_vggt=ctx.vggt is not None)
    ctx.sync()
    t_load = time.perf_counter() - t0
    if ctx.vggt is not None:
        sm.vggt = ctx.vggt
    ctx.vggt = sm.vggt
    model, tok = sm.internvl, sm.tokenizer
    ctx.tokenizer = tok
    model.generation_config = GenerationConfig(
        eos_token_id=[tok.convert_tokens_to_ids("<|im_end|>")], pad_token_id=tok.pad_token_id, do_sample=False,
        max_new_tokens=16,
    )
    with torch.no_grad():  # never stop early: every answer is max_new_tokens long
        for tid in internvl.eos_token_ids(model, tok):
            model.lm_head.weight[tid].zero_()
    ctx.sm = sm
    icfg = model.config
    lm = model.model.language_model
    return {
        "loaded_from": "random folders in the published layouts (models/random_checkpoints.py), "
                       "checkpoint assemble, SpaceMind.from_pretrained",
        "write": folders["write"],
        "tokenizer": f"{'tiny BPE (models/tiny.py)' if ctx.args.tiny else 'full-vocabulary BPE (random_checkpoints)'}, "
                     f"{len(tok)} tokens over a {icfg.text_config.vocab_size}-row embedding",
        "load_s": rnd(t_load, 3),
        "params": {"vggt": param_count(sm.vggt), "internvit": param_count(model.model.vision_tower),
                   "projector": param_count(model.model.multi_modal_projector), "llm": param_count(lm),
                   "lm_head": param_count(model.lm_head), "cgmf": param_count(sm.fusion)},
        "vggt_weights": f"{ctx.args.vggt_weights}: {VGGT_WEIGHTS[ctx.args.vggt_weights]}",
        "rope_parameters": getattr(icfg.text_config, "rope_parameters", None),
        "image_seq_length": icfg.image_seq_length,
        "preprocess": sm.config.preprocess.to_dict(),
        "attn_implementation": getattr(icfg.text_config, "_attn_implementation", None),
        "memory_allocated_gib": rnd(torch.cuda.memory_allocated() / GIB, 3) if ctx.cuda else None,
    }


def full_size_meta_check() -> dict:
    """--tiny cannot run the full-size models, but it can build them on the meta device (no memory)
    and push meta tensors through VGGT, InternViT + projector and CGMF: a typo in the full-size
    configs or a shape mismatch between the parts fails here, on a CPU, not on the GPU."""
    from transformers import InternVLForConditionalGeneration

    from spacemind_cli.models import internvl
    from spacemind_cli.models.cgmf import CGMF, CGMFConfig
    from spacemind_cli.models.random_checkpoints import INTERNVL3_8B_HF_CONFIG, internvl_hf_config
    from spacemind_cli.models.vggt import VGGT, VGGTConfig

    vggt = on_meta(lambda: VGGT(VGGTConfig()), torch.float32)
    model = on_meta(lambda: InternVLForConditionalGeneration(internvl_hf_config(INTERNVL3_8B_HF_CONFIG)), torch.bfloat16)
    fusion = on_meta(lambda: CGMF(CGMFConfig()), torch.bfloat16)
    meta = torch.device("meta")
    with torch.no_grad():
        tokens, start = vggt.aggregate(torch.rand(1, 2, 3, 518, 518, device=meta), layers=(-1,))
        feats = internvl.vision_features(model, torch.rand(2, 3, 448, 448, device=meta, dtype=torch.bfloat16))
        f_v = internvl.project(model, feats)
        f_s = tokens[0][0, :, start:].to(torch.bfloat16)
        fused = fusion(f_v, f_s, tokens[0][0, :, :1].to(torch.bfloat16))
    out = {
        "params": {"vggt": param_count(vggt), "internvl": param_count(model), "cgmf": param_count(fusion)},
        "shapes": {"vggt_tokens": list(tokens[0].shape), "internvit_features": list(feats.shape),
                   "projected": list(f_v.shape), "fused": list(fused.shape)},
    }
    want = {"vggt_tokens": [1, 2, 1374, 2048], "internvit_features": [2, 256, 4096], "projected": [2, 256, 3584],
            "fused": [2, 256, 3584]}
    if out["shapes"] != want:
        raise RuntimeError(f"full-size shapes {out['shapes']} differ from {want}")
    if not 7.9e9 < out["params"]["internvl"] < 8.0e9 or not 1.1e9 < out["params"]["vggt"] < 1.15e9:
        raise RuntimeError(f"full-size parameter counts look wrong: {out['params']}")
    return out


def section_build(ctx: Ctx) -> dict:
    ctx.log("build: random folders written, assembled, SpaceMind.from_pretrained")
    out = assemble(ctx)
    if ctx.args.tiny:
        out["full_size_meta_check"] = full_size_meta_check()
    return out
