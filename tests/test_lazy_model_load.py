"""The encode stage reads encoder weights only for a scene that needs encoding: an extract rerun
or a train resume over a warm cache loads no model. A model that cannot load still stops the
job with its own error, as an eager load would."""

from __future__ import annotations

import pytest

from pipelines import extract
from spacemind_cli.errors import CheckpointError
from spacemind_cli.models.spacemind import SpaceMind


@pytest.fixture
def loads(monkeypatch):
    real = SpaceMind.from_pretrained.__func__
    calls = []

    def counting(cls, *args, **kwargs):
        calls.append(kwargs.get("llm"))
        return real(cls, *args, **kwargs)

    monkeypatch.setattr(SpaceMind, "from_pretrained", classmethod(counting))
    return calls


def test_an_extract_rerun_over_a_warm_cache_loads_no_model(tiny_ckpt, examples, tmp_path, loads):
    cache = tmp_path / "cache"
    run = lambda: extract(examples / "videos", checkpoint=tiny_ckpt, cache=cache, executor="local", num_frames=2)  # noqa: E731
    first = run()
    assert first["encoded"] == 4 and loads == [False]
    again = run()
    assert again["cached"] == 4 and again["encoded"] == 0 and loads == [False], "a warm cache loaded the encoders"
    entries = sorted(cache.glob("entries/*/*.parquet"))
    entries[0].unlink()
    third = run()
    assert third["encoded"] == 1 and third["cached"] == 3 and loads == [False, False]


def test_a_model_that_cannot_load_lazily_stops_the_job_with_its_error(tiny_ckpt, examples, tmp_path, monkeypatch):
    tried = []

    def broken(cls, path, **kwargs):
        tried.append(path)
        raise CheckpointError(f"{path}: vggt/model.safetensors is truncated")

    monkeypatch.setattr(SpaceMind, "from_pretrained", classmethod(broken))
    with pytest.raises(CheckpointError, match="truncated"):
        extract(examples / "videos", checkpoint=tiny_ckpt, cache=tmp_path / "cache", executor="local", num_frames=2)
    assert len(tried) == 1, "each scene tried the load again instead of the job stopping"
    assert not list((tmp_path / "cache").glob("entries/*/*.parquet"))


def test_a_job_without_a_cache_loads_its_model_before_any_scene(tiny_ckpt, examples, tmp_path, loads):
    from pipelines.executor import open_job
    from spacemind_cli.jobs.settings import RunOptions
    from spacemind_cli.jobs.stages import EncodeStage

    with open_job(RunOptions(tiny_ckpt, executor="local")) as (_, settings):
        stage = EncodeStage(settings)
    assert loads == [False] and stage.actor.load_s is not None
