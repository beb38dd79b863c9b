"""What the lmms-eval model does with a `generate_until` call, without lmms-eval:

    requests -> read (visual, prompt, decoding; every error before any work)
             -> grouped by visual (a video path, a list of images)
             -> per group: frames sampled and preprocessed as `spacemind answer` does (or the
                feature cache's entry), VGGT + InternViT once, CGMF once, the shared prefix
                prefilled once, its questions decoded in batches (`models.answering`)
             -> answers cut at each request's stop strings, in request order

The frames, the prompt around the task's text and the decoding are those of `spacemind answer`,
so where the task's text equals our prompt the answers are the same (tested).
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from ...defaults import DEFAULTS
from ...errors import QuestionError, SceneError
from ...jobs.records import LoadedItem, LoadInfo, WorkItem
from ...jobs.settings import JobSettings, RunOptions, make_settings
from ...jobs.stages import ModelStage, load_item, open_job_cache
from ...models.answering import answer_questions
from ...scenes import SceneRef
from .requests import Group, Request, Visual, cut_at_stop, group_requests, read_request

log = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = DEFAULTS.decode_batch


class _Stage(ModelStage):
    """The model stage of `spacemind answer`, driven by requests instead of work items."""

    needs_llm = True


def settings_for(
    checkpoint: str | os.PathLike,
    *,
    num_frames: int | None = None,
    sampling: str | None = None,
    cache: str | os.PathLike | None = None,
    dtype: str | None = None,
    vggt_weights: str | None = None,
    batch_size: int | None = None,
    device: str | None = None,
    threads: int | None = None,
) -> JobSettings:
    from ...runtime import pick_device

    options = RunOptions(checkpoint=checkpoint, cache=cache, num_frames=num_frames, sampling=sampling, dtype=dtype,
                         vggt_weights=vggt_weights, batch_size=batch_size, executor="local", device=device,
                         cpu_threads=threads)
    return make_settings(options, use_gpu=pick_device(device).startswith("cuda"))


class Runner:
    """One loaded model answering lmms-eval's chat requests. `stats` counts, over the runner's
    life, the groups encoded (`encoded`), read from the cache (`cache_hits`) and the questions."""

    def __init__(self, settings: JobSettings):
        if settings.cache:
            open_job_cache(settings.cache)  # a refused cache stops here, with its own error
        self.settings = settings
        self.stage = _Stage(settings)
        self.stats: Counter = Counter()

    @property
    def model(self):
        return self.stage.model

    def generate(self, requests_args: Sequence[Sequence], task_dict: dict) -> list[str]:
        """Answers to chat requests' `args`, in request order."""
        requests = [read_request(i, args, task_dict) for i, args in enumerate(requests_args)]
        groups = group_requests(requests)
        for group in groups:
            _check_readable(group)
        answers: list[str | None] = [None] * len(requests)
        for n, group in enumerate(groups):
            t0 = time.perf_counter()
            for request, text in self._answer_group(group):
                answers[request.index] = cut_at_stop(text, request.decoding.until)
            log.info("%s: %d question(s) in %.2f s (%d/%d)", group.visual.describe(), len(group.requests),
                     time.perf_counter() - t0, n + 1, len(groups))
        assert all(a is not None for a in answers)
        return answers  # type: ignore[return-value]

    def _answer_group(self, group: Group) -> list[tuple[Request, str]]:
        loaded = _load(group.visual, self.settings, item_id=f"group-{self.stats['groups']}")
        self.stats["groups"] += 1
        features = self.stage.features(loaded)
        self.stats["cache_hits" if features.cache == "hit" else "encoded"] += 1
        model = self.model
        prefix = model.prefill(model.fuse(features.encoded))
        out: list[tuple[Request, str]] = []
        for max_new_tokens, requests in group.by_max_new_tokens():
            by_index = {r.index: r for r in requests}
            names = {r.index: r.name for r in requests}
            answers, failures = answer_questions(
                model, prefix, [(r.index, r.prompt) for r in requests], batch_size=self.settings.batch_size,
                max_new_tokens=max_new_tokens, name=names.__getitem__,
            )
            if failures:
                raise QuestionError(failures[0].error)
            out.extend((by_index[a.key], a.text) for a in answers)
            self.stats["questions"] += len(answers)
        features.settle()  # the cache entry is written (or its failure logged) before we go on
        return out


def _check_readable(group: Group) -> None:
    """Cheap checks before any encoding, so that a missing file stops the run before hours of work."""
    from ... import video

    visual, first = group.visual, group.requests[0].name
    if visual.kind == "pixels":
        return
    for path in visual.paths:
        if not os.path.isfile(path):
            raise SceneError(f"{first}: {'video' if visual.kind == 'video' else 'image'} {path} does not exist")
    if visual.kind == "video":
        try:
            video.count_frames(visual.paths[0])
        except SceneError as exc:
            raise SceneError(f"{first}: {exc.message}") from None


def _scene(visual: Visual) -> SceneRef:
    if visual.kind == "video":
        path = Path(visual.paths[0])
        return SceneRef(key=path.stem, path=path, kind="video", dataset=None, scene_name=path.stem)
    first = Path(visual.paths[0])
    return SceneRef(key=first.stem, path=first.parent, kind="images", dataset=None, scene_name=first.stem,
                    images=visual.paths)


def _load(visual: Visual, settings: JobSettings, *, item_id: str) -> LoadedItem:
    """A group's frames (or its cache entry's key), as the load stage of `spacemind answer` reads a scene."""
    if visual.kind == "pixels":
        return _load_pixels(visual, settings, item_id)
    loaded = load_item(WorkItem(item_id, _scene(visual)), settings)
    if loaded.info.status == "failed":
        raise SceneError(loaded.info.error or f"{visual.describe()}: cannot be read")
    return loaded


def _load_pixels(visual: Visual, settings: JobSettings, item_id: str) -> LoadedItem:
    """In-memory images (image tasks hand over PIL images): sampled like an image list, keyed by
    their pixels."""
    import numpy as np

    from ...fingerprint import text_digest
    from ...jobs.stages.load import job_cache, unusable_entry
    from ...models.preprocess import PreprocessConfig, prepare
    from ...scenes import sample_indices

    digest = text_digest(list(visual.key[1]))
    key = settings.feature_key(digest)
    scene = SceneRef(key=f"pixels@{digest[:10]}", path=Path("."), kind="images", dataset=None,
                     scene_name=f"pixels@{digest[:10]}")
    item = WorkItem(item_id, scene)
    if settings.cache and unusable_entry(job_cache(settings.cache), key, settings.encoder_fingerprint) is None:
        return LoadedItem(item, LoadInfo(status="cached", key=key, scene_digest=digest))
    indices = sample_indices(len(visual.images), settings.frame_sampling)
    frames = [np.asarray(visual.images[i].convert("RGB"), dtype=np.uint8) for i in indices]
    meta = {"scene_key": scene.key, "dataset": None, "scene_name": scene.scene_name, "source_path": None,
            "frame_indices": indices, "num_frames": len(frames), "total_frames": len(visual.images),
            "requested_frames": settings.num_frames, "image_sizes": [[int(f.shape[0]), int(f.shape[1])] for f in frames],
            "notes": []}
    prepared = prepare(frames, PreprocessConfig.from_dict(settings.preprocess))
    return LoadedItem(item, LoadInfo(status="ok", key=key, scene_digest=digest, meta=meta), prepared)
