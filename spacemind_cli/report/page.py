"""index.html: the overview rendered here (readable without JavaScript), the questions as one JSON
blob that ``static/app.js`` pages through in the browser.

The benchmark table is the very table ``spacemind eval`` prints: :func:`spacemind_cli.eval.render_table`
builds a rich Table and :func:`scores_table` copies its cells, so the page cannot show other
numbers than the terminal.
"""

from __future__ import annotations

import html
import json
import math
from collections import Counter
from importlib import resources
from pathlib import Path
from typing import Any

from .data import PARTLY, RIGHT, UNSCORED, WRONG, PageModel, Run
from .thumbs import NOT_SHOWN, OK, SceneThumbs

SCHEMA = "spacemind-report/1"
STATIC_FILES = ("app.js", "style.css")
PAGE_SIZE = 50  # questions per page at first load
_FAILURE_GROUPS = 200  # failure reasons listed in full; the rest are counted


def e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def static_text(name: str) -> str:
    return resources.files(__package__).joinpath("static", name).read_text(encoding="utf-8")


# ------------------------------------------------------------------------------------------
# The benchmark table, cell for cell from eval's rich table
# ------------------------------------------------------------------------------------------
def scores_table(result, compare: list | None = None, references: bool = True) -> dict:
    """{"title", "caption", "columns", "rows": [{"kind", "cells": [{"text", "best"}]}]} from the
    rich Table ``spacemind eval`` prints. Row kinds come from the styles render_table gives its
    labels: run (bold cyan), compare (plain), reference (italic dim), count (the "n" rows)."""
    from rich.text import Text

    from ..eval import render_table

    table = render_table(result, compare=compare or None, references=references)
    columns = [str(c.header) for c in table.columns]
    cells_by_col = [list(c.cells) for c in table.columns]
    rows = []
    for i in range(table.row_count):
        cells: list[dict[str, Any]] = []
        for col in cells_by_col:
            cell = col[i]
            text = cell.plain if isinstance(cell, Text) else str(cell)
            styles = " ".join(str(s.style) for s in cell.spans) + " " + str(cell.style) if isinstance(cell, Text) else ""
            cells.append({"text": text, "best": "bold" in styles.split()})
        label = cells_by_col[0][i]
        lstyle = (" ".join(str(s.style) for s in label.spans) + " " + str(label.style)) if isinstance(label, Text) else ""
        if cells[0]["text"].lstrip().startswith("n (questions)"):
            kind = "count"
        elif "italic" in lstyle:
            kind = "reference"
        elif "cyan" in lstyle:
            kind = "run"
        else:
            kind = "compare"
        cells[0]["best"] = False
        rows.append({"kind": kind, "cells": cells})
    return {"title": str(table.title or ""), "caption": str(table.caption or ""), "columns": columns, "rows": rows}


def table_html(t: dict) -> str:
    head = "".join(f"<th>{e(c)}</th>" for c in t["columns"])
    body = []
    for row in t["rows"]:
        tds = "".join(
            f'<td class="best">{e(c["text"].strip())}</td>' if c["best"] else f"<td>{e(c['text'].strip())}</td>"
            for c in row["cells"]
        )
        body.append(f'<tr class="row-{row["kind"]}">{tds}</tr>')
    return (
        f'<div class="scores-wrap"><div class="title">{e(t["title"])}</div><table class="scores" id="scores">'
        f'<caption>{e(t["caption"])}</caption><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'
    )


# ------------------------------------------------------------------------------------------
# Data for app.js
# ------------------------------------------------------------------------------------------
def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def page_data(runs: list[Run], model: PageModel, thumbs: dict[str, SceneThumbs]) -> dict:
    scenes = []
    for entry in model.scenes:
        th = thumbs.get(entry.key)
        ds = entry.fields.get("dataset")
        scenes.append(
            {
                "key": entry.key,
                "ds": str(ds) if ds is not None else "",
                "kind": th.kind if th else None,
                "st": th.status if th else "missing",
                "note": th.note if th else "",
                "notes": entry.notes,
                "sets": [list(s) for s in entry.frame_sets],
                "th": {str(i): list(v) for i, v in sorted(th.frames.items())} if th else {},
            }
        )
    names = ["A", "B"]
    return _finite(
        {
            "schema": SCHEMA,
            "page_size": PAGE_SIZE,
            "runs": [
                {"label": r.label, "short": names[i] if len(runs) > 1 else r.label, "source": str(r.path)}
                for i, r in enumerate(runs)
            ],
            "questions": model.questions,
            "scenes": scenes,
        }
    )


def embed_json(data: dict) -> str:
    """JSON safe inside <script type="application/json">: no "<", ">" or "&" that could end it."""
    try:
        text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates (odd file names): escape instead of failing
        text = json.dumps(data, ensure_ascii=True, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


# ------------------------------------------------------------------------------------------
# Overview
# ------------------------------------------------------------------------------------------
def _stat(value: Any, label: str, bad: bool = False) -> str:
    return f'<div class="stat{" bad" if bad else ""}"><b>{e(value)}</b><span>{e(label)}</span></div>'


def _verdicts(model: PageModel, run: int) -> Counter:
    return Counter(q["r"][run]["v"] for q in model.questions if q["r"][run] is not None)


def _run_rows(runs: list[Run]) -> str:
    rows = []
    for i, run in enumerate(runs):
        name = f"{'AB'[i]}: {run.label}" if len(runs) > 1 else run.label
        ckpts = sorted({str(r.get("checkpoint_id")) for r in run.records if r.get("checkpoint_id")})
        keys = sorted({str(r.get("run_key")) for r in run.records if r.get("run_key")})
        s = run.summary
        bits = []
        if s is not None and isinstance(s.executor, str):
            bits.append(f"executor {s.executor}")
        if s is not None and isinstance(s.elapsed_s, (int, float)):
            bits.append(f"{s.elapsed_s:.1f} s")
        if s is not None and isinstance(s.questions_per_s, (int, float)) and s.questions_per_s:
            bits.append(f"{s.questions_per_s:.2f} questions/s")
        rows.append(
            f"<tr><th>{e(name)}</th><td class='mono'>{e(run.path)}</td>"
            f"<td>checkpoint <span class='mono'>{e(', '.join(ckpts) or '—')}</span>"
            + (f" · run <span class='mono'>{e(', '.join(keys))}</span>" if keys else "")
            + f"</td><td>{len(run.records)} rows{' · ' + e(', '.join(bits)) if bits else ''}</td></tr>"
        )
    return f'<table class="runinfo">{"".join(rows)}</table>'


def _failures_html(run: Run, label: str) -> str:
    if not run.errors:
        return f'<p class="ok-line">{e(label)}{e(run.errors_note)}.</p>'
    groups: dict[tuple, dict] = {}
    for row in run.errors:
        key = (str(row.get("stage") or ""), str(row.get("error") or row.get("message") or "(no reason given)"))
        g = groups.setdefault(key, {"n": 0, "scenes": [], "ids": []})
        g["n"] += 1
        scene = row.get("scene")
        if scene and scene not in g["scenes"]:
            g["scenes"].append(scene)
        qid = row.get("id") if row.get("id") is not None else (f"line {row['line']}" if row.get("line") else None)
        if qid is not None:
            g["ids"].append(str(qid))
    ordered = sorted(groups.items(), key=lambda kv: -kv[1]["n"])
    rows = []
    for (stage, reason), g in ordered[:_FAILURE_GROUPS]:
        ids = ", ".join(g["ids"][:12]) + (f" … (+{len(g['ids']) - 12})" if len(g["ids"]) > 12 else "")
        scenes = ", ".join(g["scenes"][:6]) + (f" … (+{len(g['scenes']) - 6})" if len(g["scenes"]) > 6 else "")
        rows.append(
            f"<tr><td class='n'>{g['n']}</td><td>{e(stage)}</td><td>{e(reason)}</td><td>{e(scenes)}</td><td class='mono'>{e(ids)}</td></tr>"
        )
    more = len(ordered) - _FAILURE_GROUPS
    tail = f"<p class='notes'>… and {more} more distinct reasons.</p>" if more > 0 else ""
    return (
        f'<details class="problems" open><summary>{e(label)}{len(run.errors)} question(s) failed in the run '
        f"({e(run.errors_note)})</summary><table class='failures'><thead><tr><th>n</th><th>stage</th><th>reason</th>"
        f"<th>scenes</th><th>questions</th></tr></thead><tbody>{''.join(rows)}</tbody></table>{tail}</details>"
    )


def _scene_problems_html(model: PageModel, thumbs: dict[str, SceneThumbs]) -> str:
    counts = Counter(q["sc"] for q in model.questions)
    bad = [(i, s, thumbs.get(s.key)) for i, s in enumerate(model.scenes)]
    bad = [(i, s, t) for i, s, t in bad if t is None or t.status not in (OK, NOT_SHOWN)]
    if not bad and any(t.status == NOT_SHOWN for t in thumbs.values()):
        return '<p class="ok-line">Built without frames: no scenes root was given (--scenes).</p>'
    if not bad:
        return f'<p class="ok-line">Frames of all {len(model.scenes)} scene(s) found and thumbnailed.</p>'
    rows = "".join(
        f"<tr><td><a href='#scene={e(_quote(s.key))}'>{e(s.key or '(no scene)')}</a></td>"
        f"<td>{e(t.status if t else 'missing')}</td><td class='n'>{counts[i]}</td><td>{e(t.note if t else '')}</td></tr>"
        for i, s, t in bad
    )
    return (
        f'<details class="problems" open><summary>{len(bad)} of {len(model.scenes)} scene(s) without all their '
        'frames (their questions are still listed)</summary><table class="failures" id="scene-problems"><thead><tr>'
        f"<th>scene</th><th>status</th><th>questions</th><th>reason</th></tr></thead><tbody>{rows}</tbody></table></details>"
    )


def _quote(text: str) -> str:
    from urllib.parse import quote

    return quote(text, safe="")


def _options(values: list[tuple[str, str]], all_label: str) -> str:
    return f'<option value="">{e(all_label)}</option>' + "".join(
        f'<option value="{e(v)}">{e(label)}</option>' for v, label in values
    )


def controls_html(runs: list[Run], model: PageModel) -> str:
    qs = model.questions
    cats = Counter(q["cat"] for q in qs)
    order = [c for c in _column_order(runs[0]) if c in cats] + sorted(c for c in cats if c not in _column_order(runs[0]))
    dss = Counter(q["ds"] for q in qs if q["ds"])
    scene_counts = Counter(q["sc"] for q in qs)
    res = []
    labels = {RIGHT: "right", PARTLY: "partly right", WRONG: "wrong", UNSCORED: "unscored"}
    for i, _ in enumerate(runs):
        counts = _verdicts(model, i)
        prefix = "" if i == 0 else "b:"
        who = f"{'AB'[i]}: " if len(runs) > 1 else ""
        res += [(prefix + v, f"{who}{labels[v]} ({counts[v]})") for v in (RIGHT, PARTLY, WRONG, UNSCORED) if counts[v]]
    parts = [
        '<input id="f-search" type="search" placeholder="Search questions, answers, ids, scenes…" aria-label="search">',
        f'<select id="f-cat" aria-label="category">{_options([(c, f"{c} ({cats[c]})") for c in order], "All categories")}</select>',
        f'<select id="f-res" aria-label="result">{_options(res, "Any result")}</select>',
    ]
    if len(dss) > 1:  # one dataset: nothing to choose
        parts.insert(2, f'<select id="f-ds" aria-label="dataset">{_options([(d, f"{d} ({n})") for d, n in sorted(dss.items())], "All datasets")}</select>')
    if len(runs) > 1 and model.join:
        j = model.join
        cmp = [
            ("disagree", f"runs disagree ({j['disagree']})"),
            ("a-better", f"A scores higher ({j['a_better']})"),
            ("b-better", f"B scores higher ({j['b_better']})"),
            ("agree", f"runs agree ({j['matched'] - j['disagree']})"),
            ("only", f"in one run only ({j['only_a'] + j['only_b']})"),
        ]
        parts.append(f'<select id="f-cmp" aria-label="compare">{_options(cmp, "A and B: all")}</select>')
    scenes = [(s.key, f"{s.key or '(no scene)'} ({scene_counts[i]})") for i, s in enumerate(model.scenes)]
    parts.append(f'<select id="f-scene" aria-label="scene">{_options(scenes, "All scenes")}</select>')
    sorts = [("scene", "Sort: by scene"), ("file", "Sort: file order"), ("score-asc", "Sort: score, lowest first"), ("score-desc", "Sort: score, highest first")]
    if len(runs) > 1:
        sorts += [("diff-a", "Sort: A better than B first"), ("diff-b", "Sort: B better than A first")]
    parts.append('<select id="f-sort" aria-label="sort">' + "".join(f'<option value="{v}">{e(t)}</option>' for v, t in sorts) + "</select>")
    parts.append('<button id="f-reset" type="button">Reset</button>')
    return f'<div class="controls">{"".join(parts)}</div>'


def _column_order(run: Run) -> list[str]:
    if run.result is None:
        return []
    return [s.column for s in run.result.scores]


def pager_html(top: bool) -> str:
    sizes = "".join(
        f'<option value="{n}"{" selected" if n == PAGE_SIZE else ""}>{n} per page</option>'
        for n in sorted({20, PAGE_SIZE, 100, 500})
    )
    extra = f'<select id="f-n" aria-label="page size">{sizes}</select>' if top else ""
    count = '<span id="count"></span>' if top else '<span class="grow"></span>'
    return (
        f'<div class="pager">{count}{extra}<button class="prev" type="button">‹ previous</button>'
        '<span class="page"></span><button class="next" type="button">next ›</button></div>'
    )


def overview_html(
    runs: list[Run],
    model: PageModel,
    thumbs: dict[str, SceneThumbs],
    table: dict | None,
    plot_rel: str | None,
) -> str:
    a = runs[0]
    n_bad = sum(1 for s in model.scenes if (thumbs.get(s.key) is None or thumbs[s.key].status not in (OK, NOT_SHOWN)))
    n_thumbs = sum(len(t.frames) for t in thumbs.values())
    stats = [
        _stat(len(model.questions), "questions"),
        _stat(len(model.scenes), "scenes"),
        _stat(n_bad, "scenes without all frames", bad=bool(n_bad)),
        _stat(len(a.errors), "failed in the run", bad=bool(a.errors)),
        _stat(n_thumbs, "frame thumbnails"),
    ]
    for i, run in enumerate(runs):
        if run.result is None:
            continue
        v = _verdicts(model, i)
        name = f"{'AB'[i]}: {run.label}" if len(runs) > 1 else run.label
        parts = [f'<span class="c-right">{v[RIGHT]} right</span>']
        if v[PARTLY]:
            parts.append(f'<span class="c-partly">{v[PARTLY]} partly</span>')
        parts.append(f'<span class="c-wrong">{v[WRONG]} wrong</span>')
        stats.append(f'<div class="stat wide"><b>{" · ".join(parts)}</b><span>{e(name)}: {run.result.n_scored} scored by eval</span></div>')
    if model.join:
        j = model.join
        stats.append(
            f'<div class="stat wide"><b>{j["disagree"]} disagree</b><span>A better on {j["a_better"]}, '
            f'B better on {j["b_better"]}, of {j["matched"]} in both</span></div>'
        )
    out = [f'<div class="stats">{"".join(stats)}</div>', _run_rows(runs)]

    out.append("<h2>Scores</h2>")
    if table is not None:
        out.append(table_html(table))
        if plot_rel:
            out.append(f'<figure class="plot"><img src="{e(plot_rel)}" alt="scores per category" loading="lazy"></figure>')
    else:
        out.append(f'<p class="notes">Not scored: {e(a.score_error)}</p>')
    notes = list(a.result.notes) if a.result else []
    for run in runs[1:]:
        if run.result is None:
            notes.append(f"{run.label}: not scored ({run.score_error})")
    if model.join:
        j = model.join
        notes.append(
            f"runs matched on {j['matched_on']}: {j['matched']} question(s) in both, {j['only_a']} only in A, "
            f"{j['only_b']} only in B"
        )
    if notes:
        out.append('<ul class="notes">' + "".join(f"<li>{e(n)}</li>" for n in notes) + "</ul>")

    out.append("<h2>Problems</h2>")
    out.append(_scene_problems_html(model, thumbs))
    for i, run in enumerate(runs):
        out.append(_failures_html(run, f"{'AB'[i]}: " if len(runs) > 1 else ""))
    return "\n".join(out)


def render_index(title: str, subtitle: str, overview: str, controls: str, data: dict) -> str:
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="spacemind report">
<title>{e(title)}</title>
<link rel="stylesheet" href="assets/style.css">
</head>
<body>
<header class="top"><div class="inner"><h1>{e(title)}</h1><p class="sub">{e(subtitle)}</p></div></header>
<main>
<section id="overview">
{overview}
</section>
<section id="browse">
<h2>Questions</h2>
{controls}
{pager_html(top=True)}
<div id="list"><p class="empty-list">Loading… (this page needs JavaScript to list the questions)</p></div>
{pager_html(top=False)}
</section>
<footer>Built by <code>spacemind report</code>. Scores are those of <code>spacemind eval</code> with the official rules. Opens offline: everything is in this folder.</footer>
</main>
<div id="lightbox" hidden></div>
<script id="report-data" type="application/json">{embed_json(data)}</script>
<script src="assets/app.js"></script>
</body>
</html>
"""


def write_static(out_dir: Path, write_text) -> list[str]:
    """Copy app.js and style.css to DIR/assets/ with `write_text(path, text)`; returns their paths."""
    written = []
    for name in STATIC_FILES:
        rel = f"assets/{name}"
        write_text(out_dir / rel, static_text(name))
        written.append(rel)
    return written
