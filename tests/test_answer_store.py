"""The answer store's resume logic, with shard names under the test's control.

Shard names end in random hex; which shard sorts first must never decide which answer is kept.
These tests assign the names themselves and try every ordering, so they cannot pass by chance.
"""

from __future__ import annotations

import itertools
import json

import pytest

from spacemind_cli.jobs import output
from spacemind_cli.jobs.output import AnswerStore, run_tag

SCENES = 3
PER_SCENE = 4
N = SCENES * PER_SCENE
DIGESTS = [f"q{i:02d}" for i in range(N)]


class Names:
    """Stands in for output.new_shard_id: hands out the given names in order, then (compaction's
    shards) names that sort after all of them."""

    def __init__(self, names: list[str]):
        self.names = list(names)
        self.extra = 0

    def __call__(self) -> str:
        if self.names:
            return self.names.pop(0)
        self.extra += 1
        return f"f{self.extra:031x}"


def fixed_names(count: int) -> list[str]:
    return [f"{k:032x}" for k in range(1, count + 1)]


def scene_records(run: str, scene: int, digests=DIGESTS) -> list[tuple[int, str, dict]]:
    idx = range(scene * PER_SCENE, (scene + 1) * PER_SCENE)
    return [(i, digests[i], {"i": i, "run": run}) for i in idx]


def run_keys_in_both_tag_orders() -> list[tuple[str, str]]:
    """(old, new) run-key pairs: one where the old run's shards sort first, one where they sort last."""
    a, b = "run-key-one", "run-key-two"
    first, second = sorted((a, b), key=run_tag)
    return [(first, second), (second, first)]


def answers(store: AnswerStore, digests=DIGESTS) -> list[tuple[int, str]]:
    return [(r["i"], r["run"]) for r in store.rows(digests)]


@pytest.mark.parametrize("old_key,new_key", run_keys_in_both_tag_orders())
@pytest.mark.parametrize("order", list(itertools.permutations(range(SCENES + 1))))
def test_a_changed_run_key_never_loses_or_mixes_answers(tmp_path, monkeypatch, old_key, new_key, order):
    """Run 1 answers every question (one shard per scene). Run 2, with other settings, answers
    them all again, plus one stale duplicate shard of a question whose text has since changed.
    Whatever the shard-name order: run 2's output holds exactly run 2's answers, compaction keeps
    them all, and run 1's answers are kept apart and still resume for run 1."""
    out = tmp_path / "a.jsonl"
    names = fixed_names(SCENES + 1 + SCENES + 1)
    new_names = [names[SCENES + k] for k in order]  # the permutation under test
    monkeypatch.setattr(output, "new_shard_id", Names(names[:SCENES] + new_names + names[-1:]))

    old = AnswerStore(out, old_key)
    for s in range(SCENES):
        old.write(scene_records("old", s))
    assert old.finalize(DIGESTS) == N

    new = AnswerStore(out, new_key)
    assert new.completed(DIGESTS) == set()
    assert new.other_runs() == {run_tag(old_key): N}
    stale = list(DIGESTS)
    stale[5] = "an-older-question"
    writes = [scene_records("new", s) for s in range(SCENES)] + [[(5, stale[5], {"i": 5, "run": "stale"})]]
    for w in writes:
        new.write(w)
    expected = [(i, "new") for i in range(N)]
    assert new.completed(DIGESTS) == set(range(N))
    assert answers(new) == expected
    assert new.finalize(DIGESTS) == N  # compacts first
    assert len(new._shard_files()) == 1
    assert [(r["i"], r["run"]) for r in map(json.loads, out.read_text().splitlines())] == expected
    # the stale record survives compaction: it is the answer if the old question text comes back
    assert answers(new, stale)[5] == (5, "stale")

    again = AnswerStore(out, old_key)  # the first settings again: resumed, not recomputed
    assert again.completed(DIGESTS) == set(range(N))
    assert answers(again) == [(i, "old") for i in range(N)]
    assert again.other_runs() == {run_tag(new_key): N + 1}


def test_compaction_never_drops_a_record_of_this_run(tmp_path, monkeypatch):
    """Forced compaction after every shard, with duplicates (a crash between writing the merged
    shard and removing the old ones) and two versions of one question."""
    monkeypatch.setattr(output, "_COMPACT_AT", 1)
    store = AnswerStore(tmp_path / "a.jsonl", "k")
    store.write(scene_records("x", 0))
    store.write(scene_records("x", 0))  # exact duplicates
    edited = list(DIGESTS)
    edited[1] = "edited"
    store.write([(1, "edited", {"i": 1, "run": "edited"})])
    store.write(scene_records("x", 1))
    assert len(store._shard_files()) == 1
    assert answers(store) == [(i, "x") for i in range(2 * PER_SCENE)]
    assert answers(store, edited)[1] == (1, "edited")
    lines = store._shard_files()[0].read_text().splitlines()
    assert len(lines) == 2 * PER_SCENE + 1  # duplicates merged, both versions of question 1 kept


def test_damaged_lines_are_skipped_and_their_questions_asked_again(tmp_path):
    store = AnswerStore(tmp_path / "a.jsonl", "k")
    store.write(scene_records("x", 0))
    shard = store._shard_files()[0]
    text = shard.read_text().splitlines()
    text[1] = text[1][: len(text[1]) // 2]  # cut mid-record
    text[2] = json.dumps({"i": "two", "row": {}})  # valid JSON, not a record
    shard.write_text("\n".join(text) + "\n")
    assert store.completed(DIGESTS) == {0, 3}
