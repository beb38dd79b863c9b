"""Training with shared-prefix packing vs separate samples: tokens and time per epoch.

    python -m bench.packing             # 4 scenes x 18 questions, 32 frames, tiny model, CPU
    python -m bench.packing --quick     # smoke run (the test's)

The tiny random-weight SpaceMind (models/tiny.py: 2-layer Qwen2, 64 image tokens per frame) with
what issue 13 trains: a CGMF feeding the prefix's image tokens plus PEFT LoRA (r 8) on every
linear layer of the LLM, everything else frozen. Scenes are random encoder outputs (their
values do not change the cost); questions and answers are the bundled VSI-Bench-format examples
(`bench/workload.scene_rows`, the library's prompt builder), 18 per scene as VSI-Bench has.

One epoch = per scene: `SpaceMind.scene_loss_sum(enc, pairs, packed=...)`, loss = sum / targets,
backward (no optimizer step: it costs the same either way). `packed` runs
[prefix][q1 a1][q2 a2]... once per scene; `separate` runs [prefix][q a] per question (the CGMF
output is shared by a scene's samples, which slightly favours the baseline). Tokens = tokens
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


QUICK = Sizes(scenes=2, questions=4, frames=4, repeats=1)


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


def epoch(sm, scenes, counts: list[dict], packed: bool) -> dict:
    """One pass: per scene loss (token CE sum / targets) and backward. Returns seconds, tokens,
    the losses and the summed gradients (for the check). `counts`: `scene_counts(sm, scenes)`,
    so nothing but the training step is tokenized inside the timed loop."""
    params = _trained(sm)
    for p in params:
        p.grad = None
    tokens = 0
    losses = []
    t0 = time.perf_counter()
    for (enc, pairs), c in zip(scenes, counts, strict=True):
        total, count = sm.scene_loss_sum(enc, pairs, packed=packed)
        loss = total / count
        loss.backward()
        losses.append(float(loss))
        suffix = sum(c["segments"])
        tokens += c["prefix"] + suffix if packed else len(pairs) * c["prefix"] + suffix
        assert count == c["targets"]
    seconds = time.perf_counter() - t0
    return {"s": seconds, "tokens": tokens, "losses": losses, "grads": [p.grad.clone() for p in params]}


def measure(sizes: Sizes | None = None, log=lambda msg: None) -> dict:
    sizes = sizes or Sizes()
    sm, scenes = build(sizes)
    counts = scene_counts(sm, scenes)
    prefix_len = len(sm.prefix_ids(sizes.frames))
    seg_lens = [n for c in counts for n in c["segments"]]
    epoch(sm, scenes[:1], counts[:1], True)  # warm-up (registration, allocator)
    runs: dict[str, list[dict]] = {"packed": [], "separate": []}
    for _ in range(sizes.repeats):
        for name in runs:
            runs[name].append(epoch(sm, scenes, counts, packed=name == "packed"))
            log(f"{name}: {runs[name][-1]['s']:.2f} s, {runs[name][-1]['tokens']} tokens")
    best = {name: min(r, key=lambda x: x["s"]) for name, r in runs.items()}
    p, s = best["packed"], best["separate"]
    grad_diff = max(float((a - b).abs().max() / b.abs().max().clamp(min=1e-30)) for a, b in zip(p["grads"], s["grads"]))
    loss_diff = max(abs(a - b) / abs(b) for a, b in zip(p["losses"], s["losses"]))
    res = {
        "sizes": asdict(sizes),
        "model": "tiny SpaceMind (models/tiny.py seed 0): Qwen2 2 layers, hidden 64; CGMF + LoRA trained",
        "trained_parameters": sum(x.numel() for x in _trained(sm)),
        "prefix_tokens": prefix_len,
        "segment_tokens": {"min": min(seg_lens), "max": max(seg_lens), "mean": round(sum(seg_lens) / len(seg_lens), 1)},
        "packed": {"s": round(p["s"], 4), "all_s": [round(r["s"], 4) for r in runs["packed"]], "tokens": p["tokens"]},
        "separate": {"s": round(s["s"], 4), "all_s": [round(r["s"], 4) for r in runs["separate"]], "tokens": s["tokens"]},
        "check": {"max_loss_rel_diff": loss_diff, "max_grad_rel_diff": grad_diff},
    }
    res["ratios_separate_vs_packed"] = {
        "tokens": round(s["tokens"] / p["tokens"], 3),
        "time": round(s["s"] / p["s"], 3),
    }
    return res


def markdown(res: dict) -> str:
    z, p, s, q = res["sizes"], res["packed"], res["separate"], res["ratios_separate_vs_packed"]
    seg = res["segment_tokens"]
    return "\n".join([
        "# Training: shared-prefix packing vs separate samples",
        "",
        f"{res['model']}; {z['scenes']} scenes x {z['questions']} questions, {z['frames']} frames: prefix "
        f"{res['prefix_tokens']} tokens, question + answer segments {seg['min']}-{seg['max']} tokens (mean {seg['mean']}). "
        f"One epoch = forward + backward of every scene; fastest of {z['repeats']}.",
        "",
        "| | tokens per epoch | s per epoch |",
        "|---|---:|---:|",
        f"| separate samples | {s['tokens']} | {s['s']:.3f} |",
        f"| packed | {p['tokens']} | {p['s']:.3f} |",
        f"| separate / packed | {q['tokens']} | {q['time']} |",
        "",
        f"Check: loss rel. diff {res['check']['max_loss_rel_diff']:.1e}, gradient max diff / max |grad| "
        f"{res['check']['max_grad_rel_diff']:.1e} (fp32 summation order).",
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
