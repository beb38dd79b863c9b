"""Reading answer files (ours, Parquet, lmms-eval logs), malformed input, benchmark auto-detection."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from spacemind_cli.errors import InputError
from spacemind_cli.eval import detect_benchmark, evaluate_file, load_records

VSI_ROWS = [
    {"id": 0, "dataset": "arkitscenes", "scene_name": "41069025", "question_type": "object_counting",
     "question": "How many chairs?", "options": None, "ground_truth": "4", "prediction": "4", "answer": "4"},
    {"id": 1, "dataset": "scannet", "scene_name": "scene0011_00", "question_type": "object_rel_distance",
     "question": "Which is closest?", "options": ["A. sofa", "B. bed"], "ground_truth": "B",
     "prediction": "A. sofa", "answer": "A"},
    {"id": 2, "dataset": "scannetpp", "scene_name": "abc", "question_type": "room_size_estimation",
     "question": "Room size?", "options": None, "ground_truth": "20.0", "prediction": "25", "answer": "25"},
]  # fmt: skip
# counting 100, rel dist 0, room |5|/20 = 0.25 -> thresholds .50 .55 .60 .65 .70 .75 -> 60 (0.25 <= 1-0.75 exactly)
EXPECTED = {"object_counting_MRA:.5:.95:.05": 100.0, "object_rel_distance_accuracy": 0.0,
            "room_size_estimation_MRA:.5:.95:.05": 60.0}  # fmt: skip


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _check(result):
    for k, v in EXPECTED.items():
        assert result.official[k] == pytest.approx(v), k
    assert result.official["overall"] == pytest.approx(sum(EXPECTED.values()) / 3)


def test_our_jsonl(tmp_path):
    r = evaluate_file(_jsonl(tmp_path / "a.jsonl", VSI_ROWS))
    _check(r)
    assert r.input_format == "answers"


def test_parquet(tmp_path):
    p = tmp_path / "a.parquet"
    pq.write_table(pa.Table.from_pylist(VSI_ROWS), p)
    _check(evaluate_file(p))
    bad = dict(VSI_ROWS[0], ground_truth="many")
    pq.write_table(pa.Table.from_pylist([VSI_ROWS[0], bad]), p)
    with pytest.raises(InputError, match=rf"{p} row 2: ground_truth 'many' is not a number"):
        evaluate_file(p)


def _lmms_old(row):
    doc = {k: v for k, v in row.items() if k not in ("prediction", "answer")}
    metric = "accuracy" if row["question_type"] == "object_rel_distance" else "MRA:.5:.95:.05"
    return {"doc_id": row["id"], "doc": doc, "target": row["ground_truth"],
            "arguments": {"gen_args_0": {"arg_0": "prompt", "arg_1": {"max_new_tokens": 16}}},
            "resps": [[row["prediction"]]], "filtered_resps": [row["prediction"]], "doc_hash": "h",
            "prompt_hash": "p", "target_hash": "t",
            "vsibench_score": {**doc, "prediction": row["prediction"], metric: 0.123}}  # fmt: skip


def _lmms_new(row):
    # newer lmms-eval: no "doc" nor "arguments", flattened filtered_resps, metric dict holds the doc
    old = _lmms_old(row)
    return {"doc_id": old["doc_id"], "target": str(old["target"]), "filtered_resps": row["prediction"],
            "input": "prompt", "doc_hash": "h", "vsibench_score": old["vsibench_score"]}  # fmt: skip


def test_lmms_eval_sample_logs(tmp_path):
    r_old = evaluate_file(_jsonl(tmp_path / "samples_vsibench_2025.jsonl", [_lmms_old(x) for x in VSI_ROWS]))
    _check(r_old)
    assert r_old.input_format == "lmms-eval"
    r_new = evaluate_file(_jsonl(tmp_path / "20250101_samples_vsibench.jsonl", [_lmms_new(x) for x in VSI_ROWS]))
    _check(r_new)
    # metric dict missing: the question comes from doc, the text from filtered_resps, gt from target
    rows = [{k: v for k, v in _lmms_old(x).items() if k != "vsibench_score"} for x in VSI_ROWS]
    for row in rows:
        row["doc"].pop("ground_truth")
    _check(evaluate_file(_jsonl(tmp_path / "s.jsonl", rows)))
    # old lmms-eval wrote one JSON with a "logs" list
    p = tmp_path / "vsibench.json"
    p.write_text(json.dumps({"args": {}, "logs": [_lmms_old(x) for x in VSI_ROWS]}))
    _check(evaluate_file(p))


def test_the_scored_text_is_the_raw_prediction_not_the_parsed_answer(tmp_path):
    rows = [dict(VSI_ROWS[1], prediction="I think B", answer="B")]
    r = evaluate_file(_jsonl(tmp_path / "a.jsonl", rows))
    assert r.official["object_rel_distance_accuracy"] == 0.0
    assert evaluate_file(tmp_path / "a.jsonl", variant="parsed").official["object_rel_distance_accuracy"] == 100.0


def test_missing_prediction_field(tmp_path):
    rows = [dict(VSI_ROWS[0]), {k: v for k, v in VSI_ROWS[0].items() if k != "prediction"}, dict(VSI_ROWS[0], prediction=None)]
    r = evaluate_file(_jsonl(tmp_path / "a.jsonl", rows))
    assert r.n_missing_prediction == 2
    assert r.official["object_counting_MRA:.5:.95:.05"] == pytest.approx(100 / 3)
    assert any("without a prediction" in n for n in r.notes)


@pytest.mark.parametrize(
    "content, msg",
    [
        ('{"a": 1}\n\n{not json}\n', ":3: invalid JSON"),
        ('{"a": "x\ty"}\n', ":1: invalid JSON (Invalid control character at column 9)"),  # not "at at"
        ("[1, 2]\n", ":1: expected a JSON object"),
        ("", "no rows"),
        ('{"question_type": "object_counting", "ground_truth": "1", "prediction": {"text": "1"}}\n', ":1: prediction must be text"),
    ],
)
def test_malformed_files(tmp_path, content, msg):
    p = tmp_path / "bad.jsonl"
    p.write_text(content)
    with pytest.raises(InputError) as exc:
        evaluate_file(p, benchmark="vsibench")
    assert msg in str(exc.value) and str(p) in str(exc.value)
    assert "\n" not in str(exc.value)


def test_missing_file_and_bad_names(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        evaluate_file(tmp_path / "nope.jsonl")
    p = _jsonl(tmp_path / "a.jsonl", VSI_ROWS)
    with pytest.raises(InputError, match="unknown benchmark"):
        evaluate_file(p, benchmark="mmlu")
    with pytest.raises(InputError, match="unknown scoring variant 'fancy'"):
        evaluate_file(p, variant="micro+fancy")
    (tmp_path / "b.parquet").write_text("not parquet")
    with pytest.raises(InputError, match="not a readable Parquet file"):
        evaluate_file(tmp_path / "b.parquet")


# ---------------------------------------------------------------- auto-detection
def test_auto_detects_vsibench_from_question_types(tmp_path):
    bench, reason = detect_benchmark(load_records(_jsonl(tmp_path / "a.jsonl", VSI_ROWS)), "a.jsonl")
    assert bench == "vsibench" and "question types" in reason


def test_auto_detects_sqa3d_from_answers(tmp_path):
    rows = [{"id": 1, "question": "What is it?", "answers": ["chair"], "prediction": "chair"}]
    r = evaluate_file(_jsonl(tmp_path / "a.jsonl", rows))
    assert r.benchmark == "sqa3d" and r.official["em_overall"] == 100.0
    assert r.notes[0].startswith("benchmark auto-detected as sqa3d")


def test_auto_detects_spbench_from_fields_name_or_images(tmp_path):
    row = dict(VSI_ROWS[0])
    assert evaluate_file(_jsonl(tmp_path / "a.jsonl", [dict(row, split="SPBench-MV")])).benchmark == "spbench"
    assert evaluate_file(_jsonl(tmp_path / "SPBench-MV.jsonl", [row])).benchmark == "spbench"
    bench, reason = detect_benchmark(load_records(_jsonl(tmp_path / "b.jsonl", [dict(row, images=["1.jpg"])])), "b.jsonl")
    assert bench == "spbench" and "images" in reason
    assert evaluate_file(_jsonl(tmp_path / "c.jsonl", [dict(row, benchmark="VSI-Bench", images=["x"])])).benchmark == "vsibench"


def test_auto_detection_fails_loudly(tmp_path):
    rows = [{"id": 1, "question_type": "height", "question": "?", "ground_truth": "1", "prediction": "1"}]
    with pytest.raises(InputError, match="cannot tell the benchmark"):
        evaluate_file(_jsonl(tmp_path / "a.jsonl", rows))


def test_file_with_only_unscored_types_is_an_error(tmp_path):
    rows = [{"id": 1, "question_type": "height", "question": "?", "ground_truth": "1", "prediction": "1"}]
    with pytest.raises(InputError, match="no row could be scored"):
        evaluate_file(_jsonl(tmp_path / "a.jsonl", rows), benchmark="vsibench")
