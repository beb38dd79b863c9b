"""What the report shows, as plain data: the answers joined with `spacemind eval`'s per-question
scores, the scenes they were answered from, a compared run, and the run's recorded failures.

Nothing here re-implements a metric. Every score comes from :mod:`spacemind_cli.eval`
(``evaluate_records``, the function ``spacemind eval`` calls), and a question's score is the
``score`` of its ``EvalResult.samples`` entry, matched to the row through the sample's ``line``.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..answer_files import output_paths
from ..errors import InputError
from ..eval import EvalResult, Record, evaluate_records, load_records
from ..summaries import AnswerSummary

log = logging.getLogger(__name__)

# Verdicts, from a question's score (see `verdict`).
RIGHT, PARTLY, WRONG, UNSCORED = "right", "partly", "wrong", "unscored"


@dataclass
class Run:
    """One answers file, loaded and scored."""

    label: str
    path: Path
    records: list[Record]
    result: EvalResult | None  # None when the file cannot be scored (see score_error)
    score_error: str | None = None
    samples: dict[int, dict] = field(default_factory=dict)  # record line -> eval sample
    errors: list[dict] = field(default_factory=list)  # rows of ANSWERS.errors.jsonl
    errors_note: str = ""  # how the errors file was found (absent, unreadable lines...)
    summary: AnswerSummary | None = None  # ANSWERS.summary.json, when present and readable

    @property
    def benchmark(self) -> str | None:
        return self.result.benchmark if self.result else None


def read_errors(path: Path) -> tuple[list[dict], str]:
    """The failures `spacemind answer` recorded; a missing or partly unreadable file is a note,
    never an error (the report is still worth building)."""
    errors_path = output_paths(path)["errors"]
    if not errors_path.exists():
        return [], f"no {errors_path.name} beside the answers (no failures recorded)"
    rows: list[dict] = []
    bad = 0
    try:
        with open(errors_path, encoding="utf-8", errors="replace") as fh:
            for text in fh:
                if not text.strip():
                    continue
                try:
                    row = json.loads(text)
                except json.JSONDecodeError:
                    bad += 1
                    continue
                if isinstance(row, dict):
                    rows.append(row)
                else:
                    bad += 1
    except OSError as exc:
        return [], f"{errors_path.name} cannot be read ({exc.strerror or exc})"
    note = f"{len(rows)} failure(s) in {errors_path.name}"
    if bad:
        note += f"; {bad} unreadable line(s) skipped"
    return rows, note


def read_summary(path: Path) -> AnswerSummary | None:
    try:
        data = json.loads(output_paths(path)["summary"].read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return AnswerSummary.from_dict(data) if isinstance(data, dict) else None


def load_run(path: str | Path, label: str, benchmark: str = "auto") -> Run:
    """Read and score an answers file exactly as ``spacemind eval`` does. A file that cannot be
    read is an InputError; a file that reads but cannot be scored (no ground truth, only custom
    question types) still gets a report, without scores."""
    path = Path(path)
    records = load_records(path)
    run = Run(label=label, path=path, records=records, result=None)
    try:
        run.result = evaluate_records(records, benchmark, source=str(path), label=label)
    except InputError as exc:
        run.score_error = exc.message
        log.info("%s: not scored (%s)", path, exc.message)
    if run.result is not None:
        run.samples = {s["line"]: s for s in run.result.samples}
    run.errors, run.errors_note = read_errors(path)
    run.summary = read_summary(path)
    return run


# ------------------------------------------------------------------------------------------
# Per-question view of a sample
# ------------------------------------------------------------------------------------------
def _categories(benchmark: str | None) -> dict[str, str]:
    """question_type -> the paper's column label, from the scorer's own category table."""
    if benchmark == "vsibench":
        from ..eval.vsibench import CATEGORIES
    elif benchmark == "spbench":
        from ..eval.spbench import CATEGORIES
    else:
        return {}
    return {t: c.column for c in CATEGORIES for t in c.members}


def verdict(benchmark: str | None, sample: dict | None) -> str:
    """right: full marks; wrong: none; partly: an MRA strictly between 0 and 1, or SQA3D's
    refined match (EM@R1) without an exact one (EM@1); unscored: eval did not score the row."""
    if sample is None:
        return UNSCORED
    if benchmark == "sqa3d":
        if sample.get("em"):
            return RIGHT
        return PARTLY if sample.get("em_refined") else WRONG
    score = sample["score"]
    if score >= 1.0:
        return RIGHT
    return WRONG if score <= 0.0 else PARTLY


def metric_of(benchmark: str | None, sample: dict | None) -> str | None:
    """"acc" (option letter), "mra" (number) or "em" (SQA3D exact match)."""
    if sample is None:
        return None
    if benchmark == "sqa3d":
        return "em"
    return "mra" if isinstance(sample.get("ground_truth"), float) else "acc"


def display(value: Any) -> str | None:
    """A value as the page shows it: text as is, numbers without float noise, None stays None."""
    if value is None:
        return None
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return repr(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
    if isinstance(value, (list, tuple)):
        return " | ".join(display(v) or "" for v in value)
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)


def answer_view(run: Run, rec: Record) -> dict:
    """What one run said about one question, and how eval scored it."""
    bench = run.benchmark
    sample = run.samples.get(rec.line)
    out: dict[str, Any] = {
        "p": rec.prediction,  # raw text (None: no prediction)
        "a": rec.parsed,  # spacemind's parsed `answer` field
        "v": verdict(bench, sample),
    }
    if sample is not None:
        out["sc"] = float(sample["score"])
        out["m"] = metric_of(bench, sample)
        scored = sample.get("normalised_prediction") if bench == "sqa3d" else sample.get("parsed")
        out["s"] = display(scored)  # the answer as the official rules read it
        if bench == "sqa3d":
            out["r1"] = int(sample.get("em_refined") or 0)
    return out


def answer_key(view: dict | None) -> str | None:
    """What two runs are compared on: the answer as scored, else the parsed answer, else the text."""
    if view is None:
        return None
    for k in ("s", "a", "p"):
        if view.get(k) is not None:
            return str(view[k]).strip().lower()
    return None


# ------------------------------------------------------------------------------------------
# Scenes
# ------------------------------------------------------------------------------------------
def scene_id(fields: dict) -> str | None:
    """How rows are grouped into scenes: the answers' scene_key, else what the row names."""
    key = fields.get("scene_key")
    if isinstance(key, str) and key:
        return key
    if isinstance(fields.get("scene"), str) and fields["scene"]:
        return fields["scene"]
    name = fields.get("scene_name") or fields.get("scene_id")
    if name:
        ds = fields.get("dataset")
        return f"{ds}/{name}" if ds else str(name)
    images = fields.get("images")
    if isinstance(images, list) and images:
        first = images[0].get("path") if isinstance(images[0], dict) else images[0]
        return f"images:{first}"
    return None


def frame_indices(fields: dict) -> tuple[int, ...] | None:
    raw = fields.get("frame_indices")
    if not isinstance(raw, (list, tuple)):
        return None
    try:
        return tuple(int(i) for i in raw if not isinstance(i, bool))
    except (TypeError, ValueError):
        return None


@dataclass
class SceneEntry:
    key: str  # scene_id of its rows ("" for rows naming no scene)
    fields: dict  # the first row's fields: how to find the scene on disk
    frame_sets: list[tuple[int, ...]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # frames_note values of its rows

    def frame_set(self, indices: tuple[int, ...] | None) -> int:
        if indices is None:
            return -1
        if indices not in self.frame_sets:
            self.frame_sets.append(indices)
        return self.frame_sets.index(indices)

    @property
    def indices(self) -> list[int]:
        return sorted({i for fs in self.frame_sets for i in fs if i >= 0})


# ------------------------------------------------------------------------------------------
# Joining a compared run
# ------------------------------------------------------------------------------------------
def _ids_usable(*runs: Run) -> bool:
    for run in runs:
        ids = [r.get("id") for r in run.records]
        if any(i is None for i in ids) or len({str(i) for i in ids}) != len(ids):
            return False
    return True


def _content_key(rec: Record) -> tuple:
    f = rec.fields
    return (
        scene_id(f),
        str(f.get("question_type")),
        str(f.get("question")),
        json.dumps(f.get("options"), sort_keys=True, default=str),
    )


def join_keys(runs: list[Run]) -> tuple[list[list[tuple]], str]:
    """One key per record of each run, equal for the same question in both runs: the `id` when
    every row of both files has a unique one, else scene + type + text + options (repeats
    numbered in file order)."""
    if _ids_usable(*runs):
        return [[("id", str(r.get("id"))) for r in run.records] for run in runs], "id"
    out = []
    for run in runs:
        seen: Counter = Counter()
        keys = []
        for r in run.records:
            k = _content_key(r)
            seen[k] += 1
            keys.append((*k, seen[k]))
        out.append(keys)
    return out, "scene, question type, text and options (ids missing or repeated)"


# ------------------------------------------------------------------------------------------
# The page model
# ------------------------------------------------------------------------------------------
_ANCHOR_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-]+")


def anchor_for(qid: Any, line: int, taken: set[str]) -> str:
    base = "q-" + (_ANCHOR_UNSAFE.sub("_", str(qid)).strip("_")[:80] if qid is not None else f"L{line}")
    if base == "q-":
        base = f"q-L{line}"
    anchor = base
    n = 2
    while anchor in taken:
        anchor = f"{base}~{n}"
        n += 1
    taken.add(anchor)
    return anchor


def category_of(bench: str | None, cats: dict[str, str], sample: dict | None, qtype: Any) -> str:
    if sample is None:
        return "Unscored" if bench else str(qtype or "—")
    if bench == "sqa3d":
        return str(sample["question_type"])
    return cats.get(str(qtype), str(qtype))


def _question_fields(rec: Record) -> dict:
    f = rec.fields
    truth = f.get("answers") if f.get("answers") is not None else f.get("ground_truth")
    options = f.get("options")
    return {
        "id": display(f.get("id")),
        "ds": display(f.get("dataset")) or "",
        "qt": display(f.get("question_type")) or "",
        "q": display(f.get("question")) or "",
        "o": [display(o) or "" for o in options] if isinstance(options, (list, tuple)) else None,
        "gt": display(truth),
    }


@dataclass
class PageModel:
    questions: list[dict]
    scenes: list[SceneEntry]
    join: dict | None = None  # compare statistics


def build_model(runs: list[Run]) -> PageModel:
    """One entry per question (union over runs when comparing), in the first run's file order
    then the compared run's extra questions; scenes in first-appearance order."""
    scenes: dict[str, SceneEntry] = {}
    scene_pos: dict[str, int] = {}
    taken: set[str] = set()
    questions: list[dict] = []
    bench = runs[0].benchmark
    cats = _categories(bench)

    def add(recs: list[Record | None]) -> None:
        first = next(r for r in recs if r is not None)
        key = scene_id(first.fields) or ""
        if key not in scenes:
            scenes[key] = SceneEntry(key, dict(first.fields))
            scene_pos[key] = len(scene_pos)
        entry = scenes[key]
        for r in recs:
            note = r.fields.get("frames_note") if r is not None else None
            if isinstance(note, str) and note and note not in entry.notes:
                entry.notes.append(note)
        sample = None
        for run, r in zip(runs, recs):
            if sample is None and r is not None:
                sample = run.samples.get(r.line)
        qd = _question_fields(first)
        qd.update(
            k=anchor_for(first.get("id"), first.line, taken),
            line=first.line,
            sc=scene_pos[key],
            cat=category_of(bench, cats, sample, first.get("question_type")),
            fs=[entry.frame_set(frame_indices(r.fields)) if r is not None else -1 for r in recs],
            r=[answer_view(run, r) if r is not None else None for run, r in zip(runs, recs)],
        )
        if sample is not None and sample.get("part"):
            qd["part"] = sample["part"]  # SPBench-SI / SPBench-MV
        questions.append(qd)

    join = None
    if len(runs) == 1:
        for rec in runs[0].records:
            add([rec])
    else:
        (keys_a, keys_b), how = join_keys(runs)
        b_by_key = dict(zip(keys_b, runs[1].records))
        a_keys = set(keys_a)
        for k, rec in zip(keys_a, runs[0].records):
            add([rec, b_by_key.get(k)])
        for k, rec in zip(keys_b, runs[1].records):
            if k not in a_keys:
                add([None, rec])
        join = compare_stats(questions, how)
    return PageModel(questions, list(scenes.values()), join)


def compare_stats(questions: list[dict], how: str) -> dict:
    """Marks each question (``cmp``: agree/disagree + which run scored higher, or only-a/only-b)
    and counts them. Two runs disagree when their answers (as scored) or their scores differ."""
    stats: Counter[str] = Counter()
    for q in questions:
        a, b = q["r"]
        if a is None or b is None:
            q["cmp"] = "only-b" if a is None else "only-a"
            stats[q["cmp"]] += 1
            continue
        stats["matched"] += 1
        differ = answer_key(a) != answer_key(b) or a.get("sc") != b.get("sc")
        better = "tie"
        if a.get("sc") is not None and b.get("sc") is not None and a["sc"] != b["sc"]:
            better = "a" if a["sc"] > b["sc"] else "b"
        stats["disagree"] += differ
        stats[f"{better}_better"] += better != "tie"
        q["cmp"] = ("disagree-" if differ else "agree-") + better
    return {
        "matched_on": how,
        "matched": stats["matched"],
        "only_a": stats["only-a"],
        "only_b": stats["only-b"],
        "disagree": stats["disagree"],
        "a_better": stats["a_better"],
        "b_better": stats["b_better"],
    }
