"""SQA3D scorer: LEO's normalisation, EM@1 / EM@R1, question-type breakdown."""

from __future__ import annotations

import json

import pytest

from spacemind_cli.errors import InputError
from spacemind_cli.eval import evaluate_file, evaluate_records, to_json
from spacemind_cli.eval.records import Record
from spacemind_cli.eval.sqa3d import answer_match, answers_of, clean_answer, question_type


@pytest.mark.parametrize(
    "raw, clean",
    [
        ("Two.", "two"),
        ("2", "two"),
        ("the table", "table"),
        ("A chair", "chair"),
        ("an apple", "apple"),
        ("None", "zero"),
        ("0", "zero"),
        ("23", "twenty-three"),
        ("21", "21"),  # only 0-20 and 23 are spelled out
        ("mat2", "mat"),
        ("  Left   side  ", "left side"),
        ("tv", "TV"),
        ("let", "left"),
        ("rigth", "right"),
        ("backwards", "backward"),
        ("1.5", "fifteen"),  # '.' is removed before digits are spelled out, as in LEO
        ("o' clock", "o'clock"),
        ("Yes!", "yes"),
        ("the", "the"),  # no word follows: kept
    ],
)
def test_clean_answer(raw, clean):
    assert clean_answer(raw) == clean


@pytest.mark.parametrize(
    "pred, gts, expected",
    [
        ("table", ["table"], (1, 1)),
        ("brown table", ["table"], (0, 1)),  # answer inside prediction
        ("table", ["brown table"], (0, 1)),  # prediction inside answer
        ("coffee table", ["coffeetable"], (0, 1)),  # whitespace removed for containment
        ("chair", ["table"], (0, 0)),
        ("chair", ["table", "chair"], (1, 1)),
        ("table", ["tables", "table"], (0, 1)),  # LEO stops at the first containment
        ("", ["table"], (0, 1)),  # LEO: "" is contained in every answer
        ("table", ["", "chair"], (0, 1)),  # and an empty answer in every prediction
        ("", ["", "chair"], (1, 1)),  # equal empties
    ],
)
def test_answer_match_is_leos(pred, gts, expected):
    assert answer_match(pred, gts) == expected


def test_nonempty_variant_never_matches_empty_strings():
    assert answer_match("", ["table"], empty_matches=False) == (0, 0)
    assert answer_match("table", ["", "chair"], empty_matches=False) == (0, 0)


@pytest.mark.parametrize(
    "pred, answers, expected",
    [
        ("left\n", ["left"], (1, 1)),  # LEO strips the model's text: without it, EM@1 would miss
        ("\tleft ", ["left"], (1, 1)),
        (" \n ", ["left"], (0, 1)),  # empty after stripping: contained in every answer
        ("?!", ["left"], (0, 1)),  # empty after normalisation
        ("left", ["?"], (0, 1)),  # an answer that normalises to nothing
        ("two chairs", ["2"], (0, 1)),  # "2" -> "two", contained
    ],
)
def test_rows_are_scored_as_leos_evaluator_does(pred, answers, expected):
    [row] = evaluate_records([_rec(1, "What is it?", {"answers": answers}, pred)], "sqa3d", source="s.jsonl").samples
    assert (row["em"], row["em_refined"]) == expected


@pytest.mark.parametrize(
    "q, t",
    [
        ("What is on my left?", "What"),
        ("  is the door open?", "Is"),
        ("Isn't it dark?", "Is"),  # LEO checks prefixes
        ("How many chairs?", "How"),
        ("Can I sit?", "Can"),
        ("Which way?", "Which"),
        ("Where is the sink?", "Others"),
        ("Whatever is there?", "What"),
        ("", "Others"),
    ],
)
def test_question_type(q, t):
    assert question_type(q) == t


def _rec(line, question, answers, pred, **extra):
    fields = {"id": line, "dataset": "sqa3d", "question": question, **answers, **extra}
    return Record(line, fields, pred, None, "answers", f"m:{line}")


def test_answers_field_shapes():
    assert answers_of(_rec(1, "q", {"answers": ["a", "b"]}, "x")) == ["a", "b"]
    assert answers_of(_rec(1, "q", {"answers": [{"answer": "a", "answer_id": 1}]}, "x")) == ["a"]
    assert answers_of(_rec(1, "q", {"ground_truth": "a"}, "x")) == ["a"]
    assert answers_of(_rec(1, "q", {"ground_truth": 2}, "x")) == ["2"]
    with pytest.raises(InputError, match="m:1"):
        answers_of(_rec(1, "q", {}, "x"))
    with pytest.raises(InputError):
        answers_of(_rec(1, "q", {"answers": [{"id": 1}]}, "x"))


def test_em_and_breakdown_by_hand():
    rows = [
        _rec(1, "What is in front of me?", {"answers": ["table"]}, "Table."),  # EM 1
        _rec(2, "What color is the wall?", {"answers": ["white"]}, "white wall"),  # EM 0, R 1
        _rec(3, "Is the door open?", {"answers": [{"answer": "yes"}]}, "no"),  # 0, 0
        _rec(4, "How many chairs are there?", {"ground_truth": "two"}, "2"),  # 1, 1
        _rec(5, "Can I reach the lamp?", {"answers": ["yes"]}, None),  # missing: 0, 0
        _rec(6, "Which way is the bed?", {"answers": ["left"]}, ""),  # empty: 0, 1 (LEO), 0, 0 (nonempty)
        _rec(7, "Where is the sink?", {"answers": ["behind me"]}, "the sink is behind me"),  # 0, 1
    ]
    r = evaluate_records(rows, "sqa3d", source="sqa.jsonl")
    assert r.official["em_overall"] == pytest.approx(100 * 2 / 7)
    assert r.official["em_refined_overall"] == pytest.approx(100 * 5 / 7)
    assert r.official["em_type0"] == pytest.approx(50.0) and r.official["em_refined_type0"] == pytest.approx(100.0)
    assert r.official["em_type1"] == 0.0
    assert r.official["em_type2"] == 100.0
    assert r.official["em_refined_type5"] == 100.0
    counts = {t: e["n"] for t, e in r.per_type.items()}
    assert counts == {"What": 2, "Is": 1, "How": 1, "Can": 1, "Which": 1, "Others": 1}
    assert r.n_missing_prediction == 1
    assert any("empty after normalisation" in n for n in r.notes)
    # nonempty: the empty prediction of row 6 no longer counts for EM@R1
    r2 = evaluate_records(rows, "sqa3d", "nonempty", source="sqa.jsonl")
    assert r2.official["em_refined_overall"] == pytest.approx(100 * 4 / 7)
    assert r2.official["em_overall"] == r.official["em_overall"]
    assert r2.variant == "nonempty"
    # leo-empty, the old name of the official rule, changes nothing and says so
    r3 = evaluate_records(rows, "sqa3d", "leo-empty", source="sqa.jsonl")
    assert r3.official == r.official and any("official SQA3D rule" in n for n in r3.notes)


def test_types_without_questions_are_empty_not_zero():
    r = evaluate_records([_rec(1, "What?", {"answers": ["a"]}, "a")], "sqa3d", source="s.jsonl")
    assert r.get("EM@1/em_type1") is None and "em_type1" not in r.official
    assert r.get("EM@1/em_overall") == 100.0


def test_sqa3d_file_end_to_end(tmp_path):
    p = tmp_path / "answers.jsonl"
    rows = [
        {"id": 1, "dataset": "sqa3d", "scene_name": "scene0000_00", "question_type": "sqa3d", "question": "What is it?",
         "options": None, "answers": [{"answer": "chair"}], "prediction": "A chair.", "answer": "chair"},
        {"id": 2, "dataset": "sqa3d", "scene_name": "scene0000_00", "question_type": "sqa3d", "question": "Is it on?",
         "options": None, "ground_truth": "yes", "prediction": "Yes, it is.", "answer": "yes"},
    ]  # fmt: skip
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    r = evaluate_file(p)
    assert r.benchmark == "sqa3d"
    assert r.official["em_overall"] == pytest.approx(50.0)  # "yes, it is" != "yes"
    assert r.official["em_refined_overall"] == pytest.approx(100.0)  # but contains it
    assert r.unscored == {}
    j = to_json(r)
    assert list(j["scores"])[:2] == ["em_overall", "em_type0"]
    assert "em_refined_overall" in j["scores"]
    with pytest.raises(InputError, match="no question text"):
        evaluate_records([Record(1, {"answers": ["a"]}, "a", None, "answers", "m:1")], "sqa3d")
