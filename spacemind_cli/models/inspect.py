"""What a SpaceMind checkpoint folder holds, without loading the big models: each component's
parameter counts and dtypes (from safetensors headers) against what its config expects (modules
built on the meta device), expected-but-missing weights, a config summary and the fingerprints.

One part per component (`_internvl`, `_vggt`, `_fusion`, `_lora`), each returning its rows of the
component table and appending what it finds missing; `inspect` puts them together.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import CheckpointError
from .checkpoint import SpaceMindConfig, checkpoint_id, encoder_fingerprint, load_config, resolve_component
from .components import (
    cgmf_shapes,
    check_fusion_weights,
    internvl_config,
    meta_internvl,
    safetensors_header,
    vggt_config,
    vggt_source,
)
from .internvl import SHARD_INDEX, WEIGHT_PREFIXES, missing_shards
from .vggt import SKIPPED_PREFIXES as VGGT_HEAD_PREFIXES

_ST_DTYPES = {
    "F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "F8_E4M3": "float8_e4m3fn",
    "F8_E5M2": "float8_e5m2", "I64": "int64", "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8",
    "BOOL": "bool",
}  # fmt: skip
_INTERNVL_PARTS = (
    ("vision", "InternVL vision tower", WEIGHT_PREFIXES["vision"]),
    ("projector", "InternVL projector", WEIGHT_PREFIXES["projector"]),
    ("llm", "InternVL LLM", WEIGHT_PREFIXES["llm"]),
)


def _numel(shape) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n


def _group(headers: dict[str, dict], prefixes: tuple[str, ...]) -> dict:
    names = [k for k in headers if k.startswith(prefixes)]
    return {
        "tensors": len(names),
        "parameters": sum(_numel(headers[k]["shape"]) for k in names),
        "dtypes": sorted({_ST_DTYPES.get(headers[k]["dtype"], headers[k]["dtype"]) for k in names}),
    }


def _component(name: str, key: str, source, group: dict | None, expected: int | None) -> dict:
    group = group or {"tensors": 0, "parameters": 0, "dtypes": []}
    return {"name": name, "key": key, "source": str(source), "expected": expected, **group}


@dataclass
class _Findings:
    """What `inspect` gathers as it goes: the component rows and what is missing."""

    root: Path
    trusted_paths: tuple | list
    components: list[dict] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    def resolve(self, ref: str, what: str) -> str | None:
        """resolve_component, except that a reference to nothing is reported, not raised (a
        reference outside the folder that the user did not trust is still refused)."""
        try:
            return resolve_component(self.root, ref, what, self.trusted_paths)
        except CheckpointError as exc:
            if os.path.exists(os.path.join(os.path.realpath(self.root), ref)):
                raise
            self.missing.append(str(exc))
            return None


def _internvl_expected(model) -> dict[str, int]:
    """Unique parameter counts of the vision tower, projector and LLM (+ lm_head unless tied)."""
    inner = model.model
    vision = {id(p): p.numel() for p in inner.vision_tower.parameters()}
    projector = {id(p): p.numel() for p in inner.multi_modal_projector.parameters()}
    llm = {id(p): p.numel() for p in inner.language_model.parameters()}
    for p in model.lm_head.parameters():
        llm.setdefault(id(p), p.numel())
    return {"vision": sum(vision.values()), "projector": sum(projector.values()), "llm": sum(llm.values())}


def _internvl(found: _Findings, config: SpaceMindConfig) -> dict:
    """The vision tower, projector and LLM rows; returns the InternVL config summary ({} if unread)."""
    base = found.resolve(config.base, "base (InternVL)")
    if base is None or not Path(base).is_dir():
        for key, name, _ in _INTERNVL_PARTS:
            found.components.append(_component(name, f"internvl.{key}", base, None, None))
        return {}
    base_path = Path(base)
    files = sorted(base_path.glob("*.safetensors"))
    headers: dict[str, dict] = {}
    for f in files:
        try:
            headers.update(safetensors_header(f))
        except CheckpointError as exc:  # a truncated shard: named, and the rest still inspected
            found.missing.append(str(exc))
    for shard in sorted(missing_shards(base_path)):
        found.missing.append(f"InternVL shard {shard} (listed in {SHARD_INDEX})")
    expected: Mapping[str, int | None] = {"vision": None, "projector": None, "llm": None}
    summary: dict = {}
    try:
        icfg, iraw = internvl_config(base_path)
        expected = _internvl_expected(meta_internvl(icfg))
        text = iraw.get("text_config") or {}
        summary = {
            "llm_layers": text.get("num_hidden_layers"),
            "llm_hidden": text.get("hidden_size"),
            "vision_layers": (iraw.get("vision_config") or {}).get("num_hidden_layers"),
            "image_seq_length": iraw.get("image_seq_length"),
        }
    except CheckpointError as exc:
        found.missing.append(f"InternVL config: {exc}")
    if not files:
        found.missing.append(f"InternVL weights: no .safetensors in {base_path}")
    for key, name, prefixes in _INTERNVL_PARTS:
        group = _group(headers, prefixes)
        found.components.append(_component(name, f"internvl.{key}", base_path, group, expected[key]))
        want = expected[key]
        if files and group["tensors"] == 0:
            found.missing.append(f"{name}: no {prefixes[-1]}* tensors in the InternVL safetensors")
        elif want is not None and group["parameters"] < want:
            found.missing.append(f"{name}: {group['parameters']:,} of {want:,} parameters present")
    return summary


def _vggt(found: _Findings, config: SpaceMindConfig):
    """The aggregator and camera-head rows; returns (VGGT config or None, parameters of the
    prediction heads SpaceMind does not use, present in the file); no rows without a VGGT."""
    if config.vggt is None:  # fusion none, assembled without --vggt: nothing VGGT is expected
        return None, 0
    vggt_ref = found.resolve(config.vggt, "vggt")
    vggt_path = Path(vggt_ref or found.root / config.vggt)
    weights, vraw = None, None
    if vggt_ref is not None:
        try:
            weights, vraw = vggt_source(vggt_path)
        except CheckpointError as exc:
            found.missing.append(f"VGGT weights: {exc}")
    vcfg = None
    try:
        vcfg = vggt_config(vraw, vggt_path)
    except CheckpointError as exc:
        found.missing.append(str(exc))
    vexp: dict[str, int | None] = {"aggregator": None, "camera_head": None}
    if vcfg is not None:
        from .vggt import VGGT

        with torch.device("meta"):
            vmodel = VGGT(vcfg)
        vexp = {k: sum(p.numel() for p in getattr(vmodel, k).parameters()) for k in vexp}
    vheaders = None
    if weights is not None:
        try:
            vheaders = _vggt_tensor_shapes(weights)
        except CheckpointError as exc:  # a truncated file: named
            found.missing.append(str(exc))
    for key, name, prefix in (("aggregator", "VGGT aggregator", "aggregator."), ("camera_head", "VGGT camera head", "camera_head.")):
        group = _group(vheaders, (prefix,)) if vheaders is not None else None
        found.components.append(_component(name, f"vggt.{key}", weights or vggt_path, group, vexp[key]))
        want = vexp[key]
        if group is not None and want is not None and group["parameters"] < want:
            found.missing.append(f"{name}: {group['parameters']:,} of {want:,} parameters present")
    unused_heads = _group(vheaders, VGGT_HEAD_PREFIXES)["parameters"] if vheaders else 0
    return vcfg, unused_heads


def _fusion(found: _Findings, config: SpaceMindConfig) -> None:
    """The CGMF row (none when fusion = none)."""
    if config.fusion != "cgmf":
        return
    cexp = sum(_numel(s) for s in cgmf_shapes(config.cgmf).values())
    fpath = found.root / config.fusion_weights
    if fpath.is_file():
        try:
            fheader = safetensors_header(fpath)
            check_fusion_weights(fpath, config.cgmf)
        except CheckpointError as exc:
            found.missing.append(str(exc))
            fheader = None
        found.components.append(_component("CGMF fusion", "cgmf", fpath, _group(fheader, ("",)) if fheader else None,
                                           cexp))
    else:
        found.components.append(_component("CGMF fusion", "cgmf", fpath, None, cexp))
        found.missing.append(f"{config.fusion_weights}: CGMF weights (fusion = cgmf needs them)")


def _lora(found: _Findings, config: SpaceMindConfig) -> dict | None:
    """The LoRA adapter row (none without one); returns its settings summary (None if unread)."""
    if not config.lora:
        return None
    from .lora import ADAPTER_CONFIG, adapter_weights_file, read_adapter_config

    lref = found.resolve(config.lora, "lora")
    lpath = Path(lref or found.root / config.lora)
    group = None
    summary = None
    if lref is not None:
        try:
            lcfg = read_adapter_config(lpath)
            summary = {k: lcfg.get(k) for k in ("r", "lora_alpha", "use_rslora", "target_modules")}
        except CheckpointError as exc:
            found.missing.append(f"LoRA {ADAPTER_CONFIG}: {exc}")
        try:
            header = safetensors_header(adapter_weights_file(lpath))
            group = {
                "tensors": len(header),
                "parameters": sum(_numel(v["shape"]) for v in header.values()),
                "dtypes": sorted({_ST_DTYPES.get(v["dtype"], v["dtype"]) for v in header.values()}),
                "modules": sum(1 for k in header if ".lora_A" in k),
            }
        except CheckpointError as exc:
            found.missing.append(f"LoRA weights: {exc}")
    found.components.append(_component("LoRA adapter", "lora", lpath, group, None))
    return summary


def _fingerprints(root: Path, trusted_paths) -> dict[str, str]:
    fingerprints = {}
    for name, fn in (("encoder_fingerprint", encoder_fingerprint), ("checkpoint_id", checkpoint_id)):
        try:
            fingerprints[name] = fn(root, trusted_paths)
        except (CheckpointError, ValueError, OSError) as exc:
            fingerprints[name] = f"unavailable ({' '.join(str(exc).split())})"
    return fingerprints


def _summary(config: SpaceMindConfig, internvl_summary: dict, vcfg, unused_heads: int, lora_summary: dict | None) -> dict:
    """The config in one line per part, as `checkpoint inspect` prints it."""
    c, pre = config.cgmf, config.preprocess
    parts = [k for k in ("camera_bias", "importance", "camera_memory", "camera_gate") if getattr(c, k)]
    return {
        "format_version": config.to_dict()["format_version"],
        "fusion": config.fusion,
        "cgmf": (
            f"d_v={c.d_v} d_s={c.d_s} d_a={c.d_a} heads={c.num_heads} hidden={c.hidden_width} "
            f"init={c.init} parts={','.join(parts) or 'none'}"
            if config.fusion == "cgmf"
            else None
        ),
        "vggt_layers": list(config.vggt_layers),
        "num_frames": config.num_frames,
        "sampling": config.sampling,
        "preprocess": (
            (f"VGGT {pre.vggt_size}px {pre.vggt_mode} (fill {pre.vggt_pad_value}, patch {pre.vggt_patch}); "
             if config.vggt is not None else "no VGGT; ")
            + f"InternViT {pre.vit_size}px"
        ),
        "internvl": (
            f"LLM {internvl_summary.get('llm_layers')} layers x {internvl_summary.get('llm_hidden')}, "
            f"vision {internvl_summary.get('vision_layers')} layers, {internvl_summary.get('image_seq_length')} tokens/frame"
            if internvl_summary
            else config.base
        ),
        "vggt_model": (
            f"embed {vcfg.embed_dim} x depth {vcfg.depth}, {vcfg.num_heads} heads, {vcfg.patch_embed} patch embed, "
            f"img {vcfg.img_size}/{vcfg.patch_size}" + (f"; unused heads in file: {unused_heads:,} params" if unused_heads else "")
            if vcfg is not None
            else None
        ),
        "lora": (
            f"r={lora_summary.get('r')} alpha={lora_summary.get('lora_alpha')}"
            + (" rsLoRA" if lora_summary.get("use_rslora") else "")
            + f" targets={lora_summary.get('target_modules')}"
            if lora_summary
            else config.lora
        ),
        "versions": ", ".join(f"{k} {v}" for k, v in config.versions.items()) or None,
    }


def inspect(ckpt_dir: str | os.PathLike, *, trusted_paths=()) -> dict:
    """What a checkpoint folder holds, from its config files and safetensors headers only."""
    root = Path(ckpt_dir)
    if not root.is_dir():
        raise CheckpointError(f"checkpoint {root} is not a folder")
    config = load_config(root)
    found = _Findings(root, trusted_paths)
    internvl_summary = _internvl(found, config)
    vcfg, unused_heads = _vggt(found, config)
    _fusion(found, config)
    lora_summary = _lora(found, config)
    details = {
        "cgmf": config.cgmf.to_dict() if config.fusion == "cgmf" else None,
        "preprocess": config.preprocess.to_dict(),
        "internvl": internvl_summary or None,
        "vggt": vcfg.to_dict() if vcfg is not None else None,
        "vggt_unused_head_parameters": unused_heads,
        "lora": lora_summary,
        "base": config.base,
        "vggt_ref": config.vggt,
    }
    fingerprints = _fingerprints(root, trusted_paths)
    broken = [f"{name}: {value}" for name, value in fingerprints.items() if value.startswith("unavailable")]
    return {
        "path": str(root),
        # False when a weight is missing or broken: `checkpoint inspect` exits 3 then.
        "complete": not found.missing and not broken,
        "config": _summary(config, internvl_summary, vcfg, unused_heads, lora_summary),
        "details": details,
        "components": found.components,
        "parameters": sum(c["parameters"] for c in found.components),
        "missing": found.missing,
        "fingerprints": fingerprints,
    }


def _vggt_tensor_shapes(weights: Path) -> dict[str, dict] | None:
    """{name: {dtype, shape}} of a VGGT weight file without reading tensor data."""
    if weights.suffix == ".safetensors":
        return safetensors_header(weights)
    try:  # a zip-format torch file can be memory-mapped: shapes without reading the data
        sd = torch.load(weights, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # legacy format or not a torch file: counts unavailable without loading
        return None
    if isinstance(sd, dict) and len(sd) == 1 and next(iter(sd)) in ("model", "state_dict"):
        sd = next(iter(sd.values()))
    if not isinstance(sd, dict):
        return None
    rev = {v: k for k, v in _ST_DTYPES.items()}
    return {
        k: {"dtype": rev.get(str(v.dtype).replace("torch.", ""), str(v.dtype)), "shape": list(v.shape)}
        for k, v in sd.items()
        if isinstance(v, torch.Tensor)
    }
