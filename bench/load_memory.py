"""Peak memory of loading InternVL weights: never two copies of the weights (issue #18 §3).

    python -m bench.load_memory            # writes bench/results/load_memory.json / .md
    python -m bench.load_memory --quick    # a smaller checkpoint (the test's smoke run)

A random InternVL folder of mid size (a small InternViT, a Qwen2 LLM of ~150 M parameters) is
written in bf16, sharded with an index, as the hub's -hf folders are. Each load then runs in a
fresh Python process, which imports torch and transformers, records its resident memory (the
fixed runtime cost, reported apart), resets the kernel's peak counter (/proc/self/clear_refs),
loads, and reads the peak (VmHWM). The ratio is

    (peak RSS during the load - RSS before it) / bytes of the loaded weights as they sit in memory

for three loads: transformers' own `from_pretrained` (what `internvl.load` called before #18) and
`internvl.load`, in fp32 (bf16 weights answered in fp32 on a CPU) and in bf16. The "before" and
"after" figures come from the same run, on the same folder.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
GOAL = 1.15  # issue #18 §3: peak RSS of `answer` at most 1.15x the weights' bytes


def mid_internvl_config(tokenizer, quick: bool):
    """InternVL's architecture at a size where weights dominate the process: ~160 M parameters
    (~75 M with --quick), most of them in the LLM, as in the real models."""
    from transformers import InternVLConfig

    hidden, layers, inter, vocab = (768, 4, 2048, 8192) if quick else (1024, 8, 2816, 32768)
    return InternVLConfig(
        vision_config=dict(hidden_size=256, num_hidden_layers=2, num_attention_heads=4, intermediate_size=512,
                           image_size=64, patch_size=4),
        text_config=dict(model_type="qwen2", hidden_size=hidden, intermediate_size=inter, num_hidden_layers=layers,
                         num_attention_heads=16, num_key_value_heads=4, vocab_size=vocab, max_position_embeddings=4096,
                         tie_word_embeddings=False,
                         eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
                         pad_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>")),
        image_token_id=tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>"),
        image_seq_length=256, downsample_ratio=0.5, tie_word_embeddings=False,
    )


def write_folder(out: Path, quick: bool = False, shard_size: str = "50MB") -> Path:
    """A random InternVL folder in transformers' layout: bf16 safetensors shards with an index,
    its config and the tiny tokenizer. Built in bf16 so writing it stays small."""
    import torch
    from transformers import InternVLForConditionalGeneration

    from spacemind_cli.models.tiny import tiny_tokenizer

    torch.manual_seed(0)
    tokenizer = tiny_tokenizer()
    config = mid_internvl_config(tokenizer, quick)
    model = InternVLForConditionalGeneration._from_config(config, dtype=torch.bfloat16).eval()
    model.save_pretrained(out, max_shard_size=shard_size)
    tokenizer.save_pretrained(out)
    return out


def _status(field: str) -> int:
    """A /proc/self/status memory field, in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def measure(folder: str, loader: str, dtype_name: str) -> dict:
    """In this process: imports, baseline RSS, reset the peak, load, peak RSS."""
    import torch
    import transformers  # noqa: F401 - the fixed runtime cost, paid before the baseline
    from transformers import AutoTokenizer, InternVLForConditionalGeneration, PreTrainedTokenizerFast  # noqa: F401

    from spacemind_cli.models import internvl

    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
    imports = _status("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # peak RSS := current RSS
    t0 = time.perf_counter()
    if loader == "transformers":  # the call internvl.load made before #18 (CPU, dtype given)
        model = InternVLForConditionalGeneration.from_pretrained(folder, dtype=dtype, use_safetensors=True,
                                                                 local_files_only=True)
    else:
        model, _ = internvl.load(folder, device="cpu", dtype=dtype)
    seconds = time.perf_counter() - t0
    with torch.no_grad():  # read every weight once, as a forward does: mapped pages count from here
        for t in [*model.parameters(), *model.buffers()]:
            t.sum()
    peak = _status("VmHWM")
    tensors = {t.data_ptr(): t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()]}
    weights = sum(tensors.values())
    return {"loader": loader, "dtype": dtype_name, "baseline_rss": imports, "peak_rss": peak,
            "weight_bytes": weights, "ratio": (peak - imports) / weights, "load_s": seconds}


def measure_in_child(folder: str | Path, loader: str, dtype_name: str) -> dict:
    """`measure` in a fresh interpreter (peak RSS is per process)."""
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run([sys.executable, "-m", "bench.load_memory", "--child", str(folder), loader, dtype_name],
                          capture_output=True, text=True, cwd=root, env=env, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"load_memory child ({loader}, {dtype_name}) failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(quick: bool = False) -> dict:
    from bench.common import machine_info

    with tempfile.TemporaryDirectory(prefix="load_memory_") as tmp:
        folder = write_folder(Path(tmp) / "internvl", quick)
        shards = [f.stat().st_size for f in folder.glob("*.safetensors")]
        runs = [measure_in_child(folder, loader, dtype)
                for loader, dtype in (("transformers", "fp32"), ("spacemind", "fp32"),
                                      ("transformers", "bf16"), ("spacemind", "bf16"))]
    return {"machine": machine_info(), "quick": quick, "goal": GOAL,
            "checkpoint": {"shards": len(shards), "bytes_on_disk": sum(shards), "largest_shard": max(shards),
                           "dtype": "bf16"},
            "runs": runs}


def _gib(n: int) -> str:
    return f"{n / 2**30:.2f} GiB"


def to_markdown(r: dict) -> str:
    c = r["checkpoint"]
    lines = [
        "# Loading InternVL weights: peak memory",
        "",
        f"A random InternVL folder in transformers' layout: {c['shards']} bf16 safetensors shards, "
        f"{_gib(c['bytes_on_disk'])} on disk. Each load in a fresh process; the ratio is (peak RSS during "
        "the load - RSS after imports) / bytes of the loaded weights in memory. Goal: at most "
        f"{r['goal']}x (issue #18 §3). `transformers` is `InternVLForConditionalGeneration.from_pretrained`, "
        "what `internvl.load` called before; `spacemind` is `internvl.load` now. Same run, same folder.",
        "",
        "| loader | dtype | weights in memory | runtime before loading (torch, transformers) | peak added by the load | ratio | load time |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for x in r["runs"]:
        lines.append(f"| {x['loader']} | {x['dtype']} | {_gib(x['weight_bytes'])} | {_gib(x['baseline_rss'])} | "
                     f"{_gib(x['peak_rss'] - x['baseline_rss'])} | {x['ratio']:.2f}x | {x['load_s']:.1f} s |")
    m = r["machine"]
    lines += ["", f"{m['cpu_count']} CPUs, torch {m['torch']}, transformers {m['transformers']}, {m['date']}."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS / "load_memory.json")
    parser.add_argument("--child", nargs=3, metavar=("FOLDER", "LOADER", "DTYPE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(*args.child)))
        return
    from bench.common import write_results

    result = run(args.quick)
    write_results(args.out, result, to_markdown(result))


if __name__ == "__main__":
    main()
