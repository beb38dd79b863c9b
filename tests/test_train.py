"""`spacemind train` end to end on the tiny checkpoint and the bundled synthetic rooms.

The training set: 5 scenes (the 4 example videos and room_0000's frame folder as a fifth scene),
6 VSI-style questions each, plus the room-size question, whose text is the same in every scene and
whose answer only the frames tell."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
CRASH_AT = REPO / "tests" / "reliability" / "crash_at.py"
FAST = ["--lr", "1e-3", "--global-batch", "8", "--num-frames", "4", "--threads", "1"]


def spacemind(*args, timeout=900, env=None, cwd=REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "spacemind_cli", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd, env=env)


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    base = tmp_path_factory.mktemp("train")
    root = base / "scenes"
    (root / "synthetic").mkdir(parents=True)
    for video in (EXAMPLES / "videos" / "synthetic").glob("*.mp4"):
        shutil.copy(video, root / "synthetic" / video.name)
    shutil.copytree(EXAMPLES / "frames" / "synthetic" / "room_0000", root / "synthetic" / "room_0004")
    examples = rows(EXAMPLES / "questions.jsonl")
    out = []
    for room in ["room_0000", "room_0001", "room_0002", "room_0003", "room_0004"]:
        source = "room_0000" if room == "room_0004" else room
        mine = [r for r in examples if r["scene_name"] == source]
        size = next(r for r in mine if r["question_type"] == "room_size_estimation")
        picked = [r for r in mine if r is not size][:6] + [size]
        out += [{**r, "scene_name": room} for r in picked]
    out = [{**r, "id": i} for i, r in enumerate(out)]
    train = base / "train.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in out))
    return {"root": root, "train": train, "rows": out, "base": base}


def exact_rate(answers: Path, dataset) -> tuple[float, float]:
    """(share of all answers equal to the training target, share of the same-text questions)."""
    from spacemind_cli.training.data import read_training_file

    target = {ex.id: ex.target for ex in read_training_file(dataset["train"]).examples}
    got = {str(r["id"]): r["prediction"] for r in rows(answers)}
    same = [r for r in dataset["rows"] if r["question_type"] == "room_size_estimation"]
    all_ok = sum(got.get(k) == v for k, v in target.items()) / len(target)
    same_ok = sum(got.get(str(r["id"])) == target[str(r["id"])] for r in same) / len(same)
    return all_ok, same_ok


def test_a_trained_tiny_model_reproduces_its_training_answers(dataset, tiny_ckpt, tmp_path):
    """The acceptance run: --lr 1e-3 --epochs 60 --global-batch 8 --num-frames 4 --executor local."""
    new = tmp_path / "trained"
    res = spacemind("train", dataset["root"], "--questions", dataset["train"], "--checkpoint", tiny_ckpt,
                    "--output", new, "--epochs", "60", "--executor", "local", *FAST)
    assert res.returncode == 0, res.stderr[-3000:]
    log = rows(new / "training" / "log.jsonl")
    assert log[-1]["step"] == log[-1]["total"] == 60 * 5  # 35 questions, batches of 8
    assert log[-1]["loss"] < log[0]["loss"] / 4
    assert (new / "training" / "loss.png").stat().st_size > 1000

    trained, untrained = tmp_path / "trained.jsonl", tmp_path / "untrained.jsonl"
    for ckpt, out in ((new, trained), (tiny_ckpt, untrained)):
        res = spacemind("answer", dataset["root"], "--questions", dataset["train"], "--checkpoint", ckpt,
                        "--output", out, "--executor", "local", "--num-frames", "4")
        assert res.returncode == 0, res.stderr[-3000:]
    all_ok, same_ok = exact_rate(trained, dataset)
    base_all, base_same = exact_rate(untrained, dataset)
    print(f"exact answers: trained {all_ok:.0%} (same-text {same_ok:.0%}), untrained {base_all:.0%} ({base_same:.0%})")
    assert all_ok >= 0.9 and same_ok >= 0.8
    assert base_all <= 0.3


def _train_args(dataset, ckpt, out, *extra):
    return ["train", dataset["root"], "--questions", dataset["train"], "--checkpoint", ckpt, "--output", out,
            "--executor", "local", "--epochs", "60", "--max-steps", "8", "--save-every", "2", *FAST, *extra]


def trained_tensors(ckpt: Path) -> dict:
    return {**{f"fusion.{k}": v for k, v in load_file(str(ckpt / "fusion.safetensors")).items()},
            **{f"lora.{k}": v for k, v in load_file(str(ckpt / "lora" / "adapter_model.safetensors")).items()}}


def test_killed_training_resumes_to_the_same_weights_as_an_uninterrupted_run(dataset, tiny_ckpt, tmp_path):
    import torch

    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    res = spacemind(*_train_args(dataset, tiny_ckpt, straight))
    assert res.returncode == 0, res.stderr[-3000:]

    marker = tmp_path / "paused"
    env = {**os.environ, "PAUSE_AT": "train-saved", "PAUSE_AFTER": "2", "PAUSE_MARKER": str(marker)}
    proc = subprocess.Popen([sys.executable, str(CRASH_AT), *map(str, _train_args(dataset, tiny_ckpt, resumed))],
                            env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 600
    while not marker.exists():
        assert proc.poll() is None, proc.stderr.read()[-3000:]
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert not (resumed / "config.json").exists()  # not a checkpoint until training has finished

    res = spacemind(*_train_args(dataset, tiny_ckpt, resumed))
    assert res.returncode == 0, res.stderr[-3000:]
    summary = json.loads((resumed / "training" / "summary.json").read_text())
    assert summary["resumed_from"] == 4 and summary["steps"] == 8
    a, b = trained_tensors(straight), trained_tensors(resumed)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert [r["step"] for r in rows(resumed / "training" / "log.jsonl")] == [1, 2, 3, 4, 5, 6, 7, 8]

    again = spacemind(*_train_args(dataset, tiny_ckpt, resumed))  # a finished run: nothing to do
    assert again.returncode == 0, again.stderr[-3000:]
    rerun = json.loads((resumed / "training" / "summary.json").read_text())
    assert rerun["resumed_from"] == 8 and rerun["last"]["resumed_finished_run"]
    assert rerun["last"]["loss"] == summary["last"]["loss"] and "last loss" in again.stdout  # its final figures kept


def test_a_rerun_with_other_settings_is_refused_and_overwrite_starts_over(dataset, tiny_ckpt, tmp_path):
    out = tmp_path / "run"
    assert spacemind(*_train_args(dataset, tiny_ckpt, out)[:-2], "--max-steps", "2").returncode == 0
    res = spacemind(*_train_args(dataset, tiny_ckpt, out)[:-2], "--max-steps", "2", "--lr", "5e-4")
    assert res.returncode == 2 and "other settings" in res.stderr and "--overwrite" in res.stderr
    assert "(lr 0.001 -> 0.0005)" in " ".join(res.stderr.split()), res.stderr  # which one, in the user's words
    res = spacemind(*_train_args(dataset, tiny_ckpt, out)[:-2], "--max-steps", "2", "--lr", "5e-4", "--overwrite")
    assert res.returncode == 0, res.stderr[-2000:]
    for name in ("internvl", "vggt"):  # weights shared with the base, its small files not
        for f in (out / name).iterdir():
            assert os.path.samefile(f, tiny_ckpt / name / f.name) == (f.suffix == ".safetensors"), f
    summary = json.loads((out / "training" / "summary.json").read_text())
    # starting over keeps the default feature cache (NEW_CKPT/training/features): nothing re-encoded
    assert summary["scenes_cached"] == summary["scenes"] == 5 and summary["scenes_encoded"] == 0
    # gradient checkpointing "auto": off on CPU, and the run's config says so and why
    run_config = json.loads((out / "training" / "config.json").read_text())
    assert run_config["train"]["gradient_checkpointing"] is False
    assert run_config["gradient_checkpointing"]["on"] is False and "CPU" in run_config["gradient_checkpointing"]["why"]
    assert "gradient checkpointing" in res.stdout and "CPU run" in " ".join(res.stdout.split())
    res = spacemind(*_train_args(dataset, tiny_ckpt, out)[:-2], "--max-steps", "2", "--gradient-checkpointing",
                    "--overwrite")
    assert res.returncode == 0, res.stderr[-2000:]
    run_config = json.loads((out / "training" / "config.json").read_text())
    assert run_config["train"]["gradient_checkpointing"] is True
    assert run_config["gradient_checkpointing"] == {"on": True, "why": "on: asked for"}
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    res = spacemind(*_train_args(dataset, tiny_ckpt, foreign))
    assert res.returncode == 2 and "notes.txt" in res.stderr
    assert (foreign / "notes.txt").read_text() == "mine"


def test_a_state_saved_for_other_examples_is_not_resumed(dataset, tiny_ckpt, tmp_path):
    """The same command, but a scene that failed to decode before has features now: the saved
    state belongs to other examples (another step plan), so the rerun is refused, not resumed."""
    root = tmp_path / "scenes"
    shutil.copytree(dataset["root"], root)
    for frame in (root / "synthetic" / "room_0004").iterdir():
        frame.write_bytes(b"not an image")
    args = ["train", root, "--questions", dataset["train"], "--checkpoint", tiny_ckpt, "--output", tmp_path / "run",
            "--executor", "local", "--max-steps", "2", *FAST]
    res = spacemind(*args)
    assert res.returncode == 1, res.stderr[-2000:]  # trained, one scene failed
    assert json.loads((tmp_path / "run" / "training" / "summary.json").read_text())["examples"] == 28
    training = tmp_path / "run" / "training"
    records = {name: (training / name).read_bytes() for name in ("examples.parquet", "config.json", "errors.jsonl",
                                                                 "summary.json")}
    shutil.rmtree(root / "synthetic" / "room_0004")
    shutil.copytree(dataset["root"] / "synthetic" / "room_0004", root / "synthetic" / "room_0004")
    res = spacemind(*args)
    assert res.returncode == 2 and "training examples differ" in res.stderr and "--overwrite" in res.stderr, res.stderr
    # refused before anything was rewritten: the records still describe the weights saved
    assert {name: (training / name).read_bytes() for name in records} == records
    res = spacemind(*args, "--overwrite")
    assert res.returncode == 0, res.stderr[-2000:]
    assert json.loads((tmp_path / "run" / "training" / "summary.json").read_text())["examples"] == 35


def test_bf16_training_evaluates_under_the_same_autocast(dataset, tiny_ckpt, tmp_path):
    """Frozen weights in bf16, the trained CGMF in fp32: training and its evaluation both run under
    autocast (on CPU as on GPU), or the bf16 features cannot meet the fp32 CGMF."""
    out = tmp_path / "bf16"
    res = spacemind("train", dataset["root"], "--questions", dataset["train"], "--checkpoint", tiny_ckpt,
                    "--output", out, "--executor", "local", "--max-steps", "2", "--dtype", "bf16",
                    "--eval-questions", dataset["train"], *FAST)
    assert res.returncode == 0, res.stderr[-3000:]
    last = rows(out / "training" / "log.jsonl")[-1]
    assert last["step"] == 2 and last["eval"]["questions"] == len(dataset["rows"])


def test_the_training_model_lists_each_lora_tensor_once(tiny_ckpt):
    """PEFT's wrapper is kept for its config, not as a submodule: otherwise every LoRA tensor is in
    the state dict twice (and FSDP gathers and saves each twice)."""
    import torch

    from spacemind_cli.models.spacemind import SpaceMind
    from spacemind_cli.training.config import TrainConfig
    from spacemind_cli.training.model import TrainableSpaceMind

    sm = SpaceMind.from_pretrained(tiny_ckpt, device="cpu", dtype=torch.float32, llm=True, lazy_vggt=True)
    model = TrainableSpaceMind(sm, TrainConfig(lora_rank=4, lora_alpha=8))
    keys = list(model.state_dict())
    assert model.peft is not None and any("lora_A" in k for k in keys)
    assert [k for k in keys if not k.startswith("sm.")] == []


def _api_train(dataset, ckpt, out, **kw):
    from pipelines import train
    from spacemind_cli.training.config import TrainConfig

    config = TrainConfig(**{"epochs": 60, "max_steps": 6, "save_every": 2, "lr": 1e-3, "batch_size": 8, **kw.pop("config", {})})
    return train(dataset["root"], questions=dataset["train"], output=out, checkpoint=ckpt, config=config,
                 cache=out.parent / f"{out.name}-cache", num_frames=4, cpu_threads=1, **kw)


def test_the_library_trains_without_a_cache_into_the_default_one(dataset, tiny_ckpt, tmp_path):
    """`pipelines.train()` given no cache uses NEW_CKPT/training/features, as the CLI does."""
    from pipelines import train
    from spacemind_cli.cache.store import FeatureCache
    from spacemind_cli.training.config import TrainConfig

    out = tmp_path / "run"
    summary = train(dataset["root"], questions=dataset["train"], output=out, checkpoint=tiny_ckpt, executor="local",
                    config=TrainConfig(max_steps=1, lr=1e-3, batch_size=8, lora_rank=4, lora_alpha=8),
                    num_frames=4, cpu_threads=1)
    assert summary["steps"] == 1 and summary["scenes_encoded"] == 5
    assert len(list(FeatureCache(out / "training" / "features", create=False).entries())) == 5


def test_the_eval_during_training_decodes_with_its_own_batch_size(dataset, tiny_ckpt, tmp_path, monkeypatch):
    """--eval-batch-size (TrainConfig.eval_batch_size) reaches the eval step; it used answer's
    default decode batch before, whatever the run asked."""
    from pipelines import train
    from spacemind_cli.training import evaluate as training_evaluate
    from spacemind_cli.training.config import TrainConfig

    real = training_evaluate.answer_questions
    seen: list[int] = []

    def recording(*args, batch_size, **kwargs):
        seen.append(batch_size)
        return real(*args, batch_size=batch_size, **kwargs)

    monkeypatch.setattr(training_evaluate, "answer_questions", recording)
    summary = train(dataset["root"], questions=dataset["train"], output=tmp_path / "run", checkpoint=tiny_ckpt,
                    executor="local", eval_questions=dataset["train"], num_frames=4, cpu_threads=1,
                    config=TrainConfig(max_steps=1, lr=1e-3, batch_size=8, lora_rank=4, lora_alpha=8, eval_batch_size=3))
    assert seen and set(seen) == {3}
    assert summary.last["eval"]["questions"] == len(dataset["rows"])


def test_training_imports_nothing_from_jobs():
    import ast

    import spacemind_cli.training as training

    for path in Path(training.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert not (node.module.startswith("jobs") or ".jobs" in f".{node.module}"), (path, node.module)


def worker_killer_at_step(step: int):
    """A progress callback that SIGKILLs one Ray Train worker when the log reaches `step`."""
    from process_support import our_processes

    killed: list[int] = []

    def kill_a_worker(event):
        if event.get("step") == step and not killed:
            for proc in our_processes("RayTrainWorker")[:1]:
                proc.kill()
                killed.append(proc.pid)

    return kill_a_worker, killed


@pytest.mark.ray
def test_two_ray_train_workers_learn_what_one_process_learns_and_survive_a_lost_worker(dataset, tiny_ckpt, tmp_path):
    """DDP over two gloo workers: the loss is scaled so that the step's gradient is the same sum
    over its questions as in one process; a worker killed mid-run is replaced and resumes from the
    last saved state, ending with the same weights."""
    import torch

    local = tmp_path / "local"
    _api_train(dataset, tiny_ckpt, local, executor="local")

    two = tmp_path / "two"
    summary = _api_train(dataset, tiny_ckpt, two, executor="ray", num_workers=2)
    assert summary["workers"] == 2 and summary["steps"] == 6
    a, b = trained_tensors(local), trained_tensors(two)
    for k in a:
        assert torch.allclose(a[k], b[k], rtol=1e-4, atol=1e-6), k

    kill_a_worker, killed = worker_killer_at_step(4)

    lost = tmp_path / "lost"
    summary = _api_train(dataset, tiny_ckpt, lost, executor="ray", num_workers=2, progress=kill_a_worker)
    assert killed, "no Ray Train worker process was found"
    assert summary["steps"] == 6
    c = trained_tensors(lost)
    for k in b:
        assert torch.equal(b[k], c[k]), k

    res = spacemind("answer", dataset["root"], "--questions", dataset["train"], "--checkpoint", two,
                    "--output", tmp_path / "a.jsonl", "--executor", "local")
    assert res.returncode == 0, res.stderr[-2000:]

    again = _api_train(dataset, tiny_ckpt, two, executor="ray", num_workers=2)  # finished: nothing to do
    assert again["resumed_from"] == 6 and again["steps"] == 6 and again["last"].get("resumed_finished_run")


@pytest.mark.ray
def test_ray_train_takes_paths_relative_to_where_it_was_started(dataset, tiny_ckpt, tmp_path):
    """Ray Train runs each worker in a folder of its own: every path the user gave relative to
    their working folder (scenes, questions, checkpoint, output, cache) must still be found."""
    here = tmp_path / "work"
    here.mkdir()
    rel = lambda p: os.path.relpath(p, here)  # noqa: E731
    res = spacemind("train", rel(dataset["root"]), "--questions", rel(dataset["train"]), "--checkpoint", rel(tiny_ckpt),
                    "--output", "run", "--cache", "features", "--executor", "ray", "--num-workers", "1",
                    "--max-steps", "2", *FAST, cwd=here)
    assert res.returncode == 0, res.stderr[-3000:]
    summary = json.loads((here / "run" / "training" / "summary.json").read_text())
    assert summary["steps"] == 2 and (here / "run" / "fusion.safetensors").is_file()
    assert len(list((here / "features").glob("entries/*/*.parquet"))) == 5


def test_llava_and_sqa3d_training_files_train_and_answer(dataset, tiny_ckpt, tmp_path):
    """The formats users have: LLaVA-style records (video path + conversations, multi-turn) and
    SQA3D's pair of train files, scenes by ScanNet id."""
    root = dataset["root"]
    llava = [{"id": f"v{i}", "video": f"synthetic/room_000{i % 4}.mp4",
              "conversations": [{"from": "human", "value": "<video>\nHow many chair(s) are in this room?"},
                                {"from": "gpt", "value": str(i % 3)},
                                {"from": "human", "value": "What colour is the largest object?"},
                                {"from": "gpt", "value": "red"}]} for i in range(4)]
    lfile = tmp_path / "llava.json"
    lfile.write_text(json.dumps(llava))
    questions = {"questions": [{"scene_id": f"room_000{i}", "situation": "I am facing the sofa.",
                                "alternative_situation": [], "question": "What is on my left?", "question_id": 100 + i}
                               for i in range(4)]}
    annotations = {"annotations": [{"question_id": 100 + i, "scene_id": f"room_000{i}", "answers": [{"answer": "lamp"}],
                                    "position": {}, "rotation": {}} for i in range(4)]}
    sqa = tmp_path / "v1_balanced_questions_train_scannetv2.json"
    sqa.write_text(json.dumps(questions))
    (tmp_path / "v1_balanced_sqa_annotations_train_scannetv2.json").write_text(json.dumps(annotations))
    sqa_root = tmp_path / "scannet_root"
    (sqa_root / "scannet").mkdir(parents=True)
    for i in range(4):
        shutil.copy(root / "synthetic" / f"room_000{i}.mp4", sqa_root / "scannet" / f"room_000{i}.mp4")
    for name, data, scenes_root in (("llava", lfile, root), ("sqa3d", sqa, sqa_root)):
        out = tmp_path / name
        res = spacemind("train", scenes_root, "--questions", data, "--checkpoint", tiny_ckpt, "--output", out,
                        "--executor", "local", "--max-steps", "2", *FAST)
        assert res.returncode == 0, res.stderr[-3000:]
        summary = json.loads((out / "training" / "summary.json").read_text())
        assert summary["examples"] == 8 if name == "llava" else 4
        assert summary["failed"] == 0 and summary["scenes"] == 4
        import pyarrow.parquet as pq

        table = pq.read_table(out / "training" / "examples.parquet").to_pylist()
        if name == "sqa3d":
            assert {r["target"] for r in table} == {"lamp"}
            assert all(r["prompt"].startswith("I am facing the sofa.\nWhat is on my left?") for r in table)
        else:
            assert sorted(r["target"] for r in table)[-4:] == ["red"] * 4


@pytest.mark.parametrize("extra, expect", [
    (["--cgmf-off", "camera_gate,importance"], {"fusion": "cgmf", "camera_gate": False, "importance": False}),
    (["--fusion", "none", "--train", "lora"], {"fusion": "none"}),
    (["--train", "cgmf,lora,projector"], {"fusion": "cgmf", "projector": True}),
])
def test_ablations_and_the_projector_train_and_load(dataset, tiny_ckpt, tmp_path, extra, expect):
    out = tmp_path / "ckpt"
    res = spacemind("train", dataset["root"], "--questions", dataset["train"], "--checkpoint", tiny_ckpt,
                    "--output", out, "--executor", "local", "--max-steps", "2", *FAST, *extra)
    assert res.returncode == 0, res.stderr[-3000:]
    config = json.loads((out / "config.json").read_text())
    assert config["fusion"] == expect["fusion"] and config["num_frames"] == 4
    for part in ("camera_gate", "importance"):
        if part in expect:
            assert config["cgmf"][part] is expect[part]
    assert (out / "fusion.safetensors").exists() == (expect["fusion"] == "cgmf")
    adapter = load_file(str(out / "lora" / "adapter_model.safetensors"))
    assert any("lora_A" in k for k in adapter)
    assert any("multi_modal_projector" in k for k in adapter) == bool(expect.get("projector"))
    res = spacemind("answer", dataset["root"], "--questions", dataset["train"], "--checkpoint", out,
                    "--output", tmp_path / "a.jsonl", "--executor", "local")
    assert res.returncode == 0, res.stderr[-3000:]


def test_eval_questions_are_scored_during_training(dataset, tiny_ckpt, tmp_path):
    """Eval questions that cannot be used (a torn line, a scene not there) are left out and named
    as eval questions, not as training data: every training example still trains."""
    out = tmp_path / "ckpt"
    eval_file = tmp_path / "eval.jsonl"
    missing = {**dataset["rows"][0], "id": 999, "scene_name": "room_9999"}
    eval_file.write_text(dataset["train"].read_text() + '{"id": 1000, "question": "How many\n' + json.dumps(missing) + "\n")
    res = spacemind("train", dataset["root"], "--questions", dataset["train"], "--checkpoint", tiny_ckpt,
                    "--output", out, "--executor", "local", "--max-steps", "4", "--eval-questions", eval_file,
                    "--eval-every", "2", *FAST)
    assert res.returncode == 1, res.stderr[-3000:]
    summary = json.loads((out / "training" / "summary.json").read_text())
    assert summary["examples"] == len(dataset["rows"]) and summary["examples_left_out"] == 0
    assert summary["eval_questions"] == len(dataset["rows"]) and summary["eval_questions_left_out"] == 2
    assert "left out 2 eval question(s)" in " ".join(res.stderr.split()) and "training example" not in res.stderr
    evals = [(r["step"], r["eval"]) for r in rows(out / "training" / "log.jsonl") if "eval" in r]
    assert [s for s, _ in evals] == [2, 4]
    for _, e in evals:
        assert e["benchmark"] == "vsibench" and 0 <= e["overall"] <= 100 and e["questions"] == len(dataset["rows"])


@pytest.mark.ray
def test_fsdp_shards_the_model_over_two_workers_learns_the_same_and_resumes(dataset, tiny_ckpt, tmp_path):
    """--fsdp: FSDP2 over the LLM's decoder layers and the rest; the trained tensors gathered for
    saving and export equal what replicated (DDP) training learns, and a worker lost mid-run
    resumes from the gathered state to the same weights."""
    import torch

    ddp, fsdp, lost = tmp_path / "ddp", tmp_path / "fsdp", tmp_path / "fsdp-lost"
    _api_train(dataset, tiny_ckpt, ddp, executor="ray", num_workers=2)
    _api_train(dataset, tiny_ckpt, fsdp, executor="ray", num_workers=2, config={"fsdp": True, "eval_every": 3},
               eval_questions=dataset["train"])
    assert [r["step"] for r in rows(fsdp / "training" / "log.jsonl") if "eval" in r] == [3, 6]  # all workers evaluate
    a, b = trained_tensors(ddp), trained_tensors(fsdp)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], rtol=1e-4, atol=1e-6), k

    kill_a_worker, killed = worker_killer_at_step(4)

    _api_train(dataset, tiny_ckpt, lost, executor="ray", num_workers=2, config={"fsdp": True}, progress=kill_a_worker)
    assert killed
    c = trained_tensors(lost)
    for k in b:
        assert torch.equal(b[k], c[k]), k
