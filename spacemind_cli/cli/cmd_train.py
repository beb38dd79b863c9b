"""`spacemind train`: make a SpaceMind checkpoint (CGMF + LoRA) from cached encoder features."""

from __future__ import annotations

from pathlib import Path

import typer

from ..errors import EXIT_PARTIAL
from ..training.config import TrainConfig
from . import options as opt
from .common import console, err_console, handle_errors, summary_table
from .progress import job_progress

HELP = (
    "Train SpaceMind's camera-guided fusion (CGMF) and a LoRA adapter of the LLM on spatial QA, from "
    "cached encoder features, into a new checkpoint folder that answer / extract / eval take as is.\n\n"
    "Training data: any question file `answer` reads with ground_truth, LLaVA-style JSON/JSONL "
    "(`conversations` with <image>/<video>; VSI-590K, VLM-3R, ViCA-322K), or SQA3D's train pair. "
    "Targets are what the evaluated model should say (the option letter, the number, the answer). "
    "Scenes missing from --cache are encoded first, as `extract` would. The encoders never run in a "
    "training step, and the questions of a scene share one packed sequence (its visual prefix once). "
    "Defaults are the paper's recipe: LoRA r256/alpha 512, LR 2e-5, warm-up 0.03, cosine, global batch "
    "64 questions, 2 epochs.\n\n"
    "Rerunning the same command resumes from the last saved step (kill -9, a lost worker). "
    "NEW_CKPT/training/ holds the run: config.json, log.jsonl, loss.png, state/."
)


@handle_errors
def train(
    scenes: Path = opt.SCENES,
    questions: Path = typer.Option(..., "--questions", help="Training file: questions with ground_truth, LLaVA-style records, or an SQA3D train file."),
    checkpoint: Path = opt.CHECKPOINT,
    output: Path = typer.Option(..., "--output", "-o", help="The new checkpoint folder (NEW_CKPT)."),
    cache: Path | None = typer.Option(None, "--cache", help="Feature cache to read and fill (default: NEW_CKPT/training/features)."),
    epochs: int | None = typer.Option(None, "--epochs", min=1, show_default=str(TrainConfig.epochs)),
    max_steps: int | None = typer.Option(None, "--max-steps", min=1, help="Stop after this many optimizer steps."),
    lr: float | None = typer.Option(None, "--lr", show_default=str(TrainConfig.lr)),
    warmup_ratio: float | None = typer.Option(None, "--warmup-ratio", show_default=str(TrainConfig.warmup_ratio)),
    global_batch: int | None = typer.Option(None, "--global-batch", min=1, show_default=str(TrainConfig.batch_size),
                                            help="Questions per optimizer step, over all workers (as in the paper)."),
    batch_size: int | None = typer.Option(None, "--batch-size", min=1, hidden=True,
                                          help="Deprecated name of --global-batch."),
    questions_per_pack: int | None = typer.Option(
        None, "--questions-per-pack", min=1, show_default=str(TrainConfig.questions_per_pack),
        help="Most questions of one scene in one packed sequence (its visual prefix once); small packs make a step "
        "span many scenes."),
    lora_rank: int | None = typer.Option(None, "--lora-rank", min=1, show_default=str(TrainConfig.lora_rank)),
    lora_alpha: int | None = typer.Option(None, "--lora-alpha", min=1, show_default=str(TrainConfig.lora_alpha)),
    train_parts: str | None = typer.Option(None, "--train", show_default=",".join(TrainConfig.train),
                                           help="What is trained: a comma list of cgmf, lora, projector."),
    fusion: str | None = typer.Option(None, "--fusion", show_default=TrainConfig.fusion,
                                      help="cgmf, or none (plain InternVL + LoRA, the baseline)."),
    cgmf_off: str | None = typer.Option(None, "--cgmf-off", help="CGMF ablation (paper Table 4): parts off, of camera_bias, importance, camera_memory, camera_gate."),
    num_frames: int | None = opt.NUM_FRAMES,
    sampling: str | None = opt.SAMPLING,
    executor: str | None = opt.EXECUTOR,
    num_workers: int | None = typer.Option(None, "--num-workers", min=1, help="Ray Train workers (default: one per GPU, else 1)."),
    ray_address: str | None = opt.RAY_ADDRESS,
    eval_questions: Path | None = typer.Option(None, "--eval-questions", help="Held-out questions (with ground_truth) answered and scored during training."),
    eval_every: int | None = typer.Option(None, "--eval-every", min=0, show_default=str(TrainConfig.eval_every),
                                          help="Steps between evaluations (0: at the end only)."),
    eval_batch_size: int | None = typer.Option(
        None, "--eval-batch-size", min=1, show_default=str(TrainConfig.eval_batch_size),
        help="Eval questions of one scene decoded together during training (as answer decodes its questions)."),
    save_every: int | None = typer.Option(None, "--save-every", min=1, show_default=str(TrainConfig.save_every),
                                          help="Steps between saved states (a rerun resumes from the last)."),
    gradient_checkpointing: bool | None = typer.Option(None, "--gradient-checkpointing/--no-gradient-checkpointing", show_default="auto", help="Recompute the LLM's activations in the backward pass. Default: on where the memory estimate says the GPU needs it (the 8B model on one 80 GB GPU), off on CPU; the run's training/config.json says which and why."),
    fsdp: bool | None = typer.Option(None, "--fsdp/--no-fsdp", show_default=str(TrainConfig.fsdp),
                                     help="Shard the model over the Ray Train workers (FSDP2) when one GPU's memory is not enough."),
    seed: int | None = typer.Option(None, "--seed", show_default=str(TrainConfig.seed)),
    dtype: str | None = opt.DTYPE,
    vggt_weights: str | None = opt.VGGT_WEIGHTS,
    threads: int | None = opt.THREADS,
    device: str | None = opt.DEVICE,
    trust_path: list[Path] = opt.TRUST_PATH,
    overwrite: bool = typer.Option(False, "--overwrite", help="Start over instead of resuming (removes NEW_CKPT's earlier run)."),
):
    from .. import api

    def comma_list(text: str | None):
        return None if text is None else tuple(p.strip() for p in text.split(",") if p.strip())

    given = dict(
        epochs=epochs, max_steps=max_steps, lr=lr, warmup_ratio=warmup_ratio,
        batch_size=opt.renamed(batch_size, "--batch-size", global_batch, "--global-batch"), questions_per_pack=questions_per_pack,
        train=comma_list(train_parts), lora_rank=lora_rank, lora_alpha=lora_alpha, seed=seed, save_every=save_every,
        eval_every=eval_every, eval_batch_size=eval_batch_size, gradient_checkpointing=gradient_checkpointing, fsdp=fsdp, fusion=fusion,
        cgmf_off=comma_list(cgmf_off),
    )
    config = TrainConfig(**{k: v for k, v in given.items() if v is not None})
    options = opt.run_options(
        checkpoint=checkpoint, cache=cache, executor=executor,
        ray_address=ray_address, num_frames=num_frames, sampling=sampling, dtype=dtype, vggt_weights=vggt_weights,
        threads=threads, device=device, trust_path=trust_path,
    )
    with job_progress("features", "scenes") as progress:
        summary = api.train(scenes, options=options, questions=questions, output=output, config=config,
                            eval_questions=eval_questions, num_workers=num_workers, overwrite=overwrite,
                            progress=progress)
    s = summary
    last = s.last or {}
    console.print(summary_table("spacemind train", [
        ("examples", f"{s.examples} over {s.scenes} scenes ({s.scenes_encoded} encoded now, "
                     f"{s.scenes_cached} from the cache)"),
        ("steps", f"{s.steps} (resumed at {s.resumed_from or 0})"),
        ("last loss", f"{last['loss']:.4f}" if "loss" in last else None),
        ("eval", ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in last["eval"].items())
         if isinstance(last.get("eval"), dict) else None),
        ("gradient checkpointing", s.gradient_checkpointing or ""),
        ("time", f"{s.elapsed_s:.1f} s"),
        ("checkpoint", s.output),
        ("run", f"{s.output}/training (log.jsonl, loss.png)"),
        ("errors", s.errors_file),
    ]))
    if s.failed:
        left_out = [f"{n} {what}" for n, what in ((s.examples_left_out, "training example(s)"),
                                                  (s.eval_questions_left_out, "eval question(s)")) if n]
        what = (f"left out {' and '.join(left_out)} (unreadable, too long, or their scene failed)" if left_out
                else "some scenes failed")
        err_console.print(f"[yellow]{what}; see {s.errors_file}[/]")
        raise typer.Exit(EXIT_PARTIAL)
