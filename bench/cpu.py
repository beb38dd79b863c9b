"""CPU benchmark of the spacemind jobs with a tiny checkpoint (this machine, no GPU).

    python -m bench.cpu            # full: 20 scenes x 18 questions, ~5-8 min on 2 cores
    python -m bench.cpu --quick    # smoke: 2 scenes x 3 questions (tests/test_bench.py)
    python -m bench.cpu --extract-only   # extract local vs Ray only (cpu_extract.json / .md)

Writes bench/results/cpu.json (every figure, machine info) and bench/results/cpu.md (a short
table). All comparisons are ratios between runs made in this same process, on this machine:

  extract   scenes/s of `pipelines.extract` through Ray and through the local executor (fresh
            cache each), and the feature cache's write/read MB/s at realistic tensor sizes (from
            `bench.cache_io.run`: one 32-frame VGGT-1B + InternViT entry, ~247 MB).
  answer    questions/s on the VSI-like workload (`bench/workload.py`):
              baseline     peer-style: each question decoded, preprocessed, encoded and answered
                           alone (SpaceMind.encode + SpaceMind.answer_alone, batch 1), measured on
                           --baseline-per-scene questions of every scene (each costs the same)
              local_cold   `pipelines.answer(executor="local")`, empty feature cache
              local_warm   the same job again (new output file), cache filled by local_cold
              ray_cold / ray_warm   the same through `executor="ray"` (its own cache)
            questions/s of a pipeline run = answered / wall time of the whole run() call
            (fingerprints, planning, model load, output included); ratios are vs the baseline.
  threads   every run (and the baseline) uses --threads torch threads (default 1: on a shared 2-core
            machine two threads stall on each other and the figures swing 5-10x from run to run).
  stages    where the time goes, from each run summary's `stage_s` (seconds summed over scenes;
            the local executor decodes the next scene while the model works on the current one,
            so stage seconds can add up to more than the wall time).

Ray is started once (`ray_init_s`) and shared by the Ray runs, as a long-lived cluster would be.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

from bench import common
from spacemind_cli.defaults import DEFAULTS

REPO = Path(__file__).resolve().parents[1]

RESULTS = REPO / "bench" / "results"

# (label, stage_s key) in pipeline order
STAGES = [
    ("scene hash", "hash_s"),
    ("decode video", "read_frames_s"),
    ("preprocess", "preprocess_s"),
    ("encode", "encode_s"),
    ("cache write", "cache_write_s"),
    ("cache read", "cache_read_s"),
    ("fuse", "fuse_s"),
    ("prefill", "prefill_s"),
    ("generate tokens", "generate_s"),
    ("answer alone (fuse + full prefill + generate)", "answer_alone_s"),
]


def _r(x, n=6):
    return None if x is None else round(float(x), n)


def _ratio(a, b):
    return None if a is None or not b else float(f"{a / b:.5g}")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def machine_info() -> dict:
    """bench.common's machine info, and the versions and sizes this benchmark also depends on."""
    import pyarrow

    info = common.machine_info() | {"processor": platform.processor() or None, "pyarrow": pyarrow.__version__}
    try:
        import ray

        info["ray"] = ray.__version__
    except ImportError:
        info["ray"] = None
    try:
        import psutil

        info["memory_gib"] = round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:
        pass
    return info


def stage_table(stage_s: dict, wall: float | None) -> dict:
    total = sum(v for _, k in STAGES for v in [stage_s.get(k)] if v)
    out = {}
    for label, key in STAGES:
        v = stage_s.get(key)
        if v:
            out[label] = {"s": _r(v, 4), "share": _r(v / total, 4) if total else None}
    return {"stages": out, "stage_sum_s": _r(total, 4), "wall_s": _r(wall, 4)}


# ---------------------------------------------------------------- runs


def _job(ckpt: Path, executor: str, threads: int, verify_cached: bool = False, **option_fields):
    """What `pipelines.answer` / `pipelines.extract` do (an executor + settings), kept open by the
    caller, with an explicit torch thread count."""
    from pipelines import RunOptions, make_executor
    from spacemind_cli.jobs.settings import make_settings

    options = RunOptions(ckpt, executor=executor, cpu_threads=threads, **option_fields)
    ex = make_executor(options)
    return ex, make_settings(options, use_gpu=ex.uses_gpu(), verify_cached=verify_cached)


def run_extract(workload, ckpt: Path, cache: Path, executor: str, threads: int) -> dict:
    from spacemind_cli.jobs.extract import run_extract as job

    t0 = time.perf_counter()
    ex, settings = _job(ckpt, executor, threads, verify_cached=True, cache=str(cache))
    try:
        s = job(workload.scenes_root, settings=settings, executor=ex)
    finally:
        ex.close()
    wall = time.perf_counter() - t0
    return {
        "executor": executor, "route": s.get("route"), "scenes": s["scenes"], "encoded": s["encoded"], "failed": s["failed"],
        "wall_s": _r(wall), "scenes_per_s": _r(s["scenes"] / wall), "summary_scenes_per_s": s["scenes_per_s"],
        "summary_elapsed_s": s["elapsed_s"],
    }


def run_answer(workload, ckpt: Path, out: Path, cache: Path, executor: str, batch_size: int, threads: int) -> dict:
    from spacemind_cli.jobs.answer import run_answer as job

    t0 = time.perf_counter()
    ex, settings = _job(ckpt, executor, threads, cache=str(cache), batch_size=batch_size, max_new_tokens=16)
    try:
        s = job(workload.scenes_root, output=out, settings=settings, executor=ex, questions=str(workload.questions),
                overwrite=True)
    finally:
        ex.close()
    wall = time.perf_counter() - t0
    return {
        "executor": executor, "answered": s["answered"], "failed": s["failed"], "cache": s["cache"],
        "wall_s": _r(wall), "questions_per_s": _r(s["answered"] / wall) if wall > 0 else None,
        "summary_questions_per_s": s["questions_per_s"], "summary_work_s": s["work_s"],
        "model_load_s": _r(sum((a.get("model_load_s") or 0) for a in s.get("actors") or []), 4),
        "stage_s": s["stage_s"], "output": str(out),
    }


def run_baseline(workload, ckpt: Path, per_scene: int, threads: int) -> dict:
    """Peer-style: every question on its own (decode, preprocess, encode, answer alone, batch 1)."""
    import torch

    from spacemind_cli.jobs.plan import plan_answer
    from spacemind_cli.jobs.settings import RunOptions, make_settings
    from spacemind_cli.models.preprocess import PreprocessConfig, prepare
    from spacemind_cli.models.spacemind import SpaceMind
    from spacemind_cli.questions import read_questions
    from spacemind_cli.runtime import use_torch_threads
    from spacemind_cli.scenes import load_clip

    settings = make_settings(RunOptions(ckpt, cpu_threads=threads))
    use_torch_threads(settings.cpu_threads)  # what the pipeline's model stage sets
    cfg = PreprocessConfig.from_dict(settings.preprocess)
    t0 = time.perf_counter()
    model = SpaceMind.from_pretrained(ckpt, device="cpu", dtype=torch.float32)
    load_s = time.perf_counter() - t0
    qset = read_questions(workload.questions)
    plan = plan_answer(workload.scenes_root, qset.questions)
    stage = {"read_frames_s": 0.0, "preprocess_s": 0.0, "encode_s": 0.0, "answer_alone_s": 0.0}
    answers: dict[str, str] = {}
    n = 0
    for item in plan.items:
        scene = item.scene
        for q in item.questions[:per_scene]:
            t0 = time.perf_counter()
            clip = load_clip(scene, settings.frame_sampling)
            t1 = time.perf_counter()
            prepared = prepare(clip.frames, cfg)
            t2 = time.perf_counter()
            enc = model.encode(prepared)
            t3 = time.perf_counter()
            text = model.answer_alone(enc, q.prompt, max_new_tokens=settings.max_new_tokens)
            t4 = time.perf_counter()
            stage["read_frames_s"] += t1 - t0
            stage["preprocess_s"] += t2 - t1
            stage["encode_s"] += t3 - t2
            stage["answer_alone_s"] += t4 - t3
            answers[str(qset.questions[q.index].row.get("id"))] = text
            n += 1
    total = sum(stage.values())
    return {
        "what": "per question: decode + preprocess + SpaceMind.encode + SpaceMind.answer_alone (batch 1)",
        "questions_measured": n, "per_scene": per_scene, "model_load_s": _r(load_s, 4),
        "measured_s": _r(total), "per_question_s": _r(total / n), "questions_per_s": _r(n / total),
        "stage_s": {k: _r(v, 4) for k, v in stage.items()}, "answers": answers,
    }


def best_of(n: int, key: str, fn) -> dict:
    """Run fn(i) n times; keep the fastest run (a shared machine only ever slows a run down), and
    every run's rate."""
    runs = []
    for i in range(n):
        runs.append(fn(i))
        log(f"  {key} {runs[-1][key]:.3f}")
    best = max(runs, key=lambda r: r[key])
    return {**best, "repeats": n, f"all_{key}": [r[key] for r in runs]}


def compare_answers(baseline: dict, output: Path) -> dict:
    """Does the shared-prefix batched path give the baseline's answers? (it must: same greedy tokens)"""
    preds = {}
    for line in output.read_text().splitlines():
        row = json.loads(line)
        preds[str(row.get("id"))] = row.get("prediction")
    same = [preds.get(k) == v for k, v in baseline["answers"].items()]
    return {"compared": len(same), "equal": sum(same)}


def cache_io_summary(tmp: Path, scale: float, repeats: int) -> dict:
    from bench import cache_io

    t0 = time.perf_counter()
    res = cache_io.run(tmp, scale=scale, repeats=repeats)
    s, b = res["store"], res["baselines"]
    med = lambda d, m: d[m]["median"]  # noqa: E731
    return {
        "source": "bench.cache_io.run (store = spacemind_cli.cache.FeatureCache)",
        "scale": scale, "repeats": repeats, "seconds": _r(time.perf_counter() - t0, 2),
        "entry_tensor_mb": _r(res["entry"]["tensor_bytes"] / 1e6, 1),
        "entry_shapes": {k: v["shape"] for k, v in res["entry"]["tensors"].items()},
        "store_mbps": {m: med(s, m) for m in ("write_mbps", "read_cold_mbps", "read_warm_mbps", "verify_mbps")},
        "raw_file_mbps": {m: med(b["raw_file"], m) for m in ("write_mbps", "read_cold_mbps", "read_warm_mbps")},
        "torch_save_mbps": {m: med(b["torch_save"], m) for m in ("write_mbps", "read_cold_mbps", "read_warm_mbps")},
        "ratios": {k: v for k, v in res["ratios"].items() if k.endswith(("_vs_raw_file", "_vs_torch_save"))},
    }


def extract_local_and_ray(wl, ckpt: Path, work: Path, reps: int, threads: int) -> tuple[dict, float]:
    """`--extract-only`: local and Ray runs taken in turn (local, Ray, local, Ray, ...), each into a
    fresh cache, so that a shared machine's load swings fall on both alike; Ray started once
    before them (not counted, as in the full run). Returns ({"local": .., "ray": ..}, ray_init_s)."""
    from pipelines import ray_runtime

    log("ray: starting an embedded instance (shared by the Ray runs)")
    t0 = time.perf_counter()
    started = ray_runtime.connect(None)
    init_s = _r(time.perf_counter() - t0, 3)
    runs: dict[str, list] = {"local": [], "ray": []}
    try:
        for i in range(reps):
            for executor in ("local", "ray"):
                runs[executor].append(run_extract(wl, ckpt, work / f"cache_extract_{executor}_{i}", executor, threads))
                log(f"  extract {executor} {runs[executor][-1]['scenes_per_s']:.3f} scenes/s")
    finally:
        if started:
            ray_runtime.shutdown()
    out = {}
    for executor, rs in runs.items():
        best = max(rs, key=lambda r: r["scenes_per_s"])
        out[executor] = {**best, "repeats": reps, "all_scenes_per_s": [r["scenes_per_s"] for r in rs]}
    # The first Ray job of a driver finds Ray's worker processes cold (torch and transformers not
    # yet imported); later jobs find them warm: the first is its own figure, never hidden by the best.
    out["ray_first_job"] = {**runs["ray"][0], "what": "the first Ray job of this driver: pooled workers cold"}
    return out, init_s


def extract_markdown(res: dict) -> str:
    m, w, e = res["machine"], res["workload"], res["extract"]
    lines = [
        "# spacemind CPU benchmark, extract only (tiny checkpoint)",
        "",
        f"{m['date']}, {m['cpu_count']} CPUs ({m['machine']}), torch {m['torch']}, ray {m.get('ray')}, "
        f"{res.get('torch_threads')} torch thread(s) per model; load average {m['loadavg_start']} -> {m.get('loadavg_end')}.",
        f"{w['scenes']} scenes, {w['frames']} frames each, a fresh cache per run; local and Ray runs taken in turn in "
        f"one process, {res.get('repeats')} of each, the fastest reported (every rate in the .json); Ray started once "
        f"({res.get('ray_init_s')} s, not counted).",
        "",
        "| extract | scenes/s | wall s | all runs, scenes/s | route |",
        "|---|---:|---:|---|---|",
    ]
    for k in ("local", "ray"):
        x = e[k]
        lines.append(f"| {k} | {x['scenes_per_s']:.2f} | {x['wall_s']:.1f} | "
                     f"{', '.join(f'{v:.2f}' for v in x['all_scenes_per_s'])} | {x.get('route') or ''} |")
    first, r = e.get("ray_first_job"), res["ratios"]
    lines += ["", f"Ray vs local: {r['extract_ray_vs_local']}x (fastest runs)."]
    if first:
        lines.append(f"The first Ray run, the driver's first Ray job, whose pooled worker processes were still cold "
                     f"(torch and transformers imported during the run; the local runs share this process, "
                     f"which imported them before any run): {first['scenes_per_s']:.2f} scenes/s, "
                     f"{r['extract_ray_first_job_vs_local']}x the fastest local run.")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- report


def build_ratios(res: dict) -> dict:
    a = res["answer"]
    qps = {k: (a.get(k) or {}).get("questions_per_s") for k in ("baseline", "local_cold", "local_warm", "ray_cold", "ray_warm")}
    out = {f"{k}_vs_baseline": _ratio(qps[k], qps["baseline"]) for k in ("local_cold", "local_warm", "ray_cold", "ray_warm")}
    out["local_warm_vs_local_cold"] = _ratio(qps["local_warm"], qps["local_cold"])
    out["ray_cold_vs_local_cold"] = _ratio(qps["ray_cold"], qps["local_cold"])
    out["ray_warm_vs_local_warm"] = _ratio(qps["ray_warm"], qps["local_warm"])
    e = res["extract"]
    out["extract_ray_vs_local"] = _ratio((e.get("ray") or {}).get("scenes_per_s"), (e.get("local") or {}).get("scenes_per_s"))
    return out


def markdown(res: dict) -> str:
    m, w, a, r = res["machine"], res["workload"], res["answer"], res["ratios"]
    lines = [
        "# spacemind CPU benchmark (tiny checkpoint)",
        "",
        f"{m['date']}, {m['cpu_count']} CPUs ({m['machine']}), torch {m['torch']}, transformers {m['transformers']}, "
        f"ray {m.get('ray')}, {res.get('torch_threads')} torch thread(s) per model; load average {m['loadavg_start']} -> {m.get('loadavg_end')} (shared machine: figures are noisy).",
        f"Workload: {w['scenes']} scenes x {w['questions_per_scene']:g} questions = {w['questions']} questions, "
        f"{w['frames']} frames per scene, decode batch {w['batch_size']}. {w['how']}. "
        f"Each run done {res.get('repeats')}x, the fastest reported (all rates in cpu.json).",
        "",
        "| run | questions/s | vs baseline | wall s |",
        "|---|---:|---:|---:|",
    ]
    labels = {"baseline": "baseline (per question, batch 1)", "local_cold": "spacemind local, cold cache",
              "local_warm": "spacemind local, warm cache", "ray_cold": "spacemind Ray, cold cache",
              "ray_warm": "spacemind Ray, warm cache"}
    for k, label in labels.items():
        x = a.get(k)
        if not x:
            continue
        vs = "1.00" if k == "baseline" else f"{r.get(f'{k}_vs_baseline') or 0:.2f}"
        wall = x.get("wall_s") if k != "baseline" else x.get("measured_s")
        lines.append(f"| {label} | {x['questions_per_s']:.2f} | {vs}x | {wall:.1f} |")
    bq = a.get("baseline", {})
    lines += ["", f"Baseline measured on {bq.get('questions_measured')} questions ({bq.get('per_scene')} per scene). "
              f"Ray vs local: cold {r.get('ray_cold_vs_local_cold')}x, warm {r.get('ray_warm_vs_local_warm')}x "
              f"(Ray started once: {res.get('ray_init_s')} s, not counted). "
              f"Answers equal to the baseline's: {res.get('answers_equal_baseline')}.", ""]
    e = res["extract"]
    lines += ["| extract | scenes/s | wall s |", "|---|---:|---:|"]
    for k in ("local", "ray"):
        if e.get(k):
            lines.append(f"| {k} | {e[k]['scenes_per_s']:.2f} | {e[k]['wall_s']:.1f} |")
    if r.get("extract_ray_vs_local"):
        ray = e.get("ray") or {}
        first = (ray.get("all_scenes_per_s") or [None])[0]
        lines += ["", f"Extract, Ray vs local: {r['extract_ray_vs_local']}x, fastest runs (route: {ray.get('route')}). "
                  f"The first Ray run, this driver's first Ray job, found Ray's pooled worker processes cold "
                  f"(torch and transformers not yet imported): {first} scenes/s, "
                  f"{_ratio(first, e['local']['scenes_per_s'])}x."]
    c = res.get("cache_io") or {}
    if c.get("store_mbps"):
        sm, rf = c["store_mbps"], c["raw_file_mbps"]
        lines += ["", f"Feature cache, one {c['entry_tensor_mb']} MB entry (scale {c['scale']}): write "
                  f"{sm['write_mbps']:.0f} MB/s, read cold-ish {sm['read_cold_mbps']:.0f} MB/s, warm "
                  f"{sm['read_warm_mbps']:.0f} MB/s (raw file: {rf['write_mbps']:.0f} / {rf['read_cold_mbps']:.0f} / "
                  f"{rf['read_warm_mbps']:.0f} MB/s)."]
    lines += ["", "Where the time goes (share of the summed stage seconds):", ""]
    runs = [k for k in ("baseline", "local_cold", "local_warm", "ray_cold", "ray_warm") if k in res["where_time_goes"]]
    lines += ["| stage | " + " | ".join(runs) + " |", "|---|" + "---:|" * len(runs)]
    for label, _ in STAGES:
        cells = []
        for k in runs:
            st = res["where_time_goes"][k]["stages"].get(label)
            cells.append(f"{st['s']:.2f} s ({st['share']:.0%})" if st else "")
        if any(cells):
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append("| wall | " + " | ".join(f"{res['where_time_goes'][k]['wall_s']:.2f} s" for k in runs) + " |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- main


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: 2 scenes x 3 questions, tiny cache_io entry")
    ap.add_argument("--out", default=None, help="default bench/results/cpu.json (cpu_extract.json with --extract-only)")
    ap.add_argument("--md", default=None, help="markdown table (default: --out with .md)")
    ap.add_argument("--scenes", type=int, default=None, help="default 20 (2 with --quick)")
    ap.add_argument("--questions-per-scene", type=int, default=None, help="default 18 (3 with --quick)")
    ap.add_argument("--baseline-per-scene", type=int, default=None, help="questions per scene for the baseline (default 3; all with --quick)")
    ap.add_argument("--batch-size", type=int, default=DEFAULTS.decode_batch,
                    help="decode batch of the pipeline runs (the CLI default)")
    ap.add_argument("--cache-io-scale", type=float, default=None, help="cache_io entry scale (default 1.0 = 32 frames; 0.02 with --quick)")
    ap.add_argument("--cache-io-repeats", type=int, default=None, help="default 3 (1 with --quick)")
    ap.add_argument("--repeats", type=int, default=None,
                    help="runs of each job and of the baseline; the fastest is reported (default 2; 1 with --quick)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads for every run (JobSettings.cpu_threads); 0 = os.cpu_count(), the jobs' default. "
                    "Default 1: on a shared 2-core machine 2 threads stall on each other (5-10x swings run to run)")
    ap.add_argument("--no-ray", action="store_true", help="skip the Ray runs")
    ap.add_argument("--extract-only", action="store_true",
                    help="only extract, local and Ray (no cache_io, answer or baseline); default --out cpu_extract.json")
    ap.add_argument("--workdir", default=None, help="where scenes, caches and outputs go (default: a temp dir, removed)")
    args = ap.parse_args(argv)
    quick = args.quick
    threads = args.threads or os.cpu_count() or 1
    n_scenes = args.scenes or (2 if quick else 20)
    per_scene = args.questions_per_scene or (3 if quick else 18)
    base_per_scene = args.baseline_per_scene or (per_scene if quick else 3)
    cio_scale = args.cache_io_scale if args.cache_io_scale is not None else (0.02 if quick else 1.0)
    cio_repeats = args.cache_io_repeats or (1 if quick else 3)
    reps = args.repeats or (1 if quick else 2)
    extract_only = args.extract_only
    out = Path(args.out or RESULTS / ("cpu_extract.json" if extract_only else "cpu.json"))

    work = Path(args.workdir or tempfile.mkdtemp(prefix="spacemind-cpu-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    # a fresh fingerprint memo: the cold runs hash the scenes, as a first run would
    os.environ["SPACEMIND_HOME"] = str(work / "home")
    t_all = time.perf_counter()
    res: dict = {"machine": machine_info(), "mode": ("quick" if quick else "full") + (" extract-only" if extract_only else ""),
                 "torch_threads": threads,
                 "repeats": reps}
    try:
        from bench.workload import build
        from spacemind_cli.models.tiny import write_tiny_checkpoint

        log(f"workload: {n_scenes} scenes x {per_scene} questions in {work}")
        wl = build(work / "workload", n_scenes, per_scene)
        res["workload"] = {**wl.describe(), "frames": 32, "batch_size": args.batch_size}
        t0 = time.perf_counter()
        ckpt = write_tiny_checkpoint(work / "tiny", seed=0)
        res["checkpoint"] = {"what": "tiny random-weight SpaceMind (models/tiny.py, seed 0)", "write_s": _r(time.perf_counter() - t0, 3)}

        if extract_only:
            res["extract"], res["ray_init_s"] = extract_local_and_ray(wl, ckpt, work, reps, threads)
            e = res["extract"]
            res["ratios"] = {"extract_ray_vs_local": _ratio(e["ray"]["scenes_per_s"], e["local"]["scenes_per_s"]),
                             "extract_ray_first_job_vs_local": _ratio(e["ray_first_job"]["scenes_per_s"],
                                                                      e["local"]["scenes_per_s"])}
            return 0
        log(f"cache_io: scale {cio_scale}, {cio_repeats} repeat(s)")
        res["cache_io"] = cache_io_summary(work / "cache_io", cio_scale, cio_repeats)
        shutil.rmtree(work / "cache_io", ignore_errors=True)

        res["extract"] = {}
        log("extract: local")
        res["extract"]["local"] = best_of(reps, "scenes_per_s", lambda i: run_extract(
            wl, ckpt, work / f"cache_extract_local_{i}", "local", threads))
        res["answer"] = {}
        log("answer: local, cold cache")
        res["answer"]["local_cold"] = best_of(reps, "questions_per_s", lambda i: run_answer(
            wl, ckpt, work / "out" / f"local_cold_{i}.jsonl", work / f"cache_local_{i}", "local", args.batch_size, threads))
        log("answer: local, warm cache")
        res["answer"]["local_warm"] = best_of(reps, "questions_per_s", lambda i: run_answer(
            wl, ckpt, work / "out" / f"local_warm_{i}.jsonl", work / "cache_local_0", "local", args.batch_size, threads))
        if not args.no_ray:
            from pipelines import ray_runtime

            log("ray: starting an embedded instance (shared by the Ray runs)")
            t0 = time.perf_counter()
            started = ray_runtime.connect(None)
            res["ray_init_s"] = _r(time.perf_counter() - t0, 3)
            try:
                log("extract: ray")
                res["extract"]["ray"] = best_of(reps, "scenes_per_s", lambda i: run_extract(
                    wl, ckpt, work / f"cache_extract_ray_{i}", "ray", threads))
                log("answer: ray, cold cache")
                res["answer"]["ray_cold"] = best_of(reps, "questions_per_s", lambda i: run_answer(
                    wl, ckpt, work / "out" / f"ray_cold_{i}.jsonl", work / f"cache_ray_{i}", "ray", args.batch_size, threads))
                log("answer: ray, warm cache")
                res["answer"]["ray_warm"] = best_of(reps, "questions_per_s", lambda i: run_answer(
                    wl, ckpt, work / "out" / f"ray_warm_{i}.jsonl", work / "cache_ray_0", "ray", args.batch_size, threads))
            finally:
                if started:
                    ray_runtime.shutdown()
        log(f"baseline: {base_per_scene} question(s) per scene, each alone")
        res["answer"]["baseline"] = best_of(reps, "questions_per_s", lambda i: run_baseline(wl, ckpt, base_per_scene, threads))
        res["answers_equal_baseline"] = compare_answers(res["answer"]["baseline"], Path(res["answer"]["local_cold"]["output"]))
        res["answer"]["baseline"].pop("answers")
        for k in ("local_cold", "local_warm", "ray_cold", "ray_warm"):
            if k in res["answer"]:
                res["answer"][k].pop("output")

        res["ratios"] = build_ratios(res)
        res["where_time_goes"] = {
            k: stage_table(v["stage_s"], v.get("wall_s") or v.get("measured_s")) for k, v in res["answer"].items()
        }
        res["where_time_goes"]["note"] = (
            "stage seconds summed over scenes (baseline: over the measured questions); the local executor "
            "overlaps the next scene's decode/preprocess with the model, so the stage sum can exceed the wall time"
        )
    finally:
        res["machine"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
        res["total_s"] = _r(time.perf_counter() - t_all, 2)
        common.write_json(out, res)  # on a failure too: what was measured so far
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
        if "ratios" in res:
            md_path = Path(args.md) if args.md else out.with_suffix(".md")
            text = extract_markdown(res) if extract_only else markdown(res)
            common.write_text(md_path, text)
            print(text)
            log(f"wrote {out} and {md_path} in {res['total_s']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
