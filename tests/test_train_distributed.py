"""Data-parallel training over local gloo processes (tests/gloo_support.py): one step's gradient
scale against one worker, on uneven token counts, where a wrong scale shows (Adam and clipping
cancel a uniform scale in the final weights); the eval shared out over the workers."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from gloo_support import recording, run_workers

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def uneven(tmp_path_factory):
    """Two scenes of 4 questions each: one answered in a word, one in long sentences, so a step
    of 8 (one pack per worker) gives the two workers very different target counts."""
    base = tmp_path_factory.mktemp("uneven")
    root = base / "scenes" / "synthetic"
    root.mkdir(parents=True)
    for room in ("room_0000", "room_0001"):
        shutil.copy(EXAMPLES / "videos" / "synthetic" / f"{room}.mp4", root / f"{room}.mp4")
    long = "the red sofa stands by the far wall, left of the lamp and two metres from the door"
    out = [{"id": f"a{i}", "dataset": "synthetic", "scene_name": "room_0000", "question": f"Is there a chair {i}?",
            "ground_truth": "yes"} for i in range(4)]
    out += [{"id": f"b{i}", "dataset": "synthetic", "scene_name": "room_0001", "question": f"Describe part {i}.",
             "ground_truth": f"{long}, part {i}"} for i in range(4)]
    train = base / "train.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in out))
    return {"root": base / "scenes", "train": train, "base": base}


@pytest.fixture(scope="module")
def runs(uneven, tiny_ckpt, tmp_path_factory):
    """One step with an eval of every question, in this process (1 worker, through the library),
    then on two gloo workers, then on two with the wrong gradient scale; each run's log line and
    the eval answers each worker gave ({id: text} per eval, in eval-rank<R>.jsonl)."""
    import pipelines.local_train as local_train
    from pipelines import train
    from spacemind_cli.training import evaluate
    from spacemind_cli.training.config import TrainConfig

    base = tmp_path_factory.mktemp("runs")
    specs = []
    real_fit = local_train.fit

    def capture(spec, progress=None):
        specs.append(spec)
        return real_fit(spec, progress)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(local_train, "fit", capture)
        mp.setattr(evaluate, "answer_rows", recording(evaluate.answer_rows, base / "one" / "eval-rank0.jsonl"))
        cfg = TrainConfig(max_steps=1, lr=1e-3, batch_size=8, lora_rank=4, lora_alpha=8)
        train(uneven["root"], questions=uneven["train"], eval_questions=uneven["train"], output=base / "one",
              checkpoint=tiny_ckpt, executor="local", config=cfg, cache=base / "cache", num_frames=4, cpu_threads=1)
    run_workers(specs[0], base / "two", patches=("record-eval",))
    run_workers(specs[0], base / "broken", patches=("unscaled",))
    out = {}
    for name in ("one", "two", "broken"):
        (line,) = rows(base / name / "training" / "log.jsonl")
        answers = [rows(base / name / f"eval-rank{r}.jsonl") for r in range(2) if (base / name / f"eval-rank{r}.jsonl").exists()]
        out[name] = {"log": line, "answers": answers}
    return out


def test_two_workers_on_uneven_tokens_log_one_workers_gradient_norm_and_a_wrong_scale_shows(runs):
    """The logged grad_norm is the norm before clipping of the step's gradient (every worker's,
    after DDP's average): 2 workers, one pack each (one of one-word answers, one of long
    sentences), log the 1-worker norm; the same comparison with each worker dividing by the targets
    alone (1/step_targets, no undoing of DDP's average) differs by the factor 2 it loses, so the
    comparison sees a wrong scale."""
    one, two, broken = (runs[k]["log"] for k in ("one", "two", "broken"))
    assert one["questions"] == two["questions"] == 8 and one["targets"] == two["targets"]
    assert one["grad_norm"] > 0
    assert two["grad_norm"] == pytest.approx(one["grad_norm"], rel=1e-5)
    assert two["loss"] == pytest.approx(one["loss"], rel=1e-6)
    assert broken["grad_norm"] != pytest.approx(one["grad_norm"], rel=1e-2)  # the test sees the difference
    assert broken["grad_norm"] == pytest.approx(one["grad_norm"] / 2, rel=1e-5)


def test_two_workers_evaluate_disjoint_shares_gathered_into_the_one_worker_result(runs, uneven):
    """Each worker answers its own share of the eval questions (whole scenes); the gathered
    answers cover every question once and score exactly as one worker's."""
    ids = {r["id"] for r in rows(uneven["train"])}
    ((one,),) = runs["one"]["answers"]
    (rank0,), (rank1,) = runs["two"]["answers"]
    assert set(one) == ids
    assert rank0 and rank1 and not set(rank0) & set(rank1)  # both worked, on disjoint shares
    assert {**rank0, **rank1} == one  # every question once, the same answers
    assert runs["two"]["log"]["eval"] == runs["one"]["log"]["eval"]
    assert runs["one"]["log"]["eval"]["answered"] == len(ids)
