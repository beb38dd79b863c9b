"""The in-process executor: the same stages as the Ray executor, without Ray.

Scenes are read (decoded and preprocessed, CPU-bound work that releases the GIL) ahead on a pool
of threads sized to the machine while the model works, so the model does not wait for the
decoder; cache writes run behind the model too (`jobs/stages/features.py`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from spacemind_cli.jobs.records import ItemResult, WorkItem
from spacemind_cli.jobs.settings import JobSettings
from spacemind_cli.jobs.stages import LoadedStage, ModelStage, load_ahead, reader_threads

log = logging.getLogger(__name__)


class LocalExecutor:
    name = "local"

    def __init__(self, device: str | None = None):
        self.device = device
        self._loaded = LoadedStage()

    def uses_gpu(self) -> bool:
        import torch

        if self.device:
            return self.device.startswith("cuda")
        return torch.cuda.is_available()

    def run(self, items: Sequence[WorkItem], stage: type[ModelStage], settings: JobSettings,
            on_result: Callable[[ItemResult], None]) -> dict:
        items = list(items)
        if not items:
            return {"executor": self.name}
        model = self._loaded.get(stage, settings)
        for result in model.process_stream(load_ahead(items, settings, reader_threads())):
            on_result(result)
        return {"executor": self.name}

    def close(self) -> None:
        self._loaded = LoadedStage()
