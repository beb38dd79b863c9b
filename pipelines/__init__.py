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

from spacemind_cli.jobs.settings import RunOptions

from .executor import Executor, make_executor, open_job

__all__ = ["Executor", "RunOptions", "answer", "extract", "make_executor", "open_job"]


def _options(options: RunOptions | None, fields: dict) -> RunOptions:
    return RunOptions(**fields) if options is None else dataclasses.replace(options, **fields)


def answer(scenes_root: str | Path, options: RunOptions | None = None, *, output, questions=None, template=None,
           overwrite: bool = False, progress=None, **option_fields) -> dict:
    """`spacemind answer`: see `spacemind_cli.jobs.answer.run_answer`."""
    from spacemind_cli.jobs.answer import run_answer

    with open_job(_options(options, option_fields)) as (executor, settings):
        return run_answer(scenes_root, output=output, settings=settings, executor=executor, questions=questions,
                          template=template, overwrite=overwrite, progress=progress)


def extract(scenes_root: str | Path, options: RunOptions | None = None, *, questions=None, progress=None,
            **option_fields) -> dict:
    """`spacemind extract`: see `spacemind_cli.jobs.extract.run_extract`."""
    from spacemind_cli.jobs.extract import run_extract

    with open_job(_options(options, option_fields), verify_cached=True) as (executor, settings):
        return run_extract(scenes_root, settings=settings, executor=executor, questions=questions, progress=progress)
