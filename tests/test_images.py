"""spacemind_cli.images.load_rgb: every image kind becomes HxWx3 uint8 RGB, EXIF orientation
applied, huge images reduced while decoding, bad files give a one-line SceneError."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from spacemind_cli.errors import SceneError
from spacemind_cli.images import load_rgb

REPO = Path(__file__).resolve().parents[1]


def assert_rgb(arr: np.ndarray, h: int, w: int) -> None:
    assert arr.dtype == np.uint8
    assert arr.shape == (h, w, 3)
    assert arr.flags.c_contiguous and arr.flags.writeable


def test_rgb_png_is_exact(tmp_path):
    src = np.random.default_rng(0).integers(0, 256, (17, 23, 3), dtype=np.uint8)
    Image.fromarray(src).save(tmp_path / "a.png")
    out = load_rgb(tmp_path / "a.png")
    assert_rgb(out, 17, 23)
    assert np.array_equal(out, src)


def test_rgba_transparent_becomes_white(tmp_path):
    src = np.zeros((4, 6, 4), np.uint8)
    src[:, :3] = (10, 20, 30, 255)  # opaque left half
    src[:, 3:] = (10, 20, 30, 0)  # transparent right half
    Image.fromarray(src, "RGBA").save(tmp_path / "a.png")
    out = load_rgb(tmp_path / "a.png")
    assert_rgb(out, 4, 6)
    assert (out[:, :3] == (10, 20, 30)).all()
    assert (out[:, 3:] == 255).all()


def test_greyscale_and_greyscale_alpha(tmp_path):
    Image.fromarray(np.full((5, 7), 77, np.uint8), "L").save(tmp_path / "l.png")
    out = load_rgb(tmp_path / "l.png")
    assert_rgb(out, 5, 7)
    assert (out == 77).all()
    la = np.zeros((5, 7, 2), np.uint8)
    la[..., 0], la[..., 1] = 40, 255
    la[0, 0, 1] = 0
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    out = load_rgb(tmp_path / "la.png")
    assert_rgb(out, 5, 7)
    assert (out[0, 0] == 255).all() and (out[1:] == 40).all()


def test_16bit_png_scales_to_8bit(tmp_path):
    src = np.array([[0, 65535, 32768, 257 * 10]], np.uint16)
    Image.fromarray(src).save(tmp_path / "d.png")
    assert Image.open(tmp_path / "d.png").mode.startswith("I")
    out = load_rgb(tmp_path / "d.png")
    assert_rgb(out, 1, 4)
    assert out[0, :, 0].tolist() == [0, 255, 128, 10]
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()


def test_palette_with_and_without_transparency(tmp_path):
    palette = [200, 0, 0, 0, 150, 0, 0, 0, 90] + [0] * (256 * 3 - 9)
    idx = np.array([[0, 1, 2], [2, 1, 0]], np.uint8)
    img = Image.fromarray(idx, "P")
    img.putpalette(palette)
    img.save(tmp_path / "p.png")
    img.save(tmp_path / "pt.png", transparency=1)
    out = load_rgb(tmp_path / "p.png")
    assert_rgb(out, 2, 3)
    assert out[0].tolist() == [[200, 0, 0], [0, 150, 0], [0, 0, 90]]
    out = load_rgb(tmp_path / "pt.png")
    assert out[0].tolist() == [[200, 0, 0], [255, 255, 255], [0, 0, 90]]
    assert out[1, 1].tolist() == [255, 255, 255]


def test_bilevel_and_cmyk(tmp_path):
    Image.new("1", (8, 3), 1).save(tmp_path / "b.png")
    assert (load_rgb(tmp_path / "b.png") == 255).all()
    Image.new("CMYK", (8, 3), (0, 255, 255, 0)).save(tmp_path / "c.jpg")
    out = load_rgb(tmp_path / "c.jpg")
    assert_rgb(out, 3, 8)
    assert out[1, 4, 0] > 200 and out[1, 4, 1] < 60 and out[1, 4, 2] < 60


def quadrants(h: int, w: int) -> np.ndarray:
    """Top-left red, top-right green, bottom-left blue, bottom-right white."""
    a = np.zeros((h, w, 3), np.uint8)
    a[: h // 2, : w // 2] = (255, 0, 0)
    a[: h // 2, w // 2 :] = (0, 255, 0)
    a[h // 2 :, : w // 2] = (0, 0, 255)
    a[h // 2 :, w // 2 :] = (255, 255, 255)
    return a


def corner_colours(a: np.ndarray) -> list[str]:
    names = {(1, 0, 0): "red", (0, 1, 0): "green", (0, 0, 1): "blue", (1, 1, 1): "white"}
    h, w = a.shape[:2]
    out = []
    for y, x in [(h // 4, w // 4), (h // 4, 3 * w // 4), (3 * h // 4, w // 4), (3 * h // 4, 3 * w // 4)]:
        out.append(names.get(tuple(int(c > 127) for c in a[y, x]), "?"))
    return out  # top-left, top-right, bottom-left, bottom-right


@pytest.mark.parametrize(
    "orientation, shape, corners",
    [
        (1, (40, 64), ["red", "green", "blue", "white"]),
        (3, (40, 64), ["white", "blue", "green", "red"]),  # rotated 180
        (6, (64, 40), ["blue", "red", "white", "green"]),  # rotate 90 clockwise to display
        (8, (64, 40), ["green", "white", "red", "blue"]),  # rotate 90 counter-clockwise
    ],
)
def test_exif_orientation(tmp_path, orientation, shape, corners):
    src = quadrants(40, 64)
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(src).save(tmp_path / "o.jpg", quality=95, exif=exif.tobytes())
    out = load_rgb(tmp_path / "o.jpg")
    assert_rgb(out, *shape)
    assert corner_colours(out) == corners
    k = {1: 0, 3: 2, 6: -1, 8: 1}[orientation]
    assert np.abs(out.astype(int) - np.rot90(src, k)).mean() < 6


def test_exif_orientation_with_reduction(tmp_path):
    src = quadrants(600, 1000)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(src).save(tmp_path / "o.jpg", exif=exif.tobytes())
    out = load_rgb(tmp_path / "o.jpg", max_side=256)
    assert max(out.shape[:2]) <= 256 and out.shape[0] > out.shape[1]
    assert corner_colours(out) == ["blue", "red", "white", "green"]


def test_max_side_reduces_keeping_aspect(tmp_path):
    src = quadrants(300, 500)
    Image.fromarray(src).save(tmp_path / "a.png")
    full = load_rgb(tmp_path / "a.png")
    assert full.shape == (300, 500, 3)
    small = load_rgb(tmp_path / "a.png", max_side=200)
    assert max(small.shape[:2]) <= 200 and max(small.shape[:2]) >= 100
    assert abs(small.shape[1] / small.shape[0] - 5 / 3) < 0.05
    assert corner_colours(small) == ["red", "green", "blue", "white"]
    assert load_rgb(tmp_path / "a.png", max_side=500).shape == (300, 500, 3)  # not above: untouched


@pytest.mark.parametrize("kind", ["I;16", "P", "P+transparency", "1", "LA", "I"])
def test_large_images_of_every_mode_reduce(tmp_path, kind):
    """Reduction must work for modes Image.reduce does not accept (P, 1, I;16)."""
    w, h = 900, 600
    if kind == "I;16":
        img = Image.fromarray(np.full((h, w), 65535, np.uint16))
    elif kind.startswith("P"):
        img = Image.fromarray(np.ones((h, w), np.uint8), "P")
        img.putpalette([0, 0, 0, 255, 255, 255] + [0] * 762)
    elif kind == "1":
        img = Image.new("1", (w, h), 1)
    elif kind == "LA":
        img = Image.new("LA", (w, h), (255, 255))
    else:
        img = Image.fromarray(np.full((h, w), 1000, np.int32))
    path = tmp_path / ("a.tif" if kind == "I" else "a.png")
    img.save(path, **({"transparency": 0} if kind == "P+transparency" else {}))
    out = load_rgb(path, max_side=256)
    assert_rgb(out, *out.shape[:2])
    assert 128 <= max(out.shape[:2]) <= 256
    assert (out == 255).all()


HUGE_SCRIPT = r"""
import json, sys
from spacemind_cli.images import load_rgb

def peak_kb():  # this process's own high-water mark (ru_maxrss would include the parent's)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])

before = peak_kb()
out = load_rgb(sys.argv[1], max_side=2048)
after = peak_kb()
left, right = out[:, : out.shape[1] // 4].mean(axis=(0, 1)), out[:, -out.shape[1] // 4 :].mean(axis=(0, 1))
print(json.dumps({"shape": list(out.shape), "grew_mb": (after - before) / 1024,
                  "left": left.tolist(), "right": right.tolist()}))
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc for peak memory")
def test_huge_jpeg_loads_reduced_with_bounded_memory(tmp_path):
    """8000x6000 JPEG: decoded at reduced scale. A full-size decode alone is 144 MB."""
    img = Image.new("RGB", (8000, 6000), (220, 30, 30))
    img.paste((30, 30, 220), (4000, 0, 8000, 6000))
    path = tmp_path / "huge.jpg"
    img.save(path, quality=80)
    del img
    proc = subprocess.run([sys.executable, "-c", HUGE_SCRIPT, str(path)], capture_output=True, text=True,
                          cwd=REPO, timeout=60)
    assert proc.returncode == 0, proc.stderr
    res = json.loads(proc.stdout)
    h, w, c = res["shape"]
    assert c == 3 and max(h, w) <= 2048 and max(h, w) >= 1024
    assert abs(w / h - 4 / 3) < 0.01
    assert res["grew_mb"] < 72, res  # half of one full-size frame
    assert res["left"][0] > 180 and res["left"][2] < 70
    assert res["right"][2] > 180 and res["right"][0] < 70


def _bad(path: Path, *words: str) -> None:
    with pytest.raises(SceneError) as info:
        load_rgb(path)
    msg = str(info.value)
    assert str(path) in msg and "\n" not in msg
    for word in words:
        assert word in msg


def test_bad_images(tmp_path):
    good = tmp_path / "good.jpg"
    Image.fromarray(quadrants(200, 300)).save(good, quality=90)
    data = good.read_bytes()

    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(data[: len(data) // 2])
    _bad(truncated, "cannot be decoded")

    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    _bad(garbage, "cannot be decoded")

    text = tmp_path / "text.jpg"
    text.write_text("not an image\nsecond line\n")
    _bad(text, "cannot be decoded")

    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    _bad(empty, "empty")

    _bad(tmp_path / "missing.png", "does not exist")

    truncated_png = tmp_path / "truncated.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(truncated_png)
    truncated_png.write_bytes(truncated_png.read_bytes()[:-200])
    _bad(truncated_png)
