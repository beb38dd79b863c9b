"""The train job: a training file + scenes + a base checkpoint -> a new checkpoint, resumable.

    1. read the training examples (any question file with ground truth, LLaVA-style records,
       SQA3D's pair: `training/`), and the eval questions if given;
    2. find every scene; encode the ones the feature cache lacks, with the same encode stage
       `extract` runs, on the job's executor;
    3. write the run's example tables into NEW_CKPT/training/ and train (`training.loop`, in this
       process or on Ray Train: the `fit` the caller passes);
    4. the trained checkpoint, the loss curve and a summary.

A rerun of the same command continues from the last saved step; a rerun with other settings is
refused (or starts over with `overwrite`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from ..errors import CheckpointError, InputError
from ..files import atomic_write_text
from ..fingerprint import file_digest, text_digest
from ..locks import output_lock
from ..models.checkpoint import load_config
from ..models.context import ContextBudget
from ..prompts import build_prompt
from ..questions import read_questions
from ..scenes import check_root
from ..summaries import TrainSummary
from ..tables import write_parquet
from ..training.config import TrainConfig, TrainSettings
from ..training.data import TrainingSet, read_training_file
from ..training.loop import TrainSpec
from ..training.state import examples_digest, latest_state, resume_refusal
from .plan import plan_answer, plan_extract
from .records import ItemResult
from .settings import JobSettings
from .skeleton import ErrorLog, ProgressFn, Tally, elapsed, write_summary
from .stages import EncodeStage, open_job_cache
from .stages.load import job_cache

log = logging.getLogger(__name__)

OURS = {"config.json", "fusion.safetensors", "lora", "internvl", "vggt", "training"}  # what a run writes
RESUME_FREE = ("save_every", "eval_every", "eval_batch_size")  # settings a resumed run may change
RUN_KEYS = ("base_checkpoint_id", "training_files", "eval_questions", "features")  # with "train": the run id's


def default_cache(output: str | Path) -> Path:
    """The feature cache of a run given none: inside the new checkpoint, spared by --overwrite."""
    return Path(output) / "training" / "features"


def run_train(
    scenes_root: str | Path,
    *,
    questions: str | Path,
    output: str | Path,
    settings: JobSettings,
    executor,
    fit: Callable[[TrainSpec, Callable | None], dict],
    config: TrainConfig,
    eval_questions: str | Path | None = None,
    overwrite: bool = False,
    progress: ProgressFn | None = None,
) -> TrainSummary:
    t_start = time.perf_counter()
    root = check_root(scenes_root)
    out = Path(output)
    base = Path(settings.checkpoint)
    base_config = load_config(base)
    if base_config.lora:
        raise CheckpointError(f"{base} already carries a LoRA adapter ({base_config.lora}); train from a checkpoint "
                              "without one (e.g. the one it was assembled from)")
    if base_config.vggt is None and config.fusion != "none":
        raise CheckpointError(f"{base} has no VGGT (assembled with --fusion none and no --vggt): train it with "
                              "--fusion none, or assemble a base with --vggt for a CGMF")
    if out.resolve() == base.resolve():
        raise InputError(f"--output {out} is the base checkpoint itself; give a new folder")
    if not settings.cache:
        raise InputError(f"training needs a feature cache (e.g. {default_cache(out)})")
    training = read_training_file(questions)
    checkpointing, why = _gradient_checkpointing(base, base_config, config, settings, executor)
    config = dataclasses.replace(config, gradient_checkpointing=checkpointing)
    log.info("gradient checkpointing %s", why)
    run = {
        "train": {k: v for k, v in config.to_dict().items() if k not in RESUME_FREE},
        "base_checkpoint_id": settings.checkpoint_id,
        "training_files": [file_digest(Path(src)) for src in training.sources],  # SQA3D: both halves
        "eval_questions": file_digest(Path(eval_questions)) if eval_questions else None,
        "features": {"frames": settings.frame_sampling.to_dict(), "dtype": settings.dtype,
                     "vggt_weights": settings.vggt_weights, "encoders": settings.encoder_fingerprint},
    }
    # One run at a time into NEW_CKPT (only this driver holds it; Ray Train's workers write under
    # it for the run): two would interleave their logs and overwrite each other's weights.
    with output_lock(out):
        training_dir = _prepare_output(out, run, overwrite, keep=Path(settings.cache))
        open_job_cache(settings.cache)
        errors = ErrorLog(training_dir / "errors.jsonl")
        refusal = None
        try:
            examples, eval_rows, scene_counts = _examples_with_features(root, training, eval_questions, settings, executor,
                                                                        errors, progress)
            # Refused before anything of the run is rewritten: its examples, config and errors stay
            # those of the weights saved.
            refusal = resume_refusal(latest_state(training_dir / "state"), examples_digest(examples))
        finally:
            errors.discard() if refusal else errors.close()
        if refusal:
            raise InputError(refusal)
        if not examples:
            raise InputError(f"{questions}: no training example is left to train on (unreadable, its scene failed, or "
                             f"too long; see {errors.path})")
        write_parquet(training_dir / "examples.parquet", lambda: iter(examples))
        if eval_rows:
            write_parquet(training_dir / "eval.parquet", lambda: iter(eval_rows))
        atomic_write_text(training_dir / "config.json", lambda fh: fh.write(json.dumps(
            {**run, "run_id": text_digest(run), "train": config.to_dict(), "base_checkpoint": str(base),
             "training_file_path": str(questions), "examples": len(examples), "eval": len(eval_rows),
             "gradient_checkpointing": {"on": checkpointing, "why": why}}, indent=2) + "\n"))

        # Absolute paths: Ray Train runs each worker in a folder of its own.
        worker_settings = TrainSettings(cache=str(Path(settings.cache).resolve()),
                                        encoder_fingerprint=settings.encoder_fingerprint, dtype=settings.dtype,
                                        num_frames=settings.num_frames, sampling=settings.sampling,
                                        max_new_tokens=settings.max_new_tokens, device=settings.device,
                                        cpu_threads=settings.cpu_threads, has_vggt=settings.has_vggt,
                                        trusted_paths=tuple(_absolute(p) for p in settings.trusted_paths))
        spec = TrainSpec(base_checkpoint=_absolute(str(base)), output=str(out.resolve()), config=config.to_dict(),
                         settings=worker_settings, examples=str((training_dir / "examples.parquet").resolve()),
                         eval_questions=str((training_dir / "eval.parquet").resolve()) if eval_rows else None)
        result = fit(spec, progress)
        from ..training.export import plot_loss

        plot_loss(training_dir / "log.jsonl", training_dir / "loss.png")
        summary = TrainSummary(
            output=str(out),
            examples=len(examples),
            scenes=scene_counts["scenes"],
            scenes_encoded=scene_counts["encoded"],
            scenes_cached=scene_counts["cached"],
            failed=errors.count,
            errors_file=str(errors.path) if errors.count else None,
            examples_left_out=scene_counts["examples_left_out"],
            eval_questions=len(eval_rows),
            eval_questions_left_out=scene_counts["eval_left_out"],
            gradient_checkpointing=why,
            **{k: result.get(k) for k in ("steps", "resumed_from", "last", "workers")},
            elapsed_s=elapsed(t_start),
        )
        write_summary(training_dir / "summary.json", summary)
        return summary


def _gradient_checkpointing(base: Path, base_config, config: TrainConfig, settings: JobSettings,
                            executor) -> tuple[bool, str]:
    """(on, why): as asked, or by the memory estimate of the base model at the run's sizes
    (`training.memory`) for a GPU run."""
    import torch

    from ..models.checkpoint import read_json, resolve_component
    from ..training import memory

    on_gpu = bool(executor.uses_gpu())
    estimate = None
    if config.gradient_checkpointing is None and on_gpu:
        try:
            internvl = Path(resolve_component(base, base_config.base, "base", settings.trusted_paths))
            shape = memory.model_shape(read_json(internvl / "config.json"))
        except (CheckpointError, OSError, ValueError):
            shape = None  # a hub id, an unreadable config: the sizes are not known
        if shape is not None:
            estimate = memory.training_memory(
                shape, frames=settings.num_frames, questions_per_pack=config.questions_per_pack,
                lora_rank=config.lora_rank if "lora" in config.train else 0,
                cgmf_params=_tensor_elements(base / base_config.fusion_weights), checkpointing=False)["total"]
    gpu_bytes = None
    if on_gpu and torch.cuda.is_available():
        gpu_bytes = min(torch.cuda.get_device_properties(i).total_memory for i in range(torch.cuda.device_count()))
    return memory.decide_gradient_checkpointing(config.gradient_checkpointing, on_gpu=on_gpu, gpu_bytes=gpu_bytes,
                                                estimate_gb=estimate)


def _tensor_elements(path: Path) -> int:
    """Elements of a safetensors file's tensors, from its header (0 when there is none)."""
    import math

    from ..weights import read_header

    try:
        header, _ = read_header(path)
    except CheckpointError:
        return 0  # no fusion weights (fusion none), or broken: loading them reports that
    return sum(math.prod(t.get("shape", [])) for name, t in header.items() if name != "__metadata__")


def _prepare_output(out: Path, run: dict, overwrite: bool, keep: Path) -> Path:
    """NEW_CKPT/training/, after checking the folder is new, ours to overwrite, or this run's.
    Overwriting spares `keep`, the feature cache (by default NEW_CKPT/training/features): the
    scenes' features do not depend on the training settings."""
    training = out / "training"
    if out.exists() and not out.is_dir():
        raise InputError(f"--output {out} exists and is not a folder")
    if out.exists() and any(out.iterdir()):
        foreign = sorted(p.name for p in out.iterdir() if p.name not in OURS)
        if foreign:
            raise InputError(f"--output {out} holds files a training run does not write ({', '.join(foreign[:3])}); "
                             "give a new folder")
        stored_config = _stored_config(training)
        stored = stored_config.get("run_id")
        if overwrite:
            for name in OURS:
                _remove_sparing(out / name, keep.resolve())
        elif stored is None and (out / "config.json").exists():
            raise InputError(f"--output {out} holds a checkpoint that is not a training run; give a new folder "
                             "(or --overwrite)")
        elif stored is not None and stored != text_digest(run):
            now = json.loads(json.dumps(run))  # as config.json holds it (tuples as lists)
            changed = "; ".join(_changed_settings(_stored_run(stored_config), now)[:4]) or "data, base checkpoint or hyperparameters"
            raise InputError(f"--output {out} holds a training run with other settings ({changed}); rerun with the "
                             "same ones to resume, or pass --overwrite to start over")
    training.mkdir(parents=True, exist_ok=True)
    return training


def _remove_sparing(path: Path, keep: Path) -> None:
    """Remove `path`, except `keep` when it lies inside it."""
    if not path.is_dir():
        path.unlink(missing_ok=True)
    elif keep.is_relative_to(path.resolve()):
        for child in path.iterdir():
            if child.resolve() != keep:
                _remove_sparing(child, keep)
    else:
        shutil.rmtree(path)


def _stored_config(training: Path) -> dict:
    try:
        stored = json.loads((training / "config.json").read_text())
    except (OSError, ValueError):
        return {}
    return stored if isinstance(stored, dict) else {}


def _stored_run(stored_config: dict) -> dict:
    """The settings a run's id covers, as its config.json records them (`train` in full there)."""
    train = {k: v for k, v in (stored_config.get("train") or {}).items() if k not in RESUME_FREE}
    return {**{k: stored_config.get(k) for k in RUN_KEYS}, "train": train}


def _changed_settings(old: dict, new: dict, prefix: str = "") -> list[str]:
    """What differs between two runs' settings, e.g. "max_steps 4 -> 6"; a digest (a file's
    content, the encoders') is named, not shown."""
    changed = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        name = key if prefix == "train." else prefix + key  # "max_steps", "features.frames.num_frames"
        if isinstance(a, dict) and isinstance(b, dict):
            changed += _changed_settings(a, b, f"{prefix}{key}.")
        elif a != b:
            shown = all(isinstance(v, (int, float, bool, type(None))) or (isinstance(v, str) and len(v) < 24) for v in (a, b))
            changed.append(f"{name} {json.dumps(a)} -> {json.dumps(b)}" if shown else f"{name} changed")
    return changed


def _absolute(path: str) -> str:
    """A local path made absolute; a hub id (no such local path) as it is."""
    return str(Path(path).resolve()) if Path(path).exists() else path


def _examples_with_features(root: Path, training: TrainingSet, eval_questions, settings: JobSettings, executor,
                            errors: ErrorLog, progress: ProgressFn | None) -> tuple[list[dict], list[dict], dict]:
    """The run's example tables, each row pointing at its scene's features in the cache; scenes
    the cache lacks are encoded first (EncodeStage, the executor's workers)."""
    errors.problems(training.problems, "training data")
    train_q = training.questions()
    eval_q, eval_total = [], 0
    if eval_questions:
        qset = read_questions(eval_questions)
        errors.problems(qset.problems, "eval questions")
        eval_q = [q for q in qset.questions if q.ground_truth is not None or q.row.get("answers") is not None]
        eval_total = len(eval_q) + len(qset.problems)
    scene_of: dict[tuple[str, int], str] = {}
    scenes = {}
    for tag, qs in (("train", train_q), ("eval", eval_q)):
        plan = plan_answer(root, qs, max_per_item=len(qs) or 1)
        for q, reason in plan.failures:
            errors.question(q, reason)
        for item in plan.items:
            scenes[item.scene.key] = item.scene
            for ref in item.questions:
                scene_of[(tag, ref.index)] = item.scene.key
    keys: dict[str, str] = {}
    extract = plan_extract(list(scenes.values()))
    tally = Tally(len(extract.items), progress, phase="features")

    def on_result(result: ItemResult) -> None:
        result.raise_if_job_stops()
        tally.add(result)
        if result.status == "failed":
            errors.scene(result.item_id, result.error)
        elif result.key is not None:  # every scene train encodes goes to the cache
            keys[result.item_id] = result.key
        tally.report(result.item_id)

    if extract.items:
        tally.loading()
        executor.run(extract.items, EncodeStage, settings, on_result)
    counts = {"scenes": len(scenes), "encoded": tally.status["ok"], "cached": tally.status["cached"]}
    budget = ContextBudget.from_checkpoint(settings.checkpoint, settings.trusted_paths)
    assert settings.cache is not None  # train checked --cache first
    cache = job_cache(settings.cache)
    frames: dict[str, int] = {}  # frames per feature key: the visual prefix's length
    examples = []
    for ex, q in zip(training.examples, train_q):
        key = keys.get(scene_of.get(("train", q.index), ""))
        if key is None:
            continue
        if key not in frames:
            info = cache.info(key)
            frames[key] = info.num_frames if info is not None and info.num_frames else settings.frame_sampling.num_frames
        # Counted in tokens before any tensor is built: one over-long example would ask the step
        # for activations of its whole length (a 100,000-character answer: tens of GB).
        problem = budget.example_problem(f"{ex.source} {_position(ex)} (example {ex.id})", ex.prompt, ex.target,
                                         frames[key])
        if problem:
            errors.row("example", ex.source, ex.unit, ex.line, ex.id, problem)
            continue
        examples.append({"id": ex.id, "feature_key": key, "prompt": ex.prompt, "target": ex.target,
                         "scene": scene_of[("train", q.index)]})
    eval_rows = []
    for q in eval_q:
        key = keys.get(scene_of.get(("eval", q.index), ""))
        if key is not None:
            eval_rows.append({"id": q.qid, "feature_key": key, "prompt": build_prompt(q.row),
                              "row_json": json.dumps(q.row, ensure_ascii=False)})
    counts["examples_left_out"] = len(training.problems) + len(training.examples) - len(examples)
    counts["eval_left_out"] = eval_total - len(eval_rows)
    return examples, eval_rows, counts


def _position(ex) -> str:
    """Where an example is in its file: "line N" of JSONL, "record N" of a JSON list or Parquet."""
    return f"{ex.unit} {ex.line}"
