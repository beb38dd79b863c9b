"""The load stage (CPU): fingerprint a scene, look its features up in the cache, and only when
they are missing (or unusable) decode the sampled frames and preprocess them for both encoders.
Every executor runs it: the local one on a reader pool, Ray as CPU tasks. Failures of one scene
are part of its LoadInfo, never exceptions."""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

from ...errors import ResourceError, SpacemindError
from ...fingerprint import files_digest
from ...scenes import SceneRef, load_clip, scene_files
from ..records import LoadedItem, LoadInfo, WorkItem
from ..settings import JobSettings

log = logging.getLogger(__name__)


def scene_digest(scene: SceneRef) -> str:
    """Content fingerprint of a scene: its video's bytes, or its ordered frame files' bytes."""
    files = scene_files(scene)
    if not files:
        raise SpacemindError(f"{scene.describe()}: no frames")
    return files_digest(files, [os.path.relpath(f, scene.path) if scene.kind != "video" else "video" for f in files])


def read_scene(scene: SceneRef, settings: JobSettings):
    """Decode + preprocess one scene: (clip metadata, PreparedClip, timings)."""
    from ...models.preprocess import PreprocessConfig, prepare

    cfg = PreprocessConfig.from_dict(settings.preprocess)
    t0 = time.perf_counter()
    clip = load_clip(scene, settings.frame_sampling)
    t1 = time.perf_counter()
    frames = prepare(clip.frames, cfg)
    t2 = time.perf_counter()
    meta = {
        "scene_key": scene.key,
        "dataset": scene.dataset,
        "scene_name": scene.scene_name,
        "source_path": str(scene.path),
        "frame_indices": clip.indices,
        "num_frames": len(clip.frames),
        "total_frames": clip.total_frames,
        "requested_frames": clip.requested,
        "image_sizes": clip.image_sizes,
        "notes": clip.notes,
    }
    return meta, frames, {"read_frames_s": t1 - t0, "preprocess_s": t2 - t1}


def load_item(item: WorkItem, settings: JobSettings) -> LoadedItem:
    scene = item.scene
    info = LoadInfo(status="failed")
    try:
        t0 = time.perf_counter()
        info.scene_digest = scene_digest(scene)
        info.key = settings.feature_key(info.scene_digest)
        info.timing["hash_s"] = time.perf_counter() - t0
        if settings.cache:
            problem = unusable_entry(job_cache(settings.cache), info.key, settings.encoder_fingerprint,
                                     verify=settings.verify_cached, has_vggt=settings.has_vggt)
            if problem is None:
                info.status = "cached"
                return LoadedItem(item, info)
            if problem != "absent":  # read the scene and overwrite the entry (never use it)
                log.warning("cache entry for %s is unusable (%s); recomputing it", scene.key, problem)
                info.refresh = problem
        info.meta, frames, timing = read_scene(scene, settings)
        info.status = "ok"
        info.timing.update(timing)
        return LoadedItem(item, info, frames)
    except SpacemindError as exc:
        info.error = exc.message
    except Exception as exc:  # an unexpected decoder failure must not take the job down
        log.exception("loading %s failed", scene.key)
        info.error = f"{scene.describe()}: {type(exc).__name__}: {exc}"
    return LoadedItem(item, info)


def unusable_entry(cache, key: str, fingerprint: str, verify: bool = False, has_vggt: bool = True) -> str | None:
    """Why the cache entry `key` cannot be used, "absent" when there is none, None when it is
    usable. From its footer alone (cheap: no tensor is read), unless `verify`: then the whole
    entry is read and checked as `FeatureCache.get` does when answering uses it."""
    info = cache.info(key)
    if info is None:
        return "absent"
    if info.error:
        return info.error
    if info.fingerprint != fingerprint:
        return f"made by other encoder weights (fingerprint {str(info.fingerprint)[:12]})"
    if verify:
        from ...models.spacemind import EncoderOutputs

        return cache.check(key, tensor_names=EncoderOutputs.names(has_vggt))
    return None


_caches: dict[str, object] = {}


def job_cache(root: str):
    """This process's handle on the feature cache at `root`."""
    from ...cache import FeatureCache

    if root not in _caches:
        _caches[root] = FeatureCache(root, create=True)
    return _caches[root]


def drop_job_caches() -> None:
    """Forget this process's cache handles: a pooled worker process starting another job opens
    them afresh (a cache cleared or rebuilt since has another manifest)."""
    _caches.clear()


def open_job_cache(root: str):
    """Open (or create) a job's feature cache before any work starts, so that a refused cache
    (foreign schema, corrupt manifest, read-only) stops the job with its own error and exit code,
    and remove the temp files of writers that died on this host. The stages of this process then
    use this fresh handle (a long-lived process must not keep a stale manifest)."""
    from ...cache import FeatureCache

    cache = FeatureCache(root, create=True)
    try:
        cache.clean_temp(older_than=None)
    except ResourceError as exc:  # a read-only cache can still serve hits
        log.warning("%s", exc.message)
    _caches[root] = cache
    return cache


def reader_threads() -> int:
    """Scene readers for one process: every CPU it may use but the one driving the model."""
    return max(1, len(os.sched_getaffinity(0)) - 1)


def load_ahead(items: list[WorkItem], settings: JobSettings, readers: int) -> Iterator[LoadedItem]:
    """`load_item` for each item, in order, `readers` scenes read ahead on a thread pool (decoding
    and resizing release the GIL), so the model working on one scene does not wait for the next."""
    readers = max(1, min(readers, len(items)))
    with ThreadPoolExecutor(max_workers=readers, thread_name_prefix="spacemind-load") as pool:
        pending = deque(pool.submit(load_item, item, settings) for item in items[:readers])
        for nxt in items[readers:]:
            done = pending.popleft().result()
            pending.append(pool.submit(load_item, nxt, settings))
            yield done
        while pending:
            yield pending.popleft().result()
