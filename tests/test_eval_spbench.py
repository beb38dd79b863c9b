"""SPBench scorer: SpatialLadder's parsers, SI/MV split, per-part averages."""

from __future__ import annotations

import json

import pytest

from spacemind_cli.errors import InputError
from spacemind_cli.eval import evaluate_file, evaluate_records, to_json
from spacemind_cli.eval.records import Record
from spacemind_cli.eval.spbench import extract_answer, match_choice, match_number, part_from_text, score_choice


@pytest.mark.parametrize(
    "reply, number",
    [
        ("3", "3"),
        ("3.5 meters", "3.5"),
        ("three", "3"),
        ("Three chairs", "3"),
        ("a chair", "1"),  # "a" / "an" read as 1
        ("an apple and 3 chairs", "1"),  # number words win over digits
        ("eighteen", "18"),  # whole words: "eight" does not match inside "eighteen"
        ("twenty-one", "1"),  # "one" is checked before "twenty" (SpatialLadder's dict order)
        ("about 2.5m", "2.5"),
        ("-2", "2"),  # no sign in the digit pattern
        ("Zero", "0"),
        ("no idea", "None"),
        ("", "None"),
    ],
)
def test_number_parser(reply, number):
    assert match_number(reply) == number


@pytest.mark.parametrize(
    "reply, choice",
    [("B", "B"), ("B.", "B"), ("B. left", "B"), ("Answer: C", "C"), ("b", "b"), ("b.", "b."), ("E", "E"), ("(A)", "(A)")],
)
def test_choice_parser(reply, choice):
    assert match_choice(reply) == choice


def test_choice_scoring_differs_from_vsibench_where_the_official_code_does():
    assert score_choice("b", "B") == 1.0
    assert score_choice("b.", "B") == 0.0  # SpatialLadder's letter regex is upper-case only
    assert score_choice("Answer: B", "B") == 1.0  # "Answer:" is removed first
    assert score_choice("<think>hmm</think><answer>B</answer>", "B") == 1.0
    assert score_choice(None, "B") == 0.0


def test_answer_tags():
    assert extract_answer("<think>x</think> <answer> 3 </answer>") == "3"
    assert extract_answer("<answer>3") == "None"  # opening tag without closing tag
    assert extract_answer("3 meters") == "3 meters"


@pytest.mark.parametrize(
    "text, part",
    [("SPBench-SI", "SPBench-SI"), ("spbench_mv", "SPBench-MV"), ("MV", "SPBench-MV"), ("single-image", "SPBench-SI"),
     ("multi view", "SPBench-MV"), ("scannet", None), ("test", None), (None, None), ("simulation", None)],
)  # fmt: skip
def test_part_from_text(text, part):
    assert part_from_text(text) == part


def _row(i, part, qt, gt, pred, **extra):
    return {"id": i, "dataset": "scannet", "split": part, "question_type": qt, "question": "q", "ground_truth": gt,
            "prediction": pred, "images": ["0.jpg"], **extra}  # fmt: skip


def _by_hand_rows():
    si = [
        _row(1, "SPBench-SI", "object_abs_distance", "2.0", "2"),  # 1.0
        _row(2, "SPBench-SI", "object_abs_distance", "2.0", "3 meters"),  # |1|/2 = 0.5 -> 0.1
        _row(3, "SPBench-SI", "object_size_estimation", "50", "a bit more than 50"),  # "a" -> 1 -> 0.0
        _row(4, "SPBench-SI", "object_rel_distance", "A", "A."),  # 1
        _row(5, "SPBench-SI", "object_rel_direction", "B", "Answer: C"),  # 0
    ]
    mv = [
        _row(6, "SPBench-MV", "object_counting", "3", "three"),  # 1.0
        _row(7, "SPBench-MV", "object_counting", "0", "zero"),  # GT 0, exact 0 -> 1.0
        _row(8, "SPBench-MV", "object_abs_distance", "1.0", None),  # missing -> 0
        _row(9, "SPBench-MV", "object_size_estimation", "10", "<answer>14</answer>"),  # 0.4 -> 0.3
        _row(10, "SPBench-MV", "object_rel_distance", "C", "c"),  # 1
        _row(11, "SPBench-MV", "object_rel_direction", "D", "D. left"),  # 1
    ]
    return si + mv


def test_by_hand_si_and_mv(tmp_path):
    p = tmp_path / "answers.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in _by_hand_rows()))
    r = evaluate_file(p)
    assert r.benchmark == "spbench"
    si, mv = r.official["SPBench-SI"], r.official["SPBench-MV"]
    assert si["object_abs_distance_MRA:.5:.95:.05"] == pytest.approx(55.0)
    assert si["object_size_estimation_MRA:.5:.95:.05"] == 0.0
    assert si["object_rel_distance_accuracy"] == 100.0 and si["object_rel_direction_accuracy"] == 0.0
    si_avg = (55.0 + 0.0 + 100.0 + 0.0) / 4
    assert si["overall_accuracy"] == pytest.approx(si_avg)
    assert si["mca_accuracy"] == pytest.approx(50.0) and si["na_accuracy"] == pytest.approx(27.5)
    assert "object_counting_MRA:.5:.95:.05" not in si
    assert mv["object_counting_MRA:.5:.95:.05"] == pytest.approx(100.0)
    assert mv["object_abs_distance_MRA:.5:.95:.05"] == 0.0
    assert mv["object_size_estimation_MRA:.5:.95:.05"] == pytest.approx(30.0)
    mv_avg = (100.0 + 0.0 + 30.0 + 100.0 + 100.0) / 5
    assert mv["overall_accuracy"] == pytest.approx(mv_avg)
    assert r.official["overall_unofficial"] == pytest.approx((si_avg + mv_avg) / 2)
    assert r.get("SPBench/overall_unofficial") == pytest.approx((si_avg + mv_avg) / 2)
    assert r.n_missing_prediction == 1
    assert any("SPBench defines no overall" in n for n in r.notes)
    assert r.per_type["SPBench-MV/object_counting"]["n"] == 2


def test_part_from_file_name_and_forced_part(tmp_path):
    rows = [{k: v for k, v in r.items() if k != "split"} for r in _by_hand_rows()[:5]]
    p = tmp_path / "SPBench-SI_results.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    r = evaluate_file(p, benchmark="spbench")
    assert list(r.official) == ["SPBench-SI"]
    assert any("only SPBench-SI" in n for n in r.notes)
    q = tmp_path / "answers.jsonl"
    q.write_text(p.read_text())
    with pytest.raises(InputError, match=rf"{q}:1: cannot tell whether this SPBench row"):
        evaluate_file(q, benchmark="spbench")
    assert list(evaluate_file(q, benchmark="spbench", spbench_part="MV").official) == ["SPBench-MV"]
    assert list(evaluate_file(q, benchmark="spbench-mv").official) == ["SPBench-MV"]
    with pytest.raises(InputError, match="unknown SPBench part"):
        evaluate_file(q, benchmark="spbench", spbench_part="XY")


def test_spatialladder_results_file_with_predicted_answer(tmp_path):
    p = tmp_path / "SPBench-MV_results.jsonl"
    rows = [{"id": 1, "dataset": "scannet", "scene_name": "s", "question": "q", "ground_truth": "4",
             "predicted_answer": "<think>...</think><answer>four</answer>", "question_type": "object_counting"}]  # fmt: skip
    p.write_text(json.dumps(rows[0]) + "\n")
    r = evaluate_file(p)
    assert r.benchmark == "spbench" and r.input_format == "spatialladder"
    assert r.official["SPBench-MV"]["object_counting_MRA:.5:.95:.05"] == 100.0


def test_unscored_types_and_micro_variant():
    recs = [
        Record(i, {"question_type": qt, "ground_truth": gt, "split": "SI"}, pred, None, "answers", f"m:{i}")
        for i, (qt, gt, pred) in enumerate(
            [("object_rel_distance", "A", "A"), ("object_rel_distance", "A", "A"), ("object_rel_distance", "A", "B"),
             ("object_rel_direction", "A", "B"), ("height_estimation", "3", "3")]
        )
    ]  # fmt: skip
    r = evaluate_records(recs, "spbench", source="x.jsonl")
    assert r.unscored == {"height_estimation": 1}
    assert r.official["SPBench-SI"]["overall_accuracy"] == pytest.approx((200 / 3 + 0) / 2)
    micro = evaluate_records(recs, "spbench", "micro", source="x.jsonl")
    assert micro.official["SPBench-SI"]["overall_accuracy"] == pytest.approx(50.0)  # 2 of 4 questions
    # SI lacks abs distance and size: reported empty and noted, not averaged as 0
    assert any("object_abs_distance" in n for n in r.notes)
    assert to_json(r)["scores"]["SPBench-SI"]["mca_accuracy"] == pytest.approx(100 / 3)
