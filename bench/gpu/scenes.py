"""The end-to-end workload's scenes as files, read the way the answer job reads them.

  write_scene   one scene's source file(s): an H.264 video of `video_frames` frames when PyAV is
                installed (VSI-Bench ships videos), else a folder of JPEG frames (pillow only)
  read_scene    decode the sampled frames (`scenes.load_clip`, the paper's sampling) and preprocess
                them for both encoders (`models.preprocess.prepare`): what the job's loader does per
                scene (`jobs/stages/load.py: read_scene`), timed in two parts
  ReadAhead     the local executor's read-ahead (`jobs.stages.load_ahead`: scenes read on a
                thread while the model works), timing how long the model waits for each scene

The frames are the workload's synthetic ones (`bench.workload.synthetic_frames`): `frames` smooth
frames, each held for video_frames / frames frames of a slow pan (a 3-pixel shift per frame), so the
sampled frames are distinct. Short, smooth clips decode faster than real scans: the loader's time
here is a lower bound for a real video of the same frame size.
"""

from __future__ import annotations

import importlib.util
import time
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from pathlib import Path

import numpy as np

FPS = 24
PAN_PX = 3  # horizontal shift per source frame


def has_pyav() -> bool:
    return importlib.util.find_spec("av") is not None


def source_frames(frames: int, video_frames: int, hw: tuple[int, int], seed: int) -> list[np.ndarray]:
    """video_frames RGB uint8 frames: `frames` synthetic frames, each held for a few frames of a pan."""
    from bench.workload import synthetic_frames

    base = synthetic_frames(frames, *hw, seed=seed)
    hold = max(1, video_frames // frames)
    out = []
    for j in range(max(video_frames, frames)):
        out.append(np.roll(base[min(j // hold, frames - 1)], PAN_PX * (j % hold), axis=1))
    return out


def write_scene(folder: Path, name: str, frames: list[np.ndarray], kind: str = "auto"):
    """Write one scene under `folder` -> its `SceneRef`. kind: video | frames | auto (video with PyAV)."""
    from spacemind_cli.scenes import SceneRef

    if kind == "auto":
        kind = "video" if has_pyav() else "frames"
    folder.mkdir(parents=True, exist_ok=True)
    if kind == "video":
        path = folder / f"{name}.mp4"
        _write_video(path, frames)
    elif kind == "frames":
        from PIL import Image

        path = folder / name
        path.mkdir(exist_ok=True)
        for i, frame in enumerate(frames):
            Image.fromarray(frame).save(path / f"{i:05d}.jpg", quality=90)
    else:
        raise ValueError(f"scene kind must be video, frames or auto, got {kind!r}")
    return SceneRef(key=f"bench/{name}", path=path, kind=kind, dataset="bench", scene_name=name)


def _write_video(path: Path, frames: list[np.ndarray]) -> None:
    import av

    h, w = frames[0].shape[:2]
    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    with av.open(str(path), mode="w", format="mp4") as container:
        stream = container.add_stream(codec, rate=FPS)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        if codec == "libx264":
            stream.options = {"crf": "23", "preset": "veryfast"}
        for i, img in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, FPS)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def describe(ref, video_frames: int, frames: int) -> str:
    what = "H.264 video (PyAV)" if ref.kind == "video" else "folder of JPEG frames (PyAV not installed)"
    return (f"{what} of {video_frames} synthetic frames per scene; {frames} sampled and decoded with "
            "spacemind_cli.scenes.load_clip (paper sampling), then models.preprocess.prepare")


def read_scene(ref, frames: int, preprocess) -> tuple[object, dict[str, float]]:
    """Decode `frames` sampled frames of the scene and preprocess them -> (PreparedClip,
    {"decode_s", "preprocess_s"})."""
    from spacemind_cli.models.preprocess import prepare
    from spacemind_cli.scenes import Sampling, load_clip

    t0 = time.perf_counter()
    clip = load_clip(ref, Sampling(num_frames=frames, strategy="paper"))
    t1 = time.perf_counter()
    prepared = prepare(clip.frames, preprocess)
    return prepared, {"decode_s": t1 - t0, "preprocess_s": time.perf_counter() - t1}


class ReadAhead:
    """Scenes read in order on `readers` threads while the caller works, as the local executor
    reads them (`jobs.stages.load_ahead`, default `reader_threads()`: the machine's CPUs but one).
    `next()` -> (result of read(item), seconds the caller waited for it)."""

    def __init__(self, items: list, read, readers: int | None = None):
        from spacemind_cli.jobs.stages import reader_threads

        readers = readers or reader_threads()
        self.items, self.read = list(items), read
        self.pool = ThreadPoolExecutor(max_workers=readers, thread_name_prefix="bench-load")
        self.pending = [self.pool.submit(read, item) for item in self.items[:readers]]
        self.submitted = len(self.pending)

    def next(self):
        t0 = time.perf_counter()
        result = self.pending.pop(0).result()
        waited = time.perf_counter() - t0
        if self.submitted < len(self.items):
            self.pending.append(self.pool.submit(self.read, self.items[self.submitted]))
            self.submitted += 1
        return result, waited

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.pool.shutdown(wait=True, cancel_futures=True)
        return False
