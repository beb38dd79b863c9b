"""`python -m bench.gpu`: the arguments, the section loop and the JSON (see the package docstring)."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import sysconfig
import tempfile
import time
import traceback
from dataclasses import asdict
from pathlib import Path

import torch

from . import __doc__ as PACKAGE_DOC
from .build import VGGT_WEIGHTS, section_build
from .context import FULL, TINY, Ctx, Sizes, oom_line, rnd
from .decoding import section_decode
from .e2e import section_e2e
from .machine import section_env, section_micro
from .profiling import section_profile
from .targets import TARGETS, section_projection, section_targets
from .training import section_train
from .vggt import section_vggt

REPO = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO / "bench" / "results" / "gpu.json"

SECTIONS = [
    ("env", section_env),
    ("micro", section_micro),
    ("vggt", section_vggt),
    ("build", section_build),
    ("e2e", section_e2e),
    ("train", section_train),
    ("decode", section_decode),
    ("projection", section_projection),
    ("targets", section_targets),
    ("profile", section_profile),
]
ALWAYS = ("env", "projection", "targets")  # no device work: they run even past the time budget


def parse_args(argv=None):
    ap = argparse.ArgumentParser(prog="python -m bench.gpu", description=PACKAGE_DOC.splitlines()[0],
                                 epilog="See bench/README.md for what every figure means.")
    ap.add_argument("--out", default=None,
                    help="JSON to write (default bench/results/gpu.json; with --tiny a temp file)")
    ap.add_argument("--time-budget", type=float, default=450.0, help="seconds; later sections are skipped past it")
    ap.add_argument("--tiny", action="store_true", help="tiny architectures on the CPU (smoke test of every section)")
    ap.add_argument("--profile", action="store_true",
                    help="torch.profiler top ops for one VGGT call and one decode batch")
    ap.add_argument("--device", default=None, help="default: cuda (cpu with --tiny)")
    ap.add_argument("--sections", default=None, help="comma-separated subset of " + ",".join(n for n, _ in SECTIONS))
    ap.add_argument("--vggt-frames", default=None, help="comma-separated frame counts (default 8,16,32,64)")
    ap.add_argument("--scenes", type=int, default=None)
    ap.add_argument("--questions-per-scene", type=int, default=None)
    ap.add_argument("--frames", type=int, default=None, help="frames per scene in the end-to-end workload")
    ap.add_argument("--batch-size", type=int, default=None, help="decode batch (default 18: one batch per scene)")
    ap.add_argument("--baseline-questions", type=int, default=None)
    ap.add_argument("--max-new-tokens", type=int, default=None)
    ap.add_argument("--vggt-weights", choices=sorted(VGGT_WEIGHTS), default="fp32",
                    help="VGGT's weights in the end-to-end SpaceMind: fp32 (the library default, the reference's "
                    "precision) or half (the opt-in); the vggt section measures both either way")
    ap.add_argument("--peak-tflops", type=float, default=None, help="override the assumed dense bf16 peak")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch CPU threads (default: 1 with --tiny, else torch's)")
    ap.add_argument("--cache-dir", default=None, help="feature cache folder (default: a temp dir, removed after)")
    args = ap.parse_args(argv)
    if args.tiny and args.threads is None:
        args.threads = 1  # toy ops: more threads only add synchronisation stalls on a shared CPU
    if args.out is None:
        args.out = str(Path(tempfile.gettempdir()) / "spacemind-gpu-tiny.json") if args.tiny else str(DEFAULT_OUT)
    return args


def sizes_for(args) -> Sizes:
    sizes = Sizes(**asdict(TINY if args.tiny else FULL))
    for name in ("scenes", "questions_per_scene", "frames", "batch_size", "baseline_questions", "max_new_tokens"):
        if getattr(args, name) is not None:
            setattr(sizes, name, getattr(args, name))
    if args.vggt_frames:
        sizes.vggt_frames = [int(x) for x in args.vggt_frames.split(",")]
    return sizes


def write(ctx: Ctx) -> None:
    """The results so far, atomically (a killed run leaves the last complete JSON)."""
    from spacemind_cli.files import atomic_write_text

    r = ctx.results
    r["errors"] = {k: v["error"] for k, v in r.items() if isinstance(v, dict) and "error" in v}
    r["skipped"] = {k: v["skipped"] for k, v in r.items() if isinstance(v, dict) and "skipped" in v}
    r["elapsed_s"] = rnd(ctx.elapsed(), 2)
    text = json.dumps(r, indent=2, default=str) + "\n"
    atomic_write_text(Path(ctx.args.out), lambda fh: fh.write(text), durable=False)


def without_machine_paths(text: str) -> str:
    """A traceback with the repository and Python install folders shortened (results travel)."""
    for folder, label in [(REPO, ""), *((Path(p), "<python>/") for p in
                                         {sysconfig.get_paths()[k] for k in ("purelib", "platlib", "stdlib")})]:
        text = text.replace(f"{folder}/", label)
    return text


def run_section(ctx: Ctx, name: str, fn) -> None:
    t0 = time.perf_counter()
    ctx.log(f"== {name}")
    try:
        ctx.results[name] = fn(ctx)
    except torch.cuda.OutOfMemoryError as exc:
        ctx.cleanup()
        ctx.results[name] = {"error": oom_line(exc)}
    except Exception as exc:  # record and go on with the next section
        ctx.cleanup()
        ctx.results[name] = {"error": without_machine_paths(f"{type(exc).__name__}: {str(exc)[:500]}"),
                             "traceback": without_machine_paths(traceback.format_exc()[-3000:])}
    ctx.results[name]["section_s"] = rnd(time.perf_counter() - t0, 2)
    if "error" in ctx.results[name]:
        ctx.log(f"{name}: ERROR {ctx.results[name]['error']}")


def main(argv=None) -> int:
    args = parse_args(argv)
    sizes = sizes_for(args)
    device = torch.device(args.device or ("cpu" if args.tiny else "cuda"))
    if device.type == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: run with --tiny on a CPU", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = torch.bfloat16  # --tiny too: the same dtypes as on the GPU
    ctx = Ctx(args, sizes, device, dtype)
    ctx.results["sizes"] = asdict(sizes)
    ctx.results["targets_spec"] = TARGETS
    selected = set(args.sections.split(",")) if args.sections else {n for n, _ in SECTIONS}
    if not args.profile:
        selected.discard("profile")
    ctx.order = [n for n, _ in SECTIONS if n in selected]
    torch.manual_seed(0)
    try:
        for name, fn in SECTIONS:
            if name not in selected:
                ctx.results[name] = {"skipped": "run with --profile" if name == "profile" else "not selected"}
            elif name not in ALWAYS and ctx.left() <= 0:
                ctx.results[name] = {"skipped": f"time budget of {ctx.budget:.0f}s used up"}
                ctx.log(f"{name}: skipped (time budget)")
            else:
                run_section(ctx, name, fn)
            write(ctx)
    finally:
        if ctx.tmp is not None and not args.cache_dir:
            shutil.rmtree(ctx.tmp, ignore_errors=True)
        if ctx.models_dir is not None:
            shutil.rmtree(ctx.models_dir, ignore_errors=True)
        write(ctx)
    t = ctx.results.get("targets") or {}
    ctx.log(f"wrote {args.out}; targets met {t.get('met')}, missed {t.get('missed')}; "
            f"errors {list(ctx.results['errors'])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
