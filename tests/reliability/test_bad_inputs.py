"""1. Bad input matrix: each kind of bad scene or question file, end to end through `spacemind
answer --executor local` with the tiny checkpoint.

For every kind: the job still answers everything else, the exit code is the documented one
(1: finished with failures; 2: nothing could start), each failure is one line in
OUT.errors.jsonl naming the question file, line, question id and the scene or file at fault, and
the CLI's last words point at that file. Whole-file problems stop the job with exit 2 and a
one-line message naming the file, before anything is written.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from reliability_support import answer_args, cli, cli_proc, frames_scene, mp4_scene, question, read_jsonl, write_jsonl

GOOD = [question("good-1", "good"), question("good-2", "good", "How many lamp(s) are in this room?")]


@pytest.fixture
def root(tmp_path) -> Path:
    r = tmp_path / "scenes"
    frames_scene(r / "good", n=4, seed=1)
    return r


def run(tmp_path, ckpt, root, rows=None, *, qfile=None, extra=()):
    qfile = qfile or write_jsonl(tmp_path / "questions.jsonl", rows)
    out = tmp_path / "out" / "answers.jsonl"
    res = cli(*answer_args(root, qfile, ckpt, out, *extra))
    assert res.exception is None, res
    return res, out, qfile


def errors_of(out: Path) -> list[dict]:
    path = out.with_name(out.name + ".errors.jsonl")
    assert path.is_file(), f"no {path.name} beside the output"
    text = path.read_text(encoding="utf-8")
    errs = [json.loads(line) for line in text.splitlines()]
    assert len(errs) == text.count("\n")  # one record per line
    for e in errs:
        assert e["error"] and "\n" not in e["error"], e  # one-line reasons
    return errs


def assert_partial(res, out, qfile, *, answered: list[str], failed: dict[str, list[str]]) -> list[dict]:
    """Exit 1, the good questions answered in file order, each bad one reported once with its file,
    line and id, and every expected fragment (scene, file name, reason) in its message."""
    assert res.exit_code == 1, res
    rows = read_jsonl(out)
    assert [str(r["id"]) for r in rows] == answered
    assert all(isinstance(r["prediction"], str) and r["checkpoint_id"] for r in rows)
    errs = errors_of(out)
    assert sorted(str(e["id"]) for e in errs) == sorted(failed), errs
    for e in errs:
        assert e["file"] == str(qfile) and isinstance(e["line"], int) and e["line"] >= 1, e
        for fragment in failed[str(e["id"])]:
            assert fragment in e["error"], (fragment, e)
    # the CLI's last words say how many failed and where they are listed
    assert f"{len(errs)} question(s) could not be answered" in res.stderr
    assert str(out.name) + ".errors.jsonl" in res.stderr.replace("\n", "")
    return errs


# ------------------------------------------------------------------------------ scenes


def test_missing_image_file_named_in_an_images_list(tmp_path, tiny_ckpt, root):
    rows = GOOD + [{"id": "spb", "question": "Which is closer?", "images": ["good/000.png", "gone/missing.png"]}]
    res, out, q = run(tmp_path, tiny_ckpt, root, rows)
    errs = assert_partial(res, out, q, answered=["good-1", "good-2"], failed={"spb": ["gone/missing.png", "not found"]})
    assert errs[0]["line"] == 3


def test_empty_image_file_in_a_frame_folder(tmp_path, tiny_ckpt, root):
    frames_scene(root / "empties", n=4, seed=2)
    (root / "empties" / "002.png").write_bytes(b"")
    res, out, q = run(tmp_path, tiny_ckpt, root, GOOD + [question("e", "empties")])
    errs = assert_partial(res, out, q, answered=["good-1", "good-2"],
                          failed={"e": [str(root / "empties" / "002.png"), "empty (0 bytes)"]})
    assert errs[0]["scene"] == "empties"


def test_corrupt_image_file(tmp_path, tiny_ckpt, root):
    frames_scene(root / "corrupt", n=4, seed=3, ext=".jpg")
    (root / "corrupt" / "001.jpg").write_bytes(os.urandom(3000))
    res, out, q = run(tmp_path, tiny_ckpt, root, GOOD + [question("c", "corrupt")])
    assert_partial(res, out, q, answered=["good-1", "good-2"], failed={"c": ["001.jpg", "cannot be decoded"]})


@pytest.mark.parametrize("ext", [".png", ".jpg"])
def test_truncated_image_file(tmp_path, tiny_ckpt, root, ext):
    frames_scene(root / "cut", n=4, seed=4, ext=ext, size=(320, 240))
    victim = root / "cut" / f"003{ext}"
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    res, out, q = run(tmp_path, tiny_ckpt, root, GOOD + [question("t", "cut")])
    assert_partial(res, out, q, answered=["good-1", "good-2"], failed={"t": [f"003{ext}", "cannot be decoded"]})


def test_frame_folder_without_images(tmp_path, tiny_ckpt, root):
    (root / "noframes").mkdir()
    (root / "noframes" / "README.txt").write_text("frames were never copied")
    res, out, q = run(tmp_path, tiny_ckpt, root, GOOD + [question("n", "noframes")])
    assert_partial(res, out, q, answered=["good-1", "good-2"], failed={"n": ["scene noframes", "no frames"]})


def test_zero_byte_mp4(tmp_path, tiny_ckpt, root):
    (root / "zero.mp4").write_bytes(b"")
    res, out, q = run(tmp_path, tiny_ckpt, root, GOOD + [question("z", "zero")])
    assert_partial(res, out, q, answered=["good-1", "good-2"], failed={"z": ["zero.mp4", "empty (0 bytes)"]})


@pytest.mark.parametrize("content", [b"this is a text file, not a video\n" * 40, os.urandom(5000)], ids=["text", "noise"])
def test_non_video_file_named_mp4(tmp_path, tiny_ckpt, root, content):
    (root / "fake.mp4").write_bytes(content)
    res, out, q = run(tmp_path, tiny_ckpt, root, GOOD + [question("f", "fake")])
    assert_partial(res, out, q, answered=["good-1", "good-2"], failed={"f": ["fake.mp4", "cannot be opened"]})


def test_truncated_mp4(tmp_path, tiny_ckpt, root):
    src = mp4_scene(tmp_path / "full.mp4", n=20, seed=5)
    (root / "half.mp4").write_bytes(src.read_bytes()[: src.stat().st_size // 2])  # moov atom lost
    res, out, q = run(tmp_path, tiny_ckpt, root, GOOD + [question("h", "half")])
    assert_partial(res, out, q, answered=["good-1", "good-2"], failed={"h": ["half.mp4"]})


def test_video_with_one_frame_is_answered(tmp_path, tiny_ckpt, root):
    mp4_scene(root / "single.mp4", n=1, seed=6)
    res, out, _ = run(tmp_path, tiny_ckpt, root, GOOD + [question("s", "single")])
    assert res.exit_code == 0, res
    rows = {r["id"]: r for r in read_jsonl(out)}
    assert set(rows) == {"good-1", "good-2", "s"}
    assert rows["s"]["frames_used"] == 1 and rows["s"]["frame_indices"] == [0]
    assert "used 1 of the 4" in rows["s"]["frames_note"]  # the short clip is reported, not hidden
    assert not out.with_name(out.name + ".errors.jsonl").exists()


def test_mixed_image_sizes_in_one_scene(tmp_path, tiny_ckpt, root):
    from PIL import Image

    folder = root / "mixed"
    folder.mkdir()
    for i, (w, h) in enumerate([(64, 48), (48, 64), (200, 30), (17, 300)]):
        Image.new("RGB", (w, h), (40 * i, 90, 200 - 40 * i)).save(folder / f"{i}.png")
    res, out, _ = run(tmp_path, tiny_ckpt, root, GOOD + [question("m", "mixed")])
    assert res.exit_code == 0, res
    rows = {r["id"]: r for r in read_jsonl(out)}
    assert rows["m"]["frames_used"] == 4 and rows["m"]["prediction"] is not None


def test_huge_images_are_decoded_reduced(tmp_path, tiny_ckpt, root):
    from PIL import Image

    from spacemind_cli.cache import FeatureCache

    folder = root / "huge"
    folder.mkdir()
    big = Image.new("RGB", (8000, 6000), (120, 60, 30))
    big.save(folder / "0.jpg", quality=50)
    big.save(folder / "1.png", compress_level=1)
    Image.new("RGB", (64, 48), (1, 2, 3)).save(folder / "2.png")
    cache = tmp_path / "cache"
    res, out, _ = run(tmp_path, tiny_ckpt, root, GOOD + [question("big", "huge")], extra=("--cache", cache))
    assert res.exit_code == 0, res
    assert {r["id"] for r in read_jsonl(out)} == {"good-1", "good-2", "big"}
    sizes = {e.scene_key: e.meta["image_sizes"] for e in FeatureCache(cache).entries()}
    # decoded at most 2048 px on a side (JPEG draft mode / box reduction), aspect kept
    assert max(max(s) for s in sizes["huge"]) <= 2048
    assert sizes["huge"][0] == [1500, 2000] and sizes["huge"][2] == [48, 64]


# ------------------------------------------------------------------------------ questions


def test_non_utf8_line(tmp_path, tiny_ckpt, root):
    q = tmp_path / "questions.jsonl"
    good = "".join(json.dumps(r) + "\n" for r in GOOD)
    q.write_bytes(good.encode() + b'{"id": "latin1", "scene": "good", "question": "caf\xe9?"}\n')
    res, out, _ = run(tmp_path, tiny_ckpt, root, qfile=q)
    errs = assert_partial(res, out, q, answered=["good-1", "good-2"], failed={"None": ["not valid UTF-8"]})
    assert errs[0]["line"] == 3 and errs[0]["stage"] == "questions"


def test_bom_prefixed_jsonl_is_read(tmp_path, tiny_ckpt, root):
    q = tmp_path / "questions.jsonl"
    q.write_bytes(b"\xef\xbb\xbf" + "".join(json.dumps(r) + "\r\n" for r in GOOD).encode())
    res, out, _ = run(tmp_path, tiny_ckpt, root, qfile=q)
    assert res.exit_code == 0, res
    assert [r["id"] for r in read_jsonl(out)] == ["good-1", "good-2"]  # the BOM is not part of the first key


@pytest.mark.parametrize("bad", ['{"id": "x", "scene": "good", "question": "unterminated', "{'id': 'x'}", "not json at all"])
def test_malformed_line(tmp_path, tiny_ckpt, root, bad):
    q = tmp_path / "questions.jsonl"
    q.write_text(json.dumps(GOOD[0]) + "\n" + bad + "\n" + json.dumps(GOOD[1]) + "\n")
    res, out, _ = run(tmp_path, tiny_ckpt, root, qfile=q)
    errs = assert_partial(res, out, q, answered=["good-1", "good-2"], failed={"None": ["malformed JSON"]})
    assert errs[0]["line"] == 2


def test_last_line_cut_mid_write(tmp_path, tiny_ckpt, root):
    q = tmp_path / "questions.jsonl"
    q.write_text("".join(json.dumps(r) + "\n" for r in GOOD) + json.dumps(question("cut", "good"))[:25])
    res, out, _ = run(tmp_path, tiny_ckpt, root, qfile=q)
    errs = assert_partial(res, out, q, answered=["good-1", "good-2"], failed={"None": ["malformed JSON"]})
    assert errs[0]["line"] == 3


@pytest.mark.parametrize("row,reason", [
    ({"id": "noq", "scene": "good"}, "missing required field 'question'"),
    ({"id": "blank", "scene": "good", "question": "   "}, "'question' must be non-empty text"),
    ({"id": "nosc", "question": "Where?"}, "names no scene"),
], ids=["no-question", "blank-question", "no-scene"])
def test_missing_required_field(tmp_path, tiny_ckpt, root, row, reason):
    res, out, q = run(tmp_path, tiny_ckpt, root, GOOD + [row])
    errs = assert_partial(res, out, q, answered=["good-1", "good-2"], failed={row["id"]: [reason]})
    assert errs[0]["line"] == 3


@pytest.mark.parametrize("row,reason", [
    (question("opt", "good", options="A. left B. right"), "'options' must be a list"),
    (question("optnum", "good", options=["A. one", 2]), "'options' must be a list of strings"),
    (question("qt", "good", question_type=7), "'question_type' must be text"),
    (question("sc", 12), "'scene' must be text"),
    (question("img", None, images="good/000.png"), "'images' must be a list"),
], ids=["options-string", "options-number", "type-int", "scene-int", "images-string"])
def test_wrong_field_types(tmp_path, tiny_ckpt, root, row, reason):
    res, out, q = run(tmp_path, tiny_ckpt, root, GOOD + [row])
    assert_partial(res, out, q, answered=["good-1", "good-2"], failed={str(row["id"]): [reason]})


def test_row_that_is_not_an_object(tmp_path, tiny_ckpt, root):
    q = tmp_path / "questions.jsonl"
    q.write_text(json.dumps(GOOD[0]) + "\n[1, 2, 3]\n" + json.dumps(GOOD[1]) + "\n")
    res, out, _ = run(tmp_path, tiny_ckpt, root, qfile=q)
    errs = assert_partial(res, out, q, answered=["good-1", "good-2"], failed={"None": ["must be a JSON object"]})
    assert errs[0]["line"] == 2


def test_duplicate_ids(tmp_path, tiny_ckpt, root):
    rows = GOOD + [question("good-1", "good", "A different question with a reused id?")]
    res, out, q = run(tmp_path, tiny_ckpt, root, rows)
    errs = assert_partial(res, out, q, answered=["good-1", "good-2"],
                          failed={"good-1": ["duplicate id 'good-1'", "first seen on line 1"]})
    assert errs[0]["line"] == 3
    # the answer kept is the first row's
    assert read_jsonl(out)[0]["question"] == GOOD[0]["question"]


@pytest.mark.parametrize("row", [
    question("u1", "no_such_room"),
    {"id": "u2", "dataset": "scannet", "scene_name": "scene0000_00", "question": "Where?"},
], ids=["scene", "dataset+scene_name"])
def test_unknown_scene(tmp_path, tiny_ckpt, root, row):
    name = row.get("scene") or "scannet/scene0000_00"
    res, out, q = run(tmp_path, tiny_ckpt, root, GOOD + [row])
    assert_partial(res, out, q, answered=["good-1", "good-2"], failed={row["id"]: [name, "not found"]})


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink", "images"])
def test_scene_path_escaping_the_root(tmp_path, tiny_ckpt, root, kind):
    outside = frames_scene(tmp_path / "secret", n=4, seed=9)
    if kind == "dotdot":
        row = question("esc", "../secret")
    elif kind == "absolute":
        row = question("esc", str(outside))
    elif kind == "symlink":
        os.symlink(outside, root / "innocent")
        row = question("esc", "innocent")
    else:
        row = {"id": "esc", "question": "Which?", "images": ["good/000.png", "../secret/000.png"]}
    res, out, q = run(tmp_path, tiny_ckpt, root, GOOD + [row])
    reason = "must be a path relative to the scenes root" if kind == "absolute" else "escapes the scenes root"
    assert_partial(res, out, q, answered=["good-1", "good-2"], failed={"esc": [reason]})
    assert not any("secret" in json.dumps(r) for r in read_jsonl(out))


# ------------------------------------------------------------------------------ whole-file problems (exit 2)


@pytest.mark.parametrize("name,content", [
    ("empty.jsonl", b""),
    ("blank.jsonl", b"\n  \n\r\n"),
    ("bom-only.jsonl", b"\xef\xbb\xbf\n"),
    ("empty.json", b"[]"),
], ids=["zero-bytes", "blank-lines", "bom-only", "json-empty-list"])
def test_empty_question_file(tmp_path, tiny_ckpt, root, name, content):
    q = tmp_path / name
    q.write_bytes(content)
    res, out, _ = run(tmp_path, tiny_ckpt, root, qfile=q)
    assert res.exit_code == 2, res
    assert f"question file {q} holds no questions" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert not out.exists() and not out.parent.exists()  # nothing was started


@pytest.mark.parametrize("case", ["missing-question-file", "question-file-not-json", "unknown-format", "missing-root"])
def test_unusable_inputs_stop_before_starting(tmp_path, tiny_ckpt, root, case):
    q = tmp_path / "questions.jsonl"
    write_jsonl(q, GOOD)
    scenes = root
    if case == "missing-question-file":
        q, needle = tmp_path / "nope.jsonl", "does not exist"
    elif case == "question-file-not-json":
        q = tmp_path / "q.json"
        q.write_text('[{"id": 1,')
        needle = "malformed JSON"
    elif case == "unknown-format":
        q = tmp_path / "q.csv"
        q.write_text("id,question\n1,hi\n")
        needle = "unknown format"
    else:
        scenes, needle = tmp_path / "no-root", "does not exist"
    res, out, _ = run(tmp_path, tiny_ckpt, scenes, qfile=q)
    assert res.exit_code == 2, res
    assert needle in res.stderr and str(scenes if case == "missing-root" else q) in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert not out.exists()


# ------------------------------------------------------------------------------ all at once, real CLI process


def test_exit_codes_are_documented_in_help():
    res = cli_proc("answer", "--help", timeout=60)
    assert res.exit_code == 0, res
    text = " ".join(res.stdout.split())
    for fragment in ("0 success", "1 finished, but some scenes/questions failed", "*.errors.jsonl", "2 bad input",
                     "3 checkpoint error", "4 cache error", "5 disk full", "read-only output", "130 interrupted"):
        assert fragment in text, fragment


def test_every_bad_kind_in_one_job_through_the_real_cli(tmp_path, tiny_ckpt, root):
    """One real `python -m spacemind_cli answer` process over a root holding every bad scene kind
    and a question file holding every bad row kind: each failure listed once, the rest answered."""
    frames_scene(root / "good2", n=4, seed=11)
    frames_scene(root / "empties", n=4, seed=2)
    (root / "empties" / "001.png").write_bytes(b"")
    frames_scene(root / "corrupt", n=4, seed=3)
    (root / "corrupt" / "002.png").write_bytes(os.urandom(500))
    (root / "zero.mp4").write_bytes(b"")
    (root / "fake.mp4").write_text("not a video")
    mp4_scene(root / "single.mp4", n=1)
    q = tmp_path / "q.jsonl"
    good_rows = [question("a", "good"), question("b", "good2"), question("c", "single")]
    bad_scene_rows = [question("d", "empties"), question("e", "corrupt"), question("f", "zero"),
                      question("g", "fake"), question("h", "missing"), question("i", "../good")]
    lines = [json.dumps(r) for r in good_rows[:1]]
    lines += ['{"id": "bad-json", ', json.dumps({"id": "noq", "scene": "good"}),
              json.dumps(question("opts", "good", options="A. B.")), json.dumps(question("a", "good2"))]
    lines += [json.dumps(r) for r in good_rows[1:] + bad_scene_rows]
    q.write_bytes("\n".join(lines).encode() + b"\n" + b'{"id": "\xff", "scene": "good", "question": "x"}\n')
    out = tmp_path / "o.jsonl"
    res = cli_proc(*answer_args(root, q, tiny_ckpt, out), timeout=300)
    assert res.exit_code == 1, res
    assert [r["id"] for r in read_jsonl(out)] == ["a", "b", "c"]
    errs = errors_of(out)
    by_id = {str(e["id"]): e for e in errs}
    assert len(errs) == 11 and set(by_id) >= {"noq", "opts", "a", "d", "e", "f", "g", "h", "i", "None"}
    assert sum(1 for e in errs if e["id"] is None) == 2  # the malformed and the non-UTF-8 lines
    for e in errs:
        assert e["file"] == str(q) and isinstance(e["line"], int)
    assert by_id["a"]["line"] == 5 and "duplicate id" in by_id["a"]["error"]
    assert "empties" in by_id["d"]["error"] and "corrupt" in by_id["e"]["error"] and "zero.mp4" in by_id["f"]["error"]
    assert "escapes the scenes root" in by_id["i"]["error"]
    assert "Traceback" not in res.stderr


# ------------------------------------------------------------------------------ one bad question, not its scene


def test_question_longer_than_the_model_context_fails_alone(tmp_path, tiny_ckpt, root):
    """A 40,000-token question used to be padded into its batch and ask for 26 GB, failing every
    question of its scene with a bare allocator error; now it alone is refused, by name."""
    import resource

    rows = GOOD[:1] + [question("novel", "good", "chair " * 40000)] + GOOD[1:]
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    res, out, q = run(tmp_path, tiny_ckpt, root, rows)
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    errs = assert_partial(res, out, q, answered=["good-1", "good-2"],
                          failed={"novel": ["question novel: its prompt is 400", "over the model's context of"]})
    assert errs[0]["line"] == 2 and errs[0]["scene"] == "good"
    assert grown_mib < 1024, f"peak RSS grew by {grown_mib:.0f} MiB"


def test_a_question_that_breaks_decoding_fails_alone(tmp_path, tiny_ckpt, root, monkeypatch):
    """Any decoding failure is narrowed down to its question: the batch is retried one by one."""
    from spacemind_cli.models.spacemind import SpaceMind

    real = SpaceMind.generate

    def generate(self, prefix, prompts, **kw):
        if any("POISON" in p for p in prompts):
            raise RuntimeError("decoder blew up")
        return real(self, prefix, prompts, **kw)

    monkeypatch.setattr(SpaceMind, "generate", generate)
    rows = [GOOD[0], question("p", "good", "POISON: how many chairs?"), GOOD[1]]
    res, out, q = run(tmp_path, tiny_ckpt, root, rows)
    assert_partial(res, out, q, answered=["good-1", "good-2"], failed={"p": ["question p", "RuntimeError: decoder blew up"]})
    assert {r["timing"]["batch"] for r in read_jsonl(out)} == {1}  # the survivors were answered alone


@pytest.mark.parametrize("flag", ["", "--overwrite"])
def test_output_that_is_the_question_file_is_refused(tmp_path, tiny_ckpt, root, flag):
    q = write_jsonl(tmp_path / "questions.jsonl", GOOD)
    before = q.read_bytes()
    res = cli(*answer_args(root, q, tiny_ckpt, q, *([flag] if flag else [])))
    assert res.exit_code == 2, res
    assert f"--output {q} is the question file itself" in " ".join(res.stderr.split())
    assert q.read_bytes() == before  # the input survives
    assert not q.with_name(q.name + ".parts").exists()


# ------------------------------------------------------------------------------ bad output paths

VSI_ROW = {"id": 0, "dataset": "arkitscenes", "scene_name": "41069025", "question_type": "object_counting",
           "question": "How many chairs?", "options": None, "ground_truth": "4", "prediction": "4"}


@pytest.mark.parametrize("case", ["eval-json-folder", "eval-plot-folder", "eval-json-under-file", "report-under-file",
                                  "answer-under-file"])
def test_an_output_path_that_cannot_be_a_file_is_bad_input_not_a_resource_error(tmp_path, tiny_ckpt, root, case):
    """Exit 5 is for a full, read-only or forbidden disk; an output that is a folder, or whose
    parent is a file, is the user's path to fix: exit 2, saying which."""
    answers = write_jsonl(tmp_path / "answers.jsonl", [VSI_ROW])
    folder, a_file = tmp_path / "a_folder", tmp_path / "a_file"
    folder.mkdir()
    a_file.write_text("mine\n")
    reason = "part of its path is a file, not a folder"
    if case == "eval-json-folder":
        args, target, reason = ["eval", answers, "--json", folder], folder, "it is a folder"
    elif case == "eval-plot-folder":
        args, target, reason = ["eval", answers, "--plot", folder], folder, "it is a folder"
    elif case == "eval-json-under-file":
        target = a_file / "x.json"
        args = ["eval", answers, "--json", target]
    elif case == "report-under-file":
        target = a_file / "rep"
        args = ["report", answers, "--output", target]
    else:
        target = a_file / "x.jsonl"
        args = answer_args(root, write_jsonl(tmp_path / "q.jsonl", GOOD), tiny_ckpt, target)
    res = cli(*args)
    assert res.exit_code == 2, res
    error = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and str(target) in error[0] and reason in error[0], res.stderr
    assert a_file.read_text() == "mine\n" and not any(folder.iterdir())


# ------------------------------------------------------------------------------ a cache that is not there


@pytest.mark.parametrize("what", ["missing", "empty-folder", "a-file", "under-a-file"])
@pytest.mark.parametrize("command", ["ls", "info", "verify", "prune"])
def test_every_cache_command_gives_exit_4_for_a_path_that_holds_no_cache(tmp_path, command, what):
    """Missing, empty or a file: each is no cache to list, verify or prune, the same error (exit 4)."""
    cache = {"missing": tmp_path / "nope", "empty-folder": tmp_path / "empty", "a-file": tmp_path / "some.jsonl",
             "under-a-file": tmp_path / "some.jsonl" / "cache"}[what]
    (tmp_path / "empty").mkdir()
    (tmp_path / "some.jsonl").write_text('{"id": 1}\n')
    res = cli("cache", command, cache, *(["--bad"] if command == "prune" else []))
    assert res.exit_code == 4, res
    assert res.stderr.startswith(f"error: no feature cache at {cache} ("), res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert (tmp_path / "some.jsonl").read_text() == '{"id": 1}\n'


@pytest.mark.parametrize("command", ["extract", "answer"])
def test_a_cache_option_naming_a_file_is_refused_in_one_line(tmp_path, tiny_ckpt, root, command):
    cache = tmp_path / "some.jsonl"
    cache.write_text('{"id": 1}\n')
    if command == "extract":
        args = ["extract", root, "--checkpoint", tiny_ckpt, "--cache", cache, "--executor", "local"]
    else:
        args = answer_args(root, write_jsonl(tmp_path / "q.jsonl", GOOD), tiny_ckpt, tmp_path / "a.jsonl", "--cache", cache)
    res = cli(*args)
    assert res.exit_code == 4, res
    error = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert error == [f"error: no feature cache at {cache} (it is a file, not a folder)"], res.stderr
    assert cache.read_text() == '{"id": 1}\n'
