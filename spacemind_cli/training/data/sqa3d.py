"""SQA3D's pair of files as question rows.

The official release (SilongYong/SQA3D; the test pair is in the repository's ``LLM/`` folder)
splits each split into two JSON objects with the same ``info`` / ``license`` header:

* ``v1_balanced_questions_<split>_scannetv2.json``: ``questions[]`` of ``{scene_id, situation,
  alternative_situation[], question, question_id}``;
* ``v1_balanced_sqa_annotations_<split>_scannetv2.json``: ``annotations[]`` of ``{scene_id,
  question_type ("N/A"), answer_type, question_id, answers: [{answer, answer_confidence,
  answer_id}], rotation, position}``.

They are joined on ``question_id``. A row is ``{id: question_id, dataset: "scannet", scene_name:
scene_id, situation, alternative_situation, question, answers: [text...], ground_truth: first
answer, position, rotation, answer_type}``: ``build_prompt`` asks the situation then the question
(as ``answer`` asks SQA3D), and the target is the first answer. Scenes are ScanNet scans, found
as ``ROOT/scannet/<scene_id>`` or, in a flat root, ``ROOT/<scene_id>``. Row numbers are 1-based
positions in the questions list (the files are one JSON object, so there are no lines).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ...errors import InputError
from ...questions import Problem, read_json_document

log = logging.getLogger(__name__)

QUESTIONS_TOKEN, ANNOTATIONS_TOKEN = "questions", "sqa_annotations"
OFFICIAL_NAMES = "v1_balanced_questions_<split>_scannetv2.json + v1_balanced_sqa_annotations_<split>_scannetv2.json"


def sqa3d_kind(data: Any) -> str | None:
    """"questions" / "annotations" when a parsed JSON document is one file of an SQA3D pair."""
    if not isinstance(data, dict):
        return None
    items = data.get("annotations")
    if isinstance(items, list) and "questions" not in data:
        first = next((x for x in items if isinstance(x, dict)), None)
        if first is not None and "question_id" in first and "answers" in first:
            return "annotations"
    items = data.get("questions")
    if isinstance(items, list):
        first = next((x for x in items if isinstance(x, dict)), None)
        # A question file that already carries answers is a plain question file, not half a pair.
        if (
            first is not None
            and "situation" in first
            and "question_id" in first
            and "answers" not in first
            and "ground_truth" not in first
        ):
            return "questions"
    return None


def partner_path(path: Path, kind: str) -> Path:
    """The other file of the pair, by the official naming: "...questions..." <-> "...sqa_annotations..."."""
    name = path.name
    if kind == "questions":
        token, other = QUESTIONS_TOKEN, ANNOTATIONS_TOKEN
    else:
        token, other = ANNOTATIONS_TOKEN, QUESTIONS_TOKEN
    at = name.rfind(token)
    if at < 0:
        raise InputError(
            f"{path} is an SQA3D {kind} file, but its name does not say where its other half is: "
            f"keep the official names ({OFFICIAL_NAMES}) side by side"
        )
    return path.with_name(name[:at] + other + name[at + len(token) :])


def load_partner(path: Path, kind: str) -> dict:
    other = partner_path(path, kind)
    want = "annotations" if kind == "questions" else "questions"
    if not other.is_file():
        raise InputError(f"SQA3D {kind} file {path} needs its {want} file {other} beside it (not found)")
    data = read_json_document(other, f"SQA3D {want} file")
    if sqa3d_kind(data) != want:
        raise InputError(f"{other} is not an SQA3D {want} file (no '{want}' list)")
    return {"path": other, "data": data}


def _question_problem(q: Any) -> str | None:
    if not isinstance(q, dict):
        return f"an SQA3D question must be a JSON object, got {type(q).__name__}"
    for key in ("scene_id", "question"):
        if not isinstance(q.get(key), str) or not q[key].strip():
            return f"field {key!r} must be non-empty text"
    if not isinstance(q.get("situation", ""), str):
        return "field 'situation' must be text"
    qid = q.get("question_id")
    if isinstance(qid, bool) or not isinstance(qid, (int, str)) or qid == "":
        return "field 'question_id' must be an integer or text"
    return None


def _answers(a: dict) -> list[str] | str:
    """The answer texts in order, or a one-line reason."""
    raw = a.get("answers")
    if not isinstance(raw, list) or not raw:
        return "field 'answers' must be a non-empty list"
    out = []
    for item in raw:
        text = item.get("answer") if isinstance(item, dict) else item
        if not isinstance(text, str):
            return "every answer must be text (or {'answer': text})"
        out.append(text)
    if not out[0].strip():
        return "empty target: the first answer is empty"
    return out


def sqa3d_rows(questions_path: Path, questions: dict, annotations_path: Path, annotations: dict, dataset: str):
    """Yield (line, row, raw) for each usable question, Problem for each that is not."""
    src_q, src_a = str(questions_path), str(annotations_path)
    by_id: dict[str, tuple[int, dict]] = {}
    for i, a in enumerate(annotations["annotations"], start=1):
        if not isinstance(a, dict) or isinstance(a.get("question_id"), (bool, type(None))):
            yield Problem(src_a, i, None, "an annotation must be an object with a 'question_id'", unit="record")
            continue
        key = str(a["question_id"])
        if key in by_id:
            yield Problem(src_a, i, key, f"duplicate annotation (first on row {by_id[key][0]}); this one is skipped", unit="record")
            continue
        by_id[key] = (i, a)
    asked: set[str] = set()
    seen: dict[str, int] = {}
    for line, q in enumerate(questions["questions"], start=1):
        qid = str(q["question_id"]) if isinstance(q, dict) and "question_id" in q else None
        if qid is not None:
            asked.add(qid)
        error = _question_problem(q)
        if error is None and qid in seen:
            error = f"duplicate question_id {qid} (first on row {seen[qid]}); this row is skipped"
        if error is None and qid not in by_id:
            error = f"no annotation with question_id {qid} in {annotations_path.name}"
        if error is None:
            assert qid is not None  # _question_problem checked the question_id
            a_line, a = by_id[qid]
            answers = _answers(a)
            if isinstance(answers, str):
                error = f"{answers} (annotation row {a_line})"
            elif isinstance(a.get("scene_id"), str) and a["scene_id"] != q["scene_id"]:
                error = f"scene_id {q['scene_id']!r} but its annotation (row {a_line}) says {a['scene_id']!r}"
        if error is not None:
            yield Problem(src_q, line, qid, error, q if isinstance(q, dict) else None, "record")
            continue
        assert qid is not None
        seen[qid] = line
        row = {
            "id": q["question_id"],
            "dataset": dataset,
            "scene_name": q["scene_id"],
            "situation": q.get("situation", ""),
            "alternative_situation": q.get("alternative_situation"),
            "question": q["question"],
            "answers": answers,
            "ground_truth": answers[0],
        }
        for key in ("answer_type", "position", "rotation"):
            if key in a:
                row[key] = a[key]
        yield line, row, {"question": q, "annotation": a}
    unasked = sum(1 for key in by_id if key not in asked)
    if unasked:  # a filtered questions file is fine; the extra answers are simply not used
        log.info("%s: %d annotation(s) for questions %s does not ask", src_a, unasked, questions_path.name)

