"""Answering with a trained checkpoint (a LoRA adapter in `lora/`) vs its base, on cache hits
(issue #18 §3, #19 §4).

    python -m bench.lora_answer            # writes bench/results/lora_answer.json / .md
    python -m bench.lora_answer --quick    # the tiny checkpoint (the test's smoke run)

One process, one random InternVL folder of mid size (`bench.load_memory`'s: ~160 M parameters,
bf16 shards), assembled twice: the base (fusion none) and the same base with a rank-8 adapter on
all 7 linear layers of every LLM layer, as `spacemind train --lora-rank 8` writes it. For each
precision (fp32, bf16) and each way of applying the adapter:

* load: `SpaceMind.from_pretrained` (the weights in the page cache; fastest of --repeats);
* answer: one scene's 8 questions on cached features (2 frames, 16 new tokens, no stop token so
  every way decodes as many): prefill once, decode the batch, as `answer` runs on a cache hit
  (fastest of --repeats);

with the ratios over the base's. "PEFT merge" is how the adapter was applied before: PEFT's LoRA
model built over the adapted modules, then `merge_and_unload`.
"""

from __future__ import annotations

import argparse
import functools
import json
import tempfile
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results"
QUESTIONS = [f"How many chair(s) are in room {i}?" for i in range(8)]
RANK, ALPHA = 8, 16
TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def write_adapter(folder: Path, internvl_dir: Path, seed: int = 0) -> int:
    """A PEFT adapter on every linear layer of the LLM, B as trained (non-zero); its pair count."""
    from safetensors.torch import save_file
    from transformers import InternVLConfig

    text = InternVLConfig.from_pretrained(internvl_dir).text_config
    h, inter = text.hidden_size, text.intermediate_size
    kv = text.num_key_value_heads * (h // text.num_attention_heads)
    shapes = {"q_proj": (h, h), "k_proj": (kv, h), "v_proj": (kv, h), "o_proj": (h, h),
              "gate_proj": (inter, h), "up_proj": (inter, h), "down_proj": (h, inter)}
    g = torch.Generator().manual_seed(seed)
    tensors = {}
    for layer in range(text.num_hidden_layers):
        for name, (out, inp) in shapes.items():
            part = "self_attn" if name in ("q_proj", "k_proj", "v_proj", "o_proj") else "mlp"
            key = f"base_model.model.model.language_model.layers.{layer}.{part}.{name}"
            tensors[f"{key}.lora_A.weight"] = torch.randn(RANK, inp, generator=g) / inp**0.5
            tensors[f"{key}.lora_B.weight"] = torch.randn(out, RANK, generator=g) * 0.01
    folder.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(folder / "adapter_model.safetensors"))
    config = {"peft_type": "LORA", "r": RANK, "lora_alpha": ALPHA, "target_modules": list(TARGETS), "bias": "none"}
    (folder / "adapter_config.json").write_text(json.dumps(config))
    return len(tensors) // 2


def peft_merge(model, adapter: Path) -> None:
    """The adapter applied as before #19 §4: PEFT's LoRA model over the modules, merge_and_unload."""
    import re
    import warnings

    from peft import LoraConfig, get_peft_model
    from peft.utils import set_peft_model_state_dict

    from spacemind_cli.models.lora import adapter_weights_file, plan_lora
    from spacemind_cli.weights import load_weights

    plan = plan_lora(model, adapter)
    config = LoraConfig(r=RANK, lora_alpha=ALPHA, target_modules=[p.module for p in plan.pairs], lora_dropout=0.0,
                        rank_pattern={re.escape(p.module): p.r for p in plan.pairs}, init_lora_weights=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        peft_model = get_peft_model(model, config)
    tensors = load_weights(adapter_weights_file(adapter))
    state = {}
    for p in plan.pairs:
        state[f"base_model.model.{p.module}.lora_A.weight"] = tensors[p.a]
        state[f"base_model.model.{p.module}.lora_B.weight"] = tensors[p.b]
    set_peft_model_state_dict(peft_model, state)
    peft_model.merge_and_unload()


def features(sm):
    from spacemind_cli.models.spacemind import EncoderOutputs

    g = torch.Generator().manual_seed(0)
    vit = sm.internvl.config.vision_config.hidden_size * 4
    frames = 2
    return EncoderOutputs(vggt_patch=torch.zeros(1, frames, 1, 1), vggt_camera=torch.zeros(1, frames, 1, 1),
                          internvit=torch.randn(frames, sm.tokens_per_frame, vit, generator=g),
                          pose_enc=torch.zeros(frames, 9))


@torch.no_grad()
def answer(sm, enc) -> list[list[int]]:
    """What `answer` does on a cache hit (fuse, prefill once, decode the questions in one batch),
    with no stop token: every way decodes the same number of tokens, whatever it answers."""
    from spacemind_cli.models import generation, internvl

    lm, head, embed = internvl.parts(sm.internvl)
    prefix = sm.prefill(sm.fuse(enc))
    return generation.decode_batch(lm, head, embed, prefix, [sm.suffix_ids(q) for q in QUESTIONS],
                                   max_new_tokens=16, eos_ids=set(), pad_id=internvl.pad_token_id(sm.tokenizer))


def timed(fn, repeats: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def measure(base: Path, trained: Path, adapter: Path, dtype: torch.dtype, repeats: int) -> dict:
    from spacemind_cli.models.spacemind import SpaceMind

    ways = {
        "base": lambda: SpaceMind.from_pretrained(base, dtype=dtype),
        "beside": lambda: SpaceMind.from_pretrained(trained, dtype=dtype, merge_lora=False),
        "merged": lambda: SpaceMind.from_pretrained(trained, dtype=dtype, merge_lora=True),
    }

    def peft():
        sm = SpaceMind.from_pretrained(base, dtype=dtype)
        peft_merge(sm.internvl, adapter)
        return sm

    ways["PEFT merge"] = peft
    out = {}
    for name, load in ways.items():
        load_s, sm = timed(load, repeats)
        enc = features(sm)
        answer_s, tokens = timed(functools.partial(answer, sm, enc), repeats)
        out[name] = {"load_s": load_s, "answer_s": answer_s, "tokens": tokens}
        del sm
    for name in ways:
        out[name]["load_vs_base"] = out[name]["load_s"] / out["base"]["load_s"]
        out[name]["answer_vs_base"] = out[name]["answer_s"] / out["base"]["answer_s"]
        out[name]["total_vs_base"] = ((out[name]["load_s"] + out[name]["answer_s"])
                                      / (out["base"]["load_s"] + out["base"]["answer_s"]))
    return out


def run(quick: bool = False, repeats: int = 3) -> dict:
    from bench.common import machine_info
    from bench.load_memory import write_folder
    from spacemind_cli.models.assemble import assemble
    from spacemind_cli.models.tiny import write_tiny_checkpoint

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory(prefix="lora_answer_") as tmp:
        root = Path(tmp)
        tiny = write_tiny_checkpoint(root / "tiny")
        internvl_dir = tiny / "internvl" if quick else write_folder(root / "internvl")
        adapter = root / "adapter"
        pairs = write_adapter(adapter, internvl_dir)
        base = assemble(root / "base", base=internvl_dir, vggt=tiny / "vggt", fusion="none")
        trained = assemble(root / "trained", base=internvl_dir, vggt=tiny / "vggt", fusion="none", lora=adapter)
        results = {name: measure(base, trained, adapter, dtype, repeats)
                   for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16))}
    return {"machine": machine_info(), "quick": quick, "model": "tiny" if quick else "mid (bench.load_memory)",
            "adapter": {"pairs": pairs, "rank": RANK, "alpha": ALPHA}, "questions": len(QUESTIONS),
            "repeats": repeats, "results": results}


def to_markdown(r: dict) -> str:
    a = r["adapter"]
    lines = [
        "# Answering with a trained checkpoint (LoRA) vs its base, on cache hits",
        "",
        f"Model: {r['model']}, adapter: {a['pairs']} LoRA pairs of rank {a['rank']} (alpha {a['alpha']}). "
        f"Load: `SpaceMind.from_pretrained`; answer: one scene's {r['questions']} questions on cached features "
        "(2 frames, 16 new tokens). Fastest of "
        f"{r['repeats']}, one process; ratios over the base. `beside`: the adapter on the side of each Linear "
        "(the default in bf16); `merged`: merged into the weights (the default in fp32, `--merge-lora`); "
        "`PEFT merge`: how it was applied before (PEFT's LoRA model, `merge_and_unload`).",
        "",
        "| dtype | adapter | load | answer | load vs base | answer vs base | load + answer vs base |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for dtype, ways in r["results"].items():
        for name, x in ways.items():
            lines.append(f"| {dtype} | {name} | {x['load_s']:.2f} s | {x['answer_s']:.2f} s | {x['load_vs_base']:.2f}x | "
                         f"{x['answer_vs_base']:.2f}x | {x['total_vs_base']:.2f}x |")
    m = r["machine"]
    lines += ["", f"{m['cpu_count']} CPUs (shared), torch {m['torch']}, transformers {m['transformers']}, {m['date']}."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS / "lora_answer.json")
    args = parser.parse_args()
    from bench.common import write_results

    result = run(args.quick, args.repeats)
    write_results(args.out, result, to_markdown(result))


if __name__ == "__main__":
    main()
