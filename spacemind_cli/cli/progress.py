"""Progress bars on stderr for long jobs (the library reports through callbacks)."""

from __future__ import annotations

import contextlib

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from .common import err_console


@contextlib.contextmanager
def job_progress(description: str, unit: str):
    """Yields a callback for the library: cb({"done", "total", ...})."""
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(f"{unit}"),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[extra]}"),
        console=err_console,
        transient=False,
        disable=not err_console.is_terminal,
    )
    task = None

    def callback(event: dict) -> None:
        nonlocal task
        if task is None:
            task = progress.add_task(description, total=event.get("total") or None, rate="", extra="")
        elapsed = progress.tasks[task].elapsed or 0.0
        rate = f"{event['done'] / elapsed:.2f} {unit}/s" if elapsed > 0 else ""
        extra = " ".join(f"{k}={event[k]}" for k in ("questions", "encoded", "cached", "failed") if k in event)
        progress.update(task, completed=event["done"], total=event.get("total"), rate=rate, extra=extra)

    with progress:
        yield callback
