"""Reading one image file as an RGB uint8 array, robustly."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from .errors import SceneError

_HIGH_DEPTH_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N", "F"}
_REDUCIBLE_MODES = {"L", "LA", "RGB", "RGBA", "CMYK", "I", "F"}


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode in _HIGH_DEPTH_MODES:
        arr = np.asarray(img).astype(np.float64)
        top = 65535.0 if img.mode.startswith("I;16") else max(float(arr.max()), 1.0)
        if img.mode == "I" and arr.max() <= 255:
            top = 255.0
        arr = np.clip(np.round(arr / top * 255.0), 0, 255).astype(np.uint8)
        return Image.fromarray(arr, mode="L").convert("RGB")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        # Like VGGT's own loader: transparent pixels become white, not black.
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if img.mode != "RGB":
        return img.convert("RGB")
    return img


def load_rgb(path: str | Path, *, max_side: int | None = None) -> np.ndarray:
    """Decode an image to an HxWx3 uint8 RGB array, EXIF orientation applied.

    Frames whose long side exceeds `max_side` are reduced while decoding (JPEG draft mode,
    then an integer box reduction), keeping memory bounded for huge photographs.
    Raises SceneError naming the file for missing, empty, corrupt or truncated images.
    """
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            raise SceneError(f"image {path} is empty (0 bytes)")
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img: Image.Image  # the opened file, then its reduced or converted copies
            with Image.open(path) as img:
                if max_side and max(img.size) > max_side and img.format == "JPEG":
                    # Ask for the final size: the decoder scales by 1/2, 1/4 or 1/8 itself,
                    # never below the size asked for (asking for max_side x max_side would
                    # leave an 8000x6000 photo at 4000x3000, 36 MB).
                    factor = -(-max(img.size) // max_side)
                    img.draft("RGB", (-(-img.size[0] // factor), -(-img.size[1] // factor)))
                img.load()
                ImageOps.exif_transpose(img, in_place=True)  # no full-size copy when upright
                if max_side and max(img.size) > max_side:
                    factor = -(-max(img.size) // max_side)
                    if img.mode not in _REDUCIBLE_MODES:  # Image.reduce refuses P, 1, I;16...
                        img = _to_rgb(img)
                    img = img.reduce(factor)
                img = _to_rgb(img)
                return np.asarray(img, dtype=np.uint8).copy()
    except SceneError:
        raise
    except FileNotFoundError:
        raise SceneError(f"image {path} does not exist") from None
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise SceneError(f"image {path} is too large to decode safely: {exc}") from None
    except Exception as exc:  # PIL raises OSError, ValueError, SyntaxError... on corrupt files
        reason = str(exc) or type(exc).__name__
        raise SceneError(f"image {path} cannot be decoded: {reason}") from None
