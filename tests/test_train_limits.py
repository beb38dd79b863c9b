"""`train` bounds an example's length by the language model's context, in tokens, before any
tensor is built (issue #22.1): an over-long example is left out with one line naming it in
errors.jsonl, the rest train, and the exit is 1."""

from __future__ import annotations

import json
import resource
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
FRAMES = 4
LIMIT_AS = 8 << 30  # the run's address space: an over-long example's activations would not fit


def _limited():
    resource.setrlimit(resource.RLIMIT_AS, (LIMIT_AS, LIMIT_AS))


def spacemind(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "spacemind_cli", *map(str, args)], capture_output=True, text=True,
                          timeout=600, cwd=REPO, preexec_fn=_limited)


def record(rid: str, question: str, answer: str) -> dict:
    return {"id": rid, "video": "synthetic/room_0000.mp4",
            "conversations": [{"from": "human", "value": f"<video>\n{question}"}, {"from": "gpt", "value": answer}]}


def words(n: int) -> str:
    return " ".join(["ab"] * n)  # as a target is read: no space at either end


def longest_fitting_answer(ckpt: Path, question: str) -> tuple[str, int, int]:
    """The longest answer of repeated words that still fits the context after a FRAMES-frame
    prefix, counted with the tokenization training itself uses (SpaceMind.segment), the model's
    context, and the tokens with one more word (just over it)."""
    from spacemind_cli.models.spacemind import SpaceMind
    from spacemind_cli.training.data import read_training_file

    sm = SpaceMind.from_pretrained(ckpt, llm=True, lazy_vggt=True)
    limit = sm.internvl.config.text_config.max_position_embeddings
    tmp = ckpt.parent / "probe.json"
    tmp.write_text(json.dumps([record("p", question, "x")]))
    prompt = read_training_file(tmp).examples[0].prompt
    prefix = len(sm.prefix_ids(FRAMES))

    def total(n: int) -> int:
        seg = sm.segment(prompt, words(n))
        return prefix + len(seg.prompt_ids) + len(seg.answer_ids) + 1

    lo, hi = 1, limit
    while lo < hi:  # largest n with total(n) <= limit
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if total(mid) <= limit else (lo, mid - 1)
    assert total(lo) <= limit < total(lo + 1)
    return words(lo), limit, total(lo + 1)


def test_the_budget_refuses_exactly_what_exceeds_the_context(tiny_ckpt):
    from spacemind_cli.models.context import ContextBudget

    question = "How many chair(s) are in this room?"
    fitting, limit, over = longest_fitting_answer(tiny_ckpt, question)
    budget = ContextBudget.from_checkpoint(tiny_ckpt)
    assert budget.limit == limit
    tmp = tiny_ckpt.parent / "probe.json"
    from spacemind_cli.training.data import read_training_file

    tmp.write_text(json.dumps([record("p", question, "x")]))
    prompt = read_training_file(tmp).examples[0].prompt
    assert budget.example_problem("ex", prompt, fitting, FRAMES) is None
    problem = budget.example_problem("ex", prompt, fitting + " ab", FRAMES)
    assert problem is not None and problem.startswith("ex: ") and f"context of {limit} tokens" in problem
    assert f"that is {over}," in problem


def test_over_long_examples_are_left_out_named_and_the_rest_train(tiny_ckpt, tmp_path):
    root = tmp_path / "scenes"
    (root / "synthetic").mkdir(parents=True)
    shutil.copy(EXAMPLES / "videos" / "synthetic" / "room_0000.mp4", root / "synthetic")
    question = "How many chair(s) are in this room?"
    fitting, limit, over = longest_fitting_answer(tiny_ckpt, question)
    data = [record("short", question, "2"), record("huge", "Describe the room.", "word " * 20_000),  # 100,000 characters
            record("just-over", question, fitting + " ab"), record("short2", "What colour is the sofa?", "red")]
    assert len(data[1]["conversations"][1]["value"]) == 100_000
    train = tmp_path / "train.json"
    train.write_text(json.dumps(data))
    out = tmp_path / "run"
    res = spacemind("train", root, "--questions", train, "--checkpoint", tiny_ckpt, "--output", out,
                    "--executor", "local", "--max-steps", "1", "--num-frames", FRAMES, "--global-batch", "2",
                    "--threads", "1")
    assert res.returncode == 1, res.stderr[-3000:]
    assert "Traceback" not in res.stderr
    errors = [json.loads(line) for line in (out / "training" / "errors.jsonl").read_text().splitlines()]
    by_id = {e["id"]: e for e in errors}
    assert set(by_id) == {"huge", "just-over"}
    for rid in ("huge", "just-over"):
        assert by_id[rid]["stage"] == "example"
        assert "\n" not in by_id[rid]["error"] and f"(example {rid})" in by_id[rid]["error"]
        assert f"over the model's context of {limit} tokens" in by_id[rid]["error"]
    assert f"that is {over}," in by_id["just-over"]["error"]
    summary = json.loads((out / "training" / "summary.json").read_text())
    assert summary["examples"] == 2 and summary["examples_left_out"] == 2 and summary["steps"] == 1
    assert (out / "fusion.safetensors").is_file()
    assert "2 training example(s)" in res.stderr
