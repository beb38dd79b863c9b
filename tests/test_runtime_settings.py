"""Small runtime rules: how many CPUs a CPU model actor reserves (and so its torch threads),
where Ray's current-cluster file is looked for, and what --quiet keeps."""

from __future__ import annotations

import logging

import pytest
from typer.testing import CliRunner

from pipelines.ray import CPU_ACTOR_CPUS, cpu_actor_share


@pytest.mark.parametrize(
    "total, largest, actors, share",
    [
        (2, 2, 1, 1.0),  # this 2-core box: one CPU for the actor, one for the load tasks
        (2, 2, 2, CPU_ACTOR_CPUS),  # two actors on two cores: the minimum share each
        (16, 16, 3, 5.0),  # (16 - 1) // 3
        (16, 8, 1, 7.0),  # two 8-CPU nodes: no node can give 15
        (64, 32, 4, 15.0),
    ],
)
def test_cpu_actor_share(total, largest, actors, share):
    assert cpu_actor_share(total, largest, actors) == share


def test_ray_status_looks_under_ray_tmpdir(tmp_path, monkeypatch):
    from spacemind_cli.runtime import ray_status

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))
    (tmp_path / "ray_current_cluster").write_text("10.1.2.3:6379\n")
    assert "10.1.2.3:6379" in ray_status()


def test_quiet_keeps_errors_only_and_says_so():
    from spacemind_cli.cli.common import setup_logging
    from spacemind_cli.cli.main import app

    setup_logging(quiet=True)
    try:
        lib = logging.getLogger("spacemind_cli.jobs")
        assert lib.isEnabledFor(logging.ERROR) and not lib.isEnabledFor(logging.WARNING)
    finally:
        setup_logging()
    assert logging.getLogger("spacemind_cli.jobs").isEnabledFor(logging.WARNING)
    text = " ".join(CliRunner().invoke(app, ["--help"], terminal_width=200).output.split())
    assert "Only errors on stderr" in text


# ------------------------------------------------------------------ one home per setting
def _captured(monkeypatch, name: str) -> dict:
    """Replace `pipelines.<name>` by a recorder: the CLI's call, not a run."""
    import pipelines

    seen: dict = {}

    def record(*args, **kwargs):
        seen.update(kwargs, args=args)
        raise SystemExit(0)

    monkeypatch.setattr(pipelines, name, record)
    return seen


def test_cli_options_left_out_are_filled_by_the_settings_defaults(monkeypatch, tmp_path):
    """A flag not given reaches the library as "not given"; the defaults come from one place."""
    from spacemind_cli.cli.main import app
    from spacemind_cli.defaults import DEFAULTS, Defaults

    seen = _captured(monkeypatch, "answer")
    CliRunner().invoke(app, ["answer", str(tmp_path), "-c", str(tmp_path), "--questions", "q.jsonl", "-o", "a.jsonl"])
    options = seen["args"][1]
    assert (options.batch_size, options.max_new_tokens, options.executor, options.dtype, options.vggt_weights) == (
        DEFAULTS.decode_batch, DEFAULTS.max_new_tokens, DEFAULTS.executor, DEFAULTS.dtype, DEFAULTS.vggt_weights)
    assert options.num_frames is None and options.sampling is None  # the checkpoint's, settled with it

    monkeypatch.setattr("spacemind_cli.jobs.settings.DEFAULTS", Defaults(decode_batch=3, max_new_tokens=5))
    CliRunner().invoke(app, ["answer", str(tmp_path), "-c", str(tmp_path), "--questions", "q.jsonl", "-o", "a.jsonl"])
    assert (seen["args"][1].batch_size, seen["args"][1].max_new_tokens) == (3, 5)
    CliRunner().invoke(app, ["answer", str(tmp_path), "-c", str(tmp_path), "--questions", "q.jsonl", "-o", "a.jsonl",
                             "--batch-size", "2"])
    assert seen["args"][1].batch_size == 2


def test_help_shows_the_defaults_the_settings_use():
    import re

    from spacemind_cli.cli.main import app
    from spacemind_cli.defaults import DEFAULTS
    from spacemind_cli.training.config import TrainConfig

    def default_of(command: str, flag: str) -> str:
        out = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "400"}).output
        flat = " ".join(out.replace("│", " ").split())  # an option's help may wrap over lines
        return re.search(rf"{flag}\b.*?\[default: \(?([^)\]]*?)\)?\]", flat).group(1)

    assert default_of("answer", "--batch-size") == str(DEFAULTS.decode_batch)
    assert default_of("answer", "--max-new-tokens") == str(DEFAULTS.max_new_tokens)
    assert default_of("answer", "--executor") == DEFAULTS.executor
    assert default_of("extract", "--scenes-per-call") == str(DEFAULTS.scenes_per_call)
    assert default_of("train", "--global-batch") == str(TrainConfig.batch_size)
    assert default_of("train", "--lr") == str(TrainConfig.lr)
    assert default_of("train", "--epochs") == str(TrainConfig.epochs)


def test_batch_size_has_one_meaning_per_command(monkeypatch, tmp_path):
    """answer: the decode batch; train: --global-batch (--batch-size kept as a hidden old name) and
    --eval-batch-size; extract: --scenes-per-call (likewise)."""
    from spacemind_cli.cli.main import app
    from spacemind_cli.defaults import DEFAULTS
    from spacemind_cli.training.config import TrainConfig

    base = [str(tmp_path), "-c", str(tmp_path)]
    seen = _captured(monkeypatch, "train")
    for flags in (["--global-batch", "16"], ["--batch-size", "16"]):
        CliRunner().invoke(app, ["train", *base, "--questions", "t.jsonl", "-o", str(tmp_path / "o"), *flags])
        assert seen["config"].batch_size == 16 and seen["config"].lr == TrainConfig.lr
        assert seen["args"][1].batch_size != 16  # not answer's decode batch
    CliRunner().invoke(app, ["train", *base, "--questions", "t.jsonl", "-o", str(tmp_path / "o"), "--eval-batch-size", "3"])
    assert seen["config"].eval_batch_size == 3 and seen["args"][1].batch_size != 3
    CliRunner().invoke(app, ["train", *base, "--questions", "t.jsonl", "-o", str(tmp_path / "o")])
    assert seen["config"].eval_batch_size == DEFAULTS.decode_batch
    both = CliRunner().invoke(app, ["train", *base, "--questions", "t.jsonl", "-o", "o", "--global-batch", "4",
                                    "--batch-size", "4"])
    assert both.exit_code == 2 and "--global-batch" in both.output
    assert "--batch-size" not in CliRunner().invoke(app, ["train", "--help"], env={"COLUMNS": "200"}).output

    seen = _captured(monkeypatch, "extract")
    for flags in (["--scenes-per-call", "3"], ["--batch-size", "3"]):
        CliRunner().invoke(app, ["extract", *base, "--cache", str(tmp_path / "c"), *flags])
        assert seen["args"][1].scenes_per_call == 3 and seen["args"][1].batch_size != 3


def test_run_options_refuse_a_bad_batch(tmp_path):
    from spacemind_cli.errors import InputError
    from spacemind_cli.jobs.settings import RunOptions

    with pytest.raises(InputError, match="--batch-size"):
        RunOptions(checkpoint=tmp_path, batch_size=0)
