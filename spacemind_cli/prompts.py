"""The text asked of the model for each question: official benchmark prompts where defined.

VSI-Bench (thinking-in-space / lmms-eval `vsibench`): pre-prompt "These are frames of a video.";
numeric types end with "Please answer the question using a single word or phrase."; choice
types list the options after "Options:" and end with "Answer with the option's letter from
the given choices directly.". SQA3D: the situation, then the question. SPBench (images, not
video): the VSI-Bench wording without the video pre-prompt. Anything else: as written, with
its options listed when it has some.

A question with ``history`` (earlier turns of its conversation, ``[{"question", "answer"}, ...]``,
as a multi-turn LLaVA record's later turns carry them) is asked after those turns in InternVL's
chat template: the scene's frames open the first user turn (the visual prefix), then
``q1<|im_end|>\n<|im_start|>assistant\na1<|im_end|>\n<|im_start|>user\n`` per earlier turn, then
the question's own prompt. A question without history is asked exactly as before.
"""

from __future__ import annotations

from .benchmarks import VSIBENCH_MCA_TYPES, VSIBENCH_NA_TYPES

VSI_PRE_PROMPT = "These are frames of a video."
NUMERIC_POST_PROMPT = "Please answer the question using a single word or phrase."
CHOICE_POST_PROMPT = "Answer with the option's letter from the given choices directly."

VSI_NUMERIC_TYPES = frozenset(VSIBENCH_NA_TYPES)
VSI_CHOICE_TYPES = frozenset(VSIBENCH_MCA_TYPES)
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


# InternVL's chat template (conversation.py, 'internvl2_5' / 'Hermes-2': roles '<|im_start|>user\n'
# and '<|im_start|>assistant\n', every message followed by '<|im_end|>\n').
TURN_END = "<|im_end|>\n"
USER_TURN = "<|im_start|>user\n"
ASSISTANT_TURN = "<|im_start|>assistant\n"


def history_problem(history: object) -> str | None:
    """Why a row's ``history`` cannot be asked (one line), or None."""
    if history is None:
        return None
    if not isinstance(history, list) or not all(
        isinstance(t, dict) and isinstance(t.get("question"), str) and isinstance(t.get("answer"), str) for t in history
    ):
        return "field 'history' must be a list of {\"question\": text, \"answer\": text} turns"
    return None


def history_text(history: list[dict] | None) -> str:
    """The earlier turns as they stand before a question's own text (empty without history)."""
    if (problem := history_problem(history)) is not None:
        raise ValueError(problem)
    return "".join(f"{t['question']}{TURN_END}{ASSISTANT_TURN}{t['answer']}{TURN_END}{USER_TURN}" for t in history or ())


def _choice_block(question: str, options: list[str]) -> str:
    return "\n".join([question, "Options:\n" + "\n".join(options), CHOICE_POST_PROMPT])


def build_prompt(row: dict) -> str:
    """The text after the visual prefix up to the end of the user turn: the earlier turns, if any,
    then the question."""
    return history_text(row.get("history")) + _question_prompt(row)


def _question_prompt(row: dict) -> str:
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
