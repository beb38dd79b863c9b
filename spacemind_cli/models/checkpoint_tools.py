"""Assemble and inspect SpaceMind checkpoint folders without loading the big models.

`assemble` builds a checkpoint folder from an HF-format InternVL3 folder and a VGGT-1B folder or
weight file: weights are hard-linked (or copied), small files copied, the CGMF is either fresh
("residual_zero": the untrained fusion leaves InternVL's tokens unchanged) or given as trained
safetensors weights, and an optional PEFT LoRA adapter is copied into `lora/`. Only config files
and safetensors headers are read; models are built on the meta device (no weights in memory).

`inspect` reports a checkpoint's components, parameter counts and dtypes (from safetensors
headers), expected-but-missing weights, a config summary and the fingerprints.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import struct
from dataclasses import fields
from pathlib import Path

import torch

from ..errors import CheckpointError
from .cgmf import CGMF, CGMFConfig
from .preprocess import IMAGENET_MEAN, IMAGENET_STD, PreprocessConfig
from .checkpoint import (
    SpaceMindConfig,
    checkpoint_id,
    copy_or_link,
    encoder_fingerprint,
    load_config,
    read_json,
    resolve_component,
    versions,
)
from .internvl import SHARD_INDEX, VISION_PREFIXES, missing_shards
from .vggt import SKIPPED_PREFIXES as VGGT_HEAD_PREFIXES

log = logging.getLogger(__name__)

PROJECTOR_PREFIXES = ("model.multi_modal_projector.", "multi_modal_projector.")
LLM_PREFIXES = ("model.language_model.", "language_model.", "lm_head.")
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".h5", ".msgpack")
FUSION_FILE = "fusion.safetensors"
_ST_DTYPES = {
    "F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "F8_E4M3": "float8_e4m3fn",
    "F8_E5M2": "float8_e5m2", "I64": "int64", "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8",
    "BOOL": "bool",
}  # fmt: skip


# ------------------------------------------------------------------------------------------ helpers
def safetensors_header(path: Path) -> dict[str, dict]:
    """Tensor entries ({dtype, shape, data_offsets}) of a safetensors file; reads the header only."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read(8)
            if len(raw) != 8:
                raise ValueError("file shorter than its header length")
            (n,) = struct.unpack("<Q", raw)
            if n > 100 << 20:
                raise ValueError(f"header length {n} is implausible")
            header = json.loads(fh.read(n))
    except FileNotFoundError:
        raise CheckpointError(f"{path} does not exist") from None
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path} is not a readable safetensors file ({exc})") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path} is not a readable safetensors file (header is not an object)")
    header.pop("__metadata__", None)
    return header


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


def _internvl_config(base: Path):
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


def _meta_internvl(config):
    from transformers import InternVLForConditionalGeneration

    with torch.device("meta"):
        return InternVLForConditionalGeneration(config)


def _internvl_expected(model) -> dict[str, int]:
    """Unique parameter counts of the vision tower, projector and LLM (+ lm_head unless tied)."""
    inner = model.model
    vision = {id(p): p.numel() for p in inner.vision_tower.parameters()}
    projector = {id(p): p.numel() for p in inner.multi_modal_projector.parameters()}
    llm = {id(p): p.numel() for p in inner.language_model.parameters()}
    for p in model.lm_head.parameters():
        llm.setdefault(id(p), p.numel())
    return {"vision": sum(vision.values()), "projector": sum(projector.values()), "llm": sum(llm.values())}


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


def _vggt_source(vggt: Path) -> tuple[Path, dict | None]:
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


def _vggt_config(raw: dict | None, where: Path):
    from .vggt import VGGTConfig

    try:
        return VGGTConfig.from_dict(raw) if raw is not None else VGGTConfig()
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{where}: not a VGGT config ({exc})") from None


def _check_vggt_weights(weights: Path, vcfg) -> None:
    """Keys and shapes of a VGGT safetensors file against the config, on the meta device."""
    if weights.suffix != ".safetensors":
        return  # a .pt file cannot be checked without unpickling its header; VGGT.from_pretrained checks it
    from .vggt import VGGT

    header = safetensors_header(weights)
    state = {k: torch.empty(v["shape"], device="meta") for k, v in header.items()}
    logger = logging.getLogger("spacemind_cli.models.vggt")
    level = logger.level
    logger.setLevel(logging.WARNING)  # the loader's info line would describe a load that does not happen
    try:
        VGGT.from_state_dict(state, vcfg, device="meta", source=str(weights))
    finally:
        logger.setLevel(level)


def _cgmf_shapes(cfg: CGMFConfig) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        module = CGMF(cfg)
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def _check_fusion_weights(path: Path, cfg: CGMFConfig) -> None:
    if path.suffix != ".safetensors":
        raise CheckpointError(f"fusion weights {path}: only .safetensors files are accepted")
    header = safetensors_header(path)
    expected = _cgmf_shapes(cfg)
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


def _place(src: Path, dst: Path, link: bool) -> None:
    """`src` at `dst`, hard-linked (when `link` and possible) or copied. A file already at `dst`
    is kept if it is the very file a link would give, else replaced: never written through, since
    it may be a hard link to a source (an older export's linked config.json)."""
    if dst.exists() and link and os.path.samefile(src, dst):
        return
    if dst.exists() or dst.is_symlink():
        dst.unlink()
    if link:
        copy_or_link(src, dst)
    else:
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst)


def copy_folder(src: Path, dst: Path, link: bool, what: str, *, skip_pickled: bool = True) -> list[str]:
    """Copy a model folder's files into `dst` (which may hold an earlier copy: see `_place`).

    Weight files are hard-linked when `link` (copied across devices); small files (config,
    tokenizer) are always copied, so editing them never edits the source. Pickled weights are
    skipped, unless `skip_pickled=False` (a VGGT folder's model.pt, which VGGT loads with
    weights_only=True), then they are weights like the others. Hidden files and folders are left
    out. Returns the names placed."""
    placed, skipped = [], []
    for entry in sorted(src.iterdir()):
        if entry.name.startswith(".") or not entry.is_file():
            continue
        pickled = entry.suffix in PICKLE_SUFFIXES
        if pickled and skip_pickled:
            skipped.append(entry.name)
            continue
        _place(entry, dst / entry.name, link and (entry.suffix == ".safetensors" or pickled))
        placed.append(entry.name)
    if skipped:
        log.info("%s: skipped %d pickled file(s) (%s); only safetensors are used", what, len(skipped), ", ".join(skipped[:3]))
    return placed


# ------------------------------------------------------------------------------------------ assemble
def assemble(
    out_dir: str | os.PathLike,
    *,
    base: str | os.PathLike,
    vggt: str | os.PathLike,
    fusion_weights: str | os.PathLike | None = None,
    lora: str | os.PathLike | None = None,
    fusion: str = "cgmf",
    cgmf_overrides: dict | None = None,
    num_frames: int = 32,
    link: bool = True,
) -> Path:
    """Build a SpaceMind checkpoint folder at `out_dir` (which must not hold anything yet)."""
    from .lora import plan_lora, read_adapter_config

    out = Path(out_dir)
    base, vggt = Path(base), Path(vggt)
    if fusion not in ("cgmf", "none"):
        raise CheckpointError(f"unknown fusion {fusion!r} (cgmf | none)")
    if fusion == "none" and (fusion_weights is not None or cgmf_overrides):
        raise CheckpointError("fusion = none takes no fusion weights or CGMF settings")
    if int(num_frames) < 1:
        raise CheckpointError(f"num_frames must be >= 1, got {num_frames}")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise CheckpointError(f"{out} already exists and is not an empty folder; choose a new output folder")

    # InternVL: config only.
    if not base.is_dir():
        raise CheckpointError(f"--base {base} is not a folder (expected an HF-format InternVL3 folder)")
    icfg, iraw = _internvl_config(base)
    weight_files = sorted(base.glob("*.safetensors"))
    if not weight_files:
        raise CheckpointError(f"InternVL folder {base} holds no .safetensors weights")
    absent = sorted(missing_shards(base))
    if absent:
        raise CheckpointError(f"InternVL folder {base}: shard {absent[0]} listed in {SHARD_INDEX} is missing")
    d_v = int(icfg.text_config.hidden_size)

    # VGGT: config and safetensors header only.
    vggt_weights, vggt_raw = _vggt_source(vggt)
    vcfg = _vggt_config(vggt_raw, vggt)
    _check_vggt_weights(vggt_weights, vcfg)
    d_s = 2 * int(vcfg.embed_dim)

    cgmf_cfg = _cgmf_config(d_v, d_s, cgmf_overrides if fusion == "cgmf" else None)
    if fusion_weights is not None:
        fusion_weights = Path(fusion_weights)
        if not fusion_weights.is_file():
            raise CheckpointError(f"fusion weights {fusion_weights} not found")
        _check_fusion_weights(fusion_weights, cgmf_cfg)
    if lora is not None:
        lora = Path(lora)
        read_adapter_config(lora)
        plan_lora(_meta_internvl(icfg), lora)  # every key maps onto the LLM, shapes fit

    mean, std = _image_stats(base)
    preprocess = PreprocessConfig(
        vggt_size=int(vcfg.img_size), vggt_patch=int(vcfg.patch_size), vit_size=_image_size(iraw, base),
        vit_mean=mean, vit_std=std,
    )  # fmt: skip
    config = SpaceMindConfig(
        base="internvl",
        vggt="vggt",
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
        copy_folder(base, tmp / "internvl", link, f"InternVL folder {base}")
        _place(vggt_weights, tmp / "vggt" / ("model.safetensors" if vggt_weights.suffix == ".safetensors" else "model.pt"), link)
        (tmp / "vggt" / "config.json").write_text(json.dumps(vcfg.to_dict(), indent=2) + "\n")
        if fusion == "cgmf":
            if fusion_weights is not None:
                _place(fusion_weights, tmp / FUSION_FILE, link)
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
    log.info("assembled %s: InternVL %s, VGGT %s, %s%s", out, base, vggt, fused, ", LoRA" if lora else "")
    return out


# ------------------------------------------------------------------------------------------ inspect
def _resolve(root: Path, ref: str, what: str, trusted_paths, missing: list[str]) -> str | None:
    """resolve_component, except that a reference to nothing is reported, not raised (a
    reference outside the folder that the user did not trust is still refused)."""
    try:
        return resolve_component(root, ref, what, trusted_paths)
    except CheckpointError as exc:
        if os.path.exists(os.path.join(os.path.realpath(root), ref)):
            raise
        missing.append(str(exc))
        return None


def _component(name: str, key: str, source, group: dict | None, expected: int | None) -> dict:
    group = group or {"tensors": 0, "parameters": 0, "dtypes": []}
    return {"name": name, "key": key, "source": str(source), "expected": expected, **group}


def inspect(ckpt_dir: str | os.PathLike, *, trusted_paths=()) -> dict:
    """What a checkpoint folder holds, from its config files and safetensors headers only."""
    root = Path(ckpt_dir)
    if not root.is_dir():
        raise CheckpointError(f"checkpoint {root} is not a folder")
    config = load_config(root)
    components: list[dict] = []
    missing: list[str] = []

    # InternVL
    base = _resolve(root, config.base, "base (InternVL)", trusted_paths, missing)
    internvl_summary: dict = {}
    if base is not None and Path(base).is_dir():
        base_path = Path(base)
        files = sorted(base_path.glob("*.safetensors"))
        headers: dict[str, dict] = {}
        for f in files:
            headers.update(safetensors_header(f))
        for shard in sorted(missing_shards(base_path)):
            missing.append(f"InternVL shard {shard} (listed in {SHARD_INDEX})")
        expected: dict[str, int | None] = {"vision": None, "projector": None, "llm": None}
        try:
            icfg, iraw = _internvl_config(base_path)
            expected = _internvl_expected(_meta_internvl(icfg))
            text = iraw.get("text_config") or {}
            internvl_summary = {
                "llm_layers": text.get("num_hidden_layers"),
                "llm_hidden": text.get("hidden_size"),
                "vision_layers": (iraw.get("vision_config") or {}).get("num_hidden_layers"),
                "image_seq_length": iraw.get("image_seq_length"),
            }
        except CheckpointError as exc:
            missing.append(f"InternVL config: {exc}")
        if not files:
            missing.append(f"InternVL weights: no .safetensors in {base_path}")
        for key, name, prefixes in (
            ("vision", "InternVL vision tower", VISION_PREFIXES),
            ("projector", "InternVL projector", PROJECTOR_PREFIXES),
            ("llm", "InternVL LLM", LLM_PREFIXES),
        ):
            group = _group(headers, prefixes)
            components.append(_component(name, f"internvl.{key}", base_path, group, expected[key]))
            if files and group["tensors"] == 0:
                missing.append(f"{name}: no {prefixes[-1]}* tensors in the InternVL safetensors")
            elif expected[key] is not None and group["parameters"] < expected[key]:
                missing.append(f"{name}: {group['parameters']:,} of {expected[key]:,} parameters present")
    else:
        for key, name in (("vision", "InternVL vision tower"), ("projector", "InternVL projector"), ("llm", "InternVL LLM")):
            components.append(_component(name, f"internvl.{key}", base, None, None))

    # VGGT
    vggt_ref = _resolve(root, config.vggt, "vggt", trusted_paths, missing)
    vggt_path = Path(vggt_ref or root / config.vggt)
    weights, vraw = None, None
    if vggt_ref is not None:
        try:
            weights, vraw = _vggt_source(vggt_path)
        except CheckpointError as exc:
            missing.append(f"VGGT weights: {exc}")
    vcfg = None
    try:
        vcfg = _vggt_config(vraw, vggt_path)
    except CheckpointError as exc:
        missing.append(str(exc))
    vexp = {"aggregator": None, "camera_head": None}
    if vcfg is not None:
        from .vggt import VGGT

        with torch.device("meta"):
            vmodel = VGGT(vcfg)
        vexp = {k: sum(p.numel() for p in getattr(vmodel, k).parameters()) for k in vexp}
    vheaders = _vggt_tensor_shapes(weights) if weights is not None else None
    for key, name, prefix in (("aggregator", "VGGT aggregator", "aggregator."), ("camera_head", "VGGT camera head", "camera_head.")):
        group = _group(vheaders, (prefix,)) if vheaders is not None else None
        components.append(_component(name, f"vggt.{key}", weights or vggt_path, group, vexp[key]))
        if vheaders is not None and vexp[key] is not None and group["parameters"] < vexp[key]:
            missing.append(f"{name}: {group['parameters']:,} of {vexp[key]:,} parameters present")
    unused_heads = _group(vheaders, VGGT_HEAD_PREFIXES)["parameters"] if vheaders else 0

    # CGMF
    if config.fusion == "cgmf":
        cexp = sum(_numel(s) for s in _cgmf_shapes(config.cgmf).values())
        fpath = root / config.fusion_weights
        if fpath.is_file():
            fheader = safetensors_header(fpath)
            components.append(_component("CGMF fusion", "cgmf", fpath, _group(fheader, ("",)), cexp))
            try:
                _check_fusion_weights(fpath, config.cgmf)
            except CheckpointError as exc:
                missing.append(str(exc))
        else:
            components.append(_component("CGMF fusion", "cgmf", fpath, None, cexp))
            missing.append(f"{config.fusion_weights}: CGMF weights (fusion = cgmf needs them)")

    # LoRA
    lora_summary = None
    if config.lora:
        from .lora import ADAPTER_CONFIG, read_adapter_config

        lref = _resolve(root, config.lora, "lora", trusted_paths, missing)
        lpath = Path(lref or root / config.lora)
        group = None
        if lref is not None:
            try:
                lcfg = read_adapter_config(lpath)
                lora_summary = {k: lcfg.get(k) for k in ("r", "lora_alpha", "use_rslora", "target_modules")}
            except CheckpointError as exc:
                missing.append(f"LoRA {ADAPTER_CONFIG}: {exc}")
            try:
                header = _lora_header(lpath)
                group = {
                    "tensors": len(header),
                    "parameters": sum(_numel(v["shape"]) for v in header.values()),
                    "dtypes": sorted({_ST_DTYPES.get(v["dtype"], v["dtype"]) for v in header.values()}),
                    "modules": sum(1 for k in header if ".lora_A" in k),
                }
            except CheckpointError as exc:
                missing.append(f"LoRA weights: {exc}")
        components.append(_component("LoRA adapter", "lora", lpath, group, None))

    fingerprints = {}
    for name, fn in (("encoder_fingerprint", encoder_fingerprint), ("checkpoint_id", checkpoint_id)):
        try:
            fingerprints[name] = fn(root, trusted_paths)
        except (CheckpointError, ValueError, OSError) as exc:
            fingerprints[name] = f"unavailable ({' '.join(str(exc).split())})"

    c, pre = config.cgmf, config.preprocess
    parts = [k for k in ("camera_bias", "importance", "camera_memory", "camera_gate") if getattr(c, k)]
    summary = {
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
            f"VGGT {pre.vggt_size}px {pre.vggt_mode} (fill {pre.vggt_pad_value}, patch {pre.vggt_patch}); "
            f"InternViT {pre.vit_size}px"
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
    details = {
        "cgmf": c.to_dict() if config.fusion == "cgmf" else None,
        "preprocess": pre.to_dict(),
        "internvl": internvl_summary or None,
        "vggt": vcfg.to_dict() if vcfg is not None else None,
        "vggt_unused_head_parameters": unused_heads,
        "lora": lora_summary,
        "base": config.base,
        "vggt_ref": config.vggt,
    }
    return {
        "path": str(root),
        "config": summary,
        "details": details,
        "components": components,
        "parameters": sum(c["parameters"] for c in components),
        "missing": missing,
        "fingerprints": fingerprints,
    }


def _lora_header(path: Path) -> dict[str, dict]:
    from .lora import adapter_weights_file

    return safetensors_header(adapter_weights_file(path))


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
