"""VSI-Bench scorer: hand-computed cases for every branch, and a synthetic run checked against an
independent re-implementation written with plain loops."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from spacemind_cli.errors import InputError
from spacemind_cli.eval import evaluate_file, evaluate_records, mean_relative_accuracy, to_json
from spacemind_cli.eval.common import CONF_INTERVALS, TOLERANCES
from spacemind_cli.eval.records import Record
from spacemind_cli.eval.vsibench import fuzzy_matching, parse_number, score_choice, score_numeric

NUMERIC = ["object_counting", "object_abs_distance", "object_size_estimation", "room_size_estimation"]
CHOICE = [
    "object_rel_distance",
    "object_rel_direction_easy",
    "object_rel_direction_medium",
    "object_rel_direction_hard",
    "route_planning",
    "obj_appearance_order",
]
KEYS = [
    "overall",
    "object_counting_MRA:.5:.95:.05",
    "object_abs_distance_MRA:.5:.95:.05",
    "object_size_estimation_MRA:.5:.95:.05",
    "room_size_estimation_MRA:.5:.95:.05",
    "object_rel_distance_accuracy",
    "object_rel_direction_accuracy",
    "route_planning_accuracy",
    "obj_appearance_order_accuracy",
]


def rec(qt, gt, pred, line=1, **extra):
    fields = {"id": line, "question_type": qt, "question": "q?", "ground_truth": gt, **extra}
    return Record(line, fields, pred, None, "answers", f"mem:{line}")


def score(records, variant="official"):
    return evaluate_records(records, "vsibench", variant, source="mem.jsonl")


# ---------------------------------------------------------------- thresholds and MRA boundaries
def test_ten_thresholds_built_like_the_official_code():
    assert len(CONF_INTERVALS) == 10  # (0.95-0.5)/0.05 + 2 = 10.999... -> int -> 10, not 11
    assert CONF_INTERVALS[0] == 0.5 and CONF_INTERVALS[-1] == 0.95
    # numpy's linspace gives 0.8999999999999999 for the 9th threshold, so 1 - it is 0.10000000000000009
    assert TOLERANCES[8] == 1 - np.linspace(0.5, 0.95, 10)[8] and TOLERANCES[8] > 0.1


@pytest.mark.parametrize(
    "gt, pred, expected",
    [
        (10.0, 15.0, 0.1),  # |5|/10 = 0.5 <= 1-0.50 only
        (10.0, 5.0, 0.1),  # symmetric below
        (10.0, 10.0, 1.0),
        (10.0, 13.0, 0.5),  # 0.3 <= 1-0.70 (=0.30000000000000004): thresholds .50..  .70 -> 5/10
        (1.0, 0.7, 0.5),  # rel err 0.30000000000000004 still <= 0.30000000000000004
        (100.0, 105.0, 1.0),  # 0.05 <= 1-0.95 (=0.050000000000000044): all ten
        (100.0, 110.0, 0.9),  # 0.1 <= 1-0.8999999999999999: nine (a literal 0.9 threshold would give 0.8)
        (10.0, 15.01, 0.0),  # just past the loosest threshold
        (10.0, 20.0, 0.0),
        (10.0, -10.0, 0.0),
    ],
)
def test_mra_boundaries(gt, pred, expected):
    assert mean_relative_accuracy(pred, gt) == pytest.approx(expected, abs=1e-12)


def test_mra_strict_variant_drops_exact_boundaries():
    assert mean_relative_accuracy(15.0, 10.0, strict=True) == 0.0  # 0.5 < 0.5 is False
    assert mean_relative_accuracy(14.0, 10.0) == pytest.approx(0.3)  # 0.4 <= 1-0.6 (=0.4 exactly)
    assert mean_relative_accuracy(14.0, 10.0, strict=True) == pytest.approx(0.2)
    assert mean_relative_accuracy(13.0, 10.0, strict=True) == pytest.approx(0.5)  # 0.3 < 0.30000000000000004


def test_official_float_quirk_at_threshold_080_is_kept():
    # 1 - 0.8 is 0.19999999999999996 in floats, so an exact 20% error misses the 0.80 threshold in
    # the official code (6/10, not 7/10). We keep the official arithmetic.
    assert mean_relative_accuracy(12.0, 10.0) == pytest.approx(0.6)


def test_ground_truth_zero_does_not_crash():
    assert mean_relative_accuracy(0.0, 0.0) == 1.0
    assert mean_relative_accuracy(0.5, 0.0) == 0.0
    assert mean_relative_accuracy(None, 0.0) == 0.0
    r = score([rec("object_counting", "0", "0", 1), rec("object_counting", 0, "1", 2)])
    assert r.official["object_counting_MRA:.5:.95:.05"] == pytest.approx(50.0)
    assert any("ground truth 0" in n for n in r.notes)


def test_nan_and_inf_predictions_score_zero():
    assert score_numeric("nan", 3.0) == 0.0
    assert score_numeric("inf", 3.0) == 0.0


# ---------------------------------------------------------------- answer extraction
@pytest.mark.parametrize(
    "pred, word",
    [("B.", "B"), ("b", "b"), ("B. left", "B"), ("3.5 meters", "3.5"), ("3...", "3"), (" B", ""), ("B.\nleft", "B.\nleft")],
)
def test_fuzzy_matching_is_first_space_separated_word(pred, word):
    assert fuzzy_matching(pred) == word


@pytest.mark.parametrize(
    "pred, gt, expected",
    [
        ("B.", "B", 1.0),
        ("b", "B", 1.0),
        ("B. left", "B", 1.0),
        ("B", "b", 1.0),
        ("A", "B", 0.0),
        ("(B)", "B", 0.0),
        ("Answer: B", "B", 0.0),  # first word is "Answer:"
        ("", "B", 0.0),
        (" B", "B", 0.0),  # official split(' ') gives an empty first word
        ("B.\nleft", "B", 0.0),  # no space: the whole text is the first word
        (None, "B", 0.0),
    ],
)
def test_choice_scoring(pred, gt, expected):
    assert score_choice(pred, gt) == expected


@pytest.mark.parametrize(
    "pred, value",
    [("3", 3.0), ("3.5 meters", 3.5), ("3.5.", 3.5), ("about 3", None), ("3,5", None), ("", None), ("1e2", 100.0), (None, None)],
)
def test_number_parsing_official(pred, value):
    assert parse_number(pred) == value


def test_number_parsing_anywhere_variant():
    assert parse_number("about 3.5 m", anywhere=True) == 3.5
    assert parse_number("no idea", anywhere=True) is None
    r_off = score([rec("room_size_estimation", "20", "It is 20 square meters")])
    r_any = score([rec("room_size_estimation", "20", "It is 20 square meters")], variant="anywhere")
    assert r_off.official["room_size_estimation_MRA:.5:.95:.05"] == 0.0
    assert r_any.official["room_size_estimation_MRA:.5:.95:.05"] == pytest.approx(100.0)
    assert r_any.variant == "anywhere"


# ---------------------------------------------------------------- aggregation
def test_rel_direction_collapse_and_micro_variant():
    rows = [
        rec("object_rel_direction_easy", "A", "A", 1),
        rec("object_rel_direction_easy", "A", "A", 2),
        rec("object_rel_direction_medium", "B", "A", 3),
        rec("object_rel_direction_hard", "C", "C", 4),
        rec("object_rel_direction_hard", "C", "D", 5),
        rec("object_rel_direction_hard", "C", "D", 6),
        rec("object_rel_direction_hard", "C", "D", 7),
    ]
    r = score(rows)
    # (1 + 0 + 0.25) / 3, not the pooled 3/7
    assert r.official["object_rel_direction_accuracy"] == pytest.approx(100 * 1.25 / 3)
    assert r.official["overall"] == pytest.approx(100 * 1.25 / 3)  # the only category present
    assert "object_rel_direction_easy_accuracy" not in r.official
    assert r.per_type["object_rel_direction_hard"]["n"] == 4
    micro = score(rows, variant="micro")
    assert micro.official["object_rel_direction_accuracy"] == pytest.approx(100 * 3 / 7)


def test_missing_types_are_reported_and_left_out_of_overall():
    r = score([rec("object_counting", "4", "4", 1), rec("route_planning", "A", "B", 2)])
    assert r.official["overall"] == pytest.approx(50.0)  # mean of the two categories present
    assert r.get("room_size_estimation_MRA:.5:.95:.05") is None
    assert "room_size_estimation_MRA:.5:.95:.05" not in r.official
    assert any("room_size_estimation" in n for n in r.notes)
    assert len(r.scores) == 9  # Avg. + 8 columns, empty ones included


def test_partial_rel_direction_types_are_noted():
    r = score([rec("object_rel_direction_easy", "A", "A", 1), rec("object_rel_direction_hard", "A", "B", 2)])
    assert r.official["object_rel_direction_accuracy"] == pytest.approx(50.0)
    assert any("missing: object_rel_direction_medium" in n for n in r.notes)


def test_missing_prediction_counts_as_wrong_and_is_counted():
    r = score([rec("object_counting", "4", None, 1), rec("object_counting", "4", "4", 2), rec("route_planning", "A", None, 3)])
    assert r.official["object_counting_MRA:.5:.95:.05"] == pytest.approx(50.0)
    assert r.official["route_planning_accuracy"] == 0.0
    assert r.n_missing_prediction == 2
    assert [s.n_missing for s in r.scores if s.key == "object_counting_MRA:.5:.95:.05"] == [1]


def test_unscored_custom_types_are_counted_not_dropped():
    r = score([rec("object_counting", "4", "4", 1), rec("my_new_type", "x", "x", 2), rec("my_new_type", "y", "x", 3)])
    assert r.unscored == {"my_new_type": 2}
    assert r.n_rows == 3 and r.n_scored == 1
    assert r.official["overall"] == pytest.approx(100.0)
    assert to_json(r)["unscored"] == {"my_new_type": 2}


def test_parsed_variant_scores_the_answer_field():
    rows = [Record(1, {"question_type": "route_planning", "ground_truth": "A"}, "I think A", "A", "answers", "m:1")]
    assert score(rows).official["route_planning_accuracy"] == 0.0
    assert score(rows, variant="parsed").official["route_planning_accuracy"] == 100.0


@pytest.mark.parametrize(
    "row, msg",
    [
        ({"question_type": "object_counting", "ground_truth": "four"}, "not a number"),
        ({"ground_truth": "A"}, "no question_type"),
        ({"question_type": "route_planning", "ground_truth": ["A"]}, "not an option letter"),
    ],
)
def test_malformed_rows_raise_input_error_naming_the_line(tmp_path, row, msg):
    p = tmp_path / "answers.jsonl"
    good = {"question_type": "object_counting", "ground_truth": "3", "prediction": "3"}
    p.write_text(json.dumps(good) + "\n" + json.dumps({**row, "prediction": "1"}) + "\n")
    with pytest.raises(InputError) as exc:
        evaluate_file(p, benchmark="vsibench")
    assert f"{p}:2" in str(exc.value) and msg in str(exc.value)
    assert "\n" not in str(exc.value)


# ---------------------------------------------------------------- full synthetic run
def _independent_expected(rows):
    """Plain-loop re-implementation of the official scoring, for comparison."""
    thetas = [float(t) for t in np.linspace(0.5, 0.95, 10)]  # the official thresholds
    sums, counts = {}, {}
    for row in rows:
        qt, gt, pred = row["question_type"], row["ground_truth"], row["prediction"]
        word = pred.split(" ")[0].rstrip(".").strip()
        if qt in NUMERIC:
            try:
                p = float(word)
            except ValueError:
                p = None
            y = float(gt)
            if p is None:
                s = 0.0
            else:
                hits = 0
                for t in thetas:
                    if abs(p - y) / y <= 1 - t:
                        hits += 1
                s = hits / 10
        else:
            s = 1.0 if word.lower() == gt.lower() else 0.0
        sums[qt] = sums.get(qt, 0.0) + s
        counts[qt] = counts.get(qt, 0) + 1
    per = {qt: sums[qt] / counts[qt] for qt in sums}
    out = {
        "object_counting_MRA:.5:.95:.05": per["object_counting"],
        "object_abs_distance_MRA:.5:.95:.05": per["object_abs_distance"],
        "object_size_estimation_MRA:.5:.95:.05": per["object_size_estimation"],
        "room_size_estimation_MRA:.5:.95:.05": per["room_size_estimation"],
        "object_rel_distance_accuracy": per["object_rel_distance"],
        "object_rel_direction_accuracy": (
            per["object_rel_direction_easy"] + per["object_rel_direction_medium"] + per["object_rel_direction_hard"]
        )
        / 3,
        "route_planning_accuracy": per["route_planning"],
        "obj_appearance_order_accuracy": per["obj_appearance_order"],
    }
    total = 0.0
    for v in out.values():
        total += v
    out["overall"] = total / 8
    return {k: v * 100 for k, v in out.items()}


def _synthetic_rows(n=400, seed=7):
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        qt = (NUMERIC + CHOICE)[i % 10]
        if qt in NUMERIC:
            gt = f"{rng.uniform(0.5, 12):.2f}" if qt != "object_counting" else str(rng.randint(1, 9))
            pred = rng.choice(
                [f"{float(gt) * rng.uniform(0.3, 1.7):.3f}", f"{float(gt) * rng.uniform(0.9, 1.1):.3f} meters", "about 3", "", "4."]
            )
        else:
            gt = rng.choice("ABCD")
            pred = rng.choice(["A", "B.", "c", "D. the chair", "Answer: A", gt, gt.lower() + "."])
        rows.append({"id": i, "dataset": "scannet", "scene_name": f"scene{i % 7}", "question_type": qt,
                     "question": "?", "options": ["A. x", "B. y"], "ground_truth": gt, "prediction": pred,
                     "answer": pred})  # fmt: skip
    return rows


def test_full_synthetic_run_matches_independent_computation(tmp_path):
    rows = _synthetic_rows()
    p = tmp_path / "vsibench_answers.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = evaluate_file(p)
    assert result.benchmark == "vsibench"
    expected = _independent_expected(rows)
    assert list(result.official)[: len(KEYS)] == KEYS  # official keys, paper order, overall first
    for key in KEYS:
        assert result.official[key] == pytest.approx(expected[key], abs=1e-9), key
    assert result.n_scored == 400 and result.n_missing_prediction == 0
    tab = result.official["tabulated_results"].split(", ")
    assert tab[0] == f"{expected['overall']:.3f}" and len(tab) == 9
