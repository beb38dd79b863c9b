"""Scenes: where they live, how their frames are sampled, and how frames are read.

A scene is a video file or a folder of frames. A scenes root is either flat
(`ROOT/<scene>.mp4`, `ROOT/<scene>/`) or VSI-Bench style (`ROOT/<dataset>/<scene_name>.mp4`
or folder). A scene is identified by its path relative to the root, without the video
extension (`scannet/scene0011_00`), which is also its `scene_key` in outputs.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .defaults import DEFAULTS
from .errors import InputError, SceneError

log = logging.getLogger(__name__)

VIDEO_EXTS = (".mp4", ".mov", ".mkv", ".avi", ".webm")
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
SAMPLING_STRATEGIES = ("paper", "uniform", "all")

# Frames larger than this (either side) are reduced while decoding, before preprocessing; the
# models see at most 518 px, and an 8000x6000 frame would otherwise cost ~150 MB per frame.
MAX_DECODE_SIDE = 2048


@dataclass(frozen=True)
class SceneRef:
    key: str  # path relative to the root, POSIX, video extension dropped: "scannet/scene0011_00"
    path: Path
    kind: str  # "video" | "frames" | "images" (an explicit list of image files, e.g. SPBench)
    dataset: str | None
    scene_name: str
    images: tuple[str, ...] = ()  # kind "images": absolute paths, in order

    def describe(self) -> str:
        return f"scene {self.key} ({self.path})"


@dataclass(frozen=True)
class Sampling:
    num_frames: int = DEFAULTS.num_frames
    strategy: str = DEFAULTS.sampling

    def __post_init__(self):
        if self.strategy not in SAMPLING_STRATEGIES:
            raise InputError(f"unknown frame sampling {self.strategy!r}; choose one of {', '.join(SAMPLING_STRATEGIES)}")
        if self.strategy != "all" and self.num_frames < 1:
            raise InputError(f"--num-frames must be >= 1, got {self.num_frames}")

    def to_dict(self) -> dict:
        return {"num_frames": self.num_frames, "strategy": self.strategy}


@dataclass
class Clip:
    """The sampled frames of one scene, in order, as HxWx3 uint8 RGB arrays."""

    scene: SceneRef
    frames: list[np.ndarray]
    indices: list[int]  # index of each frame in the full clip
    total_frames: int
    requested: int  # how many frames sampling asked for (total for "all")
    notes: list[str] = field(default_factory=list)

    @property
    def short(self) -> bool:
        return len(self.frames) < self.requested

    @property
    def image_sizes(self) -> list[list[int]]:
        return [[int(f.shape[0]), int(f.shape[1])] for f in self.frames]


def natural_key(name: str):
    """Sort key putting 2.png before 10.png."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def _is_video(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in VIDEO_EXTS


def _frame_files(folder: Path) -> list[Path]:
    files = [
        p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS and not p.name.startswith(".")
    ]
    # The name breaks ties ("01.png" and "1.png" have one natural key) whatever the listing order.
    return sorted(files, key=lambda p: (natural_key(p.name), p.name))


def _has_frames(folder: Path) -> bool:
    try:
        return any(p.suffix.lower() in IMAGE_EXTS and p.is_file() for p in folder.iterdir())
    except OSError:
        return False


def _ref(root: Path, path: Path, kind: str) -> SceneRef:
    rel = path.relative_to(root)
    parts = list(rel.parts)
    if kind == "video":
        parts[-1] = Path(parts[-1]).stem
    key = "/".join(parts)
    dataset = parts[0] if len(parts) >= 2 else None
    return SceneRef(key=key, path=path, kind=kind, dataset=dataset, scene_name=parts[-1])


def check_root(root: str | os.PathLike) -> Path:
    root = Path(root)
    if not root.exists():
        raise InputError(f"scenes root {root} does not exist")
    if not root.is_dir():
        raise InputError(f"scenes root {root} is not a directory")
    return root


def discover_scenes(root: str | os.PathLike) -> list[SceneRef]:
    """Every scene under the root (flat or VSI-Bench layout), sorted by key.

    A folder is a scene when it directly holds frames; otherwise, one level below the root,
    it is a dataset folder whose videos and frame folders are scenes.
    """
    root = check_root(root)
    scenes: list[SceneRef] = []
    for entry in sorted(root.iterdir(), key=lambda p: natural_key(p.name)):
        if entry.name.startswith("."):
            continue
        if _is_video(entry):
            scenes.append(_ref(root, entry, "video"))
        elif entry.is_dir():
            if _has_frames(entry):
                scenes.append(_ref(root, entry, "frames"))
                continue
            for sub in sorted(entry.iterdir(), key=lambda p: natural_key(p.name)):
                if sub.name.startswith("."):
                    continue
                if _is_video(sub):
                    scenes.append(_ref(root, sub, "video"))
                elif sub.is_dir() and _has_frames(sub):
                    scenes.append(_ref(root, sub, "frames"))
    return scenes


def _candidates(target: str) -> list[Path]:
    if Path(target).suffix.lower() in VIDEO_EXTS:
        return [Path(target)]
    return [Path(target)] + [Path(target + ext) for ext in VIDEO_EXTS + tuple(e.upper() for e in VIDEO_EXTS)]


def _inside(base: str, rel: str, label: str, root) -> str:
    if os.path.isabs(rel) or "\x00" in rel:
        raise SceneError(f"{label} must be a path relative to the scenes root")
    target = os.path.realpath(os.path.join(base, rel))
    if target != base and not target.startswith(base + os.sep):
        raise SceneError(f"{label} escapes the scenes root {root}")
    return target


def resolve_images(root: str | os.PathLike, images: list, *, dataset=None, scene_name=None) -> SceneRef:
    """A scene given as an explicit, ordered list of image files (relative to the root)."""
    from .fingerprint import text_digest

    base = os.path.realpath(root)
    paths = []
    for item in images:
        rel = item.get("path") if isinstance(item, dict) else item
        if not isinstance(rel, str) or not rel:
            raise SceneError("field 'images' must list image paths relative to the scenes root")
        target = _inside(base, rel, f"image {rel!r}", root)
        if not os.path.isfile(target):
            raise SceneError(f"image {rel!r} not found under {root}")
        paths.append(target)
    if not paths:
        raise SceneError("field 'images' is empty")
    name = scene_name or Path(paths[0]).stem
    key = f"{dataset + '/' if dataset else ''}{name}@{text_digest([os.path.relpath(p, base) for p in paths])[:10]}"
    return SceneRef(key=key, path=Path(base), kind="images", dataset=dataset, scene_name=name, images=tuple(paths))


def resolve_scene(
    root: str | os.PathLike,
    *,
    dataset: str | None = None,
    scene_name: str | None = None,
    scene: str | None = None,
    images: list | None = None,
) -> SceneRef:
    """Find the scene a question names: `images` (a list of files), `scene` (a path relative to
    the root) or `dataset` + `scene_name`. Raises SceneError naming what was looked for."""
    root = Path(root)
    if images:
        return resolve_images(root, images, dataset=dataset, scene_name=scene_name)
    if scene:
        rel = str(scene)
        label = f"scene {rel!r}"
    elif scene_name:
        rel = f"{dataset}/{scene_name}" if dataset else str(scene_name)
        label = f"scene {rel!r}"
    else:
        raise SceneError("question names no scene (needs `scene`, or `dataset` + `scene_name`)")
    base = os.path.realpath(root)
    target = _inside(base, rel, label, root)
    if target == base:
        raise SceneError(f"{label} is the scenes root itself, not a scene")
    candidates = _candidates(target)
    if dataset and scene_name and not scene:
        # VSI-Bench rows over a flat root: fall back to ROOT/<scene_name>.
        flat = os.path.realpath(os.path.join(base, str(scene_name)))
        if flat.startswith(base + os.sep):
            candidates += _candidates(flat)
    for cand in candidates:
        # `target` is resolved, but `target + ".mp4"` may be a symlink pointing outside.
        if os.path.lexists(cand) and not os.path.realpath(cand).startswith(base + os.sep):
            raise SceneError(f"{label} escapes the scenes root {root}")
        if _is_video(cand):
            return _ref(Path(base), cand, "video")
        if cand.is_dir():
            return _ref(Path(base), cand, "frames")
    raise SceneError(f"{label} not found under {root}")


def sample_indices(total: int, sampling: Sampling) -> list[int]:
    """Deterministic frame indices.

    paper: N+2 points uniformly over the clip, first and last dropped (SpaceMind, N=32).
    uniform: N points uniformly over the clip, both ends included.
    all: every frame.
    A clip shorter than asked yields each of its frames once.
    """
    if total <= 0:
        return []
    n = sampling.num_frames
    if sampling.strategy == "all" or total <= n:
        return list(range(total))
    if sampling.strategy == "paper":
        points = np.linspace(0, total - 1, n + 2)[1:-1]
    else:
        points = np.linspace(0, total - 1, n)
    indices = np.round(points).astype(int).tolist()
    # Rounding can merge neighbours when total is close to n (paper, total == n + 1): move a
    # repeat to the next free frame, so a clip with enough frames still gives n distinct ones.
    out: list[int] = []
    for k, i in enumerate(indices):
        lo = out[-1] + 1 if out else 0
        hi = total - (len(indices) - k)
        out.append(min(max(i, lo), hi))
    return out


def load_clip(scene: SceneRef, sampling: Sampling) -> Clip:
    """Read the sampled frames of a scene. Raises SceneError naming the scene and reason."""
    from . import images, video

    notes: list[str] = []
    if scene.kind == "video":
        total = video.count_frames(scene.path)
        indices = sample_indices(total, sampling)
        frames = video.read_frames(scene.path, indices)
        if len(frames) < len(indices):
            # The file ends before its header says (truncated): the frames read are the first
            # sampled ones, so `indices` keeps matching `frames`.
            notes.append(
                f"video ends before its stated {total} frames; read {len(frames)} of the {len(indices)} sampled"
            )
            indices = indices[: len(frames)]
    elif scene.kind == "images":
        total = len(scene.images)
        indices = sample_indices(total, sampling)
        frames = [images.load_rgb(scene.images[i], max_side=MAX_DECODE_SIDE) for i in indices]
    else:
        files = _frame_files(scene.path) if scene.path.is_dir() else []
        if not files:
            raise SceneError(f"{scene.describe()}: frame folder holds no images ({', '.join(IMAGE_EXTS)})")
        total = len(files)
        indices = sample_indices(total, sampling)
        frames = [images.load_rgb(files[i], max_side=MAX_DECODE_SIDE) for i in indices]
    if not frames:
        raise SceneError(f"{scene.describe()}: no frames could be read")
    requested = total if sampling.strategy == "all" else sampling.num_frames
    clip = Clip(scene=scene, frames=frames, indices=indices, total_frames=total, requested=requested, notes=notes)
    if clip.short:
        clip.notes.append(f"clip has {total} frames; used {len(frames)} of the {requested} asked for")
        log.info("%s: %s", scene.key, clip.notes[-1])
    return clip


def scene_files(scene: SceneRef) -> list[Path]:
    """The files whose content defines the scene (for content fingerprints)."""
    if scene.kind == "video":
        return [scene.path]
    if scene.kind == "images":
        return [Path(p) for p in scene.images]
    return _frame_files(scene.path)
