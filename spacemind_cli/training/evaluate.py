"""Answers to held-out questions during training, scored with the official rules: the same
prompts and answering routine as `spacemind answer`, features from the cache."""

from __future__ import annotations

import json
import logging
from typing import Any

import torch

from ..errors import InputError
from ..eval import evaluate_records
from ..eval.records import Record
from ..models.answering import answer_questions
from ..parsing import parse_answer

log = logging.getLogger(__name__)


def scene_shares(rows: list[dict], world_size: int) -> list[list[str]]:
    """The eval's scenes (feature keys) of each worker: whole scenes, so a scene's prefix is
    prefilled once and its questions decode in the same batches as in one process (the same
    answers); each scene, in first-seen order, to the worker with the fewest questions so far."""
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["feature_key"]] = counts.get(r["feature_key"], 0) + 1
    shares: list[list[str]] = [[] for _ in range(world_size)]
    load = [0] * world_size
    for key, n in counts.items():
        w = load.index(min(load))
        shares[w].append(key)
        load[w] += n
    return shares


@torch.no_grad()
def answer_rows(sm, rows: list[dict], encoded, *, batch_size: int, max_new_tokens: int,
                scenes: list[str] | None = None) -> tuple[dict[int, str], int]:
    """({row index: answer}, failed) for the rows of `scenes` (every row's when None)."""
    by_scene: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        by_scene.setdefault(r["feature_key"], []).append(i)
    predictions: dict[int, str] = {}
    failed = 0
    for key in by_scene if scenes is None else scenes:
        idx = by_scene[key]
        prefix = sm.prefill(sm.fuse(encoded(key)))
        answers, failures = answer_questions(sm, prefix, [(i, rows[i]["prompt"]) for i in idx],
                                             batch_size=batch_size, max_new_tokens=max_new_tokens)
        predictions.update((a.key, a.text) for a in answers)
        failed += len(failures)
    return predictions, failed


def evaluate(sm, rows: list[dict], encoded, *, batch_size: int, max_new_tokens: int) -> dict:
    """rows: {id, feature_key, prompt, row_json}. Returns the official overall score (and the
    benchmark) plus the share of answers equal to the ground truth as parsed."""
    predictions, failed = answer_rows(sm, rows, encoded, batch_size=batch_size, max_new_tokens=max_new_tokens)
    return score(rows, predictions, failed)


def score(rows: list[dict], predictions: dict[int, str], failed: int) -> dict:
    """The eval result of every row's answer (`answer_rows`, gathered from the workers)."""
    records, exact = [], 0
    for i, r in enumerate(rows):
        fields = json.loads(r["row_json"])
        text = predictions.get(i)
        parsed = None if text is None else parse_answer(text, options=fields.get("options"),
                                                       question_type=fields.get("question_type"))
        truth = fields.get("ground_truth")
        exact += parsed is not None and truth is not None and str(parsed) == str(
            parse_answer(str(truth), options=fields.get("options"), question_type=fields.get("question_type")))
        records.append(Record(i + 1, fields, text, None if parsed is None else str(parsed), "answers", f"eval:{i + 1}"))
    out: dict[str, Any] = {"questions": len(rows), "answered": len(predictions), "failed": failed, "exact": exact / max(1, len(rows))}
    try:
        result = evaluate_records(records, source="eval-questions")
        overall = next((sc for sc in result.scores if sc.is_average and sc.value is not None), None)
        out.update(benchmark=result.benchmark, overall=None if overall is None else overall.value,
                   metric=None if overall is None else overall.key)
    except InputError as exc:  # custom question types: no benchmark score, the exact rate stays
        log.info("eval questions have no benchmark score: %s", exc)
    return out
