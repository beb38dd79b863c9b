"""`spacemind answer` end to end on the bundled examples with the tiny checkpoint."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines import answer as run
from spacemind_cli.jobs.output import AnswerStore, run_tag

VOLATILE = ("timing", "cache")  # wall-clock and cache provenance differ between equivalent runs


def read_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def stable(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in VOLATILE} for r in rows]


@pytest.fixture(scope="module")
def baseline(tiny_ckpt, examples, tmp_path_factory):
    """One uninterrupted local run: the reference the other runs must equal."""
    out = tmp_path_factory.mktemp("baseline") / "answers.jsonl"
    summary = run(
        examples / "videos",
        checkpoint=tiny_ckpt,
        output=out,
        questions=str(examples / "questions.jsonl"),
        executor="local",
        batch_size=8,
    )
    return out, summary


def test_local_run_answers_every_question_in_file_order(baseline, examples):
    out, summary = baseline
    rows = read_rows(out)
    questions = read_rows(examples / "questions.jsonl")
    assert summary["answered"] == len(questions) == len(rows) == 68
    assert summary["failed"] == 0 and summary["scenes"] == 4
    assert [r["id"] for r in rows] == [q["id"] for q in questions]
    for q, r in zip(questions, rows):
        for key, value in q.items():  # every input field travels through unchanged
            assert r[key] == value
        assert isinstance(r["prediction"], str)
        assert r["scene_key"] == f"synthetic/{q['scene_name']}"
        assert r["frames_used"] == 32 and len(r["frame_indices"]) == 32
        assert r["checkpoint_id"] == summary["checkpoint_id"]
        assert {"prefill_s", "generate_s", "batch"} <= set(r["timing"])
    # the toy model is sensitive to its input: not every answer is the same text
    assert len({r["prediction"] for r in rows}) > 10


def test_batching_and_prefix_sharing_do_not_change_answers(baseline, tiny_ckpt, examples, tmp_path):
    out, _ = baseline
    single = tmp_path / "b1.jsonl"
    run(examples / "videos", checkpoint=tiny_ckpt, output=single, questions=str(examples / "questions.jsonl"),
        executor="local", batch_size=1)
    rows1, rows8 = read_rows(single), read_rows(out)
    assert [r["timing"]["batch"] for r in rows1] == [1] * 68
    assert max(r["timing"]["batch"] for r in rows8) == 8
    assert stable(rows1) == stable(rows8)


def test_answers_from_frame_folders_match_videos_scene_by_scene(tiny_ckpt, examples, tmp_path):
    # Same scenes, JPEG frames instead of H.264: not identical pixels, but the same questions,
    # the same sampled indices and a complete run.
    out = tmp_path / "frames.jsonl"
    summary = run(examples / "frames", checkpoint=tiny_ckpt, output=out, questions=str(examples / "questions.jsonl"),
                  executor="local")
    rows = read_rows(out)
    assert summary["answered"] == 68
    assert {r["scene_key"] for r in rows} == {f"synthetic/room_000{i}" for i in range(4)}


def test_cached_features_give_the_same_answers_as_frames(baseline, tiny_ckpt, examples, tmp_path):
    out, _ = baseline
    cache = tmp_path / "cache"
    cold, warm = tmp_path / "cold.jsonl", tmp_path / "warm.jsonl"
    s_cold = run(examples / "videos", checkpoint=tiny_ckpt, output=cold, questions=str(examples / "questions.jsonl"),
                 executor="local", cache=cache)
    s_warm = run(examples / "videos", checkpoint=tiny_ckpt, output=warm, questions=str(examples / "questions.jsonl"),
                 executor="local", cache=cache)
    assert s_cold["cache"] == {"miss": 4}
    assert s_warm["cache"] == {"hit": 4}
    assert stable(read_rows(cold)) == stable(read_rows(out)) == stable(read_rows(warm))
    assert {r["cache"] for r in read_rows(warm)} == {"hit"}
    assert all("encode_s" not in r["timing"] for r in read_rows(warm))


def test_corrupt_cache_entry_is_recomputed_not_used(baseline, tiny_ckpt, examples, tmp_path):
    out, _ = baseline
    cache = tmp_path / "cache"
    first = tmp_path / "a.jsonl"
    run(examples / "videos", checkpoint=tiny_ckpt, output=first, questions=str(examples / "questions.jsonl"),
        executor="local", cache=cache)
    entry = sorted(cache.glob("entries/*/*.parquet"))[0]
    data = bytearray(entry.read_bytes())
    data[len(data) // 2] ^= 0xFF  # a flipped byte inside the tensor blobs
    entry.write_bytes(bytes(data))
    second = tmp_path / "b.jsonl"
    summary = run(examples / "videos", checkpoint=tiny_ckpt, output=second, questions=str(examples / "questions.jsonl"),
                  executor="local", cache=cache)
    assert summary["cache"] == {"hit": 3, "refreshed": 1}
    assert stable(read_rows(second)) == stable(read_rows(out))
    from spacemind_cli.cache import FeatureCache

    assert FeatureCache(cache).verify() == []  # the bad entry was rewritten


def test_resume_skips_answered_questions_and_completes_the_rest(baseline, tiny_ckpt, examples, tmp_path):
    out, _ = baseline
    partial = tmp_path / "partial.jsonl"
    # Simulate an interrupted run: keep only the first two scenes' shards.
    run(examples / "videos", checkpoint=tiny_ckpt, output=partial, questions=str(examples / "questions.jsonl"),
        executor="local")
    parts = partial.with_name(partial.name + ".parts")
    store_rows = [json.loads(line) for s in sorted(parts.glob("shard-*.jsonl")) for line in s.read_text().splitlines()]
    keep = [r for r in store_rows if r["row"]["scene_name"] in ("room_0000", "room_0001")]
    shutil.rmtree(parts)
    parts.mkdir()
    # a shard of the run's own tag (shards are named shard-<run tag>-<random>.jsonl)
    (parts / f"shard-{run_tag(keep[0]['r'])}-{'0' * 32}.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in sorted(keep, key=lambda r: r["i"])))
    partial.unlink()

    summary = run(examples / "videos", checkpoint=tiny_ckpt, output=partial, questions=str(examples / "questions.jsonl"),
                  executor="local")
    assert summary["resumed"] == len(keep) > 0
    assert summary["answered"] == 68 - len(keep)
    assert stable(read_rows(partial)) == stable(read_rows(out))

    again = run(examples / "videos", checkpoint=tiny_ckpt, output=partial, questions=str(examples / "questions.jsonl"),
                executor="local")
    assert again["answered"] == 0 and again["resumed"] == 68
    assert stable(read_rows(partial)) == stable(read_rows(out))

    fresh = run(examples / "videos", checkpoint=tiny_ckpt, output=partial, questions=str(examples / "questions.jsonl"),
                executor="local", overwrite=True)
    assert fresh["answered"] == 68 and fresh["resumed"] == 0


def test_changed_settings_are_not_resumed(baseline, tiny_ckpt, examples, tmp_path):
    """Settings change between runs into one output: the output holds every question, all made
    with the new settings; the old answers are kept apart and come back with the old settings."""
    out = tmp_path / "a.jsonl"
    kw = dict(checkpoint=tiny_ckpt, output=out, questions=str(examples / "questions.jsonl"), executor="local")
    first = run(examples / "videos", num_frames=8, **kw)
    assert first["answered"] == 68 and first["other_settings_kept"] == 0
    again = run(examples / "videos", num_frames=16, **kw)
    assert again["resumed"] == 0 and again["answered"] == 68 and again["other_settings_kept"] == 68
    rows = read_rows(out)
    assert [r["id"] for r in rows] == [q["id"] for q in read_rows(examples / "questions.jsonl")]
    assert {r["frames_used"] for r in rows} == {16}
    back = run(examples / "videos", num_frames=8, **kw)
    assert back["resumed"] == 68 and back["answered"] == 0
    assert len(read_rows(out)) == 68 and {r["frames_used"] for r in read_rows(out)} == {8}


def test_a_failing_scene_is_reported_and_the_others_answered(tiny_ckpt, examples, tmp_path):
    scenes = tmp_path / "scenes" / "synthetic"
    shutil.copytree(examples / "videos" / "synthetic", scenes)
    (scenes / "room_0001.mp4").write_bytes(b"this is not a video")
    questions = read_rows(examples / "questions.jsonl")
    questions.append({**questions[0], "id": 999, "scene_name": "no_such_room"})
    qfile = tmp_path / "q.jsonl"
    qfile.write_text("".join(json.dumps(q) + "\n" for q in questions))
    out = tmp_path / "a.jsonl"
    summary = run(tmp_path / "scenes", checkpoint=tiny_ckpt, output=out, questions=str(qfile), executor="local")
    bad = sum(1 for q in questions if q["scene_name"] in ("room_0001", "no_such_room"))
    assert summary["failed"] == bad
    assert summary["answered"] == len(questions) - bad
    errors = read_rows(Path(summary["errors_file"]))
    assert len(errors) == bad
    assert any("room_0001.mp4" in e["error"] for e in errors)
    assert any("no_such_room" in e["error"] and e["id"] == "999" for e in errors)
    assert all("\n" not in e["error"] for e in errors)
    assert {r["scene_name"] for r in read_rows(out)} == {"room_0000", "room_0002", "room_0003"}


def test_parquet_output(tiny_ckpt, examples, tmp_path, baseline):
    import pyarrow.parquet as pq

    out = tmp_path / "a.parquet"
    run(examples / "videos", checkpoint=tiny_ckpt, output=out, questions=str(examples / "questions.jsonl"),
        executor="local")
    table = pq.read_table(out)
    assert table.num_rows == 68
    assert table.column("prediction").to_pylist() == [r["prediction"] for r in read_rows(baseline[0])]


def test_annotation_job_writes_a_partitioned_dataset(tiny_ckpt, examples, tmp_path):
    import duckdb
    import pyarrow.dataset as pads

    out = tmp_path / "ds"
    summary = run(examples / "videos", checkpoint=tiny_ckpt, output=out, template=str(examples / "annotate.jsonl"),
                  executor="local")
    templates = read_rows(examples / "annotate.jsonl")
    assert summary["answered"] == 4 * len(templates)
    ds = pads.dataset(out, format="parquet", partitioning="hive")
    table = ds.to_table()
    assert table.num_rows == 4 * len(templates)
    assert set(table.column("dataset").to_pylist()) == {"synthetic"}
    assert (out / "dataset=synthetic").is_dir()
    n = duckdb.sql(f"select count(distinct scene) from read_parquet('{out}/**/*.parquet', hive_partitioning=true)").fetchall()[0][0]
    assert n == 4


def test_store_merges_shards_in_order_and_drops_duplicates(tmp_path):
    store = AnswerStore(tmp_path / "o.jsonl", "run")
    digests = [f"d{i}" for i in range(6)]
    store.write([(4, "d4", {"x": 4}), (1, "d1", {"x": 1})])
    store.write([(0, "d0", {"x": 0}), (4, "d4", {"x": 4}), (5, "stale", {"x": 5})])
    assert store.completed(digests) == {0, 1, 4}
    assert [r["x"] for r in store.rows(digests)] == [0, 1, 4]
    store.compact()
    assert len(list(store.parts.glob("shard-*.jsonl"))) == 1
    assert store.finalize(digests) == 3


def test_cli_answer_exit_code_and_summary(tiny_ckpt, examples, tmp_path):
    out = tmp_path / "a.jsonl"
    proc = subprocess.run(
        [sys.executable, "-m", "spacemind_cli", "answer", str(examples / "videos"), "--questions",
         str(examples / "questions.jsonl"), "--checkpoint", str(tiny_ckpt), "--output", str(out), "--executor", "local"],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "68 answered now" in proc.stdout
    assert "VSI-Bench" in proc.stdout  # the eval table, since the questions have ground truth
    summary = json.loads(out.with_name(out.name + ".summary.json").read_text())
    assert summary["answered"] == 68
