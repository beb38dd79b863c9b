"""The answers on the bundled examples stay what they were: restructuring must not change them.

`tests/fixtures/golden/examples_answers.jsonl` holds the tiny checkpoint's (seed 0) answers to
`examples/questions.jsonl` over `examples/videos`, local executor, fp32, one torch thread, every
other setting the default. Regenerate it only for a change meant to alter answers:

    SPACEMIND_REGENERATE_GOLDEN=1 python -m pytest tests/test_golden_answers.py

Why the comparison is exact and still machine-independent: the test also checks the smallest gap
between the best and second-best next-token logit over every decoding step. While that gap is far
above float32 rounding differences between CPUs (~1e-5), no machine can pick another token.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

GOLDEN = Path(__file__).parent / "fixtures" / "golden" / "examples_answers.jsonl"
KEEP = ("id", "scene_key", "prediction", "answer", "frames_used", "frame_indices")


def _answers(examples, tiny_ckpt, out: Path) -> list[dict]:
    from pipelines import answer

    answer(examples / "videos", checkpoint=tiny_ckpt, output=out, questions=str(examples / "questions.jsonl"),
           executor="local", cpu_threads=1)
    return [{k: r[k] for k in KEEP} for r in map(json.loads, out.read_text().splitlines())]


def test_answers_on_the_bundled_examples_are_unchanged(examples, tiny_ckpt, tmp_path):
    rows = _answers(examples, tiny_ckpt, tmp_path / "a.jsonl")
    if os.environ.get("SPACEMIND_REGENERATE_GOLDEN"):
        GOLDEN.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    golden = [json.loads(line) for line in GOLDEN.read_text().splitlines()]
    assert len(rows) == len(golden) == 68
    for got, want in zip(rows, golden):
        assert got == want, f"question {want['id']}: {got['prediction']!r} != {want['prediction']!r}"


def test_the_golden_answers_are_far_from_a_tie(examples, tiny_ckpt):
    """Every greedy choice behind the golden answers wins by a margin no CPU's rounding can undo."""
    from spacemind_cli.models.spacemind import SpaceMind
    from spacemind_cli.prompts import build_prompt
    from spacemind_cli.scenes import Sampling, discover_scenes, load_clip

    torch.set_num_threads(1)
    sm = SpaceMind.from_pretrained(tiny_ckpt)
    questions = [json.loads(line) for line in (examples / "questions.jsonl").read_text().splitlines()]
    head = sm.internvl.lm_head
    margins = []

    def record(module, inputs, output):
        logits = output if output.dim() == 2 else output[:, -1]  # [B, vocab] at the decoded position
        top2 = logits.float().topk(2, dim=-1).values
        margins.append(float((top2[:, 0] - top2[:, 1]).min()))

    handle = head.register_forward_hook(record)
    try:
        for scene in discover_scenes(examples / "videos"):
            clip = load_clip(scene, Sampling(sm.config.num_frames, sm.config.sampling))
            from spacemind_cli.models.preprocess import prepare

            prompts = [build_prompt(q) for q in questions if q["scene_name"] == scene.scene_name]
            sm.answer(prepare(clip.frames, sm.config.preprocess), prompts, batch_size=1)
    finally:
        handle.remove()
    assert margins and min(margins) > 1e-3, f"smallest logit margin {min(margins):.2e}"
