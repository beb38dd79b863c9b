"""Build a SpaceMind checkpoint folder from an InternVL folder and a VGGT-1B folder or weight
file (none for fusion "none"), without loading the big models.

The InternVL folder is in transformers' layout (the -hf repositories; linked as it is) or in
InternVL's original layout (most fine-tunes; converted to transformers' layout shard by shard,
`internvl_convert.py`, no remote code run).

Weights are hard-linked (or copied), small files copied, the CGMF is either fresh ("residual_zero":
the untrained fusion leaves InternVL's tokens unchanged) or given as trained safetensors weights,
and an optional PEFT LoRA adapter is copied into `lora/`. Only config files and safetensors headers
are read; models are built on the meta device (no weights in memory).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch

from ..defaults import DEFAULTS
from ..errors import CheckpointError, InputError
from ..weights import check_files
from .cgmf import CGMF, CGMFConfig
from .checkpoint import SpaceMindConfig, copy_folder, place_file, versions
from .components import (
    check_fusion_weights,
    internvl_config,
    meta_internvl,
    safetensors_header,
    vggt_config,
    vggt_source,
)
from .internvl import SHARD_INDEX, missing_shards
from .preprocess import IMAGENET_MEAN, IMAGENET_STD, PreprocessConfig

log = logging.getLogger(__name__)

FUSION_FILE = "fusion.safetensors"


def _image_size(raw: dict, base: Path) -> int:
    size = (raw.get("vision_config") or {}).get("image_size", 448)
    if isinstance(size, (list, tuple)):
        if len(set(size)) != 1:
            raise CheckpointError(f"{base}/config.json: non-square vision image_size {size} is not supported")
        size = size[0]
    return int(size)


def _image_stats(base: Path) -> tuple[tuple, tuple]:
    path = base / "preprocessor_config.json"
    if path.is_file():
        try:
            pre = json.loads(path.read_text())
            mean, std = pre.get("image_mean"), pre.get("image_std")
            if isinstance(mean, list) and isinstance(std, list) and len(mean) == len(std) == 3:
                return tuple(float(x) for x in mean), tuple(float(x) for x in std)
        except (OSError, ValueError, TypeError):
            log.warning("%s unreadable; using ImageNet mean/std", path)
    return IMAGENET_MEAN, IMAGENET_STD


def _torch_file_shapes(weights: Path) -> dict[str, tuple[int, ...]]:
    """Tensor shapes of a torch weight file (VGGT-1B's model.pt), unpickled with weights_only=True:
    a zip-format file memory-mapped (no tensor data read), a legacy one read whole."""
    import zipfile

    try:
        sd = torch.load(weights, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(weights))
    except Exception as exc:  # unsafe pickles, truncated or foreign files: whatever torch raises
        raise CheckpointError(f"{weights}: unreadable or unsafe torch checkpoint ({' '.join(str(exc).split())[:160]})") from None
    if isinstance(sd, dict) and len(sd) == 1 and next(iter(sd)) in ("model", "state_dict"):
        sd = next(iter(sd.values()))
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise CheckpointError(f"{weights}: not a state dict of tensors")
    return {str(k): tuple(v.shape) for k, v in sd.items()}


def _check_vggt_weights(weights: Path, vcfg) -> None:
    """Keys and shapes of a VGGT weight file (safetensors header, or model.pt read with
    weights_only) against the config, on the meta device."""
    from .vggt import VGGT

    if weights.suffix == ".safetensors":
        shapes = {k: tuple(v["shape"]) for k, v in safetensors_header(weights).items()}
    else:
        shapes = _torch_file_shapes(weights)
    state = {k: torch.empty(shape, device="meta") for k, shape in shapes.items()}
    logger = logging.getLogger("spacemind_cli.models.vggt")
    level = logger.level
    logger.setLevel(logging.WARNING)  # the loader's info line would describe a load that does not happen
    try:
        VGGT.from_state_dict(state, vcfg, device="meta", source=str(weights))
    finally:
        logger.setLevel(level)


def _cgmf_config(d_v: int, d_s: int, overrides: dict | None) -> CGMFConfig:
    known = {f.name for f in fields(CGMFConfig)}
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise CheckpointError(f"unknown CGMF settings {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    for k, v in (("d_v", d_v), ("d_s", d_s)):
        if k in overrides and overrides[k] != v:
            raise CheckpointError(f"CGMF {k}={overrides[k]} conflicts with the encoders ({k} must be {v})")
    values = {"init": "residual_zero", **overrides, "d_v": d_v, "d_s": d_s}
    cfg = CGMFConfig(**values)
    try:
        with torch.device("meta"):
            CGMF(cfg)
    except ValueError as exc:
        raise CheckpointError(f"invalid CGMF settings: {exc}") from None
    return cfg


def assemble(
    out_dir: str | os.PathLike,
    *,
    base: str | os.PathLike,
    vggt: str | os.PathLike | None = None,
    fusion_weights: str | os.PathLike | None = None,
    lora: str | os.PathLike | None = None,
    fusion: str = "cgmf",
    cgmf_overrides: dict | None = None,
    num_frames: int = DEFAULTS.num_frames,
    link: bool = True,
) -> Path:
    """Build a SpaceMind checkpoint folder at `out_dir` (which must not hold anything yet).
    `vggt` may be left out for fusion "none": the checkpoint is then plain InternVL, no VGGT."""
    from .internvl_convert import convert_folder, detect_layout, read_original
    from .lora import plan_lora, read_adapter_config

    out = Path(out_dir)
    base = Path(base)
    vggt = Path(vggt) if vggt is not None else None
    if fusion not in ("cgmf", "none"):
        raise CheckpointError(f"unknown fusion {fusion!r} (cgmf | none)")
    if vggt is None and fusion != "none":
        raise InputError("--vggt is needed for fusion cgmf (only --fusion none runs without VGGT)")
    if fusion == "none" and (fusion_weights is not None or cgmf_overrides):
        raise CheckpointError("fusion = none takes no fusion weights or CGMF settings")
    if int(num_frames) < 1:
        raise CheckpointError(f"num_frames must be >= 1, got {num_frames}")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise CheckpointError(f"{out} already exists and is not an empty folder; choose a new output folder")

    # InternVL: config only.
    if not base.is_dir():
        raise CheckpointError(f"--base {base} is not a folder (expected an InternVL folder)")
    layout = detect_layout(base)
    if layout == "original":
        from transformers import InternVLConfig

        iraw = read_original(base).hf
        icfg = InternVLConfig(**iraw)
    else:
        icfg, iraw = internvl_config(base)
    weight_files = sorted(base.glob("*.safetensors"))
    if not weight_files:
        raise CheckpointError(f"InternVL folder {base} holds no .safetensors weights")
    absent = sorted(missing_shards(base))
    if absent:
        raise CheckpointError(f"InternVL folder {base}: shard {absent[0]} listed in {SHARD_INDEX} is missing")
    check_files(weight_files)  # every shard whole: header and data offsets against its size
    d_v = int(icfg.get_text_config().hidden_size)

    # VGGT: config and safetensors header only.
    if vggt is not None:
        vggt_weights, vggt_raw = vggt_source(vggt)
        vcfg = vggt_config(vggt_raw, vggt)
        _check_vggt_weights(vggt_weights, vcfg)
        d_s = 2 * int(vcfg.embed_dim)
    else:
        vggt_weights, vcfg, d_s = None, None, CGMFConfig().d_s  # unused: fusion none

    cgmf_cfg = _cgmf_config(d_v, d_s, cgmf_overrides if fusion == "cgmf" else None)
    if fusion_weights is not None:
        fusion_weights = Path(fusion_weights)
        if not fusion_weights.is_file():
            raise CheckpointError(f"fusion weights {fusion_weights} not found")
        check_fusion_weights(fusion_weights, cgmf_cfg)
    if lora is not None:
        lora = Path(lora)
        read_adapter_config(lora)
        plan_lora(meta_internvl(icfg), lora)  # every key maps onto the LLM, shapes fit

    mean, std = _image_stats(base)
    vggt_sizes: dict[str, Any] = {"vggt_size": int(vcfg.img_size), "vggt_patch": int(vcfg.patch_size)} if vcfg is not None else {}
    preprocess = PreprocessConfig(**vggt_sizes, vit_size=_image_size(iraw, base), vit_mean=mean, vit_std=std)
    config = SpaceMindConfig(
        base="internvl",
        vggt="vggt" if vggt is not None else None,
        fusion=fusion,
        cgmf=cgmf_cfg,
        preprocess=preprocess,
        num_frames=int(num_frames),
        lora="lora" if lora is not None else None,
        versions=versions(),
    )

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.assembling-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        if layout == "original":
            convert_folder(base, tmp / "internvl")
        else:
            copy_folder(base, tmp / "internvl", link, f"InternVL folder {base}")
        if vggt_weights is not None:
            name = "model.safetensors" if vggt_weights.suffix == ".safetensors" else "model.pt"
            place_file(vggt_weights, tmp / "vggt" / name, link)
            (tmp / "vggt" / "config.json").write_text(json.dumps(vcfg.to_dict(), indent=2) + "\n")
        if fusion == "cgmf":
            if fusion_weights is not None:
                place_file(fusion_weights, tmp / FUSION_FILE, link)
            else:
                from safetensors.torch import save_file

                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(0)  # the same inputs assemble the same checkpoint (and checkpoint id)
                    module = CGMF(cgmf_cfg)
                state = {k: v.detach().contiguous() for k, v in module.state_dict().items()}
                save_file(state, str(tmp / FUSION_FILE), metadata={"format": "pt"})
        if lora is not None:
            copy_folder(lora, tmp / "lora", link, f"LoRA adapter {lora}")
        (tmp / "config.json").write_text(json.dumps(config.to_dict(), indent=2) + "\n")
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise CheckpointError(f"cannot write checkpoint {out}: {exc.strerror or exc}") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    fused = "fresh residual-zero CGMF" if fusion == "cgmf" and fusion_weights is None else f"fusion {fusion}"
    log.info("assembled %s: InternVL %s (%s layout), VGGT %s, %s%s", out, base, layout, vggt or "none", fused,
             ", LoRA" if lora else "")
    return out
