"""Frame preprocessing for the two encoders, without torchvision.

Resizing happens on CPU workers with PIL (bicubic, as VGGT's and InternVL's loaders do) and
yields uint8 arrays: compact to ship to a GPU actor and exact, since both reference loaders
resize the uint8 image before converting to [0, 1]. Normalisation happens on the device.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from PIL import Image

from .config_dict import config_from_dict

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class PreprocessConfig:
    # VGGT: long side to vggt_size, short side to a multiple of the patch size, then pad to a
    # square with vggt_pad_value ("pad", SpaceMind: zeros), or width to vggt_size and centre-crop
    # the height ("crop", VGGT's default loader).
    vggt_size: int = 518
    vggt_patch: int = 14
    vggt_mode: str = "pad"
    vggt_pad_value: float = 0.0
    # InternViT: one square tile per frame, no dynamic tiling.
    vit_size: int = 448
    vit_mean: tuple[float, float, float] = IMAGENET_MEAN
    vit_std: tuple[float, float, float] = IMAGENET_STD

    def to_dict(self) -> dict:
        d = asdict(self)
        d["vit_mean"], d["vit_std"] = list(self.vit_mean), list(self.vit_std)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> PreprocessConfig:
        cfg = config_from_dict(cls, d, where="preprocess")
        cfg.vit_mean, cfg.vit_std = _three_numbers("vit_mean", cfg.vit_mean), _three_numbers("vit_std", cfg.vit_std)
        return cfg


def _three_numbers(name: str, value) -> tuple:
    """A per-channel (RGB) statistic; ValueError (config_from_dict's contract) if it is not one."""
    if not (isinstance(value, (list, tuple)) and len(value) == 3
            and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in value)):
        raise ValueError(f"preprocess: {name} must be a list of 3 numbers, got {value!r}")
    return tuple(value)


def _bicubic(frame: np.ndarray, width: int, height: int) -> np.ndarray:
    if frame.shape[1] == width and frame.shape[0] == height:
        return frame
    return np.asarray(Image.fromarray(frame).resize((width, height), Image.Resampling.BICUBIC))


def vggt_frame(frame: np.ndarray, cfg: PreprocessConfig) -> np.ndarray:
    """HxWx3 uint8 -> hxwx3 uint8 as VGGT's loader would produce (before /255)."""
    h, w = frame.shape[:2]
    size, patch = cfg.vggt_size, cfg.vggt_patch
    if cfg.vggt_mode == "pad":
        if w >= h:
            new_w, new_h = size, round(h * (size / w) / patch) * patch
        else:
            new_h, new_w = size, round(w * (size / h) / patch) * patch
        new_h, new_w = max(new_h, patch), max(new_w, patch)
        resized = _bicubic(frame, new_w, new_h)
        pad_h, pad_w = size - new_h, size - new_w
        top, left = pad_h // 2, pad_w // 2
        fill = int(round(cfg.vggt_pad_value * 255))
        out = np.full((size, size, 3), fill, dtype=np.uint8)
        out[top : top + new_h, left : left + new_w] = resized
        return out
    if cfg.vggt_mode == "crop":
        new_w = size
        new_h = max(round(h * (new_w / w) / patch) * patch, patch)
        resized = _bicubic(frame, new_w, new_h)
        if new_h > size:
            start = (new_h - size) // 2
            resized = resized[start : start + size]
        return np.ascontiguousarray(resized)
    raise ValueError(f"unknown vggt_mode {cfg.vggt_mode!r} (pad | crop)")


def vggt_frames(frames: list[np.ndarray], cfg: PreprocessConfig) -> np.ndarray:
    """A clip's frames for VGGT, stacked [S, H, W, 3] uint8. "crop" frames of mixed aspect are
    padded to the largest, as VGGT's loader does."""
    out = [vggt_frame(f, cfg) for f in frames]
    hmax, wmax = max(o.shape[0] for o in out), max(o.shape[1] for o in out)
    if any(o.shape[:2] != (hmax, wmax) for o in out):
        fill = int(round(cfg.vggt_pad_value * 255))
        padded = []
        for o in out:
            canvas = np.full((hmax, wmax, 3), fill, dtype=np.uint8)
            top, left = (hmax - o.shape[0]) // 2, (wmax - o.shape[1]) // 2
            canvas[top : top + o.shape[0], left : left + o.shape[1]] = o
            padded.append(canvas)
        out = padded
    return np.stack(out)


def vit_frames(frames: list[np.ndarray], cfg: PreprocessConfig) -> np.ndarray:
    """A clip's frames for InternViT: each resized to one vit_size square tile, [S, h, w, 3] uint8."""
    return np.stack([_bicubic(f, cfg.vit_size, cfg.vit_size) for f in frames])


def _frames_tensor(frames_u8: np.ndarray | torch.Tensor) -> torch.Tensor:
    # Frames that arrive through Arrow (Ray Data batches, the feature cache) are read-only views;
    # torch would share and warn about them, so those alone are copied.
    if isinstance(frames_u8, np.ndarray) and not frames_u8.flags.writeable:
        frames_u8 = frames_u8.copy()
    return torch.as_tensor(frames_u8)


def vggt_tensor(frames_u8: np.ndarray | torch.Tensor, device, dtype=torch.float32) -> torch.Tensor:
    """[S,H,W,3] uint8 -> [1,S,3,H,W] in [0,1] (VGGT normalises with ImageNet stats itself)."""
    x = _frames_tensor(frames_u8).to(device)
    return (x.permute(0, 3, 1, 2).to(dtype) / 255.0).unsqueeze(0)


def vit_tensor(frames_u8: np.ndarray | torch.Tensor, cfg: PreprocessConfig, device, dtype=torch.float32) -> torch.Tensor:
    """[S,h,w,3] uint8 -> [S,3,h,w] normalised pixel values for InternViT."""
    x = _frames_tensor(frames_u8).to(device).permute(0, 3, 1, 2).to(torch.float32) / 255.0
    mean = torch.tensor(cfg.vit_mean, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(cfg.vit_std, device=x.device).view(1, 3, 1, 1)
    return ((x - mean) / std).to(dtype)


@dataclass
class PreparedClip:
    """What a CPU worker hands to the encoders: both encoders' inputs as uint8 arrays."""

    vggt: np.ndarray  # [S, H, W, 3] uint8
    vit: np.ndarray  # [S, h, w, 3] uint8
    extra: dict = field(default_factory=dict)


def prepare(frames: list[np.ndarray], cfg: PreprocessConfig) -> PreparedClip:
    return PreparedClip(vggt=vggt_frames(frames, cfg), vit=vit_frames(frames, cfg))
