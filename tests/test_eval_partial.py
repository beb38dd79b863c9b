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
