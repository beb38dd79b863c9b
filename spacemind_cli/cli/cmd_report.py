"""`spacemind report`: a static web page to browse a run: frames, questions, predictions, truth."""

from __future__ import annotations

from pathlib import Path

import typer

from ..errors import EXIT_PARTIAL
from .common import console, err_console, handle_errors, summary_table
from .progress import job_progress

HELP = (
    "Build a static web page to browse a run: each scene's sampled frames, its questions, the raw "
    "prediction, the parsed answer, the ground truth and the per-question score.\n\n"
    "OUTPUT is a folder (index.html, assets/, thumbs/) that opens from file:// with no server and no "
    "network, so it can be zipped and mailed. The overview shows the benchmark table with exactly the "
    "numbers `spacemind eval` prints, the per-category plot, the checkpoint, counts and the run's "
    "failures (ANSWERS.errors.jsonl). Questions can be filtered by category, dataset, right/wrong and "
    "text, sorted by score, and linked one by one (index.html#q-<id>).\n\n"
    "Thumbnails (160 px JPEGs) are made for exactly the frames in the answers' frame_indices and "
    "reused when the report is rebuilt into the same folder. Scenes that are missing or unreadable "
    "are marked, not fatal (exit code 1).\n\n"
    "--compare OTHER_ANSWERS shows two runs side by side: where they disagree and which one is right."
)


def print_summary(summary: dict) -> None:
    status = summary.get("scene_status") or {}
    bad = sum(v for k, v in status.items() if k != "ok")
    join = summary.get("join")
    b = summary["bytes"]
    scored = f", {summary['scored']} scored ({summary['benchmark']})" if summary.get("benchmark") else ", not scored"
    console.print(summary_table("spacemind report", [
        ("questions", f"{summary['questions']}{scored}"),
        ("scenes", f"{summary['scenes']}" + (f" ({bad} without all their frames)" if bad else "")),
        ("thumbnails", f"{summary['thumbnails']} ({summary['decoded']} decoded, {summary['cached']} reused)"),
        ("compare", f"{join['matched']} in both ({join['matched_on']}), {join['disagree']} disagree; "
                    f"{join['only_a']} only in A, {join['only_b']} only in B" if join else None),
        ("run failures", summary.get("run_failures") or None),
        ("page weight", f"{b['page'] / 1e6:.2f} MB page + {b['thumbnails'] / 1e6:.2f} MB thumbnails; "
                        f"first page {b['first_page'] / 1e6:.2f} MB"),
        ("time", f"{summary['timing_s']['total']:.1f} s"),
        ("open", Path(summary["index"]).resolve().as_uri()),
    ]))


@handle_errors
def report(
    answers: Path = typer.Argument(..., metavar="ANSWERS", help="Answers JSONL/Parquet from `spacemind answer`."),
    scenes: Path | None = typer.Option(None, "--scenes", "-s", help="Scenes root the answers were made from (without it the page has no frames)."),
    output: Path = typer.Option(..., "--output", "-o", help="Report folder: new, empty, or an earlier report (rebuilt in place)."),
    compare: Path | None = typer.Option(None, "--compare", help="Another answers file over the same questions, shown side by side."),
    title: str | None = typer.Option(None, "--title", help="Page title (default: the runs' names)."),
    benchmark: str = typer.Option("auto", "--benchmark", help="auto | vsibench | sqa3d | spbench (as `spacemind eval`)."),
    references: bool = typer.Option(True, "--references/--no-references", help="Show the paper's numbers in the table and plot."),
    workers: int = typer.Option(0, "--workers", min=0, help="Scenes decoded in parallel (0: up to 4)."),
):
    from ..report import ReportConfig, build_report

    config = ReportConfig(benchmark=benchmark, references=references, workers=workers)
    with job_progress("thumbnails", "scenes") as progress:
        summary = build_report(answers, scenes, output, compare=compare, title=title, progress=progress, config=config)
    print_summary(summary)
    if not summary["frames_shown"]:
        err_console.print("[yellow]no --scenes given: the report is built without frames[/]", highlight=False)
    problems = summary["scene_problems"]
    if problems:
        for p in problems[:5]:
            err_console.print(f"[yellow]{p['status']}[/]: {p['reason']}", highlight=False, soft_wrap=True)
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        err_console.print(f"[yellow]{len(problems)} scene(s) shown without all their frames{more}; marked in the report[/]")
        raise typer.Exit(EXIT_PARTIAL)
