"""`spacemind eval`: official benchmark scores."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from ..files import atomic_write_text
from .common import console, handle_errors

HELP = (
    "Score an answers file (ours, JSONL or Parquet, or lmms-eval per-sample logs) with the official "
    "VSI-Bench / SQA3D / SPBench rules, in the paper's column order.\n\n"
    "Defaults follow the official code exactly (first word of the reply, MRA over 10 thresholds with <=, "
    "per-type means, rel-direction types merged, unweighted overall). Variants others use are opt-in "
    "via --variant and labelled everywhere they are shown."
)


def _write(path: Path, text: str) -> None:
    atomic_write_text(path, lambda fh: fh.write(text), durable=False)


@handle_errors
def eval_command(
    answers: Path = typer.Argument(..., metavar="ANSWERS", help="Answers JSONL/Parquet from `spacemind answer`, or lmms-eval samples JSONL."),
    benchmark: str = typer.Option("auto", "--benchmark", help="auto | vsibench | sqa3d | spbench | spbench-si | spbench-mv"),
    json_out: Path | None = typer.Option(None, "--json", help="Write the scores under the official keys as JSON."),
    markdown: Path | None = typer.Option(None, "--markdown", help="Write the table as Markdown."),
    plot_out: Path | None = typer.Option(None, "--plot", help="Write a per-category bar chart (PNG)."),
    compare: list[Path] = typer.Option([], "--compare", help="Other runs to show beside this one: a scores JSON written by --json, or an answers file (scored the same way)."),
    references: bool = typer.Option(True, "--references/--no-references", help="Overlay the paper's published numbers."),
    variant: str = typer.Option("official", "--variant", help="official, or a labelled variant: micro, anywhere, lt, parsed, nonempty (combine with +)."),
    label: str | None = typer.Option(None, "--label", help="Name of this run in tables and plots."),
):
    from .. import api
    from ..eval import plot, render_table, to_json, to_markdown

    result = api.evaluate(answers, benchmark=benchmark, variant=variant, label=label)
    compare_paths = [str(p) for p in compare]
    console.print(render_table(result, compare=compare_paths, references=references))
    if json_out:
        _write(json_out, json.dumps(to_json(result), indent=2) + "\n")
        console.print(f"scores written to {json_out}")
    if markdown:
        _write(markdown, to_markdown(result, compare=compare_paths, references=references) + "\n")
        console.print(f"markdown written to {markdown}")
    if plot_out:
        plot(result, plot_out, compare=compare_paths, references=references)
        console.print(f"plot written to {plot_out}")
