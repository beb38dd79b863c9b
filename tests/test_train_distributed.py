"""Data-parallel training over local gloo processes (tests/gloo_support.py): one step's gradient
scale against one worker, on uneven token counts, where a wrong scale shows (Adam and clipping
cancel a uniform scale in the final weights)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from gloo_support import run_workers

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


def _one_worker_run(data, ckpt, out: Path, monkeypatch, **config):
    """Train in this process through the library; returns the spec the workers get (for the
    gloo runs) after the one-worker run it made."""
    import pipelines.local_train as local_train
    from pipelines import train
    from spacemind_cli.training.config import TrainConfig

    specs = []
    real = local_train.fit

    def capture(spec, progress=None):
        specs.append(spec)
        return real(spec, progress)

    monkeypatch.setattr(local_train, "fit", capture)
    cfg = TrainConfig(**{"max_steps": 1, "lr": 1e-3, "batch_size": 8, "lora_rank": 4, "lora_alpha": 8,
                         **config})
    train(data["root"], questions=data["train"], output=out, checkpoint=ckpt, executor="local", config=cfg,
          cache=out.parent / "cache", num_frames=4, cpu_threads=1, **data.get("kw", {}))
    return specs[0]


def test_two_workers_on_uneven_tokens_log_one_workers_gradient_norm_and_a_wrong_scale_shows(uneven, tiny_ckpt,
                                                                                            tmp_path, monkeypatch):
    """The logged grad_norm is the norm before clipping of the step's gradient (every worker's,
    after DDP's average): 2 workers, one pack each (one of one-word answers, one of long sentences), log the 1-worker norm;
    the same comparison with each worker dividing by the targets alone (1/step_targets, no undoing
    of DDP's average) differs by the factor 2 it loses, so the comparison sees a wrong scale."""
    spec = _one_worker_run(uneven, tiny_ckpt, tmp_path / "one", monkeypatch)
    (one,) = rows(tmp_path / "one" / "training" / "log.jsonl")
    run_workers(spec, tmp_path / "two")
    (two,) = rows(tmp_path / "two" / "training" / "log.jsonl")
    run_workers(spec, tmp_path / "broken", patch="unscaled")
    (broken,) = rows(tmp_path / "broken" / "training" / "log.jsonl")

    assert one["questions"] == two["questions"] == 8 and one["targets"] == two["targets"]
    assert one["grad_norm"] > 0
    assert two["grad_norm"] == pytest.approx(one["grad_norm"], rel=1e-5)
    assert two["loss"] == pytest.approx(one["loss"], rel=1e-6)
    assert broken["grad_norm"] != pytest.approx(one["grad_norm"], rel=1e-2)  # the test sees the difference
    assert broken["grad_norm"] == pytest.approx(one["grad_norm"] / 2, rel=1e-5)
