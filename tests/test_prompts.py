"""Prompts (official VSI-Bench wording, SQA3D, SPBench, free text) and answer parsing."""

from __future__ import annotations

import pytest

from spacemind_cli.parsing import parse_answer
from spacemind_cli.prompts import benchmark_of, build_prompt

OPTIONS = ["A. 1.2", "B. 2.5", "C. 3.1", "D. 4.0"]


def test_vsibench_numeric_prompt_is_the_official_one():
    row = {"question_type": "object_counting", "question": "How many chair(s) are in this room?", "options": None,
           "dataset": "scannet"}
    assert build_prompt(row) == (
        "These are frames of a video.\n"
        "How many chair(s) are in this room?\n"
        "Please answer the question using a single word or phrase."
    )


def test_vsibench_choice_prompt_is_the_official_one():
    row = {"question_type": "object_rel_distance", "question": "Which is closest to the bed?", "options": OPTIONS,
           "dataset": "arkitscenes"}
    assert build_prompt(row) == (
        "These are frames of a video.\n"
        "Which is closest to the bed?\n"
        "Options:\nA. 1.2\nB. 2.5\nC. 3.1\nD. 4.0\n"
        "Answer with the option's letter from the given choices directly."
    )


def test_spbench_rows_use_the_wording_without_the_video_pre_prompt():
    row = {"question_type": "object_abs_distance", "question": "How far apart are the two chairs (in meters)?",
           "dataset": "SPBench-SI", "images": ["a.jpg"]}
    assert benchmark_of(row) == "spbench"
    assert build_prompt(row) == (
        "How far apart are the two chairs (in meters)?\nPlease answer the question using a single word or phrase."
    )
    choice = {**row, "question_type": "object_rel_direction_easy", "options": ["A. left", "B. right"]}
    assert build_prompt(choice).startswith("How far apart") and build_prompt(choice).endswith("directly.")


def test_sqa3d_puts_the_situation_first():
    row = {"situation": "I am facing the window.", "question": "What is on my left?", "scene_id": "scene0011_00"}
    assert benchmark_of(row) == "sqa3d"
    assert build_prompt(row) == (
        "I am facing the window.\nWhat is on my left?\nPlease answer the question using a single word or phrase."
    )


def test_other_question_types_are_asked_as_written():
    assert build_prompt({"question_type": "caption", "question": "  Describe the room.  "}) == "Describe the room."
    with_options = build_prompt({"question_type": "custom", "question": "Pick one.", "options": ["A. x", "B. y"]})
    assert with_options == "Pick one.\nOptions:\nA. x\nB. y\nAnswer with the option's letter from the given choices directly."


@pytest.mark.parametrize(
    "text, expected",
    [("B", "B"), ("b.", "B"), ("B. 2.5", "B"), ("(C) 3.1", "C"), ("The answer is D", "D"), ("2.5", "B"),
     ("E", None), ("", None), ("maybe", None)],
)
def test_choice_answers_parse_to_an_option_letter(text, expected):
    assert parse_answer(text, options=OPTIONS, question_type="object_rel_distance") == expected


@pytest.mark.parametrize(
    "text, expected",
    [("3", 3), ("3.5 meters", 3.5), ("about 12", 12), ("2,5", 2.5), ("-1", -1), ("two", None), ("", None)],
)
def test_numeric_answers_parse_to_numbers(text, expected):
    assert parse_answer(text, question_type="object_counting") == expected


def test_free_text_answers_are_the_stripped_text():
    assert parse_answer("  a red chair \n", question_type="caption") == "a red chair"
