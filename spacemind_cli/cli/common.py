"""What every command shares: logging to stderr, the error-to-exit-code boundary, consoles."""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Iterable

import typer
from rich.console import Console
from rich.table import Table

from ..errors import EXIT_INTERRUPTED, SpacemindError, os_error


def _console(stderr: bool = False) -> Console:
    c = Console(stderr=stderr)
    if not c.is_terminal:
        # Piped or redirected: rich would wrap tables at 80 columns; keep them readable.
        c = Console(stderr=stderr, width=160)
    return c


console = _console()  # results (stdout)
err_console = _console(stderr=True)  # messages, errors, progress


class _StderrHandler(logging.StreamHandler):
    """Writes to sys.stderr as it is when a record comes, not as it was when logging was set up:
    a host program or test runner that swaps stderr (and closes the old one) gets the records."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value):
        pass


def setup_logging(verbose: int = 0, quiet: bool = False) -> None:
    """Warnings by default; -v info; -vv debug; --quiet errors only."""
    level = logging.ERROR if quiet else [logging.WARNING, logging.INFO, logging.DEBUG][min(verbose, 2)]
    root = logging.getLogger()
    if not any(getattr(h, "_spacemind", False) for h in root.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(levelname).1s %(name)s: %(message)s"))
        handler._spacemind = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(logging.WARNING)
    logging.getLogger("spacemind_cli").setLevel(level)
    logging.getLogger("pipelines").setLevel(level)


def summary_table(title: str, rows: Iterable[tuple[str, object]]) -> Table:
    """A command's closing table: one (what, value) row each; rows whose value is None are left out."""
    table = Table(title=title, show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    for what, value in rows:
        if value is not None:
            table.add_row(what, str(value))
    return table


def fail(message: str, code: int) -> None:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def handle_errors(fn):
    """Turn library errors into one-line messages and their documented exit codes."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except SpacemindError as exc:
            fail(exc.message, exc.exit_code)
        except KeyboardInterrupt:
            err_console.print("[yellow]interrupted[/]: finished work is kept; rerun the same command to resume")
            raise typer.Exit(EXIT_INTERRUPTED) from None
        except OSError as exc:  # a safety net: one line and a documented code, never a traceback
            error = os_error(exc)
            fail(error.message, error.exit_code)

    return wrapper
