"""From generated text to a parsed answer: an option letter, a number, or the text itself.

The raw text is always kept (`prediction`); scoring re-parses it with each benchmark's
official rules. `answer` is the convenient, typed reading for people and annotation jobs.
"""

from __future__ import annotations

import re

from .prompts import VSI_NUMERIC_TYPES

_LETTER = re.compile(r"^\s*\(?([A-Za-z])(?:[\.\):]|\s|$)")
_NUMBER = re.compile(r"[-+]?\d+(?:[.,]\d+)?")


def parse_answer(prediction: str, *, options: list[str] | None = None, question_type: str | None = None):
    text = (prediction or "").strip()
    if options:
        letters = [o.strip()[:1].upper() for o in options if o and o.strip()]
        m = _LETTER.match(text)
        if m and m.group(1).upper() in letters:
            return m.group(1).upper()
        # "The answer is B" / an option's text repeated verbatim
        for opt in options:
            body = opt.split(".", 1)[-1].strip().lower()
            if body and text.lower().rstrip(".") == body:
                return opt.strip()[:1].upper()
        m = re.search(r"\b([A-Z])\b", text)
        if m and m.group(1) in letters:
            return m.group(1)
        return None
    if question_type in VSI_NUMERIC_TYPES:
        m = _NUMBER.search(text)
        if not m:
            return None
        value = float(m.group(0).replace(",", "."))
        return int(value) if value.is_integer() and "." not in m.group(0) else value
    return text
