"""spacemind_cli.video: frame counts and sparse decoding, checked against a full sequential decode.

Every test video is generated here (PyAV); each frame shows its own index as 8 black/white bars
(bit 7 .. bit 0, top half) over a grey level (bottom half), so a wrong frame is caught both by
reading the bars back and by comparing with what a plain sequential decode gives at that index.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from spacemind_cli import video  # noqa: E402
from spacemind_cli.errors import SceneError  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_VIDEO = REPO / "examples" / "videos" / "synthetic" / "room_0000.mp4"

W, H = 64, 48


def frame_image(i: int) -> np.ndarray:
    img = np.zeros((H, W, 3), np.uint8)
    for bit in range(8):
        if (i >> (7 - bit)) & 1:
            img[: H // 2, bit * 8 : (bit + 1) * 8] = 255
    img[H // 2 :] = (i * 7) % 256
    return img


def bars_index(img: np.ndarray) -> int:
    """Read back the index a frame shows (centre pixel of each bar)."""
    value = 0
    for bit in range(8):
        value = (value << 1) | int(img[H // 4, bit * 8 + 4].mean() > 127)
    return value


def encode(
    path: Path,
    n: int,
    *,
    codec: str = "libx264",
    gop: int = 12,
    bframes: int = 0,
    fmt: str | None = None,
    faststart: bool = False,
    vfr: bool = False,
) -> Path:
    """Write an n-frame video; `vfr` gives irregular frame durations (33 ms or 100 ms)."""
    options = {"movflags": "+faststart"} if faststart else {}
    container = av.open(str(path), "w", format=fmt, options=options)
    stream = container.add_stream(codec, rate=12)
    stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
    stream.gop_size = gop
    if codec == "libx264":
        stream.options = {"bf": str(bframes), "crf": "12", "preset": "veryfast" if bframes else "ultrafast",
                          "keyint_min": str(gop), "sc_threshold": "0"}
    elif codec == "mpeg4":
        stream.codec_context.max_b_frames = bframes
        stream.options = {"qscale": "2"}
    if vfr:
        stream.codec_context.time_base = Fraction(1, 1000)
    t = 0
    for i in range(n):
        frame = av.VideoFrame.from_ndarray(frame_image(i), format="rgb24")
        if vfr:
            frame.pts, frame.time_base = t, Fraction(1, 1000)
            t += 100 if i % 3 == 0 else 33
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    return path


def decode_all(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def close(a: np.ndarray, b: np.ndarray, tol: int = 2) -> bool:
    return a.shape == b.shape and int(np.abs(a.astype(np.int16) - b).max()) <= tol


# name -> (file name, frame count, encode options)
VIDEOS = {
    "h264_gop100": ("gop100.mp4", 150, dict(gop=100)),
    "h264_gop5": ("gop5.mp4", 60, dict(gop=5)),
    "h264_bframes": ("bframes.mp4", 120, dict(gop=30, bframes=3)),
    "mpeg4_bframes": ("mpeg4_bf.mp4", 60, dict(codec="mpeg4", gop=10, bframes=2)),
    "h264_vfr": ("vfr.mp4", 60, dict(gop=15, vfr=True)),
    "mov_bframes": ("bframes.mov", 60, dict(gop=20, bframes=2, fmt="mov")),
    "mkv_bframes": ("bframes.mkv", 60, dict(gop=20, bframes=2, fmt="matroska")),
    "webm_vp8": ("vp8.webm", 60, dict(codec="libvpx", gop=20, fmt="webm")),
    "avi_mpeg4_bframes": ("mpeg4_bf.avi", 60, dict(codec="mpeg4", gop=10, bframes=2, fmt="avi")),
    "avi_h264_bframes": ("h264_bf.avi", 60, dict(gop=20, bframes=2, fmt="avi")),
}


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, tuple[Path, list[np.ndarray]]]:
    """name -> (path, reference frames from a full sequential decode)."""
    folder = tmp_path_factory.mktemp("videos")
    out = {}
    for name, (filename, n, opts) in VIDEOS.items():
        path = encode(folder / filename, n, **opts)
        ref = decode_all(path)
        assert len(ref) == n, name
        assert [bars_index(f) for f in ref] == list(range(n)), f"{name}: the encoder lost or reordered frames"
        out[name] = (path, ref)
    return out


def check(path: Path, ref: list[np.ndarray], indices: list[int]) -> None:
    got = video.read_frames(path, indices)
    expected = [i for i in indices if 0 <= i < len(ref)]
    assert len(got) == len(expected), (indices, len(got))
    for i, frame in zip(expected, got):
        assert frame.dtype == np.uint8 and frame.shape == (H, W, 3)
        assert bars_index(frame) == i % 256, f"asked for frame {i}, got frame {bars_index(frame)}"
        assert close(frame, ref[i]), f"frame {i} differs from the sequential decode"


@pytest.mark.parametrize("name", list(VIDEOS))
def test_count_frames(videos, name):
    path, ref = videos[name]
    assert video.count_frames(path) == len(ref) == VIDEOS[name][1]


@pytest.mark.parametrize("name", list(VIDEOS))
def test_read_frames_matches_sequential_decode(videos, name):
    path, ref = videos[name]
    n = len(ref)
    check(path, ref, [0, n // 3, n // 2 + 1, n - 1])  # sparse
    check(path, ref, list(range(n // 4, n // 4 + 20)))  # dense
    check(path, ref, [0])  # first
    check(path, ref, [n - 1])  # last
    check(path, ref, list(range(0, n, 7)))  # uniform stride
    check(path, ref, list(range(n)))  # every frame


@pytest.mark.parametrize("name", ["h264_gop100", "h264_bframes", "mpeg4_bframes", "h264_vfr", "mkv_bframes",
                                  "avi_mpeg4_bframes", "avi_h264_bframes"])
def test_every_frame_alone(videos, name):
    """One index per call: every call seeks from scratch, including to frames just before a
    keyframe (where a seek on decode timestamps lands one keyframe too late)."""
    path, ref = videos[name]
    for i in range(len(ref)):
        got = video.read_frames(path, [i])
        assert len(got) == 1, i
        assert bars_index(got[0]) == i, f"asked for frame {i}, got frame {bars_index(got[0])}"
        assert close(got[0], ref[i])


def test_far_apart_targets_around_keyframes(videos):
    path, ref = videos["h264_gop100"]  # keyframes at 0 and 100 only
    check(path, ref, [1, 98, 99, 100, 101, 149])
    check(path, ref, [99, 149])
    path, ref = videos["h264_bframes"]  # keyframes every 30 frames, 3 B-frames
    check(path, ref, [29, 30, 59, 60, 89, 119])


def test_out_of_range_and_order(videos):
    path, ref = videos["h264_gop5"]
    n = len(ref)
    check(path, ref, [-1, 5, n, n + 100])
    assert video.read_frames(path, [n, n + 1, -3]) == []
    assert video.read_frames(path, []) == []
    # The order asked for is kept, repeats included.
    got = video.read_frames(path, [10, 3, 10, 57])
    assert [bars_index(f) for f in got] == [10, 3, 10, 57]


def test_seeks_instead_of_decoding_everything(videos, monkeypatch):
    """MP4: two far-apart samples cost two seeks and about two GOPs of decoding, not the clip."""
    path, ref = videos["h264_gop5"]

    def no_sequential(*args, **kwargs):
        raise AssertionError("fell back to a sequential decode")

    seeks, decoded = [], []
    real_seek_to = video._seek_to

    def counting_seek_to(container, stream, keyframes, rank, target_pts, target):
        landed = real_seek_to(container, stream, keyframes, rank, target_pts, target)
        assert landed is not None
        decoder, frame, pos = landed
        seeks.append(target)

        def counted():
            for f in decoder:
                decoded.append(f)
                yield f

        return counted(), frame, pos

    monkeypatch.setattr(video, "_read_sequential", no_sequential)
    monkeypatch.setattr(video, "_seek_to", counting_seek_to)
    got = video.read_frames(path, [2, 58])
    assert [bars_index(f) for f in got] == [2, 58]
    assert seeks == [2, 58]
    assert len(decoded) < 12  # 60 frames in the clip


def test_avi_counts_frames_from_the_start(videos, monkeypatch):
    """AVI has no real presentation timestamps: frames are counted by decoding forward."""
    path, ref = videos["avi_h264_bframes"]
    calls = []
    real = video._read_sequential
    monkeypatch.setattr(video, "_read_sequential", lambda *a: calls.append(1) or real(*a))
    check(path, ref, [3, 40])
    assert calls == [1]


def test_one_frame_video(tmp_path):
    path = encode(tmp_path / "one.mp4", 1)
    assert video.count_frames(path) == 1
    got = video.read_frames(path, [0, 1, 5])
    assert len(got) == 1 and bars_index(got[0]) == 0


def test_truncated_faststart_mp4_returns_the_frames_it_has(tmp_path):
    """Header (moov first) says 120 frames but half the data is gone: no crash, a prefix."""
    full = encode(tmp_path / "full.mp4", 120, gop=10, faststart=True)
    data = full.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    assert video.count_frames(cut) == 120  # what the header states
    got = video.read_frames(cut, [0, 10, 50, 119])
    assert 1 <= len(got) < 4
    assert [bars_index(f) for f in got] == [0, 10, 50, 119][: len(got)]


def _one_line_naming(exc: SceneError, path: Path) -> None:
    assert str(path) in str(exc)
    assert "\n" not in str(exc)


@pytest.mark.parametrize("fn", [video.count_frames, lambda p: video.read_frames(p, [0])])
def test_unreadable_videos(tmp_path, fn):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    text = tmp_path / "text.mp4"
    text.write_text("this is not a video\nat all\n")
    full = encode(tmp_path / "full.mp4", 30)  # moov atom at the end: a cut file cannot be opened
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    missing = tmp_path / "missing.mp4"
    for path, words in [(empty, "empty"), (text, "cannot"), (truncated, "cannot"), (missing, "does not exist")]:
        with pytest.raises(SceneError) as info:
            fn(path)
        _one_line_naming(info.value, path)
        assert words in str(info.value)


def test_audio_only_file_has_no_video_stream(tmp_path):
    path = tmp_path / "audio.mp4"
    container = av.open(str(path), "w")
    stream = container.add_stream("aac", rate=8000)
    samples = np.zeros((1, 1024), np.float32)
    for _ in range(4):
        frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
        frame.sample_rate = 8000
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    with pytest.raises(SceneError, match="no video stream") as info:
        video.count_frames(path)
    _one_line_naming(info.value, path)


def test_example_video():
    assert video.count_frames(EXAMPLE_VIDEO) == 48
    ref = decode_all(EXAMPLE_VIDEO)
    assert len(ref) == 48
    indices = [0, 1, 23, 24, 46, 47]
    got = video.read_frames(EXAMPLE_VIDEO, indices)
    assert len(got) == len(indices)
    for i, frame in zip(indices, got):
        assert frame.shape == (240, 320, 3)
        assert close(frame, ref[i])
    # Neighbouring frames differ (the camera moves), so this could catch an off-by-one.
    assert not close(ref[23], ref[24], tol=10)
