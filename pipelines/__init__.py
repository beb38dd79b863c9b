"""How spacemind's jobs run: executors (`local.py` in-process, `ray.py` on Ray Data), the Ray
runtime (`ray_runtime.py`) and opening a job (`executor.py`). What the jobs do (planning, stages,
outputs, resume) is the library's, `spacemind_cli.jobs`; nothing here restates it.

The entry points take the job's `RunOptions` (or its fields as keywords) and the job's own
arguments:

    from pipelines import answer
    summary = answer("scenes/", output="a.jsonl", questions="q.jsonl", checkpoint="ckpt/", executor="local")
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from spacemind_cli.errors import InputError
from spacemind_cli.jobs.settings import RunOptions
from spacemind_cli.summaries import AnswerSummary, ExtractSummary, TrainSummary

from .executor import Executor, make_executor, open_job

__all__ = ["Executor", "RunOptions", "answer", "extract", "make_executor", "open_job", "train"]


def _options(options: RunOptions | None, fields: dict) -> RunOptions:
    return RunOptions(**fields) if options is None else dataclasses.replace(options, **fields)


def answer(scenes_root: str | Path, options: RunOptions | None = None, *, output, questions=None, template=None,
           overwrite: bool = False, progress=None, **option_fields) -> AnswerSummary:
    """`spacemind answer`: see `spacemind_cli.jobs.answer.run_answer`."""
    from spacemind_cli.jobs.answer import run_answer

    with open_job(_options(options, option_fields)) as (executor, settings):
        return run_answer(scenes_root, output=output, settings=settings, executor=executor, questions=questions,
                          template=template, overwrite=overwrite, progress=progress)


def extract(scenes_root: str | Path, options: RunOptions | None = None, *, questions=None, progress=None,
            **option_fields) -> ExtractSummary:
    """`spacemind extract`: see `spacemind_cli.jobs.extract.run_extract`."""
    from spacemind_cli.jobs.extract import run_extract

    with open_job(_options(options, option_fields), verify_cached=True) as (executor, settings):
        return run_extract(scenes_root, settings=settings, executor=executor, questions=questions, progress=progress)


def train(scenes_root: str | Path, options: RunOptions | None = None, *, questions, output, config=None,
          eval_questions=None, num_workers: int | None = None, overwrite: bool = False, progress=None,
          **option_fields) -> TrainSummary:
    """`spacemind train`: see `spacemind_cli.jobs.train.run_train`. The features of scenes the
    cache lacks are encoded on the job's executor; training runs in this process
    (`executor="local"`) or on Ray Train, one worker per GPU (or `num_workers` CPU workers)."""
    from functools import partial

    from spacemind_cli.jobs.train import default_cache, run_train
    from spacemind_cli.training.config import TrainConfig

    opts = _options(options, option_fields)
    if opts.cache is None:
        opts = dataclasses.replace(opts, cache=default_cache(output))
    if opts.executor == "local" and num_workers not in (None, 1):
        raise InputError("--num-workers needs --executor ray (the local executor trains in this one process)")
    with open_job(opts, verify_cached=True, worker_logs=False) as (executor, settings):
        if opts.executor == "local":
            from .local_train import fit
        else:
            from . import ray_train

            gpus = getattr(executor, "gpus_in_cluster", 0) if executor.uses_gpu() else 0
            fit = partial(ray_train.fit, num_workers=num_workers or gpus or 1, use_gpu=executor.uses_gpu())
        return run_train(scenes_root, questions=questions, output=output, settings=settings, executor=executor,
                         fit=fit, config=config or TrainConfig(), eval_questions=eval_questions,
                         overwrite=overwrite, progress=progress)
