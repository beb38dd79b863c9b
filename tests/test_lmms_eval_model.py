"""The lmms-eval model's own logic, without lmms-eval installed: reading chat requests (visual,
prompt, gen_kwargs, stop strings, errors), grouping by video, request order, and the runner on the
tiny checkpoint (one encode per video, answers equal to `spacemind answer`'s). The real harness
runs in its own environment: .ci/lmms_eval.sh (tests/lmms_eval/)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from spacemind_cli.errors import InputError, SceneError
from spacemind_cli.integrations.lmms_eval.requests import (
    DEFAULT_MAX_NEW_TOKENS,
    Decoding,
    cut_at_stop,
    group_requests,
    read_decoding,
    read_messages,
    read_request,
)
from spacemind_cli.prompts import build_prompt

VSIBENCH_GEN_KWARGS = {"max_new_tokens": 16, "temperature": 0, "top_p": 1.0, "num_beams": 1, "do_sample": False,
                       "until": ["\n\n"]}


def video_messages(path, prompt):
    return [{"role": "user", "content": [{"type": "video", "url": str(path)}, {"type": "text", "text": prompt}]}]


class FakeTask:
    """What lmms-eval's chat requests need from a task: docs by split and id, doc_to_messages."""

    def __init__(self, docs, to_messages):
        self.docs = docs
        self.to_messages = to_messages

    def task_dict(self, task="t", split="test"):
        return {task: {split: self.docs}}

    def args(self, doc_id, gen_kwargs=None, task="t", split="test"):
        return ("ctx", self.to_messages, dict(gen_kwargs or VSIBENCH_GEN_KWARGS), doc_id, task, split)


# ------------------------------------------------------------------ gen_kwargs and stop strings
def test_vsibench_gen_kwargs_are_greedy_16_tokens_stopping_at_a_blank_line():
    assert read_decoding(VSIBENCH_GEN_KWARGS, "q") == Decoding(16, ("\n\n",))
    assert read_decoding({"until": "###", "max_new_tokens": 4, "top_k": 5}, "q") == Decoding(4, ("###",))
    assert read_decoding({"until": ["", "x"]}, "q") == Decoding(DEFAULT_MAX_NEW_TOKENS, ("x",))
    assert read_decoding({"temperature": None, "do_sample": None, "num_beams": None, "repetition_penalty": 1.0}, "q") \
        == Decoding(DEFAULT_MAX_NEW_TOKENS, ())


@pytest.mark.parametrize("kwargs, named", [
    ({"temperature": 0.7, "do_sample": True}, "temperature=0.7"),
    ({"do_sample": True}, "do_sample=True"),
    ({"num_beams": 4}, "num_beams=4"),
    ({"repetition_penalty": 1.2}, "repetition_penalty=1.2"),
    ({"max_new_tokens": 0}, "max_new_tokens"),
    ({"max_new_tokens": "16"}, "max_new_tokens"),
    ({"until": [1]}, "until"),
    ({"num_return_sequences": 2, "min_length": 3}, "min_length, num_return_sequences not supported"),
])
def test_gen_kwargs_we_would_ignore_are_refused_naming_the_request(kwargs, named):
    with pytest.raises(InputError) as err:
        read_decoding(kwargs, "vsibench doc 7")
    assert "vsibench doc 7" in err.value.message and named in err.value.message


def test_an_answer_ends_before_the_first_stop_string():
    assert cut_at_stop("A\n\nB. because", ["\n\n"]) == "A"
    assert cut_at_stop("2.5 meters. Done", ["Done", "."]) == "2"  # the earliest of several
    assert cut_at_stop("no stop here", ["\n\n"]) == "no stop here"
    assert cut_at_stop("B \n\n", ["\n\n", ""]) == "B"


# ------------------------------------------------------------------ messages
def test_a_vsibench_message_gives_its_video_and_the_tasks_own_text():
    visual, prompt = read_messages(video_messages("videos/a.mp4", "These are frames of a video.\nQ?"), "q")
    assert visual.kind == "video" and visual.paths == (str(Path("videos/a.mp4").resolve()),)
    assert prompt == "These are frames of a video.\nQ?"
    # lmms-eval's pydantic messages read the same as dicts
    class Part:
        def __init__(self, **kw):
            self.__dict__.update(kw)
    msg = Part(role="user", content=[Part(type="video", url="videos/a.mp4", start_time=None, end_time=None),
                                     Part(type="text", text="Q?")])
    assert read_messages([msg], "q")[0] == visual


@pytest.mark.parametrize("messages, named", [
    ([{"role": "system", "content": "be brief"}, {"role": "user", "content": "Q"}], "system message"),
    ([{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}, {"role": "user", "content": "Q2"}],
     "multi-round"),
    ([{"role": "user", "content": [{"type": "text", "text": "Q"}]}], "no video or image"),
    ([{"role": "user", "content": [{"type": "video", "url": "a.mp4"}, {"type": "video", "url": "b.mp4"},
                                   {"type": "text", "text": "Q"}]}], "2 videos"),
    ([{"role": "user", "content": [{"type": "video", "url": "a.mp4"}, {"type": "image", "url": "b.png"},
                                   {"type": "text", "text": "Q"}]}], "both a video and images"),
    ([{"role": "user", "content": [{"type": "audio", "url": "a.wav"}, {"type": "text", "text": "Q"}]}], "'audio'"),
    ([{"role": "user", "content": [{"type": "video", "url": "a.mp4"}]}], "no text"),
    ([{"role": "user", "content": [{"type": "video", "url": "a.mp4", "start_time": 1.0},
                                   {"type": "text", "text": "Q"}]}], "start_time"),
    ([], "non-empty list"),
])
def test_messages_we_cannot_ask_are_refused(messages, named):
    with pytest.raises(InputError) as err:
        read_messages(messages, "sitebench doc 3")
    assert "sitebench doc 3" in err.value.message and named in err.value.message


def test_in_memory_images_group_by_their_pixels():
    a = Image.fromarray(np.full((8, 8, 3), 10, np.uint8))
    a2 = Image.fromarray(np.full((8, 8, 3), 10, np.uint8))
    b = Image.fromarray(np.full((8, 8, 3), 11, np.uint8))

    def msg(*images):
        return [{"role": "user", "content": [*({"type": "image", "url": i} for i in images),
                                             {"type": "text", "text": "Q"}]}]

    va, va2, vb, vab = (read_messages(msg(*imgs), "q")[0] for imgs in ((a,), (a2,), (b,), (a, b)))
    assert va.kind == "pixels" and va.key == va2.key
    assert len({va.key, vb.key, vab.key}) == 3
    files = read_messages(msg("x/1.png", "x/2.png"), "q")[0]
    assert files.kind == "files" and files.paths == tuple(str(Path(p).resolve()) for p in ("x/1.png", "x/2.png"))
    with pytest.raises(InputError, match="all be file paths or all be PIL images"):
        read_messages(msg("x/1.png", a), "q")


def test_texts_between_images_are_joined_after_the_frames():
    messages = [{"role": "user", "content": [{"type": "text", "text": "View 1:"}, {"type": "image", "url": "1.png"},
                                             {"type": "text", "text": "Which way?"}]}]
    assert read_messages(messages, "q")[1] == "View 1:\nWhich way?"


# ------------------------------------------------------------------ requests and groups
def test_requests_group_by_video_in_order_of_first_appearance(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    docs = [{"v": "b.mp4"}, {"v": "a.mp4"}, {"v": str(tmp_path / "b.mp4")}, {"v": "./a.mp4"}, {"v": "b.mp4"}]
    task = FakeTask(docs, lambda doc: video_messages(doc["v"], f"about {doc['v']}"))
    requests = [read_request(i, task.args(i), task.task_dict()) for i in range(len(docs))]
    groups = group_requests(requests)
    assert [g.visual.paths[0] for g in groups] == [str(tmp_path / "b.mp4"), str(tmp_path / "a.mp4")]
    assert [[r.index for r in g.requests] for g in groups] == [[0, 2, 4], [1, 3]]
    assert requests[3].prompt == "about ./a.mp4" and requests[3].name == "t doc 3"


def test_a_request_that_is_not_a_chat_request_or_names_no_doc_is_refused():
    task = FakeTask([{"v": "a.mp4"}], lambda doc: video_messages(doc["v"], "Q"))
    with pytest.raises(InputError, match="chat model"):
        read_request(0, ("ctx", VSIBENCH_GEN_KWARGS, lambda d: [], 0, "t", "test"), task.task_dict())
    with pytest.raises(InputError, match="t doc 5: no such doc"):
        read_request(0, task.args(5), task.task_dict())


# ------------------------------------------------------------------ the runner on the tiny checkpoint
NUM_FRAMES = 4
SCENES = ("room_0000", "room_0001")


@pytest.fixture(scope="module")
def questions(examples):
    rows = [json.loads(line) for line in (examples / "questions.jsonl").read_text().splitlines() if line.strip()]
    return [r for r in rows if r["scene_name"] in SCENES]


@pytest.fixture(scope="module")
def runner(ckpt, one_torch_thread):
    from spacemind_cli.integrations.lmms_eval.runner import Runner, settings_for

    return Runner(settings_for(ckpt, num_frames=NUM_FRAMES, batch_size=3, threads=1))


def vsibench_task(examples, questions):
    """Docs and messages shaped as lmms-eval's vsibench hands them over (the video path, the text)."""
    def to_messages(doc):
        return video_messages(examples / "videos" / doc["dataset"] / f"{doc['scene_name']}.mp4", build_prompt(doc))
    return FakeTask(questions, to_messages)


def test_one_encode_per_video_and_answers_equal_spacemind_answer(runner, ckpt, examples, questions, tmp_path):
    from pipelines import answer

    task = vsibench_task(examples, questions)
    # the videos' questions interleaved, so grouping must put them back in request order
    order = [i for pair in zip(range(0, 17), range(17, 34)) for i in pair]
    before = runner.stats["encoded"]
    got = runner.generate([task.args(i) for i in order], task.task_dict())
    assert runner.stats["encoded"] - before == len(SCENES)

    qfile = tmp_path / "q.jsonl"
    qfile.write_text("".join(json.dumps(q) + "\n" for q in questions))
    answer(examples / "videos", output=tmp_path / "a.jsonl", questions=qfile, checkpoint=ckpt, executor="local",
           num_frames=NUM_FRAMES, batch_size=5, cpu_threads=1)
    want = {r["id"]: r["prediction"] for r in map(json.loads, (tmp_path / "a.jsonl").read_text().splitlines())}
    assert got == [cut_at_stop(want[questions[i]["id"]], ["\n\n"]) for i in order]
    assert len(set(got)) > 1  # answers that differ, so a mix-up of the order would show


def test_max_new_tokens_and_stop_strings_apply_per_request(runner, examples, questions):
    task = vsibench_task(examples, questions[:3])
    full = runner.generate([task.args(i, {"max_new_tokens": 8, "until": []}) for i in range(3)], task.task_dict())
    stop = full[0][2] if len(full[0]) > 2 else full[0][-1]
    mixed = runner.generate([task.args(0, {"max_new_tokens": 8, "until": [stop]}), task.args(1, {"max_new_tokens": 2}),
                             task.args(2, {"max_new_tokens": 8, "until": []})], task.task_dict())
    assert mixed[0] == cut_at_stop(full[0], [stop]) and mixed[0] != full[0]
    assert full[1].startswith(mixed[1]) and len(runner.model.tokenizer(mixed[1])["input_ids"]) <= 2
    assert mixed[2] == full[2]


def test_the_feature_cache_is_read_on_a_second_run(ckpt, examples, questions, tmp_path, one_torch_thread):
    from spacemind_cli.integrations.lmms_eval.runner import Runner, settings_for

    task = vsibench_task(examples, questions[:2] + questions[17:18])
    args = [task.args(i) for i in range(3)]
    first = Runner(settings_for(ckpt, num_frames=NUM_FRAMES, cache=tmp_path / "cache", threads=1))
    answers = first.generate(args, task.task_dict())
    assert (first.stats["encoded"], first.stats["cache_hits"]) == (2, 0)
    second = Runner(settings_for(ckpt, num_frames=NUM_FRAMES, cache=tmp_path / "cache", threads=1))
    assert second.generate(args, task.task_dict()) == answers
    assert (second.stats["encoded"], second.stats["cache_hits"]) == (0, 2)


def test_in_memory_images_are_answered_like_the_same_image_files(runner, examples):
    frames = sorted((examples / "frames" / "synthetic" / "room_0000").glob("*.jpg"), key=lambda p: int(p.stem))[:6]
    pictures = [Image.open(p).convert("RGB") for p in frames]

    def to_messages(doc):
        return [{"role": "user", "content": [*({"type": "image", "url": u} for u in doc["images"]),
                                             {"type": "text", "text": "How many chairs?"}]}]
    task = FakeTask([{"images": [str(p) for p in frames]}, {"images": pictures}], to_messages)
    from_files, from_pixels = runner.generate([task.args(0), task.args(1)], task.task_dict())
    assert from_files == from_pixels


def test_a_missing_video_stops_the_call_before_any_encoding(runner, examples, questions):
    task = FakeTask([{"v": examples / "videos" / "synthetic" / "room_0000.mp4"}, {"v": examples / "videos" / "nope.mp4"}],
                    lambda doc: video_messages(doc["v"], "Q"))
    before = runner.stats["encoded"] + runner.stats["cache_hits"]
    with pytest.raises(SceneError, match=r"t doc 1: video .*nope.mp4 does not exist"):
        runner.generate([task.args(0), task.args(1)], task.task_dict())
    assert runner.stats["encoded"] + runner.stats["cache_hits"] == before
