"""The `spacemind` command line: thin shells over library functions."""

from __future__ import annotations

import sys

import typer
import typer.core
import typer.rich_utils

from .. import __version__
from .common import console, setup_logging

EXIT_CODES_HELP = """
[bold]Exit codes[/]: 0 success · 1 finished, but some scenes/questions failed (listed in *.errors.jsonl) ·
2 bad input or usage · 3 checkpoint error · 4 cache error · 5 disk full / permission denied /
read-only output / workers lost (rerun to resume) · 130 interrupted (rerun to resume).
"""

# Help piped to a file or a pager (and the README's copies) is not cut at rich's 80-column default
# ("--gradient-checkpoin…"): wide enough for every option name whole. A terminal keeps its own
# width; TERMINAL_WIDTH still wins.
HELP_WIDTH = 140
if typer.rich_utils.MAX_WIDTH is None and not sys.stdout.isatty():
    typer.rich_utils.MAX_WIDTH = HELP_WIDTH


def _usage_name(self) -> str:
    """An argument on a usage line as the README and click write it: SCENES, [OUT] when optional
    (typer writes a required one as {SCENES})."""
    name = self.display_name_raw if self.required else f"[{self.display_name_raw}]"
    return name + ("..." if self.nargs != 1 else "")


if hasattr(typer.core.TyperArgument, "_usage_display_name"):
    typer.core.TyperArgument._usage_display_name = _usage_name  # type: ignore[method-assign]  # typer offers no hook

app = typer.Typer(
    name="spacemind",
    help=(
        "Answer spatial-reasoning questions about 3D scenes (videos or frame folders) at scale with "
        "SpaceMind: VGGT geometry + InternViT appearance, fused by camera-guided fusion, read by an "
        "InternVL language model.\n\n"
        "Typical run: [cyan]spacemind checkpoint tiny ckpt/[/] then "
        "[cyan]spacemind answer examples/videos --questions examples/questions.jsonl "
        "--checkpoint ckpt/ --output answers.jsonl[/]\n" + EXIT_CODES_HELP
    ),
    rich_markup_mode="rich",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool):
    if value:
        console.print(f"spacemind {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool | None = typer.Option(
        None, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="More log output (-v info, -vv debug)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only errors on stderr: no warnings, no info (progress bars and results still show)."),
):
    setup_logging(verbose, quiet)


def _register():
    # Each command lives in its own module; importing them here keeps `spacemind --help` fast
    # because the heavy libraries (torch, ray) are imported inside the commands.
    from . import cmd_answer, cmd_cache, cmd_checkpoint, cmd_doctor, cmd_eval, cmd_extract, cmd_report, cmd_train

    app.add_typer(cmd_checkpoint.app, name="checkpoint")
    app.add_typer(cmd_cache.app, name="cache")
    app.command("extract", help=cmd_extract.HELP, epilog=EXIT_CODES_HELP)(cmd_extract.extract)
    app.command("answer", help=cmd_answer.HELP, epilog=EXIT_CODES_HELP)(cmd_answer.answer)
    app.command("train", help=cmd_train.HELP, epilog=EXIT_CODES_HELP)(cmd_train.train)
    app.command("eval", help=cmd_eval.HELP, epilog=EXIT_CODES_HELP)(cmd_eval.eval_command)
    app.command("report", help=cmd_report.HELP, epilog=EXIT_CODES_HELP)(cmd_report.report)
    app.command("doctor", help=cmd_doctor.HELP)(cmd_doctor.doctor)


_register()
