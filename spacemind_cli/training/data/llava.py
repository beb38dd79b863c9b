"""LLaVA-style records (VSI-590K, VLM-3R, ViCA-322K) as question rows.

A record is ``{id?, video | image | images, conversations: [{from: human, value}, {from: gpt,
value}, ...], question_type?, data_source?, scene_name?}``. Each human/gpt pair becomes one
example of the record's scene. The prompt trained on is the human turn with its ``<image>`` /
``<video>`` placeholders (and the newline after each) removed, otherwise verbatim: it is the text
the dataset's authors trained on, and it is never rewritten.

A record of several pairs is a conversation: pair k is trained with the k - 1 pairs before it
as its history (the row's ``history``: each earlier human turn, placeholders removed, and gpt
turn, stripped, verbatim), asked in InternVL's chat template as LLaVA / InternVL training sees
the conversation (see ``prompts``); the frames stay in the first user turn, the visual prefix the
scene's packed questions share. Only pair k's answer and end-of-turn are its targets.

To keep "the prompts are exactly those ``answer`` uses", each pair becomes an answer-schema row
whose ``build_prompt`` is that text, checked for every row:

* When the text is VSI-Bench's own prompt (VLM-3R writes every row with lmms-eval's
  ``vsibench_doc_to_text``; VSI-590K's video rows start with the same pre-prompt) and the
  record's question type is, or is an alias of, a VSI-Bench type of the same kind (choice or
  numeric), the row is a VSI-Bench row: ``question``, ``options``, ``question_type`` and a
  ``ground_truth`` the official scorer reads (the option letter for choices). Such rows can be
  answered and scored on held-out data like VSI-Bench itself. Without the pre-prompt and with an
  ``images`` list the same works for SPBench-style rows.
* Otherwise (free text, as ViCA-322K; a type with no VSI-Bench counterpart, as most of
  VSI-590K's) the row's ``question`` is the whole prompt and ``ground_truth`` the gpt text; the
  record's type moves to ``source_question_type`` so that ``build_prompt`` adds nothing.

Targets follow :func:`~.targets.target_text` on that row: the option letter for a VSI-Bench choice
row (also when the gpt turn wrote the whole option, as VSI-590K's appearance-order answers do),
the number as the gpt turn writes it for a numeric one, and the gpt text (stripped) otherwise.
"""

from __future__ import annotations

import re
from typing import Any

from ...prompts import (
    CHOICE_POST_PROMPT,
    NUMERIC_POST_PROMPT,
    VSI_NUMERIC_TYPES,
    VSI_PRE_PROMPT,
    VSI_TYPES,
    build_prompt,
)
from .targets import TargetError, choice_letter, numeric_text

# A placeholder and the newline after it (LLaVA puts "<image>\n" before the text).
PLACEHOLDER = re.compile(r"<(?:image|video)>\n?")
HUMAN_ROLES = frozenset({"human", "user"})
GPT_ROLES = frozenset({"gpt", "assistant"})

# Record question types that name a VSI-Bench type (the prompt and answer kinds must also agree).
QUESTION_TYPE_ALIASES = {
    # VLM-3R (vlm_3r_data_process/src/question_templates.py): v1 asks the four quadrants (VSI-Bench
    # hard), v2 left/right/back (medium), v3 left/right of the facing object (easy).
    "object_rel_direction_v1": "object_rel_direction_hard",
    "object_rel_direction_v2": "object_rel_direction_medium",
    "object_rel_direction_v3": "object_rel_direction_easy",
    "object_rel_distance_v1": "object_rel_distance",
    "object_rel_distance_v2": "object_rel_distance",
    "object_rel_distance_v3": "object_rel_distance",
    # VSI-590K (nyu-visionx/VSI-590K) types that are VSI-Bench tasks under another name.
    "absolute_count": "object_counting",
    "absolute_distance_object": "object_abs_distance",
    "absolute_size_object": "object_size_estimation",
    "absolute_size_room": "room_size_estimation",
    "relative_distance_object": "object_rel_distance",
    "appearance_order": "obj_appearance_order",
}


class RecordError(ValueError):
    """A record (or one of its turns) that cannot be used; the message is one line."""


def clean_prompt(text: str) -> str:
    return PLACEHOLDER.sub("", text).strip()


def turn_pairs(record: dict) -> list[tuple[str, str]]:
    """(human text, gpt text) per pair, in order. RecordError on a malformed conversation."""
    conv = record.get("conversations")
    if not isinstance(conv, list) or not conv:
        raise RecordError("field 'conversations' must be a non-empty list of turns")
    pairs, human = [], None
    for k, turn in enumerate(conv, start=1):
        if not isinstance(turn, dict) or not isinstance(turn.get("value"), str):
            raise RecordError(f"turn {k} must be an object with 'from' and a text 'value'")
        role = str(turn.get("from", "")).strip().lower()
        if role in HUMAN_ROLES and human is None:
            human = turn["value"]
        elif role in GPT_ROLES and human is not None:
            pairs.append((human, turn["value"]))
            human = None
        elif role in HUMAN_ROLES | GPT_ROLES:
            want = "gpt" if human is not None else "human"
            raise RecordError(f"malformed turn order: turn {k} is {role!r}, expected {want!r}")
        else:
            raise RecordError(f"turn {k} has unknown role {turn.get('from')!r} (expected human or gpt)")
    if human is not None:
        raise RecordError(f"malformed turn order: the last human turn ({len(conv)}) has no gpt answer")
    return pairs


def media_fields(record: dict) -> dict:
    """The scene fields of a question row: ``scene`` (a video path relative to the scenes root),
    ``images`` (a list), or ``dataset`` + ``scene_name``. RecordError when there is none."""
    video, image, images = record.get("video"), record.get("image"), record.get("images")
    given = [k for k, v in (("video", video), ("image", image), ("images", images)) if v not in (None, "", [])]
    if len(given) > 1:
        raise RecordError(f"names more than one medium ({', '.join(given)}); keep one")
    if video not in (None, ""):
        if not isinstance(video, str):
            raise RecordError(f"field 'video' must be a path, got {type(video).__name__}")
        return {"scene": _relative(video, "video")}
    if image not in (None, "", []) or images not in (None, "", []):
        value = image if image not in (None, "", []) else images
        paths = [value] if isinstance(value, str) else value
        if not isinstance(paths, list) or not all(isinstance(p, str) and p for p in paths):
            raise RecordError("field 'image'/'images' must be a path or a list of paths")
        return {"images": [_relative(p, "image") for p in paths]}
    dataset = record.get("dataset") or record.get("data_source")
    if isinstance(dataset, str) and isinstance(record.get("scene_name"), str) and record["scene_name"]:
        return {"dataset": dataset, "scene_name": record["scene_name"]}
    raise RecordError("names no medium ('video', 'image' or 'images', or 'data_source' + 'scene_name')")


def _relative(path: str, what: str) -> str:
    if path.startswith("/") or re.match(r"^[A-Za-z]:[\\/]", path):
        raise RecordError(f"{what} path {path!r} must be relative to the scenes root")
    return path


def _template(prompt: str) -> tuple[str, list[str] | None] | None:
    """(question, options or None) when the prompt has the shape of VSI-Bench's / SPBench's
    official wording (with or without the video pre-prompt); None otherwise. Whether it is
    exactly that wording is left to the build_prompt check of the row made from it."""
    body = prompt.removeprefix(VSI_PRE_PROMPT + "\n")
    choice_tail, numeric_tail = "\n" + CHOICE_POST_PROMPT, "\n" + NUMERIC_POST_PROMPT
    if body.endswith(choice_tail) and "\nOptions:\n" in body:
        question, block = body[: -len(choice_tail)].rsplit("\nOptions:\n", 1)
        return question, block.split("\n")
    if body.endswith(numeric_tail):
        return body[: -len(numeric_tail)], None
    return None


def vsi_type(record_type: Any) -> str | None:
    if not isinstance(record_type, str):
        return None
    return record_type if record_type in VSI_TYPES else QUESTION_TYPE_ALIASES.get(record_type)


def history_turns(pairs: list[tuple[str, str]]) -> list[dict]:
    """Earlier pairs as a row's ``history``: the texts as trained on, verbatim."""
    return [{"question": clean_prompt(human), "answer": gpt.strip()} for human, gpt in pairs]


def pair_row(record: dict, ex_id: str, human: str, gpt: str, media: dict,
             history: list[dict] | None = None) -> tuple[dict, str]:
    """(answer-schema row, prompt) for one human/gpt pair after the conversation's earlier pairs
    (`history_turns`); build_prompt(row) == prompt."""
    prompt = clean_prompt(human)
    answer = gpt.strip()
    if not prompt:
        raise RecordError("the human turn is empty once its <image>/<video> placeholders are removed")
    if not answer:
        raise RecordError("empty target: the gpt turn is empty")
    base = {"id": ex_id}
    for key in ("data_source", "dataset", "scene_name"):
        if isinstance(record.get(key), str) and key not in media:
            base[key] = record[key]
    rtype = record.get("question_type")
    row = _structured(base, media, prompt, answer, rtype)
    if row is None:
        row = {**base, "question": prompt, "ground_truth": answer, **media}
        if rtype is not None:
            row["source_question_type"] = rtype
    if build_prompt(row) != prompt:  # e.g. a 'dataset' naming SPBench changes the wording
        raise RecordError("its prompt cannot be written as a question row that `answer` asks verbatim")
    if history:
        row["history"] = history
        prompt = build_prompt(row)
    return row, prompt


def _structured(base: dict, media: dict, prompt: str, answer: str, rtype: Any) -> dict | None:
    parsed, qtype = _template(prompt), vsi_type(rtype)
    if parsed is None or qtype is None:
        return None
    question, options = parsed
    if (options is None) != (qtype in VSI_NUMERIC_TYPES):
        return None  # a numeric type asked as a choice or the reverse: keep the text as it is
    row = {**base, "question_type": qtype, "question": question, "options": options, **media}
    if qtype != rtype:
        row["source_question_type"] = rtype
    if build_prompt(row) != prompt:  # e.g. the pre-prompt on an image list, or none on a video
        return None
    try:
        row["ground_truth"] = choice_letter(answer, options) if options else numeric_text(answer)
    except TargetError as exc:
        raise RecordError(f"{qtype} answer: {exc}") from None
    return row
