"""The answer job: questions + scenes -> answers file, resumable, on any executor.

Executors (local in-process, or the Ray Data pipeline in `pipelines/answer.py`) only move work
items through the two stages of `stages.py`; planning, resume, writing and the summary live
here, once.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Callable

from ..errors import InputError
from ..parsing import parse_answer
from ..questions import QuestionSet, read_questions
from ..scenes import check_root
from .output import AnswerStore, ErrorLog, atomic_write_text, question_digest
from .plan import expand_templates, plan_answer
from .settings import JobSettings
from .stages import open_job_cache

log = logging.getLogger(__name__)

ProgressFn = Callable[[dict], None]  # called with {"done", "total", "questions", "failed"} as items finish


def output_row(q, answer: dict, result: dict, settings: JobSettings) -> dict:
    meta = result.get("meta") or {}
    row = dict(q.row)
    text = answer["prediction"]
    row["prediction"] = text
    row["answer"] = parse_answer(text, options=q.options, question_type=q.question_type)
    row["scene_key"] = meta.get("scene_key")
    row["checkpoint_id"] = settings.checkpoint_id
    row["run_key"] = settings.run_key()
    row["frames_used"] = meta.get("num_frames")
    row["frame_indices"] = meta.get("frame_indices")
    if meta.get("notes"):
        row["frames_note"] = "; ".join(meta["notes"])
    timing = {k: round(v, 6) for k, v in (result.get("timing") or {}).items()}
    timing.update(generate_s=round(answer["generate_s"], 6), batch=answer["batch"])
    row["timing"] = timing
    row["cache"] = result.get("cache")
    return row


class _Tracker:
    """Counts and per-actor stats for the summary."""

    def __init__(self):
        self.cache = Counter()
        self.stage_s = Counter()
        self.actors: dict[str, dict] = {}
        self.answered = 0
        self.failed = 0
        self.items = 0

    def add(self, result: dict, n_questions: int) -> None:
        self.items += 1
        actor = result.get("actor") or {}
        key = f"{actor.get('node')}:{actor.get('pid')}"
        a = self.actors.setdefault(
            key, {"node": actor.get("node"), "pid": actor.get("pid"), "device": actor.get("device"), "items": 0, "questions": 0}
        )
        a["items"] += 1
        a["peak_memory_bytes"] = max(a.get("peak_memory_bytes") or 0, actor.get("peak_memory") or 0) or None
        a["model_load_s"] = actor.get("load_s")
        a["threads"] = actor.get("threads")
        if result.get("status") == "ok":
            a["questions"] += n_questions
            self.cache[result.get("cache") or "none"] += 1
            for k, v in (result.get("timing") or {}).items():
                self.stage_s[k] += v
            for ans in result.get("answers", []):
                self.stage_s["generate_s"] += ans["generate_s"] / max(1, ans["batch"])


def load_question_set(root: Path, questions: str | None, template: str | None) -> QuestionSet:
    if bool(questions) == bool(template):
        raise InputError("give exactly one of --questions FILE or --template FILE")
    if questions:
        return read_questions(questions)
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
) -> dict:
    t_start = time.perf_counter()
    root = check_root(scenes_root)
    qset = load_question_set(root, questions, template)
    output = Path(output)
    for given in (questions, template):
        # --overwrite (or the final rename) would destroy the input
        if given and Path(given).exists() and output.exists() and output.resolve() == Path(given).resolve():
            raise InputError(f"--output {output} is the question file itself; give another output file name")
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
    plan = plan_answer(root, remaining, settings.max_questions_per_item)

    errors = ErrorLog(store.errors_path)
    for p in qset.problems:
        errors.add(p.to_record("questions"))
    for q, reason in plan.failures:
        errors.add({"stage": "scene", "file": q.source, "line": q.line, "id": q.qid, "error": reason})
    failed_questions = len(plan.failures)

    tracker = _Tracker()
    items = {it["item_id"]: it for it in plan.items}
    total_items = len(plan.items)
    t_work = time.perf_counter()

    def on_result(result: dict) -> None:
        nonlocal failed_questions
        item = items[result["item_id"]]
        qs = item["questions"]
        tracker.add(result, len(qs))
        if result.get("status") != "ok":
            for qd in qs:
                q = qset.questions[qd["index"]]
                errors.add({"stage": "scene", "file": q.source, "line": q.line, "id": q.qid,
                            "scene": item["scene"]["key"], "error": result.get("error")})
            failed_questions += len(qs)
        else:
            records = []
            for ans in result["answers"]:
                q = qset.questions[ans["index"]]
                records.append((ans["index"], digests[ans["index"]], output_row(q, ans, result, settings)))
            store.write(records)
            tracker.answered += len(records)
            for bad in result.get("question_errors") or ():
                q = qset.questions[bad["index"]]
                errors.add({"stage": "question", "file": q.source, "line": q.line, "id": q.qid,
                            "scene": item["scene"]["key"], "error": bad["error"]})
                failed_questions += 1
        if progress:
            progress({"done": tracker.items, "total": total_items, "questions": tracker.answered,
                      "failed": failed_questions, "scene": item["scene"]["key"]})

    try:
        exec_info = executor.run(plan.items, on_result, settings, "answer") if plan.items else {"executor": executor.name}
    finally:
        errors.close()
    work_s = time.perf_counter() - t_work
    written = store.finalize(digests)
    if template is not None:
        from .annotate import write_partitioned

        write_partitioned(output, lambda: store.rows(digests))

    summary = {
        "output": str(output),
        "errors_file": str(store.errors_path) if errors.count else None,
        "executor": exec_info.get("executor"),
        "questions": len(qset.questions),
        "question_problems": len(qset.problems),
        "answered": tracker.answered,
        "resumed": len(done),
        # Answers of earlier runs with other settings: kept apart, never in this output.
        "other_settings_kept": sum(other_runs.values()),
        "failed": failed_questions,
        "rows_written": written,
        "scenes": plan.scenes,
        "items": total_items,
        "cache": dict(tracker.cache),
        "elapsed_s": round(time.perf_counter() - t_start, 3),
        "work_s": round(work_s, 3),
        "questions_per_s": round(tracker.answered / work_s, 3) if work_s > 0 and tracker.answered else None,
        "stage_s": {k: round(v, 3) for k, v in tracker.stage_s.items()},
        "actors": list(tracker.actors.values()),
        "checkpoint_id": settings.checkpoint_id,
        "run_key": settings.run_key(),
        "has_ground_truth": qset.has_ground_truth(),
    }
    atomic_write_text(store.summary_path, lambda fh: fh.write(json.dumps(summary, indent=2) + "\n"))
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
