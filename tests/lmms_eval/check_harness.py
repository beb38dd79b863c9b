"""The `spacemind` model inside the real lmms-eval, offline (run by .ci/lmms_eval.sh in an environment
with lmms-eval installed; the main suite neither collects nor needs it):

    pytest tests/lmms_eval/check_harness.py

A local vsibench task (`bench.lmms_eval.local_vsibench`): lmms-eval's own vsibench template
(prompts, vsibench_process_results, aggregation) over the bundled example videos and questions,
the dataset read from a local JSON file (no hub), the videos where lmms-eval's vsibench looks for
them ($HF_HOME/vsibench/...).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.lmms_eval import TASK, local_vsibench
from spacemind_cli.integrations.lmms_eval.requests import cut_at_stop

NUM_FRAMES = 8


def run_lmms_eval(setup: dict, ckpt: Path, out: Path, model_args: str, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "lmms_eval", "--model", "spacemind", "--model_args", model_args,
           "--tasks", TASK, "--include_path", str(setup["tasks"]), "--output_path", str(out), "--log_samples", *extra]
    return subprocess.run(cmd, env={**os.environ, **setup["env"]}, capture_output=True, text=True, timeout=900)


def sample_rows(out: Path) -> list[dict]:
    files = sorted(out.rglob(f"*samples_{TASK}*.jsonl"))
    assert len(files) == 1, f"expected one sample log under {out}, found {files}"
    return [json.loads(line) for line in files[0].read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def harness_run(tiny_ckpt, examples, tmp_path_factory):
    root = tmp_path_factory.mktemp("lmms")
    setup = local_vsibench(root, examples)
    out = root / "out"
    # batch_size in model_args beside lmms-eval's own --batch_size: ours wins (no "multiple values")
    proc = run_lmms_eval(setup, tiny_ckpt, out, f"checkpoint={tiny_ckpt},num_frames={NUM_FRAMES},batch_size=4",
                         "--batch_size", "1")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return setup, out, proc


@pytest.fixture(scope="module")
def our_answers(tiny_ckpt, examples, tmp_path_factory):
    from pipelines import answer

    out = tmp_path_factory.mktemp("ours") / "answers.jsonl"
    answer(examples / "videos", output=out, questions=examples / "questions.jsonl", checkpoint=tiny_ckpt,
           executor="local", num_frames=NUM_FRAMES, batch_size=5)
    return out


def test_lmms_eval_predictions_equal_spacemind_answer(harness_run, our_answers):
    setup, out, _ = harness_run
    rows = sample_rows(out)
    assert len(rows) == len(setup["questions"]) == 68
    theirs = {r["doc"]["id"] if "doc" in r else r["vsibench_overall"]["id"]: r for r in rows}
    ours = {r["id"]: r for r in map(json.loads, our_answers.read_text().splitlines())}
    assert set(theirs) == set(ours)
    from spacemind_cli.prompts import build_prompt

    same_prompt = 0
    for qid, row in theirs.items():
        mine = ours[qid]
        if row["input"] != build_prompt(mine):
            continue  # the prompts differ: nothing to compare
        same_prompt += 1
        got = row["vsibench_overall"]["prediction"]
        assert got == cut_at_stop(mine["prediction"], ["\n\n"]), (qid, got, mine["prediction"])
    assert same_prompt == 68  # lmms-eval's vsibench text is our VSI-Bench prompt, word for word
    assert len({r["vsibench_overall"]["prediction"] for r in rows}) > 1


def test_spacemind_eval_scores_both_the_same(harness_run, our_answers, tmp_path):
    from spacemind_cli.eval.evaluate import evaluate_file

    _, out, _ = harness_run
    log = sorted(out.rglob(f"*samples_{TASK}*.jsonl"))[0]
    theirs, ours = evaluate_file(log), evaluate_file(our_answers)
    assert theirs.benchmark == ours.benchmark == "vsibench"
    assert [s.to_dict() for s in theirs.scores] == [s.to_dict() for s in ours.scores]
    assert any(s.n == 68 and s.is_average for s in ours.scores)
    # and lmms-eval scored the run with its own rules (first number anywhere: may legitimately differ)
    results = json.loads(sorted(out.rglob("*results*.json"))[0].read_text())
    overall = results["results"][TASK]["vsibench_overall,none"]
    assert 0.0 <= overall <= 100.0


def test_user_batch_size_wins_over_lmms_evals(tiny_ckpt):
    from spacemind_cli.integrations.lmms_eval.model import SpaceMind
    from spacemind_cli.integrations.lmms_eval.runner import DEFAULT_BATCH_SIZE

    base = f"checkpoint={tiny_ckpt},num_frames=4,device=cpu"
    assert SpaceMind.create_from_arg_string(base + ",batch_size=3", {"batch_size": "6", "device": None}).batch_size == 3
    assert SpaceMind.create_from_arg_string(base, {"batch_size": "6"}).batch_size == 6
    assert SpaceMind.create_from_arg_string(base, {"batch_size": 1, "max_batch_size": None}).batch_size == DEFAULT_BATCH_SIZE
    from spacemind_cli.errors import InputError

    with pytest.raises(InputError, match="unknown spacemind model_args: frames"):
        SpaceMind.create_from_arg_string(base + ",frames=4", {})


def test_loglikelihood_and_multi_round_say_not_supported(tiny_ckpt):
    from spacemind_cli.integrations.lmms_eval.model import SpaceMind

    model = SpaceMind.create_from_arg_string(f"checkpoint={tiny_ckpt},num_frames=4", {})
    for method in (model.loglikelihood, model.generate_until_multi_round):
        with pytest.raises(NotImplementedError, match="not supported"):
            method([])


REGISTRY_CHECK = """
import warnings, lmms_eval.models as m
cls = m.get_model("spacemind")
print(cls.__module__, cls.__name__, cls.is_simple)
"""


@pytest.mark.parametrize("plugins", [False, True])
def test_registered_by_entry_point_and_by_lmms_eval_plugins(plugins, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "LMMS_EVAL_PLUGINS"}
    if plugins:
        env["LMMS_EVAL_PLUGINS"] = "spacemind_cli.integrations.lmms_eval"
    # our package imported first, then lmms-eval's registry: no circular import may drop the model
    code = "import spacemind_cli.integrations.lmms_eval\n" + REGISTRY_CHECK
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Failed to load model entry-point manifests" not in proc.stdout + proc.stderr
    assert "spacemind_cli.integrations.lmms_eval.model SpaceMind False" in proc.stdout


def test_the_speed_bench_runs_both_models_through_lmms_eval(tmp_path):
    out = tmp_path / "lmms_eval.json"
    proc = subprocess.run([sys.executable, "-m", "bench.lmms_eval", "--quick", "--num-frames", "4", "--out", str(out)],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r = json.loads(out.read_text())
    assert (r["questions"], r["videos"]) == (16, 4) and r["encodes"] == {"spacemind": 4, "per_question": 16}
    assert r["same_predictions"] is True
    assert r["speedup"] == round(r["seconds"]["per_question"] / r["seconds"]["spacemind"], 2)
    assert r["speedup_cpu"] == round(r["cpu_seconds"]["per_question"] / r["cpu_seconds"]["spacemind"], 2)
    assert "Speed-up" in out.with_suffix(".md").read_text()
