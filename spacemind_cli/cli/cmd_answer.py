"""`spacemind answer`: a question file over a folder of scenes."""

from __future__ import annotations

import shlex
from pathlib import Path

import typer

from ..defaults import DEFAULTS
from ..errors import EXIT_PARTIAL
from ..summaries import AnswerSummary
from . import options as opt
from .common import console, err_console, handle_errors, summary_table
from .progress import job_progress

HELP = (
    "Answer a question file (JSONL/JSON/Parquet, VSI-Bench schema) over a scenes root.\n\n"
    "Each scene is encoded once (or read from --cache), fused once, its visual prefix prefilled once "
    "and shared by all its questions, which are decoded in batches. Rows are written as they finish; "
    "rerunning the same command resumes (use --overwrite to start over). Failed questions are listed "
    "in OUT.errors.jsonl, a run summary in OUT.summary.json.\n\n"
    "Annotation jobs: --template FILE asks every template question of every scene under the root and "
    "writes a Parquet dataset folder (one row per scene x question, partitioned by dataset)."
)


def print_summary(summary: AnswerSummary, scenes: Path | None = None) -> None:
    s = summary
    browse = None
    if scenes is not None and s.rows_written and s.output:
        out = Path(s.output)
        browse = (f"spacemind report {shlex.quote(str(out))} --scenes {shlex.quote(str(scenes))} "
                  f"--output {shlex.quote(str(out.with_name(out.stem + '-report')))}")
    rows = [
        ("questions", f"{s.questions} ({s.answered} answered now, {s.resumed} resumed)"),
        ("other settings", f"{s.other_settings_kept} earlier answer(s) made with other settings kept apart, not in this "
                           "output (rerun with those settings to reuse them; --overwrite drops them)"
         if s.other_settings_kept else None),
        ("failed", s.not_answered),
        ("scenes", s.scenes),
        ("cache", ", ".join(f"{k} {v}" for k, v in sorted(s.cache.items())) or "-"),
        ("throughput", f"{s.questions_per_s:.2f} questions/s" if s.questions_per_s else "-"),
        ("time", f"{s.elapsed_s:.1f} s"),
    ]
    for a in s.actors:
        mem = a.get("peak_memory_bytes")
        mem_s = f", peak GPU memory {mem / 2**30:.2f} GiB" if mem else ""
        rows.append(("actor", f"{a.get('device')} on node {str(a.get('node'))[:12]}: {a['questions']} questions{mem_s}"))
    rows += [("output", s.output), ("errors", s.errors_file), ("browse", browse)]
    console.print(summary_table("spacemind answer", rows))


@handle_errors
def answer(
    scenes: Path = opt.SCENES,
    questions: Path | None = typer.Option(None, "--questions", help="Question file (.jsonl, .json, .parquet)."),
    template: Path | None = typer.Option(None, "--template", help="Template questions asked of every scene (annotation job)."),
    checkpoint: Path = opt.CHECKPOINT,
    output: Path = typer.Option(..., "--output", "-o", help="Answers: OUT.jsonl or OUT.parquet; a folder with --template."),
    cache: Path | None = typer.Option(None, "--cache", help="Feature cache to read from and fill (see `spacemind extract`)."),
    executor: str | None = opt.EXECUTOR,
    ray_address: str | None = opt.RAY_ADDRESS,
    num_gpus: int | None = opt.NUM_GPUS,
    actors: int | None = opt.ACTORS,
    batch_size: int | None = typer.Option(None, "--batch-size", "-b", min=1, show_default=str(DEFAULTS.decode_batch),
                                          help="Questions of one scene decoded together."),
    max_new_tokens: int | None = typer.Option(None, "--max-new-tokens", min=1, show_default=str(DEFAULTS.max_new_tokens),
                                              help="Generated tokens per answer (VSI-Bench: 16)."),
    num_frames: int | None = opt.NUM_FRAMES,
    sampling: str | None = opt.SAMPLING,
    dtype: str | None = opt.DTYPE,
    vggt_weights: str | None = opt.VGGT_WEIGHTS,
    merge_lora: bool | None = opt.MERGE_LORA,
    threads: int | None = opt.THREADS,
    device: str | None = opt.DEVICE,
    overwrite: bool = typer.Option(False, "--overwrite", help="Start over instead of resuming."),
    trust_path: list[Path] = opt.TRUST_PATH,
    no_eval: bool = typer.Option(False, "--no-eval", help="Do not print benchmark scores at the end."),
):
    from .. import api

    options = opt.run_options(
        checkpoint=checkpoint, cache=cache, executor=executor, ray_address=ray_address, num_gpus=num_gpus,
        actors=actors, batch_size=batch_size, max_new_tokens=max_new_tokens, num_frames=num_frames,
        sampling=sampling, dtype=dtype, vggt_weights=vggt_weights, merge_lora=merge_lora, threads=threads,
        device=device, trust_path=trust_path,
    )
    with job_progress("answering", "scenes") as progress:
        summary = api.answer(scenes, options=options, output=output, questions=questions, template=template,
                             overwrite=overwrite, progress=progress)
    print_summary(summary, scenes if template is None else None)
    if summary.has_ground_truth and not no_eval and template is None and summary.rows_written:
        _print_scores(output)
    if summary.not_answered:
        err_console.print(f"[yellow]{summary.not_answered} question(s) could not be answered; see {summary.errors_file}[/]")
        raise typer.Exit(EXIT_PARTIAL)


def _print_scores(output: Path) -> None:
    from ..errors import InputError
    from ..eval import evaluate_file, render_table

    try:
        result = evaluate_file(output)
    except InputError as exc:  # e.g. custom question types only: nothing to score
        err_console.print(f"[dim]no benchmark scores: {exc.message}[/]")
        return
    console.print(render_table(result, references=False))
