"""The training step plan: a pure function of (seed, epoch, step), every question once per epoch,
steps of exactly the global batch, workers with equal numbers of packs."""

from __future__ import annotations

from collections import Counter

import pytest

from spacemind_cli.training.config import TrainConfig
from spacemind_cli.training.loop import lr_lambda
from spacemind_cli.training.schedule import StepPlan, worker_share

SCENES = {f"scene{s}": list(range(s * 100, s * 100 + n)) for s, n in enumerate([7, 18, 3, 11, 25])}  # 64 questions


def plan(**kw) -> StepPlan:
    return StepPlan(SCENES, **{"seed": 0, "pack_size": 8, "batch_size": 10, "epochs": 3, **kw})


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


@pytest.mark.parametrize("world", [1, 2, 3, 4, 8])
def test_worker_shares_cover_the_step_with_equal_pack_counts(world):
    packs = plan().step(2)
    shares = [worker_share(packs, r, world) for r in range(world)]
    assert len({len(s) for s in shares}) == 1
    got = sorted((pk.scene, i) for s in shares for pk in s if pk is not None for i in pk.examples)
    assert got == sorted((pk.scene, i) for pk in packs for i in pk.examples)  # every question once
    if world <= len(packs):
        key = lambda pk: (pk.scene, pk.examples)  # noqa: E731
        assert sorted((pk for s in shares for pk in s if pk is not None), key=key) == sorted(packs, key=key)  # kept whole
    else:  # fewer packs than workers: the biggest are halved so that every worker has work
        assert all(any(pk is not None for pk in s) for s in shares)


def test_warmup_then_cosine():
    f = lr_lambda(TrainConfig(warmup_ratio=0.1), 100)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(10) == pytest.approx(1.0) and f(55) == pytest.approx(0.5, abs=0.02) and f(100) == pytest.approx(0.0)
    assert lr_lambda(TrainConfig(warmup_ratio=0.0, schedule="constant"), 10)(7) == 1.0


def test_the_train_command_defaults_are_the_config_defaults():
    """The CLI spells its defaults out (importing the config would load torch for --help); they
    must stay the recipe's."""
    import inspect

    from spacemind_cli.cli.cmd_train import train

    cli = {name: p.default.default for name, p in inspect.signature(train).parameters.items()}
    cfg = TrainConfig()
    fields = ("epochs", "max_steps", "lr", "warmup_ratio", "batch_size", "pack_size", "lora_rank", "lora_alpha",
              "seed", "save_every", "eval_every", "gradient_checkpointing", "fsdp", "fusion")
    assert {f: cli[f] for f in fields} == {f: getattr(cfg, f) for f in fields}
    assert tuple(cli["train_parts"].split(",")) == cfg.train
    assert tuple(p for p in cli["cgmf_off"].split(",") if p) == cfg.cgmf_off


def test_each_cpu_train_worker_gets_its_share_of_the_cores():
    from pipelines.ray_train import cpu_worker_threads

    assert cpu_worker_threads(2, 16.0, 16.0) == 8  # two workers on one 16-core machine: 8 each, not 16
    assert cpu_worker_threads(1, 16.0, 16.0) == 16
    assert cpu_worker_threads(4, 2.0, 2.0) == 1  # more workers than cores: one thread each, never 0
    assert cpu_worker_threads(1, 16.0, 8.0) == 8  # two 8-core nodes: one worker runs on one of them
    assert cpu_worker_threads(3, 16.0, 16.0) == 5
