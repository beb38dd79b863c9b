"""What every job (answer, extract, train) does around its work, written once: the errors file,
the tally of finished items, the progress reports and the summary file.

Progress reports are dicts handed to the caller's callback (the CLI draws them; nothing here
prints):

    {"phase": "load"}                              the workers start and load the model
    {"phase": P, "done", "total", "scene", "started", ...counts}
                                                   an item finished; "started": when the first
                                                   item began (epoch seconds), for rates that
                                                   leave the model load out
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path

from ..errors import resource_error
from ..files import atomic_write_text, claim_temp, json_line, release_temp, remove_quietly
from .records import ItemResult

ProgressFn = Callable[[dict], None]


class ErrorLog:
    """*.errors.jsonl: one line per question (or scene) that failed, streamed to disk and put in
    place atomically when the run ends. Records: {"stage", "file", "line" (or "record"), "id",
    "scene", "error"} (a question, an example), {"stage", "scene", "error"} (a scene)."""

    def __init__(self, path: Path):
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, self._tmp = claim_temp(path)
        except OSError as exc:
            raise resource_error(exc, path) from exc
        self._fh = os.fdopen(fd, "w", encoding="utf-8")
        self.count = 0

    def question(self, q, error: str | None, *, stage: str = "scene", scene: str | None = None) -> None:
        """A question (`questions.Question`) that got no answer."""
        self.row(stage, q.source, q.unit, q.line, q.qid, error, scene=scene)

    def row(self, stage: str, source: str, unit: str, position: int, row_id, error: str | None, *,
            scene: str | None = None) -> None:
        """A row of an input file that failed: its file, its "line" or "record" number, its id."""
        record = {"stage": stage, "file": source, unit: position, "id": row_id}
        if scene is not None:
            record["scene"] = scene
        self.add({**record, "error": error})

    def scene(self, scene: str, error: str | None) -> None:
        """A scene that could not be read or encoded."""
        self.add({"stage": "scene", "scene": scene, "error": error})

    def problems(self, problems: Iterable, what: str) -> None:
        """Rows of an input file that could not be read (`questions.Problem`)."""
        for p in problems:
            self.add(p.to_record(what))

    def add(self, record: dict) -> None:
        try:
            self._fh.write(json_line(record))
            self._fh.flush()
        except OSError as exc:
            raise resource_error(exc, self.path) from exc
        self.count += 1

    def discard(self) -> None:
        """Close without publishing: the file from before the run stays as it was."""
        try:
            self._fh.close()
        finally:
            remove_quietly(self._tmp)
            release_temp(self._tmp)

    def close(self) -> None:
        try:
            self._fh.close()
            if self.count:
                os.replace(self._tmp, self.path)
            else:
                remove_quietly(self._tmp)
                remove_quietly(self.path)
        except OSError as exc:
            remove_quietly(self._tmp)
            raise resource_error(exc, self.path) from exc
        finally:
            release_temp(self._tmp)


class Tally:
    """The finished items of a job's run: statuses, cache statuses, seconds per stage, per worker,
    and the progress report each one makes."""

    def __init__(self, total: int, progress: ProgressFn | None = None, phase: str | None = None):
        self.total = total
        self.progress = progress
        self.phase = phase
        self.status: Counter = Counter()
        self.cache: Counter = Counter()
        self.stage_s: defaultdict[str, float] = defaultdict(float)
        self.workers: dict[str, dict] = {}
        self.items = 0
        self.started: float | None = None  # when the first item began (epoch seconds)

    def loading(self) -> None:
        """Report the start of the workers and their model load (before the first item)."""
        if self.progress and self.total:
            self.progress({"phase": "load"})

    def add(self, result: ItemResult, questions: int = 0) -> None:
        self.items += 1
        self.status[result.status] += 1
        if result.started is not None:
            self.started = result.started if self.started is None else min(self.started, result.started)
        actor = result.actor
        w = self.workers.setdefault(
            f"{actor.node}:{actor.pid}",
            {"node": actor.node, "pid": actor.pid, "device": actor.device, "items": 0, "questions": 0},
        )
        w["items"] += 1
        w["peak_memory_bytes"] = max(w.get("peak_memory_bytes") or 0, actor.peak_memory or 0) or None
        w["model_load_s"] = actor.load_s
        w["threads"] = actor.threads
        if result.status == "ok":
            w["questions"] += questions
            self.cache[result.cache or "none"] += 1
            for k, v in result.timing.items():
                self.stage_s[k] += v
            for ans in result.answers:
                self.stage_s["generate_s"] += ans.generate_s / max(1, ans.batch)

    def report(self, scene: str | None, **counts) -> None:
        """One progress report: items done of the total, and the job's own counts."""
        if self.progress:
            event = {"done": self.items, "total": self.total, "scene": scene, "started": self.started, **counts}
            if self.phase:
                event["phase"] = self.phase
            self.progress(event)


def write_summary(path: Path, summary) -> None:
    """The job's summary file (JSON), put in place atomically."""
    atomic_write_text(path, lambda fh: fh.write(json.dumps(summary.to_dict(), indent=2) + "\n"))


def rate(count: int, seconds: float) -> float | None:
    return round(count / seconds, 3) if seconds > 0 and count else None


def elapsed(t0: float) -> float:
    return round(time.perf_counter() - t0, 3)
