"""The library's front door, offered at the package root (`import spacemind_cli`): the jobs the
commands run, under the same names, taking the same options as keywords. The commands are thin
shells over these functions; `pipelines/` runs the work.

    import spacemind_cli as sm

    sm.extract("scenes/", checkpoint="ckpt/", cache="cache/")
    summary = sm.answer("scenes/", questions="q.jsonl", output="a.jsonl", checkpoint="ckpt/", cache="cache/")
    scores = sm.evaluate("a.jsonl")
    sm.train("scenes/", questions="train.jsonl", output="new-ckpt/", checkpoint="ckpt/", max_steps=100)
    model = sm.SpaceMind.from_pretrained("new-ckpt/")

Options (`RunOptions` fields: checkpoint, cache, executor "ray" | "local", num_frames, batch_size,
max_new_tokens, dtype, ...) are keywords, or one `options=RunOptions(...)`; what is left out takes
the defaults `spacemind --help` shows (`spacemind_cli.defaults`). Progress reports go to
`progress`, a callable taking a dict (see `spacemind_cli.jobs.skeleton`); nothing is printed.
Errors are `spacemind_cli.errors.SpacemindError`s, each with its exit code."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .jobs.settings import RunOptions
from .summaries import AnswerSummary, ExtractSummary, TrainSummary

PathLike = str | Path


def answer(scenes: PathLike, *, output: PathLike, questions: PathLike | None = None,
           template: PathLike | None = None, options: RunOptions | None = None, overwrite: bool = False,
           progress: Callable[[dict], None] | None = None, **option_fields) -> AnswerSummary:
    """Answer a question file (`questions`, VSI-Bench schema) over the scenes root `scenes` into
    `output` (.jsonl or .parquet), as `spacemind answer` does: resumable (a rerun with the same
    settings asks only what is missing; `overwrite` starts over), failures in OUTPUT.errors.jsonl.
    With `template` instead, every template question is asked of every scene and `output` is a
    Parquet dataset folder. Returns the run's summary (also written as OUTPUT.summary.json)."""
    import pipelines

    return pipelines.answer(scenes, options, output=output, questions=None if questions is None else str(questions),
                            template=None if template is None else str(template), overwrite=overwrite,
                            progress=progress, **option_fields)


def extract(scenes: PathLike, *, cache: PathLike | None = None, questions: PathLike | None = None,
            options: RunOptions | None = None, progress: Callable[[dict], None] | None = None,
            **option_fields) -> ExtractSummary:
    """Encode the scenes (all under `scenes`, or those `questions` uses) into the feature cache
    `cache`, as `spacemind extract` does; cached scenes are skipped. Returns the summary (also
    CACHE/extract.summary.json)."""
    import pipelines

    if cache is not None:
        option_fields["cache"] = cache
    return pipelines.extract(scenes, options, questions=None if questions is None else str(questions),
                             progress=progress, **option_fields)


def train(scenes: PathLike, *, questions: PathLike, output: PathLike, config=None,
          eval_questions: PathLike | None = None, num_workers: int | None = None, overwrite: bool = False,
          options: RunOptions | None = None, progress: Callable[[dict], None] | None = None,
          **fields) -> TrainSummary:
    """Train a new checkpoint into `output` from the base `checkpoint` on a training file
    (`questions`: questions with ground_truth, LLaVA-style records or SQA3D's pair), as
    `spacemind train` does. Hyperparameters are `config` (a `training.config.TrainConfig`) or its
    fields as keywords (epochs, lr, global_batch (TrainConfig.batch_size), max_steps, ...); the other
    keywords are `RunOptions`. The feature cache defaults to OUTPUT/training/features. Resumable:
    a rerun continues from the last saved step. Returns the summary (OUTPUT/training/summary.json)."""
    import dataclasses

    import pipelines

    from .training.config import TrainConfig

    if "global_batch" in fields:  # the CLI's name of TrainConfig.batch_size
        fields["batch_size"] = fields.pop("global_batch")
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    hyper = {k: fields.pop(k) for k in list(fields) if k in names}
    if hyper:
        config = dataclasses.replace(config, **hyper) if config is not None else TrainConfig(**hyper)
    return pipelines.train(scenes, options, questions=questions, output=output, config=config,
                           eval_questions=eval_questions, num_workers=num_workers, overwrite=overwrite,
                           progress=progress, **fields)


def evaluate(answers: PathLike, *, benchmark: str = "auto", variant: str = "official", label: str | None = None):
    """Score an answers file (ours, or lmms-eval per-sample logs) with the official VSI-Bench /
    SQA3D / SPBench rules, as `spacemind eval` does. Returns an `eval.EvalResult` (`.scores`,
    `.benchmark`; `eval.render_table` and `eval.to_json` show it)."""
    from .eval import evaluate_file

    return evaluate_file(answers, benchmark=benchmark, variant=variant, label=label)
