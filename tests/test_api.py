"""The library API at the package root (#21 §5): light to import, and the same functions the
commands run, end to end on the tiny checkpoint with the local executor."""

from __future__ import annotations

import json
import subprocess
import sys


def test_importing_the_package_is_light():
    def imported_after(code: str) -> str:
        probe = "; print(sorted(m for m in ('ray', 'torch', 'transformers', 'pyarrow', 'pipelines') if m in sys.modules))"
        return subprocess.run([sys.executable, "-c", "import sys, spacemind_cli" + code + probe],
                              capture_output=True, text=True, check=True).stdout.strip()

    assert imported_after("") == "[]"
    # the functions, not the work: Ray is imported when a job runs on it
    assert "ray" not in imported_after("; spacemind_cli.answer; spacemind_cli.train; spacemind_cli.evaluate")


def test_the_root_api_is_documented_and_what_the_cli_calls():
    import spacemind_cli
    from spacemind_cli import api
    from spacemind_cli.models.spacemind import SpaceMind

    for name in ("answer", "extract", "train", "evaluate"):
        fn = getattr(spacemind_cli, name)
        assert fn is getattr(api, name) and len(fn.__doc__) > 100
    assert spacemind_cli.SpaceMind is SpaceMind
    assert set(spacemind_cli.__all__) <= set(dir(spacemind_cli))


def test_the_root_api_extracts_answers_evaluates_and_trains_on_the_tiny_checkpoint(tiny_ckpt, examples, tmp_path):
    import spacemind_cli as sm

    fast = dict(checkpoint=tiny_ckpt, executor="local", num_frames=4, cpu_threads=1)
    cache = tmp_path / "cache"
    extracted = sm.extract(examples / "videos", cache=cache, **fast)
    assert extracted.encoded == extracted.scenes >= 2 and extracted.failed == 0

    out = tmp_path / "a.jsonl"
    answered = sm.answer(examples / "videos", questions=examples / "questions.jsonl", output=out, cache=cache,
                         max_new_tokens=4, **fast)
    assert answered.answered == answered.questions == answered.rows_written > 0
    assert answered.cache == {"hit": answered.items}  # the features extract wrote
    assert len(out.read_text().splitlines()) == answered.questions
    scores = sm.evaluate(out)
    assert scores.benchmark == "vsibench" and any(s.value is not None for s in scores.scores)

    rows = [json.loads(line) for line in (examples / "questions.jsonl").read_text().splitlines() if line.strip()]
    train_file = tmp_path / "train.jsonl"
    train_file.write_text("".join(json.dumps(r) + "\n" for r in rows[:24]))
    trained = sm.train(examples / "videos", questions=train_file, output=tmp_path / "new", cache=cache, max_steps=1,
                       lr=1e-3, global_batch=8, lora_rank=4, lora_alpha=8, **fast)
    assert trained.steps == 1 and trained.scenes_encoded == 0  # every scene from extract's cache
    model = sm.SpaceMind.from_pretrained(tmp_path / "new", device="cpu")
    assert model.config.lora
