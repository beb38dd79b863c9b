"""VSI-Bench scoring, as the official benchmark code does it.

Official definition: vision-x-nyu/thinking-in-space, ``lmms_eval/tasks/vsibench/utils.py``
(``fuzzy_matching``, ``exact_match``, ``mean_relative_accuracy``, ``to_float``,
``vsibench_process_results``, ``vsibench_aggregate_results``); the same scoring is upstream in
EvolvingLMMs-Lab/lmms-eval, ``lmms_eval/tasks/vsibench/utils.py``.

* The answer is the reply's first space-separated word with trailing dots stripped:
  ``pred.split(' ')[0].rstrip('.').strip()`` (note: split on one space only, so a reply starting
  with a space gives an empty word, and "B.\\nleft" stays one word).
* Multiple choice (accuracy): that word equals the ground-truth letter, case-insensitively.
* Numeric (MRA): ``float()`` of that word; unparsable -> 0. MRA over the 10 thresholds
  0.50, 0.55, ..., 0.95 with ``|pred - gt| / gt <= 1 - threshold`` (see ``common.py``).
* Per question type: mean. The three ``object_rel_direction_{easy,medium,hard}`` types are
  averaged (unweighted) into ``object_rel_direction_accuracy``.
* ``overall``: unweighted mean of the 8 category scores; everything reported x100 under the
  official keys, in the paper's column order (the official code's ``OrderedDict``), with the
  official ``tabulated_keys`` / ``tabulated_results`` (``.3f``) strings.

Deviations, all documented in :mod:`spacemind_cli.eval`: ground truth 0 (official: crash) scores
1 for an exact 0 and 0 otherwise; rows of unknown question types (official: ``ValueError``) are
counted as unscored; a category with no questions (official: missing key or ``KeyError``) is
reported empty and left out of ``overall`` with a note.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Any

from spacemind_cli.benchmarks import VSIBENCH_MCA_TYPES, VSIBENCH_NA_TYPES
from spacemind_cli.errors import InputError

from .common import (
    ACC_SUFFIX,
    MRA_SUFFIX,
    Category,
    aggregate_categories,
    choice_ground_truth,
    first_number_anywhere,
    mean_relative_accuracy,
    numeric_ground_truth,
    per_type_table,
    scored_result,
    to_float,
)
from .records import Record
from .result import EvalResult

log = logging.getLogger(__name__)

BENCHMARK = "vsibench"

MCA_QUESTION_TYPES = VSIBENCH_MCA_TYPES
NA_QUESTION_TYPES = VSIBENCH_NA_TYPES
REL_DIRECTION_TYPES = MCA_QUESTION_TYPES[:3]

# The paper's column order (and the official OrderedDict's order).
CATEGORIES = [
    Category("object_counting", "Obj. Count", MRA_SUFFIX, ("object_counting",)),
    Category("object_abs_distance", "Abs. Dist.", MRA_SUFFIX, ("object_abs_distance",)),
    Category("object_size_estimation", "Obj. Size", MRA_SUFFIX, ("object_size_estimation",)),
    Category("room_size_estimation", "Room Size", MRA_SUFFIX, ("room_size_estimation",)),
    Category("object_rel_distance", "Rel. Dist.", ACC_SUFFIX, ("object_rel_distance",)),
    Category("object_rel_direction", "Rel. Dir.", ACC_SUFFIX, REL_DIRECTION_TYPES, REL_DIRECTION_TYPES),
    Category("route_planning", "Route Plan", ACC_SUFFIX, ("route_planning",)),
    Category("obj_appearance_order", "Appr. Order", ACC_SUFFIX, ("obj_appearance_order",)),
]
OVERALL_KEY = "overall"
OVERALL_COLUMN = "Avg."
KNOWN_TYPES = frozenset(MCA_QUESTION_TYPES + NA_QUESTION_TYPES)


def fuzzy_matching(pred: str) -> str:
    """The official answer extraction: first space-separated word, trailing dots stripped."""
    return pred.split(" ")[0].rstrip(".").strip()


def score_choice(pred: str | None, target: str) -> float:
    """1.0 when the first word equals the option letter (case-insensitive), else 0.0."""
    if pred is None:
        return 0.0
    return 1.0 if fuzzy_matching(pred).lower() == target.lower() else 0.0


def parse_number(pred: str | None, anywhere: bool = False) -> float | None:
    """Official: ``float()`` of the first word (None if that fails); ``anywhere``: first number."""
    if pred is None:
        return None
    if anywhere:
        return first_number_anywhere(pred)
    return to_float(fuzzy_matching(pred))


def score_numeric(pred: str | None, target: float, anywhere: bool = False, strict: bool = False) -> float:
    return mean_relative_accuracy(parse_number(pred, anywhere), target, strict=strict)


def _text(rec: Record, variants: frozenset[str]) -> str | None:
    return rec.parsed if "parsed" in variants else rec.prediction


def score_records(records: list[Record], variants: frozenset[str], source: str, label: str) -> EvalResult:
    samples: list[dict[str, Any]] = []
    unscored: dict[str, int] = {}
    unlabelled = 0
    for rec in records:
        qt = rec.get("question_type")
        if not isinstance(qt, str) or not qt:
            raise InputError(f"{rec.loc}: no question_type")
        if qt not in KNOWN_TYPES:
            unscored[qt] = unscored.get(qt, 0) + 1
            continue
        if rec.get("ground_truth") is None:  # a partly labelled file: the labelled rows are scored
            unlabelled += 1
            continue
        text = _text(rec, variants)
        sample: dict[str, Any] = {"id": rec.get("id"), "line": rec.line, "question_type": qt, "missing": text is None}
        if qt in NA_QUESTION_TYPES:
            gt = numeric_ground_truth(rec.get("ground_truth"), rec.loc)
            value = parse_number(text, "anywhere" in variants)
            sample.update(ground_truth=gt, parsed=value)
            sample["score"] = mean_relative_accuracy(value, gt, strict="lt" in variants)
        else:
            gt_letter = choice_ground_truth(rec.get("ground_truth"), rec.loc)
            sample.update(ground_truth=gt_letter, parsed=None if text is None else fuzzy_matching(text))
            sample["score"] = score_choice(text, gt_letter)
        samples.append(sample)

    scores, notes = aggregate_categories(
        samples,
        CATEGORIES,
        group="",
        micro="micro" in variants,
        avg_key=OVERALL_KEY,
        avg_column=OVERALL_COLUMN,
    )
    zero_gt = sum(1 for s in samples if s.get("ground_truth") == 0 and s["question_type"] in NA_QUESTION_TYPES)
    if zero_gt:
        notes.append(f"{zero_gt} numeric question(s) with ground truth 0: scored 1 for an exact 0, else 0")
    official: dict[str, Any] = OrderedDict()
    for cell in scores:
        if cell.value is not None:
            official[cell.key] = cell.value
    official["tabulated_keys"] = ", ".join(k for k in official)
    official["tabulated_results"] = ", ".join(f"{v:.3f}" for k, v in official.items() if k != "tabulated_keys")
    return scored_result(BENCHMARK, variants, source, label, n_rows=len(records), samples=samples, scores=scores,
                         official=official, per_type=per_type_table(samples), notes=notes, unscored=unscored,
                         unlabelled=unlabelled, title="VSI-Bench")
