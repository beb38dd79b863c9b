"""The features step both model stages share: a scene's encoder outputs from the feature cache,
or from the encoders (then written to the cache)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from ...errors import CacheError, ResourceError
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


class FeatureStep:
    def __init__(self, model, settings: JobSettings, cache):
        self.model = model
        self.settings = settings
        self.cache = cache  # FeatureCache or None

    def __call__(self, loaded: LoadedItem) -> Features:
        from ...models.spacemind import EncoderOutputs

        info = loaded.info
        timing: dict[str, float] = {}
        frames = loaded.frames
        if info.status == "cached" and self.cache is not None:
            t0 = time.perf_counter()
            try:
                entry = self.cache.get(info.key, device=self.model.device, fingerprint=self.settings.encoder_fingerprint,
                                       tensor_names=EncoderOutputs.TENSORS)
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
        if self.cache is not None and self.settings.write_cache:
            self._write(info.key, features)
        return features

    def _write(self, key: str, features: Features) -> None:
        s = self.settings
        t0 = time.perf_counter()
        try:
            self.cache.put(
                key,
                {**features.meta, "dtype": s.dtype, "vggt_weights": s.vggt_weights, "layers": list(s.vggt_layers)},
                features.encoded.tensors(),
                fingerprint=s.encoder_fingerprint,
                describe={"checkpoint": s.checkpoint},
            )
        except ResourceError as exc:
            # Answers still come out; the cache just stays without this scene (extract, whose
            # only product is the cache, stops the job instead).
            log.warning("%s", exc.message)
            features.cache = "write-failed"
            features.write_error = exc.message
        features.timing["cache_write_s"] = time.perf_counter() - t0

    def _sync(self) -> None:
        import torch

        if self.model.device.type == "cuda":
            torch.cuda.synchronize(self.model.device)
