"""A checkpoint's components read and checked without loading them: configs, safetensors
headers, and the shapes their modules expect (built on the meta device, no weights in memory).
Shared by `assemble` (which refuses what does not fit) and `inspect` (which reports it)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ..errors import CheckpointError
from .cgmf import CGMF, CGMFConfig
from .checkpoint import read_json

if TYPE_CHECKING:
    from transformers import InternVLConfig


def safetensors_header(path: Path) -> dict[str, dict]:
    """Tensor entries ({dtype, shape, data_offsets}) of a safetensors file, checked against the
    file's size (a truncated shard is a CheckpointError naming it); reads the header only."""
    from ..weights import read_header

    return read_header(path)[0]


def internvl_config(base: Path) -> tuple[InternVLConfig, dict]:
    from transformers import InternVLConfig

    raw = read_json(base / "config.json")
    if raw.get("model_type") != "internvl":
        raise CheckpointError(
            f"{base}/config.json: model_type {raw.get('model_type')!r} is not 'internvl'; "
            "use the HF-format InternVL3 checkpoint (the *-hf repositories)"
        )
    try:
        return InternVLConfig.from_pretrained(str(base), local_files_only=True), raw
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{base}/config.json: not a valid InternVL config ({' '.join(str(exc).split())[:200]})") from None


def meta_internvl(config):
    from transformers import InternVLForConditionalGeneration

    with torch.device("meta"):
        return InternVLForConditionalGeneration(config)


def vggt_source(vggt: Path) -> tuple[Path, dict | None]:
    """(weight file, config dict or None) of a VGGT folder or weight file."""
    if vggt.is_dir():
        weights = next((vggt / n for n in ("model.safetensors", "model.pt") if (vggt / n).is_file()), None)
        if weights is None:
            raise CheckpointError(f"VGGT folder {vggt} holds neither model.safetensors nor model.pt")
        cfg = read_json(vggt / "config.json") if (vggt / "config.json").is_file() else None
        return weights, cfg
    if vggt.is_file():
        if vggt.suffix not in (".safetensors", ".pt", ".pth"):
            raise CheckpointError(f"VGGT weights {vggt}: expected a .safetensors or .pt file")
        cfg_file = vggt.parent / "config.json"
        return vggt, (read_json(cfg_file) if cfg_file.is_file() else None)
    raise CheckpointError(f"VGGT checkpoint {vggt} not found")


def vggt_config(raw: dict | None, where: Path):
    from .vggt import VGGTConfig

    try:
        return VGGTConfig.from_dict(raw) if raw is not None else VGGTConfig()
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{where}: not a VGGT config ({exc})") from None


def cgmf_shapes(cfg: CGMFConfig) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        module = CGMF(cfg)
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def check_fusion_weights(path: Path, cfg: CGMFConfig) -> None:
    if path.suffix != ".safetensors":
        raise CheckpointError(f"fusion weights {path}: only .safetensors files are accepted")
    header = safetensors_header(path)
    expected = cgmf_shapes(cfg)
    dims = f"d_v={cfg.d_v} d_s={cfg.d_s} d_a={cfg.d_a} hidden={cfg.hidden_width}"
    missing = sorted(set(expected) - set(header))
    extra = sorted(set(header) - set(expected))
    if missing or extra:
        what = f"missing {', '.join(missing[:3])}" if missing else f"unexpected {', '.join(extra[:3])}"
        raise CheckpointError(f"fusion weights {path} do not match the CGMF config ({dims}): {what}")
    for k, shape in expected.items():
        if tuple(header[k]["shape"]) != shape:
            raise CheckpointError(
                f"fusion weights {path} do not match the CGMF config ({dims}): "
                f"{k} is {list(header[k]['shape'])}, expected {list(shape)}"
            )
