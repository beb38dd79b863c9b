"""Full shape on a CPU: random InternVL3-1B (-hf and original layout) + VGGT-1B through the CLI.

What can fail only at real shapes (the 151,674-row vocabulary, sharded bf16 folders with an index,
InternVL's original key names, VGGT-1B's 518 px grid, a LoRA adapter over the real LLM) is run
here end to end, each step a `spacemind` process as a user runs it (`bench/fullsize.py`). Takes
several minutes and up to ~9 GiB of memory on the 2-core machine.
"""

from __future__ import annotations

import json

import pytest

from bench import fullsize

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    return fullsize.run(tmp_path_factory.mktemp("fullsize"), layouts=tuple(fullsize.CI_STEPS), costs=False,
                        steps=fullsize.CI_STEPS, scenes_of=fullsize.CI_SCENES)


def _failed(steps):
    return [f"{s['name']} (rc {s['rc']}): {s['output_tail'][-1500:]}" for s in steps if s["rc"] != 0]


@pytest.mark.parametrize("layout", sorted(fullsize.CI_STEPS))
def test_every_step_succeeds(result, layout):
    steps = result["layouts"][layout]["steps"]
    assert not _failed(steps)
    assert [s["name"] for s in steps] == list(fullsize.CI_STEPS[layout])


@pytest.mark.parametrize("layout", sorted(fullsize.CI_STEPS))
def test_every_question_is_answered_from_two_frames(result, layout):
    answers = result["layouts"][layout]["answers"]
    scenes = fullsize.CI_SCENES.get(layout, fullsize.SCENES)
    questions = [q for q in map(json.loads, result["questions"].splitlines()) if q["scene_name"] in scenes]
    assert len(questions) == len(scenes) * fullsize.QUESTIONS_PER_SCENE
    assert sorted(a["id"] for a in answers) == sorted(q["id"] for q in questions)
    assert all(a["frames_used"] == fullsize.NUM_FRAMES for a in answers)
    assert all(isinstance(a["prediction"], str) for a in answers)


def test_the_checkpoint_inspects_with_nothing_missing(result):
    for layout, lr in result["layouts"].items():
        for s in lr["steps"]:
            if s["name"].startswith("inspect"):
                assert "missing" not in s["output_tail"], (layout, s["name"], s["output_tail"])
                assert "InternVL LLM" in s["output_tail"]


def test_the_trained_checkpoint_inspects_and_answers(result):
    lr = result["layouts"]["hf"]
    inspected = next(s for s in lr["steps"] if s["name"] == "inspect trained")
    assert "LoRA adapter" in inspected["output_tail"] and "r=8" in inspected["output_tail"]
    trained, base = lr["answers_trained"], lr["answers"]
    assert sorted(a["id"] for a in trained) == sorted(a["id"] for a in base)
    assert all(a["frames_used"] == fullsize.NUM_FRAMES for a in trained)
    assert {a["checkpoint_id"] for a in trained}.isdisjoint({a["checkpoint_id"] for a in base})


def test_the_original_layout_answers_as_the_hf_layout_does(result):
    hf = {a["id"]: a["prediction"] for a in result["layouts"]["hf"]["answers"]}
    original = {a["id"]: a["prediction"] for a in result["layouts"]["original"]["answers"]}
    assert original and original == {k: hf[k] for k in original}
    # the weights are random: the answers are not all one string (which any two models could share)
    assert len(set(original.values())) > 1
