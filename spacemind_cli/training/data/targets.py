"""The target text of a question row: what the evaluated model should say.

One rule per kind of question, chosen so that a model which says the target gets full marks
from the official scorer (``spacemind_cli.eval``) and ``parse_answer(target)`` equals the
parsed ground truth:

* multiple choice (the row has ``options`` and ``build_prompt`` lists them): the option letter.
  The ground truth may be the letter (``"B"``, ``"B."``, ``"(B)"``), the whole option
  (``"B. left"``) or the option's text (``"left"``, case-insensitive); anything else, or a
  letter that is not an option, is an error.
* numeric VSI-Bench / SPBench types (MRA): the number as the ground truth writes it (``"20.0"``
  stays ``"20.0"``, ``"3"`` stays ``"3"``; nothing is reformatted). It must be a finite number.
* SQA3D (a row with ``situation``): the first answer (``answers`` as strings or
  ``{"answer": ...}``, else ``ground_truth``).
* anything else (free text): the ground truth, stripped.
"""

from __future__ import annotations

import math
import re

from ...prompts import VSI_NUMERIC_TYPES, benchmark_of

# "A", "A.", "(A)", "A)", "A:" - a bare option letter as ground truths and option labels write it.
_BARE_LETTER = re.compile(r"^\(?([A-Za-z])\)?[\.\):]?$")
# "A. left", "(A) left", "A) left", "A: left" - an option's label and its text.
_LABELLED = re.compile(r"^\(?([A-Za-z])[\.\):]\)?\s+(.*)$", re.DOTALL)


class TargetError(ValueError):
    """A row whose ground truth gives no usable target; the message is one line."""


def is_choice(row: dict) -> bool:
    """Whether ``build_prompt`` asks this row as multiple choice (it lists the options)."""
    options = row.get("options") or None
    if not options:
        return False
    # A numeric VSI type is asked as a numeric question: build_prompt drops its options.
    return not (benchmark_of(row) in ("vsibench", "spbench") and row.get("question_type") in VSI_NUMERIC_TYPES)


def option_letters(options: list[str]) -> list[tuple[str, str]]:
    """(letter, text) of each option, for options labelled like "A. left"; TargetError otherwise."""
    out = []
    for opt in options:
        m = _LABELLED.match(str(opt).strip())
        if not m:
            raise TargetError(f"option {opt!r} has no letter label (expected e.g. 'A. left')")
        out.append((m.group(1).upper(), m.group(2).strip()))
    letters = [letter for letter, _ in out]
    if len(set(letters)) != len(letters):
        raise TargetError(f"options repeat a letter: {', '.join(letters)}")
    return out


def choice_letter(ground_truth, options: list[str]) -> str:
    """The option letter a ground truth names (see the module docstring)."""
    gt = _scalar_text(ground_truth)
    labelled = option_letters(options)
    letters = [letter for letter, _ in labelled]
    m = _BARE_LETTER.match(gt)
    if m:
        letter = m.group(1).upper()
        if letter in letters:
            return letter
        if not any(text.lower() == gt.lower() for _, text in labelled):  # an option could be "a"
            raise TargetError(f"ground truth {gt!r} is not one of the option letters {', '.join(letters)}")
    m = _LABELLED.match(gt)
    if m and m.group(1).upper() in letters:
        letter, body = m.group(1).upper(), m.group(2).strip()
        text = dict(labelled)[letter]
        if body.rstrip(".").lower() == text.rstrip(".").lower():
            return letter
        raise TargetError(f"ground truth {gt!r} names option {letter}, whose text is {text!r}")
    hits = [letter for letter, text in labelled if text.rstrip(".").lower() == gt.rstrip(".").lower()]
    if len(hits) == 1:
        return hits[0]
    if len(hits) > 1:
        raise TargetError(f"ground truth {gt!r} matches several options ({', '.join(hits)})")
    raise TargetError(f"ground truth {gt!r} matches no option ({'; '.join(options)})")


def numeric_text(ground_truth) -> str:
    """A numeric ground truth as written: text stripped, an int as is, a float as Python writes it."""
    if isinstance(ground_truth, bool):
        raise TargetError(f"ground truth {ground_truth!r} is not a number")
    if isinstance(ground_truth, (int, float)):
        if not math.isfinite(ground_truth):
            raise TargetError(f"ground truth {ground_truth!r} is not a finite number")
        return repr(ground_truth) if isinstance(ground_truth, float) else str(ground_truth)
    text = _scalar_text(ground_truth)
    try:
        value = float(text)  # what the official VSI-Bench scorer does with it
    except ValueError:
        raise TargetError(f"ground truth {text!r} is not a number") from None
    if not math.isfinite(value):
        raise TargetError(f"ground truth {text!r} is not a finite number")
    return text


def first_answer(row: dict) -> str:
    """SQA3D: the first reference answer (``answers`` or else ``ground_truth``)."""
    raw = row.get("answers")
    if raw is None or (isinstance(raw, (list, tuple)) and not raw):
        raw = row.get("ground_truth")
    if raw is None:
        raise TargetError("no ground truth (needs 'ground_truth' or 'answers')")
    first = raw[0] if isinstance(raw, (list, tuple)) and raw else raw
    if isinstance(first, dict):
        first = first.get("answer")
    return _scalar_text(first)


def target_text(row: dict) -> str:
    """What the evaluated model should say for this question row. Raises TargetError."""
    if benchmark_of(row) == "sqa3d":
        return first_answer(row)
    gt = row.get("ground_truth")
    if gt is None:
        raise TargetError("no ground truth (training needs 'ground_truth')")
    if is_choice(row):
        return choice_letter(gt, list(row["options"]))
    qtype = row.get("question_type")
    if qtype in VSI_NUMERIC_TYPES:
        return numeric_text(gt)
    if benchmark_of(row) in ("vsibench", "spbench"):
        raise TargetError(f"multiple-choice type {qtype!r} without options")
    return _scalar_text(gt)


def _scalar_text(value) -> str:
    if value is None or isinstance(value, (bool, dict, list, tuple)):
        raise TargetError(f"ground truth {value!r} is not text")
    text = (repr(value) if isinstance(value, float) else str(value)).strip()
    if not text:
        raise TargetError("ground truth is empty")
    return text
