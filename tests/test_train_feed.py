"""The training feed: each step's features read once per scene, ahead on a thread while the step
before computes, the same batches as reading in the loop, reader errors raised in the loop, and
no reader thread left behind."""

from __future__ import annotations

import threading
from collections import Counter

import pytest

from spacemind_cli.errors import CacheError
from spacemind_cli.training.feed import StepFeed, worker_passes
from spacemind_cli.training.schedule import StepPlan

THREAD = "spacemind-train-read-ahead"


def few_scenes_plan() -> StepPlan:
    """3 scenes, packs of <= 2, steps of 8: steps must hold several packs of one scene."""
    by_scene = {"a": range(0, 10), "b": range(10, 17), "c": range(17, 20)}
    return StepPlan(by_scene, seed=0, questions_per_pack=2, batch_size=8, epochs=2)


def many_scenes_plan() -> StepPlan:
    by_scene = {f"s{i:02d}": range(i * 18, (i + 1) * 18) for i in range(30)}
    return StepPlan(by_scene, seed=1, questions_per_pack=4, batch_size=64, epochs=1)


class Reader:
    def __init__(self):
        self.calls: list[str] = []
        self.lock = threading.Lock()

    def __call__(self, scene: str):
        with self.lock:
            self.calls.append(scene)
        return ("features of", scene)


def readers_alive() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == THREAD]


def batches(plan, rank, world, ahead):
    out = []
    with StepFeed(plan, range(plan.total_steps), rank, world, Reader(), ahead=ahead) as feed:
        for data in feed:
            out.append((data.index, data.packs, data.passes, dict(data.features)))
    return out


@pytest.mark.parametrize("world", [1, 3])
@pytest.mark.parametrize("make", [few_scenes_plan, many_scenes_plan])
def test_each_scene_is_read_once_per_step(world, make):
    plan = make()
    for rank in range(world):
        read = Reader()
        with StepFeed(plan, range(plan.total_steps), rank, world, read, ahead=0) as feed:
            for data in feed:
                needed = {p.pack.scene for p in data.passes}
                assert sorted(read.calls) == sorted(needed)  # once each, nothing more
                assert data.features == {s: ("features of", s) for s in needed}
                read.calls.clear()


def test_the_few_scenes_plan_does_repeat_scenes_in_a_step():
    """The read-once test above must see steps with a scene twice (and fillers) to mean anything."""
    plan = few_scenes_plan()
    assert any(max(Counter(pk.scene for pk in plan.step(i)).values()) > 1 for i in range(plan.total_steps))
    assert any(p.filler for i in range(plan.total_steps) for p in worker_passes(plan.step(i), 2, 3))


def test_fillers_read_nothing_more():
    plan = many_scenes_plan()
    for i in range(plan.total_steps):
        for rank in range(24):  # more workers than packs: some have only a filler
            passes = worker_passes(plan.step(i), rank, 24)
            real = [p for p in passes if not p.filler]
            for p in passes:
                if p.filler:
                    assert len(p.pack.examples) == 1
                    if real:
                        assert p.pack.scene == real[0].pack.scene  # a scene this worker reads anyway


@pytest.mark.parametrize("world,rank", [(1, 0), (3, 2)])
@pytest.mark.parametrize("make", [few_scenes_plan, many_scenes_plan])
def test_read_ahead_gives_the_same_batches_in_the_same_order(world, rank, make):
    plan = make()
    sync = batches(plan, rank, world, ahead=0)
    assert [b[0] for b in sync] == list(range(plan.total_steps))
    assert batches(plan, rank, world, ahead=1) == sync
    assert batches(plan, rank, world, ahead=3) == sync
    assert not readers_alive()


def test_the_next_step_is_read_while_this_one_computes_and_no_further():
    plan = many_scenes_plan()
    steps = [{p.pack.scene for p in worker_passes(plan.step(i), 0, 1)} for i in range(2)]
    read = Reader()
    both = threading.Event()

    def watch(scene):
        out = read(scene)
        if len(read.calls) >= len(steps[0]) + len(steps[1]):
            both.set()
        return out

    with StepFeed(plan, range(plan.total_steps), 0, 1, watch, ahead=1) as feed:
        it = iter(feed)
        assert next(it).index == 0
        # the loop holds step 0 (computing): step 1's features are read meanwhile, unasked
        assert both.wait(timeout=60)
        threading.Event().wait(0.2)  # time for a wrongly eager reader to go on to step 2
        assert len(read.calls) == len(steps[0]) + len(steps[1])  # 2 steps in memory at most
        assert next(it).index == 1
    assert not readers_alive()


def test_a_reader_error_is_raised_in_the_loop_with_its_message():
    plan = many_scenes_plan()
    before = sum(len({p.pack.scene for p in worker_passes(plan.step(i), 0, 1)}) for i in range(2))
    calls = []

    def read(scene):  # the first read of step 2 fails
        calls.append(scene)
        if len(calls) == before + 1:
            raise CacheError(f"features of scene {scene} are not in the cache /c; rerun to extract them")
        return scene

    seen = []
    with pytest.raises(CacheError, match="features of scene s.. are not in the cache /c; rerun to extract them"):
        with StepFeed(plan, range(plan.total_steps), 0, 1, read, ahead=1) as feed:
            for data in feed:
                seen.append(data.index)
    assert seen == [0, 1]  # the steps before the bad one ran
    assert not readers_alive()


def test_an_interrupt_in_the_loop_stops_the_reader():
    plan = many_scenes_plan()
    with pytest.raises(KeyboardInterrupt):
        with StepFeed(plan, range(plan.total_steps), 0, 1, Reader(), ahead=1) as feed:
            for data in feed:
                if data.index == 1:
                    raise KeyboardInterrupt
    assert not readers_alive()
    # and a loop that leaves early without an error (max steps reached, a break)
    with StepFeed(plan, range(plan.total_steps), 0, 1, Reader(), ahead=2) as feed:
        for _ in feed:
            break
    assert not readers_alive()


def _entry(g):
    import torch

    return {"vggt_patch": torch.randn(1, 2, 4, 8, generator=g), "vggt_camera": torch.randn(1, 2, 1, 8, generator=g),
            "internvit": torch.randn(2, 4, 16, generator=g), "pose_enc": torch.randn(2, 9, generator=g)}


def test_the_training_reader_checksums_an_entry_on_its_first_read_only(tmp_path, monkeypatch):
    """Training reads every scene each epoch: the first read verifies the tensors' checksums, the
    later ones the rest of the entry only; a damaged entry fails its first read."""
    import torch

    from spacemind_cli.cache import FeatureCache
    from spacemind_cli.cache import entry as entry_format
    from spacemind_cli.training.feed import cache_reader

    cache = FeatureCache(tmp_path / "cache")
    g = torch.Generator().manual_seed(0)
    keys = [f"{i:064x}" for i in (1, 2)]
    written = {k: _entry(g) for k in keys}
    for k in keys:
        cache.put(k, {"num_frames": 2}, written[k], fingerprint="fp")
    summed = []
    real = entry_format.tcodec.checksums
    monkeypatch.setattr(entry_format.tcodec, "checksums", lambda bufs: summed.append(len(bufs)) or real(bufs))
    read = cache_reader(cache, "fp")
    for _ in range(3):  # three epochs
        for k in keys:
            got = read(k)
            assert all(torch.equal(getattr(got, n), t) for n, t in written[k].items())
    assert summed == [4, 4]  # one checksum pass per entry (4 tensors each), not per read

    # a flipped byte in a tensor: caught by the first read of a fresh reader (a new run)
    path = cache.path_for(keys[0])
    raw = bytearray(path.read_bytes())
    probe = written[keys[0]]["internvit"].numpy().tobytes()[40:64]
    at = raw.find(probe)
    assert at > 0
    raw[at + 3] ^= 0x40
    path.write_bytes(bytes(raw))
    with pytest.raises(CacheError, match="checksum mismatch"):
        cache_reader(cache, "fp")(keys[0])
    with pytest.raises(CacheError, match=f"features of scene {'0' * 63}9 are not in the cache"):
        cache_reader(cache, "fp")("0" * 63 + "9")
