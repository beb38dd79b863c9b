"""What every section shares: the sizes of a run, the run's context (`Ctx`: device, dtype, time
budget, results so far, the models built by earlier sections), peak-memory measurement (`Mem`),
repeated timing (`time_calls`) and rounding/ratio helpers for the JSON."""

from __future__ import annotations

import gc
import math
import os
import threading
import time
from contextlib import nullcontext
from dataclasses import dataclass

import torch
from torch import nn

GIB = 2**30

# VSI-Bench: 5130 questions over 288 scenes; SpaceMind samples 32 frames per scene.
VSI_SCENES, VSI_QUESTIONS, VSI_FRAMES = 288, 5130, 32


@dataclass
class Sizes:
    vggt_frames: list[int]
    target_frames: int  # the VGGT size the targets are judged at (32 at full size)
    scenes: int
    questions_per_scene: int
    frames: int  # frames per scene in the end-to-end workload
    frame_hw: tuple[int, int]  # synthetic source frame size (ScanNet-like 480x640 at full size)
    batch_size: int
    baseline_questions: int
    max_new_tokens: int
    decode_batches: list[int]
    matmul_n: int
    reps: int
    video_frames: int  # frames of each scene's source video (the cold pass's loader samples `frames` of them)
    train_questions: int  # questions in the training section's scene (one packed sequence)
    train_separate: int  # separate samples measured at most (fewer when time is short)
    lora_rank: int  # LoRA rank of the training section (alpha = 2 x rank, as the paper's 256 / 512)
    memory_batches: list[int]  # the decode section's batch sizes (old copy + repeat vs shared prefix)
    memory_repeats: int


FULL = Sizes(
    vggt_frames=[8, 16, 32, 64], target_frames=32, scenes=8, questions_per_scene=18, frames=32,
    frame_hw=(480, 640), batch_size=18, baseline_questions=8, max_new_tokens=16,
    decode_batches=[1, 8, 18, 32], matmul_n=8192, reps=3, video_frames=128,
    train_questions=18, train_separate=18, lora_rank=256, memory_batches=[1, 2, 4, 8, 16], memory_repeats=2,
)
TINY = Sizes(
    vggt_frames=[2, 4, 8], target_frames=8, scenes=2, questions_per_scene=18, frames=8,
    frame_hw=(48, 64), batch_size=18, baseline_questions=3, max_new_tokens=8,
    decode_batches=[1, 4, 8], matmul_n=256, reps=2, video_frames=24,
    train_questions=18, train_separate=3, lora_rank=8, memory_batches=[1, 2, 4, 8, 16], memory_repeats=1,
)

# Seconds a section is expected to take at full size on an H100 (estimates, not measurements):
# an earlier section keeps this much of --time-budget for the selected sections after it.
SECTION_ESTIMATE_S = {"e2e": 150.0, "train": 90.0, "decode": 30.0, "profile": 20.0}


# ---------------------------------------------------------------- figures for the JSON


def rnd(x, n: int = 4):
    """n decimals, or at least 4 significant digits below 1 (tiny mode's figures are small: 2
    digits of 0.1066 GPU-hours read 0.11, 3% off the figures it was computed from)."""
    if x is None:
        return None
    if isinstance(x, float):
        if math.isnan(x) or math.isinf(x):
            return None
        if x and abs(x) < 1:
            return float(f"{x:.{max(n, 4)}g}")
        return round(x, n)
    return x


def ratio(a, b):
    if a is None or b is None or not b:
        return None
    return a / b


def mean(xs):
    xs = [x for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else None


def param_bytes(module: nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in module.parameters())


def param_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def oom_line(exc: BaseException, limit: int = 300) -> str:
    return f"OOM: {str(exc).splitlines()[0][:limit]}"


# ---------------------------------------------------------------- the run's context


class Ctx:
    """One benchmark run: its arguments and sizes, the device and compute dtype, the clock against
    --time-budget, the results so far, and what earlier sections built for later ones."""

    def __init__(self, args, sizes: Sizes, device: torch.device, dtype: torch.dtype):
        self.args = args
        self.sizes = sizes
        self.device = device
        self.dtype = dtype  # compute dtype (bf16, --tiny too)
        self.t_start = time.perf_counter()
        self.budget = float(args.time_budget)
        self.results: dict = {}
        self.vggt = None  # VGGT at the e2e precision (--vggt-weights) after the vggt section
        self.sm = None  # assembled SpaceMind (build section)
        self.tokenizer = None
        self.prefix = None  # one prefilled prefix (e2e warm pass), for decode scaling / profile
        self.prompts = None  # scene 0's prompts
        self.peak_tflops = None  # dense bf16 peak assumed (env), else the measured matmul rate (micro)
        self.hbm_tbps = None
        self.tmp = None  # the feature cache's temp folder, removed at the end unless --cache-dir
        self.models = None  # the random checkpoint folders (build.model_folders), written once
        self.models_dir = None  # their temp folder, removed at the end
        self.order: list[str] = []  # the sections of this run that will run, in order (set by __main__)

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    def elapsed(self) -> float:
        return time.perf_counter() - self.t_start

    def left(self) -> float:
        return self.budget - self.elapsed()

    def reserve(self, seconds: float) -> float:
        """Seconds to keep for later work at full size; --tiny never stops early."""
        return 0.0 if self.args.tiny else seconds

    def after(self, section: str) -> float:
        """Estimated seconds of the selected sections after `section` (SECTION_ESTIMATE_S): what
        `section` must leave of the budget. Add it to a reserve (--tiny: `reserve` makes it 0)."""
        later = self.order[self.order.index(section) + 1:] if section in self.order else []
        return sum(SECTION_ESTIMATE_S.get(name, 0.0) for name in later)

    def log(self, msg: str) -> None:
        print(f"[{self.elapsed():7.1f}s] {msg}", flush=True)

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    def autocast(self, dtype=None, enabled=True):
        dtype = dtype or self.dtype
        if not enabled or dtype == torch.float32:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=dtype)

    def cleanup(self) -> None:
        gc.collect()
        if self.cuda:
            torch.cuda.empty_cache()


def time_calls(ctx: Ctx, fn, warmup: int, reps: int) -> list[float]:
    """Wall seconds of `reps` calls of fn (device synchronised), after `warmup` untimed calls."""
    for _ in range(warmup):
        out = fn()
        del out
    ctx.sync()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        out = fn()
        ctx.sync()
        times.append(time.perf_counter() - t0)
        del out
    return times


# ---------------------------------------------------------------- peak memory


class Mem:
    """Peak memory of a block. CUDA: torch.cuda.max_memory_allocated (everything the process has
    allocated, weights included). CPU (--tiny only): `base_bytes` (the model's parameter bytes)
    plus the peak resident-set growth sampled every 2 ms (approximate: freed memory the allocator
    keeps is not seen again)."""

    def __init__(self, ctx: Ctx, base_bytes: int = 0):
        self.ctx, self.base_bytes = ctx, base_bytes
        self.peak = self.before = 0
        self._stop = None

    def __enter__(self):
        if self.ctx.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.before = torch.cuda.memory_allocated()
        else:
            self.before = _rss()
            self._max = self.before
            self._stop = threading.Event()

            def sample():
                while not self._stop.is_set():
                    self._max = max(self._max, _rss())
                    time.sleep(0.002)

            self._thread = threading.Thread(target=sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc):
        if self.ctx.cuda:
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated()
        else:
            self._stop.set()
            self._thread.join()
            self._max = max(self._max, _rss())
            self.peak = self.base_bytes + max(0, self._max - self.before)
            self.before = self.base_bytes
        return False

    def figures(self) -> dict:
        return {"peak_gib": rnd(self.peak / GIB), "resident_before_gib": rnd(self.before / GIB),
                "peak_minus_resident_gib": rnd((self.peak - self.before) / GIB)}


_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _rss() -> int:
    """Resident bytes of this process: /proc (Linux), else psutil, else 0 (count the weights only)."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        pass
    try:
        import psutil

        return psutil.Process().memory_info().rss
    except Exception:
        return 0
