"""spacemind_cli.training: training files (question files with ground truth, LLaVA-style records,
SQA3D's pair) read into examples whose prompts are what `answer` asks and whose targets score
full marks; bad rows named by file:line; written back as question files `answer` reads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from spacemind_cli.errors import InputError
from spacemind_cli.eval import Record, evaluate_records
from spacemind_cli.parsing import parse_answer
from spacemind_cli.prompts import build_prompt
from spacemind_cli.questions import read_questions
from spacemind_cli.training.data import (
    TargetError,
    TrainingOptions,
    read_training_file,
    target_text,
    write_question_file,
)

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples" / "questions.jsonl"
PRE = "These are frames of a video."
NUM_POST = "Please answer the question using a single word or phrase."
MC_POST = "Answer with the option's letter from the given choices directly."


def write_jsonl(path: Path, rows, raw: dict[int, str] | None = None) -> Path:
    lines = [json.dumps(r) for r in rows]
    for lineno, text in (raw or {}).items():
        lines.insert(lineno - 1, text)
    path.write_text("\n".join(lines) + "\n")
    return path


def turns(*texts):
    return [{"from": "human" if i % 2 == 0 else "gpt", "value": t} for i, t in enumerate(texts)]


def vsi_prompt(question, options=None, pre=True):
    parts = [PRE] if pre else []
    parts.append(question)
    if options:
        parts += ["Options:\n" + "\n".join(options), MC_POST]
    else:
        parts.append(NUM_POST)
    return "\n".join(parts)


def problems_by_line(ts) -> dict[int, str]:
    return {p.line: str(p) for p in ts.problems}


# ---------------------------------------------------------------------------------------------
# Question files (answer schema)
# ---------------------------------------------------------------------------------------------
def test_question_file_examples_are_what_answer_asks():
    ts = read_training_file(EXAMPLES)
    qs = read_questions(EXAMPLES)
    assert ts.format == "questions" and ts.problems == [] and len(ts) == len(qs) == 68
    for ex, q in zip(ts, qs.questions):
        assert (ex.id, ex.line, ex.turn, ex.source) == (q.qid, q.line, 1, str(EXAMPLES))
        assert ex.row is q.row or ex.row == q.row
        assert ex.prompt == build_prompt(q.row)
        assert ex.scene_spec == q.scene_spec
        assert ex.question_type == q.question_type


def test_targets_of_examples_score_full_marks():
    ts = read_training_file(EXAMPLES)
    records = [Record(ex.line, dict(ex.row), ex.target) for ex in ts]
    result = evaluate_records(records, "vsibench", source="t.jsonl")
    assert result.n_scored == 68
    assert result.official["overall"] == pytest.approx(100.0)
    assert all(cell.value == pytest.approx(100.0) for cell in result.scores if cell.value is not None)
    for ex in ts:
        kw = {"options": ex.row.get("options"), "question_type": ex.row.get("question_type")}
        assert parse_answer(ex.target, **kw) == parse_answer(str(ex.row["ground_truth"]), **kw)
    # numbers as the ground truth writes them: "20.0" keeps its ".0", "2" gets none
    by_id = {ex.id: ex.target for ex in ts}
    assert by_id["6"] == "20.0" and by_id["0"] == "2" and by_id["2"] == "1.3"


SPBENCH_ROWS = [
    {"id": 1, "split": "SPBench-SI", "images": ["a.jpg"], "question_type": "object_abs_distance",
     "question": "How far?", "options": None, "ground_truth": "1.75"},
    {"id": 2, "split": "SPBench-SI", "images": ["a.jpg"], "question_type": "object_size_estimation",
     "question": "How tall?", "options": None, "ground_truth": 80},
    {"id": 3, "split": "SPBench-SI", "images": ["a.jpg"], "question_type": "object_rel_distance",
     "question": "Closest?", "options": ["A. sofa", "B. lamp", "C. tv"], "ground_truth": "C"},
    {"id": 4, "split": "SPBench-MV", "images": ["a.jpg", "b.jpg"], "question_type": "object_counting",
     "question": "How many?", "options": None, "ground_truth": "3"},
    {"id": 5, "split": "SPBench-MV", "images": ["a.jpg", "b.jpg"], "question_type": "object_rel_direction_medium",
     "question": "Where?", "options": ["A. left", "B. right", "C. back"], "ground_truth": "B"},
]  # fmt: skip


def test_spbench_targets_score_full_marks():
    targets = [target_text(r) for r in SPBENCH_ROWS]
    assert targets == ["1.75", "80", "C", "3", "B"]
    records = [Record(i, dict(r), t) for i, (r, t) in enumerate(zip(SPBENCH_ROWS, targets), start=1)]
    result = evaluate_records(records, "spbench", source="sp.jsonl")
    assert result.official["SPBench-SI"]["overall_accuracy"] == pytest.approx(100.0)
    assert result.official["SPBench-MV"]["overall_accuracy"] == pytest.approx(100.0)
    for row, t in zip(SPBENCH_ROWS, targets):
        kw = {"options": row["options"], "question_type": row["question_type"]}
        assert parse_answer(t, **kw) == parse_answer(str(row["ground_truth"]), **kw)
        assert build_prompt(row).splitlines()[0] == row["question"]  # SPBench: no video pre-prompt


SQA3D_ROWS = [
    {"id": 10, "situation": "I sit on the bed.", "question": "What is on my left?", "answers": ["lamp"]},
    {"id": 11, "situation": "I face the door.", "question": "How many chairs are behind me?",
     "answers": [{"answer": "2", "answer_id": 1}, {"answer": "two"}]},
    {"id": 12, "situation": "I stand at the sink.", "question": "Is the toilet seat up?", "answers": ["No."]},
    {"id": 13, "situation": "", "question": "Which way to the window?", "ground_truth": "turn left"},
]  # fmt: skip


def test_sqa3d_targets_score_full_marks():
    targets = [target_text(r) for r in SQA3D_ROWS]
    assert targets == ["lamp", "2", "No.", "turn left"]
    records = [Record(i, dict(r), t) for i, (r, t) in enumerate(zip(SQA3D_ROWS, targets), start=1)]
    result = evaluate_records(records, "sqa3d", source="s.jsonl")
    assert result.official["em_overall"] == pytest.approx(100.0)
    assert result.official["em_refined_overall"] == pytest.approx(100.0)
    for t in targets:
        assert parse_answer(t) == t  # free text parses to itself


@pytest.mark.parametrize(
    ("gt", "letter"),
    [("B", "B"), ("b", "B"), ("B.", "B"), ("(B)", "B"), ("B)", "B"), ("B. right", "B"), ("right", "B"),
     ("Right.", "B"), ("C. back", "C")],
)  # fmt: skip
def test_choice_ground_truth_forms_map_to_the_letter(gt, letter):
    row = {"question_type": "object_rel_direction_medium", "question": "q", "dataset": "scannet",
           "options": ["A. left", "B. right", "C. back"], "ground_truth": gt}  # fmt: skip
    assert target_text(row) == letter
    kw = {"options": row["options"], "question_type": row["question_type"]}
    assert parse_answer(letter, **kw) == parse_answer(gt, **kw) == letter


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"question_type": "route_planning", "options": ["A. x", "B. y"], "ground_truth": "C"}, "not one of the option letters A, B"),
        ({"question_type": "route_planning", "options": ["A. x", "B. y"], "ground_truth": "A. y"}, "names option A, whose text is 'x'"),
        ({"question_type": "route_planning", "options": ["A. x", "B. y"], "ground_truth": "zebra"}, "matches no option"),
        ({"question_type": "route_planning", "options": ["A. x", "B. x"], "ground_truth": "x"}, "matches several options (A, B)"),
        ({"question_type": "route_planning", "options": ["left", "right"], "ground_truth": "left"}, "has no letter label"),
        ({"question_type": "route_planning", "options": None, "ground_truth": "A"}, "without options"),
        ({"question_type": "object_counting", "ground_truth": "three"}, "'three' is not a number"),
        ({"question_type": "object_counting", "ground_truth": "nan"}, "not a finite number"),
        ({"question_type": "object_counting", "ground_truth": True}, "is not a number"),
        ({"question_type": "object_counting", "ground_truth": None}, "no ground truth"),
        ({"question": "free", "ground_truth": "   "}, "ground truth is empty"),
        ({"situation": "s", "question": "q", "answers": [""]}, "ground truth is empty"),
        ({"situation": "s", "question": "q"}, "no ground truth"),
    ],
)  # fmt: skip
def test_target_errors_say_why(row, message):
    row = {"question": "q", **row}
    with pytest.raises(TargetError, match=message.replace("(", r"\(").replace(")", r"\)")):
        target_text(row)


def test_numeric_targets_as_written():
    def t(gt):
        return target_text({"question_type": "object_abs_distance", "question": "q", "ground_truth": gt})

    assert [t("2"), t(" 2.50 "), t(20.0), t(3), t(1.3), t("-0.5")] == ["2", "2.50", "20.0", "3", "1.3", "-0.5"]
    # a numeric type keeps its number even when the row lists options (build_prompt drops them)
    row = {"question_type": "object_counting", "dataset": "x", "question": "q", "options": ["A. 1"], "ground_truth": "4"}
    assert target_text(row) == "4" and "Options" not in build_prompt(row)


def test_question_file_bad_rows_are_named(tmp_path):
    rows = [
        {"id": 1, "dataset": "d", "scene_name": "s", "question_type": "object_counting", "question": "How many?", "ground_truth": "3"},
        {"id": 2, "dataset": "d", "scene_name": "s", "question_type": "object_counting", "question": "No truth?"},
        {"id": 3, "question_type": "object_counting", "question": "No scene?", "ground_truth": "1"},
        {"id": 4, "dataset": "d", "scene_name": "s", "question_type": "object_counting", "question": "q", "ground_truth": "lots"},
        {"id": 5, "dataset": "d", "scene_name": "s", "question_type": "route_planning", "question": "q",
         "options": ["A. x", "B. y"], "ground_truth": "E"},
        {"id": 1, "dataset": "d", "scene_name": "s", "question": "dup", "ground_truth": "x"},
        {"id": 7, "dataset": "d", "scene_name": "s", "prompt": "not a question row", "ground_truth": "x"},
    ]  # fmt: skip
    path = write_jsonl(tmp_path / "train.jsonl", rows)
    ts = read_training_file(path)
    assert [ex.id for ex in ts] == ["1"] and ts.format == "questions"
    got = problems_by_line(ts)
    assert set(got) == {2, 3, 4, 5, 6, 7}
    assert got[2] == f"{path}:2 (question 2): no ground truth (training needs 'ground_truth')"
    assert "names no scene" in got[3] and got[3].startswith(f"{path}:3 ")
    assert "'lots' is not a number" in got[4]
    assert "'E' is not one of the option letters A, B" in got[5]
    assert "duplicate id '1'" in got[6]
    assert got[7] == f"{path}:7 (question 7): missing required field 'question'"
    assert all("\n" not in p for p in got.values())


# ---------------------------------------------------------------------------------------------
# LLaVA-style records
# ---------------------------------------------------------------------------------------------
VLM3R = [  # as vlm_3r_data_process/src/format_qa.py writes them (a JSON list)
    {"id": "8f1c", "data_source": "scannet", "scene_name": "scene0191_00", "question_type": "object_rel_direction_v3",
     "video": "scannet/videos/scene0191_00.mp4",
     "conversations": turns("<image>\n" + vsi_prompt("If I am standing by the sofa and facing the tv, is the lamp to the left or the right of the tv?", ["A. left", "B. right"]), "B")},
    {"id": "9a2d", "data_source": "scannet", "scene_name": "scene0191_00", "question_type": "object_counting",
     "video": "scannet/videos/scene0191_00.mp4",
     "conversations": turns("<image>\n" + vsi_prompt("How many chair(s) are in this room?"), "4")},
    {"id": "77aa", "data_source": "arkitscenes", "scene_name": "41069025", "question_type": "object_rel_direction_v1",
     "video": "arkitscenes/videos/41069025.mp4",
     "conversations": turns("<image>\n" + vsi_prompt("If I am standing by the bed, is the tv to my front-left, front-right, back-left, or back-right?",
                                                     ["A. front-left", "B. front-right", "C. back-left", "D. back-right"]), "C")},
]  # fmt: skip


def test_llava_json_list_vlm3r(tmp_path):
    path = tmp_path / "merged_qa_scannet_train.json"
    path.write_text(json.dumps(VLM3R))
    ts = read_training_file(path)
    assert ts.format == "llava" and ts.problems == [] and [ex.id for ex in ts] == ["8f1c", "9a2d", "77aa"]
    for ex, rec in zip(ts, VLM3R):
        human = rec["conversations"][0]["value"]
        assert ex.prompt == human[len("<image>\n") :]  # the text trained on, placeholder removed
        assert build_prompt(ex.row) == ex.prompt  # `answer` asks exactly that for the converted row
        assert ex.raw is not None and ex.raw["id"] == rec["id"]
        assert ex.scene_spec == {"scene": rec["video"], "dataset": None, "scene_name": rec["scene_name"], "images": None}
    a, b, c = ts.examples
    assert (a.row["question_type"], a.row["source_question_type"], a.row["options"]) == (
        "object_rel_direction_easy", "object_rel_direction_v3", ["A. left", "B. right"])  # fmt: skip
    assert (a.target, a.row["ground_truth"]) == ("B", "B")
    assert (b.row["question_type"], b.target) == ("object_counting", "4")
    assert b.row["question"] == "How many chair(s) are in this room?"
    assert "source_question_type" not in b.row
    assert (c.row["question_type"], c.target) == ("object_rel_direction_hard", "C")
    # the converted rows are VSI-Bench rows: the official scorer gives the targets full marks
    result = evaluate_records([Record(ex.line, dict(ex.row), ex.target) for ex in ts], "vsibench", source=str(path))
    assert result.official["overall"] == pytest.approx(100.0)


VSI590K = [  # JSONL, mostly without ids; `image` rows hold one path
    {"video": "scannet/scene0191_00.mp4", "question_type": "absolute_distance_object",
     "conversations": turns("<image>\n" + vsi_prompt("What is the distance between the whiteboard and the door (in centimeters)?"), "240.0")},
    {"video": "arkitscenes/41069025.mp4", "question_type": "appearance_order",
     "conversations": turns("<image>\n" + vsi_prompt("What will be the first-time appearance order of the following categories in the video: lamp, sofa, table?",
                                                     ["A. sofa, table, lamp", "B. lamp, sofa, table", "C. table, lamp, sofa"]),
                            "B. lamp, sofa, table")},
    {"video": "scannetppv2/0a5c013435.mp4", "question_type": "relative_count",
     "conversations": turns("<image>\n" + vsi_prompt("Are there more chairs than tables?", ["A. yes", "B. no"]), "A")},
    {"id": 20001, "image": "robotics/agibot_685462_head_right_fisheye_color_0010.jpg", "question_type": "relative_direction_camera",
     "conversations": turns("<image>\nFrom the camera's viewpoint, is the table positioned on the left-hand side or right-hand side?\nOptions:\nA. left\nB. right\n" + MC_POST, "A")},
]  # fmt: skip


def test_llava_jsonl_vsi590k(tmp_path):
    path = write_jsonl(tmp_path / "vsi_590k.jsonl", VSI590K)
    ts = read_training_file(path)
    assert ts.problems == [] and [ex.id for ex in ts] == ["line-1", "line-2", "line-3", "20001"]
    dist, order, count, camera = ts.examples
    for ex in ts:
        assert build_prompt(ex.row) == ex.prompt == ex.raw["conversations"][0]["value"].removeprefix("<image>\n")
    # VSI-Bench tasks under VSI-590K names become VSI-Bench rows
    assert (dist.row["question_type"], dist.target) == ("object_abs_distance", "240.0")
    assert (order.row["question_type"], order.target, order.row["ground_truth"]) == ("obj_appearance_order", "B", "B")
    # a type with no VSI-Bench counterpart: the whole prompt is the question, the type moves aside
    assert count.row["question"] == count.prompt and "question_type" not in count.row and "options" not in count.row
    assert (count.row["source_question_type"], count.target) == ("relative_count", "A")
    assert camera.scene_spec["images"] == ["robotics/agibot_685462_head_right_fisheye_color_0010.jpg"]
    assert camera.row["question"] == camera.prompt and camera.target == "A"


def test_llava_multi_turn_one_example_per_pair(tmp_path):
    rec = {"video": "arkitscenes/47115148.mp4", "conversations": turns(
        "<image>\nCould you provide details about the geometric relationship among stove, fireplace, and table?",
        "The separation between stove and fireplace is 3.5 meters.  ",
        "Which is closest to the door?", "The table.",
        "And the farthest?", "The stove.")}  # fmt: skip
    path = tmp_path / "conversation.json"
    path.write_text(json.dumps([rec, dict(rec, id="x")]))
    ts = read_training_file(path)
    ids = [(ex.id, ex.turn, ex.line) for ex in ts]
    assert ids[:4] == [("line-1#1", 1, 1), ("line-1#2", 2, 1), ("line-1#3", 3, 1), ("x#1", 1, 2)]
    first = ts.examples[:3]
    # each later turn is asked after the earlier ones, verbatim and in order (InternVL's template)
    q1 = "Could you provide details about the geometric relationship among stove, fireplace, and table?"
    a1 = "The separation between stove and fireplace is 3.5 meters."
    turn = "<|im_end|>\n<|im_start|>assistant\n{}<|im_end|>\n<|im_start|>user\n"
    assert [ex.prompt for ex in first] == [
        q1,
        q1 + turn.format(a1) + "Which is closest to the door?",
        q1 + turn.format(a1) + "Which is closest to the door?" + turn.format("The table.") + "And the farthest?"]  # fmt: skip
    assert [ex.row.get("history") for ex in first] == [
        None, [{"question": q1, "answer": a1}],
        [{"question": q1, "answer": a1}, {"question": "Which is closest to the door?", "answer": "The table."}]]  # fmt: skip
    assert all(build_prompt(ex.row) == ex.prompt for ex in ts)
    assert [ex.target for ex in first] == [
        "The separation between stove and fireplace is 3.5 meters.", "The table.", "The stove."]  # fmt: skip
    assert all(ex.scene_spec == first[0].scene_spec for ex in ts)
    # the three turns of both records are about one scene: six examples of one video
    assert len(ts.examples) == 6 and {ex.scene_spec["scene"] for ex in ts} == {"arkitscenes/47115148.mp4"}
    assert ts.examples[1].where() == f"{path} record 1 turn 2 (example line-1#2)"  # a JSON list: records (#22.9)


def internvl_conversation(system: str, messages: list[tuple[str, str | None]]) -> str:
    """InternVL's Conversation.get_prompt (conversation.py, SeparatorStyle.MPT, template
    'internvl2_5'): the reference the multi-turn prompts must equal."""
    sep, roles = "<|im_end|>\n", {"user": "<|im_start|>user\n", "assistant": "<|im_start|>assistant\n"}
    ret = f"<|im_start|>system\n{system}{sep}" if system else ""
    for role, message in messages:
        ret += roles[role] + message + sep if message else roles[role]
    return ret


def test_llava_multi_turn_is_internvls_conversation_with_targets_on_its_own_answer(tmp_path, tiny_ckpt):
    from spacemind_cli.models import internvl, packing
    from spacemind_cli.models.spacemind import SpaceMind

    qs = ["What is near the sofa?", "What colour is it?", "And the table?"]
    ans = ["A lamp.", "Red, mostly.", "The table is brown."]
    rec = {"video": "a/s.mp4", "conversations": turns("<video>\n" + qs[0], ans[0], "<image>\n" + qs[1], ans[1], qs[2], ans[2])}
    ts = read_training_file(write_jsonl(tmp_path / "conv.jsonl", [rec]))
    assert [ex.turn for ex in ts] == [1, 2, 3] and [ex.target for ex in ts] == ans
    sm = SpaceMind.from_pretrained(tiny_ckpt, device="cpu", llm=True, lazy_vggt=True)
    frames, tok = 2, sm.tokenizer
    block = f"{internvl.IMG_START}{internvl.IMG_CONTEXT * sm.tokens_per_frame}{internvl.IMG_END}"
    video = "".join((f"Frame{i + 1}: " if sm.config.prompt.frame_prefix else "") + block + "\n" for i in range(frames))
    prefix = sm.prefix_ids(frames)
    segments = [sm.segment(ex.prompt, ex.target) for ex in ts]
    for k, seg in enumerate(segments):
        # InternVL's chat(): the frames open the first user turn only; earlier answers in the history
        messages: list[tuple[str, str | None]] = []
        for j in range(k + 1):
            messages += [("user", (video if j == 0 else "") + qs[j]), ("assistant", ans[j] if j < k else None)]
        want = internvl_conversation(sm.config.prompt.system_message, messages)
        assert tok.decode(prefix + seg.prompt_ids) == want
        assert prefix + seg.prompt_ids == tok(want, add_special_tokens=False)["input_ids"]
    # packed as the scene trains them: one prefix, each turn's targets its own answer + end-of-turn
    packed = packing.pack(len(prefix), segments, sm.end_of_turn_id())
    labels = packed.labels[0].tolist()
    starts = [len(prefix) + sum(packed.segment_lengths[:k]) for k in range(len(segments))]
    for k, (start, n) in enumerate(zip(starts, packed.segment_lengths)):
        own = [t for t in labels[start:start + n] if t != packing.IGNORE]
        assert tok.decode(own) == ans[k] + "<|im_end|>"
    assert packed.num_targets == sum(len(tok(a, add_special_tokens=False)["input_ids"]) + 1 for a in ans)


def test_single_turn_train_prompt_is_answers_byte_for_byte(tmp_path):
    """A single-turn question is asked at answer time exactly as it was trained (bytes), and a
    multi-turn one too, through the question file `answer` reads."""
    rows = [{"video": "a/s.mp4", "conversations": turns("<image>\nWhat is here?", "A sofa.")},
            {"video": "a/s.mp4", "conversations": turns("Q1?", "A1.", "Q2?", "A2.")}]  # fmt: skip
    ts = read_training_file(write_jsonl(tmp_path / "t.jsonl", rows))
    out = tmp_path / "asked.jsonl"
    write_question_file(ts, out)
    asked = {q.qid: build_prompt(q.row).encode() for q in read_questions(out).questions}
    assert asked == {ex.id: ex.prompt.encode() for ex in ts}
    assert asked["line-1"] == b"What is here?" and "history" not in ts.examples[0].row
    assert asked["line-2#2"] == b"Q1?<|im_end|>\n<|im_start|>assistant\nA1.<|im_end|>\n<|im_start|>user\nQ2?"


def test_question_row_with_bad_history_is_named(tmp_path):
    path = write_jsonl(tmp_path / "q.jsonl", [{"scene": "a.mp4", "question": "Q?", "history": [{"question": "x"}]}])
    qs = read_questions(path)
    assert not qs.questions and "field 'history' must be a list" in str(qs.problems[0])


def test_llava_images_list(tmp_path):
    rec = {"id": "mv-1", "images": ["scannet/scene0011_00/0.jpg", "scannet/scene0011_00/40.jpg"], "question_type": "object_counting",
           "conversations": [{"from": "human", "value": "<image>\n<image>\nHow many chairs are in these views?\n" + NUM_POST},
                             {"from": "gpt", "value": "3"}]}  # fmt: skip
    path = write_jsonl(tmp_path / "mv.jsonl", [rec])
    (ex,) = read_training_file(path).examples
    assert ex.prompt == "How many chairs are in these views?\n" + NUM_POST
    assert ex.scene_spec["images"] == rec["images"] and ex.scene_spec["scene"] is None
    # no video pre-prompt + an image list: an SPBench-style row, as `answer` asks SPBench
    assert (ex.row["question_type"], ex.target) == ("object_counting", "3")
    assert ex.row["question"] == "How many chairs are in these views?"
    assert build_prompt(ex.row) == ex.prompt


def test_llava_bad_records_are_named(tmp_path):
    good = {"video": "a/s.mp4", "conversations": turns("<image>\nWhat is here?", "A sofa.")}
    bad = [
        "{not json",
        json.dumps([1, 2]),
        json.dumps({"video": "a/s.mp4", "question": "a question row?"}),
        json.dumps({"video": "a/s.mp4", "conversations": []}),
        json.dumps({"video": "a/s.mp4", "conversations": [{"from": "gpt", "value": "A"}, {"from": "human", "value": "Q"}]}),
        json.dumps({"video": "a/s.mp4", "conversations": turns("Q1", "A1", "Q2")}),
        json.dumps({"video": "a/s.mp4", "conversations": [{"from": "system", "value": "x"}]}),
        json.dumps({"video": "a/s.mp4", "conversations": turns("Q", "  ")}),
        json.dumps({"conversations": turns("Q", "A")}),
        json.dumps({"video": "/data/a/s.mp4", "conversations": turns("Q", "A")}),
        json.dumps({"video": "a/s.mp4", "image": "a/1.jpg", "conversations": turns("Q", "A")}),
        json.dumps({"video": "a/s.mp4", "question_type": "route_planning",
                    "conversations": turns(vsi_prompt("Route?", ["A. left", "B. right"]), "E")}),
        json.dumps({"video": "a/s.mp4", "conversations": turns("<image>\n", "A")}),
        json.dumps({"video": "a/s.mp4", "conversations": [{"from": "human", "value": 3}, {"from": "gpt", "value": "A"}]}),
        json.dumps({"video": "a/s.mp4", "conversations": turns("Q1", "A1", "Q2", "")}),
    ]  # fmt: skip
    raw = {i: text for i, text in enumerate(bad, start=2)}
    path = write_jsonl(tmp_path / "train.jsonl", [good, good], raw=raw)
    ts = read_training_file(path)
    last = len(bad) + 2
    assert [ex.line for ex in ts] == [1, last - 1, last]  # the good rows, and turn 1 of the last row
    got = problems_by_line(ts)
    expect = {
        2: "malformed JSON",
        3: "a record must be a JSON object, got list",
        4: "not a LLaVA record (no 'conversations') but a question row",
        5: "'conversations' must be a non-empty list",
        6: "malformed turn order: turn 1 is 'gpt', expected 'human'",
        7: "malformed turn order: the last human turn (3) has no gpt answer",
        8: "turn 1 has unknown role 'system'",
        9: "empty target: the gpt turn is empty",
        10: "names no medium",
        11: "video path '/data/a/s.mp4' must be relative to the scenes root",
        12: "names more than one medium (video, image)",
        13: "route_planning answer: ground truth 'E' is not one of the option letters A, B",
        14: "the human turn is empty once its <image>/<video> placeholders are removed",
        15: "turn 1 must be an object with 'from' and a text 'value'",
        16: "turn 2: empty target: the gpt turn is empty",
    }
    assert set(got) == set(expect)
    for line, message in expect.items():
        assert got[line].startswith((f"{path}:{line}: ", f"{path}:{line} (")) and message in got[line], got[line]
        assert "\n" not in got[line]


def test_llava_duplicate_ids_kept_apart(tmp_path):
    rec = {"id": "same", "video": "a/s.mp4", "conversations": turns("Q?", "A.")}
    no_id = {"video": "a/s.mp4", "conversations": turns("Q?", "A.")}
    path = write_jsonl(tmp_path / "d.jsonl", [rec, rec, {**rec, "id": "line-1"}, no_id])
    ts = read_training_file(path)
    assert [ex.id for ex in ts] == ["same", "same@line-2", "line-1", "line-4"] and ts.problems == []


def test_llava_parquet_and_jsonl_named_json(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [VSI590K[0], VSI590K[1]]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "t.parquet")
    write_jsonl(tmp_path / "t.json", rows)  # JSON Lines under a .json name
    a, b = read_training_file(tmp_path / "t.parquet"), read_training_file(tmp_path / "t.json")
    assert [(ex.id, ex.prompt, ex.target) for ex in a] == [(ex.id, ex.prompt, ex.target) for ex in b]
    assert [ex.target for ex in a] == ["240.0", "B"]


# ---------------------------------------------------------------------------------------------
# SQA3D's pair
# ---------------------------------------------------------------------------------------------
INFO = {"info": {"description": "This is v1.0 of the SQA3D dataset."}, "data_type": "scannet", "data_subtype": "v2"}
SQA_QUESTIONS = [
    {"scene_id": "scene0050_00", "situation": "I am standing by the ottoman on my right facing a couple of toolboxes.",
     "alternative_situation": ["I just placed two backpacks on the ottoman."], "question": "What instrument in front of me is ebony and ivory?",
     "question_id": 220602000002},
    {"scene_id": "scene0702_00", "situation": "I am sitting on the toilet with a toilet paper roll to my left.",
     "alternative_situation": [], "question": "Which direction should I go if I want to use soap?", "question_id": 220602000017},
]  # fmt: skip
SQA_ANNOTATIONS = [
    {"scene_id": "scene0702_00", "question_type": "N/A", "answer_type": "other", "question_id": 220602000017,
     "answers": [{"answer": "right", "answer_confidence": "yes", "answer_id": 1}, {"answer": "to the right", "answer_id": 2}],
     "rotation": {"_x": 0, "_y": 0, "_z": 0.9, "_w": -0.4}, "position": {"x": -0.4, "y": -0.5, "z": 0}},
    {"scene_id": "scene0050_00", "question_type": "N/A", "answer_type": "other", "question_id": 220602000002,
     "answers": [{"answer": "piano", "answer_confidence": "yes", "answer_id": 1}],
     "rotation": {"_x": 0, "_y": 0, "_z": -0.99, "_w": -0.03}, "position": {"x": 0.7, "y": -0.03, "z": 0}},
]  # fmt: skip


def write_sqa3d(folder: Path, questions=SQA_QUESTIONS, annotations=SQA_ANNOTATIONS, split="train") -> tuple[Path, Path]:
    q = folder / f"v1_balanced_questions_{split}_scannetv2.json"
    a = folder / f"v1_balanced_sqa_annotations_{split}_scannetv2.json"
    q.write_text(json.dumps({**INFO, "questions": questions}))
    a.write_text(json.dumps({**INFO, "annotations": annotations}))
    return q, a


def test_sqa3d_pair_found_from_either_file(tmp_path):
    q, a = write_sqa3d(tmp_path)
    from_q, from_a = read_training_file(q), read_training_file(a)
    assert from_q.format == from_a.format == "sqa3d" and from_q.sources == from_a.sources == [str(q), str(a)]
    key = [(ex.id, ex.source, ex.line, ex.prompt, ex.target, ex.scene_spec) for ex in from_q]
    assert key == [(ex.id, ex.source, ex.line, ex.prompt, ex.target, ex.scene_spec) for ex in from_a]
    piano, soap = from_q.examples
    assert (piano.id, piano.line, piano.target) == ("220602000002", 1, "piano")
    assert soap.target == "right" and soap.row["answers"] == ["right", "to the right"]
    assert piano.prompt == "\n".join([SQA_QUESTIONS[0]["situation"], SQA_QUESTIONS[0]["question"], NUM_POST])
    assert piano.prompt == build_prompt(piano.row)
    assert piano.scene_spec == {"scene": None, "dataset": "scannet", "scene_name": "scene0050_00", "images": None}
    assert piano.raw["question"] == SQA_QUESTIONS[0] and piano.raw["annotation"] == SQA_ANNOTATIONS[1]
    flat = read_training_file(q, TrainingOptions(sqa3d_dataset="ScanNet"))
    assert flat.examples[0].scene_spec["dataset"] == "ScanNet"
    result = evaluate_records([Record(ex.line, dict(ex.row), ex.target) for ex in from_q], "sqa3d", source=str(q))
    assert result.official["em_overall"] == pytest.approx(100.0)


def test_sqa3d_missing_or_unnamed_partner(tmp_path):
    q, a = write_sqa3d(tmp_path)
    a.unlink()
    with pytest.raises(InputError) as err:
        read_training_file(q)
    assert str(err.value) == f"SQA3D questions file {q} needs its annotations file {a} beside it (not found)"
    odd = tmp_path / "my_sqa.json"
    odd.write_text(json.dumps({**INFO, "annotations": SQA_ANNOTATIONS}))
    with pytest.raises(InputError, match="keep the official names") as err:
        read_training_file(odd)
    assert "\n" not in str(err.value)


def test_sqa3d_bad_rows_are_named(tmp_path):
    questions = SQA_QUESTIONS + [
        {"scene_id": "scene0001_00", "situation": "s", "question": "Unanswered?", "question_id": 3},
        {"scene_id": "scene0002_00", "situation": "s", "question": "Empty answer?", "question_id": 4},
        {"scene_id": "scene0003_00", "situation": "s", "question": "Wrong scene?", "question_id": 5},
        {"scene_id": "scene0050_00", "situation": "s", "question": "Again?", "question_id": 220602000002},
        {"scene_id": "scene0004_00", "situation": "s", "question": "", "question_id": 6},
    ]
    annotations = SQA_ANNOTATIONS + [
        {"scene_id": "scene0002_00", "question_id": 4, "answers": [{"answer": " "}]},
        {"scene_id": "scene0999_00", "question_id": 5, "answers": [{"answer": "yes"}]},
        {"scene_id": "scene0004_00", "question_id": 6, "answers": [{"answer": "yes"}]},
        {"scene_id": "scene0005_00", "question_id": 99, "answers": [{"answer": "not asked"}]},
    ]
    q, a = write_sqa3d(tmp_path, questions, annotations)
    ts = read_training_file(a)
    assert [ex.line for ex in ts] == [1, 2]
    got = problems_by_line(ts)
    assert set(got) == {3, 4, 5, 6, 7}
    assert got[3] == f"{q} record 3 (question 3): no annotation with question_id 3 in {a.name}"
    assert "empty target: the first answer is empty (annotation row 3)" in got[4]
    assert "scene_id 'scene0003_00' but its annotation (row 4) says 'scene0999_00'" in got[5]
    assert "duplicate question_id 220602000002 (first on row 1)" in got[6]
    assert "field 'question' must be non-empty text" in got[7]


# ---------------------------------------------------------------------------------------------
# Whole-file errors, determinism, progress
# ---------------------------------------------------------------------------------------------
def test_whole_file_errors_are_one_line(tmp_path):
    cases = {
        tmp_path / "missing.jsonl": "does not exist",
        tmp_path: "is a directory",
        write_jsonl(tmp_path / "t.csv", [{"a": 1}]): "unknown format '.csv'",
        write_jsonl(tmp_path / "odd.jsonl", [{"a": 1}, {"b": 2}]): "unknown format: no record has 'conversations' (LLaVA) or 'question'",
        write_jsonl(tmp_path / "bad.jsonl", [{"conversations": []}, {"video": "x.mp4", "conversations": turns("Q", "")}]):
            "has no usable example (2 row(s) with problems; first: ",
        write_jsonl(tmp_path / "nogt.jsonl", [{"scene": "x", "question": "q"}]): "has no usable example",
    }  # fmt: skip
    broken = tmp_path / "broken.json"
    broken.write_text('[{"a": 1},\n oops]')
    cases[broken] = f"training file {broken}:2: malformed JSON"
    for path, message in cases.items():
        with pytest.raises(InputError) as err:
            read_training_file(path)
        assert message in str(err.value) and str(path) in str(err.value) and "\n" not in str(err.value)


def test_same_file_same_ids_and_order(tmp_path):
    path = write_jsonl(tmp_path / "mix.jsonl", VSI590K + [VLM3R[0]] + VSI590K[:2])
    a, b = read_training_file(path), read_training_file(path)

    def key(ts):
        return [(ex.id, ex.line, ex.turn, ex.prompt, ex.target, ex.row) for ex in ts]

    assert key(a) == key(b) and len({ex.id for ex in a}) == len(a) == 7
    copy = tmp_path / "elsewhere" / "mix.jsonl"
    copy.parent.mkdir()
    copy.write_bytes(path.read_bytes())
    assert [(ex.id, ex.prompt, ex.target) for ex in read_training_file(copy)] == [(ex.id, ex.prompt, ex.target) for ex in a]


def test_progress_callback(tmp_path, monkeypatch):
    from spacemind_cli.training.data import examples

    monkeypatch.setattr(examples, "PROGRESS_EVERY", 2)
    seen = []
    path = write_jsonl(tmp_path / "p.jsonl", VSI590K)
    read_training_file(path, TrainingOptions(progress=seen.append))
    assert seen == [2, 4]


# ---------------------------------------------------------------------------------------------
# Written back as a question file: `answer` asks exactly the training prompts
# ---------------------------------------------------------------------------------------------
def test_round_trip_through_a_question_file(tmp_path):
    llava_path = tmp_path / "llava.json"
    multi = {"video": "arkitscenes/47115148.mp4",
             "conversations": turns("<image>\nWhat is here?", "A sofa.", "Anything else?", "A lamp.")}  # fmt: skip
    llava_path.write_text(json.dumps(VLM3R + VSI590K + [multi]))
    q, _ = write_sqa3d(tmp_path)
    noid = write_jsonl(tmp_path / "noid.jsonl", [{"scene": "a/s", "question": "What is here?", "ground_truth": "sofa"}])
    for source in (llava_path, q, EXAMPLES, noid):
        ts = read_training_file(source)
        out = tmp_path / f"{source.stem}.questions.jsonl"
        assert write_question_file(ts, out) == len(ts)
        asked = read_questions(out)  # what `spacemind answer` reads
        assert asked.problems == [] and [qq.qid for qq in asked.questions] == [ex.id for ex in ts]
        for qq, ex in zip(asked.questions, ts):
            assert build_prompt(qq.row) == ex.prompt  # answer's prompt == the training prompt
            assert qq.scene_spec == ex.scene_spec
        again = read_training_file(out)
        assert [(ex.id, ex.prompt, ex.target, ex.scene_spec) for ex in again] == [
            (ex.id, ex.prompt, ex.target, ex.scene_spec) for ex in ts
        ]
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically, no temp left


def test_planner_resolves_example_scenes(tmp_path):
    from spacemind_cli.jobs.plan import plan_answer

    root = REPO / "examples" / "videos"
    rec = {"video": "synthetic/room_0001.mp4", "conversations": turns("<video>\nDescribe the room.", "A bedroom.")}
    path = write_jsonl(tmp_path / "t.jsonl", [rec])
    for ts in (read_training_file(EXAMPLES), read_training_file(path)):
        plan = plan_answer(root, ts.questions(), max_per_item=64)
        assert plan.failures == [] and sum(len(item.questions) for item in plan.items) == len(ts)


def test_writing_examples_of_two_files_with_one_id_is_refused(tmp_path):
    a = read_training_file(write_jsonl(tmp_path / "a.jsonl", VSI590K[:1]))
    b = read_training_file(write_jsonl(tmp_path / "b.jsonl", VSI590K[1:2]))
    out = tmp_path / "both.jsonl"
    with pytest.raises(InputError, match=r"share the id 'line-1'") as err:
        write_question_file([*a, *b], out)
    assert "a.jsonl:1" in str(err.value) and "b.jsonl:1" in str(err.value) and not out.exists()


def test_records_for_arrow_have_one_schema(tmp_path):
    import pyarrow as pa

    llava_path = tmp_path / "llava.json"
    llava_path.write_text(json.dumps(VLM3R + VSI590K))
    q, _ = write_sqa3d(tmp_path)
    examples = [*read_training_file(llava_path), *read_training_file(q), *read_training_file(EXAMPLES)]
    table = pa.Table.from_pylist([ex.to_record() for ex in examples])
    assert table.num_rows == len(examples) == 7 + 2 + 68
    back = table.to_pylist()
    for ex, rec in zip(examples, back):
        assert (rec["id"], rec["prompt"], rec["target"], rec["line"]) == (ex.id, ex.prompt, ex.target, ex.line)
        assert json.loads(rec["row_json"]) == json.loads(json.dumps(ex.row))
        spec = {k: rec[k] for k in ("scene", "dataset", "scene_name", "images")}
        assert spec == ex.scene_spec
