"""The extract job: encode scenes once into the feature cache, on any executor."""

from __future__ import annotations

import time
from pathlib import Path

from ..errors import InputError
from ..questions import Question, read_questions
from ..scenes import VIDEO_EXTS, check_root, discover_scenes
from ..summaries import ExtractSummary
from .plan import plan_extract, scenes_of_questions
from .records import ItemResult
from .settings import JobSettings
from .skeleton import ErrorLog, ProgressFn, Tally, elapsed, rate, write_summary
from .stages import EncodeStage, open_job_cache

ERRORS_FILE = "extract.errors.jsonl"
SUMMARY_FILE = "extract.summary.json"


def run_extract(
    scenes_root: str | Path,
    *,
    settings: JobSettings,
    executor,
    questions: str | None = None,
    progress: ProgressFn | None = None,
) -> ExtractSummary:
    if not settings.cache:
        raise InputError("extract needs --cache DIR")
    cache = open_job_cache(settings.cache)  # fails early on a bad cache; removes dead writers' temp files
    t_start = time.perf_counter()
    root = check_root(scenes_root)
    failures: list[tuple[Question, str]] = []
    problems = []
    if questions:
        qset = read_questions(questions)
        problems = qset.problems
        scenes, failures = scenes_of_questions(root, qset)
    else:
        scenes = discover_scenes(root)
        if not scenes:
            raise InputError(f"no scenes under {root} (videos {', '.join(VIDEO_EXTS)} or frame folders)")
    plan = plan_extract(scenes)
    errors = ErrorLog(Path(cache.root) / ERRORS_FILE)
    errors.problems(problems, "questions")
    for q, reason in failures:
        errors.question(q, reason)

    tally = Tally(len(plan.items), progress)
    t_work = time.perf_counter()

    def on_result(result: ItemResult) -> None:
        result.raise_if_job_stops()
        tally.add(result)
        if result.status == "failed":
            errors.scene(result.item_id, result.error)
        status = tally.status
        tally.report(result.item_id, encoded=status["ok"], cached=status["cached"], failed=status["failed"])

    tally.loading()
    try:
        info = executor.run(plan.items, EncodeStage, settings, on_result) if plan.items else {"executor": executor.name}
    finally:
        errors.close()
    work_s = time.perf_counter() - t_work
    summary = ExtractSummary(
        cache=str(cache.root),
        executor=info.get("executor"),
        route=info.get("route"),
        scenes=len(plan.items),
        encoded=tally.status["ok"],
        cached=tally.status["cached"],
        failed=tally.status["failed"] + len(failures),
        question_problems=len(problems),
        errors_file=str(errors.path) if errors.count else None,
        elapsed_s=elapsed(t_start),
        scenes_per_s=rate(len(plan.items), work_s),
        actors=list(tally.workers.values()),
        encoder_fingerprint=settings.encoder_fingerprint,
    )
    write_summary(Path(cache.root) / SUMMARY_FILE, summary)
    return summary
