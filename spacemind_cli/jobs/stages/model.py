"""What every model stage shares: the model loaded once per worker (a GPU, or a CPU share), then
loaded items in, results out. A failure of one item is its result, never an exception: the
worker stays alive for the other items. Subclasses say which parts of the model they need and
what they make of an item (`encode.py`, `answer.py`)."""

from __future__ import annotations

import logging
import os
import socket
import time

from ...errors import CacheError, SpacemindError
from ..records import ActorInfo, ItemResult, LoadedItem
from ..settings import JobSettings
from .features import FeatureStep
from .load import job_cache

log = logging.getLogger(__name__)


class ModelStage:
    needs_llm = True  # load the projector, CGMF and LLM (answering), or only the encoders

    def __init__(self, settings: JobSettings):
        import torch

        from ...models.spacemind import SpaceMind
        from ...runtime import compute_dtype, pick_device

        self.settings = settings
        self.device = pick_device(settings.device)
        if self.device == "cpu":
            torch.set_num_threads(settings.cpu_threads or len(os.sched_getaffinity(0)))
        t0 = time.perf_counter()
        self.model = SpaceMind.from_pretrained(
            settings.checkpoint,
            device=self.device,
            dtype=compute_dtype(self.device, settings.dtype),
            trusted_paths=settings.trusted_paths,
            llm=self.needs_llm,
            # answering from a cache may never need VGGT: load it on the first miss
            lazy_vggt=self.needs_llm and bool(settings.cache),
            vggt_weights=settings.vggt_weights,
        )
        self.load_s = time.perf_counter() - t0
        if self.model.encoder_fingerprint != settings.encoder_fingerprint:
            # The checkpoint changed between planning and loading: keys would lie.
            raise CacheError(
                f"checkpoint {settings.checkpoint} changed while the job ran (encoder fingerprint differs); rerun"
            )
        self.cache = job_cache(settings.cache) if settings.cache else None
        self.features = FeatureStep(self.model, settings, self.cache)
        self.actor = ActorInfo(node=socket.gethostname(), pid=os.getpid(), device=self.device,
                               threads=torch.get_num_threads() if self.device == "cpu" else None, load_s=self.load_s)
        self._torch = torch

    def process(self, loaded: LoadedItem) -> ItemResult:
        item = loaded.item
        try:
            if loaded.info.status == "failed":
                result = ItemResult(item.item_id, "failed", error=loaded.info.error)
            else:
                result = self.handle(loaded)
        except SpacemindError as exc:
            result = ItemResult(item.item_id, "failed", error=exc.message)
        except Exception as exc:  # keep the worker alive for the other items
            log.exception("item %s failed", item.item_id)
            result = ItemResult(item.item_id, "failed", error=f"{type(exc).__name__}: {exc}")
        result.actor = ActorInfo(**{**vars(self.actor), "peak_memory": self.peak_memory()})
        return result

    def handle(self, loaded: LoadedItem) -> ItemResult:
        raise NotImplementedError

    def sync(self) -> None:
        if self.device.startswith("cuda"):
            self._torch.cuda.synchronize()

    def peak_memory(self) -> int | None:
        if self.device.startswith("cuda"):
            return int(self._torch.cuda.max_memory_allocated())
        return None
