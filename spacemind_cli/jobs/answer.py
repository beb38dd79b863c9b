"""The answer job: questions + scenes -> answers file, resumable, on any executor.

Executors (`pipelines.local`, `pipelines.ray`) only move work items through the stages
(`stages.load_item`, then `stages.AnswerStage`); planning, resume, writing and the summary live
here, once.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

from ..errors import InputError
from ..locks import output_lock
from ..models.answering import Answer
from ..parsing import parse_answer
from ..questions import Question, QuestionSet, read_questions
from ..scenes import check_root
from ..summaries import AnswerSummary
from .output import AnswerStore, question_digest
from .plan import expand_templates, plan_answer
from .records import ItemResult
from .settings import JobSettings
from .skeleton import ErrorLog, ProgressFn, Tally, elapsed, rate, write_summary
from .stages import AnswerStage, open_job_cache

log = logging.getLogger(__name__)


def output_row(q: Question, answer: Answer, result: ItemResult, settings: JobSettings) -> dict:
    meta = result.meta or {}
    row = dict(q.row)
    row["prediction"] = answer.text
    row["answer"] = parse_answer(answer.text, options=q.options, question_type=q.question_type)
    row["scene_key"] = meta.get("scene_key")
    row["checkpoint_id"] = settings.checkpoint_id
    row["run_key"] = settings.run_key()
    row["frames_used"] = meta.get("num_frames")
    row["frame_indices"] = meta.get("frame_indices")
    if meta.get("notes"):
        row["frames_note"] = "; ".join(meta["notes"])
    timing = {k: round(v, 6) for k, v in result.timing.items()}
    timing.update(generate_s=round(answer.generate_s, 6), batch=answer.batch)
    row["timing"] = timing
    row["cache"] = result.cache
    return row


def load_question_set(root: Path, questions: str | None, template: str | None) -> QuestionSet:
    if bool(questions) == bool(template):
        raise InputError("give exactly one of --questions FILE or --template FILE")
    if questions:
        return read_questions(questions)
    assert template is not None  # exactly one of the two was given
    return expand_templates(root, read_questions(template, require_scene=False))


def run_answer(
    scenes_root: str | Path,
    *,
    output: str | Path,
    settings: JobSettings,
    executor,
    questions: str | None = None,
    template: str | None = None,
    overwrite: bool = False,
    progress: ProgressFn | None = None,
) -> AnswerSummary:
    t_start = time.perf_counter()
    root = check_root(scenes_root)
    qset = load_question_set(root, questions, template)
    output = Path(output)
    for given in (questions, template):
        # --overwrite (or the final rename) would destroy the input
        if given and Path(given).exists() and output.exists() and output.resolve() == Path(given).resolve():
            raise InputError(f"--output {output} is the question file itself; give another output file name")
    # One run at a time into an output: two would interleave their answers and each report its own.
    with output_lock(output):
        if settings.cache:
            open_job_cache(settings.cache)
        store = _store_for(output, settings, template is not None, overwrite)
        digests = [question_digest(q.row) for q in qset.questions]
        done = store.completed(digests)
        other_runs = store.other_runs()
        if other_runs:
            log.warning(
                "%s holds %d answer(s) made with other settings (checkpoint, frames, dtype, ...); they are kept "
                "apart in %s and not used by this run", output, sum(other_runs.values()), store.parts,
            )
        remaining = [q for q in qset.questions if q.index not in done]
        plan = plan_answer(root, remaining)

        errors = ErrorLog(store.errors_path)
        errors.problems(qset.problems, "questions")
        for q, reason in plan.failures:
            errors.question(q, reason)
        failed_questions = len(plan.failures)

        tally = Tally(len(plan.items), progress)
        answered = 0
        items = {it.item_id: it for it in plan.items}
        t_work = time.perf_counter()

        def on_result(result: ItemResult) -> None:
            nonlocal failed_questions, answered
            result.raise_if_job_stops()
            item = items[result.item_id]
            tally.add(result, len(item.questions))
            if result.status != "ok":
                for ref in item.questions:
                    errors.question(qset.questions[ref.index], result.error, scene=item.scene.key)
                failed_questions += len(item.questions)
            else:
                records = [(a.key, digests[a.key], output_row(qset.questions[a.key], a, result, settings))
                           for a in result.answers]
                store.write(records)
                answered += len(records)
                for bad in result.question_errors:
                    errors.question(qset.questions[bad.key], bad.error, stage="question", scene=item.scene.key)
                    failed_questions += 1
            tally.report(item.scene.key, questions=answered, failed=failed_questions)

        tally.loading()
        try:
            exec_info = executor.run(plan.items, AnswerStage, settings, on_result) if plan.items else {"executor": executor.name}
        finally:
            errors.close()
        work_s = time.perf_counter() - t_work
        written = store.finalize(digests)
        if template is not None:
            from .annotate import write_partitioned

            write_partitioned(output, lambda: store.rows(digests))

        summary = AnswerSummary(
            output=str(output),
            errors_file=str(store.errors_path) if errors.count else None,
            executor=exec_info.get("executor"),
            route=exec_info.get("route"),
            questions=len(qset.questions),
            question_problems=len(qset.problems),
            answered=answered,
            resumed=len(done),
            other_settings_kept=sum(other_runs.values()),
            failed=failed_questions,
            rows_written=written,
            scenes=plan.scenes,
            items=len(plan.items),
            cache=dict(tally.cache),
            elapsed_s=elapsed(t_start),
            work_s=round(work_s, 3),
            questions_per_s=rate(answered, work_s),
            stage_s={k: round(v, 3) for k, v in tally.stage_s.items()},
            actors=list(tally.workers.values()),
            checkpoint_id=settings.checkpoint_id,
            run_key=settings.run_key(),
            has_ground_truth=qset.has_ground_truth(),
        )
        write_summary(store.summary_path, summary)
        return summary


def _store_for(output: Path, settings: JobSettings, annotation: bool, overwrite: bool) -> AnswerStore:
    if not annotation:
        return AnswerStore(output, settings.run_key(), overwrite=overwrite)
    if output.suffix.lower() in (".jsonl", ".parquet", ".json"):
        raise InputError(f"--template writes a Parquet dataset folder; give --output a folder, not {output}")
    if output.exists() and not output.is_dir():
        raise InputError(f"--output {output} exists and is not a folder")
    if overwrite:
        for stale in output.glob("dataset=*"):
            shutil.rmtree(stale, ignore_errors=True)
    return AnswerStore(
        output / "_state" / "answers.jsonl",
        settings.run_key(),
        overwrite=overwrite,
        errors_path=output / "_errors.jsonl",
        summary_path=output / "_summary.json",
    )
