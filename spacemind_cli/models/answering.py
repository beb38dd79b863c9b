"""Answering the questions about one scene after its visual prefix is prefilled: the one routine
that `SpaceMind.answer`, the answer stage of the jobs and the GPU benchmark share.

    answers, failures = answer_questions(model, prefix, [(key, prompt), ...], batch_size=..., max_new_tokens=...)

- A question whose prompt, after the prefix and with its new tokens, cannot fit the language
  model's context is refused before any batch is built (padded into a batch it would ask for
  memory quadratic in its length and fail its whole scene).
- Questions are decoded in batches sharing the prefix; if a batch fails, each of its questions is
  decoded alone, so only the culprit fails.
- Each answer carries the wall time of the batch it was decoded in and that batch's size.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import torch

from ..defaults import DEFAULTS
from .context import context_limit, over_context

log = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)  # the caller's handle for a question


@dataclass
class Answer(Generic[K]):
    key: K
    text: str
    generate_s: float  # wall time of the batch this answer was decoded in
    batch: int  # size of that batch


@dataclass
class Failure(Generic[K]):
    key: K
    error: str  # one line, naming the question


def too_long(model, prompt: str, prefix_len: int, max_new_tokens: int, name: str) -> str | None:
    """Why `prompt` cannot fit the language model's context after a `prefix_len` prefix, or None."""
    limit = context_limit(model.internvl.config)
    if limit is None:
        return None
    return over_context(f"question {name}: its prompt", prefix_len, len(model.suffix_ids(prompt)), "new tokens",
                        max_new_tokens, limit)


def answer_questions(
    model,
    prefix,
    questions: Sequence[tuple[K, str]],
    *,
    batch_size: int = DEFAULTS.decode_batch,
    max_new_tokens: int = DEFAULTS.max_new_tokens,
    name: Callable[[K], str] = str,
) -> tuple[list[Answer[K]], list[Failure[K]]]:
    """Greedy answers to (key, prompt) questions after `prefix` (from `model.prefill`), in order."""
    answers: list[Answer[K]] = []
    failures: list[Failure[K]] = []
    fitting = []
    for key, prompt in questions:
        problem = too_long(model, prompt, prefix.length, max_new_tokens, name(key))
        if problem:
            failures.append(Failure(key, problem))
        else:
            fitting.append((key, prompt))
    bs = max(1, batch_size)
    for start in range(0, len(fitting), bs):
        _decode(model, prefix, fitting[start : start + bs], max_new_tokens, name, answers, failures)
    return answers, failures


def _decode(model, prefix, chunk, max_new_tokens, name, answers: list[Answer[Any]], failures: list[Failure[Any]]) -> None:
    t0 = time.perf_counter()
    try:
        texts = model.generate(prefix, [p for _, p in chunk], max_new_tokens=max_new_tokens)
        if model.device.type == "cuda":
            torch.cuda.synchronize(model.device)
    except Exception as exc:
        if len(chunk) > 1:
            log.warning("a batch of %d questions failed (%s: %s); answering them one by one",
                        len(chunk), type(exc).__name__, " ".join(str(exc).split())[:200])
            for one in chunk:
                _decode(model, prefix, [one], max_new_tokens, name, answers, failures)
            return
        key = chunk[0][0]
        log.exception("question %s failed", name(key))
        reason = " ".join(f"{type(exc).__name__}: {exc}".split())[:500]
        failures.append(Failure(key, f"question {name(key)}: {reason}"))
        return
    dt = time.perf_counter() - t0
    answers.extend(Answer(key, text, dt, len(chunk)) for (key, _), text in zip(chunk, texts))
