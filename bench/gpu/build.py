"""Building the models on the device with random weights, cheaply (nothing is downloaded).

Each model is constructed on the meta device (no memory, no init), materialised with
`to_empty(device=...)` and given a cheap random init (`cheap_init`); buffers `to_empty` leaves
uninitialised (RoPE `inv_freq`...) are rebuilt from the owning module's config
(`restore_buffers`; --tiny checks they equal a normal build's).

  * VGGT-1B: `VGGTConfig()` (aggregator + camera head), with fp32 weights (the library's default)
    or weights in the compute dtype (`--vggt-weights half`, the opt-in);
  * InternVL3-8B's shape: InternViT-300M + Qwen2.5-7B with the full 151674-row vocabulary and the
    tiny BPE tokenizer of `models/tiny.py`; the LM head's EOS rows are zeroed, so greedy decoding
    never stops early (every answer is exactly max_new_tokens long);
  * CGMF at d_v 3584, d_s 2048, d_a 1024 (its own init).

The `build` section assembles SpaceMind from these parts; with --tiny it also builds the
full-size models on the meta device and pushes meta tensors through them
(`full_size_meta_check`), so a typo in a full-size config fails on a CPU, not on the GPU.
"""

from __future__ import annotations

import time

import torch
from torch import nn

from .context import GIB, Ctx, param_count, rnd

# VGGT's precision in the assembled SpaceMind, --vggt-weights (as SpaceMind.from_pretrained's vggt_weights).
VGGT_WEIGHTS = {"fp32": "fp32 weights, aggregator under bf16 autocast, camera head fp32 (the library default)",
                "half": "weights in the compute dtype (bf16), camera head bf16 (the opt-in)"}


@torch.no_grad()
def cheap_init(module: nn.Module, std: float = 0.02) -> None:
    """Random weights fast, on the device: matrices N(0, std), biases 0, layer scales 0.1, other
    vectors (norm weights) 1."""
    for name, p in module.named_parameters():
        if p.ndim >= 2:
            p.normal_(0.0, std)
        elif name.endswith("bias"):
            p.zero_()
        elif name.endswith(("gamma", "lambda_1", "lambda_2")):
            p.fill_(0.1)
        else:
            p.fill_(1.0)


def restore_buffers(model: nn.Module, device: torch.device) -> tuple[list[str], list[str]]:
    """`to_empty` leaves buffers uninitialised (RoPE inv_freq...): rebuild each module that owns
    buffers from its config on the device and take its buffers (dtype as built, fp32 for RoPE).
    Returns (restored, missing) buffer names."""
    restored, missing = [], []
    for mname, mod in model.named_modules():
        own = list(mod.named_buffers(recurse=False))
        if not own:
            continue
        fresh = None
        cfg = getattr(mod, "config", None)
        if cfg is not None:
            try:
                with torch.device(device):
                    fresh = type(mod)(cfg)
            except Exception:
                fresh = None
        for bname, buf in own:
            full = f"{mname}.{bname}" if mname else bname
            src = getattr(fresh, bname, None) if fresh is not None else None
            if isinstance(src, torch.Tensor) and tuple(src.shape) == tuple(buf.shape):
                mod.register_buffer(bname, src.to(device), persistent=bname not in mod._non_persistent_buffers_set)
                restored.append(full)
            else:
                missing.append(full)
    return restored, missing


def on_meta(factory, dtype: torch.dtype):
    """factory() built on the meta device with `dtype` as the default dtype."""
    prev = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device("meta"):
            return factory()
    finally:
        torch.set_default_dtype(prev)


def build_vggt(ctx: Ctx, dtype: torch.dtype):
    from spacemind_cli.models.tiny import tiny_vggt_config
    from spacemind_cli.models.vggt import VGGT, VGGTConfig

    cfg = tiny_vggt_config() if ctx.args.tiny else VGGTConfig()
    vggt = on_meta(lambda: VGGT(cfg), torch.float32)
    vggt.to_empty(device=ctx.device)
    cheap_init(vggt)
    _, missing = restore_buffers(vggt, ctx.device)
    if missing:
        raise RuntimeError(f"VGGT buffers left uninitialised after to_empty: {missing}")
    vggt.to(dtype).eval().requires_grad_(False)
    return vggt


def vggt_dtype(ctx: Ctx) -> torch.dtype:
    """VGGT's weight dtype in the assembled SpaceMind (--vggt-weights)."""
    return torch.float32 if ctx.args.vggt_weights == "fp32" else ctx.dtype


def full_internvl_config(tokenizer):
    """InternVL3-8B's shape: InternViT-300M-448px + Qwen2.5-7B (full vocabulary)."""
    from transformers import InternVLConfig

    return InternVLConfig(
        vision_config=dict(
            hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
            image_size=448, patch_size=14, norm_type="layer_norm", layer_norm_eps=1e-6, use_qk_norm=False,
            layer_scale_init_value=0.1, hidden_act="gelu",
        ),
        text_config=dict(
            model_type="qwen2", hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
            num_attention_heads=28, num_key_value_heads=4, vocab_size=151674, max_position_embeddings=32768,
            rope_theta=1_000_000.0, rms_norm_eps=1e-6, tie_word_embeddings=False, use_sliding_window=False,
            eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
            pad_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
        ),
        image_token_id=tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>"),
        image_seq_length=256, downsample_ratio=0.5, projector_hidden_act="gelu",
        vision_feature_layer=-1, vision_feature_select_strategy="default", tie_word_embeddings=False,
    )


def build_internvl(ctx: Ctx, tokenizer):
    """-> (model, its config, {"restored_buffers", "attn_implementation"})."""
    from transformers import GenerationConfig, InternVLForConditionalGeneration

    from spacemind_cli.models import internvl
    from spacemind_cli.models.tiny import tiny_internvl_config
    from spacemind_cli.runtime import lm_attention_implementation

    icfg = tiny_internvl_config(tokenizer) if ctx.args.tiny else full_internvl_config(tokenizer)
    attn = lm_attention_implementation(str(ctx.device))
    for c in (icfg, icfg.text_config, icfg.vision_config):
        c._attn_implementation = attn
    model = on_meta(lambda: InternVLForConditionalGeneration(icfg), ctx.dtype)
    model.to(ctx.dtype)
    model.to_empty(device=ctx.device)
    cheap_init(model)
    restored, missing = restore_buffers(model, ctx.device)
    if missing:
        raise RuntimeError(f"InternVL buffers left uninitialised after to_empty: {missing}")
    model.eval().requires_grad_(False)
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    model.generation_config = GenerationConfig(
        eos_token_id=[eos], pad_token_id=tokenizer.pad_token_id, do_sample=False, max_new_tokens=16
    )
    with torch.no_grad():  # never stop early: every answer is max_new_tokens long
        for tid in internvl.eos_token_ids(model, tokenizer):
            model.lm_head.weight[tid].zero_()
    return model, icfg, {"restored_buffers": restored, "attn_implementation": attn}


def cgmf_config(tiny: bool):
    from spacemind_cli.models.cgmf import CGMFConfig

    return CGMFConfig(d_v=64, d_s=64, d_a=32, num_heads=4, hidden=32, init="random") if tiny else CGMFConfig()


def build_cgmf(ctx: Ctx):
    from spacemind_cli.models.cgmf import CGMF

    cfg = cgmf_config(ctx.args.tiny)
    fusion = on_meta(lambda: CGMF(cfg), torch.float32)
    fusion.to_empty(device=ctx.device)
    fusion.reset_parameters()  # its own init (P_L zero: "residual_zero" at full size)
    fusion.to(ctx.dtype).eval().requires_grad_(False)
    return fusion, cfg


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
    """Tokenizer, InternVL, CGMF and the VGGT of the vggt section (or a new one) -> ctx.sm."""
    from spacemind_cli.models.spacemind import SpaceMind
    from spacemind_cli.models.tiny import tiny_tokenizer

    t0 = time.perf_counter()
    tok = tiny_tokenizer()
    ctx.tokenizer = tok
    t_tok = time.perf_counter() - t0
    if ctx.vggt is None:  # the vggt section failed or was skipped
        ctx.vggt = build_vggt(ctx, vggt_dtype(ctx))
    t1 = time.perf_counter()
    model, icfg, info = build_internvl(ctx, tok)
    ctx.sync()
    t_ivl = time.perf_counter() - t1
    fusion, _ = build_cgmf(ctx)
    config = spacemind_config(ctx)
    ctx.sm = SpaceMind(config, ctx.vggt, model, tok, fusion)
    lm = model.model.language_model
    out = {
        "tokenizer": f"tiny BPE from models/tiny.py ({len(tok)} tokens) over a "
                     f"{icfg.text_config.vocab_size}-row embedding",
        "tokenizer_s": rnd(t_tok, 3), "internvl_build_s": rnd(t_ivl, 3),
        "params": {"vggt": param_count(ctx.vggt), "internvit": param_count(model.model.vision_tower),
                   "projector": param_count(model.model.multi_modal_projector), "llm": param_count(lm),
                   "lm_head": param_count(model.lm_head), "cgmf": param_count(fusion)},
        "vggt_weights": f"{ctx.args.vggt_weights}: {VGGT_WEIGHTS[ctx.args.vggt_weights]}",
        "rope_parameters": getattr(icfg.text_config, "rope_parameters", None),
        "image_seq_length": icfg.image_seq_length,
        "preprocess": config.preprocess.to_dict(),
        "memory_allocated_gib": rnd(torch.cuda.memory_allocated() / GIB, 3) if ctx.cuda else None,
        **info,
    }
    if ctx.args.tiny:  # the meta -> to_empty buffers must equal a normally built model's
        from transformers import InternVLForConditionalGeneration

        ref = InternVLForConditionalGeneration(icfg)
        got = dict(model.named_buffers())
        out["buffers_match_normal_build"] = all(
            torch.equal(b.float().cpu(), got[n].float().cpu()) for n, b in ref.named_buffers()
        )
        if not out["buffers_match_normal_build"]:
            raise RuntimeError("buffers rebuilt after to_empty differ from a normally built model's")
    return out


def full_size_meta_check() -> dict:
    """--tiny cannot run the full-size models, but it can build them on the meta device (no memory)
    and push meta tensors through VGGT, InternViT + projector and CGMF: a typo in the full-size
    configs or a shape mismatch between the parts fails here, on a CPU, not on the GPU."""
    from transformers import InternVLForConditionalGeneration

    from spacemind_cli.models import internvl
    from spacemind_cli.models.cgmf import CGMF, CGMFConfig
    from spacemind_cli.models.tiny import tiny_tokenizer
    from spacemind_cli.models.vggt import VGGT, VGGTConfig

    tok = tiny_tokenizer()
    vggt = on_meta(lambda: VGGT(VGGTConfig()), torch.float32)
    model = on_meta(lambda: InternVLForConditionalGeneration(full_internvl_config(tok)), torch.bfloat16)
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
    ctx.log("build: InternVL (meta -> to_empty), CGMF, SpaceMind")
    out = assemble(ctx)
    if ctx.args.tiny:
        out["full_size_meta_check"] = full_size_meta_check()
    return out
