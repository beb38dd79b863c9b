"""The progress bars (#22.11), driven through the callbacks the library calls, not a terminal:
the model load is its own step, scenes are rated from when the first one started, and train's
features bar advances per scene."""

from __future__ import annotations

import io

from rich.console import Console

from spacemind_cli.cli.progress import LOAD, JobProgress, bars


def _progress(now: list[float]) -> JobProgress:
    console = Console(file=io.StringIO(), force_terminal=False)
    return JobProgress("answering", "scenes", bars(console), clock=lambda: now[0])


def test_the_model_load_is_its_own_step_and_scenes_are_rated_from_the_first_start():
    now = [1000.0]
    cb = _progress(now)
    cb({"phase": "load"})
    assert cb.completed(LOAD) == (0, None)  # shown while the model loads, before any scene
    now[0] = 1300.0  # a 5-minute load, then the first scene, started at 1296 s, takes 4 s
    cb({"done": 1, "total": 4, "scene": "a", "started": 1296.0, "questions": 3})
    assert cb.completed(LOAD) == (1, 1)
    assert cb.completed("answering") == (1, 4)
    assert cb.field("answering", "rate") == "0.25 scenes/s"  # 1 scene in 4 s; not 1 in the last instant
    now[0] = 1304.0
    cb({"done": 2, "total": 4, "scene": "b", "started": 1296.0, "questions": 6})
    assert cb.field("answering", "rate") == "0.25 scenes/s"
    assert cb.field("answering", "extra") == "questions=6"


def test_train_shows_features_then_steps():
    now = [0.0]
    cb = _progress(now)
    cb({"phase": "load"})
    for done in (1, 2, 3):
        now[0] += 2.0
        cb({"phase": "features", "done": done, "total": 4, "scene": str(done), "started": 0.0})
        assert cb.completed("features") == (done, 4)
    cb({"step": 1, "total": 10, "loss": 2.5, "tokens_per_s": 100.0})
    assert cb.completed("training") == (1, 10) and "loss 2.5000" in cb.field("training", "extra")


ANSWER_SUMMARY_KEYS = [  # the summary file's keys, as before the summaries were dataclasses
    "output", "errors_file", "executor", "route", "questions", "question_problems", "answered", "resumed",
    "other_settings_kept", "failed", "rows_written", "scenes", "items", "cache", "elapsed_s", "work_s",
    "questions_per_s", "stage_s", "actors", "checkpoint_id", "run_key", "has_ground_truth",
]


def _recorder():
    import time

    events: list[tuple[float, dict]] = []
    return events, lambda event: events.append((time.time(), dict(event)))


def test_answer_reports_the_load_then_each_scene_with_when_the_first_started(tiny_ckpt, examples, tmp_path):
    import json

    import pipelines
    from spacemind_cli.summaries import AnswerSummary

    events, record = _recorder()
    out = tmp_path / "a.jsonl"
    summary = pipelines.answer(examples / "videos", questions=str(examples / "questions.jsonl"), output=out,
                                   checkpoint=tiny_ckpt, executor="local", num_frames=4, max_new_tokens=4,
                                   cpu_threads=1, progress=record)
    assert events[0][1] == {"phase": "load"}
    items = [e for _, e in events[1:]]
    assert [e["done"] for e in items] == list(range(1, summary.items + 1)) and summary.items >= 2
    assert all(e["total"] == summary.items for e in items)
    started = items[0]["started"]
    assert started is not None and all(e["started"] == started for e in items)
    assert events[0][0] <= started <= events[1][0]  # after the load began, before the first scene was reported
    assert isinstance(summary, AnswerSummary) and summary.answered == summary.questions
    on_disk = json.loads(out.with_name(out.name + ".summary.json").read_text())
    assert list(on_disk) == ANSWER_SUMMARY_KEYS and on_disk == summary.to_dict()
    assert summary["answered"] == summary.answered  # also read as the file's keys


def test_train_advances_the_features_bar_per_scene(tiny_ckpt, examples, tmp_path):
    """One report per scene as it is encoded, after the load step; then the steps."""
    import json

    import pipelines
    from spacemind_cli.training.config import TrainConfig

    rows = [json.loads(line) for line in (examples / "questions.jsonl").read_text().splitlines() if line.strip()]
    train_file = tmp_path / "t.jsonl"
    train_file.write_text("".join(json.dumps(r) + "\n" for r in rows[:40]))
    events, record = _recorder()
    summary = pipelines.train(examples / "videos", questions=train_file, output=tmp_path / "run",
                              checkpoint=tiny_ckpt, executor="local", num_frames=4, cpu_threads=1, progress=record,
                              config=TrainConfig(max_steps=1, lr=1e-3, batch_size=8, lora_rank=4, lora_alpha=8))
    phases = [e.get("phase") for _, e in events]
    features = [e for _, e in events if e.get("phase") == "features"]
    assert phases[0] == "load" and len(features) == summary.scenes >= 2
    assert [e["done"] for e in features] == list(range(1, summary.scenes + 1))
    assert all(e["total"] == summary.scenes and e["started"] is not None for e in features)
    assert phases.index("train") > phases.index("features")

    now = [features[-1]["started"] + 10.0]
    cb = _progress(now)
    for _, event in events:
        cb(event)
        if event.get("phase") == "features":
            assert cb.completed("features") == (event["done"], summary.scenes)
    assert cb.completed(LOAD) == (1, 1) and cb.completed("training")[0] == 1
