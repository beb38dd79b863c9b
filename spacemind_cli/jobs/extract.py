"""The extract job: encode scenes once into the feature cache, on any executor."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Callable

from ..errors import InputError
from ..files import atomic_write_text
from ..questions import read_questions
from ..scenes import VIDEO_EXTS, check_root, discover_scenes
from .output import ErrorLog
from .plan import plan_extract, scenes_of_questions
from .records import ItemResult
from .settings import JobSettings
from .stages import EncodeStage, open_job_cache

ERRORS_FILE = "extract.errors.jsonl"
SUMMARY_FILE = "extract.summary.json"


def run_extract(
    scenes_root: str | Path,
    *,
    settings: JobSettings,
    executor,
    questions: str | None = None,
    progress: Callable[[dict], None] | None = None,
) -> dict:
    if not settings.cache:
        raise InputError("extract needs --cache DIR")
    cache = open_job_cache(settings.cache)  # fails early on a bad cache; removes dead writers' temp files
    t_start = time.perf_counter()
    root = check_root(scenes_root)
    failures = []
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
    for p in problems:
        errors.add(p.to_record("questions"))
    for q, reason in failures:
        errors.add({"stage": "scene", "file": q.source, q.unit: q.line, "id": q.qid, "error": reason})

    status = Counter()
    actors: dict[str, dict] = {}
    t_work = time.perf_counter()

    def on_result(result: ItemResult) -> None:
        result.raise_if_job_stops()
        status[result.status] += 1
        actor = result.actor
        a = actors.setdefault(f"{actor.node}:{actor.pid}", {"node": actor.node, "pid": actor.pid, "items": 0})
        a["items"] += 1
        a["peak_memory_bytes"] = actor.peak_memory
        if result.status == "failed":
            errors.add({"stage": "scene", "scene": result.item_id, "error": result.error})
        if progress:
            progress({"done": sum(status.values()), "total": len(plan.items), "scene": result.item_id,
                      "encoded": status["ok"], "cached": status["cached"], "failed": status["failed"]})

    try:
        info = executor.run(plan.items, EncodeStage, settings, on_result) if plan.items else {"executor": executor.name}
    finally:
        errors.close()
    work_s = time.perf_counter() - t_work
    summary = {
        "cache": str(cache.root),
        "executor": info.get("executor"),
        "scenes": len(plan.items),
        "encoded": status["ok"],
        "cached": status["cached"],
        "failed": status["failed"] + len(failures),
        "question_problems": len(problems),
        "errors_file": str(errors.path) if errors.count else None,
        "elapsed_s": round(time.perf_counter() - t_start, 3),
        "scenes_per_s": round(len(plan.items) / work_s, 3) if work_s > 0 and plan.items else None,
        "actors": list(actors.values()),
        "encoder_fingerprint": settings.encoder_fingerprint,
    }
    atomic_write_text(Path(cache.root) / SUMMARY_FILE, lambda fh: fh.write(json.dumps(summary, indent=2) + "\n"))
    return summary
