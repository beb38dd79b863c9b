"""Training files as training examples: the prompt ``spacemind answer`` asks, and the target the
evaluated model should say.

    ts = read_training_file("train.jsonl")          # format detected by content
    for ex in ts.examples:                          # file order, stable ids
        ex.prompt, ex.target, ex.scene_spec, ex.row
    write_question_file(ts, "heldout.jsonl")        # a question file `answer` reads

Formats (detected from the content, never from the name):

* **question files** ``answer`` reads (JSONL / JSON / Parquet, see ``questions.py``) whose rows
  carry ``ground_truth`` (SQA3D-style rows: ``answers``). Prompt: ``build_prompt(row)``; target:
  :func:`~.targets.target_text`.
* **LLaVA-style** records (``conversations`` of human/gpt turns; JSON list or JSONL); see
  :mod:`.llava` for how a pair becomes a question row whose ``build_prompt`` is the text trained on.
* **SQA3D's pair** of train (or val/test) files; either file may be given, the other is found
  beside it by its official name; see :mod:`.sqa3d`.

What the real datasets hold (read in public sources, 2026; none of the data was downloaded here):

* VSI-590K (``nyu-visionx/VSI-590K``, ``vsi_590k.jsonl``), from notes of people who scanned the
  whole file (a StarVLA experiment log; a "real sample rows" report with 8 rows): 590,667 JSONL
  rows, each with ``conversations`` and ``question_type``; 374,148 with ``video``
  (``scannet/scene0191_00.mp4``), 216,519 with a single ``image`` path
  (``robotics/agibot_..._0010.jpg``); only 20,092 carry an ``id``; ``<image>`` is the
  placeholder even for videos. Human turns of video rows start with VSI-Bench's pre-prompt
  ``These are frames of a video.`` (camera rows on images do not); answers are a letter
  (``A``), a number as written (``240.0``, ``6.8``, ``4``) or, for ``appearance_order``, the
  whole option (``B. shelving unit, doorway, ...``). Its 12 types are not VSI-Bench's names
  (``absolute_count``, ``relative_direction_object``, ``relative_distance_camera``...).
* VLM-3R (``Journey9ni/VLM-3R-DATA``, ``vsibench_train/merged_qa_*_train.json``), from the
  official generator (VITA-Group/VLM-3R ``vlm_3r_data_process/src/format_qa.py``,
  ``utils/vsibench_utils.py``, ``question_templates.py``): JSON lists of ``{id: uuid4,
  data_source, scene_name, question_type, video, conversations}``; the human turn is
  ``"<image>\\n" + vsibench_doc_to_text(qa)``, i.e. exactly lmms-eval's VSI-Bench prompt, the gpt
  turn the ``mc_answer`` letter or ``str(ground_truth)``; one pair per record. Types are
  VSI-Bench's plus ``object_rel_direction_v1/v2/v3`` and ``object_rel_distance_v1/v2/v3``;
  training videos live at ``scannet/videos/scene0191_00.mp4`` (README).
* ViCA-322K (``nkkbr/ViCA-322K``), from nkkbr/ViCA ``sandbox/check_data_leak.ipynb`` (it loads
  all 37 files, 322,003 records, and prints one): ``<source>/{base,complex}/<task>.json`` JSON
  lists of ``{video: "arkitscenes/47115148.mp4", conversations}`` without ``id`` or
  ``question_type``; human turns are free text after ``<image>\\n`` (no VSI-Bench pre/post
  prompt), answers free sentences; ``complex/conversation.json`` holds multi-turn dialogues
  (the ViCA paper).
* SQA3D: see :mod:`.sqa3d` (the official test pair; the train pair has the same schema).

Ids: a question row's id as ``answer`` gives it (``id`` / ``question_id``, else ``line-N``); an
LLaVA record's ``id``, else ``line-N`` (N: the line, or the row in a JSON list, as for question
files), with ``#k`` (k = 1, 2, ...) on each pair of a multi-turn record; an LLaVA id already
taken in the file gets ``@line-N`` added (datasets reuse ids; the rows are still good); SQA3D:
``question_id``.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...errors import InputError
from ...prompts import build_prompt
from ...questions import (
    JSON_EXTS,
    JSON_LINES,
    JSONL_EXTS,
    PARQUET_EXTS,
    Problem,
    Question,
    _iter_jsonl,
    _iter_parquet,
    position,
    questions_from_records,
    read_json_document,
)
from . import llava, sqa3d
from .targets import TargetError, target_text

log = logging.getLogger(__name__)

FORMATS = ("questions", "llava", "sqa3d")
PROGRESS_EVERY = 10_000  # records between progress callbacks


@dataclass(frozen=True)
class TrainingOptions:
    sqa3d_dataset: str = "scannet"  # dataset folder of SQA3D scenes (ROOT/scannet/<scene_id>)
    progress: Callable[[int], None] | None = None  # called with the records read so far


@dataclass(slots=True)  # slots: a 590K-row file makes 590K of these
class TrainingExample:
    id: str  # stable: same file, same ids, same order
    source: str  # the file the example comes from (SQA3D: the questions file)
    line: int  # 1-based line (JSONL) or row number (JSON list, Parquet, SQA3D questions list)
    turn: int  # 1-based human/gpt pair in an LLaVA record (1 otherwise)
    format: str  # "questions" | "llava" | "sqa3d"
    prompt: str  # exactly what `answer` asks for `row`: build_prompt(row)
    target: str  # what the evaluated model should say
    row: dict  # the question row (answer schema): the file's own row, or the converted one
    raw: dict  # the record as read (SQA3D: {"question": ..., "annotation": ...})
    unit: str = "line"  # what `line` counts: "line" (JSONL) | "record" (JSON list, Parquet)

    @property
    def scene_spec(self) -> dict:
        """{"scene", "dataset", "scene_name", "images"}, as Question.scene_spec (the planner's input)."""
        return Question(0, self.id, self.row, self.source, self.line, self.unit).scene_spec

    @property
    def question_type(self) -> str | None:
        value = self.row.get("question_type", self.row.get("source_question_type"))
        return None if value is None else str(value)

    def to_record(self) -> dict:
        """Flat, Arrow-friendly columns (Ray Data, Parquet): the same types for every example of
        every format. ``row`` and ``raw`` differ in shape between rows, so only the row travels,
        as JSON text (``row_json``)."""
        spec = self.scene_spec
        images = spec.get("images")
        return {
            "id": self.id,
            "source": self.source,
            "line": self.line,
            "turn": self.turn,
            "format": self.format,
            "prompt": self.prompt,
            "target": self.target,
            "question_type": self.question_type,
            "scene": None if spec.get("scene") is None else str(spec["scene"]),
            "dataset": None if spec.get("dataset") is None else str(spec["dataset"]),
            "scene_name": None if spec.get("scene_name") is None else str(spec["scene_name"]),
            "images": None if not images else [str(p.get("path") if isinstance(p, dict) else p) for p in images],
            "row_json": json.dumps(self.row, ensure_ascii=False, sort_keys=True),
        }

    def where(self) -> str:
        turn = f" turn {self.turn}" if self.turn > 1 else ""
        return f"{position(self.source, self.line, self.unit)}{turn} (example {self.id})"


@dataclass
class TrainingSet:
    source: str  # the file given (SQA3D: its questions file, whichever half was given)
    format: str
    examples: list[TrainingExample] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)  # every file read (SQA3D: both halves)

    def __len__(self) -> int:
        return len(self.examples)

    def __iter__(self) -> Iterator[TrainingExample]:
        return iter(self.examples)

    def questions(self) -> list[Question]:
        """The examples as ``Question``s (index = position here), for code written for question
        files, such as the answer planner (``jobs.plan.plan_answer``) that resolves their scenes."""
        return [Question(i, ex.id, ex.row, ex.source, ex.line, ex.unit) for i, ex in enumerate(self.examples)]


# ------------------------------------------------------------------------------------------
# Reading
# ------------------------------------------------------------------------------------------
def read_training_file(path: str | os.PathLike, options: TrainingOptions | None = None) -> TrainingSet:
    """Read a training file (question file with ground truth, LLaVA-style, or SQA3D pair).

    Rows that cannot be used become ``problems`` (file:line and a one-line reason) and never
    stop the others. Raises InputError (one line, naming the file) when the file is missing or
    unreadable, or when not one of its rows is usable.
    """
    options = options or TrainingOptions()
    path = Path(path)
    if not path.exists():
        raise InputError(f"training file {path} does not exist")
    if path.is_dir():
        raise InputError(f"training file {path} is a directory")
    kind, records, document, unit = _load(path)
    if kind == "sqa3d":
        result = _read_sqa3d(path, document, options)
    elif kind == "llava":
        result = _read_llava(path, records, options, unit)
    else:
        result = _read_questions(path, records, options, unit)
    if not result.examples:
        first = f"; first: {result.problems[0]}" if result.problems else ""
        raise InputError(
            f"training file {path} has no usable example ({len(result.problems)} row(s) with problems{first})"
        )
    log.info(
        "%s: %d training example(s) as %s, %d problem(s)", path, len(result.examples), result.format, len(result.problems)
    )
    return result


Records = list[tuple[int, Any, "str | None"]]


def _load(path: Path) -> tuple[str, Records, Any, str]:
    """(format, rows as (position, value, parse error), the whole JSON document if one, what a
    position counts: "line" or "record")."""
    ext = path.suffix.lower()
    document, unit = None, "record"
    if ext in JSONL_EXTS:
        records, unit = list(_iter_jsonl(path)), "line"
    elif ext in PARQUET_EXTS:
        records = list(_iter_parquet(path))
    elif ext in JSON_EXTS:
        document, records = _load_json(path)
        if sqa3d.sqa3d_kind(document):
            return "sqa3d", [], document, unit
        if document is None:  # JSON Lines under a .json name
            unit = "line"
    else:
        raise InputError(f"training file {path}: unknown format {ext!r} (use .jsonl, .json or .parquet)")
    return _detect(path, records), records, document, unit


def _load_json(path: Path) -> tuple[Any, Records]:
    data = read_json_document(path, "training file", json_lines_ok=True)
    if data is JSON_LINES:  # VSI-590K is often renamed .json
        return None, list(_iter_jsonl(path))
    rows = data.get("questions") if isinstance(data, dict) else data
    if isinstance(data, dict) and sqa3d.sqa3d_kind(data):
        return data, []
    if not isinstance(rows, list):
        raise InputError(f"training file {path} must hold a JSON list of records (or {{'questions': [...]}})")
    return data, [(i, row, None) for i, row in enumerate(rows, start=1)]


def _detect(path: Path, records: Records) -> str:
    """'llava' or 'questions' by the first records that say: 'conversations' or 'question'."""
    votes = {"llava": 0, "questions": 0}
    for _, row, error in records:
        if error is None and isinstance(row, dict):
            if "conversations" in row:
                votes["llava"] += 1
            elif "question" in row:
                votes["questions"] += 1
            if sum(votes.values()) >= 100:
                break
    if not any(votes.values()):
        raise InputError(
            f"training file {path}: unknown format: no record has 'conversations' (LLaVA) or 'question' (question file)"
        )
    return "llava" if votes["llava"] >= votes["questions"] else "questions"


def _progress(options: TrainingOptions, n: int) -> None:
    if options.progress is not None and n % PROGRESS_EVERY == 0:
        options.progress(n)


def _read_questions(path: Path, records: Records, options: TrainingOptions, unit: str) -> TrainingSet:
    qs = questions_from_records(str(path), records, require_scene=True, unit=unit)
    result = TrainingSet(str(path), "questions", problems=list(qs.problems), sources=[str(path)])
    for n, q in enumerate(qs.questions, start=1):
        _progress(options, n)
        try:
            target = target_text(q.row)
        except TargetError as exc:
            result.problems.append(Problem(q.source, q.line, q.qid, str(exc), q.row, unit))
            continue
        result.examples.append(
            TrainingExample(q.qid, q.source, q.line, 1, "questions", build_prompt(q.row), target, q.row, q.row, unit)
        )
    result.problems.sort(key=lambda p: p.line)
    return result


def _read_llava(path: Path, records: Records, options: TrainingOptions, unit: str) -> TrainingSet:
    src = str(path)
    result = TrainingSet(src, "llava", sources=[src])
    seen: set[str] = set()

    def unique(ex_id: str, line: int) -> str:
        return f"{ex_id}@line-{line}" if ex_id in seen else ex_id

    for n, (line, record, error) in enumerate(records, start=1):
        _progress(options, n)
        rid = record.get("id") if isinstance(record, dict) else None
        base = None if isinstance(rid, bool) or not isinstance(rid, (str, int)) or rid == "" else str(rid)
        if error is None and not isinstance(record, dict):
            error = f"a record must be a JSON object, got {type(record).__name__}"
        if error is None and "conversations" not in record:
            error = "not a LLaVA record (no 'conversations')" + (" but a question row" if "question" in record else "")
        if error is not None:
            result.problems.append(Problem(src, line, base, error, record if isinstance(record, dict) else None, unit))
            continue
        base = unique(base or f"line-{line}", line)
        try:
            pairs = llava.turn_pairs(record)
            media = llava.media_fields(record)
        except llava.RecordError as exc:
            result.problems.append(Problem(src, line, base, str(exc), record, unit))
            continue
        for k, (human, gpt) in enumerate(pairs, start=1):
            ex_id = base if len(pairs) == 1 else unique(f"{base}#{k}", line)
            seen.add(ex_id)
            try:
                row, prompt = llava.pair_row(record, ex_id, human, gpt, media, llava.history_turns(pairs[: k - 1]))
                target = target_text(row)
            except (llava.RecordError, TargetError) as exc:
                where = f"turn {k}: " if len(pairs) > 1 else ""
                result.problems.append(Problem(src, line, ex_id, where + str(exc), record, unit))
                continue
            result.examples.append(TrainingExample(ex_id, src, line, k, "llava", prompt, target, row, record, unit))
    return result


def _read_sqa3d(path: Path, document: dict, options: TrainingOptions) -> TrainingSet:
    kind = sqa3d.sqa3d_kind(document)
    assert kind is not None  # _load took the document for one file of an SQA3D pair
    other = sqa3d.load_partner(path, kind)
    if kind == "questions":
        q_path, q_doc, a_path, a_doc = path, document, other["path"], other["data"]
    else:
        q_path, q_doc, a_path, a_doc = other["path"], other["data"], path, document
    result = TrainingSet(str(q_path), "sqa3d", sources=[str(q_path), str(a_path)])
    for n, item in enumerate(sqa3d.sqa3d_rows(q_path, q_doc, a_path, a_doc, options.sqa3d_dataset), start=1):
        _progress(options, n)
        if isinstance(item, Problem):
            result.problems.append(item)
            continue
        line, row, raw = item
        ex_id = str(row["id"])
        try:
            target = target_text(row)
        except TargetError as exc:
            result.problems.append(Problem(str(q_path), line, ex_id, str(exc), row, "record"))
            continue
        result.examples.append(TrainingExample(ex_id, str(q_path), line, 1, "sqa3d", build_prompt(row), target, row, raw,
                                               "record"))
    return result


# ------------------------------------------------------------------------------------------
# Writing
# ------------------------------------------------------------------------------------------
def write_question_file(examples: TrainingSet | Iterable[TrainingExample], path: str | os.PathLike) -> int:
    """Write examples as a JSONL question file (answer schema) that ``spacemind answer`` and
    :func:`read_training_file` read back with the same ids, prompts, targets and scenes.
    Atomic: the file appears whole or not at all. Returns the number of rows written."""
    from ...files import atomic_write_text, json_line

    path = Path(path)
    rows: list[dict] = []
    seen: dict[str, str] = {}  # id -> where it was first
    for ex in examples:
        if ex.id in seen:  # examples of several files: `answer` would skip all but the first
            raise InputError(f"cannot write {path}: {ex.where()} and {seen[ex.id]} share the id {ex.id!r}")
        seen[ex.id] = ex.where()
        row = ex.row
        if str(row.get("id", row.get("question_id"))) != ex.id:  # e.g. a "line-N" id: keep it
            row = {"id": ex.id, **{k: v for k, v in row.items() if k != "id"}}
        rows.append(row)

    def write(fh):
        for row in rows:
            fh.write(json_line(row))

    atomic_write_text(path, write)
    return len(rows)
