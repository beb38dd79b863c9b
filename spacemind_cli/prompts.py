"""The text asked of the model for each question: official benchmark prompts where defined.

VSI-Bench (thinking-in-space / lmms-eval `vsibench`): pre-prompt "These are frames of a video.";
numeric types end with "Please answer the question using a single word or phrase."; choice
types list the options after "Options:" and end with "Answer with the option's letter from
the given choices directly.". SQA3D: the situation, then the question. SPBench (images, not
video): the VSI-Bench wording without the video pre-prompt. Anything else: as written, with
its options listed when it has some.
"""

from __future__ import annotations

from .eval.vsibench import MCA_QUESTION_TYPES, NA_QUESTION_TYPES

VSI_PRE_PROMPT = "These are frames of a video."
NUMERIC_POST_PROMPT = "Please answer the question using a single word or phrase."
CHOICE_POST_PROMPT = "Answer with the option's letter from the given choices directly."

# One list of VSI-Bench's question types, the scorer's: prompts and scores must agree on it.
VSI_NUMERIC_TYPES = frozenset(NA_QUESTION_TYPES)
VSI_CHOICE_TYPES = frozenset(MCA_QUESTION_TYPES)
VSI_TYPES = VSI_NUMERIC_TYPES | VSI_CHOICE_TYPES


def benchmark_of(row: dict) -> str:
    """vsibench | spbench | sqa3d | other, from the row's fields."""
    tags = " ".join(str(row.get(k, "")) for k in ("benchmark", "dataset", "part", "split", "source")).lower()
    if "spbench" in tags or ("images" in row and row.get("question_type") in VSI_TYPES):
        return "spbench"
    if "situation" in row:
        return "sqa3d"
    if row.get("question_type") in VSI_TYPES:
        return "vsibench"
    return "other"


def _choice_block(question: str, options: list[str]) -> str:
    return "\n".join([question, "Options:\n" + "\n".join(options), CHOICE_POST_PROMPT])


def build_prompt(row: dict) -> str:
    question = str(row["question"]).strip()
    qtype = row.get("question_type")
    options = row.get("options") or None
    bench = benchmark_of(row)
    if bench in ("vsibench", "spbench"):
        pre = [VSI_PRE_PROMPT] if bench == "vsibench" else []
        if qtype in VSI_NUMERIC_TYPES or not options:
            return "\n".join(pre + [question, NUMERIC_POST_PROMPT])
        return "\n".join(pre + [_choice_block(question, options)])
    if bench == "sqa3d":
        situation = str(row.get("situation") or "").strip()
        return "\n".join(p for p in (situation, question, NUMERIC_POST_PROMPT) if p)
    if options:
        return _choice_block(question, options)
    return question
