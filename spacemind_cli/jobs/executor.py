"""The in-process executor: the same two stages as the Ray pipelines, without Ray.

The next item is read (decoded and preprocessed) on a background thread while the model works
on the current one, so the GPU does not wait for the decoder.
"""

from __future__ import annotations

import json
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable

from .settings import JobSettings
from .stages import ModelStage, batch_rows, items_to_batch, load_batch

log = logging.getLogger(__name__)


class LocalExecutor:
    name = "local"

    def __init__(self, device: str | None = None):
        self.device = device
        self._stage: ModelStage | None = None
        self._stage_key = None

    def uses_gpu(self) -> bool:
        import torch

        if self.device:
            return self.device.startswith("cuda")
        return torch.cuda.is_available()

    def stage(self, settings: JobSettings, mode: str) -> ModelStage:
        # One model per process: reused across jobs with the same settings (tests, benchmarks).
        key = (settings, mode)
        if self._stage is None or self._stage_key != key:
            self._stage = ModelStage(settings, mode)
            self._stage_key = key
        return self._stage

    def run(self, items: Iterable[dict], on_result: Callable[[dict], None], settings: JobSettings, mode: str) -> dict:
        items = list(items)
        if not items:
            return {"executor": self.name}
        stage = self.stage(settings, mode)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="spacemind-load") as pool:
            pending = pool.submit(load_batch, items_to_batch(items[:1]), settings)
            for i in range(len(items)):
                loaded = pending.result()
                if i + 1 < len(items):
                    pending = pool.submit(load_batch, items_to_batch(items[i + 1 : i + 2]), settings)
                for row in batch_rows(stage(loaded)):
                    on_result(json.loads(row["result"]))
        return {"executor": self.name}

    def close(self) -> None:
        self._stage = None
