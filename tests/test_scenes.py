"""spacemind_cli.scenes: discovery (flat and VSI-Bench layouts), resolution with root
containment, deterministic frame sampling, and load_clip on videos and frame folders."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from spacemind_cli.errors import InputError, SceneError
from spacemind_cli.questions import read_questions
from spacemind_cli.scenes import (
    Sampling,
    check_root,
    discover_scenes,
    load_clip,
    natural_key,
    resolve_images,
    resolve_scene,
    sample_indices,
    scene_files,
)

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"


# ---------------------------------------------------------------- helpers


def grey(i: int) -> int:
    return (i * 20) % 250


def write_frames(folder: Path, n: int, *, ext: str = "png", size=(16, 12)) -> Path:
    """n frames named 0.ext .. (n-1).ext (not zero-padded), frame i a solid grey(i)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.new("RGB", size, (grey(i),) * 3).save(folder / f"{i}.{ext}")
    return folder


def write_video(path: Path, n: int, size=(32, 24)) -> Path:
    """n-frame H.264 mp4, frame i a solid grey(i)."""
    import av
    path.parent.mkdir(parents=True, exist_ok=True)
    container = av.open(str(path), "w")
    stream = container.add_stream("libx264", rate=10)
    stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
    stream.options = {"crf": "10", "preset": "ultrafast", "g": "8"}
    for i in range(n):
        frame = av.VideoFrame.from_ndarray(np.full((size[1], size[0], 3), grey(i), np.uint8), format="rgb24")
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    return path


def greys(clip) -> list[int]:
    return [int(round(float(f.mean()))) for f in clip.frames]


def assert_grey_frames(clip, tol: int = 3) -> None:
    got = greys(clip)
    want = [grey(i) for i in clip.indices]
    assert len(got) == len(want)
    assert all(abs(a - b) <= tol for a, b in zip(got, want)), (got, want)


def one_line(exc: Exception) -> str:
    assert "\n" not in str(exc)
    return str(exc)


# ---------------------------------------------------------------- sample_indices


def test_sample_indices_hand_checked():
    paper, uniform, everything = Sampling(32, "paper"), Sampling(32, "uniform"), Sampling(32, "all")
    assert sample_indices(34, paper) == list(range(1, 33))
    assert sample_indices(100, Sampling(4, "paper")) == [20, 40, 59, 79]  # linspace(0, 99, 6)[1:-1]
    assert sample_indices(100, Sampling(4, "uniform")) == [0, 33, 66, 99]
    assert sample_indices(48, Sampling(3, "uniform")) == [0, 24, 47]  # 23.5 rounds to even
    assert sample_indices(48, Sampling(1, "uniform")) == [0]
    assert sample_indices(48, Sampling(1, "paper")) == [24]  # linspace(0, 47, 3)[1] = 23.5
    assert sample_indices(10, everything) == list(range(10))
    assert sample_indices(10, Sampling(0, "all")) == list(range(10))
    assert sample_indices(5, paper) == [0, 1, 2, 3, 4]  # short clip: each frame once
    assert sample_indices(32, paper) == list(range(32))
    assert sample_indices(1, paper) == [0] and sample_indices(1, uniform) == [0]
    assert sample_indices(0, paper) == [] and sample_indices(0, everything) == []
    u = sample_indices(1000, uniform)
    assert u[0] == 0 and u[-1] == 999 and len(u) == 32
    p = sample_indices(1000, paper)
    assert 0 not in p and 999 not in p and len(p) == 32


@pytest.mark.parametrize("strategy", ["paper", "uniform"])
@pytest.mark.parametrize("n", [1, 2, 8, 32])
def test_sample_indices_properties(strategy, n):
    s = Sampling(n, strategy)
    for total in range(1, 160):
        idx = sample_indices(total, s)
        assert idx == sorted(set(idx)), (total, idx)  # sorted, no duplicates
        assert all(0 <= i < total for i in idx)
        # Exactly min(n, total) frames: a clip with enough frames is never reported short
        # (paper sampling with total == n + 1 used to merge two neighbours).
        assert len(idx) == min(n, total), (total, idx)
        assert sample_indices(total, Sampling(n, strategy)) == idx  # deterministic
    if n > 1:
        assert sample_indices(500, s)[0] == (0 if strategy == "uniform" else round(499 / (n + 1)))


def test_sampling_validation():
    with pytest.raises(InputError, match="unknown frame sampling"):
        Sampling(8, "random")
    with pytest.raises(InputError, match="num-frames"):
        Sampling(0, "paper")
    assert Sampling().to_dict() == {"num_frames": 32, "strategy": "paper"}


def test_natural_key():
    names = ["10.png", "2.png", "1.png", "frame_10.jpg", "frame_9.jpg", "B.png", "a.png"]
    assert sorted(names, key=natural_key) == ["1.png", "2.png", "10.png", "a.png", "B.png", "frame_9.jpg",
                                              "frame_10.jpg"]


# ---------------------------------------------------------------- discovery


def test_discover_flat_layout(tmp_path):
    write_video(tmp_path / "scene10.mp4", 3)
    write_video(tmp_path / "scene2.MOV", 3)
    write_frames(tmp_path / "scene3", 2)
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / ".hidden").mkdir()
    write_frames(tmp_path / ".hidden" / "s", 2)
    scenes = discover_scenes(tmp_path)
    assert [(s.key, s.kind, s.dataset, s.scene_name) for s in scenes] == [
        ("scene2", "video", None, "scene2"),
        ("scene3", "frames", None, "scene3"),
        ("scene10", "video", None, "scene10"),
    ]
    assert scenes[0].path == tmp_path / "scene2.MOV"


def test_discover_vsibench_layout(tmp_path):
    write_video(tmp_path / "scannet" / "scene0011_00.mp4", 3)
    write_video(tmp_path / "scannet" / "scene0002_00.mp4", 3)
    write_frames(tmp_path / "arkitscenes" / "41069025", 2, ext="jpg")
    (tmp_path / "arkitscenes" / "README.md").write_text("x")
    (tmp_path / "scannetpp").mkdir()  # an empty dataset folder yields nothing
    scenes = discover_scenes(tmp_path)
    assert [(s.key, s.kind, s.dataset, s.scene_name) for s in scenes] == [
        ("arkitscenes/41069025", "frames", "arkitscenes", "41069025"),
        ("scannet/scene0002_00", "video", "scannet", "scene0002_00"),
        ("scannet/scene0011_00", "video", "scannet", "scene0011_00"),
    ]


def test_missing_or_bad_root(tmp_path):
    for fn in (discover_scenes, check_root):
        with pytest.raises(InputError) as info:
            fn(tmp_path / "nope")
        assert str(tmp_path / "nope") in one_line(info.value) and "does not exist" in str(info.value)
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="not a directory"):
        discover_scenes(tmp_path / "file")


# ---------------------------------------------------------------- resolution


@pytest.fixture
def vsi_root(tmp_path) -> Path:
    root = tmp_path / "root"
    write_video(root / "scannet" / "scene0011_00.mp4", 5)
    write_frames(root / "arkitscenes" / "41069025", 4)
    write_video(root / "flat_scene.mp4", 5)
    write_video(root / "upper" / "CLIP.MP4", 5)
    return root


def test_resolve_by_dataset_and_scene_name(vsi_root):
    ref = resolve_scene(vsi_root, dataset="scannet", scene_name="scene0011_00")
    assert (ref.key, ref.kind, ref.dataset, ref.scene_name) == ("scannet/scene0011_00", "video", "scannet",
                                                                "scene0011_00")
    assert ref.path == Path(os.path.realpath(vsi_root)) / "scannet" / "scene0011_00.mp4"
    ref = resolve_scene(vsi_root, dataset="arkitscenes", scene_name="41069025")
    assert (ref.key, ref.kind) == ("arkitscenes/41069025", "frames")
    ref = resolve_scene(vsi_root, dataset="upper", scene_name="CLIP")
    assert ref.kind == "video" and ref.path.name == "CLIP.MP4"


def test_resolve_by_scene_path(vsi_root):
    for spec in ("scannet/scene0011_00", "scannet/scene0011_00.mp4", "./scannet/scene0011_00"):
        ref = resolve_scene(vsi_root, scene=spec)
        assert ref.key == "scannet/scene0011_00" and ref.kind == "video", spec
    assert resolve_scene(vsi_root, scene="arkitscenes/41069025").kind == "frames"
    assert resolve_scene(vsi_root, scene="flat_scene").key == "flat_scene"


def test_vsibench_rows_over_a_flat_root(vsi_root):
    ref = resolve_scene(vsi_root, dataset="somewhere", scene_name="flat_scene")
    assert ref.key == "flat_scene" and ref.kind == "video"


def test_scene_not_found(vsi_root):
    with pytest.raises(SceneError) as info:
        resolve_scene(vsi_root, dataset="scannet", scene_name="scene9999_00")
    text = one_line(info.value)
    assert "scannet/scene9999_00" in text and "not found" in text and str(vsi_root) in text
    with pytest.raises(SceneError, match="names no scene"):
        resolve_scene(vsi_root)
    with pytest.raises(SceneError, match="names no scene"):
        resolve_scene(vsi_root, dataset="scannet")


def test_scene_paths_escaping_the_root(vsi_root, tmp_path):
    outside = tmp_path / "outside"
    write_video(outside / "secret.mp4", 3)
    write_frames(outside / "frames", 2)
    os.symlink(outside, vsi_root / "linkdir")
    os.symlink(outside / "secret.mp4", vsi_root / "evil.mp4")
    os.symlink(outside / "frames", vsi_root / "scannet" / "evilframes")
    cases = [
        dict(scene="../outside/secret.mp4"),
        dict(scene="../outside/secret"),
        dict(scene="scannet/../../outside/frames"),
        dict(scene=str(outside / "secret.mp4")),
        dict(scene="/etc"),
        dict(dataset="..", scene_name="outside/secret"),
        dict(dataset="scannet", scene_name="../../outside/frames"),
        dict(scene="linkdir/secret.mp4"),
        dict(scene="linkdir/frames"),
        dict(scene="evil.mp4"),
        dict(scene="evil"),  # the symlink is found by adding the video extension
        dict(scene_name="evil"),
        dict(dataset="scannet", scene_name="evilframes"),
    ]
    for spec in cases:
        with pytest.raises(SceneError) as info:
            resolve_scene(vsi_root, **spec)
        text = one_line(info.value)
        assert "escapes the scenes root" in text or "relative to the scenes root" in text, (spec, text)


def test_scene_that_is_the_root_itself(vsi_root):
    for spec in (dict(scene="."), dict(scene="scannet/.."), dict(dataset="scannet", scene_name="..")):
        with pytest.raises(SceneError) as info:
            resolve_scene(vsi_root, **spec)
        assert "root itself" in one_line(info.value), spec


def test_symlinks_inside_the_root_are_fine(vsi_root):
    os.symlink(vsi_root / "scannet" / "scene0011_00.mp4", vsi_root / "alias.mp4")
    assert resolve_scene(vsi_root, scene="alias").kind == "video"


def test_resolve_images(vsi_root, tmp_path):
    ref = resolve_images(vsi_root, ["arkitscenes/41069025/3.png", {"path": "arkitscenes/41069025/0.png"}],
                         dataset="spbench", scene_name="q1")
    assert ref.kind == "images" and ref.key.startswith("spbench/q1@")
    assert [Path(p).name for p in ref.images] == ["3.png", "0.png"]  # the order given is kept
    again = resolve_scene(vsi_root, images=["arkitscenes/41069025/3.png", "arkitscenes/41069025/0.png"],
                          dataset="spbench", scene_name="q1")
    assert again.key == ref.key
    other = resolve_images(vsi_root, ["arkitscenes/41069025/0.png"], dataset="spbench", scene_name="q1")
    assert other.key != ref.key
    clip = load_clip(ref, Sampling(8))
    assert clip.indices == [0, 1] and greys(clip) == [grey(3), grey(0)]
    bad = [
        (["../outside.png"], "escapes"),
        (["/etc/passwd"], "relative"),
        (["arkitscenes/41069025/99.png"], "not found"),
        ([""], "image paths"),
        ([3], "image paths"),
    ]
    for images, word in bad:
        with pytest.raises(SceneError) as info:
            resolve_images(vsi_root, images)
        assert word in one_line(info.value), images
    with pytest.raises(SceneError, match="empty"):
        resolve_images(vsi_root, [])


# ---------------------------------------------------------------- load_clip


def test_load_clip_frame_folder_natural_order(tmp_path):
    write_frames(tmp_path / "s", 12)  # 0.png .. 11.png: "10.png" sorts after "9.png"
    ref = resolve_scene(tmp_path, scene="s")
    clip = load_clip(ref, Sampling(0, "all"))
    assert clip.indices == list(range(12)) and clip.total_frames == 12 and not clip.short
    assert greys(clip) == [grey(i) for i in range(12)]
    assert [p.name for p in scene_files(ref)] == [f"{i}.png" for i in range(12)]
    clip = load_clip(ref, Sampling(4, "paper"))
    assert clip.indices == sample_indices(12, Sampling(4, "paper")) == [2, 4, 7, 9]
    assert greys(clip) == [grey(i) for i in clip.indices]
    assert clip.image_sizes == [[12, 16]] * 4


def test_load_clip_mixed_formats_and_hidden_files(tmp_path):
    folder = tmp_path / "s"
    folder.mkdir()
    for i, ext in enumerate(["jpg", "JPEG", "png", "webp", "bmp"]):
        Image.new("RGB", (16, 12), (grey(i),) * 3).save(folder / f"{i}.{ext}", quality=95, lossless=True)
    (folder / "._0.jpg").write_bytes(b"AppleDouble junk")  # macOS metadata: skipped
    (folder / "notes.txt").write_text("x")
    clip = load_clip(resolve_scene(tmp_path, scene="s"), Sampling(0, "all"))
    assert clip.total_frames == 5
    assert_grey_frames(clip)


def test_load_clip_video(tmp_path):
    write_video(tmp_path / "ds" / "v.mp4", 40)
    ref = resolve_scene(tmp_path, dataset="ds", scene_name="v")
    clip = load_clip(ref, Sampling(8, "paper"))
    assert clip.total_frames == 40 and clip.requested == 8 and not clip.short and clip.notes == []
    assert clip.indices == sample_indices(40, Sampling(8, "paper"))
    assert_grey_frames(clip)
    assert clip.image_sizes == [[24, 32]] * 8
    clip = load_clip(ref, Sampling(5, "uniform"))
    assert clip.indices == [0, 10, 20, 29, 39]
    assert_grey_frames(clip)


def test_short_clips_say_so(tmp_path):
    write_video(tmp_path / "one.mp4", 1)
    clip = load_clip(resolve_scene(tmp_path, scene="one"), Sampling(32))
    assert clip.indices == [0] and len(clip.frames) == 1 and clip.total_frames == 1
    assert clip.short and clip.requested == 32
    assert clip.notes and "1 frames" in clip.notes[0] and "32" in clip.notes[0]
    write_frames(tmp_path / "three", 3)
    clip = load_clip(resolve_scene(tmp_path, scene="three"), Sampling(32, "uniform"))
    assert clip.indices == [0, 1, 2] and clip.short and len(clip.notes) == 1
    clip = load_clip(resolve_scene(tmp_path, scene="three"), Sampling(0, "all"))
    assert not clip.short and clip.notes == []
    write_frames(tmp_path / "thirty_three", 33)
    clip = load_clip(resolve_scene(tmp_path, scene="thirty_three"), Sampling(32))
    assert len(clip.frames) == 32 and not clip.short and clip.notes == []


def test_truncated_video_keeps_indices_matching_frames(tmp_path):
    """A header stating more frames than the file holds: the clip lists only the frames read."""
    import av
    path = tmp_path / "full.mp4"
    container = av.open(str(path), "w", options={"movflags": "+faststart"})
    stream = container.add_stream("libx264", rate=10)
    stream.width, stream.height, stream.pix_fmt = 32, 24, "yuv420p"
    stream.options = {"crf": "10", "preset": "ultrafast", "g": "8"}
    rng = np.random.default_rng(0)
    for i in range(60):  # noisy frames so that the data is spread evenly through the file
        img = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
        img[:12] = grey(i)
        for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    data = path.read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 2])
    clip = load_clip(resolve_scene(tmp_path, scene="cut"), Sampling(8, "uniform"))
    assert clip.total_frames == 60
    assert 1 <= len(clip.frames) < 8
    assert len(clip.indices) == len(clip.frames) == len(clip.image_sizes)
    assert clip.indices == sample_indices(60, Sampling(8, "uniform"))[: len(clip.frames)]
    tops = [int(round(float(f[:12].mean()))) for f in clip.frames]
    assert all(abs(t - grey(i)) <= 4 for t, i in zip(tops, clip.indices)), (tops, clip.indices)
    assert clip.short and any("ends before" in n for n in clip.notes)


def test_mixed_image_sizes_in_a_folder(tmp_path):
    folder = tmp_path / "s"
    folder.mkdir()
    Image.new("RGB", (16, 12), (10, 10, 10)).save(folder / "0.png")
    Image.new("RGB", (12, 16), (20, 20, 20)).save(folder / "1.png")
    Image.new("L", (30, 10), 30).save(folder / "2.png")
    clip = load_clip(resolve_scene(tmp_path, scene="s"), Sampling(0, "all"))
    assert clip.image_sizes == [[12, 16], [16, 12], [10, 30]]
    assert all(f.ndim == 3 and f.shape[2] == 3 and f.dtype == np.uint8 for f in clip.frames)


def test_huge_frames_are_reduced(tmp_path):
    folder = tmp_path / "s"
    folder.mkdir()
    Image.new("RGB", (4100, 300), (200, 100, 50)).save(folder / "0.jpg")
    clip = load_clip(resolve_scene(tmp_path, scene="s"), Sampling(1))
    h, w = clip.image_sizes[0]
    assert w <= 2048 and w >= 1024 and abs(w / h - 4100 / 300) < 0.5


def test_bad_scenes(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SceneError) as info:
        load_clip(resolve_scene(tmp_path, scene="empty"), Sampling(4))
    assert "empty" in one_line(info.value) and "no images" in str(info.value)

    (tmp_path / "only_text").mkdir()
    (tmp_path / "only_text" / "readme.txt").write_text("x")
    with pytest.raises(SceneError, match="no images"):
        load_clip(resolve_scene(tmp_path, scene="only_text"), Sampling(4))

    write_frames(tmp_path / "corrupt", 4)
    (tmp_path / "corrupt" / "2.png").write_bytes((tmp_path / "corrupt" / "2.png").read_bytes()[:40])
    with pytest.raises(SceneError) as info:
        load_clip(resolve_scene(tmp_path, scene="corrupt"), Sampling(0, "all"))
    assert "2.png" in one_line(info.value)

    (tmp_path / "zero.mp4").write_bytes(b"")
    (tmp_path / "text.mp4").write_text("hello\nworld\n")
    good = write_video(tmp_path / "good.mp4", 10)
    (tmp_path / "half.mp4").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    for name in ("zero", "text", "half"):
        ref = resolve_scene(tmp_path, scene=name)
        with pytest.raises(SceneError) as info:
            load_clip(ref, Sampling(4))
        assert f"{name}.mp4" in one_line(info.value), name


# ---------------------------------------------------------------- the bundled examples


def test_example_layouts_and_natural_order():
    videos = discover_scenes(EXAMPLES / "videos")
    frames = discover_scenes(EXAMPLES / "frames")
    keys = [f"synthetic/room_000{i}" for i in range(4)]
    assert [s.key for s in videos] == keys and {s.kind for s in videos} == {"video"}
    assert [s.key for s in frames] == keys and {s.kind for s in frames} == {"frames"}
    files = scene_files(frames[0])
    assert [p.name for p in files] == [f"{i}.jpg" for i in range(48)]  # 2.jpg before 10.jpg


def test_example_video_and_frames_agree():
    video_ref = resolve_scene(EXAMPLES / "videos", dataset="synthetic", scene_name="room_0000")
    frames_ref = resolve_scene(EXAMPLES / "frames", dataset="synthetic", scene_name="room_0000")
    v = load_clip(video_ref, Sampling(32))
    f = load_clip(frames_ref, Sampling(32))
    assert v.total_frames == f.total_frames == 48
    assert v.indices == f.indices == sample_indices(48, Sampling(32)) and len(v.frames) == 32
    assert v.image_sizes == f.image_sizes == [[240, 320]] * 32

    def diff(a, b):
        return float(np.abs(a.astype(np.int16) - b).mean())

    for k, (a, b) in enumerate(zip(v.frames, f.frames)):
        same = diff(a, b)
        assert same < 4, (v.indices[k], same)  # H.264 CRF 23 vs JPEG q85 of the same render
        # ...and closer than the neighbouring frame would be (catches an off-by-one).
        for other in (k - 1, k + 1):
            if 0 <= other < len(f.frames):
                assert same < diff(a, f.frames[other]), (v.indices[k], other)


def test_example_questions_resolve_against_both_layouts():
    qs = read_questions(EXAMPLES / "questions.jsonl")
    for root, kind in ((EXAMPLES / "videos", "video"), (EXAMPLES / "frames", "frames")):
        refs = {resolve_scene(root, **{k: v for k, v in q.scene_spec.items() if v is not None}).key
                for q in qs.questions}
        assert refs == {f"synthetic/room_000{i}" for i in range(4)}, kind


def test_frame_order_is_total(tmp_path):
    """Names with one natural key ("01" and "1") still sort the same way every time."""
    folder = tmp_path / "s"
    folder.mkdir()
    for name, level in [("1.png", 10), ("01.png", 20), ("001.png", 30), ("2.png", 40)]:
        Image.new("RGB", (4, 4), (level,) * 3).save(folder / name)
    ref = resolve_scene(tmp_path, scene="s")
    assert [p.name for p in scene_files(ref)] == ["001.png", "01.png", "1.png", "2.png"]
    assert greys(load_clip(ref, Sampling(0, "all"))) == [30, 20, 10, 40]
