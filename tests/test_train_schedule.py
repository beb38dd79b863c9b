"""The training step plan: a pure function of (seed, epoch, step), every question once per epoch,
steps of exactly the global batch made of small packs of distinct scenes, packs whole per worker
and workers with equal numbers of passes."""

from __future__ import annotations

from collections import Counter

import pytest

from spacemind_cli.training.config import TrainConfig
from spacemind_cli.training.loop import lr_lambda
from spacemind_cli.training.schedule import StepPlan, split_sizes, worker_share

SCENES = {f"scene{s}": list(range(s * 100, s * 100 + n)) for s, n in enumerate([7, 18, 3, 11, 25])}  # 64 questions


def plan(**kw) -> StepPlan:
    return StepPlan(SCENES, **{"seed": 0, "questions_per_pack": 8, "batch_size": 10, "epochs": 3, **kw})


def paper_plan(seed: int = 0, **kw) -> StepPlan:
    """The defaults (packs of <= 4, steps of 64) on 100 scenes x 18 questions (VSI-Bench-like)."""
    cfg = TrainConfig()
    by_scene = {f"scene{s:03d}": range(s * 18, (s + 1) * 18) for s in range(100)}
    return StepPlan(by_scene, **{"seed": seed, "questions_per_pack": cfg.questions_per_pack,
                                 "batch_size": cfg.batch_size, "epochs": 2, **kw})


def test_a_step_at_the_defaults_spans_at_least_16_scenes():
    p = paper_plan()
    assert p.steps_per_epoch == 29  # 1800 / 64
    for i in range(p.total_steps):
        packs = p.step(i)
        questions = sum(len(pk.examples) for pk in packs)
        scenes = {pk.scene for pk in packs}
        if questions == 64:
            assert len(scenes) >= 16, (i, len(scenes))
        assert len(scenes) == len(packs)  # distinct scenes: the data allows it here
        assert all(len(pk.examples) <= 4 for pk in packs)
    for e in range(2):  # every question exactly once per epoch
        seen = Counter(i for s in range(29 * e, 29 * (e + 1)) for pk in p.step(s) for i in pk.examples)
        assert seen == Counter(range(1800))
    # what whole-scene packs gave: ~3 scenes per step
    old = paper_plan(questions_per_pack=32)
    assert max(len({pk.scene for pk in old.step(i)}) for i in range(old.steps_per_epoch)) <= 5


def test_packs_are_the_fewest_of_at_most_the_cap_and_drawn_at_random():
    assert split_sizes(18, 4) == [4, 4, 4, 3, 3] and split_sizes(4, 4) == [4] and split_sizes(5, 4) == [3, 2]
    assert split_sizes(1, 4) == [1] and split_sizes(7, 1) == [1] * 7
    p = paper_plan()
    firsts = [{frozenset(pk.examples) for i in range(p.steps_per_epoch * e, p.steps_per_epoch * (e + 1))
               for pk in p.step(i) if pk.scene == "scene007"} for e in (0, 1)]
    assert firsts[0] != firsts[1]  # a scene's questions are grouped differently each epoch
    # consecutive questions of a scene do not stay together (not cut in file order)
    together = sum(pk.examples == tuple(range(pk.examples[0], pk.examples[0] + len(pk.examples)))
                   for i in range(p.steps_per_epoch) for pk in p.step(i))
    assert together < 10


def test_same_seed_same_plan_other_seed_other_plan():
    a, b, c = paper_plan(seed=3), paper_plan(seed=3), paper_plan(seed=4)
    assert [a.step(i) for i in range(a.total_steps)] == [b.step(i) for i in reversed(range(b.total_steps))][::-1]
    assert a.step(0) != c.step(0)


def test_few_scenes_still_plan_every_question():
    """Two scenes, one huge: distinct scenes cannot be had; every question still comes once."""
    p = StepPlan({"a": range(1000), "b": range(1000, 1040)}, seed=0, questions_per_pack=4, batch_size=64, epochs=1)
    seen = Counter(i for s in range(p.total_steps) for pk in p.step(s) for i in pk.examples)
    assert seen == Counter(range(1040))
    assert all(len(pk.examples) <= 4 for s in range(p.total_steps) for pk in p.step(s))


def test_every_question_once_per_epoch_in_full_batches():
    p = plan()
    assert p.steps_per_epoch == 7 and p.total_steps == 21
    for epoch in range(3):
        steps = [p.step(epoch * 7 + i) for i in range(7)]
        sizes = [sum(len(pk.examples) for pk in s) for s in steps]
        assert sizes == [10] * 6 + [4]
        seen = Counter(i for s in steps for pk in s for i in pk.examples)
        assert seen == Counter(i for v in SCENES.values() for i in v)
        for s in steps:
            for pk in s:
                assert len(pk.examples) <= 8 and set(pk.examples) <= set(SCENES[pk.scene])


def test_the_plan_is_a_pure_function_of_seed_epoch_and_step():
    a, b = plan(), plan()
    assert [a.step(i) for i in range(21)] == [b.step(i) for i in reversed(range(21))][::-1]
    assert a.step(3) != plan(seed=1).step(3)
    assert a.step(0) != a.step(7)  # epochs are shuffled differently
    assert plan(max_steps=5).total_steps == 5
    with pytest.raises(IndexError):
        plan(max_steps=5).step(5)


@pytest.mark.parametrize("world", [1, 2, 3, 4, 8, 64])
@pytest.mark.parametrize("make", [lambda: plan().step(2), lambda: paper_plan().step(5)])
def test_worker_shares_keep_packs_whole_with_equal_pass_counts(world, make):
    packs = make()
    shares = [worker_share(packs, r, world) for r in range(world)]
    assert len({len(s) for s in shares}) == 1
    key = lambda pk: (pk.scene, pk.examples)  # noqa: E731
    # every pack on exactly one worker, whole (at 64 workers too: never one question per GPU)
    assert sorted((pk for s in shares for pk in s if pk is not None), key=key) == sorted(packs, key=key)
    loads = [sum(len(pk.examples) for pk in s if pk is not None) for s in shares]
    if world <= len(packs):
        assert max(loads) - min(loads) <= max(len(pk.examples) for pk in packs)  # balanced by questions


def test_warmup_then_cosine():
    f = lr_lambda(TrainConfig(warmup_ratio=0.1), 100)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(10) == pytest.approx(1.0) and f(55) == pytest.approx(0.5, abs=0.02) and f(100) == pytest.approx(0.0)
    assert lr_lambda(TrainConfig(warmup_ratio=0.0, schedule="constant"), 10)(7) == 1.0


def test_the_train_command_defaults_are_the_config_defaults():
    """The CLI's training options are "not given" (None) by default, so TrainConfig's own defaults
    apply (written once), and --help shows those values."""
    import inspect

    from spacemind_cli.cli.cmd_train import train

    options = {name: p.default for name, p in inspect.signature(train).parameters.items()}
    cfg = TrainConfig()
    names = {"epochs": "epochs", "max_steps": "max_steps", "lr": "lr", "warmup_ratio": "warmup_ratio",
             "global_batch": "batch_size", "questions_per_pack": "questions_per_pack", "lora_rank": "lora_rank",
             "lora_alpha": "lora_alpha", "seed": "seed", "save_every": "save_every", "eval_every": "eval_every",
             "gradient_checkpointing": "gradient_checkpointing", "fsdp": "fsdp", "fusion": "fusion"}
    for option, field in names.items():
        assert options[option].default is None, option
        shown = options[option].show_default
        if isinstance(shown, str):
            expected = "auto" if getattr(cfg, field) is None else str(getattr(cfg, field))
            assert shown == expected, (option, shown, getattr(cfg, field))
    assert options["train_parts"].show_default == ",".join(cfg.train)
    assert cfg.questions_per_pack == 4 and cfg.gradient_checkpointing is None  # issue 19's defaults


def test_each_cpu_train_worker_gets_its_share_of_the_cores():
    from pipelines.ray_train import cpu_worker_share
    from spacemind_cli.runtime import torch_threads

    def threads(*cluster):
        return torch_threads(None, cpu_worker_share(*cluster))

    assert threads(2, 16.0, 16.0) == 8  # two workers on one 16-core machine: 8 each, not 16
    assert threads(1, 16.0, 16.0) == 16
    assert threads(4, 2.0, 2.0) == 1  # more workers than cores: one thread each, never 0
    assert threads(1, 16.0, 8.0) == 8  # two 8-core nodes: one worker runs on one of them
    assert threads(3, 16.0, 16.0) == 5
    assert torch_threads(3, 16.0) == 3  # --threads wins over the share
