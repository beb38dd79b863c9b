"""The `spacemind` command line: every command exists, teaches, and maps outcomes to exit codes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from spacemind_cli import __version__
from spacemind_cli.cli.main import app

runner = CliRunner()


def cli(*args, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "spacemind_cli", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


def test_help_lists_every_command_and_exit_codes():
    result = runner.invoke(app, ["--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for command in ("extract", "answer", "eval", "doctor", "checkpoint", "cache"):
        assert command in result.output
    assert "Exit codes" in result.output
    for group, subs in (("checkpoint", ("tiny", "inspect", "assemble")), ("cache", ("ls", "info", "verify", "prune"))):
        sub = runner.invoke(app, [group, "--help"], env={"COLUMNS": "200"})
        assert sub.exit_code == 0
        for name in subs:
            assert name in sub.output
    answer_help = runner.invoke(app, ["answer", "--help"], env={"COLUMNS": "200"})
    for option in ("--questions", "--checkpoint", "--output", "--cache", "--executor", "--ray-address", "--batch-size",
                   "--max-new-tokens", "--num-frames", "--template", "--overwrite"):
        assert option in answer_help.output


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and __version__ in result.output


def test_doctor_reports_versions_devices_attention_and_ray():
    proc = cli("doctor")
    assert proc.returncode == 0, proc.stderr
    for needle in ("torch", "transformers", "CUDA devices", "attention", "sdpa", "ray"):
        assert needle in proc.stdout


def test_checkpoint_tiny_refuses_to_overwrite_without_force(tmp_path):
    out = tmp_path / "ck"
    assert cli("checkpoint", "tiny", out, "--seed", "3").returncode == 0
    assert (out / "config.json").exists() and (out / "fusion.safetensors").exists()
    again = cli("checkpoint", "tiny", out)
    assert again.returncode == 2 and "--force" in again.stderr
    assert cli("checkpoint", "tiny", out, "--force").returncode == 0


def _one_error_line(result) -> str:
    """The single `error:` line of an in-process run; no traceback."""
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


def test_stray_os_errors_are_one_line_with_the_file_and_a_documented_code(tmp_path, monkeypatch):
    """A safety net below every command: an OSError that no layer turned into a spacemind error
    still prints one line naming its file, exit 5 for a full, read-only or forbidden disk, else 2."""
    import errno

    from spacemind_cli.models import tiny

    a_file = tmp_path / "a_file"
    a_file.write_text("mine\n")
    under = runner.invoke(app, ["checkpoint", "tiny", str(a_file / "ck")])  # mkdir under a file: ENOTDIR
    assert under.exit_code == 2, under.output
    assert str(a_file / "ck") in _one_error_line(under) and "part of its path is a file" in under.stderr

    def full_disk(out, **kw):
        raise OSError(errno.ENOSPC, "No space left on device", str(out / "config.json"))

    monkeypatch.setattr(tiny, "write_tiny_checkpoint", full_disk)
    full = runner.invoke(app, ["checkpoint", "tiny", str(tmp_path / "ck")])
    assert full.exit_code == 5, full.output
    assert _one_error_line(full) == f"error: {tmp_path / 'ck' / 'config.json'}: no space left on device"


def test_checkpoint_tiny_refuses_a_file_in_place_of_its_folder(tmp_path):
    a_file = tmp_path / "some_existing_file"
    a_file.write_text("mine\n")
    for extra in ([], ["--force"]):  # --force replaces a checkpoint, never a user's file
        result = runner.invoke(app, ["checkpoint", "tiny", str(a_file), *extra])
        assert result.exit_code == 2, result.output
        assert _one_error_line(result) == f"error: {a_file} exists and is not a folder"
    assert a_file.read_text() == "mine\n"


def test_missing_scenes_root_is_a_one_line_usage_error(tiny_ckpt, examples, tmp_path):
    proc = cli("answer", tmp_path / "nope", "--questions", examples / "questions.jsonl", "--checkpoint", tiny_ckpt,
               "--output", tmp_path / "a.jsonl", "--executor", "local")
    assert proc.returncode == 2
    assert "nope" in proc.stderr and "does not exist" in proc.stderr
    assert len([line for line in proc.stderr.splitlines() if "error" in line]) == 1


def test_extract_only_the_scenes_a_question_file_uses_then_cache_commands(tiny_ckpt, examples, tmp_path):
    questions = [json.loads(line) for line in (examples / "questions.jsonl").read_text().splitlines()]
    subset = tmp_path / "q.jsonl"
    subset.write_text("".join(json.dumps(q) + "\n" for q in questions if q["scene_name"] in ("room_0001", "room_0003")))
    cache = tmp_path / "cache"
    proc = cli("extract", examples / "videos", "--checkpoint", tiny_ckpt, "--cache", cache, "--questions", subset,
               "--executor", "local")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((cache / "extract.summary.json").read_text())
    assert summary["scenes"] == 2 and summary["encoded"] == 2

    again = cli("extract", examples / "videos", "--checkpoint", tiny_ckpt, "--cache", cache, "--executor", "local")
    summary = json.loads((cache / "extract.summary.json").read_text())
    assert again.returncode == 0 and summary["encoded"] == 2 and summary["cached"] == 2

    ls = cli("cache", "ls", cache)
    assert ls.returncode == 0 and "4 entries" in ls.stdout
    for scene in ("room_0000", "room_0001", "room_0002", "room_0003"):
        assert scene in ls.stdout
    info = cli("cache", "info", cache)
    assert info.returncode == 0 and "entries" in info.stdout

    assert cli("cache", "verify", cache).returncode == 0
    victim = sorted(cache.glob("entries/*/*.parquet"))[1]
    data = bytearray(victim.read_bytes())
    data[len(data) // 3] ^= 0x01
    victim.write_bytes(bytes(data))
    bad = cli("cache", "verify", cache)
    assert bad.returncode == 4
    assert victim.name in bad.stderr

    dry = cli("cache", "prune", cache, "--bad", "--dry-run")
    assert dry.returncode == 0 and "would remove 1 entries" in dry.stdout and victim.exists()
    pruned = cli("cache", "prune", cache, "--bad")
    assert pruned.returncode == 0 and not victim.exists()
    assert cli("cache", "verify", cache).returncode == 0
    assert cli("cache", "prune", cache).returncode == 2  # no criterion given


def test_cache_prune_keeps_only_what_a_checkpoint_can_use(tiny_ckpt, examples, tmp_path):
    cache = tmp_path / "cache"
    other = tmp_path / "other"
    assert cli("checkpoint", "tiny", other, "--seed", "7").returncode == 0
    assert cli("extract", examples / "videos", "--checkpoint", tiny_ckpt, "--cache", cache, "--executor", "local").returncode == 0
    assert cli("extract", examples / "videos", "--checkpoint", other, "--cache", cache, "--executor", "local").returncode == 0
    assert len(list(cache.glob("entries/*/*.parquet"))) == 8  # other weights: other keys, never shared
    proc = cli("cache", "prune", cache, "--keep-checkpoint", tiny_ckpt)
    assert proc.returncode == 0 and "removed 4 entries" in proc.stdout
    assert len(list(cache.glob("entries/*/*.parquet"))) == 4


def test_eval_writes_json_markdown_and_a_png(examples, tmp_path):
    from PIL import Image

    rows = [json.loads(line) for line in (examples / "questions.jsonl").read_text().splitlines()]
    for r in rows:  # a perfect run
        r["prediction"] = r["ground_truth"]
    answers = tmp_path / "answers.jsonl"
    answers.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out_json, out_md, out_png = tmp_path / "s.json", tmp_path / "s.md", tmp_path / "s.png"
    proc = cli("eval", answers, "--json", out_json, "--markdown", out_md, "--plot", out_png)
    assert proc.returncode == 0, proc.stderr
    scores = json.loads(out_json.read_text())
    assert scores["scores"]["overall"] == pytest.approx(100.0)
    assert scores["scores"]["object_counting_MRA:.5:.95:.05"] == pytest.approx(100.0)
    assert "Obj. Count" in out_md.read_text() or "Count" in out_md.read_text()
    with Image.open(out_png) as img:
        assert img.size[0] > 600 and img.size[1] > 300


def test_eval_of_a_broken_file_names_the_line(tmp_path):
    bad = tmp_path / "answers.jsonl"
    bad.write_text('{"question_type": "object_counting", "ground_truth": "2", "prediction": "2"}\n{not json\n')
    proc = cli("eval", bad)
    assert proc.returncode == 2
    assert "answers.jsonl:2" in proc.stderr


def test_log_records_go_to_the_stderr_of_the_moment(monkeypatch):
    """Set up once, logging follows sys.stderr: a host (or a test runner) that swapped and closed
    an earlier stderr gets no 'Logging error' trace from a later warning."""
    import io
    import logging

    from spacemind_cli.cli.common import setup_logging

    first = io.StringIO()
    monkeypatch.setattr("sys.stderr", first)
    setup_logging()
    first.close()
    now = io.StringIO()
    monkeypatch.setattr("sys.stderr", now)
    logging.getLogger("spacemind_cli.test").warning("cache write failed for %s", "x.parquet")
    assert "cache write failed for x.parquet" in now.getvalue()


def test_piped_help_shows_whole_option_names_and_plain_argument_names():
    """#22.13: help piped to a file was cut at 80 columns ("--gradient-checkpoin…"), and usage
    lines wrote {SCENES}."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("TERMINAL_WIDTH", "COLUMNS")}
    for cmd, arg in ((["train"], "SCENES"), (["answer"], "SCENES"), (["extract"], "SCENES"), (["eval"], "ANSWERS"),
                     (["report"], "ANSWERS"), (["cache", "prune"], "CACHE"), (["checkpoint", "assemble"], "OUT_DIR")):
        out = subprocess.run([sys.executable, "-m", "spacemind_cli", *cmd, "--help"], capture_output=True, text=True,
                             env=env, timeout=120).stdout
        assert "…" not in out, (cmd, out)
        assert f"[OPTIONS] {arg}" in out and "{" + arg + "}" not in out, (cmd, out)
        if cmd == ["train"]:
            assert "--gradient-checkpointing" in out and "--no-gradient-checkpointing" in out
