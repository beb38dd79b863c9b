"""Partly labelled and mixed answer files (issue #22.5): the labelled rows are scored and the rest
counted (table footer, --json, notes); a file mixing benchmarks is refused saying so."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from spacemind_cli.cli.main import app
from spacemind_cli.eval import evaluate_file

VSI = [
    {"id": 1, "question_type": "object_counting", "ground_truth": "3", "prediction": "3"},
    {"id": 2, "question_type": "object_counting", "prediction": "2"},  # unlabelled
    {"id": 3, "question_type": "object_counting", "ground_truth": "4", "prediction": "2"},
    {"id": 4, "question_type": "route_planning", "options": ["A. x", "B. y"], "ground_truth": "A", "prediction": "A"},
    {"id": 5, "question_type": "route_planning", "options": ["A. x", "B. y"], "prediction": "B"},  # unlabelled
]
SQA = [{"id": 10 + i, "question": "What is on my left?", "situation": "I face the sofa.", "answers": ["lamp"],
        "prediction": "lamp"} for i in range(3)]


def write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_a_partly_labelled_file_scores_its_labelled_rows(tmp_path):
    path = write(tmp_path / "partial.jsonl", VSI)
    result = evaluate_file(path)
    assert result.n_scored == 3 and result.n_unlabelled == 2
    assert abs(result.official["object_counting_MRA:.5:.95:.05"] - (100.0 + 10.0) / 2) < 1e-9  # 2 vs 4: MRA 0.1
    assert result.official["route_planning_accuracy"] == 100.0
    assert "2 question(s) without ground truth left unscored" in result.notes

    res = CliRunner().invoke(app, ["eval", str(path), "--json", str(tmp_path / "s.json")])
    assert res.exit_code == 0, res.output
    assert "2 without ground truth (unscored)" in " ".join(res.output.split())
    saved = json.loads((tmp_path / "s.json").read_text())
    assert saved["n_unlabelled"] == 2 and saved["n_scored"] == 3

    sqa = write(tmp_path / "sqa3d_partial.jsonl", SQA + [{"id": 20, "question": "Is it on?", "prediction": "yes"}])
    result = evaluate_file(sqa)
    assert result.benchmark == "sqa3d" and result.n_scored == 3 and result.n_unlabelled == 1

    none = write(tmp_path / "none.jsonl", [{k: v for k, v in r.items() if k != "ground_truth"} for r in VSI])
    res = CliRunner().invoke(app, ["eval", str(none)])
    assert res.exit_code == 2 and "no row has ground truth" in " ".join(res.output.split())


def test_a_file_mixing_benchmarks_is_refused_saying_so(tmp_path):
    path = write(tmp_path / "mixed.jsonl", VSI[:1] + VSI[2:] + SQA)
    res = CliRunner().invoke(app, ["eval", str(path)])
    assert res.exit_code == 2, res.output
    text = " ".join(res.output.split())
    assert "mixes benchmarks" in text and "VSI-Bench/SPBench 4 row(s)" in text and "SQA3D 3 row(s)" in text
    assert f"{path}:5" in text  # where SQA3D's rows start
    assert "no question_type" not in text


def test_compare_on_other_questions_shows_each_runs_n(tmp_path):
    """#22.6: two runs on different question sets showed one n and no warning."""
    from rich.console import Console

    from spacemind_cli.eval.render import render_table

    full = write(tmp_path / "full.jsonl", VSI)
    fewer = write(tmp_path / "fewer.jsonl", [r for r in VSI if r["question_type"] == "object_counting"] +
                  [{"id": 9, "question_type": "object_counting", "ground_truth": "7", "prediction": "7"}])
    console = Console(width=200, record=True)
    console.print(render_table(evaluate_file(full), compare=[fewer]))
    text = console.export_text()
    assert "different question sets" in text
    n_rows = [line for line in text.splitlines() if "n (questions)" in line]
    assert len(n_rows) == 2 and "full" in n_rows[0] and "fewer" in n_rows[1]
    cells = [[c.strip() for c in line.split("│")[2:5]] for line in n_rows]  # Avg., Obj. Count, Abs. Dist.
    assert cells == [["3", "2", "0"], ["3", "3", "0"]]  # same total, other questions: only each n shows it
    assert n_rows[0].split("│")[-3].strip() == "1" and n_rows[1].split("│")[-3].strip() == "0"  # Route Plan
    same = CliRunner().invoke(app, ["eval", str(full), "--compare", str(full)])
    assert same.exit_code == 0 and "different question sets" not in " ".join(same.output.split())
    res = CliRunner().invoke(app, ["eval", str(full), "--compare", str(fewer)])
    assert res.exit_code == 0 and "different question sets" in " ".join(res.output.split())


def test_answer_prints_the_scores_of_a_partly_labelled_question_file(tmp_path, tiny_ckpt):
    """#22.5: one question without ground_truth turned off all of answer's scores."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent / "reliability"))
    from reliability_support import answer_args, cli, frames_scene, question

    root = tmp_path / "scenes"
    frames_scene(root / "room", n=4, seed=5)
    q = write(tmp_path / "partial.jsonl", [question(1, "room", ground_truth=2), question(2, "room"),
                                           question(3, "room", ground_truth=1)])
    res = cli(*answer_args(root, q, tiny_ckpt, tmp_path / "a.jsonl"))
    assert res.exit_code == 0, res
    text = " ".join(res.stdout.split())
    assert "2 questions scored" in text and "1 without ground truth (unscored)" in text
    assert "no benchmark scores" not in res.stderr
