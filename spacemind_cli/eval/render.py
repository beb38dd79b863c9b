"""Render an :class:`EvalResult`: rich table, markdown, JSON; load saved runs for ``--compare``."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.table import Table
from rich.text import Text

from spacemind_cli.errors import InputError, json_problem

from .references import Reference, references_for
from .result import RESULT_SCHEMA, EvalResult, Score

TITLES = {"vsibench": "VSI-Bench", "sqa3d": "SQA3D", "spbench": "SPBench"}
_COLUMN_ORDER = [
    "Avg.", "Overall", "Obj. Count", "Abs. Dist.", "Obj. Size", "Room Size", "Rel. Dist.",
    "Rel. Dir.", "Route Plan", "Appr. Order", "What", "Is", "How", "Can", "Which", "Others",
]  # fmt: skip
_GROUP_LABELS = {"SPBench": "SPBench overall*"}

CompareItem = EvalResult | str | Path

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------
# JSON
# ------------------------------------------------------------------------------------------
def _clean_float(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _clean_float(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_clean_float(x) for x in v]
    return v


def to_json(result: EvalResult, include_samples: bool = False) -> dict[str, Any]:
    """A JSON-ready dict. ``scores`` holds the benchmark's official keys (x100); ``metrics`` the
    table cells (used by ``--compare``). ``include_samples`` adds one entry per scored question."""
    out: dict[str, Any] = {
        "schema": RESULT_SCHEMA,
        "benchmark": result.benchmark,
        "variant": result.variant,
        "rules": result.rules,
        "label": result.label,
        "source": result.source,
        "input_format": result.input_format,
        "scores": dict(result.official),
        "metrics": [s.to_dict() for s in result.scores],
        "n_rows": result.n_rows,
        "n_scored": result.n_scored,
        "n_missing_prediction": result.n_missing_prediction,
        "n_unlabelled": result.n_unlabelled,
        "unscored": dict(result.unscored),
        "per_question_type": result.per_type,
        "notes": list(result.notes),
    }
    if include_samples:
        out["samples"] = result.samples
    return _clean_float(out)


def result_from_json(data: Any, source: str | Path = "") -> EvalResult:
    """Rebuild a result written by :func:`to_json` (for ``--compare``)."""
    if not isinstance(data, dict) or data.get("schema") != RESULT_SCHEMA or not isinstance(data.get("metrics"), list):
        raise InputError(f"{source}: not a `spacemind eval --json` result (schema {RESULT_SCHEMA})")
    try:
        scores = [Score.from_dict(d) for d in data["metrics"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{source}: malformed metrics entry ({exc})") from None
    rules = data.get("rules", 1)  # written before the rules were recorded: version 1
    if isinstance(rules, bool) or not isinstance(rules, int) or rules < 1:
        raise InputError(f"{source}: scoring rules {rules!r} is not a version number")
    return EvalResult(
        benchmark=str(data.get("benchmark")),
        variant=str(data.get("variant", "official")),
        source=str(source or data.get("source", "")),
        label=str(data.get("label") or Path(str(source)).stem),
        scores=scores,
        official=dict(data.get("scores") or {}),
        n_rows=int(data.get("n_rows") or 0),
        n_scored=int(data.get("n_scored") or 0),
        n_missing_prediction=int(data.get("n_missing_prediction") or 0),
        n_unlabelled=int(data.get("n_unlabelled") or 0),
        unscored=dict(data.get("unscored") or {}),
        per_type=dict(data.get("per_question_type") or {}),
        notes=list(data.get("notes") or []),
        rules=rules,
    )


def load_result_json(path: str | Path) -> EvalResult:
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}:{exc.lineno}: invalid JSON ({json_problem(exc)})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read ({exc})") from None
    return result_from_json(data, path)


def _result_json_data(path: Path) -> dict | None:
    """The object `path` holds if it is one written by `--json`, else None (an answers file)."""
    if path.suffix.lower() != ".json":
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("schema") == RESULT_SCHEMA else None


def load_compare_item(item: str | Path, result: EvalResult) -> EvalResult:
    """Another run to show beside `result`: a scores JSON written by `--json`, or an answers file
    (JSONL, Parquet, lmms-eval logs), scored here with the same benchmark and variant."""
    path = Path(item)
    if not path.exists():
        raise InputError(f"--compare {path}: no such file")
    data = _result_json_data(path)  # read and parsed once
    if data is not None:
        return result_from_json(data, path)
    from .evaluate import evaluate_file

    try:
        return evaluate_file(path, benchmark=result.benchmark, variant=result.variant)
    except InputError as exc:
        raise InputError(
            f"--compare {path}: neither a scores JSON written by `spacemind eval --json` nor an answers file "
            f"that can be scored as {result.benchmark} ({exc.message})"
        ) from None


def load_compare(result: EvalResult, compare: Sequence[CompareItem] | None) -> list[EvalResult]:
    out = []
    for item in compare or ():
        other = item if isinstance(item, EvalResult) else load_compare_item(item, result)
        if other.benchmark != result.benchmark:
            raise InputError(
                f"{other.source or other.label}: a {other.benchmark} result cannot be compared with {result.benchmark}"
            )
        if other.rules != result.rules:  # an old scores JSON: shown as such, never silently mixed
            log.warning("%s was scored under %s scoring rules v%d, this run under v%d; compare its answers file to "
                        "score both alike", other.source or other.label, TITLES.get(other.benchmark, other.benchmark),
                        other.rules, result.rules)
            other = dataclasses.replace(other, label=f"{other.label} (rules v{other.rules})")
        out.append(other)
    return out


# ------------------------------------------------------------------------------------------
# Layout shared by table, markdown and plot
# ------------------------------------------------------------------------------------------
@dataclass
class Series:
    label: str
    kind: str  # "run" | "compare" | "reference"
    values: dict[str, float | None]  # score id -> percent
    counts: dict[str, int]
    variant: str = "official"
    rules: int = 0  # the scoring rules' version (EvalResult.rules); 0 for references


def series_for(
    result: EvalResult, compare: Sequence[CompareItem] | None = None, references: bool = False
) -> list[Series]:
    def of(r: EvalResult, kind: str) -> Series:
        return Series(r.label, kind, {s.id: s.value for s in r.scores}, {s.id: s.n for s in r.scores}, r.variant,
                      r.rules)

    out = [of(result, "run")]
    out += [of(r, "compare") for r in load_compare(result, compare)]
    if references:
        refs: list[Reference] = references_for(result.benchmark)
        out += [Series(r.label, "reference", dict(r.values), {}) for r in refs]
    return out


def layout(result: EvalResult) -> tuple[list[str], list[str], dict[tuple[str, str], str]]:
    """(groups, columns, (group, column) -> score id) from the run's own cells."""
    groups = result.groups
    columns: list[str] = []
    ids: dict[tuple[str, str], str] = {}
    for s in result.scores:
        if s.column not in columns:
            columns.append(s.column)
        ids[(s.group, s.column)] = s.id
    rank = {c: i for i, c in enumerate(_COLUMN_ORDER)}
    first_seen = {c: i for i, c in enumerate(columns)}
    columns.sort(key=lambda c: (rank.get(c, len(rank)), first_seen[c]))
    return groups, columns, ids


def _fmt(v: float | None, digits: int) -> str:
    return "—" if v is None else f"{v:.{digits}f}"


def _row_label(series: Series, group: str, n_groups: int) -> str:
    g = _GROUP_LABELS.get(group, group)
    label = series.label
    if series.kind != "reference" and series.variant != "official":
        label = f"{label} [{series.variant}]"
    return f"{label} · {g}" if g else label


def _rows(result: EvalResult, series: list[Series], digits: int) -> list[tuple[Series, str, list[str], list[float | None]]]:
    groups, columns, ids = layout(result)
    rows = []
    for g in groups:
        for s in series:
            values = [s.values.get(ids[(g, c)]) if (g, c) in ids else None for c in columns]
            if s.kind == "reference" and all(v is None for v in values):
                continue
            rows.append((s, g, [_fmt(v, digits) for v in values], values))
    return rows


def _n_values(result: EvalResult, group: str, columns: list[str], ids: dict[tuple[str, str], str]) -> list[int | None]:
    by_id = {s.id: s.n for s in result.scores}
    return [by_id.get(ids[(group, c)]) if (group, c) in ids else None for c in columns]


def _caption(result: EvalResult) -> str:
    parts = [f"{result.n_scored} questions scored"]
    if result.n_missing_prediction:
        parts.append(f"{result.n_missing_prediction} without prediction (wrong)")
    if result.n_unlabelled:
        parts.append(f"{result.n_unlabelled} without ground truth (unscored)")
    if result.unscored:
        parts.append("unscored: " + ", ".join(f"{k} ({v})" for k, v in sorted(result.unscored.items())))
    parts.append(f"variant: {result.variant}")
    return " · ".join(parts)


# ------------------------------------------------------------------------------------------
# Rich table
# ------------------------------------------------------------------------------------------
def render_table(
    result: EvalResult,
    compare: Sequence[CompareItem] | None = None,
    references: bool = False,
    digits: int = 1,
) -> Table:
    """One row per run (and per part / metric group), columns in the paper's order, values in %.
    The best value of each column within a group is bold when several rows are shown."""
    series = series_for(result, compare, references)
    groups, columns, ids = layout(result)
    apart = _other_counts(series, ids)
    caption = _caption(result)
    if apart:
        caption += (" · the runs were scored on different question sets (see each run's n): their scores are not "
                    "on the same questions")
    table = Table(
        title=f"{TITLES.get(result.benchmark, result.benchmark)} — {result.label}",
        caption=caption,
        header_style="bold",
        show_lines=False,
    )
    table.add_column("Run", style="bold" if len(series) == 1 else None, no_wrap=True)
    for c in columns:
        table.add_column(c, justify="right")
    rows = _rows(result, series, digits)
    for g in groups:
        group_rows = [r for r in rows if r[1] == g]
        best = {}
        if len(group_rows) > 1:
            for j in range(len(columns)):
                vals = [v for r in group_rows if (v := r[3][j]) is not None]
                if vals:
                    best[j] = max(vals)
        for s, _, cells, values in group_rows:
            label = Text(_row_label(s, g, len(groups)))
            if s.kind == "reference":
                label.stylize("italic dim")
            elif s.kind == "run":
                label.stylize("bold cyan")
            styled = []
            for j, (cell, v) in enumerate(zip(cells, values)):
                t = Text(cell)
                if v is not None and j in best and v == best[j]:
                    t.stylize("bold")
                if s.kind == "reference":
                    t.stylize("dim")
                styled.append(t)
            table.add_row(label, *styled)
        # One "n" row per run of groups with the same counts (SQA3D's EM@1 / EM@R1 share one).
        n_values = _n_values(result, g, columns, ids)
        nxt = groups[groups.index(g) + 1] if groups.index(g) + 1 < len(groups) else None
        if nxt is not None and _n_values(result, nxt, columns, ids) == n_values:
            continue
        g_label = _GROUP_LABELS.get(g, g)
        same_as_prev = len(groups) > 1 and all(_n_values(result, x, columns, ids) == n_values for x in groups)
        suffix = f" · {g_label}" if g_label and len(groups) > 1 and not same_as_prev else ""
        n_cells = [Text("" if n is None else str(n), style="dim") for n in n_values]
        table.add_row(Text(f"  n (questions){suffix}" + (f" · {result.label}" if apart else ""), style="dim"), *n_cells)
        for s in apart:  # a compared run on other questions: its own counts, never hidden behind ours
            counts = [s.counts.get(ids[(g, c)]) if (g, c) in ids else None for c in columns]
            table.add_row(Text(f"  n (questions){suffix} · {s.label}", style="dim"),
                          *[Text("" if n is None else str(n), style="dim") for n in counts])
    return table


def _other_counts(series: list[Series], ids: dict[tuple[str, str], str]) -> list[Series]:
    """The compared runs whose question counts differ from the run's in any cell."""
    run = series[0]
    return [s for s in series[1:] if s.kind == "compare"
            and any(s.counts.get(i) != run.counts.get(i) for i in ids.values())]


# ------------------------------------------------------------------------------------------
# Markdown
# ------------------------------------------------------------------------------------------
def to_markdown(
    result: EvalResult,
    compare: Sequence[CompareItem] | None = None,
    references: bool = False,
    digits: int = 1,
) -> str:
    """A GitHub-flavoured markdown section: heading, table (paper column order), notes."""
    series = series_for(result, compare, references)
    groups, columns, _ = layout(result)
    title = TITLES.get(result.benchmark, result.benchmark)
    lines = [f"### {title} — {result.label}", ""]
    lines.append("| Run | " + " | ".join(columns) + " |")
    lines.append("|---|" + "|".join("---:" for _ in columns) + "|")
    for s, g, cells, _ in _rows(result, series, digits):
        label = _row_label(s, g, len(groups)).replace("|", "\\|")
        if s.kind == "reference":
            label = f"*{label}*"
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(f"Scores in %. {_caption(result)}.")
    if any(s.kind == "reference" for s in series):
        refs = references_for(result.benchmark)
        lines.append(
            "References: "
            + "; ".join(f"{r.label}: {r.source}" + (f" ({r.note})" if r.note else "") for r in refs)
            + "."
        )
    for other in series[1:]:
        if other.kind == "compare" and other.variant != result.variant:
            lines.append(f"Note: {other.label} was scored with variant '{other.variant}'.")
        if other.kind == "compare" and other.rules != result.rules:
            lines.append(f"Note: {other.label} was scored under {title} scoring rules v{other.rules}, this run under "
                         f"v{result.rules}.")
    if result.notes:
        lines.append("")
        lines += [f"- {n}" for n in result.notes]
    return "\n".join(lines) + "\n"
