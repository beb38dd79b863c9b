"""The features step both model stages share: a scene's encoder outputs from the feature cache,
or from the encoders, then written to the cache by a background writer: the model goes on with
the scene (fusion, prefill, decoding) or with the next scene while the entry is written, and a
result leaves the worker only once its write has finished (`Features.settle`), so a failed write
is still reported and a crash never leaves a partial entry (writes are atomic)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from ...errors import CacheError, InputError, ResourceError
from ..records import LoadedItem
from ..settings import JobSettings
from .load import read_scene

log = logging.getLogger(__name__)


@dataclass
class Features:
    encoded: object  # EncoderOutputs
    meta: dict  # clip metadata (frame indices, sizes, notes)
    cache: str  # hit | miss | refreshed | write-failed | none
    timing: dict[str, float] = field(default_factory=dict)
    write_error: str | None = None  # why the cache write failed (cache == "write-failed")
    pending: Future | None = None  # the background cache write, until settled

    def settle(self) -> None:
        """Wait for the background cache write (if any) and record how it went."""
        if self.pending is None:
            return
        write_s, error = self.pending.result()
        self.pending = None
        self.timing["cache_write_s"] = write_s
        if error is not None:
            self.cache, self.write_error = "write-failed", error


class FeatureStep:
    def __init__(self, model_source: Callable[[], object], settings: JobSettings, cache):
        self._model_source = model_source  # the stage's model, loaded when first asked for
        self.settings = settings
        self.cache = cache  # FeatureCache or None
        # One writer thread: entries are written in order, and at most the entries of the
        # results not yet settled wait (the stages settle every result before the next but one).
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spacemind-cache-write")

    @property
    def model(self):
        return self._model_source()

    def __call__(self, loaded: LoadedItem) -> Features:
        from ...models.spacemind import EncoderOutputs

        info = loaded.info
        timing: dict[str, float] = {}
        frames = loaded.frames
        if info.status == "cached" and self.cache is not None:
            t0 = time.perf_counter()
            try:
                entry = self.cache.get(info.key, device=self.model.device, fingerprint=self.settings.encoder_fingerprint,
                                       tensor_names=EncoderOutputs.names(self.settings.has_vggt))
            except CacheError as exc:
                log.warning("%s; recomputing it", exc.message)
                entry, status = None, "refreshed"
            else:
                status = "miss"
            timing["cache_read_s"] = time.perf_counter() - t0
            if entry is not None:
                return Features(EncoderOutputs.from_tensors(entry.tensors), entry.meta, "hit", timing)
            # Gone or corrupt since the load stage looked: read the scene here.
            meta, frames, t = read_scene(loaded.item.scene, self.settings)
            timing.update(t)
        else:
            meta = info.meta
            status = "none" if self.cache is None else "refreshed" if info.refresh else "miss"
        t0 = time.perf_counter()
        encoded = self.model.encode(frames)
        self._sync()
        timing["encode_s"] = time.perf_counter() - t0
        features = Features(encoded, meta, status, timing)
        if self.cache is not None and info.key is not None:
            features.pending = self._writer.submit(self._write, info.key, features.meta, encoded)
        return features

    def _write(self, key: str, meta: dict, encoded) -> tuple[float, str | None]:
        """(seconds, None) or (seconds, why the write failed): a failed write never raises here,
        answers still come out and the cache stays without this scene (extract, whose only
        product is the cache, stops the job when it learns of it)."""
        s = self.settings
        t0 = time.perf_counter()
        try:
            self.cache.put(
                key,
                {**meta, "dtype": s.dtype, "vggt_weights": s.vggt_weights, "layers": list(s.vggt_layers)},
                encoded.tensors(),
                fingerprint=s.encoder_fingerprint,
                describe={"checkpoint": s.checkpoint},
            )
            return time.perf_counter() - t0, None
        except (ResourceError, InputError) as exc:  # a full disk, or a cache path that is not a folder
            log.warning("%s", exc.message)
            return time.perf_counter() - t0, exc.message
        except Exception as exc:  # an unexpected failure is still a failed write, reported
            log.exception("cache write of %s failed", key)
            return time.perf_counter() - t0, f"cache write failed: {type(exc).__name__}: {exc}"

    def _sync(self) -> None:
        import torch

        if self.model.device.type == "cuda":
            torch.cuda.synchronize(self.model.device)
