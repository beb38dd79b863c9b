"""JPEG thumbnails of exactly the frames each scene was answered from, cached by content.

A thumbnail's file name hashes what it shows: its source file's identity (resolved path, size and
modification time: read from the file system, never from the file's bytes, so a huge file named
like a frame costs nothing), the frame index within a video, the thumbnail size, the JPEG quality
and a format version. So a rebuild into the same report folder finds every thumbnail it made
before and decodes nothing, and a changed video (rewritten) gets new thumbnails. Only what
decoding needs is read. A file that resolves outside the scenes root (a symlink) is refused, as
`answer` refuses `../`.

    DIR/thumbs/<h[:2]>/<h>.jpg      h = 24 hex digits

Scenes are processed in parallel threads (PyAV and Pillow release the GIL while decoding and
resizing). A scene that cannot be found or read is a status with a one-line reason, never an
exception: the report marks it and goes on.
"""

from __future__ import annotations

import io
import logging
import os
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import EXIT_CACHE, EXIT_RESOURCE, EXIT_USAGE, SceneError, SpacemindError
from ..fingerprint import text_digest
from ..scenes import SceneRef, resolve_scene, scene_files

log = logging.getLogger(__name__)

THUMB_VERSION = 1  # bump when the thumbnail pixels would change for the same inputs
THUMBS_DIR = "thumbs"
THUMB_NAME = re.compile(r"^[0-9a-f]{24}\.jpg$")

# scene status values
OK, PARTIAL, MISSING, UNREADABLE, NO_FRAMES = "ok", "partial", "missing", "unreadable", "no-frames"
NOT_SHOWN = "not-shown"  # no scenes root given: the report is built without frames, by choice


@dataclass(frozen=True)
class ThumbConfig:
    size: int = 160  # longest side, pixels
    quality: int = 82  # JPEG quality
    workers: int = 0  # parallel scenes; 0 = min(4, CPUs)

    def n_workers(self) -> int:
        return self.workers if self.workers > 0 else max(1, min(4, os.cpu_count() or 1))


@dataclass
class SceneRequest:
    key: str
    fields: dict  # the row fields naming the scene (scene_key, scene, dataset, scene_name, images)
    indices: list[int]  # sorted, distinct


@dataclass
class SceneThumbs:
    key: str
    status: str  # ok | partial | missing | unreadable | no-frames
    note: str = ""  # one-line reason for anything but ok
    kind: str | None = None  # video | frames | images
    total_files: int | None = None  # frame files (frames/images scenes)
    frames: dict[int, tuple[str, int, int]] = field(default_factory=dict)  # index -> (path in DIR, w, h)
    decoded: int = 0  # thumbnails made in this build
    cached: int = 0  # thumbnails found from an earlier build


def locate(root: Path | None, fields: dict) -> SceneRef:
    """The scene a row was answered from: its `images` list, else its `scene_key` (the path the
    answer job resolved, relative to the root), else `scene` / `dataset` + `scene_name`."""
    if root is None:
        raise SceneError("no scenes root given (--scenes)")
    images = fields.get("images")
    name = fields.get("scene_name") or fields.get("scene_id")
    if isinstance(images, list) and images:
        return resolve_scene(root, images=images, dataset=fields.get("dataset"), scene_name=name)
    key = fields.get("scene_key")
    first_error: SceneError | None = None
    if isinstance(key, str) and key:
        try:
            return resolve_scene(root, scene=key)
        except SceneError as exc:
            first_error = exc
    scene = fields.get("scene") if isinstance(fields.get("scene"), str) else None
    if scene or name:
        try:
            return resolve_scene(root, scene=scene, dataset=fields.get("dataset"), scene_name=name)
        except SceneError as exc:
            first_error = first_error or exc
    raise first_error or SceneError("the answers name no scene (scene_key, scene or dataset + scene_name)")


def thumb_name(source_digest: str, index: int | None, cfg: ThumbConfig) -> str:
    h = text_digest([THUMB_VERSION, source_digest, index, cfg.size, cfg.quality])[:24]
    return f"{THUMBS_DIR}/{h[:2]}/{h}.jpg"


def _valid_jpeg(path: Path) -> tuple[int, int] | None:
    """(w, h) of a complete thumbnail from an earlier build, else None (absent, empty, torn)."""
    from PIL import Image

    try:
        with open(path, "rb") as fh:
            fh.seek(-2, os.SEEK_END)
            if fh.read(2) != b"\xff\xd9":
                return None
        with Image.open(path) as img:
            return img.size
    except (OSError, ValueError, SyntaxError):
        return None


def _encode(frame, cfg: ThumbConfig) -> tuple[bytes, int, int]:
    """HxWx3 uint8 -> (JPEG bytes, w, h), longest side cfg.size."""
    from PIL import Image

    img = Image.fromarray(frame)
    img.thumbnail((cfg.size, cfg.size), Image.Resampling.BILINEAR, reducing_gap=2.0)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=cfg.quality, optimize=True)
    return buf.getvalue(), img.width, img.height


def _write(out_dir: Path, rel: str, data: bytes) -> None:
    from ..files import atomic_write_bytes

    # Not fsynced: a thumbnail is cheap to remake, and a torn one fails `_valid_jpeg` next time.
    atomic_write_bytes(out_dir / rel, data, durable=False)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, SpacemindError):
        return exc.message
    return " ".join((str(exc) or type(exc).__name__).split())


def scene_thumbnails(req: SceneRequest, root: Path | None, out_dir: Path, cfg: ThumbConfig) -> SceneThumbs:
    """Thumbnails of one scene's requested frames: reused when present, else decoded."""
    res = SceneThumbs(req.key, OK)
    if not req.indices:
        res.status, res.note = NO_FRAMES, "the answers list no frame_indices for this scene"
        return res
    try:
        scene = locate(root, req.fields)
    except SceneError as exc:
        res.status, res.note = MISSING, exc.message
        return res
    assert root is not None  # locate refuses a missing root
    res.kind = scene.kind
    problems: list[str] = []
    try:
        files = scene_files(scene)
        if scene.kind == "video":
            _inside_root(scene.path, root)
            digest = _identity(scene.path)
            names = {i: thumb_name(digest, i, cfg) for i in req.indices}
        else:
            res.total_files = len(files)
            names = {}
            for i in req.indices:
                if 0 <= i < len(files):
                    try:
                        _inside_root(files[i], root)
                    except SceneError as exc:  # that frame only: the others are still shown
                        problems.append(exc.message)
                        continue
                    names[i] = thumb_name(_identity(files[i]), None, cfg)
    except (OSError, SpacemindError) as exc:
        res.status, res.note = UNREADABLE, f"{scene.describe()}: {_reason(exc)}"
        return res

    todo = []
    for i, rel in names.items():
        size = _valid_jpeg(out_dir / rel)
        if size:
            res.frames[i] = (rel, *size)
            res.cached += 1
        else:
            todo.append(i)
    if todo:
        try:
            for i, frame in _decode(scene, files, todo, cfg, problems):  # todo: only files inside the root
                data, w, h = _encode(frame, cfg)
                _write(out_dir, names[i], data)
                res.frames[i] = (names[i], w, h)
                res.decoded += 1
        except SceneError as exc:
            problems.append(exc.message)
    lost = [i for i in req.indices if i not in res.frames]
    if lost:
        shown = ", ".join(map(str, lost[:8])) + (" ..." if len(lost) > 8 else "")
        why = "; ".join(problems) if problems else f"{scene.describe()}: frames past the end of the scene"
        res.status = PARTIAL if res.frames else UNREADABLE
        res.note = f"{len(lost)} of {len(req.indices)} frames unavailable ({shown}): {why}"
    return res


# Frames decoded per PyAV call: each call demuxes the clip once more and seeks, so fewer calls
# are faster; but decoded frames are held until the call returns (a 1920x1440 frame is 8 MB).
# The first call reads a few frames, which tells the frame size; later calls read as many as fit
# in the memory budget.
_VIDEO_FIRST_CHUNK = 4
_VIDEO_CHUNK_BYTES = 128 << 20


def _identity(path: Path) -> str:
    """What a thumbnail of `path` shows, from the file system alone: its resolved path, size and
    modification time (a rewritten file gets new thumbnails; its bytes are never hashed)."""
    st = os.stat(path)
    return text_digest([os.path.realpath(path), st.st_size, st.st_mtime_ns])


def _inside_root(path: Path, root: Path) -> None:
    """A file the report reads must resolve inside the scenes root (a symlink out is refused)."""
    base = os.path.realpath(root)
    if not os.path.realpath(path).startswith(base + os.sep):
        raise SceneError(f"{path} escapes the scenes root {root}")


def _decode(scene: SceneRef, files: list[Path], indices: list[int], cfg: ThumbConfig, problems: list[str]):
    """Yields (index, HxWx3 uint8) for the frames that can be read, in index order."""
    from .. import images, video

    if scene.kind == "video":
        wanted = sorted(indices)
        start, chunk = 0, _VIDEO_FIRST_CHUNK
        while start < len(wanted):
            part = wanted[start : start + chunk]
            frames = video.read_frames(scene.path, part)
            # read_frames returns the frames found in the order asked; reading stops at the end
            # of the stream, so the frames found are the first len(frames) of the sorted part.
            yield from zip(part, frames)
            if len(frames) < len(part):
                return
            start += len(part)
            chunk = max(_VIDEO_FIRST_CHUNK, _VIDEO_CHUNK_BYTES // max(1, frames[0].nbytes))
        return
    for i in indices:
        if not 0 <= i < len(files):
            continue
        try:
            # Decode small: JPEG draft mode lands near 4x the thumbnail, never a full 12 MP frame.
            yield i, images.load_rgb(files[i], max_side=4 * cfg.size)
        except SceneError as exc:
            problems.append(exc.message)


ProgressFn = Callable[[dict], None]


def make_thumbnails(
    requests: list[SceneRequest],
    root: Path | None,
    out_dir: Path,
    cfg: ThumbConfig,
    progress: ProgressFn | None = None,
) -> dict[str, SceneThumbs]:
    """Every scene's thumbnails, in parallel; progress({"done", "total", "cached", "failed", "scene"}).
    Without a scenes root, none: every scene is NOT_SHOWN (not a problem of the scene)."""
    if root is None:
        return {r.key: SceneThumbs(r.key, NOT_SHOWN, "built without frames (no --scenes)") for r in requests}
    out: dict[str, SceneThumbs] = {}  # filled by this thread only, as results come in
    counts = {"cached": 0, "failed": 0}

    def one(req: SceneRequest) -> SceneThumbs:
        try:
            return scene_thumbnails(req, root, out_dir, cfg)
        except SpacemindError as exc:  # a full disk or a bad output path: the whole build stops
            if exc.exit_code in (EXIT_USAGE, EXIT_CACHE, EXIT_RESOURCE):
                raise
            return SceneThumbs(req.key, UNREADABLE, exc.message)
        except (OSError, ValueError, RuntimeError, MemoryError) as exc:
            return SceneThumbs(req.key, UNREADABLE, f"scene {req.key}: {_reason(exc)}")

    pool = ThreadPoolExecutor(max_workers=cfg.n_workers(), thread_name_prefix="thumbs")
    try:
        futures = {pool.submit(one, r): r for r in requests}
        for fut in as_completed(futures):
            res = fut.result()
            out[res.key] = res
            counts["cached"] += res.cached
            counts["failed"] += res.status in (MISSING, UNREADABLE)
            if progress:
                progress({"done": len(out), "total": len(requests), "scene": res.key, **counts})
    except BaseException:  # Ctrl-C or a full disk: stop now, do not work through the queue
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown()
    return out


def prune(out_dir: Path, keep: set[str]) -> int:
    """Remove thumbnails of earlier builds that this build no longer shows; only files named
    like ours, only under DIR/thumbs. Returns how many were removed."""
    base = out_dir / THUMBS_DIR
    removed = 0
    if not base.is_dir():
        return 0
    for shard in base.iterdir():
        if not (shard.is_dir() and re.fullmatch(r"[0-9a-f]{2}", shard.name)):
            continue
        for f in shard.iterdir():
            rel = f"{THUMBS_DIR}/{shard.name}/{f.name}"
            if THUMB_NAME.match(f.name) and rel not in keep:
                try:
                    f.unlink()
                    removed += 1
                except OSError:
                    pass
        try:
            shard.rmdir()  # only when empty
        except OSError:
            pass
    return removed
