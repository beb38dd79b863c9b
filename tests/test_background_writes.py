"""Cache writes run behind the model: the model goes on while an entry is written, and a result is
handed on only once its write has finished (so a failed write is still reported).

Each test holds the first cache write until the model has moved on (an event set by the model's
next step); with writes on the model's path the event never comes and the held write times out."""

from __future__ import annotations

import threading

from pipelines import answer, extract
from spacemind_cli.cache.store import FeatureCache
from spacemind_cli.models.spacemind import SpaceMind

HOLD_S = 60


def hold_first_write_until(monkeypatch, event: threading.Event):
    real_put = FeatureCache.put
    held = {"n": 0, "released": None}

    def put(self, *args, **kwargs):
        held["n"] += 1
        if held["n"] == 1:
            held["released"] = event.wait(HOLD_S)
        return real_put(self, *args, **kwargs)

    monkeypatch.setattr(FeatureCache, "put", put)
    return held


def test_extract_encodes_the_next_scene_while_the_last_one_is_written(tiny_ckpt, examples, tmp_path, monkeypatch):
    moved_on = threading.Event()
    real_encode = SpaceMind.encode
    calls = {"n": 0}

    def encode(self, clip):
        calls["n"] += 1
        if calls["n"] == 2:
            moved_on.set()
        return real_encode(self, clip)

    monkeypatch.setattr(SpaceMind, "encode", encode)
    held = hold_first_write_until(monkeypatch, moved_on)
    summary = extract(examples / "videos", checkpoint=tiny_ckpt, cache=tmp_path / "cache", executor="local", num_frames=2)
    assert held["released"] is True, "the model waited for the cache write"
    assert summary["encoded"] == 4 and summary["failed"] == 0
    assert len(list((tmp_path / "cache").glob("entries/*/*.parquet"))) == 4


def test_answering_decodes_while_its_scene_is_written_and_a_failed_write_is_reported(tiny_ckpt, examples, tmp_path,
                                                                                     monkeypatch):
    from spacemind_cli.errors import ResourceError

    decoding = threading.Event()
    real_generate = SpaceMind.generate

    def generate(self, *args, **kwargs):
        decoding.set()
        return real_generate(self, *args, **kwargs)

    monkeypatch.setattr(SpaceMind, "generate", generate)
    real_put = FeatureCache.put
    seen = {"n": 0}

    def put(self, *args, **kwargs):
        seen["n"] += 1
        if seen["n"] == 1:
            assert decoding.wait(HOLD_S), "the model waited for the cache write"
            raise ResourceError("no space left on device (simulated)")
        return real_put(self, *args, **kwargs)

    monkeypatch.setattr(FeatureCache, "put", put)
    summary = answer(examples / "videos", output=tmp_path / "a.jsonl", questions=str(examples / "questions.jsonl"),
                     checkpoint=tiny_ckpt, cache=tmp_path / "cache", executor="local", num_frames=2)
    assert summary["answered"] == 68
    assert summary["cache"] == {"write-failed": 1, "miss": 3}
