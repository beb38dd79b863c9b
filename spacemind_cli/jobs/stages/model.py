"""What every model stage shares: the model loaded once per worker (a GPU, or a CPU share), then
loaded items in, results out. A failure of one item is its result, never an exception: the
worker stays alive for the other items. Subclasses say which parts of the model they need and
what they make of an item (`encode.py`, `answer.py`)."""

from __future__ import annotations

import logging
import os
import socket
import time
from collections import deque
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from ...errors import CacheError, SpacemindError
from ..records import ActorInfo, ItemResult, LoadedItem
from ..settings import JobSettings
from .features import Features, FeatureStep
from .load import job_cache

if TYPE_CHECKING:
    from ...models.spacemind import SpaceMind

log = logging.getLogger(__name__)


class LoadedStage:
    """A worker's one model stage, loaded again only when a job's stage or settings differ: an
    executor that runs several jobs (tests, benchmarks, the library API) loads the model once."""

    def __init__(self):
        self.stage: ModelStage | None = None
        self._key = None

    def get(self, stage_cls: type[ModelStage], settings: JobSettings) -> ModelStage:
        key = (stage_cls, settings)
        if self.stage is None or self._key != key:
            self.stage = self._key = None  # free the old model before loading the new one
            self.stage = stage_cls(settings)
            self._key = key
        return self.stage


class ModelStage:
    needs_llm = True  # load the projector, CGMF and LLM (answering), or only the encoders

    def __init__(self, settings: JobSettings):
        import torch

        from ...runtime import pick_device, use_torch_threads

        self.settings = settings
        self.device = pick_device(settings.device)
        if self.device == "cpu":
            use_torch_threads(settings.cpu_threads)
        self._torch = torch
        self._model: SpaceMind | None = None
        self._load_failure: tuple[str, str] | None = None  # (message, error class) of a failed lazy load
        self.cache = job_cache(settings.cache) if settings.cache else None
        self.features = FeatureStep(lambda: self.model, settings, self.cache)
        self.actor = ActorInfo(node=socket.gethostname(), pid=os.getpid(), device=self.device,
                               threads=torch.get_num_threads() if self.device == "cpu" else None)
        if self.loads_lazily():
            # The weights wait for the first item that needs them (a rerun over a warm cache
            # never reads them), but a checkpoint changed since planning still stops the job here.
            from ...models.checkpoint import encoder_fingerprint

            self._check_fingerprint(encoder_fingerprint(settings.checkpoint, settings.trusted_paths))
        else:
            self._load()

    def loads_lazily(self) -> bool:
        """Whether the model may be loaded on the first item that needs it (`needs_model`)."""
        return False

    def needs_model(self, loaded: LoadedItem) -> bool:
        return True

    @property
    def model(self):
        if self._model is None:
            self._load()
        return self._model

    def _load(self) -> None:
        from ...models.spacemind import SpaceMind
        from ...runtime import compute_dtype

        settings = self.settings
        t0 = time.perf_counter()
        model = SpaceMind.from_pretrained(
            settings.checkpoint,
            device=self.device,
            dtype=compute_dtype(self.device, settings.dtype),
            trusted_paths=settings.trusted_paths,
            llm=self.needs_llm,
            # answering from a cache may never need VGGT: load it on the first miss
            lazy_vggt=self.needs_llm and bool(settings.cache),
            vggt_weights=settings.vggt_weights,
            merge_lora=settings.merge_lora,
        )
        self._check_fingerprint(model.encoder_fingerprint)
        self._model = model
        self.actor.load_s = time.perf_counter() - t0

    def _check_fingerprint(self, fingerprint: str | None) -> None:
        if fingerprint != self.settings.encoder_fingerprint:
            # The checkpoint changed between planning and loading: keys would lie.
            raise CacheError(
                f"checkpoint {self.settings.checkpoint} changed while the job ran (encoder fingerprint differs); rerun"
            )

    def process_stream(self, loaded_items: Iterable[LoadedItem]) -> Iterator[ItemResult]:
        """Results in item order. An item's cache write runs behind the model while it works on
        the next item; a result is handed on once its write has finished."""
        waiting: deque = deque()
        for loaded in loaded_items:
            waiting.append(self._start(loaded))
            while len(waiting) > 1:
                yield self._finish(*waiting.popleft())
        while waiting:
            yield self._finish(*waiting.popleft())

    def _start(self, loaded: LoadedItem) -> tuple[ItemResult, Features | None]:
        item = loaded.item
        try:
            if loaded.info.status == "failed":
                return ItemResult(item.item_id, "failed", error=loaded.info.error), None
            if self._model is None and self.needs_model(loaded) and (failed := self._load_for(item.item_id)):
                return failed, None
            started = time.time()
            result, features = self.handle(loaded)
            result.started = started
            return result, features
        except SpacemindError as exc:
            return ItemResult(item.item_id, "failed", error=exc.message), None
        except Exception as exc:  # keep the worker alive for the other items
            log.exception("item %s failed", item.item_id)
            return ItemResult(item.item_id, "failed", error=f"{type(exc).__name__}: {exc}"), None

    def _finish(self, result: ItemResult, features: Features | None) -> ItemResult:
        if features is not None:
            features.settle()
            result.cache = features.cache
            result.timing.update(features.timing)
            self.written(result, features)
        result.actor = ActorInfo(**{**vars(self.actor), "peak_memory": self.peak_memory()})
        return result

    def _load_for(self, item_id: str) -> ItemResult | None:
        """A lazy load, on the item that needs it: None once loaded, else the item's result. No
        item gets past a model that cannot load: its failure stops the job with its own error (its
        exit code too), as an eager load's would, and the items already on their way fail with it
        without trying again."""
        if self._load_failure is None:
            try:
                self._load()
                return None
            except SpacemindError as exc:
                self._load_failure = (exc.message, type(exc).__name__)
            except Exception as exc:
                log.exception("loading the model for %s failed", item_id)
                self._load_failure = (f"loading {self.settings.checkpoint} failed: {type(exc).__name__}: {exc}",
                                      "SpacemindError")
        message, error_class = self._load_failure
        return ItemResult(item_id, "failed", error=message, stop_job=error_class)

    def handle(self, loaded: LoadedItem) -> tuple[ItemResult, Features | None]:
        """The stage's work on one item: its result and, when features were computed here, the
        Features whose cache write may still be running."""
        raise NotImplementedError

    def written(self, result: ItemResult, features: Features) -> None:
        """Called once the item's cache write has settled (a stage whose product is the cache
        turns a failed write into a failed item)."""

    def sync(self) -> None:
        if self.device.startswith("cuda"):
            self._torch.cuda.synchronize()

    def peak_memory(self) -> int | None:
        if self.device.startswith("cuda"):
            return int(self._torch.cuda.max_memory_allocated())
        return None
