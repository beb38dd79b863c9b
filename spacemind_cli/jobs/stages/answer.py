"""The answer stage: features, CGMF, one prefill per scene, then its questions decoded in batches
against the shared prefix (`models.answering`)."""

from __future__ import annotations

import time

from ...models.answering import answer_questions
from ..records import ItemResult, LoadedItem
from .features import Features
from .model import ModelStage


class AnswerStage(ModelStage):
    needs_llm = True

    def handle(self, loaded: LoadedItem) -> tuple[ItemResult, Features | None]:
        item, info = loaded.item, loaded.info
        features = self.features(loaded)
        timing = {**info.timing, **features.timing}
        t0 = time.perf_counter()
        fused = self.model.fuse(features.encoded)
        self.sync()
        timing["fuse_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        prefix = self.model.prefill(fused)
        self.sync()
        timing["prefill_s"] = time.perf_counter() - t0
        by_index = {q.index: q for q in item.questions}
        answers, failures = answer_questions(
            self.model, prefix, [(q.index, q.prompt) for q in item.questions],
            batch_size=self.settings.batch_size, max_new_tokens=self.settings.max_new_tokens,
            name=lambda index: by_index[index].qid,
        )
        result = ItemResult(item.item_id, "ok", key=info.key, meta=features.meta, cache=features.cache, timing=timing,
                            answers=answers, question_errors=failures)
        return result, features
