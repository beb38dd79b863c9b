"""Per-category bar chart of a run, optionally with other runs and published reference numbers.

Uses matplotlib's Agg canvas directly (no pyplot, no global backend switch), 200 dpi.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from spacemind_cli.files import atomic_target

from .render import TITLES, CompareItem, layout, series_for
from .result import EvalResult

log = logging.getLogger(__name__)

_RUN_COLOR = "#1f4e79"
_COMPARE_COLORS = ["#e07a5f", "#3d9970", "#f2a541", "#8e6c8a", "#5b8e7d", "#c44536", "#7f7f7f"]
_REFERENCE_STYLES = [("#d9d9d9", "//"), ("#a6a6a6", "\\\\"), ("#ececec", "xx"), ("#bfbfbf", "..")]
_GROUP_LABELS = {"SPBench": "overall*"}
_YLABEL = {"vsibench": "Accuracy / MRA (%)", "sqa3d": "Exact match (%)", "spbench": "Accuracy / MRA (%)"}


def _plain(text: str) -> str:
    """A run's label as plain text: matplotlib reads `$...$` as math (a file named `a$b.jsonl`
    crashed the plot) and `_`-led labels as hidden; dollars are escaped, a leading `_` guarded."""
    text = text.replace("$", r"\$")
    return " " + text if text.startswith("_") else text


def plot(
    result: EvalResult,
    out_png: str | Path,
    compare: Sequence[CompareItem] | None = None,
    references: bool = True,
    title: str | None = None,
    dpi: int = 200,
) -> Path:
    """Write a grouped bar chart (one cluster per paper column) to ``out_png`` (atomically) and
    return its path.

    ``compare``: other results (:class:`EvalResult` or ``--json`` files) of the same benchmark.
    ``references``: overlay the published numbers of :mod:`spacemind_cli.eval.references`
    (hatched grey bars) where they exist.
    """
    import matplotlib

    # Labels are file names and run names: plain text whatever the user's matplotlibrc says.
    with matplotlib.rc_context({"text.usetex": False}):
        return _plot(result, out_png, compare, references, title, dpi)


def _plot(result: EvalResult, out_png: str | Path, compare, references: bool, title: str | None, dpi: int) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.container import BarContainer
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    series = series_for(result, compare, references)
    groups, columns, ids = layout(result)
    slots: list[tuple[str, str, str]] = [(g, c, ids[(g, c)]) for g in groups for c in columns if (g, c) in ids]
    # drop reference series that have nothing on this chart
    slot_ids = {sid for _, _, sid in slots}
    series = [s for s in series if s.kind != "reference" or any(s.values.get(i) is not None for i in slot_ids)]

    # x positions with a gap between groups
    xs: list[float] = []
    x = 0.0
    group_spans: list[tuple[str, float, float]] = []
    averages = {s.id for s in result.scores if s.is_average}
    for g in groups:
        start = x
        for gg, _, sid in slots:
            if gg == g:
                xs.append(x)
                x += 1.35 if sid in averages else 1.0  # a little air after the average column
        group_spans.append((g, start, x - 1.0))
        x += 0.6
    n_series = len(series)
    # Bars are centred per slot over the series that have a value there, so a column that only
    # this run fills is not pushed off-centre by empty reference slots.
    present = [[k for k, s in enumerate(series) if s.values.get(sid) is not None] for _, _, sid in slots]
    per_slot = max((len(p) for p in present), default=1) or 1
    width = min(0.8 / per_slot, 0.38)
    fig_w = max(6.5, 1.2 + len(slots) * (0.42 + 0.22 * per_slot))
    fig = Figure(figsize=(min(fig_w, 22.0), 4.6), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)

    label_size = 7 if per_slot <= 2 else 6
    rotate = per_slot >= 3
    top = 0.0
    handles: list[Patch | BarContainer] = []
    n_compare = 0
    n_ref = 0
    for k, s in enumerate(series):
        pos: list[float] = []
        vals: list[float] = []
        for (_, _, sid), x0, here in zip(slots, xs, present):
            value = s.values.get(sid)
            if value is not None:  # then k is in `here`
                offset = (here.index(k) - (len(here) - 1) / 2) * width
                pos.append(x0 + offset)
                vals.append(value)
        if s.kind == "run":
            color, hatch, edge = _RUN_COLOR, None, _RUN_COLOR
        elif s.kind == "compare":
            color, hatch, edge = _COMPARE_COLORS[n_compare % len(_COMPARE_COLORS)], None, "none"
            n_compare += 1
        else:
            color, hatch = _REFERENCE_STYLES[n_ref % len(_REFERENCE_STYLES)]
            edge = "#595959"
            n_ref += 1
        label = _plain(s.label if s.variant == "official" or s.kind == "reference" else f"{s.label} [{s.variant}]")
        if not vals:
            handles.append(Patch(facecolor=color, edgecolor=edge, hatch=hatch, label=label))
            continue
        bars = ax.bar(pos, vals, width=width * 0.92, color=color, edgecolor=edge, hatch=hatch, linewidth=0.6, label=label, zorder=3)
        handles.append(bars)
        ax.bar_label(
            bars,
            labels=[f"{v:.1f}" for v in vals],
            padding=2,
            fontsize=label_size,
            rotation=90 if rotate else 0,
            color="#222222",
        )
        top = max(top, max(vals))

    ax.set_xticks(xs)
    ax.set_xticklabels([c for _, c, _ in slots], fontsize=9, rotation=30 if len(slots) > 16 else 0, ha="right" if len(slots) > 16 else "center")
    ax.set_ylabel(_YLABEL.get(result.benchmark, "Score (%)"), fontsize=10)
    ax.set_ylim(0, max(100.0, top) * (1.16 if rotate else 1.10))
    ax.set_xlim(-0.6, (xs[-1] if xs else 0) + 0.6)
    ax.yaxis.grid(True, linestyle="--", linewidth=0.6, alpha=0.5, zorder=0)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.tick_params(axis="y", labelsize=9)

    if len(groups) > 1:
        for i, (g, a, b) in enumerate(group_spans):
            ax.annotate(
                _GROUP_LABELS.get(g, g),
                xy=((a + b) / 2, 0),
                xycoords=("data", "axes fraction"),
                xytext=(0, -22 if len(slots) <= 16 else -46),
                textcoords="offset points",
                ha="center",
                va="top",
                fontsize=10,
                fontweight="bold",
            )
            if i:
                ax.axvline(a - 0.8, color="#bbbbbb", linewidth=0.8, zorder=1)

    bench = TITLES.get(result.benchmark, result.benchmark)
    heading = title or f"{bench}: {result.label}" + ("" if result.variant == "official" else f" (variant: {result.variant})")
    fig.suptitle(_plain(heading), fontsize=12, fontweight="bold")
    ax.legend(
        handles=handles,
        loc="lower center",
        bbox_to_anchor=(0.5, 1.0),
        ncol=min(n_series, 4),
        fontsize=8,
        frameon=False,
    )
    out = Path(out_png)
    # Written atomically: a temp file beside `out` (its own suffix, hence the explicit format:
    # the file name's, PNG without one) renamed over it; OSErrors become one-line errors (see resource_error).
    with atomic_target(out, durable=False) as tmp:
        fig.savefig(tmp, format=out.suffix[1:].lower() or "png", dpi=dpi, facecolor="white")
    log.info("wrote %s", out)
    return out

