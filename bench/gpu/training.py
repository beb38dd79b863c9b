"""The training section: full-size training steps of SpaceMind as `spacemind train` takes them
(random weights, random features of the feature cache's shapes), packed vs separate samples.

  train_scene       one scene: random EncoderOutputs (32 frames: VGGT patch tokens [1, 32, 1369, 2048],
                    camera tokens [1, 32, 1, 2048], InternViT [32, 256, 4096] bf16, poses [32, 9]) and
                    its VSI-Bench questions with answers of 1-3 tokens
  trainable         ctx.sm set up as training/loop.py sets it up (TrainableSpaceMind: CGMF + PEFT LoRA
                    r256 / alpha 512 on the LLM's linear layers), restored afterwards
  configure         a variant's weight precision and gradient checkpointing
  measure_packed    a warm-up step, then measured optimizer steps of one pack of the scene's questions
                    (forward + backward of the packed scene, loss / targets, clipping, fused AdamW)
  measure_separate  one sample per question (a few, as time allows; extrapolated per question)

Variants, in priority order (a CUDA OOM is recorded and the next one runs):

  loop         every weight fp32, forward under bf16 autocast: what training/loop.py does
               (`SpaceMind.from_pretrained(dtype=float32)`); no gradient checkpointing (the default)
  loop_gc      the same with `TrainConfig(gradient_checkpointing=True)`'s checkpointing in the LLM
  frozen_bf16  frozen weights bf16, trainable ones (CGMF, LoRA) fp32, checkpointing as the basis:
               not what the loop does; what keeping the frozen 7B in bf16 would change

The basis (the fastest loop variant that ran) times the separate samples and the projection
(`train_cost.py`, in the projection section). FLOPs: `train_cost.FLOP_FORMULA`.
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from dataclasses import dataclass

import torch

from .context import Ctx, Mem, mean, oom_line, param_bytes, ratio, rnd
from .train_cost import FLOP_FORMULA, step_flops

SECTION_CAP_S = 90.0  # the section's own ceiling at full size
SEPARATE_CAP_S = 20.0  # most seconds spent on separate samples
MAX_ANSWER_TOKENS = 3

PRECISION = {"fp32": "every weight fp32 (as training/loop.py loads the model), forward under bf16 autocast",
             "bf16": "frozen weights bf16, trainable ones (CGMF, LoRA) fp32, forward under bf16 autocast"}


@dataclass
class TrainScene:
    enc: object  # EncoderOutputs on the device
    pairs: list[tuple[str, str]]  # (prompt, answer)
    tokenized: list  # the pairs as SpaceMind.segment gives them: what a training step reads
    prefix_len: int
    segments: list[int]  # tokens per question: prompt + answer + end of turn
    answers: list[int]  # target tokens per question: answer + end of turn
    targets: int  # all of them


# ---------------------------------------------------------------- the workload


def feature_shapes(ctx: Ctx) -> dict[str, tuple[int, ...]]:
    """The feature cache's tensor shapes for one scene of sizes.frames frames (EncoderOutputs)."""
    sm, S = ctx.sm, ctx.sizes.frames
    cfg = sm.config
    patches = (cfg.preprocess.vggt_size // sm.vggt.config.patch_size) ** 2  # "pad": a square of vggt_size
    layers, d_s = len(cfg.vggt_layers), cfg.cgmf.d_s
    vit = sm.internvl.config
    d_vit = round(vit.vision_config.hidden_size / vit.downsample_ratio**2)  # after the pixel shuffle
    return {"vggt_patch": (layers, S, patches, d_s), "vggt_camera": (layers, S, 1, d_s),
            "internvit": (S, sm.tokens_per_frame, d_vit), "pose_enc": (S, 9)}


def random_features(ctx: Ctx, shapes: dict[str, tuple[int, ...]]):
    from spacemind_cli.models.spacemind import EncoderOutputs

    g = torch.Generator(device=ctx.device).manual_seed(7)
    return EncoderOutputs.from_tensors({
        name: torch.randn(shape, generator=g, device=ctx.device, dtype=torch.float32 if name == "pose_enc" else ctx.dtype)
        for name, shape in shapes.items()})


def check_shapes_against_encode(ctx: Ctx, enc) -> None:
    """--tiny: the random features must look like what SpaceMind.encode writes to the cache."""
    from bench.workload import synthetic_frames
    from spacemind_cli.models.preprocess import prepare

    real = ctx.sm.encode(prepare(synthetic_frames(ctx.sizes.frames, *ctx.sizes.frame_hw), ctx.sm.config.preprocess))
    got = {k: (tuple(v.shape), v.dtype) for k, v in enc.tensors().items()}
    want = {k: (tuple(v.shape), v.dtype) for k, v in real.tensors().items()}
    if got != want:
        raise RuntimeError(f"random training features {got} differ from SpaceMind.encode's {want}")


def train_pairs(sm, n: int) -> list[tuple[str, str]]:
    """n VSI-Bench questions (the workload's prompts) with their ground truths cut to at most
    MAX_ANSWER_TOKENS tokens (VSI-Bench answers: a letter, a count, a distance)."""
    from bench.workload import scene_rows
    from spacemind_cli.prompts import build_prompt

    pairs = []
    for row in scene_rows(0, n):
        ids = sm.tokenizer(str(row["ground_truth"]), add_special_tokens=False)["input_ids"][:MAX_ANSWER_TOKENS]
        pairs.append((build_prompt(row), sm.tokenizer.decode(ids)))
    return pairs


def train_scene(ctx: Ctx) -> TrainScene:
    sm = ctx.sm
    enc = random_features(ctx, feature_shapes(ctx))
    pairs = train_pairs(sm, ctx.sizes.train_questions)
    segs = [sm.segment(p, a) for p, a in pairs]
    answers = [len(s.answer_ids) + 1 for s in segs]
    return TrainScene(enc=enc, pairs=pairs, tokenized=segs, prefix_len=len(sm.prefix_ids(ctx.sizes.frames)),
                      segments=[len(s.prompt_ids) + a for s, a in zip(segs, answers)], answers=answers,
                      targets=sum(answers))


# ---------------------------------------------------------------- the model set up for training


@contextlib.contextmanager
def trainable(ctx: Ctx, cfg):
    """ctx.sm set up as the training loop sets it up: TrainableSpaceMind (CGMF trainable, PEFT LoRA
    injected into the LLM) on fp32 weights (LoRA layers built on the device). VGGT leaves the
    device meanwhile (the loop never loads it: features come from the cache). Afterwards LoRA is
    removed, the CGMF's weights put back, everything cast back to the compute dtype and frozen."""
    from spacemind_cli.training.model import TrainableSpaceMind

    sm = ctx.sm
    fusion = sm.fusion
    saved = {k: v.detach().clone() for k, v in fusion.state_dict().items()} if fusion is not None else None
    offloaded = ctx.cuda and sm.vggt is not None
    tm = None
    try:
        if offloaded:
            sm.vggt.to("cpu")
            ctx.cleanup()
        sm.internvl.float()
        if fusion is not None:
            fusion.float()
        with torch.device(ctx.device), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tm = TrainableSpaceMind(sm, cfg)
        yield tm
    finally:
        lm = sm.internvl.model.language_model
        set_checkpointing(lm, False)
        if tm is not None and tm.peft is not None:
            tm.peft.unload()  # the LoRA layers replaced by their base layers again, in sm.internvl
        for p in sm.parameters():
            p.grad = None
        sm.fusion = fusion
        if fusion is not None:
            fusion.load_state_dict(saved)
            fusion.to(ctx.dtype).eval().requires_grad_(False)
        sm.internvl.to(ctx.dtype).eval().requires_grad_(False)
        if offloaded:
            sm.vggt.to(ctx.device)
        ctx.cleanup()


def signature(sm) -> dict[str, tuple]:
    """(dtype, requires_grad, sum) of every VLM and CGMF tensor: equal before and after the section
    when the model was put back exactly (bf16 -> fp32 -> bf16 is exact)."""
    mods = {"internvl": sm.internvl, "fusion": sm.fusion}
    return {f"{m}.{n}": (p.dtype, p.requires_grad, float(p.detach().float().sum()))
            for m, mod in mods.items() if mod is not None for n, p in mod.named_parameters()}


def set_checkpointing(lm, on: bool) -> None:
    """The LLM's gradient checkpointing on/off, by the call TrainableSpaceMind makes (its name
    since transformers 5.2x, else the old one); off also drops the input-grad hook it adds."""
    which = "enable" if on else "disable"
    fn = getattr(lm, f"activation_checkpointing_{which}", None) or getattr(lm, f"gradient_checkpointing_{which}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        fn()
    if not on and getattr(lm, "_require_grads_hook", None) is not None:
        lm.disable_input_require_grads()


def count_checkpointing(lm) -> list:
    """Calls of the first decoder layer's checkpoint function (one per forward that checkpoints)."""
    layer = lm.layers[0]
    calls: list = []
    inner = layer._gradient_checkpointing_func

    def counted(*args, **kwargs):
        calls.append(1)
        return inner(*args, **kwargs)

    layer._gradient_checkpointing_func = counted
    return calls


def cast_frozen(sm, dtype: torch.dtype) -> None:
    """Every frozen parameter of the VLM to dtype; trainable ones stay fp32 (master weights)."""
    for p in sm.internvl.parameters():
        if not p.requires_grad and p.dtype != dtype:
            p.data = p.data.to(dtype)


# ---------------------------------------------------------------- one step


def train_step(ctx: Ctx, tm, opt, params: list, scene: TrainScene, max_grad_norm: float) -> dict:
    """One optimizer step on one pack of the scene's questions, as training/loop.py takes it."""
    ctx.sync()
    t0 = time.perf_counter()
    with ctx.autocast(torch.bfloat16):
        loss, n = tm(scene.enc, scene.tokenized)
        (loss / n).backward()
    ctx.sync()
    t1 = time.perf_counter()
    grad_norm = torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
    opt.step()
    opt.zero_grad(set_to_none=True)
    ctx.sync()
    t2 = time.perf_counter()
    return {"fwd_bwd_s": t1 - t0, "optimizer_s": t2 - t1, "step_s": t2 - t0, "loss": float(loss.detach()) / n,
            "grad_norm": float(grad_norm)}


def sample_step(ctx: Ctx, sm, scene: TrainScene, i: int) -> float:
    """Forward + backward of question i alone ([prefix][q a end]), loss scaled by the step's targets."""
    ctx.sync()
    t0 = time.perf_counter()
    with ctx.autocast(torch.bfloat16):
        loss, _ = sm.scene_loss_sum(scene.enc, [scene.pairs[i]], packed=False)
        (loss / scene.targets).backward()
    ctx.sync()
    return time.perf_counter() - t0


def rate_figures(ctx: Ctx, flops: dict, fwd_bwd_s: float, step_s: float | None = None) -> dict:
    tflops = ratio(flops["total_tflop"], step_s or fwd_bwd_s)
    fb = ratio(flops["total_tflop"], fwd_bwd_s)
    return {"tokens": flops["tokens"], "tokens_per_s": rnd(flops["tokens"] / (step_s or fwd_bwd_s), 1),
            "model_tflop": rnd(flops["total_tflop"], 4), "tflops": rnd(tflops, 4),
            "mfu": rnd(ratio(tflops, ctx.peak_tflops), 4), "fwd_bwd_tflops": rnd(fb, 4),
            "mfu_fwd_bwd": rnd(ratio(fb, ctx.peak_tflops), 4)}


# ---------------------------------------------------------------- the measurements


class Clock:
    """Seconds this section may still spend: the budget left after the later sections' reserve,
    and at full size the section's own SECTION_CAP_S (--tiny: unlimited)."""

    def __init__(self, ctx: Ctx):
        self.ctx, self.t0 = ctx, time.perf_counter()

    def left(self) -> float:
        if self.ctx.args.tiny:
            return math.inf
        return min(self.ctx.left() - self.ctx.after("train"), SECTION_CAP_S - (time.perf_counter() - self.t0))


def checkpoints(ctx: Ctx, lm, calls: list) -> bool:
    """Whether a forward with gradients checkpoints the decoder layers: one 4-token sequence."""
    n = len(calls)
    x = torch.zeros(1, 4, lm.config.hidden_size, device=ctx.device, requires_grad=True)
    with torch.enable_grad(), ctx.autocast(torch.bfloat16):
        lm(inputs_embeds=x, use_cache=False)
    return len(calls) > n


def configure(ctx: Ctx, tm, precision: str, gc: bool, state: dict) -> None:
    """Frozen weights to `precision`; the LLM's checkpointing to `gc`, switched by the call the
    library makes, then the library's module modes (`TrainableSpaceMind.train`).

    When a probe forward shows that checkpointing does not happen (the library keeps the LLM in
    eval mode, where transformers never checkpoints: `state["library_effective"]`, probed once on
    the model as TrainConfig(gradient_checkpointing=True) sets it up), the decoder goes to train
    mode (Qwen2 has no dropout: the same math), so that the figures are checkpointing's."""
    sm = tm.sm
    lm = sm.internvl.model.language_model
    cast_frozen(sm, torch.float32 if precision == "fp32" else ctx.dtype)
    if gc == state["gc"]:
        return
    set_checkpointing(lm, gc)
    state["gc"] = gc
    tm.train()
    if gc:
        calls = count_checkpointing(lm)
        if not state["library_effective"]:
            lm.train()
        if not checkpoints(ctx, lm, calls):
            raise RuntimeError("gradient checkpointing does not checkpoint the decoder layers")


def measure_packed(ctx: Ctx, tm, opt, params, scene: TrainScene, cfg, flops: dict, precision: str, gc: bool,
                   state: dict, reps: int) -> dict:
    """A warm-up step, then `reps` measured steps (the fastest reported, all kept)."""
    configure(ctx, tm, precision, gc, state)
    out = {"precision": PRECISION[precision], "gradient_checkpointing": gc}
    error = None
    try:
        t0 = time.perf_counter()
        train_step(ctx, tm, opt, params, scene, cfg.max_grad_norm)
        out["warmup_s"] = rnd(time.perf_counter() - t0, 4)
        mem = Mem(ctx, base_bytes=param_bytes(tm.sm.internvl) + param_bytes(tm.sm.fusion or torch.nn.Module()))
        with mem:
            runs = [train_step(ctx, tm, opt, params, scene, cfg.max_grad_norm) for _ in range(reps)]
    except torch.cuda.OutOfMemoryError as exc:
        error = oom_line(exc, 200)  # the frames holding the step's tensors go with `exc`, at the end of this block
    if error is not None:
        opt.zero_grad(set_to_none=True)
        ctx.cleanup()
        return {**out, "error": error}
    if gc:
        out["checkpointing"] = ("as the library sets it up (effective)" if state["library_effective"] else
                                "forced: the bench put the LLM in train mode (the library keeps it in eval mode, "
                                "where transformers skips checkpointing)")
        out["recompute_tflop"] = rnd(flops["recompute_tflop"], 4)
    best = min(runs, key=lambda r: r["step_s"])
    out.update({k: rnd(v, 5) for k, v in best.items()})
    out["runs_step_s"] = [rnd(r["step_s"], 5) for r in runs]
    out["questions_per_s"] = rnd(len(scene.pairs) / best["step_s"], 4)
    out.update(rate_figures(ctx, flops, best["fwd_bwd_s"], best["step_s"]))
    out.update(mem.figures())
    return out


def measure_separate(ctx: Ctx, tm, opt, scene: TrainScene, flops_one, clock: Clock, est_s: float) -> dict:
    """One sample per question, after a warm-up sample: as many as fit in the time left (at most
    sizes.train_separate, at least 2); per-question figures extrapolate to the whole scene."""
    sm, n = tm.sm, len(scene.pairs)
    budget = min(SEPARATE_CAP_S, clock.left())
    k = max(2, min(ctx.sizes.train_separate, n - 1, int(budget / max(est_s, 1e-9)) - 1))
    error = None
    try:
        sample_step(ctx, sm, scene, 0)  # warm-up: one segment runs transformers' own causal attention
        mem = Mem(ctx, base_bytes=param_bytes(sm.internvl) + param_bytes(sm.fusion or torch.nn.Module()))
        with mem:
            times = [sample_step(ctx, sm, scene, i) for i in range(1, k + 1)]
    except torch.cuda.OutOfMemoryError as exc:
        error = oom_line(exc, 200)
    opt.zero_grad(set_to_none=True)
    if error is not None:
        ctx.cleanup()
        return {"error": error}
    measured = [flops_one(i) for i in range(1, k + 1)]
    t = sum(times)
    tflop = sum(f["total_tflop"] for f in measured)
    tflops = tflop / t
    return {
        "what": f"{k} of the scene's {n} questions trained one per sequence ([prefix][q a end], transformers' causal "
        "attention), after one warm-up sample; the per-question mean extrapolates to the scene (every question pays "
        "the whole prefix)",
        "measured_samples": k, "fwd_bwd_s": [rnd(x, 5) for x in times],
        "fwd_bwd_s_per_sample": rnd(t / k, 5),
        "tokens_measured": sum(f["tokens"] for f in measured), "tokens_per_s": rnd(sum(f["tokens"] for f in measured) / t, 1),
        "tflops": rnd(tflops, 4), "mfu": rnd(ratio(tflops, ctx.peak_tflops), 4),
        **mem.figures(),
    }


# ---------------------------------------------------------------- the section


def section_train(ctx: Ctx) -> dict:
    if ctx.sm is None:
        raise RuntimeError("the model was not built (see the build section)")
    try:
        import peft
    except ImportError as exc:
        raise RuntimeError(f"the training section needs PEFT (a spacemind dependency: pip install peft): {exc}") from None
    from spacemind_cli.training.config import TrainConfig

    clock = Clock(ctx)
    z, sm = ctx.sizes, ctx.sm
    # checkpointing on, as TrainConfig(gradient_checkpointing=True) sets it up: whether that checkpoints
    # is probed once; the variants then switch it off and on
    cfg = TrainConfig(lora_rank=z.lora_rank, lora_alpha=2 * z.lora_rank, gradient_checkpointing=True)
    ctx.log(f"train: {z.train_questions} questions, {z.frames} frames, CGMF + LoRA r{cfg.lora_rank}")
    scene = train_scene(ctx)
    if ctx.args.tiny:
        check_shapes_against_encode(ctx, scene.enc)
    tcfg = sm.internvl.config.text_config
    lm = sm.internvl.model.language_model
    n_frozen = sum(p.numel() for p in lm.layers.parameters() if p.ndim == 2)  # linear weights, before LoRA
    res: dict = {
        "what": "optimizer steps of one scene's questions as spacemind train takes them (features from the cache: "
        "random, of the cache's shapes; CGMF + LoRA trained; loss = token CE sum / targets, backward, clip, fused "
        "AdamW on CUDA); random weights",
        "peft": peft.__version__, "pack_size": cfg.questions_per_pack, "global_batch": cfg.batch_size,
        "lora": {"rank": cfg.lora_rank, "alpha": cfg.lora_alpha, "targets": "q,k,v,o,gate,up,down of every LLM layer"},
        "features": {k: list(v.shape) for k, v in scene.enc.tensors().items()},
        "workload": {"questions": len(scene.pairs), "frames": z.frames, "prefix_tokens": scene.prefix_len,
                     "segment_tokens": {"min": min(scene.segments), "max": max(scene.segments),
                                        "mean": rnd(mean(scene.segments), 1)},
                     "answer_tokens_max": max(scene.answers) - 1,
                     "targets": scene.targets,
                     "prompts": "VSI-Bench prompts of examples/questions.jsonl, ground truths cut to <= 3 tokens"},
        "flop_formula": FLOP_FORMULA, "variants": {}, "notes": [],
    }

    def flops(segments: list[int], packed: bool, targets: int) -> dict:
        return step_flops(n_frozen=n_frozen, n_lora=res["trainable_params"]["lora"], layers=tcfg.num_hidden_layers,
                          d=tcfg.hidden_size, vocab=tcfg.vocab_size, prefix=scene.prefix_len, segments=segments,
                          targets=targets, packed=packed)

    reps = 1 if ctx.args.tiny else 2
    before = signature(sm)
    with trainable(ctx, cfg) as tm:
        lm = sm.internvl.model.language_model
        state = {"gc": True, "library_effective": checkpoints(ctx, lm, count_checkpointing(lm))}
        res["library_checkpointing_effective"] = state["library_effective"]
        named = tm.trainable()
        params = list(named.values())
        res["trainable_params"] = {"cgmf": sum(p.numel() for n, p in named.items() if n.startswith("fusion.")),
                                   "lora": sum(p.numel() for n, p in named.items() if "lora_" in n),
                                   "total": sum(p.numel() for p in params)}
        res["frozen_llm_linear_params"] = n_frozen
        res["lora_modules"] = sum(1 for n, _ in sm.internvl.named_modules() if n.endswith("lora_A"))
        packed_flops = flops(scene.segments, True, scene.targets)
        res["flops_packed"] = {k: rnd(v, 4) for k, v in packed_flops.items()}
        opt = torch.optim.AdamW(params, lr=cfg.lr, betas=cfg.adam_betas, eps=cfg.adam_eps,
                                weight_decay=cfg.weight_decay, fused=ctx.cuda)
        variants = res["variants"]

        def run(name: str, precision: str, gc: bool, opt) -> None:
            last = [v["step_s"] for v in variants.values() if "step_s" in v]
            est = (2 + reps) * max(last) * (1.5 if gc else 1.0) + 5 if last else 30.0
            if clock.left() < est:
                variants[name] = {"skipped": f"estimated {est:.0f}s exceeds the time left"}
                return
            ctx.log(f"train: {name} ({precision} weights, checkpointing {'on' if gc else 'off'})")
            variants[name] = measure_packed(ctx, tm, opt, params, scene, cfg, packed_flops, precision, gc, state, reps)
            v = variants[name]
            ctx.log(f"  {v.get('step_s')} s/step, {v.get('tokens_per_s')} tokens/s, MFU {v.get('mfu')}, "
                    f"peak {v.get('peak_gib')} GiB" if "error" not in v else f"  {v['error']}")

        run("loop", "fp32", False, opt)
        run("loop_gc", "fp32", True, opt)
        done = [n for n in ("loop", "loop_gc") if "step_s" in variants[n]]
        if not done:  # neither fits: the most frugal setup, so that there is something to project from
            run("frozen_bf16", "bf16", True, opt)
            done = ["frozen_bf16"] if "step_s" in variants["frozen_bf16"] else []
            res["notes"].append("no fp32 (loop) variant ran: the projection uses frozen_bf16")
        res["basis"] = min(done, key=lambda n: variants[n]["step_s"]) if done else None
        if res["basis"]:
            b = variants[res["basis"]]
            configure(ctx, tm, "fp32" if res["basis"].startswith("loop") else "bf16", b["gradient_checkpointing"], state)
            per_q = b["fwd_bwd_s"] * (scene.prefix_len + mean(scene.segments)) / packed_flops["tokens"]
            ctx.log(f"train: separate samples ({res['basis']})")
            def one(i: int) -> dict:  # question i alone
                return flops([scene.segments[i]], False, scene.answers[i])

            sep = measure_separate(ctx, tm, opt, scene, one, clock, 1.3 * per_q)
            if "error" not in sep:
                n = len(scene.pairs)
                sep_flops = flops(scene.segments, False, scene.targets)
                sep["basis"] = res["basis"]
                sep["scene_fwd_bwd_s"] = rnd(n * sep["fwd_bwd_s_per_sample"], 5)  # extrapolated
                sep["scene_step_s"] = rnd(n * sep["fwd_bwd_s_per_sample"] + b["optimizer_s"], 5)
                sep["scene_tokens"] = sep_flops["tokens"]
                sep["ratios_separate_vs_packed"] = {
                    "tokens": rnd(sep_flops["tokens"] / packed_flops["tokens"], 4),
                    "fwd_bwd_time": rnd(ratio(sep["scene_fwd_bwd_s"], b["fwd_bwd_s"]), 4),
                    "step_time": rnd(ratio(sep["scene_step_s"], b["step_s"]), 4),
                }
            res["separate"] = sep
            if "frozen_bf16" not in variants:
                run("frozen_bf16", "bf16", b["gradient_checkpointing"], opt)
        fb = variants.get("frozen_bf16", {})
        if res["basis"] and res["basis"] != "frozen_bf16" and "peak_gib" in fb:
            b = variants[res["basis"]]
            res["frozen_bf16_vs_basis"] = {"step_time": rnd(ratio(fb["step_s"], b["step_s"]), 4),
                                           "peak_memory": rnd(ratio(fb["peak_gib"], b["peak_gib"]), 4),
                                           "memory_saved_gib": rnd(b["peak_gib"] - fb["peak_gib"], 4)}
        del opt  # its states and the LoRA parameters go with the LoRA layers at the end of `trainable`
    after = signature(sm)
    if after != before:
        changed = sorted(set(before) ^ set(after)) or [k for k in before if before[k] != after[k]]
        raise RuntimeError(f"the model was not restored after training: {changed[:3]}")
    res["model_restored"] = True  # LoRA removed, CGMF weights, dtypes and frozen flags as before
    ctx.log(f"train: basis {res['basis']}")
    return res
