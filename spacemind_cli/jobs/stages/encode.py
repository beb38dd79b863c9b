"""The encode stage (`spacemind extract`): a scene's encoder outputs into the feature cache."""

from __future__ import annotations

from ..records import ItemResult, LoadedItem
from .features import Features
from .model import ModelStage


class EncodeStage(ModelStage):
    needs_llm = False  # the encoders only: no projector, CGMF or LLM weights are read

    def loads_lazily(self) -> bool:
        # An extract rerun or a train resume over a warm cache reads no encoder weights at all.
        return self.cache is not None

    def needs_model(self, loaded: LoadedItem) -> bool:
        return loaded.info.status != "cached"

    def handle(self, loaded: LoadedItem) -> tuple[ItemResult, Features | None]:
        info = loaded.info
        if info.status == "cached":
            return ItemResult(loaded.item.item_id, "cached", key=info.key, cache="hit"), None
        features = self.features(loaded)
        result = ItemResult(loaded.item.item_id, "ok", key=info.key, meta=features.meta, cache=features.cache,
                            timing={**info.timing, **features.timing})
        return result, features

    def written(self, result: ItemResult, features: Features) -> None:
        if features.cache == "write-failed":
            # The cache is extract's only product: a full or read-only disk stops the job (exit 5);
            # what is stored is whole, and a rerun with room resumes from there.
            result.status, result.error, result.stop_job = "failed", features.write_error, "ResourceError"
