"""SQA3D scoring: EM@1 and the refined EM@R1, as LEO (and the 3D-LLM papers that follow it) score it.

Official definition: embodied-generalist/embodied-generalist (LEO):
``data/data_utils.py`` (``clean_answer``: the normalisation; ``get_sqa_question_type``: the
breakdown), ``evaluator/scanqa_eval.py`` (``answer_match``) and ``evaluator/sqa3d_eval.py``
(``SQA3DEvaluator``: ``em_overall``, ``em_refined_overall``, ``em_type0..5``,
``em_refined_type0..5``).

* Normalisation (prediction and every answer, in this order): lowercase; strip leading and
  trailing spaces; collapse runs of spaces; keep only ``a-z A-Z 0-9 , ' - :`` and whitespace;
  a few typo fixes (letf/let -> left, tehre -> there, rigth/rght -> right, behine -> behind,
  tv -> TV, chai -> chair, wasing -> washing, waslked -> walked, oclock -> o'clock); the
  whole words 0-20 and 23 to words and "none" -> "zero"; drop one trailing digit glued to a word
  (``mat2`` -> ``mat``); drop "a", "an", "the" before a word; backwards -> backward.
  (Because "." is deleted before the digits are spelled out, "1.5" becomes "15" -> "fifteen",
  exactly as in LEO.)
* EM@1 (``answer_match``): for each answer in order, equal -> EM 1 and EM@R1 1; else, with all
  whitespace removed, prediction in answer or answer in prediction -> EM 0, EM@R1 1, and the
  loop stops there (LEO returns at the first containment, even if a later answer is equal).
* Question type: the question's first letters, checked in order: "what" (type 0), "is" (1),
  "how" (2), "can" (3), "which" (4), else Others (5) - prefixes, as LEO checks them, so
  "Isn't ..." is an "Is" question.
* Values are reported x100 (LEO logs fractions).
* The prediction is the model's text with surrounding whitespace stripped (LEO's agent returns
  ``[txt.strip() for txt in output_txt]``) before the normalisation; answers are not stripped.
* Empty strings follow LEO's code literally: a prediction that normalises to nothing is
  "contained" in every answer, so it scores EM@R1 = 1 (EM@1 = 0, unless an answer also normalises
  to nothing); an answer that normalises to nothing is contained in every prediction.

Variant ``nonempty`` (not official; spacemind's default before): an empty prediction never
matches and answers that normalise to nothing are ignored.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from spacemind_cli.errors import InputError

from .common import mean, scored_result
from .records import Record
from .result import EvalResult, Score

log = logging.getLogger(__name__)

BENCHMARK = "sqa3d"
QUESTION_TYPES = ("What", "Is", "How", "Can", "Which", "Others")
_TYPE_PREFIXES = (("what", 0), ("is", 1), ("how", 2), ("can", 3), ("which", 4))

_NUMBER_WORDS = [
    ("0", "zero"), ("none", "zero"), ("1", "one"), ("2", "two"), ("3", "three"), ("4", "four"),
    ("5", "five"), ("6", "six"), ("7", "seven"), ("8", "eight"), ("9", "nine"), ("10", "ten"),
    ("11", "eleven"), ("12", "twelve"), ("13", "thirteen"), ("14", "fourteen"), ("15", "fifteen"),
    ("16", "sixteen"), ("17", "seventeen"), ("18", "eighteen"), ("19", "nineteen"),
    ("20", "twenty"), ("23", "twenty-three"),
]  # fmt: skip
_TYPOS = [
    ("letf", "left"), ("let", "left"), ("tehre", "there"), ("rigth", "right"), ("rght", "right"),
    ("behine", "behind"), ("tv", "TV"), ("chai", "chair"), ("wasing", "washing"),
    ("waslked", "walked"), ("oclock", "o'clock"),
]  # fmt: skip

# (pattern, replacement) applied in order; the same steps, in the same order, as LEO's clean_answer.
_STEPS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"[ ]+$"), ""),
    (re.compile(r"^[ ]+"), ""),
    (re.compile(r" {2,}"), " "),
    (re.compile(r"\.[ ]{2,}"), ". "),
    (re.compile(r"[^a-zA-Z0-9,'\s\-:]+"), ""),
    (re.compile("ç"), "c"),
    (re.compile("’"), "'"),
    *[(re.compile(rf"\b{w}\b"), r) for w, r in _TYPOS],
    (re.compile(r"\bo'[ ]+clock\b"), "o'clock"),
    *[(re.compile(rf"\b{d}\b"), w) for d, w in _NUMBER_WORDS],
    (re.compile(r"\b([a-zA-Z]+)([0-9])\b"), r"\g<1>"),
    (re.compile(r"\ba\b ([a-zA-Z]+)"), r"\g<1>"),
    (re.compile(r"\ban\b ([a-zA-Z]+)"), r"\g<1>"),
    (re.compile(r"\bthe\b ([a-zA-Z]+)"), r"\g<1>"),
    (re.compile(r"\bbackwards\b"), "backward"),
]


def clean_answer(text: str) -> str:
    """LEO's normalisation of an answer or a prediction."""
    text = text.lower()
    for pattern, repl in _STEPS:
        text = pattern.sub(repl, text)
    return text


def _squash(text: str) -> str:
    return "".join(text.split())


def answer_match(pred: str, gts: list[str], empty_matches: bool = True) -> tuple[int, int]:
    """(EM@1, EM@R1) of a normalised prediction against normalised answers (LEO's answer_match;
    `empty_matches=False` is the labelled `nonempty` variant)."""
    if not empty_matches:
        if not _squash(pred):
            return 0, 0
        gts = [g for g in gts if _squash(g)]
    for gt in gts:
        if pred == gt:
            return 1, 1
        if _squash(pred) in _squash(gt) or _squash(gt) in _squash(pred):
            return 0, 1
    return 0, 0


def question_type(question: str) -> str:
    """LEO's ``get_sqa_question_type`` as a name: What, Is, How, Can, Which or Others."""
    q = question.lstrip().lower()
    for prefix, idx in _TYPE_PREFIXES:
        if q[: len(prefix)] == prefix:
            return QUESTION_TYPES[idx]
    return QUESTION_TYPES[5]


def answers_of(rec: Record) -> list[str]:
    """The reference answers: ``answers`` (strings or {"answer": ...}) or ``ground_truth``."""
    raw = rec.get("answers")
    if raw is None:
        raw = rec.get("ground_truth")
    if raw is None:
        raise InputError(f"{rec.loc}: no answers or ground_truth")
    if isinstance(raw, (str, int, float)) and not isinstance(raw, bool):
        raw = [raw]
    if not isinstance(raw, (list, tuple)) or not raw:
        raise InputError(f"{rec.loc}: answers must be a non-empty list of strings")
    out = []
    for item in raw:
        if isinstance(item, dict):
            item = item.get("answer")
        if isinstance(item, bool) or not isinstance(item, (str, int, float)):
            raise InputError(f"{rec.loc}: answers must be strings or objects with an 'answer' string")
        out.append(str(item))
    return out


def score_records(records: list[Record], variants: frozenset[str], source: str, label: str) -> EvalResult:
    empty_matches = "nonempty" not in variants
    samples: list[dict[str, Any]] = []
    unlabelled = 0
    for rec in records:
        if rec.get("answers") is None and rec.get("ground_truth") is None:  # partly labelled: score the rest
            unlabelled += 1
            continue
        question = rec.get("question")
        if not isinstance(question, str):
            raise InputError(f"{rec.loc}: no question text (needed for the SQA3D question-type breakdown)")
        gts = answers_of(rec)
        text = rec.parsed if "parsed" in variants else rec.prediction
        pred = clean_answer(text.strip()) if text is not None else None
        if pred is None:
            em, emr = 0, 0
        else:
            em, emr = answer_match(pred, [clean_answer(g) for g in gts], empty_matches)
        samples.append(
            {
                "id": rec.get("id"),
                "line": rec.line,
                "question_type": question_type(question),
                "missing": text is None,
                "normalised_prediction": pred,
                "em": em,
                "em_refined": emr,
                "score": float(em),
            }
        )

    micro_note: list[str] = []
    if "micro" in variants:
        micro_note.append("variant 'micro' has no effect on SQA3D (EM@1 and EM@R1 are already means over questions)")
    scores: list[Score] = []
    official: dict[str, Any] = {}
    per_type: dict[str, dict[str, Any]] = {}
    n_missing_all = sum(1 for s in samples if s["missing"])
    for group, field, key_overall, key_type in (
        ("EM@1", "em", "em_overall", "em_type{}"),
        ("EM@R1", "em_refined", "em_refined_overall", "em_refined_type{}"),
    ):
        overall = mean([s[field] for s in samples]) * 100.0
        scores.append(Score(group, "Overall", key_overall, overall, len(samples), n_missing_all, is_average=True))
        official[key_overall] = overall
        for idx, qt in enumerate(QUESTION_TYPES):
            rows = [s for s in samples if s["question_type"] == qt]
            value = mean([s[field] for s in rows]) * 100.0 if rows else None
            n_missing = sum(1 for s in rows if s["missing"])
            scores.append(Score(group, qt, key_type.format(idx), value, len(rows), n_missing))
            if value is not None:
                official[key_type.format(idx)] = value
            entry = per_type.setdefault(qt, {"n": len(rows), "n_missing": n_missing})
            entry["em" if field == "em" else "em_refined"] = value
    for entry in per_type.values():
        entry["value"] = entry.get("em")
    notes = list(micro_note)
    empties = sum(1 for s in samples if s["normalised_prediction"] is not None and not _squash(s["normalised_prediction"]))
    if empties:
        how = "contained in every answer, so EM@R1 = 1, as LEO's code scores them" if empty_matches else "never match (variant nonempty)"
        notes.append(f"{empties} prediction(s) empty after normalisation: {how}")
    return scored_result(BENCHMARK, variants, source, label, n_rows=len(records), samples=samples, scores=scores,
                         official=official, per_type=per_type, notes=notes, unlabelled=unlabelled)
