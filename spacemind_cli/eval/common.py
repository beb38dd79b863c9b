"""Pieces shared by the scorers: variants, MRA, number parsing and per-category aggregation."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from spacemind_cli.errors import InputError

from .result import EvalResult, Score

# --------------------------------------------------------------------------------------------
# Variants. "official" (the default) reproduces each benchmark's own scoring code; every other
# name is an opt-in deviation that is labelled in tables, JSON, markdown and plots.
# --------------------------------------------------------------------------------------------
OFFICIAL = "official"
VARIANTS: dict[str, str] = {
    OFFICIAL: "the benchmark's own scoring code (VSI-Bench: thinking-in-space / lmms-eval; "
    "SQA3D: LEO; SPBench: SpatialLadder eval_spld)",
    "micro": "micro averages: a combined category (VSI-Bench rel. direction) and the overall / part "
    "average are means over questions instead of unweighted means over categories",
    "anywhere": "VSI-Bench numeric answers: the first number anywhere in the reply instead of the "
    "reply's first space-separated word (SPBench's parser already searches the whole reply)",
    "lt": "MRA with a strict '<' instead of the official '<=' (a relative error exactly at a "
    "threshold does not count)",
    "parsed": "score our parsed `answer` field instead of the raw `prediction` text",
    "nonempty": "SQA3D: an empty prediction (after LEO's normalisation) never matches and answers that "
    "normalise to nothing are ignored (LEO's code counts the empty string as contained in every answer)",
    "leo-empty": "SQA3D: LEO's literal empty-string rule, now the official default; accepted for old "
    "commands and scores, changes nothing",
}


def parse_variant(variant: str | Iterable[str] | None) -> frozenset[str]:
    """``"official"``, ``"micro"``, ``"micro+lt"``, ``"micro,lt"`` or an iterable of names."""
    if variant is None:
        return frozenset()
    names = re.split(r"[+,\s]+", variant) if isinstance(variant, str) else list(variant)
    out = set()
    for name in names:
        name = name.strip().lower()
        if not name or name == OFFICIAL:
            continue
        if name not in VARIANTS:
            known = ", ".join(VARIANTS)
            raise InputError(f"unknown scoring variant '{name}' (known: {known})")
        out.add(name)
    return frozenset(out)


def variant_name(variants: frozenset[str]) -> str:
    return "+".join(v for v in VARIANTS if v in variants) or OFFICIAL


# --------------------------------------------------------------------------------------------
# Mean Relative Accuracy, with the official arithmetic. The official code is
#     num_pts = (end - start) / interval + 2        # (0.95-0.5)/0.05 + 2 = 10.999999999999998
#     conf_intervs = np.linspace(start, end, int(num_pts))   # -> 10 points 0.50, 0.55, ..., 0.95
#     accuracy = abs(pred - target) / target <= 1 - conf_intervs
#     return accuracy.mean()
# The float error in num_pts is what makes it 10 thresholds (not 11). `1 - conf_intervs` is kept
# as numpy computes it (e.g. 1 - 0.7 = 0.30000000000000004), so a relative error of exactly 0.3
# (|0.7 - 1| / 1 = 0.30000000000000004 in floats) compares exactly as in the official code.
# --------------------------------------------------------------------------------------------
MRA_START, MRA_END, MRA_INTERVAL = 0.5, 0.95, 0.05
CONF_INTERVALS = np.linspace(MRA_START, MRA_END, int((MRA_END - MRA_START) / MRA_INTERVAL + 2))
TOLERANCES = 1 - CONF_INTERVALS
MRA_SUFFIX = "MRA:.5:.95:.05"
ACC_SUFFIX = "accuracy"


def mean_relative_accuracy(pred: float | None, target: float, strict: bool = False) -> float:
    """MRA of one numeric answer, in [0, 1].

    * ``pred is None`` (nothing parsable) -> 0, as the official code's ``TypeError`` fallback.
    * ``target == 0`` (the official code raises ``ZeroDivisionError``): the relative error is
      undefined, so we score 1.0 if the prediction is exactly 0 and 0.0 otherwise.
    * NaN / inf predictions compare False at every threshold -> 0 (as in the official code).
    """
    if pred is None:
        return 0.0
    if target == 0:
        return 1.0 if pred == 0 else 0.0
    rel = abs(pred - target) / target
    hits = rel < TOLERANCES if strict else rel <= TOLERANCES
    return float(hits.mean())


def to_float(text: Any) -> float | None:
    """The official ``to_float``: ``float(x)`` or ``None`` when that fails."""
    try:
        return float(text)
    except Exception:
        return None


_NUMBER_ANYWHERE = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)")


def first_number_anywhere(text: str) -> float | None:
    """Variant ``anywhere``: the first number in the text ("about 3.5 m" -> 3.5), else None."""
    m = _NUMBER_ANYWHERE.search(text)
    return float(m.group(0)) if m else None


def numeric_ground_truth(value: Any, loc: str) -> float:
    """A numeric ground truth as float; anything else is malformed input."""
    if isinstance(value, bool) or value is None:
        raise InputError(f"{loc}: ground_truth {value!r} is not a number")
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{loc}: ground_truth {value!r} is not a number") from None
    if not math.isfinite(out):
        raise InputError(f"{loc}: ground_truth {value!r} is not a finite number")
    return out


def choice_ground_truth(value: Any, loc: str) -> str:
    if value is None or isinstance(value, (dict, list, tuple)):
        raise InputError(f"{loc}: ground_truth {value!r} is not an option letter")
    return str(value)


# --------------------------------------------------------------------------------------------
# Aggregation
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Category:
    name: str  # "object_rel_direction"
    column: str  # paper column label
    metric: str  # MRA_SUFFIX or ACC_SUFFIX
    members: tuple[str, ...]  # question types pooled into this category
    together: tuple[str, ...] = ()  # types that should come as a set (VSI-Bench rel-direction)

    @property
    def key(self) -> str:
        return f"{self.name}_{self.metric}"


def mean(values: list[float]) -> float:
    # numpy's pairwise sum, as pandas' Series.mean in the official aggregation.
    return float(np.mean(np.asarray(values, dtype=np.float64)))


def per_type_table(samples: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """question_type -> {"value": percent, "n": rows, "n_missing": rows without prediction}."""
    by_type: dict[str, list[dict[str, Any]]] = {}
    for s in samples:
        by_type.setdefault(s["question_type"], []).append(s)
    return {
        qt: {
            "value": mean([s["score"] for s in rows]) * 100.0,
            "n": len(rows),
            "n_missing": sum(1 for s in rows if s["missing"]),
        }
        for qt, rows in sorted(by_type.items())
    }


def aggregate_categories(
    samples: list[dict[str, Any]],
    categories: list[Category],
    *,
    group: str,
    micro: bool,
    avg_key: str,
    avg_column: str,
    expected: Iterable[str] | None = None,
    where: str = "",
) -> tuple[list[Score], list[str]]:
    """The average cell (``avg_key``, first, as the paper's "Avg." column) then one cell per
    category in paper order.

    A category's value is the mean over its question types of each type's mean score (so the
    three VSI-Bench rel-direction types are averaged with equal weight, as officially), or with
    ``micro`` the mean over all of its questions. The average is the unweighted mean of the
    categories present (officially ``sum(output.values()) / len(output)``), or with ``micro`` the
    mean over every scored question. Categories with no question are ``None`` and are left out of
    the average; a note says so when they were expected.
    """
    notes: list[str] = []
    by_type: dict[str, list[float]] = {}
    missing_by_type: dict[str, int] = {}
    for s in samples:
        by_type.setdefault(s["question_type"], []).append(s["score"])
        missing_by_type[s["question_type"]] = missing_by_type.get(s["question_type"], 0) + int(s["missing"])
    expected_set = set(expected) if expected is not None else {c.name for c in categories}
    cells: list[Score] = []
    fractions: list[float] = []  # category values in [0, 1]; the official overall averages these
    for cat in categories:
        present = [t for t in cat.members if t in by_type]
        n = sum(len(by_type[t]) for t in present)
        n_missing = sum(missing_by_type[t] for t in present)
        if not present:
            value = None
            if cat.name in expected_set:
                notes.append(f"{where}no '{cat.name}' questions: column '{cat.column}' is empty and left out of the average")
        elif micro:
            value = mean([x for t in present for x in by_type[t]])
        else:
            value = mean([mean(by_type[t]) for t in present])
        if value is not None:
            fractions.append(value)
        some = [t for t in cat.together if t in by_type]
        if some and len(some) < len(cat.together):
            absent = ", ".join(t for t in cat.together if t not in by_type)
            notes.append(f"{where}'{cat.column}' averages only the types present (missing: {absent})")
        if cat.name in expected_set or value is not None:
            pct = None if value is None else value * 100.0
            cells.append(Score(group, cat.column, cat.key, pct, n, n_missing))
    if micro:
        scored = [s["score"] for s in samples if any(s["question_type"] in c.members for c in categories)]
        avg = mean(scored) * 100.0 if scored else None
    else:
        avg = sum(fractions) / len(fractions) * 100.0 if fractions else None
    total_n = sum(c.n for c in cells)
    total_missing = sum(c.n_missing for c in cells)
    avg_cell = Score(group, avg_column, avg_key, avg, total_n, total_missing, is_average=True)
    return [avg_cell, *cells], notes


def unlabelled_note(n: int) -> str:
    """The note of a partly labelled file: its rows without ground truth are not scored."""
    return f"{n} question(s) without ground truth left unscored"


def scored_result(
    benchmark: str,
    variants: frozenset[str],
    source: str,
    label: str,
    *,
    n_rows: int,
    samples: list[dict[str, Any]],
    scores: list[Score],
    official: dict[str, Any],
    per_type: dict[str, dict[str, Any]],
    notes: list[str],
    unscored: dict[str, int] | None = None,
    unlabelled: int = 0,
    title: str = "",
) -> EvalResult:
    """The ending every scorer shares: after the scorer's own notes, the question types left
    unscored (not `title`'s), the questions without a prediction and the rows without ground
    truth; then the EvalResult."""
    unscored = unscored or {}
    notes = list(notes)
    if unscored:
        notes.append(
            f"unscored question types (not {title}): " + ", ".join(f"{k} ({v})" for k, v in sorted(unscored.items()))
        )
    n_missing = sum(1 for s in samples if s["missing"])
    if n_missing:
        notes.append(f"{n_missing} question(s) without a prediction, scored as wrong")
    if unlabelled:
        notes.append(unlabelled_note(unlabelled))
    return EvalResult(
        benchmark=benchmark,
        variant=variant_name(variants),
        source=source,
        label=label,
        scores=scores,
        official=official,
        n_rows=n_rows,
        n_scored=len(samples),
        n_missing_prediction=n_missing,
        n_unlabelled=unlabelled,
        unscored=unscored,
        per_type=per_type,
        notes=notes,
        samples=samples,
    )
