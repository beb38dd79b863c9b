"""Video decoding with PyAV: count frames, then decode only the sampled ones.

Frames are addressed by their index in presentation order. To read a sampled frame we seek
to the keyframe before it (when it is far ahead) and decode forward to it, so a long video is
never held in memory and far-apart samples skip the frames between them.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

from .errors import SceneError

# Decode forward instead of seeking when the next sample is at most this many frames ahead:
# a seek lands on a keyframe and costs a decoder flush, not worth it for short gaps.
_SEEK_GAP = 48


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


def count_frames(path: str | Path) -> int:
    """Number of frames, from the container header when it states one, else by demuxing
    packets (no decoding)."""
    path = Path(path)
    container = _open(path)
    try:
        stream = container.streams.video[0]
        if stream.frames and stream.frames > 0:
            return int(stream.frames)
        count = 0
        for packet in container.demux(stream):
            if packet.size > 0:
                count += 1
        if count == 0:
            raise SceneError(f"video {path} holds no frames")
        return count
    except SceneError:
        raise
    except Exception as exc:
        raise SceneError(f"video {path} cannot be read: {_reason(exc)}") from None
    finally:
        container.close()


def read_frames(path: str | Path, indices: list[int]) -> list[np.ndarray]:
    """Decode the frames at `indices` (presentation order) as HxWx3 uint8 RGB arrays.

    If the file ends before some index (headers that overstate the frame count), the frames
    found are returned; the caller reports the shortfall.
    """
    path = Path(path)
    if not indices:
        return []
    wanted = sorted(set(int(i) for i in indices))
    container = _open(path)
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        rate = stream.average_rate or stream.guessed_rate
        if rate and stream.time_base:
            frames = _read_seeking(container, stream, wanted, Fraction(rate))
        else:
            frames = _read_sequential(container, stream, wanted)
        return [frames[i] for i in indices if i in frames]
    except SceneError:
        raise
    except Exception as exc:
        raise SceneError(f"video {path} cannot be decoded: {_reason(exc)}") from None
    finally:
        container.close()


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


def _read_seeking(container, stream, wanted: list[int], rate: Fraction) -> dict[int, np.ndarray]:
    """Frame index = round((pts - start) * time_base * rate), exact for constant-rate video."""
    start = stream.start_time or 0
    frame_dur = (1 / rate) / stream.time_base  # one frame, in time-base units

    out: dict[int, np.ndarray] = {}
    decoder = None
    pos = None  # index of the last decoded frame
    for target in wanted:
        if decoder is None or pos is None or target <= pos or target - pos > _SEEK_GAP:
            container.seek(int(start + target * frame_dur), stream=stream, backward=True, any_frame=False)
            decoder = container.decode(stream)
            pos = None
        frame = None
        for frame in decoder:
            pos = int(round((frame.pts - start) / frame_dur)) if frame.pts is not None else (pos or 0) + 1
            if pos >= target:
                break
        else:
            break  # end of stream: the remaining targets do not exist
        # pos > target happens only if the seek landed past the target (broken timestamps):
        # the nearest later frame is the deterministic stand-in.
        out[target] = frame.to_ndarray(format="rgb24")
    return out
