"""Video decoding with PyAV: count frames, then decode only the sampled ones.

Frames are addressed by their index in presentation order. To read a sampled frame we seek
to the keyframe before it (when it is far ahead) and decode forward to it, so a long video is
never held in memory and far-apart samples skip the frames between them.

A frame's index is the rank of its presentation timestamp among all the clip's packets (one
demux pass, no decoding), which stays right for variable frame rates, B-frames and clips that
do not start at 0. Containers without real presentation timestamps (AVI) are decoded forward
from the start instead.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from .errors import SceneError

# Decode forward instead of seeking when the next sample is at most this many frames ahead:
# a seek lands on a keyframe and costs a decoder flush, not worth it for short gaps.
_SEEK_GAP = 48

# Container formats (PyAV `format.name` parts) whose packets carry real presentation timestamps.
_PTS_FORMATS = {"mov", "mp4", "matroska", "webm"}


def _open(path: Path):
    import av

    try:
        if path.stat().st_size == 0:
            raise SceneError(f"video {path} is empty (0 bytes)")
        container = av.open(str(path), metadata_errors="ignore")
    except SceneError:
        raise
    except FileNotFoundError:
        raise SceneError(f"video {path} does not exist") from None
    except Exception as exc:
        raise SceneError(f"video {path} cannot be opened: {_reason(exc)}") from None
    if not container.streams.video:
        container.close()
        raise SceneError(f"video {path} has no video stream")
    return container


def _reason(exc: Exception) -> str:
    return " ".join((str(exc) or type(exc).__name__).split())


def _with_stream(path: Path, read: Callable, doing: str):
    """read(container, stream) on the video freshly opened, closed after; any failure but our own
    is a SceneError naming the file ("video P cannot be <doing>: why")."""
    container = _open(path)
    try:
        return read(container, container.streams.video[0])
    except SceneError:
        raise
    except Exception as exc:
        raise SceneError(f"video {path} cannot be {doing}: {_reason(exc)}") from None
    finally:
        container.close()


def count_frames(path: str | Path) -> int:
    """Number of frames, from the container header when it states one, else by demuxing
    packets (no decoding)."""
    path = Path(path)

    def count(container, stream) -> int:
        if stream.frames and stream.frames > 0:
            return int(stream.frames)
        n = sum(1 for packet in container.demux(stream) if packet.size > 0)
        if n == 0:
            raise SceneError(f"video {path} holds no frames")
        return n

    return _with_stream(path, count, "read")


def read_frames(path: str | Path, indices: list[int]) -> list[np.ndarray]:
    """Decode the frames at `indices` (presentation order) as HxWx3 uint8 RGB arrays.

    Indices outside the clip (negative, or past its end) yield nothing. If the file ends before
    some index (headers that overstate the frame count), the frames found are returned, in the
    order asked; the caller reports the shortfall.
    """
    path = Path(path)
    wanted = sorted(set(int(i) for i in indices if int(i) >= 0))
    if not wanted:
        return []

    def seeking(container, stream):
        stream.thread_type = "AUTO"
        return _read_seeking(container, stream, wanted) if _has_real_timestamps(container) else None

    def sequential(container, stream):
        stream.thread_type = "AUTO"
        return _read_sequential(container, stream, wanted)

    frames = _with_stream(path, seeking, "decoded")
    if frames is None:  # no trustworthy timestamps: count frames decoding forward from the start
        frames = _with_stream(path, sequential, "decoded")
    return [frames[int(i)] for i in indices if int(i) in frames]


def _has_real_timestamps(container) -> bool:
    """MP4/MOV and Matroska/WebM store presentation timestamps per frame. AVI (and raw
    streams) only imply them from the decode order, which B-frames reorder."""
    return bool(set(container.format.name.split(",")) & _PTS_FORMATS)


def _read_sequential(container, stream, wanted: list[int]) -> dict[int, np.ndarray]:
    out: dict[int, np.ndarray] = {}
    targets = set(wanted)
    last = wanted[-1]
    for idx, frame in enumerate(container.decode(stream)):
        if idx in targets:
            out[idx] = frame.to_ndarray(format="rgb24")
        if idx >= last:
            break
    return out


def _packet_index(container, stream):
    """Demux (no decoding) every packet: the sorted presentation timestamps (frame i has the
    i-th smallest) and the keyframes as (pts, seek timestamp) in decode order. None when some
    packet lacks a timestamp or two frames share one."""
    pts: list[int] = []
    keyframes: list[tuple[int, int]] = []
    for packet in container.demux(stream):
        if packet.size == 0:  # the flush packet at the end
            continue
        if packet.pts is None:
            return None
        pts.append(int(packet.pts))
        if packet.is_keyframe:
            # Demuxers seek on decode timestamps (MP4) or presentation ones (Matroska); a
            # keyframe's dts is <= its pts, so seeking to it never lands after the keyframe.
            keyframes.append((int(packet.pts), int(packet.dts if packet.dts is not None else packet.pts)))
    pts.sort()
    if not pts or len(set(pts)) != len(pts) or not keyframes:
        return None
    return pts, keyframes


def _read_seeking(container, stream, wanted: list[int]) -> dict[int, np.ndarray] | None:
    """Frame index = rank of the frame's pts among all the clip's pts (right for variable frame
    rate and for clips that do not start at 0). For each far-apart target, seek to the last
    keyframe shown at or before it and decode forward. Returns None when the timestamps prove
    unreliable (the caller then decodes sequentially)."""
    index = _packet_index(container, stream)
    if index is None:
        return None
    pts, keyframes = index
    rank = {p: i for i, p in enumerate(pts)}
    out: dict[int, np.ndarray] = {}
    decoder = None
    pos = -1  # index of the last decoded frame
    frame = None
    for target in wanted:
        if target >= len(pts):
            break  # past the end of the clip
        if decoder is None or target - pos > _SEEK_GAP:
            landed = _seek_to(container, stream, keyframes, rank, pts[target], target)
            if landed is None:
                return None
            decoder, frame, pos = landed
        while pos < target:
            frame = next(decoder, None)
            if frame is None:
                return out  # end of stream: the remaining targets do not exist
            p = rank.get(frame.pts)
            if p is None or p <= pos:
                return None  # frames out of order or unknown timestamps
            pos = p
        # pos > target only if the decoder skipped a frame the demuxer listed (corrupt data):
        # the nearest later frame is the deterministic stand-in.
        assert frame is not None  # the first target always seeks, which lands on a frame
        out[target] = frame.to_ndarray(format="rgb24")
    return out


def _seek_to(container, stream, keyframes, rank, target_pts: int, target: int):
    """Seek so that decoding starts at or before frame `target`: (decoder, first frame, its
    index), or None when no keyframe allows it."""
    candidates = [k for k in keyframes if k[0] <= target_pts] or keyframes[:1]
    # The nearest keyframes first; then the very first one, from which anything is reachable.
    tries = candidates[-3:][::-1] + (candidates[:1] if len(candidates) > 3 else [])
    for _, seek_ts in tries:
        container.seek(seek_ts, stream=stream, backward=True, any_frame=False)
        decoder = container.decode(stream)
        frame = next(decoder, None)
        if frame is None:
            continue
        pos = rank.get(frame.pts)
        if pos is None:
            return None
        if pos <= target:
            return decoder, frame, pos
    return None
