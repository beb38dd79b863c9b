"""Training with shared-prefix packing vs separate samples: tokens and time per epoch, and how
many scenes a step sees with each pack size.

    python -m bench.packing             # 4 scenes x 18 questions, 32 frames, tiny model, CPU
    python -m bench.packing --quick     # smoke run (the test's)

Three ways to train the same questions, timed: `separate` (no packing), `whole` (today's packing
before issue 19: a scene's 18 questions in one pack) and `small` (packs of <= 4 questions of a
scene, `--questions-per-pack`'s default: 18 -> 4 4 4 3 3).

The step plan, without a model: the library's `StepPlan` on 100 scenes x 18 questions, global
batch 64, for packs of <= 1 (no packing), 2, 3, 4, 6, 8 and 32 (today's: a whole scene) questions:
distinct scenes per 64-question step, prefix passes and tokens per epoch (the tiny model's prefix
and mean segment, and the full-size prefix of 32 frames x 256 image tokens), and at 64 workers the
prefix passes today's worker split made (packs halved until every worker had one: one question
per GPU) against packs kept whole.

The tiny random-weight SpaceMind (models/tiny.py: 2-layer Qwen2, 64 image tokens per frame) with
what issue 13 trains: a CGMF feeding the prefix's image tokens plus PEFT LoRA (r 8) on every
linear layer of the LLM, everything else frozen. Scenes are random encoder outputs (their
values do not change the cost); questions and answers are the bundled VSI-Bench-format examples
(`bench/workload.scene_rows`, the library's prompt builder), 18 per scene as VSI-Bench has.

One epoch = per scene: `SpaceMind.scene_loss_sum(enc, pairs, packed=...)` per pack, loss = sum /
the scene's targets, backward (no optimizer step: it costs the same either way). `whole` runs
[prefix][q1 a1][q2 a2]... once per scene; `small` once per pack; `separate` runs [prefix][q a] per
question (the CGMF output is shared by a scene's samples, which slightly favours the baseline). Tokens = tokens
through the LLM. Time: fastest of --repeats epochs, same process. The losses and gradients of
both are compared as a check (they must agree to float summation order).

Writes bench/results/packing.json and packing.md (ratios separate / packed, no absolute paths).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from bench.common import machine_info, write_results

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass
class Sizes:
    scenes: int = 4
    questions: int = 18
    frames: int = 32
    lora_r: int = 8
    repeats: int = 2
    questions_per_pack: int = 4
    plan_scenes: int = 100
    batch: int = 64


QUICK = Sizes(scenes=2, questions=4, frames=4, repeats=1, questions_per_pack=2, plan_scenes=20, batch=16)
PLAN_CAPS = (1, 2, 3, 4, 6, 8, 32)
MODES = ("separate", "whole", "small")
FULL_PREFIX = 64 + 32 * (256 + 8)  # InternVL3 at 32 frames: training/memory.pack_tokens with no question


def build(sizes: Sizes, seed: int = 0):
    """(SpaceMind with trainable CGMF + LoRA, [(EncoderOutputs, [(prompt, answer)])] per scene)."""
    from peft import LoraConfig, get_peft_model

    from bench.workload import scene_rows
    from spacemind_cli.models.spacemind import EncoderOutputs, SpaceMind
    from spacemind_cli.models.tiny import build_tiny
    from spacemind_cli.prompts import build_prompt

    config, vggt, model, tokenizer, fusion = build_tiny(seed)
    lora = LoraConfig(
        r=sizes.lora_r, lora_alpha=2 * sizes.lora_r, lora_dropout=0.0, init_lora_weights=False,
        target_modules=r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)",
    )  # fmt: skip
    get_peft_model(model, lora)
    fusion.requires_grad_(True)
    sm = SpaceMind(config, vggt, model, tokenizer, fusion).train()
    scenes = []
    for i in range(sizes.scenes):
        g = torch.Generator().manual_seed(100 + i)
        enc = EncoderOutputs(
            vggt_patch=torch.randn(1, sizes.frames, 16, 64, generator=g),
            vggt_camera=torch.randn(1, sizes.frames, 1, 64, generator=g),
            internvit=torch.randn(sizes.frames, 64, 128, generator=g),
            pose_enc=torch.randn(sizes.frames, 9, generator=g),
        )
        scenes.append((enc, [(build_prompt(r), str(r["ground_truth"])) for r in scene_rows(i, sizes.questions)]))
    return sm, scenes


def _trained(sm) -> list[torch.nn.Parameter]:
    return [p for p in list(sm.fusion.parameters()) + list(sm.internvl.parameters()) if p.requires_grad]


def scene_counts(sm, scenes) -> list[dict]:
    """Per scene, tokenized once: the prefix length, each question + answer segment's length
    (prompt, answer, end of turn) and the answer targets `scene_loss_sum` must count."""
    from spacemind_cli.models import packing

    out = []
    for enc, pairs in scenes:
        segments = [sm.segment(p, a) for p, a in pairs]
        out.append({
            "prefix": len(sm.prefix_ids(enc.num_frames)),
            "segments": [len(s.prompt_ids) + len(s.answer_ids) + 1 for s in segments],
            "targets": packing.num_targets(segments),
        })  # fmt: skip
    return out


def packs_of(n: int, mode: str, cap: int) -> list[range]:
    """A scene's question indices cut as `mode` trains them."""
    from spacemind_cli.training.schedule import split_sizes

    sizes = [1] * n if mode == "separate" else [n] if mode == "whole" else split_sizes(n, cap)
    out, start = [], 0
    for size in sizes:
        out.append(range(start, start + size))
        start += size
    return out


def epoch(sm, scenes, counts: list[dict], mode: str, cap: int = 4) -> dict:
    """One pass: per scene the loss (token CE sum over its packs / its targets) and backward.
    Returns seconds, tokens, the losses and the summed gradients (for the check). `counts`:
    `scene_counts(sm, scenes)`, so nothing but the training step is tokenized inside the timed loop."""
    params = _trained(sm)
    for p in params:
        p.grad = None
    tokens = 0
    losses = []
    t0 = time.perf_counter()
    for (enc, pairs), c in zip(scenes, counts, strict=True):
        total, count = 0, 0
        for pack in packs_of(len(pairs), mode, cap):
            t, k = sm.scene_loss_sum(enc, [pairs[i] for i in pack], packed=mode != "separate")
            total, count = total + t, count + k
            tokens += (len(pack) if mode == "separate" else 1) * c["prefix"] + sum(c["segments"][i] for i in pack)
        loss = total / count
        loss.backward()
        losses.append(float(loss))
        assert count == c["targets"]
    seconds = time.perf_counter() - t0
    return {"s": seconds, "tokens": tokens, "losses": losses, "grads": [p.grad.clone() for p in params]}


def today_split(packs: list, world: int) -> list:
    """How packs were spread over workers before issue 19: while the workers outnumbered the
    packs, the biggest pack was halved (down to one question per worker at 64 workers)."""
    from spacemind_cli.training.schedule import Pack

    packs = list(packs)
    while len(packs) < world:
        biggest = max(range(len(packs)), key=lambda i: (len(packs[i].examples), -i))
        big = packs[biggest]
        if len(big.examples) < 2:
            break
        half = (len(big.examples) + 1) // 2
        packs[biggest : biggest + 1] = [Pack(big.scene, big.examples[:half]), Pack(big.scene, big.examples[half:])]
    return packs


def plan_table(sizes: Sizes, prefix: int, segment: float) -> dict:
    """Per pack size: distinct scenes per full step, prefix passes and tokens per epoch."""
    from spacemind_cli.training.schedule import StepPlan

    q = sizes.questions
    by_scene = {f"s{i:05d}": range(i * q, (i + 1) * q) for i in range(sizes.plan_scenes)}
    questions = sizes.plan_scenes * q
    out = {}
    for cap in PLAN_CAPS:
        plan = StepPlan(by_scene, seed=0, questions_per_pack=cap, batch_size=sizes.batch, epochs=1)
        steps = [plan.step(i) for i in range(plan.total_steps)]
        full = [s for s in steps if sum(len(p.examples) for p in s) == sizes.batch]
        distinct = [len({p.scene for p in s}) for s in full]
        passes = sum(len(s) for s in steps)
        passes_64 = sum(len(today_split(s, 64)) for s in steps)
        out[str(cap)] = {
            "scenes_per_step_min": min(distinct), "scenes_per_step_mean": round(sum(distinct) / len(distinct), 1),
            "prefix_passes": passes, "prefix_passes_64_workers_today_split": passes_64,
            "tokens_tiny": round(passes * prefix + questions * segment),
            "tokens_full_size": round(passes * FULL_PREFIX + questions * segment),
        }  # fmt: skip
    unpacked = out["1"]
    for row in out.values():
        row["unpacked_vs_this_tokens_tiny"] = round(unpacked["tokens_tiny"] / row["tokens_tiny"], 2)
        row["unpacked_vs_this_tokens_full_size"] = round(unpacked["tokens_full_size"] / row["tokens_full_size"], 2)
    return {"scenes": sizes.plan_scenes, "questions_per_scene": q, "batch": sizes.batch, "caps": out}


def measure(sizes: Sizes | None = None, log=lambda msg: None) -> dict:
    sizes = sizes or Sizes()
    sm, scenes = build(sizes)
    counts = scene_counts(sm, scenes)
    prefix_len = len(sm.prefix_ids(sizes.frames))
    seg_lens = [n for c in counts for n in c["segments"]]
    epoch(sm, scenes[:1], counts[:1], "whole")  # warm-up (registration, allocator)
    runs: dict[str, list[dict]] = {m: [] for m in MODES}
    for _ in range(sizes.repeats):
        for name in runs:
            runs[name].append(epoch(sm, scenes, counts, name, sizes.questions_per_pack))
            log(f"{name}: {runs[name][-1]['s']:.2f} s, {runs[name][-1]['tokens']} tokens")
    best = {name: min(r, key=lambda x: x["s"]) for name, r in runs.items()}
    s = best["separate"]
    check = {}
    for name in ("whole", "small"):
        p = best[name]
        check[name] = {
            "max_loss_rel_diff": max(abs(a - b) / abs(b) for a, b in zip(p["losses"], s["losses"])),
            "max_grad_rel_diff": max(float((a - b).abs().max() / b.abs().max().clamp(min=1e-30))
                                     for a, b in zip(p["grads"], s["grads"])),
        }  # fmt: skip
    res = {
        "sizes": asdict(sizes),
        "model": "tiny SpaceMind (models/tiny.py seed 0): Qwen2 2 layers, hidden 64; CGMF + LoRA trained",
        "trained_parameters": sum(x.numel() for x in _trained(sm)),
        "prefix_tokens": prefix_len,
        "segment_tokens": {"min": min(seg_lens), "max": max(seg_lens), "mean": round(sum(seg_lens) / len(seg_lens), 1)},
        **{name: {"s": round(best[name]["s"], 4), "all_s": [round(r["s"], 4) for r in runs[name]],
                  "tokens": best[name]["tokens"]} for name in MODES},
        "check": check,
    }  # fmt: skip
    # kept under their old names: packed = today's whole-scene packs
    res["packed"] = res["whole"]
    res["ratios_separate_vs_packed"] = {
        "tokens": round(s["tokens"] / best["whole"]["tokens"], 3),
        "time": round(s["s"] / best["whole"]["s"], 3),
    }
    res["ratios_separate_vs_small"] = {
        "tokens": round(s["tokens"] / best["small"]["tokens"], 3),
        "time": round(s["s"] / best["small"]["s"], 3),
    }
    res["plan"] = plan_table(sizes, prefix_len, sum(seg_lens) / len(seg_lens))
    return res


def markdown(res: dict) -> str:
    z, seg, plan = res["sizes"], res["segment_tokens"], res["plan"]
    sep = res["separate"]
    cap = z["questions_per_pack"]
    rows = []
    for name, key in (("separate samples (no packing)", "separate"), ("today: whole-scene packs", "whole"),
                      (f"packs of <= {cap} (new default)", "small")):
        r = res[key]
        rows.append(f"| {name} | {r['tokens']} | {r['s']:.3f} | {sep['tokens'] / r['tokens']:.2f} | {sep['s'] / r['s']:.2f} |")
    prow = []
    for c, r in plan["caps"].items():
        label = "1 (no packing)" if c == "1" else f"{c} (today)" if c == "32" else f"{c} (default)" if int(c) == cap else c
        prow.append(f"| {label} | {r['scenes_per_step_min']} / {r['scenes_per_step_mean']} | {r['prefix_passes']} | "
                    f"{r['tokens_tiny']} | {r['unpacked_vs_this_tokens_tiny']} | {r['tokens_full_size']} | "
                    f"{r['unpacked_vs_this_tokens_full_size']} | {r['prefix_passes_64_workers_today_split']} |")
    return "\n".join([
        "# Training: shared-prefix packing, pack size and scenes per step",
        "",
        "## Time and tokens per epoch (tiny model, CPU)",
        "",
        f"{res['model']}; {z['scenes']} scenes x {z['questions']} questions, {z['frames']} frames: prefix "
        f"{res['prefix_tokens']} tokens, question + answer segments {seg['min']}-{seg['max']} tokens (mean {seg['mean']}). "
        f"One epoch = forward + backward of every scene's packs; fastest of {z['repeats']}, same process.",
        "",
        "| | tokens per epoch | s per epoch | tokens: separate / this | time: separate / this |",
        "|---|---:|---:|---:|---:|",
        *rows,
        "",
        "Check against separate samples: " + "; ".join(
            f"{k}: loss rel. diff {v['max_loss_rel_diff']:.1e}, gradient max diff / max |grad| {v['max_grad_rel_diff']:.1e}"
            for k, v in res["check"].items()) + " (fp32 summation order).",
        "",
        "## Scenes per step and tokens by pack size (the step plan, no model)",
        "",
        f"`StepPlan` over {plan['scenes']} scenes x {plan['questions_per_scene']} questions, steps of {plan['batch']} "
        f"questions, one epoch. Tokens = prefix passes x prefix + questions x mean segment ({seg['mean']}), with the "
        f"tiny prefix ({res['prefix_tokens']}) and the full-size one ({FULL_PREFIX}: 32 frames x 256 image tokens). "
        "Prefix passes at 64 workers: today's worker split halved packs until each worker had one (one question "
        "per GPU at a batch of 64); packs are now kept whole (the prefix passes of one worker are those of the "
        "first column).",
        "",
        "| questions per pack | scenes per step (min / mean) | prefix passes | tokens (tiny) | unpacked / this | "
        "tokens (full size) | unpacked / this | prefix passes, 64 workers, today's split |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
        *prow,
        "",
        f"The default, {cap}: the largest pack size that gives >= 16 distinct scenes per 64-question step, and the "
        "smallest that keeps >= 3x fewer tokens than unpacked (3 falls under 3x).",
        "",
    ])  # fmt: skip


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2 scenes x 4 questions, 4 frames (smoke run)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1: a shared 2-core machine)")
    ap.add_argument("--out", default=str(RESULTS / "packing.json"))
    ap.add_argument("--md", default=None, help="markdown (default: --out with .md)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    res = {"machine": machine_info(), "mode": "quick" if args.quick else "full"}
    res.update(measure(QUICK if args.quick else Sizes(), log=lambda m: print(m, flush=True)))
    write_results(args.out, res, markdown(res), args.md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
