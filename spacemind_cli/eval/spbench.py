"""SPBench scoring (SPBench-SI: single image; SPBench-MV: multi-view), as SpatialLadder scores it.

Official definition: ZJU-REAL/SpatialLadder, ``eval_spld/data_utils/vsi_utils.py``
(``fuzzy_matching``, ``fuzzy_matching_num``, ``mean_relative_accuracy``,
``vsibench_process_results``), ``eval_spld/data_utils/vsibench.py`` (``vsibench_eval``,
``vsibench_aggregate_results``, used for SPBench too, see ``eval_spld/evaluator.py``) and
``eval_spld/utils.py`` (``extract_answer_text``). Benchmark: HF ``hongxingli/SPBench`` (configs
SPBench-SI, 1,009 questions: absolute distance, object size, relative distance, relative
direction; SPBench-MV, 319 questions: the same plus object counting).

* A reply containing ``<answer>`` is reduced to the text between ``<answer>`` and ``</answer>``
  (or to "None" when the closing tag is missing), as ``vsibench_eval`` does with the official
  run script's default ``--prompt_type thinking``.
* Multiple choice (rel. distance, rel. direction): remove "Answer:", take the first
  space-separated word; if it is a letter A-D with an optional ".", that letter, otherwise the
  whole stripped reply; equal to the ground truth case-insensitively.
* Numeric (abs. distance, object size, counting): lowercase the reply; the first of the words
  one ... twenty, thirty ... ninety, zero, a, an (checked in that order, whole words, anywhere in
  the reply) gives the number ("a" and "an" read as 1, so "a chair and 3 tables" reads 1);
  otherwise the first ``\\d+(\\.\\d+)?`` in the reply (no sign); otherwise unparsable -> 0.
  MRA as VSI-Bench (10 thresholds, ``<=``).
* Per question type: mean; ``object_rel_direction_{easy,medium,hard}``, if present, are averaged
  into ``object_rel_direction_accuracy``. Each part's ``overall_accuracy`` is the unweighted
  mean of its category scores; ``mca_accuracy`` / ``na_accuracy`` are the means of its choice /
  numeric categories (official keys, x100).

There is no official SPBench-wide number. We print "SPBench overall*" = the unweighted mean of the
SI and MV part averages, labelled as ours.

Which part a row belongs to (first rule that answers):
1. the ``part`` argument of :func:`score_records` (``--spbench-part``), for files of one part;
2. the row's ``part``, ``split``, ``subset``, ``config``, ``benchmark``, ``task`` or ``dataset``
   field containing the word SI / MV (also "single" / "multi"), e.g. "SPBench-SI", "mv";
3. the file name containing the word SI or MV, e.g. ``SPBench-MV_results.jsonl``;
otherwise the row is malformed input (:class:`InputError`).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from spacemind_cli.errors import InputError

from .common import (
    ACC_SUFFIX,
    MRA_SUFFIX,
    Category,
    aggregate_categories,
    choice_ground_truth,
    mean_relative_accuracy,
    numeric_ground_truth,
    per_type_table,
    scored_result,
    to_float,
)
from .records import Record
from .result import EvalResult, Score

log = logging.getLogger(__name__)

BENCHMARK = "spbench"
SI, MV = "SPBench-SI", "SPBench-MV"
PARTS = (SI, MV)
OVERALL_GROUP = "SPBench"
OVERALL_KEY = "overall_unofficial"
OVERALL_COLUMN = "Avg."

MCA_QUESTION_TYPES = (
    "object_rel_direction_easy",
    "object_rel_direction_medium",
    "object_rel_direction_hard",
    "object_rel_direction",
    "object_rel_distance",
    "route_planning",
    "obj_appearance_order",
)
NA_QUESTION_TYPES = ("object_abs_distance", "object_counting", "object_size_estimation", "room_size_estimation")
KNOWN_TYPES = frozenset(MCA_QUESTION_TYPES + NA_QUESTION_TYPES)

CATEGORIES = [
    Category("object_counting", "Obj. Count", MRA_SUFFIX, ("object_counting",)),
    Category("object_abs_distance", "Abs. Dist.", MRA_SUFFIX, ("object_abs_distance",)),
    Category("object_size_estimation", "Obj. Size", MRA_SUFFIX, ("object_size_estimation",)),
    Category("room_size_estimation", "Room Size", MRA_SUFFIX, ("room_size_estimation",)),
    Category("object_rel_distance", "Rel. Dist.", ACC_SUFFIX, ("object_rel_distance",)),
    Category(
        "object_rel_direction",
        "Rel. Dir.",
        ACC_SUFFIX,
        ("object_rel_direction", "object_rel_direction_easy", "object_rel_direction_medium", "object_rel_direction_hard"),
        ("object_rel_direction_easy", "object_rel_direction_medium", "object_rel_direction_hard"),
    ),
    Category("route_planning", "Route Plan", ACC_SUFFIX, ("route_planning",)),
    Category("obj_appearance_order", "Appr. Order", ACC_SUFFIX, ("obj_appearance_order",)),
]
EXPECTED = {
    SI: ("object_abs_distance", "object_size_estimation", "object_rel_distance", "object_rel_direction"),
    MV: ("object_counting", "object_abs_distance", "object_size_estimation", "object_rel_distance", "object_rel_direction"),
}
_MCA_CATEGORIES = {c.name for c in CATEGORIES if c.metric == ACC_SUFFIX}

# In SpatialLadder's order (a dict, iterated in insertion order): the first word found wins.
NUMBER_WORDS = {
    "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6", "seven": "7",
    "eight": "8", "nine": "9", "ten": "10", "eleven": "11", "twelve": "12", "thirteen": "13",
    "fourteen": "14", "fifteen": "15", "sixteen": "16", "seventeen": "17", "eighteen": "18",
    "nineteen": "19", "twenty": "20", "thirty": "30", "forty": "40", "fifty": "50", "sixty": "60",
    "seventy": "70", "eighty": "80", "ninety": "90", "zero": "0", "a": "1", "an": "1",
}  # fmt: skip
_WORD_PATTERNS = [(re.compile(rf"\b{w}\b"), d) for w, d in NUMBER_WORDS.items()]
_DIGITS = re.compile(r"(\d+(\.\d+)?)")
_LETTER = re.compile(r"^[A-D]\.?$")
_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)


def extract_answer(text: str) -> str:
    """Text between <answer> tags when the reply has an ``<answer>`` tag (else unchanged)."""
    if "<answer>" not in text:
        return text
    m = _ANSWER_TAG.search(text)
    return m.group(1).strip() if m else "None"


def match_choice(pred: str) -> str:
    """SpatialLadder's ``fuzzy_matching`` for choices (after removing "Answer:")."""
    pred = pred.replace("Answer:", "")
    m = _LETTER.search(pred.split(" ")[0].strip())
    if m:
        return m.group(0).rstrip(".").upper().strip()
    return pred.strip()


def match_number(pred: str) -> str:
    """SpatialLadder's ``fuzzy_matching_num``: number word first, then digits, else "None"."""
    pred = pred.strip().lower()
    for pattern, digit in _WORD_PATTERNS:
        if pattern.search(pred):
            return digit
    m = _DIGITS.search(pred)
    return m.group(1) if m else "None"


def parse_number(pred: str | None) -> float | None:
    if pred is None:
        return None
    return to_float(match_number(extract_answer(pred)))


def score_choice(pred: str | None, target: str) -> float:
    if pred is None:
        return 0.0
    return 1.0 if match_choice(extract_answer(pred)).lower() == target.lower() else 0.0


_PART_FIELDS = ("part", "split", "subset", "config", "benchmark", "task", "dataset")


def part_from_text(text: Any) -> str | None:
    """SPBench-SI / SPBench-MV from a label such as "SPBench-SI", "mv", "multi-view"; else None."""
    if not isinstance(text, str):
        return None
    words = set(re.split(r"[^a-z0-9]+", text.lower()))
    is_si = bool(words & {"si", "single", "singleimage", "spbenchsi"})
    is_mv = bool(words & {"mv", "multi", "multiview", "spbenchmv"})
    if is_si != is_mv:
        return SI if is_si else MV
    return None


def part_of(rec: Record, forced: str | None, file_part: str | None) -> str:
    if forced:
        return forced
    for name in _PART_FIELDS:
        part = part_from_text(rec.get(name))
        if part:
            return part
    if file_part:
        return file_part
    raise InputError(
        f"{rec.loc}: cannot tell whether this SPBench row is SPBench-SI or SPBench-MV: add a 'split' "
        "field ('SPBench-SI' / 'SPBench-MV'), put SI or MV in the file name, or pass the part explicitly"
    )


def normalise_part(part: str | None) -> str | None:
    if part is None:
        return None
    found = part_from_text(part)
    if not found:
        raise InputError(f"unknown SPBench part '{part}' (use SI or MV)")
    return found


def score_records(
    records: list[Record],
    variants: frozenset[str],
    source: str,
    label: str,
    part: str | None = None,
) -> EvalResult:
    forced = normalise_part(part)
    file_part = part_from_text(Path(source).name.split(".")[0])
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
        p = part_of(rec, forced, file_part)
        text = rec.parsed if "parsed" in variants else rec.prediction
        sample: dict[str, Any] = {"id": rec.get("id"), "line": rec.line, "part": p, "question_type": qt, "missing": text is None}
        if qt in NA_QUESTION_TYPES:
            gt = numeric_ground_truth(rec.get("ground_truth"), rec.loc)
            value = parse_number(text)
            sample.update(ground_truth=gt, parsed=value, score=mean_relative_accuracy(value, gt, strict="lt" in variants))
        else:
            gt_letter = choice_ground_truth(rec.get("ground_truth"), rec.loc)
            parsed = None if text is None else match_choice(extract_answer(text))
            sample.update(ground_truth=gt_letter, parsed=parsed, score=score_choice(text, gt_letter))
        samples.append(sample)

    scores: list[Score] = []
    official: dict[str, Any] = {}
    notes: list[str] = []
    per_type: dict[str, dict[str, Any]] = {}
    part_avgs: list[float] = []
    micro = "micro" in variants
    for p in PARTS:
        rows = [s for s in samples if s["part"] == p]
        if not rows:
            continue
        cells, part_notes = aggregate_categories(
            rows,
            CATEGORIES,
            group=p,
            micro=micro,
            avg_key="overall_accuracy",
            avg_column=OVERALL_COLUMN,
            expected=EXPECTED[p],
            where=f"{p}: ",
        )
        scores.extend(cells)
        notes.extend(part_notes)
        part_official: dict[str, Any] = {}
        for c in cells[1:]:
            if c.value is not None:
                part_official[c.key] = c.value
        part_official["overall_accuracy"] = cells[0].value
        mca = [c.value for c in cells[1:] if c.value is not None and c.key.rsplit("_", 1)[0] in _MCA_CATEGORIES]
        na = [c.value for c in cells[1:] if c.value is not None and c.key.endswith(MRA_SUFFIX)]
        part_official["mca_accuracy"] = sum(mca) / len(mca) if mca else 0.0
        part_official["na_accuracy"] = sum(na) / len(na) if na else 0.0
        official[p] = part_official
        if cells[0].value is not None:
            part_avgs.append(cells[0].value)
        for qt, entry in per_type_table(rows).items():
            per_type[f"{p}/{qt}"] = entry
    if len(part_avgs) == len(PARTS):
        overall = sum(part_avgs) / len(part_avgs)
        n = sum(1 for s in samples)
        n_missing = sum(1 for s in samples if s["missing"])
        scores.append(Score(OVERALL_GROUP, OVERALL_COLUMN, OVERALL_KEY, overall, n, n_missing, is_average=True))
        official[OVERALL_KEY] = overall
        notes.append("SPBench overall* = mean of the SI and MV averages (ours: SPBench defines no overall)")
    elif samples:
        present = sorted({s["part"] for s in samples})
        notes.append(f"only {', '.join(present)} in this file: no SPBench overall")
    return scored_result(BENCHMARK, variants, source, label, n_rows=len(records), samples=samples, scores=scores,
                         official=official, per_type=per_type, notes=notes, unscored=unscored, unlabelled=unlabelled,
                         title="SPBench")
