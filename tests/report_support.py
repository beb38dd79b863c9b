"""Answers files for the report tests: the bundled example questions with predictions made by fixed
rules (no model), shaped like `spacemind answer`'s output rows (see jobs/answer.py: output_row)."""

from __future__ import annotations

import json
from pathlib import Path

from spacemind_cli.parsing import parse_answer
from spacemind_cli.scenes import Sampling, sample_indices

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
FRAMES = sample_indices(48, Sampling(32))  # what `answer` samples from the 48-frame examples


def example_rows() -> list[dict]:
    return [json.loads(line) for line in (EXAMPLES / "questions.jsonl").read_text().splitlines() if line.strip()]


def prediction(row: dict, rule: int) -> str:
    """rule 0: the truth; 1: the option's full text ("A. left", right by the official first-word
    rule) or +25 % for numbers (MRA 0.6); 2: the truth in a sentence the official rules cannot
    read ("The answer is A." / "about 1.3": first word not a letter / not a number); 3: a wrong
    letter / three times the number."""
    gt = row["ground_truth"]
    if row.get("options"):
        letters = [o[0] for o in row["options"]]
        if rule == 0:
            return gt
        if rule == 1:
            return row["options"][letters.index(gt)]
        if rule == 2:
            return f"The answer is {gt}."
        return next(x for x in letters if x != gt)
    g = float(gt)
    return [f"{g:g}", f"{g * 1.25:g}", f"about {g:g}", f"{g * 3:g}"][rule]


def answer_row(row: dict, text: str, run: str = "run0", frames: list[int] | None = None) -> dict:
    out = dict(row)
    out.update(
        prediction=text,
        answer=parse_answer(text, options=row.get("options"), question_type=row["question_type"]),
        scene_key=f"{row['dataset']}/{row['scene_name']}",
        checkpoint_id=f"ckpt-{run}",
        run_key=f"key-{run}",
        frames_used=len(frames if frames is not None else FRAMES),
        frame_indices=list(frames if frames is not None else FRAMES),
        timing={"generate_s": 0.1, "batch": 8},
        cache="none",
    )
    return out


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
