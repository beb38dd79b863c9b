"""`spacemind report`: the library (scores from eval, thumbnails, page data), the CLI, bad input.

Answers files are the bundled example questions with rule-made predictions (tests/report_support.py),
over the bundled example videos and frame folders; no model runs here. The browser tests are in
test_report_browser.py."""

from __future__ import annotations

import json
import os
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image
from report_support import EXAMPLES, FRAMES, example_rows, make_rows, page_data, write_jsonl
from typer.testing import CliRunner

from spacemind_cli.cli.main import app
from spacemind_cli.errors import InputError
from spacemind_cli.eval import evaluate_file
from spacemind_cli.report import ReportConfig, build_report

runner = CliRunner()
VIDEOS = EXAMPLES / "videos"
FAST = ReportConfig(plot=False)  # the plot is matplotlib's, tested in test_eval_render; skip its cost


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    d = tmp_path_factory.mktemp("runs")
    return {"a": write_jsonl(d / "a.jsonl", make_rows(0, "a")), "b": write_jsonl(d / "b.jsonl", make_rows(1, "b"))}


@pytest.fixture(scope="module")
def report(runs, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("rep") / "report"
    return out, build_report(runs["a"], VIDEOS, out)


# ------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------
class _TableRows(HTMLParser):
    """The text of every <td> of <table id="scores">, row by row."""

    def __init__(self):
        super().__init__()
        self.rows: list[list[str]] = []
        self._in_table = self._in_td = False

    def handle_starttag(self, tag, attrs):
        if tag == "table" and dict(attrs).get("id") == "scores":
            self._in_table = True
        elif self._in_table and tag == "tr":
            self.rows.append([])
        elif self._in_table and tag == "td":
            self._in_td = True
            self.rows[-1].append("")

    def handle_endtag(self, tag):
        if tag == "table":
            self._in_table = False
        elif tag == "td":
            self._in_td = False

    def handle_data(self, data):
        if self._in_td:
            self.rows[-1][-1] += data


def html_table(out: Path) -> list[list[str]]:
    parser = _TableRows()
    parser.feed((out / "index.html").read_text(encoding="utf-8"))
    return [[c.strip() for c in row] for row in parser.rows if row]


def cli_table(text: str) -> list[list[str]]:
    """Body rows of the rich table `spacemind eval` prints (lines between the box's │ rules)."""
    return [[c.strip() for c in line.strip().strip("│").split("│")] for line in text.splitlines() if line.startswith("│")]


def invoke(*args) -> object:
    return runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})


# ------------------------------------------------------------------------------------------
# what the page shows
# ------------------------------------------------------------------------------------------
def test_report_folder_is_static_and_self_contained(report):
    out, summary = report
    for rel in ("index.html", "assets/app.js", "assets/style.css", "assets/scores.png", "report.json"):
        assert (out / rel).is_file(), rel
    html = (out / "index.html").read_text(encoding="utf-8")
    # No network: every src/href is a file of the folder or an in-page anchor.
    refs = re.findall(r'(?:src|href)="([^"]*)"', html)
    assert refs and all(r.startswith(("assets/", "thumbs/", "#")) for r in refs), refs
    for rel in ("index.html", "assets/app.js", "assets/style.css"):
        text = (out / rel).read_text(encoding="utf-8")
        assert "http://" not in text and "https://" not in text and "@import" not in text and "url(" not in text
    assert json.loads((out / "report.json").read_text())["questions"] == 68 == summary["questions"]


def test_every_question_is_in_the_page_data_with_evals_scores(report, runs):
    out, _ = report
    data = page_data(out)
    rows = example_rows()
    assert [q["id"] for q in data["questions"]] == [str(r["id"]) for r in rows]
    assert len({q["k"] for q in data["questions"]}) == len(rows)  # one anchor each
    samples = {s["line"]: s for s in evaluate_file(runs["a"]).samples}
    for q in data["questions"]:
        a = q["r"][0]
        assert a["sc"] == samples[q["line"]]["score"]  # eval's own per-question score
        assert a["p"] is not None and q["q"] and q["qt"]
    by_id = {q["id"]: q for q in data["questions"]}
    # Known values. Question 0 (counting, truth 2) answered "2": MRA 1. Question 1 (truth 1)
    # answered "1.25": relative error 0.25 is within 6 of the 10 tolerances -> MRA 0.6.
    assert (by_id["0"]["r"][0]["sc"], by_id["0"]["r"][0]["v"]) == (1.0, "right")
    assert (by_id["1"]["r"][0]["sc"], by_id["1"]["r"][0]["v"], by_id["1"]["r"][0]["m"]) == (0.6, "partly", "mra")
    assert (by_id["2"]["r"][0]["sc"], by_id["2"]["r"][0]["s"]) == (0.0, None)  # "about 1.3": not a number
    mc = [q for q in data["questions"] if q["o"]]
    assert mc and all(q["r"][0]["m"] == "acc" and q["r"][0]["v"] in ("right", "wrong") for q in mc)
    # options are scored by the reply's first word, as the official code does: "A. left" is A,
    # "The answer is A." is "The" (wrong) although our parsed answer is A
    rule = {i % 4: q for i, q in enumerate(data["questions"]) if q["o"]}
    assert rule[1]["r"][0]["v"] == "right" and rule[1]["r"][0]["s"] == rule[1]["gt"]
    assert rule[2]["r"][0]["v"] == "wrong" and rule[2]["r"][0]["s"] == "The" and rule[2]["r"][0]["a"] == rule[2]["gt"]


def test_scores_table_is_exactly_what_eval_prints(report, runs, tmp_path):
    out, _ = report
    printed = invoke("eval", runs["a"])
    assert printed.exit_code == 0, printed.output
    expected = cli_table(printed.output)
    assert len(expected) >= 3  # the run, the paper's row, the counts
    assert html_table(out) == expected

    # and with a compared run, as `spacemind eval A --compare B.json` prints it
    b_json = tmp_path / "b.json"
    assert invoke("eval", runs["b"], "--json", b_json).exit_code == 0
    printed = invoke("eval", runs["a"], "--compare", b_json)
    both = tmp_path / "both"
    build_report(runs["a"], VIDEOS, both, compare=runs["b"], config=FAST)
    assert html_table(both) == cli_table(printed.output)
    assert any(row[0] == "b" for row in html_table(both))


def test_thumbnails_are_exactly_the_answers_frames_at_160px(report):
    out, summary = report
    data = page_data(out)
    assert len(data["scenes"]) == 4 and summary["scene_status"] == {"ok": 4}
    for scene in data["scenes"]:
        assert scene["st"] == "ok" and scene["sets"] == [FRAMES]
        assert sorted(int(i) for i in scene["th"]) == FRAMES
        for rel, w, h in scene["th"].values():
            with Image.open(out / rel) as img:
                assert img.format == "JPEG" and img.size == (w, h) and max(img.size) == 160
    assert summary["thumbnails"] == summary["decoded"] == 4 * len(FRAMES)
    # thumbnails show the frame asked for: frame 46 of room 0 (the last sampled) matches the
    # video's frame 46, not a neighbour
    from spacemind_cli.video import read_frames

    room0 = data["scenes"][0]
    want = Image.fromarray(read_frames(VIDEOS / "synthetic" / "room_0000.mp4", [46])[0]).resize((160, 120))
    with Image.open(out / room0["th"]["46"][0]) as got:
        diff = sum(abs(a - b) for a, b in zip(got.convert("L").tobytes(), want.convert("L").tobytes())) / (160 * 120)
    assert diff < 6  # JPEG noise; the neighbouring frames differ by far more


def test_rebuild_reuses_thumbnails_without_decoding(runs, tmp_path, monkeypatch):
    out = tmp_path / "r"
    first = build_report(runs["a"], VIDEOS, out, config=FAST)
    assert first["decoded"] == 128 and first["cached"] == 0

    from spacemind_cli import images, video

    def no_decode(*a, **k):
        raise AssertionError("decoded a frame that was already thumbnailed")

    monkeypatch.setattr(video, "read_frames", no_decode)
    monkeypatch.setattr(images, "load_rgb", no_decode)
    again = build_report(runs["a"], VIDEOS, out, config=FAST)
    assert again["decoded"] == 0 and again["cached"] == 128 and again["pruned"] == 0
    monkeypatch.undo()

    # fewer frames: only the shown thumbnails stay; a file of the user's in DIR is never touched
    (out / "my-notes.txt").write_text("mine")
    fewer = [dict(r, frame_indices=FRAMES[:8]) for r in make_rows(0, "a")]
    third = build_report(write_jsonl(tmp_path / "few.jsonl", fewer), VIDEOS, out, config=FAST)
    assert third["decoded"] == 0 and third["thumbnails"] == 32 and third["pruned"] == 96
    assert len(list((out / "thumbs").glob("*/*.jpg"))) == 32
    assert (out / "my-notes.txt").read_text() == "mine"


def test_frame_folders_and_parquet_answers(tmp_path):
    from spacemind_cli.tables import write_parquet

    rows = make_rows(0)
    write_parquet(tmp_path / "a.parquet", lambda: iter(rows))  # as `spacemind answer --output X.parquet`
    summary = build_report(tmp_path / "a.parquet", EXAMPLES / "frames", tmp_path / "r", config=FAST)
    assert summary["questions"] == 68 and summary["scene_status"] == {"ok": 4}
    data = page_data(tmp_path / "r")
    assert all(s["kind"] == "frames" and sorted(map(int, s["th"])) == FRAMES for s in data["scenes"])


# ------------------------------------------------------------------------------------------
# bad input
# ------------------------------------------------------------------------------------------
def _broken_scenes(root: Path) -> Path:
    """room 0 fine (video), room 1 a corrupt video, room 2 a frame folder with a corrupt frame
    that the answers used, room 3 absent."""
    (root / "synthetic").mkdir(parents=True)
    shutil.copy(VIDEOS / "synthetic" / "room_0000.mp4", root / "synthetic")
    (root / "synthetic" / "room_0001.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 not really a video" * 20)
    shutil.copytree(EXAMPLES / "frames" / "synthetic" / "room_0002", root / "synthetic" / "room_0002")
    (root / "synthetic" / "room_0002" / f"{FRAMES[3]}.jpg").write_bytes(b"\xff\xd8garbage")
    return root


def test_missing_and_unreadable_scenes_are_marked_not_fatal(runs, tmp_path):
    root = _broken_scenes(tmp_path / "scenes")
    summary = build_report(runs["a"], root, tmp_path / "r", config=FAST)
    status = {p["scene"]: p for p in summary["scene_problems"]}
    assert status["synthetic/room_0001"]["status"] == "unreadable" and "room_0001.mp4" in status["synthetic/room_0001"]["reason"]
    assert status["synthetic/room_0002"]["status"] == "partial" and f"{FRAMES[3]}.jpg" in status["synthetic/room_0002"]["reason"]
    assert status["synthetic/room_0003"]["status"] == "missing" and "not found" in status["synthetic/room_0003"]["reason"]
    assert summary["scene_status"] == {"ok": 1, "unreadable": 1, "partial": 1, "missing": 1}
    data = page_data(tmp_path / "r")
    assert len(data["questions"]) == 68  # every question is still listed
    room2 = next(s for s in data["scenes"] if s["key"] == "synthetic/room_0002")
    assert len(room2["th"]) == len(FRAMES) - 1 and str(FRAMES[3]) not in room2["th"]
    html = (tmp_path / "r" / "index.html").read_text()
    assert 'id="scene-problems"' in html and "room_0003" in html

    # the CLI says so and exits 1 (finished, some scenes failed)
    res = invoke("report", runs["a"], "--scenes", root, "--output", tmp_path / "r2")
    assert res.exit_code == 1, res.output
    assert "3 scene(s) shown without all their frames" in res.output


def test_frames_past_the_end_of_a_video_are_marked(tmp_path):
    rows = [dict(r, frame_indices=[1, 20, 47, 48, 90]) for r in make_rows(0)]
    summary = build_report(write_jsonl(tmp_path / "a.jsonl", rows), VIDEOS, tmp_path / "r", config=FAST)
    assert summary["scene_status"] == {"partial": 4} and summary["thumbnails"] == 4 * 3
    assert all("2 of 5 frames unavailable (48, 90)" in p["reason"] for p in summary["scene_problems"])
    data = page_data(tmp_path / "r")
    assert all(sorted(s["th"]) == ["1", "20", "47"] and s["sets"] == [[1, 20, 47, 48, 90]] for s in data["scenes"])


def test_no_scenes_root_and_rows_without_frames(runs, tmp_path):
    # #22.12: without --scenes the report is built without frames, said once, exit 0 (it printed
    # "missing: no scenes root given" once per scene and exited 1)
    summary = build_report(runs["a"], None, tmp_path / "r", config=FAST)
    assert summary["scene_status"] == {"not-shown": 4} and summary["scene_problems"] == []
    assert not summary["frames_shown"] and summary["decoded"] == 0
    assert "Built without frames: no scenes root was given" in (tmp_path / "r" / "index.html").read_text()
    res = runner.invoke(app, ["report", str(runs["a"]), "--output", str(tmp_path / "r3")])
    assert res.exit_code == 0, res.output
    assert res.output.count("without frames") == 1 and "missing" not in res.output
    rows = [{k: v for k, v in r.items() if k != "frame_indices"} for r in make_rows(0)]
    summary = build_report(write_jsonl(tmp_path / "nf.jsonl", rows), VIDEOS, tmp_path / "r2", config=FAST)
    assert summary["scene_status"] == {"no-frames": 4} and summary["decoded"] == 0


def test_run_failures_listed_and_missing_errors_file_is_fine(runs, tmp_path):
    answers = write_jsonl(tmp_path / "a.jsonl", make_rows(0))
    build_report(answers, VIDEOS, tmp_path / "r", config=FAST)
    assert "no a.jsonl.errors.jsonl beside the answers" in (tmp_path / "r" / "index.html").read_text()

    errors = [
        {"stage": "scene", "file": "q.jsonl", "line": 70 + i, "id": 100 + i, "scene": "synthetic/room_0009",
         "error": "scene 'synthetic/room_0009' not found under examples/videos"}
        for i in range(3)
    ]
    (tmp_path / "a.jsonl.errors.jsonl").write_text(
        "".join(json.dumps(e) + "\n" for e in errors) + "{torn line\n"
        + json.dumps({"stage": "question", "id": 7, "error": "question too long for the context"}) + "\n"
    )
    summary = build_report(answers, VIDEOS, tmp_path / "r", config=FAST)
    assert summary["run_failures"] == 4
    html = (tmp_path / "r" / "index.html").read_text()
    assert "4 question(s) failed in the run" in html and "1 unreadable line(s) skipped" in html
    assert "scene &#x27;synthetic/room_0009&#x27; not found under examples/videos" in html
    assert "question too long for the context" in html and "100, 101, 102" in html


def test_a_partly_labelled_run_is_scored_and_the_report_says_how_many_were_not(tmp_path):
    rows = make_rows(0)
    rows = [{k: v for k, v in r.items() if k != "ground_truth"} if i % 10 == 3 else r for i, r in enumerate(rows)]
    unlabelled = sum(1 for r in rows if "ground_truth" not in r)
    summary = build_report(write_jsonl(tmp_path / "a.jsonl", rows), VIDEOS, tmp_path / "r", config=FAST)
    assert summary["benchmark"] == "vsibench" and summary["scored"] == len(rows) - unlabelled
    html = (tmp_path / "r" / "index.html").read_text()
    assert f"{unlabelled} without ground truth (unscored)" in html
    assert f"{unlabelled} question(s) without ground truth left unscored" in html


def test_a_label_with_dollars_is_plain_text_and_a_failed_rebuild_leaves_no_stale_index(tmp_path, monkeypatch):
    """#22.7: a file name with `$...$` (mathtext to matplotlib) crashed the plot, in eval --plot and
    in the report, which was left half-built."""
    answers = write_jsonl(tmp_path / "run $\\frac{1}$ of_$x$.jsonl", make_rows(0))
    res = runner.invoke(app, ["eval", str(answers), "--plot", str(tmp_path / "p.png")])
    assert res.exit_code == 0, res.output
    assert Image.open(tmp_path / "p.png").size[0] > 100
    out = tmp_path / "r"
    build_report(answers, VIDEOS, out, config=ReportConfig())
    assert (out / "index.html").is_file() and (out / "assets" / "scores.png").is_file()

    import spacemind_cli.report.build as build

    def crash(*args, **kwargs):
        raise RuntimeError("plot failed")

    monkeypatch.setattr(build, "_write_plot", crash)  # a rebuild that fails half-way
    with pytest.raises(RuntimeError):
        build_report(answers, VIDEOS, out, config=ReportConfig())
    assert not (out / "index.html").exists()  # no earlier page over a half-built folder


def test_unscorable_answers_still_get_a_report(tmp_path):
    rows = [{k: v for k, v in r.items() if k != "ground_truth"} for r in make_rows(0)]
    summary = build_report(write_jsonl(tmp_path / "a.jsonl", rows), VIDEOS, tmp_path / "r", config=FAST)
    assert summary["benchmark"] is None and "no row has ground truth" in summary["not_scored"]
    data = page_data(tmp_path / "r")
    assert len(data["questions"]) == 68 and all(q["r"][0]["v"] == "unscored" for q in data["questions"])
    assert "Not scored:" in (tmp_path / "r" / "index.html").read_text()


def test_unreadable_answers_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "a.jsonl"
    bad.write_text(json.dumps(make_rows(0)[0]) + "\n{not json\n")
    with pytest.raises(InputError, match="a.jsonl:2"):
        build_report(bad, VIDEOS, tmp_path / "r")
    assert not (tmp_path / "r").exists()  # nothing left behind
    res = invoke("report", bad, "--scenes", VIDEOS, "--output", tmp_path / "r")
    assert res.exit_code == 2 and "a.jsonl:2" in res.output


def test_compare_with_mismatching_ids(tmp_path):
    a = write_jsonl(tmp_path / "a.jsonl", make_rows(0, "a")[:60])
    b = write_jsonl(tmp_path / "b.jsonl", make_rows(1, "b")[8:])
    summary = build_report(a, VIDEOS, tmp_path / "r", compare=b, config=FAST)
    j = summary["join"]
    assert (j["matched_on"], j["matched"], j["only_a"], j["only_b"]) == ("id", 52, 8, 8)
    data = page_data(tmp_path / "r")
    assert len(data["questions"]) == 68
    only_b = [q for q in data["questions"] if q["cmp"] == "only-b"]
    assert [q["id"] for q in only_b] == [str(i) for i in range(60, 68)] and all(q["r"][0] is None for q in only_b)
    assert all(q["r"][1] is None for q in data["questions"] if q["cmp"] == "only-a")
    # disagreements: exactly the matched questions whose scored answers or scores differ
    for q in data["questions"]:
        if q["cmp"].startswith(("agree", "disagree")):
            a_, b_ = q["r"]
            differ = (a_["s"], a_["sc"]) != (b_["s"], b_["sc"])
            assert q["cmp"].startswith("disagree") == differ
            if differ and a_["sc"] != b_["sc"]:
                assert q["cmp"].endswith("-a" if a_["sc"] > b_["sc"] else "-b")
    assert j["disagree"] == sum(q["cmp"].startswith("disagree") for q in data["questions"]) > 0

    # ids missing in one file: matched on the question's content instead
    b2 = write_jsonl(tmp_path / "b2.jsonl", [{k: v for k, v in r.items() if k != "id"} for r in make_rows(1, "b")])
    summary = build_report(a, VIDEOS, tmp_path / "r2", compare=b2, config=FAST)
    assert summary["join"]["matched"] == 60 and summary["join"]["only_b"] == 8
    assert "scene, question type, text and options" in summary["join"]["matched_on"]


def test_output_folder_must_be_new_empty_or_a_report(runs, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("keep me")
    with pytest.raises(InputError, match="not empty"):
        build_report(runs["a"], VIDEOS, mine)
    assert sorted(p.name for p in mine.iterdir()) == ["thesis.tex"]
    res = invoke("report", runs["a"], "--scenes", VIDEOS, "--output", mine)
    assert res.exit_code == 2
    with pytest.raises(InputError, match="not a folder"):
        build_report(runs["a"], VIDEOS, mine / "thesis.tex")
    with pytest.raises(InputError, match="holds the input"):
        build_report(runs["a"], VIDEOS, runs["a"].parent)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert build_report(runs["a"], VIDEOS, empty, config=FAST)["questions"] == 68


def test_a_thumbnail_path_under_a_file_stops_the_build(runs, tmp_path):
    """A path in DIR that cannot hold thumbnails is the user's to fix: the build stops with one
    error (exit 2), it does not go on marking every scene unreadable."""
    few = [dict(r, frame_indices=FRAMES[:1]) for r in make_rows(0, "a")]
    answers = write_jsonl(tmp_path / "few.jsonl", few)
    out = tmp_path / "r"
    build_report(answers, VIDEOS, out, config=FAST)
    shutil.rmtree(out / "thumbs")
    (out / "thumbs").write_text("mine")
    with pytest.raises(InputError, match="part of its path is a file"):
        build_report(answers, VIDEOS, out, config=FAST)
    assert (out / "thumbs").read_text() == "mine"


def test_cli_report_summary_and_title(runs, tmp_path):
    res = invoke("report", runs["a"], "--scenes", VIDEOS, "--output", tmp_path / "r", "--compare", runs["b"],
                 "--title", "Ablation: fusion on/off")
    assert res.exit_code == 0, res.output
    assert "file://" in res.output and "disagree" in res.output and "128 decoded" in res.output
    html = (tmp_path / "r" / "index.html").read_text()
    assert "<title>Ablation: fusion on/off</title>" in html
    help_ = invoke("report", "--help")
    for option in ("--scenes", "--output", "--compare", "--title"):
        assert option in help_.output


def test_answer_summary_names_the_report_command(capsys):
    from spacemind_cli.cli import cmd_answer
    from spacemind_cli.summaries import AnswerSummary

    summary = AnswerSummary(questions=3, answered=3, scenes=1, questions_per_s=1.0, elapsed_s=3.0,
                            output="runs/answers.jsonl", rows_written=3)
    cmd_answer.print_summary(summary, Path("scenes dir"))
    text = " ".join(capsys.readouterr().out.split())
    assert "spacemind report runs/answers.jsonl --scenes 'scenes dir' --output runs/answers-report" in text


def test_bench_report_quick_runs_and_its_ratio_is_computed_from_its_values(tmp_path):
    import os
    import subprocess
    import sys

    from report_support import REPO

    out = tmp_path / "report.json"
    env = {**os.environ, "SPACEMIND_HOME": str(tmp_path / "home")}
    proc = subprocess.run([sys.executable, "-m", "bench.report", "--quick", "--out", str(out)], cwd=REPO,
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r = json.loads(out.read_text())
    assert r["workload"]["scenes"] == 12 and r["workload"]["questions"] == 210
    assert r["cold"]["decoded"] == 12 * 32 and r["warm"]["decoded"] == 0 == r["compare"]["decoded"]
    assert r["ratios"]["cold_over_warm"] == float(f"{r['cold']['wall_s'] / r['warm']['wall_s']:.3g}")
    b = r["bytes"]
    assert b["page"] < b["first_page"] < b["page"] + b["thumbnails"] and b["thumbnail_files"] == 384
    assert r["browser"]["open_ms_median"] > 0 and r["browser"]["dom_after_search"]["cards"] > 0
    text = out.read_text() + out.with_suffix(".md").read_text()
    assert str(tmp_path) not in text and "/tmp/" not in text  # no machine paths in results


def test_sqa3d_run_scores_and_verdicts_come_from_the_sqa3d_scorer(tmp_path):
    base = {"dataset": "synthetic", "scene_name": "room_0000", "situation": "I am sitting on the sofa.",
            "answers": ["lamp", "a lamp"], "scene_key": "synthetic/room_0000", "frame_indices": FRAMES}
    rows = [
        dict(base, id=1, question="What is on the table?", prediction="the lamp"),  # normalised "lamp": EM 1
        dict(base, id=2, question="What is on the table?", prediction="lamps"),  # "lamp" inside "lamps": EM 0, R1 1
        dict(base, id=3, question="Is the lamp on?", prediction="chair", answers=["yes"]),  # EM 0, R1 0
        dict(base, id=4, question="How many chairs?", prediction=None, answers=["two"]),  # no prediction
    ]
    answers = write_jsonl(tmp_path / "sqa3d_answers.jsonl", rows)
    summary = build_report(answers, VIDEOS, tmp_path / "r", config=FAST)
    assert summary["benchmark"] == "sqa3d"
    got = {q["id"]: (q["cat"], q["r"][0]["v"], q["r"][0]["sc"], q["r"][0].get("r1"), q["r"][0]["m"])
           for q in page_data(tmp_path / "r")["questions"]}
    assert got == {"1": ("What", "right", 1.0, 1, "em"), "2": ("What", "partly", 0.0, 1, "em"),
                   "3": ("Is", "wrong", 0.0, 0, "em"), "4": ("How", "wrong", 0.0, 0, "em")}
    assert html_table(tmp_path / "r") == cli_table(invoke("eval", answers).output)


def test_spbench_run_with_image_list_scenes(tmp_path):
    images = [f"synthetic/room_0001/{i}.jpg" for i in (0, 10, 20, 30)]
    base = {"dataset": "SPBench-SI", "scene_name": "room_0001", "images": images}
    rows = [
        dict(base, id=1, question_type="object_abs_distance", question="How far?", ground_truth="2.0", prediction="two"),
        dict(base, id=2, question_type="object_rel_direction", question="Left or right?", options=["A. left", "B. right"],
             ground_truth="B", prediction="Answer: B", frame_indices=[0, 1, 2, 3]),
    ]
    rows[0]["frame_indices"] = [0, 3]
    answers = write_jsonl(tmp_path / "spbench_si.jsonl", rows)
    summary = build_report(answers, EXAMPLES / "frames", tmp_path / "r", config=FAST)
    assert summary["benchmark"] == "spbench" and summary["scene_status"] == {"ok": 1}
    data = page_data(tmp_path / "r")
    scene = data["scenes"][0]
    assert scene["kind"] == "images" and scene["sets"] == [[0, 3], [0, 1, 2, 3]] and sorted(scene["th"]) == ["0", "1", "2", "3"]
    q1, q2 = data["questions"]
    # SpatialLadder reads number words ("two" -> 2: MRA 1) and strips "Answer:" before the letter
    assert (q1["cat"], q1["part"], q1["r"][0]["v"], q1["r"][0]["s"]) == ("Abs. Dist.", "SPBench-SI", "right", "2")
    assert (q2["cat"], q2["r"][0]["v"], q2["r"][0]["s"]) == ("Rel. Dir.", "right", "B")
    assert q1["fs"] == [0] and q2["fs"] == [1]  # each question shows the frames it was answered from
    assert html_table(tmp_path / "r") == cli_table(invoke("eval", answers).output)


def test_thumbnails_read_only_what_decoding_needs_and_refuse_links_out_of_the_root(tmp_path, monkeypatch):
    """#22.10: the report hashed the whole of any file named like a frame, symlinks included (37 s
    for a link to a 20 GB sparse file). Names come from the file system now; a link out of the
    scenes root is refused as `answer` refuses ../."""
    import spacemind_cli.fingerprint as fingerprint
    from spacemind_cli.report.thumbs import PARTIAL, SceneRequest, ThumbConfig, scene_thumbnails

    root = tmp_path / "scenes"
    scene = root / "room"
    scene.mkdir(parents=True)
    for i in (0, 3):
        Image.new("RGB", (64, 48), (40 * i, 90, 200)).save(scene / f"{i:03d}.png")
    secret = tmp_path / "outside.png"
    Image.new("RGB", (64, 48), (255, 0, 0)).save(secret)
    (scene / "001.png").symlink_to(secret)
    with open(scene / "002.png", "wb") as fh:  # a huge sparse file named like a frame
        fh.truncate(4 << 30)

    def no_hashing(*args, **kwargs):
        raise AssertionError("a frame file was hashed whole")

    import spacemind_cli.report.thumbs as thumbs

    monkeypatch.setattr(fingerprint, "file_digest", no_hashing)
    monkeypatch.setattr(thumbs, "file_digest", no_hashing, raising=False)
    req = SceneRequest("room", {"scene": "room"}, [0, 1, 2, 3])
    res = scene_thumbnails(req, root, tmp_path / "out", ThumbConfig())
    assert res.status == PARTIAL and sorted(res.frames) == [0, 3]
    assert f"{scene / '001.png'} escapes the scenes root" in res.note
    assert "2 of 4 frames unavailable (1, 2)" in res.note
    again = scene_thumbnails(req, root, tmp_path / "out", ThumbConfig())  # a rebuild decodes nothing
    assert again.cached == 2 and again.decoded == 0 and again.frames == res.frames
    os.utime(scene / "003.png", ns=(1, 1))  # a changed file: a new thumbnail
    assert scene_thumbnails(req, root, tmp_path / "out", ThumbConfig()).decoded == 1
