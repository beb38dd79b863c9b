"""Question and training files as users save them (issue #22.8, #22.9): a JSON array under a
.jsonl name is named as such (exit 2), and positions in a JSON array are records, not lines."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "reliability"))

from reliability_support import answer_args, cli, frames_scene, question  # noqa: E402


@pytest.fixture
def root(tmp_path) -> Path:
    root = tmp_path / "scenes"
    frames_scene(root / "room", n=4, seed=5)
    return root


def rows(n: int) -> list[dict]:
    return [question(i, "room", ground_truth=i % 3) for i in range(1, n + 1)]


def test_a_json_array_named_jsonl_is_named_as_such(tmp_path, root, tiny_ckpt):
    q = tmp_path / "q.jsonl"
    q.write_text(json.dumps(rows(29), indent=2))  # 29 records over many lines
    expected = f"{q} holds a JSON array; name it .json"
    res = cli(*answer_args(root, q, tiny_ckpt, tmp_path / "a.jsonl"))
    assert res.exit_code == 2, res
    assert expected in " ".join(res.stderr.split()) and "malformed" not in res.stderr
    res = cli("train", root, "--questions", q, "--checkpoint", tiny_ckpt, "--output", tmp_path / "run",
              "--executor", "local", "--num-frames", "4")
    assert res.exit_code == 2, res
    assert expected in " ".join(res.stderr.split()) and "unknown format" not in res.stderr
    one_line = tmp_path / "one.jsonl"  # an array on one line, too
    one_line.write_text(json.dumps(rows(2)) + "\n")
    assert f"{one_line} holds a JSON array" in " ".join(cli(*answer_args(root, one_line, tiny_ckpt, tmp_path / "b.jsonl")).stderr.split())
    renamed = tmp_path / "q.json"  # the same file named .json reads
    renamed.write_text(q.read_text())
    from spacemind_cli.questions import read_questions

    assert len(read_questions(renamed).questions) == 29


def test_positions_in_a_json_array_are_records_not_lines(tmp_path):
    from spacemind_cli.questions import read_questions
    from spacemind_cli.training.data import read_training_file

    good = {"video": "room.mp4", "conversations": [{"from": "human", "value": "<video>\nHow many?"},
                                                   {"from": "gpt", "value": "2"}]}
    data = [good, {**good, "id": "b"}, {"id": "bad", "video": "room.mp4"}, {**good, "id": "d"}]
    train = tmp_path / "train.json"
    train.write_text(json.dumps(data, indent=2))  # record 3 sits on line ~20
    ts = read_training_file(train)
    (problem,) = ts.problems
    assert str(problem).startswith(f"{train} record 3 (question bad): ")
    assert problem.to_record("training data") == {"stage": "training data", "file": str(train), "record": 3,
                                                  "id": "bad", "error": problem.message}
    assert ts.examples[2].where() == f"{train} record 4 (example d)"
    assert ts.examples[0].id == "line-1"  # ids stay as they were: stable across versions
    jsonl = tmp_path / "train.jsonl"  # the same records as JSON Lines: lines
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in data))
    (problem,) = read_training_file(jsonl).problems
    assert str(problem).startswith(f"{jsonl}:3 (question bad): ") and problem.to_record()["line"] == 3

    q = tmp_path / "q.json"
    q.write_text(json.dumps([question(1, "room"), {"id": 2, "scene": "room"}], indent=2))
    (problem,) = read_questions(q).problems
    assert str(problem).startswith(f"{q} record 2 (question 2): missing required field 'question'")
