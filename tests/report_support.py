"""Answers files for the report tests: the bundled example questions with predictions made by fixed
rules (no model), shaped like `spacemind answer`'s output rows (see jobs/answer.py: output_row).
The rules and the row shape are bench/report.py's (`prediction`, `answer_row`, `FRAMES`), which
makes the benchmark's answers the same way."""

from __future__ import annotations

import json
from pathlib import Path

from bench.report import FRAMES, answer_row, prediction  # noqa: F401  (the bench makes its answers alike)

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"


def example_rows() -> list[dict]:
    return [json.loads(line) for line in (EXAMPLES / "questions.jsonl").read_text().splitlines() if line.strip()]


def make_rows(shift: int = 0, run: str = "run0") -> list[dict]:
    """Every example question, question i answered by rule (i + shift) % 4."""
    return [answer_row(r, prediction(r, (i + shift) % 4), run) for i, r in enumerate(example_rows())]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def page_data(report_dir: Path) -> dict:
    """The JSON the page renders from (the <script id="report-data"> of index.html)."""
    html = (report_dir / "index.html").read_text(encoding="utf-8")
    start = html.index('<script id="report-data" type="application/json">') + len('<script id="report-data" type="application/json">')
    end = html.index("</script>", start)
    return json.loads(html[start:end])
