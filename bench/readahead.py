"""Training's feature reads off the critical path: step time with and without read-ahead, and how
long each step waits for its features, with real-size cache entries.

    python -m bench.readahead            # 6 entries of 32 frames (~247 MB each), 12 steps
    python -m bench.readahead --quick    # smoke run (the test's): small entries, 4 steps

Entries are built as `bench/cache_io.py` builds a realistic one (VGGT patch + camera tokens,
InternViT features in bf16, pose in fp32: ~247 MB at 32 frames) and written through the feature
cache; every read is the training loop's own (`training.feed.cache_reader`: the store's full
verification on an entry's first read, the tensor checksums skipped on later ones, then
EncoderOutputs), driven by the loop's own `StepFeed` over a `StepPlan` of the
defaults' kind (packs of <= 4 questions, distinct scenes per step). The scenes' entries are read
once before timing, so reads come from a warm page cache (the common case on a training node: the
cache is read every epoch).

A step's compute is a stand-in: `compute_s` seconds of waiting (a GPU step: the CPU thread waits
for the device, which is what lets a reader thread run), the same in both modes. Step time = from
asking for the step's features to the end of its compute; wait = the part spent waiting for
features. Warm = steps after the first (the first step's features cannot be read ahead of it).

Writes bench/results/readahead.json and readahead.md.
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.common import machine_info, write_results

RESULTS = Path(__file__).resolve().parent / "results"
FINGERPRINT = "bench-readahead"


@dataclass
class Sizes:
    scale: float = 1.0  # of a 32-frame entry
    entries: int = 6  # distinct cache entries (scenes)
    questions: int = 8  # per scene
    batch: int = 8  # questions per step: 2 packs of 4, so 2 scenes read per step
    steps: int = 12
    # a step's compute (stand-in): ~2x this loaded box's reading of the step's 2 scenes. A real 8B
    # step is far longer than its reads: 16 packs of ~8,700 tokens are ~8 PFLOP of forward + backward
    # (~20 s on an H100) against 16 x 247 MB read at ~3 GB/s warm (~1.3 s, bench/results/cache_io.json)
    compute_s: float = 2.0


QUICK = Sizes(scale=1 / 32, entries=4, questions=8, batch=8, steps=4, compute_s=0.05)


def build_cache(root: Path, sizes: Sizes) -> tuple[object, list[str], int]:
    """A feature cache of `entries` realistic entries; (cache, keys, bytes of tensors per entry)."""
    from bench.cache_io import make_entry
    from spacemind_cli.cache import FeatureCache

    cache = FeatureCache(root)
    keys = []
    nbytes = 0
    for i in range(sizes.entries):
        meta, tensors = make_entry(sizes.scale, seed=i)
        key = hashlib.sha256(f"scene-{i}".encode()).hexdigest()
        cache.put(key, meta, tensors, fingerprint=FINGERPRINT, describe={"bench": "readahead"})
        nbytes = sum(t.numel() * t.element_size() for t in tensors.values())
        keys.append(key)
    return cache, keys, nbytes


def run(cache, keys: list[str], sizes: Sizes, ahead: int) -> dict:
    from spacemind_cli.training.feed import StepFeed, cache_reader
    from spacemind_cli.training.schedule import StepPlan

    by_scene = {k: range(i * sizes.questions, (i + 1) * sizes.questions) for i, k in enumerate(keys)}
    plan = StepPlan(by_scene, seed=0, questions_per_pack=4, batch_size=sizes.batch, epochs=1000)
    read = cache_reader(cache, FINGERPRINT)
    steps = []
    with StepFeed(plan, range(sizes.steps), 0, 1, read, ahead=ahead) as feed:
        for data in feed:
            t_asked = time.perf_counter() - data.wait_s
            time.sleep(sizes.compute_s)  # the step's compute
            steps.append({"step_s": time.perf_counter() - t_asked, "wait_s": data.wait_s, "read_s": data.read_s,
                          "scenes": len(data.features)})
            del data
    warm = steps[1:]
    return {
        "ahead": ahead,
        "step_s_warm_mean": round(statistics.mean(s["step_s"] for s in warm), 4),
        "wait_s_warm_mean": round(statistics.mean(s["wait_s"] for s in warm), 4),
        "wait_s_warm_max": round(max(s["wait_s"] for s in warm), 4),
        "wait_s_first": round(steps[0]["wait_s"], 4),
        "read_s_mean": round(statistics.mean(s["read_s"] for s in steps), 4),
        "scenes_per_step": round(statistics.mean(s["scenes"] for s in steps), 2),
        "total_s": round(sum(s["step_s"] for s in steps), 3),
    }


def measure(sizes: Sizes | None = None, log=lambda msg: None) -> dict:
    sizes = sizes or Sizes()
    with tempfile.TemporaryDirectory(prefix="bench-readahead-") as tmp:
        cache, keys, nbytes = build_cache(Path(tmp) / "cache", sizes)
        from spacemind_cli.training.feed import cache_reader

        read = cache_reader(cache, FINGERPRINT)
        t0 = time.perf_counter()
        for k in keys:  # warm the page cache, and time a plain read
            read(k)
        read_one = (time.perf_counter() - t0) / len(keys)
        log(f"{len(keys)} entries of {nbytes / 1e6:.0f} MB; a warm read {read_one:.3f} s")
        runs = {}
        for name, ahead in (("synchronous", 0), ("read_ahead", 1)):
            runs[name] = run(cache, keys, sizes, ahead)
            log(f"{name}: {runs[name]}")
    s, r = runs["synchronous"], runs["read_ahead"]
    return {
        "sizes": asdict(sizes),
        "entry_mb": round(nbytes / 1e6, 1),
        "warm_read_s_per_entry": round(read_one, 4),
        "runs": runs,
        "ratios_synchronous_vs_read_ahead": {"step_s": round(s["step_s_warm_mean"] / r["step_s_warm_mean"], 3)},
    }


def markdown(res: dict) -> str:
    z, s, r = res["sizes"], res["runs"]["synchronous"], res["runs"]["read_ahead"]
    rows = [f"| {name} | {x['step_s_warm_mean']:.3f} | {x['wait_s_warm_mean']:.3f} | {x['wait_s_warm_max']:.3f} | "
            f"{x['wait_s_first']:.3f} | {x['read_s_mean']:.3f} |" for name, x in (("synchronous", s), ("read ahead (1 step)", r))]
    return "\n".join([
        "# Training: feature read-ahead",
        "",
        f"{z['entries']} cache entries of {res['entry_mb']} MB ({round(32 * z['scale'])} frames, built as "
        f"`bench/cache_io.py` does), read warm through the training loop's reader (an entry's tensor checksums on its first read) and "
        f"`StepFeed`; steps of {z['batch']} questions in packs of <= 4 ({s['scenes_per_step']} scenes read per step), "
        f"{z['steps']} steps, each computing for {z['compute_s']} s (a stand-in for the GPU step: the CPU thread waits). "
        f"A warm read of one entry: {res['warm_read_s_per_entry']:.3f} s.",
        "",
        "| | step s (warm mean) | waits for data s (warm mean) | wait max | first step's wait | reading s per step |",
        "|---|---:|---:|---:|---:|---:|",
        *rows,
        "",
        f"Step time synchronous / read ahead: {res['ratios_synchronous_vs_read_ahead']['step_s']}x. With read-ahead a "
        "step waits for data only when reading its scenes takes longer than the step before it computes.",
        "",
    ])  # fmt: skip


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small entries, 4 steps (smoke run)")
    ap.add_argument("--out", default=str(RESULTS / "readahead.json"))
    ap.add_argument("--md", default=None, help="markdown (default: --out with .md)")
    args = ap.parse_args(argv)
    res = {"machine": machine_info(), "mode": "quick" if args.quick else "full"}
    res.update(measure(QUICK if args.quick else Sizes(), log=lambda m: print(m, flush=True)))
    write_results(args.out, res, markdown(res), args.md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
