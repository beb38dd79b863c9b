"""Question files: JSONL, JSON (a list, or {"questions": [...]}) and Parquet.

A question names its scene by `dataset` + `scene_name`, or by `scene` (a path relative to the
scenes root); SQA3D's `scene_id` / `question_id` are accepted as `scene_name` / `id`.
Every field of a row is kept as is and travels through to the answers. Problems with one row
(a malformed line, a missing field, a duplicate id) are collected per row, naming the file and
line, and never stop the other rows.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import InputError, json_problem
from .prompts import history_problem

JSONL_EXTS = (".jsonl", ".ndjson")
JSON_EXTS = (".json",)
PARQUET_EXTS = (".parquet", ".pq")


@dataclass
class Question:
    index: int  # position among the file's valid rows; defines the output order
    qid: str  # the row's id as text; "line-N" when the row has none
    row: dict  # the row exactly as read
    source: str
    line: int  # 1-based line (JSONL) or record number (JSON list, Parquet): see `unit`
    unit: str = "line"  # "line" | "record"

    @property
    def question_type(self) -> str | None:
        value = self.row.get("question_type")
        return str(value) if value is not None else None

    @property
    def text(self) -> str:
        return str(self.row["question"])

    @property
    def options(self) -> list[str] | None:
        return self.row.get("options")

    @property
    def ground_truth(self) -> str | None:
        value = self.row.get("ground_truth")
        return None if value is None else str(value)

    @property
    def scene_spec(self) -> dict:
        row = self.row
        name = row.get("scene_name") or row.get("scene_id")
        return {"scene": row.get("scene"), "dataset": row.get("dataset"), "scene_name": name, "images": row.get("images")}

    def where(self) -> str:
        return f"{position(self.source, self.line, self.unit)} (question {self.qid})"


@dataclass
class Problem:
    """One row that cannot be asked, with a one-line reason."""

    source: str
    line: int
    qid: str | None
    message: str
    row: dict | None = None
    unit: str = "line"  # "line" of a JSONL file | "record" of a JSON list or Parquet file

    def __str__(self) -> str:
        who = f" (question {self.qid})" if self.qid is not None else ""
        return f"{position(self.source, self.line, self.unit)}{who}: {self.message}"

    def to_record(self, stage: str = "questions") -> dict:
        return {"stage": stage, "file": self.source, self.unit: self.line, "id": self.qid, "error": self.message}


def position(source: str, n: int, unit: str = "line") -> str:
    """Where a row is: "file.jsonl:12" (a line), "file.json record 12" (a JSON list's 12th record)."""
    return f"{source}:{n}" if unit == "line" else f"{source} {unit} {n}"


@dataclass
class QuestionSet:
    source: str
    questions: list[Question] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.questions)

    def has_ground_truth(self) -> bool:
        return any(q.ground_truth is not None for q in self.questions)


def refuse_json_array(path: Path) -> None:
    """A JSON array saved under a JSON Lines name (its lines would each read as malformed JSON):
    an InputError saying so. Only a file whose first character is `[` is parsed whole."""
    with open(path, "rb") as fh:
        head = fh.read(4096).removeprefix(b"\xef\xbb\xbf").lstrip()
    if not head.startswith(b"["):
        return
    try:
        document = json.loads(path.read_bytes().decode("utf-8-sig"))
    except (ValueError, UnicodeDecodeError):
        return  # not one JSON document: its lines are reported one by one
    if isinstance(document, list):
        raise InputError(f"{path} holds a JSON array; name it .json")


def _iter_jsonl(path: Path) -> Iterator[tuple[int, Any, str | None]]:
    """(line number, parsed value or None, error or None) per non-blank line."""
    refuse_json_array(path)
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield lineno, None, f"not valid UTF-8 (byte {exc.start})"
                continue
            if not text.strip():
                continue
            try:
                yield lineno, json.loads(text), None
            except json.JSONDecodeError as exc:
                yield lineno, None, f"malformed JSON: {json_problem(exc)}"


JSON_LINES = object()  # read_json_document's answer for JSON Lines in a .json file


def read_json_document(path: Path, what: str, *, json_lines_ok: bool = False) -> Any:
    """The parsed JSON document in `path` (UTF-8, a BOM allowed), or an InputError naming `what`,
    the file and the line. With `json_lines_ok`, JSON Lines in a .json file (datasets are often
    renamed so) give JSON_LINES instead of an error."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{what} {path} is not valid UTF-8 (byte {exc.start})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        if json_lines_ok and exc.msg == "Extra data":
            return JSON_LINES
        raise InputError(f"{what} {path}:{exc.lineno}: malformed JSON: {json_problem(exc)}") from None


def _iter_json(path: Path) -> Iterator[tuple[int, Any, str | None]]:
    data = read_json_document(path, "question file")
    if isinstance(data, dict) and isinstance(data.get("questions"), list):
        data = data["questions"]
    if not isinstance(data, list):
        raise InputError(f"question file {path} must hold a JSON list of questions (or {{'questions': [...]}})")
    for i, item in enumerate(data, start=1):
        yield i, item, None


def _iter_parquet(path: Path) -> Iterator[tuple[int, Any, str | None]]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as exc:
        raise InputError(f"question file {path} is not a readable Parquet file: {exc}") from None
    n = 0
    for batch in pf.iter_batches(batch_size=4096):
        for row in batch.to_pylist():
            n += 1
            yield n, row, None


def _reader(path: Path):
    ext = path.suffix.lower()
    if ext in JSONL_EXTS:
        return _iter_jsonl
    if ext in JSON_EXTS:
        return _iter_json
    if ext in PARQUET_EXTS:
        return _iter_parquet
    raise InputError(f"question file {path}: unknown format {ext!r} (use .jsonl, .json or .parquet)")


def _row_problem(row: Any, require_scene: bool) -> str | None:
    if not isinstance(row, dict):
        return f"a question must be a JSON object, got {type(row).__name__}"
    question = row.get("question")
    if question is None:
        return "missing required field 'question'"
    if not isinstance(question, str) or not question.strip():
        return "field 'question' must be non-empty text"
    options = row.get("options")
    if options is not None:
        if not isinstance(options, list):
            return f"field 'options' must be a list of strings or null, got {type(options).__name__}"
        if not all(isinstance(o, str) for o in options):
            return "field 'options' must be a list of strings"
    if (problem := history_problem(row.get("history"))) is not None:
        return problem
    qtype = row.get("question_type")
    if qtype is not None and not isinstance(qtype, str):
        return f"field 'question_type' must be text, got {type(qtype).__name__}"
    qid = row.get("id", row.get("question_id"))
    if qid is not None and (isinstance(qid, bool) or not isinstance(qid, (str, int))):
        return f"field 'id' must be an integer or text, got {type(qid).__name__}"
    if require_scene:
        scene = row.get("scene")
        name = row.get("scene_name") or row.get("scene_id")
        if row.get("images") is not None and not isinstance(row["images"], list):
            return f"field 'images' must be a list of image paths, got {type(row['images']).__name__}"
        if scene is None and name is None and not row.get("images"):
            return "names no scene (needs 'scene', or 'dataset' + 'scene_name')"
        for key in ("scene", "scene_name", "scene_id", "dataset"):
            if row.get(key) is not None and not isinstance(row[key], str):
                return f"field {key!r} must be text, got {type(row[key]).__name__}"
    return None


def questions_from_records(
    source: str, records: Iterable[tuple[int, Any, str | None]], *, require_scene: bool = True, unit: str = "line"
) -> QuestionSet:
    """Validate already-parsed rows, each as (line, value or None, parse error or None), into a
    QuestionSet: the per-row rules of :func:`read_questions` (ids, duplicates, scenes), shared
    with readers that get their rows some other way (training files)."""
    result = QuestionSet(source=source)
    seen: dict[str, int] = {}
    for line, row, error in records:
        qid = None
        if isinstance(row, dict):
            raw_id = row.get("id", row.get("question_id"))
            qid = None if raw_id is None else str(raw_id)
        if error is None:
            error = _row_problem(row, require_scene)
        if error is None and qid is not None and qid in seen:
            error = f"duplicate id {qid!r} (first seen on {unit} {seen[qid]}); this row is skipped"
        if error is not None:
            result.problems.append(Problem(source, line, qid, error, row if isinstance(row, dict) else None, unit))
            continue
        if qid is None:
            qid = f"line-{line}"
            if qid in seen:  # an earlier row has this very id: two answers would share it
                error = f"has no id, and its line-based id {qid!r} is taken by {unit} {seen[qid]}; this row is skipped"
                result.problems.append(Problem(source, line, None, error, row, unit))
                continue
        seen[qid] = line
        result.questions.append(Question(len(result.questions), qid, row, source, line, unit))
    return result


def read_questions(path: str | os.PathLike, *, require_scene: bool = True) -> QuestionSet:
    """Read and validate a question file.

    Raises InputError when the file as a whole is unusable (missing, unknown format, not JSON,
    no questions at all); row-level problems are returned in `problems`.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"question file {path} does not exist")
    if path.is_dir():
        raise InputError(f"question file {path} is a directory")
    reader = _reader(path)
    unit = "line" if reader is _iter_jsonl else "record"
    result = questions_from_records(str(path), reader(path), require_scene=require_scene, unit=unit)
    if not result.questions and not result.problems:
        raise InputError(f"question file {path} holds no questions")
    return result
