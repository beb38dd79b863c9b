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
