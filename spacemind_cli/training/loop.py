"""The training loop, the same code in one process and in every Ray Train worker.

Per optimizer step: the step's packs (`schedule.StepPlan`, the same on every worker), this worker's
share of them, whole; the scenes' encoder outputs from the feature cache (never from the encoders),
each read once per step, ahead on a thread while the previous step computes (`feed.StepFeed`);
for each pack one packed sequence through the model; the loss is the sum of target-token
cross-entropies over the whole step divided by the step's target-token count, so gradients equal
those of the same questions trained one by one, whatever the packing or the number of workers.
Then gradient clipping, AdamW, the LR schedule; the log; every `save_every` steps the resumable
state; every `eval_every` steps (and at the end) answers to the eval questions, each worker
answering its share of their scenes (`evaluate.scene_shares`), the answers gathered and scored.

What differs between one process and Ray Train is behind `Runtime` (pipelines/ provides both).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Protocol

import torch

from ..errors import InputError
from . import parallel
from .config import TrainConfig, TrainSettings
from .feed import StepFeed, cache_reader
from .schedule import StepPlan
from .state import examples_digest, latest_state, load_state, remove_staging, resume_refusal, save_state

log = logging.getLogger(__name__)


class Runtime(Protocol):
    rank: int
    world_size: int

    def device(self, requested: str | None) -> str: ...
    def prepare(self, module: torch.nn.Module, shard: bool = False) -> torch.nn.Module: ...
    def all_reduce_sum(self, values: list[float]) -> list[float]: ...
    def gather(self, value) -> list: ...  # every worker's `value`, by rank, on every worker
    def report(self, metrics: dict) -> None: ...


@dataclass
class TrainSpec:
    """Everything a worker needs, picklable (Ray ships it)."""

    base_checkpoint: str
    output: str  # the new checkpoint folder
    config: dict  # TrainConfig.to_dict()
    settings: TrainSettings  # device, dtype, cache, threads, trusted paths
    examples: str  # Parquet: id, feature_key, prompt, target
    eval_questions: str | None = None  # Parquet: id, feature_key, prompt, row_json

    @property
    def training_dir(self) -> Path:
        return Path(self.output) / "training"


def read_table(path: str) -> list[dict]:
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()


def lr_lambda(cfg: TrainConfig, total_steps: int):
    warmup = math.ceil(cfg.warmup_ratio * total_steps)

    def factor(step: int) -> float:  # step: optimizer steps done
        if warmup and step < warmup:
            return (step + 1) / warmup
        if cfg.schedule == "constant":
            return 1.0
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def train(spec: TrainSpec, runtime: Runtime, progress=None) -> dict:
    from ..models.spacemind import SpaceMind
    from ..runtime import autocast as autocast_to
    from ..runtime import compute_dtype, use_torch_threads
    from .evaluate import answer_rows, scene_shares, score
    from .export import export_checkpoint
    from .model import TrainableSpaceMind

    cfg = TrainConfig.from_dict(spec.config)
    s = spec.settings
    device = runtime.device(s.device)
    if device == "cpu":
        use_torch_threads(s.cpu_threads)
    torch.manual_seed(cfg.seed)
    # Frozen weights in the compute dtype (bf16 on GPU: 16 GB for the 8B model, not 32); the
    # trained ones in fp32 (master weights), the forward under autocast.
    autocast = compute_dtype(device, s.dtype)
    sm = SpaceMind.from_pretrained(spec.base_checkpoint, device=device, dtype=autocast,
                                   trusted_paths=s.trusted_paths, llm=True, lazy_vggt=True)
    model = TrainableSpaceMind(sm, cfg)
    params = model.trainable()
    for param in params.values():
        param.data = param.data.float()
    examples = read_table(spec.examples)
    # A saved state belongs to this set of examples: one that failed to encode before and has
    # features now changes the step plan, so such a state is not resumed.
    digest = examples_digest(examples)
    by_scene: dict[str, list[int]] = {}
    for i, ex in enumerate(examples):
        by_scene.setdefault(ex["feature_key"], []).append(i)
    plan = StepPlan(by_scene, seed=cfg.seed, questions_per_pack=cfg.questions_per_pack, batch_size=cfg.batch_size,
                    epochs=cfg.epochs, max_steps=cfg.max_steps)
    segments = [sm.segment(ex["prompt"], ex["target"]) for ex in examples]
    targets = [len(seg.answer_ids) + 1 for seg in segments]  # answer tokens + end of turn
    lengths = [len(seg.prompt_ids) + t for seg, t in zip(segments, targets)]

    sharded = cfg.fsdp and runtime.world_size > 1
    wrapped = runtime.prepare(model, shard=sharded)  # before the optimizer: sharding replaces the parameters
    params = model.trainable()
    optimizer = torch.optim.AdamW(params.values(), lr=cfg.lr, betas=cfg.adam_betas, eps=cfg.adam_eps,
                                  weight_decay=cfg.weight_decay, fused=device.startswith("cuda") and not sharded)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg, plan.total_steps))
    state_dir = spec.training_dir / "state"
    start = _resume(runtime, state_dir, model, optimizer, scheduler, device, sharded, digest)
    log_path = spec.training_dir / "log.jsonl"
    logged = _truncate_log(log_path, start) if runtime.rank == 0 else {}
    cache = _cache(s)

    encoded = cache_reader(cache, s.encoder_fingerprint, device, has_vggt=s.has_vggt)  # eval's

    if runtime.world_size > 1 and runtime.rank == 0:
        idle = runtime.world_size - min((len(plan.step(i)) for i in range(min(plan.total_steps, 8))), default=0)
        if idle > 0:
            log.warning("%d of %d workers have no pack in some steps (packs are never split over workers): lower "
                        "--questions-per-pack or raise --global-batch to give each one work", idle, runtime.world_size)
    t_run = time.perf_counter()
    last: dict = {}
    # features read on the CPU ahead of the step, moved to the device pack by pack as it runs
    feed = StepFeed(plan, range(start, plan.total_steps), runtime.rank, runtime.world_size,
                    cache_reader(cache, s.encoder_fingerprint, "cpu", has_vggt=s.has_vggt))
    with feed:
        for data in feed:
            step, packs = data.index, data.packs
            t0 = time.perf_counter() - data.wait_s  # the step began when it asked for its features
            step_targets = sum(targets[i] for p in packs for i in p.examples)
            loss_sum, tokens, wait_s = 0.0, 0, data.wait_s
            for j, p in enumerate(data.passes):
                sync = j == len(data.passes) - 1  # gradients reduced over the workers once per step, after the last pass
                if sharded:
                    wrapped.set_requires_gradient_sync(sync)  # type: ignore[operator]  # FSDP2 adds it; torch types the module as nn.Module
                no_sync = getattr(wrapped, "no_sync", None)  # DDP
                t_move = time.perf_counter()
                enc = data.features[p.pack.scene].to(device)
                wait_s += time.perf_counter() - t_move
                with (contextlib.nullcontext() if sync or no_sync is None else no_sync()), autocast_to(device, autocast):
                    loss, _ = wrapped(enc, [segments[i] for i in p.pack.examples])
                    scale = 0.0 if p.filler else parallel.gradient_scale(runtime.world_size, step_targets)
                    (loss * scale).backward()
                del enc
                if not p.filler:
                    loss_sum += float(loss.detach())
                    frames = data.features[p.pack.scene].num_frames
                    tokens += len(sm.prefix_ids(frames)) + sum(lengths[i] for i in p.pack.examples)
            del data
            lr = optimizer.param_groups[0]["lr"]
            grad_norm = float(torch.nn.utils.clip_grad_norm_(list(params.values()), cfg.max_grad_norm))
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            total_loss, total_tokens = runtime.all_reduce_sum([loss_sum, float(tokens)])
            dt = time.perf_counter() - t0
            last = {"step": step + 1, "total": plan.total_steps, "epoch": plan.epoch_of(step),
                    "loss": total_loss / step_targets, "lr": lr, "grad_norm": grad_norm,
                    "questions": sum(len(p.examples) for p in packs), "targets": step_targets,
                    "tokens": int(total_tokens), "tokens_per_s": total_tokens / dt if dt > 0 else None, "step_s": dt,
                    "data_wait_s": wait_s}
            done = step + 1
            due = spec.eval_questions and ((cfg.eval_every and done % cfg.eval_every == 0) or done == plan.total_steps)
            if due and spec.eval_questions:
                # Every worker answers: sharded, all of them each question (every forward gathers the
                # layers from all workers); replicated, each its share of the scenes, the answers then
                # gathered, so no worker idles in a collective while another evaluates alone.
                rows = read_table(spec.eval_questions)
                mine = None if sharded else scene_shares(rows, runtime.world_size)[runtime.rank]
                with autocast_to(device, autocast):  # bf16 features meet the fp32 CGMF as in training
                    answered, failed = _evaluate(model, sharded, partial(
                        answer_rows, sm, rows, encoded, batch_size=cfg.eval_batch_size,
                        max_new_tokens=s.max_new_tokens, scenes=mine))
                if not sharded:
                    shares = runtime.gather((answered, failed))
                    answered = {i: text for share, _ in shares for i, text in share.items()}
                    failed = sum(n for _, n in shares)
                last["eval"] = score(rows, answered, failed)
            if runtime.rank == 0:
                _append_log(log_path, last)  # before the state: a resume drops lines past its step
                if progress:
                    progress({**last, "phase": "train"})
            if done % cfg.save_every == 0 or done == plan.total_steps:
                trained = parallel.trainable_state(model, sharded)  # gathered: every worker takes part
                optimizer_state = parallel.optimizer_state(model, optimizer, sharded)
                if runtime.rank == 0:
                    save_state(state_dir, done, trained, optimizer_state,
                               {"epoch": plan.epoch_of(step), "scheduler": scheduler.state_dict(),
                                "config": cfg.to_dict(), "examples": digest})
            runtime.report(last)

    tensors = parallel.export_tensors(model, sharded)  # gathered: every worker takes part
    if runtime.rank == 0:
        if start >= plan.total_steps:  # a rerun of a finished run: the last state is the result
            last = {**logged, "step": plan.total_steps, "resumed_finished_run": True}  # its final loss, eval
        export_checkpoint(spec, model, cfg, tensors)
    return {"steps": plan.total_steps, "resumed_from": start, "last": last,
            "wall_s": round(time.perf_counter() - t_run, 3)}


def _resume(runtime: Runtime, state_dir: Path, model, optimizer, scheduler, device: str, sharded: bool,
            digest: str) -> int:
    """Load the newest saved state (a rerun's, or the group's after Ray Train restarted it for a
    lost worker); returns the optimizer steps already done."""
    if runtime.rank == 0:
        remove_staging(state_dir)
    saved = latest_state(state_dir)
    if saved is None:
        return 0
    if (refusal := resume_refusal(saved, digest)) is not None:  # the job checks first; a worker's state may be newer
        raise InputError(refusal)
    trainable, optimizer_state = load_state(saved, "cpu" if sharded else device)
    parallel.load_trainable_state(model, trainable, sharded)
    parallel.load_optimizer_state(model, optimizer, optimizer_state, sharded)
    scheduler.load_state_dict(saved.meta["scheduler"])
    log.info("resuming at step %d from %s", saved.step, saved.path)
    return saved.step


def _evaluate(model, sharded: bool, run):
    """Eval mode for the answers; sharded, the root's parameters (embeddings, CGMF, head) gathered
    first, since answering calls the model's parts outside its own forward (the decoder layers
    gather theirs as they run)."""
    model.eval()
    if sharded:
        model.unshard()
    try:
        return run()
    finally:
        if sharded:
            model.reshard()
        model.train()


def _cache(settings: TrainSettings):
    from ..cache import FeatureCache

    return FeatureCache(settings.cache, create=False)


def _truncate_log(path: Path, steps_done: int) -> dict:
    """Keep the log lines of the steps the resumed state holds (a killed run may have logged more);
    returns the last one kept ({} when none)."""
    if not path.is_file():
        return {}
    from ..files import atomic_write_text

    lines = path.read_text().splitlines()
    keep, last = [], {}
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a line torn by the kill
        if record.get("step", 0) <= steps_done:
            keep.append(line)
            last = record
    if len(keep) != len(lines):
        atomic_write_text(path, lambda fh: fh.write("".join(line + "\n" for line in keep)))
    return last


def _append_log(path: Path, record: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record) + "\n")
        fh.flush()
