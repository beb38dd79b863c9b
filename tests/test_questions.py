"""spacemind_cli.questions.read_questions: JSONL, JSON and Parquet; per-row problems naming the
file and line; whole-file errors as one-line InputErrors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from spacemind_cli.errors import InputError
from spacemind_cli.questions import read_questions

REPO = Path(__file__).resolve().parents[1]

VSI_ROWS = [
    {"id": 0, "dataset": "scannet", "scene_name": "scene0011_00", "question_type": "object_counting",
     "question": "How many chairs are in this room?", "options": None, "ground_truth": "4"},
    {"id": 1, "dataset": "arkitscenes", "scene_name": "41069025", "question_type": "object_rel_direction_easy",
     "question": "Is the sofa left or right of the tv?", "options": ["A. left", "B. right"], "ground_truth": "A"},
    {"id": 2, "dataset": "scannetpp", "scene_name": "0a5c013435", "question_type": "room_size_estimation",
     "question": "How big is this room (m^2)?", "options": None, "ground_truth": "21.5"},
]


def write_jsonl(path: Path, rows, *, raw_lines: dict[int, bytes] | None = None, prefix: bytes = b"") -> Path:
    """rows as JSON lines; raw_lines {1-based line: bytes} replaces given lines verbatim."""
    lines = [json.dumps(r).encode() for r in rows]
    for lineno, raw in (raw_lines or {}).items():
        lines.insert(lineno - 1, raw)
    path.write_bytes(prefix + b"\n".join(lines) + b"\n")
    return path


def one_line(text: str) -> str:
    assert "\n" not in text and "\r" not in text
    return text


def test_jsonl_vsibench_rows(tmp_path):
    rows = [dict(VSI_ROWS[0], extra_field={"nested": [1, 2]}, note="kept"), VSI_ROWS[1]]
    qs = read_questions(write_jsonl(tmp_path / "q.jsonl", rows))
    assert len(qs) == 2 and qs.problems == []
    q0, q1 = qs.questions
    assert (q0.index, q0.qid, q0.line, q1.index, q1.qid, q1.line) == (0, "0", 1, 1, "1", 2)
    assert q0.row == rows[0]  # every field kept as read, unknown ones included
    assert q0.row["extra_field"] == {"nested": [1, 2]} and q0.row["note"] == "kept"
    assert q0.text == "How many chairs are in this room?"
    assert q0.options is None and q1.options == ["A. left", "B. right"]
    assert q0.ground_truth == "4" and q0.question_type == "object_counting"
    assert q0.scene_spec == {"scene": None, "dataset": "scannet", "scene_name": "scene0011_00", "images": None}
    assert qs.has_ground_truth()
    assert q0.where() == f"{tmp_path / 'q.jsonl'}:1 (question 0)"


def test_optional_fields_and_scene_path(tmp_path):
    rows = [
        {"id": "a", "scene": "my_dataset/kitchen", "question": "What is on the table?"},
        {"id": "b", "scene": "kitchen.mp4", "question": "Any chairs?", "question_type": "my own free-text type!"},
    ]
    qs = read_questions(write_jsonl(tmp_path / "q.jsonl", rows))
    assert [q.qid for q in qs.questions] == ["a", "b"]
    assert qs.questions[0].ground_truth is None and qs.questions[0].question_type is None
    assert qs.questions[1].question_type == "my own free-text type!"
    assert qs.questions[0].scene_spec["scene"] == "my_dataset/kitchen"
    assert not qs.has_ground_truth()


def test_rows_without_id_are_numbered_by_line(tmp_path):
    path = write_jsonl(tmp_path / "q.jsonl", [{"scene": "s", "question": "q1"}, {"scene": "s", "question": "q2"}],
                       raw_lines={2: b"   "})
    qs = read_questions(path)
    assert [(q.qid, q.line, q.index) for q in qs.questions] == [("line-1", 1, 0), ("line-3", 3, 1)]


def test_sqa3d_aliases(tmp_path):
    rows = [{"question_id": 220602000000, "scene_id": "scene0050_00", "question": "What is in front of me?",
             "situation": "I am sitting on the bed."}]
    qs = read_questions(write_jsonl(tmp_path / "q.jsonl", rows))
    q = qs.questions[0]
    assert q.qid == "220602000000"
    assert q.scene_spec["scene_name"] == "scene0050_00"
    assert q.row["situation"] == "I am sitting on the bed."


def test_json_list_object_and_bom(tmp_path):
    (tmp_path / "list.json").write_text(json.dumps(VSI_ROWS, indent=2))
    (tmp_path / "obj.json").write_text(json.dumps({"questions": VSI_ROWS}))
    (tmp_path / "bom.json").write_bytes(b"\xef\xbb\xbf" + json.dumps(VSI_ROWS).encode())
    for name in ("list.json", "obj.json", "bom.json"):
        qs = read_questions(tmp_path / name)
        assert [q.row for q in qs.questions] == VSI_ROWS, name
        assert [q.line for q in qs.questions] == [1, 2, 3]


def test_parquet_vsibench_release(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    schema = pa.schema([("id", pa.int64()), ("dataset", pa.string()), ("scene_name", pa.string()),
                        ("question_type", pa.string()), ("question", pa.string()),
                        ("options", pa.list_(pa.string())), ("ground_truth", pa.string())])
    pq.write_table(pa.Table.from_pylist(VSI_ROWS, schema=schema), tmp_path / "test.parquet")
    qs = read_questions(tmp_path / "test.parquet")
    assert len(qs) == 3 and qs.problems == []
    assert [q.row for q in qs.questions] == VSI_ROWS
    assert qs.questions[1].options == ["A. left", "B. right"] and qs.questions[0].options is None
    assert [q.qid for q in qs.questions] == ["0", "1", "2"]


def test_parquet_row_problems_and_bad_file(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    rows = [dict(VSI_ROWS[0]), dict(VSI_ROWS[1], id=0), dict(VSI_ROWS[2], question=None)]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "q.parquet")
    qs = read_questions(tmp_path / "q.parquet")
    assert [q.qid for q in qs.questions] == ["0"]
    assert [(p.line, p.qid) for p in qs.problems] == [(2, "0"), (3, "2")]
    assert "duplicate" in qs.problems[0].message and "question" in qs.problems[1].message
    (tmp_path / "bad.parquet").write_text("not parquet")
    with pytest.raises(InputError) as info:
        read_questions(tmp_path / "bad.parquet")
    assert "bad.parquet" in one_line(str(info.value))


def test_malformed_jsonl_line_names_file_and_line(tmp_path):
    path = write_jsonl(tmp_path / "q.jsonl", VSI_ROWS, raw_lines={3: b'{"id": 9, "question": "oops",'})
    qs = read_questions(path)
    assert [q.qid for q in qs.questions] == ["0", "1", "2"]  # the others go on
    assert [q.line for q in qs.questions] == [1, 2, 4]
    (problem,) = qs.problems
    assert problem.line == 3 and problem.source == str(path)
    text = one_line(str(problem))
    assert text.startswith(f"{path}:3") and "malformed JSON" in text
    record = problem.to_record()
    assert record["file"] == str(path) and record["line"] == 3 and "malformed" in record["error"]


def test_duplicate_ids(tmp_path):
    rows = [VSI_ROWS[0], dict(VSI_ROWS[1], id=0), VSI_ROWS[2], dict(VSI_ROWS[2], question="again?")]
    qs = read_questions(write_jsonl(tmp_path / "q.jsonl", rows))
    assert [(q.qid, q.line) for q in qs.questions] == [("0", 1), ("2", 3)]
    assert [(p.line, p.qid) for p in qs.problems] == [(2, "0"), (4, "2")]
    assert "duplicate id '0'" in qs.problems[0].message and "line 1" in qs.problems[0].message
    assert "line 3" in one_line(str(qs.problems[1]))


@pytest.mark.parametrize(
    "row, words",
    [
        ({"id": 1, "scene": "s", "question": "q", "options": "A. yes B. no"}, ["options", "list", "str"]),
        ({"id": 1, "scene": "s", "options": ["A", "B"]}, ["missing", "question"]),
        ({"id": 1, "scene": "s", "question": "   "}, ["question", "non-empty"]),
        ({"id": 1, "scene": "s", "question": 5}, ["question"]),
        ({"id": 1, "scene": "s", "question": "q", "options": ["A", 2]}, ["options"]),
        ({"id": 1, "scene": "s", "question": "q", "question_type": 3}, ["question_type"]),
        ({"id": 1.5, "scene": "s", "question": "q"}, ["id"]),
        ({"id": 1, "question": "q"}, ["names no scene"]),
        ({"id": 1, "dataset": "scannet", "question": "q"}, ["names no scene"]),
        ({"id": 1, "scene_name": 12, "question": "q"}, ["scene_name", "text"]),
        ({"id": 1, "images": "a.jpg", "question": "q"}, ["images", "list"]),
        ([1, 2, 3], ["JSON object", "list"]),
        ("just a string", ["JSON object"]),
    ],
)
def test_bad_rows_are_problems_not_failures(tmp_path, row, words):
    good = {"id": "ok", "scene": "s", "question": "fine?"}
    qs = read_questions(write_jsonl(tmp_path / "q.jsonl", [good, row, dict(good, id="ok2")]))
    assert [q.qid for q in qs.questions] == ["ok", "ok2"]
    (problem,) = qs.problems
    assert problem.line == 2
    text = one_line(str(problem))
    assert text.startswith(f"{tmp_path / 'q.jsonl'}:2")
    for word in words:
        assert word in problem.message, (word, problem.message)


def test_scene_not_required_for_annotation_templates(tmp_path):
    qs = read_questions(write_jsonl(tmp_path / "q.jsonl", [{"id": "t", "question": "Describe the room."}]),
                        require_scene=False)
    assert len(qs) == 1 and qs.problems == []


def test_non_utf8_line_is_a_problem(tmp_path):
    path = write_jsonl(tmp_path / "q.jsonl", [VSI_ROWS[0], VSI_ROWS[2]],
                       raw_lines={2: b'{"id": 7, "scene": "s", "question": "caf\xe9?"}'})
    qs = read_questions(path)
    assert [q.qid for q in qs.questions] == ["0", "2"]
    (problem,) = qs.problems
    assert problem.line == 2 and "UTF-8" in problem.message
    assert one_line(str(problem)).startswith(f"{path}:2")


def test_bom_prefixed_jsonl_and_crlf(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + b"\r\n".join(json.dumps(r).encode() for r in VSI_ROWS) + b"\r\n")
    qs = read_questions(path)
    assert qs.problems == []
    assert [q.row for q in qs.questions] == VSI_ROWS
    assert "id" in qs.questions[0].row  # the first key is not "\ufeffid"


def test_utf8_text_kept(tmp_path):
    row = {"id": "é", "scene": "s", "question": "Wie viele Stühle gibt es? 椅子"}
    qs = read_questions(write_jsonl(tmp_path / "q.jsonl", [row]))
    assert qs.questions[0].text == row["question"] and qs.questions[0].qid == "é"


def _input_error(path: Path, *words: str) -> None:
    with pytest.raises(InputError) as info:
        read_questions(path)
    text = one_line(str(info.value))
    assert str(path) in text
    for word in words:
        assert word in text


def test_json_messages_read_well_whatever_python_says(tmp_path):
    """Python's message for a raw control character ends in "at" ("Invalid control character at"):
    the column follows it once, not as "at (column 16)"."""
    path = write_jsonl(tmp_path / "q.jsonl", VSI_ROWS, raw_lines={2: b'{"question": "a\tb"}'})
    (problem,) = read_questions(path).problems
    assert one_line(str(problem)).endswith(":2: malformed JSON: Invalid control character at column 16")
    (tmp_path / "broken.json").write_text('[\n {"id": 1,\n  "question": }\n]')
    _input_error(tmp_path / "broken.json", "broken.json:3: malformed JSON: Expecting value at column 15")


def test_whole_file_errors(tmp_path):
    (tmp_path / "empty.jsonl").write_bytes(b"")
    _input_error(tmp_path / "empty.jsonl", "no questions")
    (tmp_path / "blank.jsonl").write_text("\n  \n\n")
    _input_error(tmp_path / "blank.jsonl", "no questions")
    (tmp_path / "empty.json").write_text("[]")
    _input_error(tmp_path / "empty.json", "no questions")
    _input_error(tmp_path / "missing.jsonl", "does not exist")
    (tmp_path / "adir.jsonl").mkdir()
    _input_error(tmp_path / "adir.jsonl", "directory")
    (tmp_path / "q.csv").write_text("id,question\n1,hi\n")
    _input_error(tmp_path / "q.csv", "unknown format")
    (tmp_path / "obj.json").write_text('{"id": 1, "question": "q"}')
    _input_error(tmp_path / "obj.json", "list")
    (tmp_path / "broken.json").write_text('[\n {"id": 1,\n  "question": }\n]')
    _input_error(tmp_path / "broken.json", "malformed JSON", "broken.json:3")
    (tmp_path / "latin1.json").write_bytes('[{"id": 1, "scene": "s", "question": "café?"}]'.encode("latin-1"))
    _input_error(tmp_path / "latin1.json", "UTF-8")


def test_file_of_only_bad_rows_is_not_an_input_error(tmp_path):
    """Every row bad: the rows are reported as problems; nothing is silently dropped."""
    path = write_jsonl(tmp_path / "q.jsonl", [{"id": 1}], raw_lines={2: b"{not json"})
    qs = read_questions(path)
    assert len(qs) == 0 and [p.line for p in qs.problems] == [1, 2]


def test_bundled_example_questions():
    qs = read_questions(REPO / "examples" / "questions.jsonl")
    assert len(qs) == 68 and qs.problems == []
    assert len({q.qid for q in qs.questions}) == 68
    assert {q.row["dataset"] for q in qs.questions} == {"synthetic"}
    assert all(q.ground_truth is not None for q in qs.questions)


def test_line_based_ids_never_clash_with_real_ids(tmp_path):
    rows = [{"id": "line-2", "scene": "s", "question": "q1"}, {"scene": "s", "question": "q2"},
            {"scene": "s", "question": "q3"}, {"id": "line-3", "scene": "s", "question": "q4"}]
    qs = read_questions(write_jsonl(tmp_path / "q.jsonl", rows))
    qids = [q.qid for q in qs.questions]
    assert len(qids) == len(set(qids)) == 2
    assert qids == ["line-2", "line-3"]
    assert [p.line for p in qs.problems] == [2, 4]
    assert "line-2" in qs.problems[0].message and "line 1" in qs.problems[0].message
