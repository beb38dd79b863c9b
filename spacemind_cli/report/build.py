"""build_report: answers (+ a compared run) + scenes -> a static folder that opens from file://.

    DIR/index.html          overview (eval's table, plot, failures) + every question as JSON
    DIR/assets/app.js       paging, filters, search, sort (no network, no libraries)
    DIR/assets/style.css
    DIR/assets/scores.png   eval's per-category plot
    DIR/thumbs/xx/<h>.jpg   160 px thumbnails of the frames each scene was answered from
    DIR/report.json         what was built (counts, bytes, timings); marks DIR as a report

Every file is written atomically (temp file + rename), thumbnails first and index.html last, so
an interrupted build leaves the previous report readable. A rebuild into the same DIR reuses the
thumbnails it finds (content-addressed, see thumbs.py) and removes the ones no longer shown.
DIR must be new, empty, or an earlier report: nothing outside it is touched.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from ..errors import InputError, resource_error
from ..eval.render import TITLES
from ..files import atomic_write_text
from ..scenes import check_root
from . import page
from .data import PageModel, Run, build_model, load_run
from .thumbs import NOT_SHOWN, OK, SceneRequest, ThumbConfig, make_thumbnails, prune

log = logging.getLogger(__name__)

MARKER = "report.json"


@dataclass(frozen=True)
class ReportConfig:
    benchmark: str = "auto"  # as `spacemind eval --benchmark`
    references: bool = True  # the paper rows in the table and plot, as `spacemind eval` shows them
    thumb_size: int = 160  # longest side of a thumbnail, pixels
    workers: int = 0  # scenes thumbnailed in parallel; 0 = min(4, CPUs)
    plot: bool = True


def _label(path: Path, other: Path | None) -> str:
    """A run's name: the file's stem (as `spacemind eval` names it), with its folder when both
    runs have the same stem."""
    if other is not None and other.stem == path.stem:
        return f"{path.parent.name}/{path.stem}" if path.parent.name else str(path)
    return path.stem


def _is_report(out: Path) -> bool:
    try:
        data = json.loads((out / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and str(data.get("schema", "")).startswith("spacemind-report/")


def check_output(out: Path, inputs: list[Path]) -> None:
    """Refuse any DIR that is not new, empty or an earlier report, so no user file is replaced."""
    if out.exists() and not out.is_dir():
        raise InputError(f"--output {out} exists and is not a folder")
    for p in inputs:
        try:
            if p.resolve() == out.resolve() or out.resolve() in p.resolve().parents:
                raise InputError(f"--output {out} holds the input {p}; give the report its own folder")
        except OSError:
            pass
    if out.is_dir():
        try:
            non_empty = any(out.iterdir())
        except OSError as exc:
            raise resource_error(exc, out) from None
        if non_empty and not _is_report(out):
            raise InputError(
                f"--output {out} is a folder that is not empty and holds no spacemind report ({MARKER}); "
                "give a new or empty folder"
            )


def create_output(out: Path) -> None:
    """DIR and its marker, written first so an interrupted build is still recognised as ours."""
    try:
        (out / "assets").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise resource_error(exc, out) from None
    if not (out / MARKER).exists():
        _write_text(out / MARKER, json.dumps({"schema": page.SCHEMA, "state": "building"}) + "\n")


def _write_text(path: Path, text: str) -> None:
    atomic_write_text(path, lambda fh: fh.write(text))


def _write_plot(result, compare: list, references: bool, out: Path) -> str | None:
    from ..eval import plot

    plot(result, out / "assets" / "scores.png", compare=compare or None, references=references, dpi=110)  # atomic
    return "assets/scores.png"


def first_page(model: PageModel, thumbs: dict) -> dict:
    """What the page shows before any click: the first PAGE_SIZE questions in scene order (the
    default sort), their scenes and the thumbnails of those scenes' strips (an upper bound on
    what the browser fetches: the images are lazy)."""
    order = sorted(range(len(model.questions)), key=lambda i: (model.questions[i]["sc"], i))[: page.PAGE_SIZE]
    groups: list[tuple[int, tuple[int, ...]]] = []
    for i in order:
        q = model.questions[i]
        key = (q["sc"], tuple(q["fs"]))
        if not groups or groups[-1] != key:
            groups.append(key)
    files: set[str] = set()
    for sc, fss in groups:
        entry = model.scenes[sc]
        th = thumbs.get(entry.key)
        for fs in set(fss):
            if fs >= 0 and th is not None:
                files |= {th.frames[i][0] for i in entry.frame_sets[fs] if i in th.frames}
    return {"questions": len(order), "groups": len(groups), "thumbnails": len(files), "files": sorted(files)}


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def build_report(
    answers: str | Path,
    scenes_root: str | Path | None,
    output: str | Path,
    compare: str | Path | None = None,
    title: str | None = None,
    progress=None,
    config: ReportConfig | None = None,
) -> dict:
    """Build the report folder and return a summary (counts, bytes, timings). Raises InputError
    for unreadable answers files or an unusable DIR; missing or unreadable scenes are marked in
    the report, never raised. ``progress`` gets {"done", "total", "cached", "failed", "scene"}
    per scene thumbnailed."""
    cfg = config or ReportConfig()
    t0 = time.perf_counter()
    answers = Path(answers)
    out = Path(output)
    compare_path = Path(compare) if compare is not None else None
    root = check_root(scenes_root) if scenes_root is not None else None
    check_output(out, [p for p in (answers, compare_path, root) if p is not None])

    # Inputs are read before DIR is made: a bad answers file leaves nothing behind.
    run_a = load_run(answers, _label(answers, compare_path), cfg.benchmark)
    runs: list[Run] = [run_a]
    if compare_path is not None:
        bench_b = run_a.benchmark or cfg.benchmark  # score B by A's rules, so the columns line up
        runs.append(load_run(compare_path, _label(compare_path, answers), bench_b))
    model = build_model(runs)
    t_load = time.perf_counter()
    create_output(out)
    # A rebuild that fails half-way must not leave an earlier index.html over new files: the page
    # exists only when every file it points at was written (it is written last).
    (out / "index.html").unlink(missing_ok=True)

    requests = [SceneRequest(s.key, s.fields, s.indices) for s in model.scenes]
    tcfg = ThumbConfig(size=cfg.thumb_size, workers=cfg.workers)
    thumbs = make_thumbnails(requests, root, out, tcfg, progress)
    t_thumbs = time.perf_counter()

    table = plot_rel = None
    compared = [r.result for r in runs[1:] if r.result is not None]
    if run_a.result is not None:
        table = page.scores_table(run_a.result, compared, cfg.references)
        if cfg.plot:
            plot_rel = _write_plot(run_a.result, compared, cfg.references, out)
    static = page.write_static(out, _write_text)
    bench = TITLES.get(run_a.benchmark or "", run_a.benchmark or "not scored")
    title = title or ("spacemind report: " + " vs ".join(r.label for r in runs))
    ckpts = sorted({str(r.get("checkpoint_id")) for r in run_a.records if r.get("checkpoint_id")})
    subtitle = " · ".join(
        x
        for x in (
            " vs ".join(r.path.name for r in runs),
            bench,
            f"checkpoint {', '.join(ckpts)}" if ckpts else "",
            f"built {datetime.now().astimezone().strftime('%Y-%m-%d %H:%M')}",
        )
        if x
    )
    data = page.page_data(runs, model, thumbs)
    html = page.render_index(
        title,
        subtitle,
        page.overview_html(runs, model, thumbs, table, plot_rel),
        page.controls_html(runs, model),
        data,
    )
    _write_text(out / "index.html", html)
    shown = {v[0] for t in thumbs.values() for v in t.frames.values()}
    pruned = prune(out, shown)
    t_write = time.perf_counter()

    fp = first_page(model, thumbs)
    page_bytes = _size(out / "index.html") + sum(_size(out / rel) for rel in static + ([plot_rel] if plot_rel else []))
    thumb_bytes = sum(_size(out / rel) for rel in shown)
    status = Counter(t.status for t in thumbs.values())
    summary = {
        "schema": page.SCHEMA,
        "title": title,
        "answers": str(answers),
        "compare": str(compare_path) if compare_path else None,
        "scenes_root": str(root) if root else None,
        "output": str(out),
        "index": str(out / "index.html"),
        "benchmark": run_a.benchmark,
        "not_scored": run_a.score_error,
        "questions": len(model.questions),
        "scored": run_a.result.n_scored if run_a.result else 0,
        "scenes": len(model.scenes),
        "scene_status": dict(status),
        "scene_problems": [
            {"scene": t.key, "status": t.status, "reason": t.note} for t in thumbs.values()
            if t.status not in (OK, NOT_SHOWN)
        ],
        "frames_shown": root is not None,
        "run_failures": len(run_a.errors),
        "join": model.join,
        "thumbnails": len(shown),
        "decoded": sum(t.decoded for t in thumbs.values()),
        "cached": sum(t.cached for t in thumbs.values()),
        "pruned": pruned,
        "bytes": {
            "page": page_bytes,  # index.html + assets (scripts, styles, plot)
            "index_html": _size(out / "index.html"),
            "thumbnails": thumb_bytes,
            "first_page": page_bytes + sum(_size(out / f) for f in fp["files"]),
        },
        "first_page": {k: v for k, v in fp.items() if k != "files"},
        "timing_s": {
            "load_and_score": round(t_load - t0, 4),
            "thumbnails": round(t_thumbs - t_load, 4),
            "write": round(t_write - t_thumbs, 4),
            "total": round(time.perf_counter() - t0, 4),
        },
    }
    _write_text(out / MARKER, json.dumps(summary, indent=2, default=str) + "\n")
    return summary
