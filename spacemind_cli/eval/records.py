"""Read answer files into uniform :class:`Record` objects.

Accepted inputs (detected per file, then per row):

* **our answers** (``*.jsonl``, ``*.jsonl.gz``, ``*.parquet``, or a ``*.json`` list): one question
  per row with the question fields (``id, dataset, scene_name, question_type, question, options,
  ground_truth``; SQA3D rows may carry ``answers`` instead) plus ``prediction`` (the model's raw
  text) and ``answer`` (our parsed answer).
* **lmms-eval per-sample logs** (``--log_samples``; ``samples_<task>_<date>.jsonl`` or, in newer
  releases, ``<date>_samples_<task>.jsonl``; older releases wrote a ``.json`` with a ``logs``
  list). A row has ``doc_id``, usually ``doc`` (the question), ``target``, ``resps`` /
  ``filtered_resps`` (the generation, possibly nested in lists) and one dict per metric, e.g.
  ``vsibench_score``, that holds the doc again plus ``prediction``. Newer lmms-eval drops ``doc``
  from the file; the question fields are then read from that metric dict.
* **SpatialLadder ``eval_spld`` results** (``<task>_results.jsonl``): like ours but the raw text is
  in ``predicted_answer``.

Scoring always uses the raw text (``prediction``) unless the ``parsed`` variant asks for the
``answer`` field. A row whose raw text is absent or null is kept and scored as wrong.
"""

from __future__ import annotations

import gzip
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spacemind_cli.errors import InputError, json_problem

log = logging.getLogger(__name__)

# Where the raw generation may live in a row, in order of preference.
PREDICTION_FIELDS = ("prediction", "predicted_answer", "response")


@dataclass
class Record:
    line: int  # 1-based line in a JSONL file, or 1-based row in Parquet / JSON lists
    fields: dict[str, Any]  # question fields (question_type, question, ground_truth, ...)
    prediction: str | None  # raw model text; None when the row has none
    parsed: str | None = None  # our parsed answer (`answer` field), if any
    fmt: str = "answers"  # "answers" | "lmms-eval" | "spatialladder"
    loc: str = ""  # "FILE:LINE" or "FILE row N", for error messages

    def get(self, key: str, default: Any = None) -> Any:
        return self.fields.get(key, default)


def where(path: str | Path, line: int | None, unit: str = "line") -> str:
    return f"{path}:{line}" if unit == "line" and line else (f"{path} row {line}" if line else str(path))


def _as_text(value: Any, path: Path, line: int, unit: str, what: str) -> str | None:
    """A raw generation as text. Nested single-element lists (lmms-eval's ``resps``) are unwrapped."""
    while isinstance(value, (list, tuple)) and len(value) > 0:
        value = value[0]
    if value is None or (isinstance(value, (list, tuple)) and len(value) == 0):
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        raise InputError(f"{where(path, line, unit)}: {what} must be text, got a boolean")
    if isinstance(value, (int, float)):
        return repr(value) if isinstance(value, float) else str(value)
    raise InputError(f"{where(path, line, unit)}: {what} must be text, got {type(value).__name__}")


def _is_lmms_sample(row: dict[str, Any]) -> bool:
    return "doc_id" in row and any(k in row for k in ("doc", "filtered_resps", "resps", "target"))


def _from_lmms_sample(row: dict[str, Any], path: Path, line: int, unit: str) -> Record:
    doc = row.get("doc")
    if not isinstance(doc, dict):
        doc = {}
    # Metric dicts (e.g. "vsibench_score") hold the doc plus the text the task scored.
    metric_docs = [
        v
        for k, v in row.items()
        if k not in ("doc", "arguments", "input_media", "token_counts")
        and isinstance(v, dict)
        and ("question_type" in v or "question" in v or "ground_truth" in v)
    ]
    fields: dict[str, Any] = {}
    for m in metric_docs:
        fields.update(m)
    fields.update(doc)  # the logged doc wins over the copy inside the metric dict
    if "ground_truth" not in fields and "answers" not in fields and row.get("target") is not None:
        fields["ground_truth"] = row["target"]
    prediction = None
    for m in metric_docs:
        if isinstance(m.get("prediction"), str):
            prediction = m["prediction"]  # exactly what the task's process_results scored
            break
    if prediction is None:
        for key in ("filtered_resps", "resps"):
            if key in row:
                prediction = _as_text(row[key], path, line, unit, key)
                if prediction is not None:
                    break
    for k in ("prediction", "accuracy", "MRA:.5:.95:.05"):
        fields.pop(k, None)  # the log's own scores are not inputs
    fields.setdefault("id", row.get("doc_id"))
    return Record(line, fields, prediction, None, "lmms-eval", where(path, line, unit))


def _from_row(row: Any, path: Path, line: int, unit: str) -> Record:
    if not isinstance(row, dict):
        raise InputError(f"{where(path, line, unit)}: expected a JSON object, got {type(row).__name__}")
    if _is_lmms_sample(row):
        return _from_lmms_sample(row, path, line, unit)
    fmt = "answers"
    prediction = None
    for key in PREDICTION_FIELDS:
        if key in row:
            prediction = _as_text(row[key], path, line, unit, key)
            if key == "predicted_answer":
                fmt = "spatialladder"
            break
    parsed = _as_text(row.get("answer"), path, line, unit, "answer") if "answer" in row else None
    fields = {k: v for k, v in row.items() if k not in PREDICTION_FIELDS and k != "answer"}
    return Record(line, fields, prediction, parsed, fmt, where(path, line, unit))


def _read_jsonl(path: Path) -> list[Record]:
    opener = gzip.open if path.suffix == ".gz" else open
    records: list[Record] = []
    try:
        with opener(path, "rt", encoding="utf-8") as fh:
            for lineno, text in enumerate(fh, start=1):
                if not text.strip():
                    continue
                try:
                    row = json.loads(text)
                except json.JSONDecodeError as exc:
                    raise InputError(f"{path}:{lineno}: invalid JSON ({json_problem(exc)})") from None
                records.append(_from_row(row, path, lineno, "line"))
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text (is it a Parquet file with the wrong extension?)") from None
    except (OSError, EOFError) as exc:
        raise InputError(f"{path}: cannot read ({exc})") from None
    return records


def _read_json(path: Path) -> list[Record]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        # A JSON Lines file named *.json: fall back to line-by-line reading.
        if exc.msg == "Extra data":
            return _read_jsonl(path)
        raise InputError(f"{path}:{exc.lineno}: invalid JSON ({json_problem(exc)})") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text") from None
    if isinstance(data, dict):
        for key in ("logs", "samples", "results", "rows"):
            if isinstance(data.get(key), list):
                data = data[key]
                break
        else:
            raise InputError(f"{path}: a JSON object without a list of rows ('logs', 'samples', 'results' or 'rows')")
    if not isinstance(data, list):
        raise InputError(f"{path}: expected a list of rows, got {type(data).__name__}")
    return [_from_row(row, path, i, "row") for i, row in enumerate(data, start=1)]


def _read_parquet(path: Path) -> list[Record]:
    try:
        import pyarrow.parquet as pq

        rows = pq.read_table(path).to_pylist()
    except ImportError:  # pragma: no cover - pyarrow is a hard dependency
        raise InputError(f"{path}: reading Parquet needs pyarrow") from None
    except Exception as exc:  # pyarrow raises ArrowInvalid, OSError...
        raise InputError(f"{path}: not a readable Parquet file ({' '.join(str(exc).split())[:200]})") from None
    return [_from_row(row, path, i, "row") for i, row in enumerate(rows, start=1)]


def load_records(path: str | Path) -> list[Record]:
    """Read every row of an answers file. Raises :class:`InputError` naming file and line."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, expected an answers file (.jsonl, .parquet or .json)")
    suffixes = "".join(path.suffixes[-2:]).lower()
    if path.suffix.lower() == ".parquet":
        records = _read_parquet(path)
    elif path.suffix.lower() == ".json":
        records = _read_json(path)
    else:
        if not suffixes.endswith((".jsonl", ".jsonl.gz", ".ndjson")):
            log.info("%s: unknown extension, reading it as JSON Lines", path)
        records = _read_jsonl(path)
    if not records:
        raise InputError(f"{path}: no rows")
    log.info("%s: %d rows (%s)", path, len(records), records[0].fmt)
    return records
