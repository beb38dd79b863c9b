"""Decode memory and time against batch size: the shared prefix vs deep copy + repeat.

    python -m bench.decode              # CPU: mid-size random Qwen2-like LM, 4096-token prefix
    python -m bench.decode --quick      # smoke run (the test's): toy sizes
    python -m bench.decode --full-size --device cuda --out bench/results/decode_gpu.json   # Qwen2-7B sizes, bf16

Both paths run in this process on the same prefilled prefix and the same questions:

* `old`: what `generation.decode_batch` did before issue 14, reconstructed here: deep-copy the
  prefix cache, repeat it per row (`batch_repeat_interleave`), left-pad the suffixes between
  prefix and question, masked attention over [prefix ; suffix] of every row.
* `new`: `generation.decode_batch`: rows read the one prefix cache in place and keep only their
  own suffix keys/values; log-sum-exp merge (`models/prefix_attention.py`).

Per batch size: seconds per batch (fastest of --repeats), key/value bytes held at the end of the
batch, and the peak bytes allocated by the call above what was live before it (the prefix
itself is live before both and not counted). Peak allocation on CUDA is
`torch.cuda.max_memory_allocated` after a reset. On CPU there is no allocator counter, so we
measure the process: glibc's mmap threshold is fixed at 64 KiB (`mallopt`) so every tensor
buffer is mmapped and unmapped when freed (RSS follows live tensors instead of keeping freed
heap), the peak RSS counter is reset (`/proc/self/clear_refs`, 5) before the call, and the
peak is VmHWM after the call minus VmRSS before it (page granularity; Linux + glibc only).

`measure(device, sizes)` is the core (the GPU benchmark, bench/gpu/, can call it with device="cuda"); main() writes
bench/results/decode.json and decode.md (ratios old / new, no absolute paths).
"""

from __future__ import annotations

import argparse
import copy
import ctypes
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from bench.common import machine_info, write_results
from spacemind_cli.models import generation

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass
class Sizes:
    hidden: int = 512
    layers: int = 8
    heads: int = 8
    kv_heads: int = 2  # GQA, as Qwen2-7B (28 / 4)
    intermediate: int = 1408
    vocab: int = 4096
    prefix_len: int = 4096
    suffix_lens: list[int] = field(default_factory=lambda: [22, 9, 31, 14, 26, 11, 18, 35])  # cycled over rows
    max_new_tokens: int = 8
    batches: list[int] = field(default_factory=lambda: [1, 2, 4, 8, 16])
    repeats: int = 2
    dtype: str = "float32"


# InternVL3-8B's LLM (Qwen2-7B) at 32 frames x 256 tokens: for bench/gpu/ on one GPU (~15 GB of
# random bf16 weights; the old path at batch 16 holds 16 x 0.47 GB of prefix copies).
FULL_SIZE = Sizes(hidden=3584, layers=28, heads=28, kv_heads=4, intermediate=18944, vocab=151674, prefix_len=8232,
                  suffix_lens=[40, 25, 60, 31, 47, 22, 36, 55], max_new_tokens=16, batches=[1, 2, 4, 8, 16],
                  repeats=3, dtype="bfloat16")  # fmt: skip

QUICK = Sizes(hidden=64, layers=2, heads=4, kv_heads=2, intermediate=128, vocab=256, prefix_len=256,
              suffix_lens=[5, 3, 8], max_new_tokens=3, batches=[1, 2, 4], repeats=1)  # fmt: skip


# ----------------------------------------------------------------------------------- the old path
@torch.no_grad()
def old_decode_batch(lm, lm_head, embed, prefix, suffixes, *, max_new_tokens, eos_ids, pad_id, stats=None):
    """generation.decode_batch before issue 14 (deep copy + repeat of the prefix cache)."""
    device = lm_head.weight.device
    b = len(suffixes)
    width = max(len(s) for s in suffixes)
    ids = torch.full((b, width), pad_id, dtype=torch.long, device=device)
    suffix_mask = torch.zeros((b, width), dtype=torch.long, device=device)
    for row, s in enumerate(suffixes):
        ids[row, width - len(s) :] = torch.tensor(s, dtype=torch.long, device=device)
        suffix_mask[row, width - len(s) :] = 1
    mask = torch.cat([torch.ones((b, prefix.length), dtype=torch.long, device=device), suffix_mask], dim=1)
    positions = (prefix.length + suffix_mask.cumsum(dim=1) - 1).clamp(min=prefix.length)
    cache = copy.deepcopy(prefix.cache)
    if b > 1:
        cache.batch_repeat_interleave(b)
    hidden = generation.lm_forward(lm, embed(ids), cache, attention_mask=mask, position_ids=positions)
    next_pos = positions[:, -1:] + 1
    done = torch.zeros(b, dtype=torch.bool, device=device)
    eos = torch.tensor(sorted(eos_ids), dtype=torch.long, device=device)
    steps = []
    for step in range(max_new_tokens):
        token = lm_head(hidden[:, -1]).argmax(dim=-1)
        token = torch.where(done, torch.full_like(token, pad_id), token)
        steps.append(token)
        done |= torch.isin(token, eos)
        if step == max_new_tokens - 1 or bool(done.all()):
            break
        mask = torch.cat([mask, torch.ones((b, 1), dtype=torch.long, device=device)], dim=1)
        hidden = generation.lm_forward(lm, embed(token[:, None]), cache, attention_mask=mask, position_ids=next_pos)
        next_pos = next_pos + 1
    if stats is not None:
        stats["prefix_kv_bytes"] = generation.kv_bytes(prefix.cache)
        stats["copied_kv_bytes"] = generation.kv_bytes(cache)  # b x (prefix + suffix)
    return [[t for t in row if t not in eos_ids] for row in torch.stack(steps, dim=1).tolist()]


# ----------------------------------------------------------------------------------- memory
_LIBC_READY: bool | None = None


def _cpu_peak_supported() -> bool:
    """Fix glibc's mmap threshold once (see the module docstring); False where impossible."""
    global _LIBC_READY
    if _LIBC_READY is None:
        try:
            libc = ctypes.CDLL("libc.so.6")
            m_mmap_threshold, m_trim_threshold = -3, -1
            ok = libc.mallopt(m_mmap_threshold, 64 * 1024) == 1 and libc.mallopt(m_trim_threshold, 128 * 1024) == 1
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            _LIBC_READY = ok
        except OSError:
            _LIBC_READY = False
    return _LIBC_READY


def _proc_status() -> dict[str, int]:
    text = Path("/proc/self/status").read_text()
    return {k: int(re.search(rf"{k}:\s+(\d+) kB", text).group(1)) * 1024 for k in ("VmRSS", "VmHWM")}


def peak_extra_bytes(fn, device: torch.device) -> int | None:
    """Peak bytes `fn()` allocates above what was live before it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - before
    if device.type != "cpu" or not _cpu_peak_supported():
        fn()
        return None
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before = _proc_status()["VmRSS"]
    fn()
    return max(0, _proc_status()["VmHWM"] - before)


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ----------------------------------------------------------------------------------- the measurement
def build_lm(sizes: Sizes, device, seed: int = 0):
    """A random Qwen2 LM at `sizes` -> (decoder, lm_head, embeddings), eval mode, on device."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    cfg = Qwen2Config(
        hidden_size=sizes.hidden, intermediate_size=sizes.intermediate, num_hidden_layers=sizes.layers,
        num_attention_heads=sizes.heads, num_key_value_heads=sizes.kv_heads, vocab_size=sizes.vocab,
        max_position_embeddings=sizes.prefix_len + 256, initializer_range=0.1, tie_word_embeddings=False,
    )  # fmt: skip
    model = Qwen2ForCausalLM._from_config(cfg, attn_implementation="sdpa", dtype=getattr(torch, sizes.dtype))
    model.to(device).eval().requires_grad_(False)
    return model.model, model.lm_head, model.model.embed_tokens


def _suffixes(sizes: Sizes, b: int, seed: int = 1) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    lens = [sizes.suffix_lens[i % len(sizes.suffix_lens)] for i in range(b)]
    return [torch.randint(1, sizes.vocab, (n,), generator=g).tolist() for n in lens]


def measure(device: str | torch.device = "cpu", sizes: Sizes | None = None, log=lambda msg: None,
            parts=None, check_parts=None) -> dict:
    """Old vs new decode, each batch size, one process: seconds, KV bytes held, peak bytes.

    parts: (decoder, lm_head, embeddings) of an LM already on `device`, used instead of building
    a random one (the GPU benchmark passes its InternVL's LLM, 15 GB it has built already);
    `sizes` must then describe it (its vocab bounds the random token ids).
    check_parts: the same LM in another dtype on which both paths' greedy tokens are compared
    (tokens_equal) instead of on the measured one. The GPU benchmark's --tiny run passes an fp32
    copy: a random 64-wide LM's bf16 logits hold near-ties, and which way bf16 rounding breaks one
    differs between the two paths (equal in exact arithmetic) with the seed and the thread count."""
    sizes = sizes or Sizes()
    device = torch.device(device)
    lm, head, embed = parts if parts is not None else build_lm(sizes, device)
    g = torch.Generator().manual_seed(2)
    prefix_ids = torch.randint(1, sizes.vocab, (1, sizes.prefix_len), generator=g).to(device)
    t0 = time.perf_counter()
    prefix = generation.prefill(lm, embed(prefix_ids))
    _sync(device)
    prefill_s = time.perf_counter() - t0
    never = {sizes.vocab + 1}  # no EOS: every row decodes max_new_tokens
    kw = dict(max_new_tokens=sizes.max_new_tokens, eos_ids=never, pad_id=0)
    paths = {"old": old_decode_batch, "new": generation.decode_batch}
    if check_parts is not None:
        c_lm, c_head, c_embed = check_parts
        c_prefix = generation.prefill(c_lm, c_embed(prefix_ids))
        tokens_dtype = str(c_head.weight.dtype).removeprefix("torch.")
    else:
        tokens_dtype = str(head.weight.dtype).removeprefix("torch.")
    for fn in paths.values():  # warm-up: first-call costs (registration, allocator) out of the figures
        fn(lm, head, embed, prefix, _suffixes(sizes, 2), **kw)

    rows = []
    for b in sizes.batches:
        suffixes = _suffixes(sizes, b)
        row: dict = {"batch": b, "suffix_tokens": [len(s) for s in suffixes]}
        tokens = {}
        for name, fn in paths.items():
            stats: dict = {}
            peak = peak_extra_bytes(lambda: tokens.__setitem__(name, fn(lm, head, embed, prefix, suffixes, stats=stats, **kw)), device)  # noqa: B023  # called at once
            times = []
            for _ in range(sizes.repeats):
                _sync(device)
                t0 = time.perf_counter()
                fn(lm, head, embed, prefix, suffixes, **kw)
                _sync(device)
                times.append(time.perf_counter() - t0)
            held = stats["prefix_kv_bytes"] + stats.get("suffix_kv_bytes", 0) + stats.get("copied_kv_bytes", 0)
            row[name] = {"s": round(min(times), 6), "all_s": [round(t, 6) for t in times],
                         "kv_bytes_held": held, "peak_extra_bytes": peak, **stats}  # fmt: skip
            log(f"batch {b:3d} {name}: {min(times):.3f} s, KV held {held / 2**20:.1f} MiB, "
                f"peak +{(peak or 0) / 2**20:.1f} MiB")  # fmt: skip
        if check_parts is not None:
            tokens = {name: fn(c_lm, c_head, c_embed, c_prefix, suffixes, **kw) for name, fn in paths.items()}
        row["tokens_equal"] = tokens["old"] == tokens["new"]
        row["ratios_old_vs_new"] = {
            "time": _ratio(row["old"]["s"], row["new"]["s"]),
            "kv_bytes_held": _ratio(row["old"]["kv_bytes_held"], row["new"]["kv_bytes_held"]),
            "peak_extra_bytes": _ratio(row["old"]["peak_extra_bytes"], row["new"]["peak_extra_bytes"]),
        }
        rows.append(row)
    return {
        "device": str(device),
        "sizes": asdict(sizes),
        "prefill_s": round(prefill_s, 4),
        "prefix_kv_bytes": generation.kv_bytes(prefix.cache),
        "tokens_compared_in": tokens_dtype,
        "memory_method": _method(device),
        "batches": rows,
        "summary": _summary(rows),
    }


def _ratio(a, b):
    return None if a is None or not b else float(f"{a / b:.4g}")


def _method(device) -> str:
    if device.type == "cuda":
        return "torch.cuda.max_memory_allocated after reset_peak_memory_stats, minus memory_allocated before"
    if _cpu_peak_supported():
        return "CPU: mallopt(M_MMAP_THRESHOLD=64KiB); VmHWM after the call (reset via /proc/self/clear_refs) minus VmRSS before"
    return "unavailable on this platform (KV bytes held only)"


def _summary(rows: list[dict]) -> dict:
    """How each path's memory grows with the batch: bytes per extra row (least-squares slope)."""
    def slope(name, key):
        pts = [(r["batch"], r[name][key]) for r in rows if r[name][key] is not None]
        if len(pts) < 2:
            return None
        mx = sum(x for x, _ in pts) / len(pts)
        my = sum(y for _, y in pts) / len(pts)
        return round(sum((x - mx) * (y - my) for x, y in pts) / sum((x - mx) ** 2 for x, _ in pts))

    return {
        f"{name}_{key}_per_row": slope(name, key)
        for name in ("old", "new")
        for key in ("kv_bytes_held", "peak_extra_bytes")
    } | {"tokens_equal_everywhere": all(r["tokens_equal"] for r in rows)}


# ----------------------------------------------------------------------------------- report
def markdown(res: dict) -> str:
    s = res["sizes"]
    mib = lambda x: "n/a" if x is None else f"{x / 2**20:.1f}"  # noqa: E731
    lines = [
        "# Decode: shared prefix vs deep copy + repeat",
        "",
        f"{res['device']}, random Qwen2-like LM: hidden {s['hidden']}, {s['layers']} layers, {s['heads']} query / "
        f"{s['kv_heads']} KV heads, {s['dtype']}; prefix {s['prefix_len']} tokens "
        f"(KV {mib(res['prefix_kv_bytes'])} MiB); suffixes {s['suffix_lens']} tokens cycled over rows; "
        f"{s['max_new_tokens']} new tokens. Time: fastest of {s['repeats']}. Memory: {res['memory_method']}.",
        "",
        "| batch | old s | new s | time old/new | old KV MiB | new KV MiB | KV old/new | old peak MiB | new peak MiB | peak old/new | same tokens |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---:|",
    ]
    for r in res["batches"]:
        o, n, q = r["old"], r["new"], r["ratios_old_vs_new"]
        lines.append(
            f"| {r['batch']} | {o['s']:.3f} | {n['s']:.3f} | {q['time']} | {mib(o['kv_bytes_held'])} | "
            f"{mib(n['kv_bytes_held'])} | {q['kv_bytes_held']} | {mib(o['peak_extra_bytes'])} | "
            f"{mib(n['peak_extra_bytes'])} | {q['peak_extra_bytes']} | {'yes' if r['tokens_equal'] else 'NO'} |"
        )
    sm = res["summary"]
    lines += [
        "",
        "Growth per extra row (least-squares slope over the batch sizes): KV held "
        f"old {mib(sm['old_kv_bytes_held_per_row'])} MiB vs new {mib(sm['new_kv_bytes_held_per_row'])} MiB; "
        f"peak old {mib(sm['old_peak_extra_bytes_per_row'])} MiB vs new {mib(sm['new_peak_extra_bytes_per_row'])} MiB.",
        "",
    ]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="toy sizes (smoke run)")
    ap.add_argument("--full-size", action="store_true", help="Qwen2-7B sizes, bf16 (a GPU: --device cuda)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1: a shared 2-core machine)")
    ap.add_argument("--out", default=str(RESULTS / "decode.json"))
    ap.add_argument("--md", default=None, help="markdown (default: --out with .md)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    _cpu_peak_supported()  # before the big allocations, so the allocator settings hold for all of them
    sizes = QUICK if args.quick else FULL_SIZE if args.full_size else Sizes()
    res = {"machine": machine_info(), "mode": "quick" if args.quick else "full-size" if args.full_size else "mid-size"}
    res.update(measure(args.device, sizes, log=lambda m: print(m, flush=True)))
    write_results(args.out, res, markdown(res), args.md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
