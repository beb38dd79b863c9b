"""Fixtures of the reliability suite (helpers live in reliability_support.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from reliability_support import answer_args, cli, frames_scene, mp4_scene, question, read_jsonl, write_jsonl

# ---------------------------------------------------------------------------- shared data


@pytest.fixture(scope="session")
def base_root(tmp_path_factory) -> Path:
    """Six small scenes: five 4-frame folders and one 6-frame mp4 (flat layout)."""
    root = tmp_path_factory.mktemp("base") / "scenes"
    for i in range(5):
        frames_scene(root / f"room{i}", n=4, seed=100 + i)
    mp4_scene(root / "clip.mp4", n=6, seed=7)
    return root


@pytest.fixture(scope="session")
def base_questions(base_root, tmp_path_factory) -> Path:
    """Four questions per scene of `base_root`, interleaved across scenes (file order != scene order)."""
    scenes = [f"room{i}" for i in range(5)] + ["clip"]
    texts = ["How many chair(s) are in this room?", "What is the size of this room (in square meters)?",
             "How many lamp(s) are in this room?", "What colour is the largest object?"]
    rows = [question(f"q{k}-{s}", s, t) for k, t in enumerate(texts) for s in scenes]
    return write_jsonl(tmp_path_factory.mktemp("baseq") / "questions.jsonl", rows)


@pytest.fixture(scope="session")
def baseline(base_root, base_questions, tiny_ckpt, tmp_path_factory) -> Path:
    """An uninterrupted run over `base_root`: the reference the other runs must equal."""
    out = tmp_path_factory.mktemp("baseline") / "answers.jsonl"
    res = cli(*answer_args(base_root, base_questions, tiny_ckpt, out))
    assert res.exit_code == 0, res
    rows = read_jsonl(out)
    assert len(rows) == 24 and len({r["prediction"] for r in rows}) > 1
    return out


@pytest.fixture(scope="session")
def base_cache(base_root, tiny_ckpt, tmp_path_factory) -> Path:
    """An uninterrupted `extract` of `base_root`: the reference cache (copy it before changing it)."""
    cache = tmp_path_factory.mktemp("basecache") / "cache"
    res = cli("extract", base_root, "--checkpoint", tiny_ckpt, "--cache", cache, "--executor", "local", "--num-frames", "4", "--threads", "1")
    assert res.exit_code == 0, res
    assert len(list(cache.glob("entries/*/*.parquet"))) == 6
    return cache


def pytest_collection_modifyitems(config, items):
    """The full-size big job runs only when asked for (SPACEMIND_BIGJOB=1)."""
    import os

    if os.environ.get("SPACEMIND_BIGJOB") == "1":
        return
    skip = pytest.mark.skip(reason="full-size big job: set SPACEMIND_BIGJOB=1 to run it")
    for item in items:
        if item.get_closest_marker("bigjob") is not None:
            item.add_marker(skip)
