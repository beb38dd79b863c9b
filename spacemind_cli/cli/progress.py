"""Progress bars on stderr for long jobs: the one drawing of the library's progress reports
(`jobs/skeleton.py` says what they hold), for answer, extract, train and report."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from .common import err_console

LOAD = "loading the model"


class JobProgress:
    """The callback a command hands the library. Steps, each its own bar:

    - the model load ({"phase": "load"}): until the first item is done;
    - the items ({"done", "total", ...}; train's {"phase": "features", ...}), with a rate counted
      from when the first item started (the report's "started"), never from the load;
    - train's optimizer steps ({"step", "total", "loss", ...})."""

    def __init__(self, description: str, unit: str, progress: Progress, clock: Callable[[], float] = time.time):
        self.description, self.unit = description, unit
        self.progress = progress
        self.clock = clock
        self.tasks: dict[str, TaskID] = {}

    def __call__(self, event: dict) -> None:
        phase = event.get("phase")
        if phase == "load":
            self._task(LOAD, total=None, unit="")
        elif "step" in event:
            self._end_load()
            self._steps(event)
        else:
            self._end_load()
            self._items(event, "features" if phase == "features" else self.description)

    def field(self, name: str, key: str):
        """A task's shown field (tests read the bars through this)."""
        return self.progress.tasks[self.tasks[name]].fields[key]

    def completed(self, name: str) -> tuple[float, float | None]:
        task = self.progress.tasks[self.tasks[name]]
        return task.completed, task.total

    def _task(self, name: str, **fields) -> TaskID:
        if name not in self.tasks:
            total = fields.pop("total", None)
            completed = fields.pop("completed", 0)
            self.tasks[name] = self.progress.add_task(name, total=total, completed=completed,
                                                      **{"rate": "", "extra": "", **fields})
        return self.tasks[name]

    def _end_load(self) -> None:
        if LOAD in self.tasks:
            task = self.tasks[LOAD]
            if not self.progress.tasks[task].finished:
                self.progress.update(task, total=1, completed=1)
                self.progress.stop_task(task)

    def _items(self, event: dict, name: str) -> None:
        task = self._task(name, total=event.get("total") or None, unit=self.unit)
        done = event["done"]
        started = event.get("started")
        seconds = self.clock() - started if started is not None else self.progress.tasks[task].elapsed or 0.0
        rate = f"{done / seconds:.2f} {self.unit}/s" if seconds > 0 and done else ""
        extra = " ".join(f"{k}={event[k]}" for k in ("questions", "encoded", "cached", "failed") if k in event)
        self.progress.update(task, completed=done, total=event.get("total"), rate=rate, extra=extra)

    def _steps(self, event: dict) -> None:
        task = self._task("training", total=event.get("total"), unit="steps", completed=event["step"] - 1)
        tps = event.get("tokens_per_s")
        extra = f"loss {event['loss']:.4f}" + (f"  {tps:,.0f} tok/s" if tps else "")
        if isinstance(event.get("eval"), dict) and event["eval"].get("overall") is not None:
            extra += f"  eval {event['eval']['overall']:.1f}"
        self.progress.update(task, completed=event["step"], total=event.get("total"), extra=extra)


def bars(console=None) -> Progress:
    console = console or err_console
    return Progress(
        SpinnerColumn(finished_text=" "), TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[unit]}"), TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TextColumn("ETA"),
        TimeRemainingColumn(), TextColumn("{task.fields[extra]}"),
        console=console, transient=False, disable=not console.is_terminal,
    )


@contextlib.contextmanager
def job_progress(description: str, unit: str = "scenes"):
    """Yields the library's progress callback (a `JobProgress`), drawn on stderr when it is a terminal."""
    progress = bars()
    with progress:
        yield JobProgress(description, unit, progress)
