"""Outputs: JSON (official keys), markdown, rich table, comparison runs, references, PNG plot."""

from __future__ import annotations

import json

import pytest
from PIL import Image
from rich.console import Console

from spacemind_cli.errors import InputError
from spacemind_cli.eval import (
    evaluate_records,
    load_result_json,
    plot,
    references_for,
    render_table,
    to_json,
    to_markdown,
)
from spacemind_cli.eval.records import Record

PAPER_COLUMNS = ["Avg.", "Obj. Count", "Abs. Dist.", "Obj. Size", "Room Size", "Rel. Dist.", "Rel. Dir.", "Route Plan", "Appr. Order"]
OFFICIAL_KEYS = [
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

_ROWS = [
    ("object_counting", "4", "4"),
    ("object_abs_distance", "2.0", "3.0"),
    ("object_size_estimation", "50", "55"),
    ("room_size_estimation", "20", "10"),
    ("object_rel_distance", "A", "A"),
    ("object_rel_direction_easy", "A", "A"),
    ("object_rel_direction_medium", "A", "B"),
    ("object_rel_direction_hard", "A", "A"),
    ("route_planning", "B", "C"),
    ("obj_appearance_order", "D", "D."),
    ("my_custom_type", "x", "x"),
]


def vsi_result(label="run-a", variant="official", flip=False):
    recs = []
    for i, (qt, gt, pred) in enumerate(_ROWS, start=1):
        if flip and qt == "route_planning":
            pred = gt
        recs.append(Record(i, {"question_type": qt, "ground_truth": gt, "id": i}, pred, None, "answers", f"m:{i}"))
    return evaluate_records(recs, "vsibench", variant, source=f"{label}.jsonl", label=label)


def sqa_result():
    recs = [
        Record(1, {"question": "What is it?", "answers": ["chair"]}, "chair", None, "answers", "m:1"),
        Record(2, {"question": "Is it on?", "answers": ["yes"]}, "yes it is", None, "answers", "m:2"),
    ]
    return evaluate_records(recs, "sqa3d", source="sqa.jsonl")


def spb_result():
    recs = []
    for i, (part, qt, gt, pred) in enumerate(
        [("SI", "object_abs_distance", "2", "2"), ("SI", "object_rel_direction", "A", "B"),
         ("MV", "object_counting", "3", "three"), ("MV", "object_rel_distance", "C", "C")], start=1
    ):  # fmt: skip
        recs.append(Record(i, {"question_type": qt, "ground_truth": gt, "split": part}, pred, None, "answers", f"m:{i}"))
    return evaluate_records(recs, "spbench", source="sp.jsonl")


def test_json_has_official_keys_in_paper_order_and_is_serialisable():
    r = vsi_result()
    j = to_json(r)
    assert list(j["scores"]) == OFFICIAL_KEYS + ["tabulated_keys", "tabulated_results"]
    assert j["scores"]["object_counting_MRA:.5:.95:.05"] == 100.0  # x100
    assert j["scores"]["object_abs_distance_MRA:.5:.95:.05"] == pytest.approx(10.0)  # |1|/2 = 0.5 -> 1/10
    assert j["scores"]["object_rel_direction_accuracy"] == pytest.approx(200 / 3)
    assert j["benchmark"] == "vsibench" and j["variant"] == "official"
    assert j["unscored"] == {"my_custom_type": 1}
    assert [m["column"] for m in j["metrics"]] == PAPER_COLUMNS
    assert "samples" not in j and len(to_json(r, include_samples=True)["samples"]) == 10
    text = json.dumps(to_json(r, include_samples=True))
    assert json.loads(text)["scores"]["overall"] == pytest.approx(r.official["overall"])


def test_sqa3d_and_spbench_json_keys():
    sj = to_json(sqa_result())["scores"]
    assert sj["em_overall"] == pytest.approx(50.0) and sj["em_refined_overall"] == pytest.approx(100.0)
    assert {"em_type0", "em_type1", "em_refined_type0", "em_refined_type1"} <= set(sj)
    pj = to_json(spb_result())["scores"]
    assert set(pj) == {"SPBench-SI", "SPBench-MV", "overall_unofficial"}
    assert {"overall_accuracy", "mca_accuracy", "na_accuracy", "object_abs_distance_MRA:.5:.95:.05"} <= set(pj["SPBench-SI"])


def test_markdown_table():
    md = to_markdown(vsi_result())
    lines = md.splitlines()
    assert lines[0] == "### VSI-Bench — run-a"
    assert lines[2] == "| Run | " + " | ".join(PAPER_COLUMNS) + " |"
    assert lines[3].startswith("|---|---:|")
    row = lines[4].split(" | ")
    assert row[0] == "| run-a" and row[2] == "100.0"
    assert "unscored: my_custom_type (1)" in md
    assert "SpaceMind" not in md
    md_ref = to_markdown(vsi_result(), references=True)
    assert "| *SpaceMind (paper)* | 70.2 | 73.9 |" in md_ref and "arXiv:2511.23075" in md_ref


def _render(table, width=220):
    console = Console(record=True, width=width, color_system=None)
    console.print(table)
    return console.export_text()


def test_rich_table_columns_values_and_counts():
    text = _render(render_table(vsi_result()))
    header = next(line for line in text.splitlines() if "Obj. Count" in line)
    positions = [header.index(c) for c in PAPER_COLUMNS]
    assert positions == sorted(positions)
    assert "run-a" in text and "100.0" in text and "66.7" in text
    assert "n (questions)" in text and "my_custom_type (1)" in text
    sqa = _render(render_table(sqa_result()))
    assert "EM@1" in sqa and "EM@R1" in sqa and "What" in sqa and "Others" in sqa
    spb = _render(render_table(spb_result(), references=True))
    assert "SPBench-SI" in spb and "SPBench overall*" in spb and "67.3" in spb and "70.9" in spb


def test_compare_runs_via_json(tmp_path):
    other = vsi_result(label="run-b", variant="micro", flip=True)
    path = tmp_path / "run-b.json"
    path.write_text(json.dumps(to_json(other)))
    loaded = load_result_json(path)
    assert loaded.label == "run-b" and loaded.get("route_planning_accuracy") == 100.0
    text = _render(render_table(vsi_result(), compare=[path], references=True))
    assert "run-b [micro]" in text and "SpaceMind (paper)" in text
    md = to_markdown(vsi_result(), compare=[path])
    assert "| run-b [micro] |" in md and "variant 'micro'" in md
    (tmp_path / "sqa.json").write_text(json.dumps(to_json(sqa_result())))
    with pytest.raises(InputError, match="cannot be compared"):
        render_table(vsi_result(), compare=[tmp_path / "sqa.json"])
    (tmp_path / "junk.json").write_text('{"hello": 1}')
    with pytest.raises(InputError, match="not a `spacemind eval --json` result"):
        load_result_json(tmp_path / "junk.json")


def test_a_compare_scores_json_is_read_once(tmp_path, monkeypatch):
    from pathlib import Path

    from spacemind_cli.eval.render import load_compare_item

    path = tmp_path / "run-b.json"
    path.write_text(json.dumps(to_json(vsi_result(label="run-b", flip=True))))
    reads = []
    read_text = Path.read_text
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: reads.append(self.name) or read_text(self, *a, **k))
    other = load_compare_item(path, vsi_result())
    assert other.label == "run-b" and other.get("route_planning_accuracy") == 100.0
    assert reads == ["run-b.json"]


def test_a_scores_json_of_older_scoring_rules_is_marked_in_a_comparison(tmp_path):
    """SQA3D's official rule for empty predictions changed (rules v2); a scores JSON written
    before the rules were recorded is v1, and a comparison says so instead of mixing silently."""
    from spacemind_cli.eval.result import SCORING_RULES

    current = to_json(sqa_result())
    assert current["rules"] == SCORING_RULES["sqa3d"] == 2
    same = tmp_path / "same.json"
    same.write_text(json.dumps({**current, "label": "same"}))
    old = tmp_path / "old.json"
    old.write_text(json.dumps({k: v for k, v in current.items() if k not in ("rules", "label")}))

    text = _render(render_table(sqa_result(), compare=[same, old]))
    assert "old (rules v1)" in text and "same (rules" not in text
    md = to_markdown(sqa_result(), compare=[same, old])
    assert "Note: old (rules v1) was scored under SQA3D scoring rules v1, this run under v2." in md
    assert "Note: same" not in md
    old.write_text(json.dumps({**current, "rules": "2"}))
    with pytest.raises(InputError, match="scoring rules '2' is not a version number"):
        load_result_json(old)


def test_references_cite_sources():
    for bench in ("vsibench", "sqa3d", "spbench"):
        refs = references_for(bench)
        assert refs and all(r.source for r in refs)
    vsi = references_for("vsibench")[0].values
    assert set(vsi) == set(OFFICIAL_KEYS) and vsi["overall"] == 70.2


def _check_png(path, min_w=1200, min_h=600):
    assert path.exists() and path.stat().st_size > 20_000
    with Image.open(path) as im:
        assert im.format == "PNG"
        w, h = im.size
        assert w >= min_w and h >= min_h
        assert round(im.info["dpi"][0]) == 200
        colors = im.convert("RGB").getcolors(maxcolors=1_000_000)
        assert colors is not None and len(colors) > 50  # bars, text, hatching: not a blank canvas


def test_plot_writes_a_png_with_compare_and_references(tmp_path):
    out = plot(vsi_result(), tmp_path / "figs" / "vsi.png", compare=[vsi_result("run-b", flip=True)], references=True)
    _check_png(out)
    _check_png(plot(sqa_result(), tmp_path / "sqa.png"))
    _check_png(plot(spb_result(), tmp_path / "sp.png", references=False))


def test_a_scores_json_with_a_raw_control_character_names_its_line_and_column(tmp_path):
    path = tmp_path / "scores.json"
    path.write_text('{\n  "label": "a\tb"\n}\n')
    with pytest.raises(InputError) as ei:
        load_result_json(path)
    assert str(ei.value) == f"{path}:2: invalid JSON (Invalid control character at column 14)"


def test_compare_accepts_an_answers_file_and_explains_anything_else(tmp_path):
    """`eval A --compare B.jsonl`: B is scored the same way; a file that is neither a scores JSON
    nor an answers file gets a message saying what --compare takes (not "invalid JSON")."""
    from spacemind_cli.eval import evaluate_file

    rows = [{"id": i, "dataset": "scannet", "scene_name": "s", "question_type": "object_counting",
             "question": "How many?", "ground_truth": "2", "prediction": p} for i, p in enumerate(["2", "3", "2"])]
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_text("".join(json.dumps(r) + "\n" for r in rows))
    b.write_text("".join(json.dumps({**r, "prediction": "2"}) + "\n" for r in rows))
    result = evaluate_file(a)
    text = _render(render_table(result, compare=[b], references=False))
    assert "b" in text and "100.0" in text
    junk = tmp_path / "notes.txt"
    junk.write_text("not json at all\n{")
    with pytest.raises(InputError, match="neither a scores JSON written by `spacemind eval --json` nor an answers file"):
        render_table(result, compare=[junk])
