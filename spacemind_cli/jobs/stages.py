"""The stages every executor runs (Ray Data and the in-process local executor alike).

Data between stages is a batch: a dict of equal-length numpy columns, as Ray Data hands to
`map_batches`. Each row is one work item (a scene, with some of its questions):

    item     JSON  {"item_id", "scene": {...}, "questions": [{"index", "qid", "prompt"}]}
    load     JSON  what the load stage found: status ok|cached|failed, cache key, clip metadata
    payload  bytes both encoders' preprocessed uint8 frames (empty when cached or failed)
    result   JSON  what the model stage produced: answers (or extract status), timings

Stage 1, `load_batch` (CPU): fingerprint the scene, look its features up in the cache, and only
when they are missing decode the sampled frames and preprocess them.
Stage 2, `ModelStage` (one per GPU, model loaded once): features from the cache or the
encoders, then CGMF, one prefill per scene, batched greedy decoding.
Nothing here prints; failures of one item are results, never exceptions.
"""

from __future__ import annotations

import io
import json
import logging
import os
import socket
import time
from pathlib import Path

import numpy as np

from ..errors import CacheError, ResourceError, SpacemindError
from ..fingerprint import files_digest
from ..scenes import SceneRef, load_clip, scene_files
from .settings import JobSettings

log = logging.getLogger(__name__)

COLUMNS = ("item", "load", "payload", "result")


# ---------------------------------------------------------------- batches <-> items


def items_to_batch(items: list[dict]) -> dict[str, np.ndarray]:
    return {"item": np.array([json.dumps(i) for i in items], dtype=object)}


def batch_rows(batch: dict[str, np.ndarray]) -> list[dict]:
    n = len(batch["item"])
    return [{k: batch[k][i] for k in batch} for i in range(n)]


def rows_to_batch(rows: list[dict]) -> dict[str, np.ndarray]:
    keys = rows[0].keys() if rows else COLUMNS
    return {k: np.array([r[k] for r in rows], dtype=object) for k in keys}


def pack_arrays(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def unpack_arrays(data: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


def scene_from_dict(d: dict) -> SceneRef:
    return SceneRef(
        key=d["key"],
        path=Path(d["path"]),
        kind=d["kind"],
        dataset=d.get("dataset"),
        scene_name=d["scene_name"],
        images=tuple(d.get("images") or ()),
    )


def scene_to_dict(scene: SceneRef) -> dict:
    return {
        "key": scene.key,
        "path": str(scene.path),
        "kind": scene.kind,
        "dataset": scene.dataset,
        "scene_name": scene.scene_name,
        "images": list(scene.images),
    }


# ---------------------------------------------------------------- stage 1: load


def scene_digest(scene: SceneRef) -> str:
    """Content fingerprint of a scene: its video's bytes, or its ordered frame files' bytes."""
    files = scene_files(scene)
    if not files:
        raise SpacemindError(f"{scene.describe()}: no frames")
    return files_digest(files, [os.path.relpath(f, scene.path) if scene.kind != "video" else "video" for f in files])


def read_scene(scene: SceneRef, settings: JobSettings) -> tuple[dict, bytes, dict]:
    """Decode + preprocess one scene: (clip metadata, packed uint8 frames, timings)."""
    from ..models.preprocess import PreprocessConfig, vggt_frames, vit_frames

    cfg = PreprocessConfig.from_dict(settings.preprocess)
    t0 = time.perf_counter()
    clip = load_clip(scene, settings.frame_sampling)
    t1 = time.perf_counter()
    payload = pack_arrays({"vggt": vggt_frames(clip.frames, cfg), "vit": vit_frames(clip.frames, cfg)})
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
    return meta, payload, {"read_frames_s": t1 - t0, "preprocess_s": t2 - t1}


def _load_one(item: dict, settings: JobSettings) -> tuple[dict, bytes]:
    scene = scene_from_dict(item["scene"])
    info: dict = {"status": "failed", "key": None, "error": None, "meta": None, "timing": {}}
    try:
        t0 = time.perf_counter()
        digest = scene_digest(scene)
        info["key"] = settings.feature_key(digest)
        info["scene_digest"] = digest
        info["timing"]["hash_s"] = time.perf_counter() - t0
        if settings.cache:
            problem = _unusable_entry(_cache(settings.cache), info["key"], settings.encoder_fingerprint,
                                      verify=settings.verify_cached)
            if problem is None:
                info["status"] = "cached"
                return info, b""
            if problem != "absent":  # read the scene and overwrite the entry (never use it)
                log.warning("cache entry for %s is unusable (%s); recomputing it", scene.key, problem)
                info["refresh"] = problem
        meta, payload, timing = read_scene(scene, settings)
        info.update(status="ok", meta=meta)
        info["timing"].update(timing)
        return info, payload
    except SpacemindError as exc:
        info["error"] = exc.message
    except Exception as exc:  # an unexpected decoder failure must not take the job down
        log.exception("loading %s failed", scene.key)
        info["error"] = f"{scene.describe()}: {type(exc).__name__}: {exc}"
    return info, b""


def _unusable_entry(cache, key: str, fingerprint: str, verify: bool = False) -> str | None:
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
        from ..models.spacemind import EncoderOutputs

        return cache.check(key, tensor_names=EncoderOutputs.TENSORS)
    return None


def load_batch(batch: dict[str, np.ndarray], settings: JobSettings) -> dict[str, np.ndarray]:
    """Stage 1 over a batch (Ray Data task or local executor)."""
    rows = []
    for item_json in batch["item"]:
        item = json.loads(item_json)
        info, payload = _load_one(item, settings)
        rows.append({"item": item_json, "load": json.dumps(info), "payload": payload})
    return rows_to_batch(rows)


_caches: dict[str, object] = {}


def _cache(root: str):
    from ..cache import FeatureCache

    if root not in _caches:
        _caches[root] = FeatureCache(root, create=True)
    return _caches[root]


def open_job_cache(root: str):
    """Open (or create) a job's feature cache before any work starts, so that a refused cache
    (foreign schema, corrupt manifest, read-only) stops the job with its own error and exit code,
    and remove the temp files of writers that died on this host. The stages of this process then
    use this fresh handle (a long-lived process must not keep a stale manifest)."""
    from ..cache import FeatureCache

    cache = FeatureCache(root, create=True)
    try:
        cache.clean_temp(older_than=None)
    except ResourceError as exc:  # a read-only cache can still serve hits
        log.warning("%s", exc.message)
    _caches[root] = cache
    return cache


# ---------------------------------------------------------------- stage 2: model


def _node_id() -> str:
    try:
        import ray

        if ray.is_initialized():
            return ray.get_runtime_context().get_node_id()
    except Exception:
        pass
    return socket.gethostname()


class ModelStage:
    """Per GPU: the model loaded once, then items in, results out.

    mode "answer": features (cache or encoders), CGMF, one prefill per scene, batched decoding.
    mode "extract": features only, written to the cache.
    """

    def __init__(self, settings: JobSettings, mode: str = "answer"):
        import torch

        from ..models.spacemind import SpaceMind
        from ..runtime import compute_dtype, pick_device

        self.settings = settings
        self.mode = mode
        self.device = pick_device(settings.device)
        if self.device == "cpu":
            torch.set_num_threads(settings.cpu_threads or len(os.sched_getaffinity(0)))
        dtype = compute_dtype(self.device, settings.dtype)
        t0 = time.perf_counter()
        # extract needs only the encoders; answering from a cache may never need VGGT
        self.model = SpaceMind.from_pretrained(
            settings.checkpoint,
            device=self.device,
            dtype=dtype,
            trusted_paths=settings.trusted_paths,
            llm=mode == "answer",
            lazy_vggt=mode == "answer" and bool(settings.cache),
            vggt_weights=settings.vggt_weights,
        )
        self.load_s = time.perf_counter() - t0
        if self.model.encoder_fingerprint != settings.encoder_fingerprint:
            # The checkpoint changed between planning and loading: keys would lie.
            raise CacheError(
                f"checkpoint {settings.checkpoint} changed while the job ran (encoder fingerprint differs); rerun"
            )
        self.cache = _cache(settings.cache) if settings.cache else None
        self.write_error: str | None = None
        self.actor = {"node": _node_id(), "pid": os.getpid(), "device": self.device,
                      "threads": torch.get_num_threads() if self.device == "cpu" else None}
        self._torch = torch

    # -- features
    def _features(self, item: dict, load: dict, payload: bytes):
        """(EncoderOutputs, clip meta, cache status, timings) for one item."""
        from ..models.preprocess import PreparedClip
        from ..models.spacemind import EncoderOutputs

        timing: dict = {}
        key = load.get("key")
        if load["status"] == "cached" and self.cache is not None:
            t0 = time.perf_counter()
            try:
                entry = self.cache.get(key, device=self.device, fingerprint=self.settings.encoder_fingerprint,
                                       tensor_names=EncoderOutputs.TENSORS)
            except CacheError as exc:
                log.warning("%s; recomputing it", exc.message)
                entry, status = None, "refreshed"
            else:
                status = "hit" if entry is not None else "miss"
            timing["cache_read_s"] = time.perf_counter() - t0
            if entry is not None:
                return EncoderOutputs.from_tensors(entry.tensors), entry.meta, "hit", timing
            # Gone or corrupt since the load stage looked: read the scene here.
            meta, payload, t = read_scene(scene_from_dict(item["scene"]), self.settings)
            timing.update(t)
        else:
            meta = load["meta"]
            status = "none" if self.cache is None else "refreshed" if load.get("refresh") else "miss"
        arrays = unpack_arrays(payload)
        t0 = time.perf_counter()
        enc = self.model.encode(PreparedClip(vggt=arrays["vggt"], vit=arrays["vit"]))
        self._sync()
        timing["encode_s"] = time.perf_counter() - t0
        if self.cache is not None and self.settings.write_cache:
            t0 = time.perf_counter()
            try:
                self.cache.put(
                    key,
                    {**meta, "dtype": self.settings.dtype, "layers": list(self.settings.vggt_layers)},
                    enc.tensors(),
                    fingerprint=self.settings.encoder_fingerprint,
                    describe={"checkpoint": self.settings.checkpoint},
                )
            except ResourceError as exc:
                # Answers still come out; the cache just stays without this scene. (extract,
                # whose only product is the cache, fails the job instead: see process.)
                log.warning("%s", exc.message)
                status = "write-failed"
                self.write_error = exc.message
            timing["cache_write_s"] = time.perf_counter() - t0
        return enc, meta, status, timing

    def _sync(self):
        if self.device.startswith("cuda"):
            self._torch.cuda.synchronize()

    # -- one item
    def process(self, item: dict, load: dict, payload: bytes) -> dict:
        result: dict = {"item_id": item["item_id"], "actor": self.actor}
        if load["status"] == "failed":
            return {**result, "status": "failed", "error": load["error"]}
        if self.mode == "extract" and load["status"] == "cached":
            return {**result, "status": "cached", "key": load["key"]}
        try:
            enc, meta, cache_status, timing = self._features(item, load, payload)
        except SpacemindError as exc:
            return {**result, "status": "failed", "error": exc.message}
        timing.update({k: v for k, v in load.get("timing", {}).items()})
        result.update(status="ok", key=load["key"], meta=meta, cache=cache_status)
        if self.mode == "extract":
            if cache_status == "write-failed":  # disk full, read-only: nothing was stored
                return {**result, "status": "failed", "error": self.write_error, "resource_error": True}
            return {**result, "timing": timing}

        t0 = time.perf_counter()
        fused = self.model.fuse(enc)
        self._sync()
        timing["fuse_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        prefix = self.model.prefill(fused)
        self._sync()
        timing["prefill_s"] = time.perf_counter() - t0

        answers: list[dict] = []
        question_errors: list[dict] = []  # one bad question must not take its scene-mates down
        questions = []
        for q in item["questions"]:
            problem = self._too_long(q, prefix.length)
            if problem:
                question_errors.append({"index": q["index"], "qid": q["qid"], "error": problem})
            else:
                questions.append(q)
        bs = max(1, self.settings.batch_size)
        for start in range(0, len(questions), bs):
            self._generate(prefix, questions[start : start + bs], answers, question_errors)
        result["answers"] = answers
        if question_errors:
            result["question_errors"] = question_errors
        result["timing"] = timing
        return result

    def _context_limit(self) -> int | None:
        cfg = self.model.internvl.config
        limit = getattr(getattr(cfg, "text_config", cfg), "max_position_embeddings", None)
        return int(limit) if isinstance(limit, int) and limit > 0 else None

    def _too_long(self, q: dict, prefix_len: int) -> str | None:
        """Why a question cannot fit the language model's context, or None. Checked before any
        batch is built: an oversized prompt would otherwise be padded into its batch and ask for
        memory quadratic in its length, failing every question of the scene."""
        limit = self._context_limit()
        if limit is None:
            return None
        n = len(self.model.suffix_ids(q["prompt"]))
        need = prefix_len + n + self.settings.max_new_tokens
        if need <= limit:
            return None
        return (
            f"question {q['qid']}: its prompt is {n} tokens; with the {prefix_len}-token visual prefix and "
            f"{self.settings.max_new_tokens} new tokens that is {need}, over the model's context of {limit} tokens"
        )

    def _generate(self, prefix, chunk: list[dict], answers: list[dict], question_errors: list[dict]) -> None:
        """Decode one batch; if it fails, each of its questions alone, so only the culprit fails."""
        t0 = time.perf_counter()
        try:
            texts = self.model.generate(prefix, [q["prompt"] for q in chunk], max_new_tokens=self.settings.max_new_tokens)
        except Exception as exc:
            if len(chunk) > 1:
                log.warning("a batch of %d questions failed (%s: %s); answering them one by one",
                            len(chunk), type(exc).__name__, " ".join(str(exc).split())[:200])
                for q in chunk:
                    self._generate(prefix, [q], answers, question_errors)
                return
            log.exception("question %s failed", chunk[0]["qid"])
            reason = " ".join(f"{type(exc).__name__}: {exc}".split())[:500]
            question_errors.append({"index": chunk[0]["index"], "qid": chunk[0]["qid"], "error": f"question {chunk[0]['qid']}: {reason}"})
            return
        dt = time.perf_counter() - t0
        for q, text in zip(chunk, texts):
            answers.append({"index": q["index"], "qid": q["qid"], "prediction": text, "generate_s": dt, "batch": len(chunk)})

    def peak_memory(self) -> int | None:
        if self.device.startswith("cuda"):
            return int(self._torch.cuda.max_memory_allocated())
        return None

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = []
        for row in batch_rows(batch):
            item, load = json.loads(row["item"]), json.loads(row["load"])
            try:
                result = self.process(item, load, row["payload"])
            except Exception as exc:  # keep the actor alive for the other items
                log.exception("item %s failed", item.get("item_id"))
                result = {"item_id": item.get("item_id"), "status": "failed", "error": f"{type(exc).__name__}: {exc}"}
            result["actor"] = {**self.actor, "peak_memory": self.peak_memory(), "load_s": self.load_s}
            out.append({"item": row["item"], "result": json.dumps(result)})
        return rows_to_batch(out)
