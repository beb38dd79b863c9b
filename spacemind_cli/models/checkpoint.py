"""The SpaceMind checkpoint folder: its config, where each component's weights are, whether a
path may be read, and the fingerprints that say when two checkpoints compute the same thing.

    config.json            SpaceMindConfig (type "spacemind")
    fusion.safetensors     CGMF weights (absent when fusion = "none")
    internvl/              HF-format InternVL (config, safetensors, tokenizer), or a reference
    vggt/                  VGGT config.json + model.safetensors (or model.pt), or a reference
                           (config vggt null: none, for fusion = "none")
    lora/                  optional PEFT LoRA adapter for the LLM, merged at load time

Nothing here loads a model: configs, file lists, safetensors headers and file digests only;
`copy_folder` places a model folder's files into a new checkpoint (`assemble`, train's export).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from ..defaults import DEFAULTS
from ..errors import CheckpointError
from ..fingerprint import file_digest, safetensors_digest, text_digest
from ..version import __version__
from . import internvl
from .cgmf import CGMFConfig
from .config_dict import config_from_dict
from .preprocess import PreprocessConfig
from .vggt import CHECKPOINT_PREFIXES as VGGT_PREFIXES

log = logging.getLogger(__name__)

CONFIG_TYPE = "spacemind"
FORMAT_VERSION = 1
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".h5", ".msgpack")
INTERNVL_SYSTEM_MESSAGE = (
    "你是书生·万象，英文名是InternVL，是由上海人工智能实验室、清华大学及多家合作单位联合开发的多模态大语言模型。"
)
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass
class PromptConfig:
    system_message: str = INTERNVL_SYSTEM_MESSAGE
    frame_prefix: bool = True  # "Frame1: <img>...</img>" as InternVL's processor does for video


@dataclass
class SpaceMindConfig:
    base: str = "internvl"  # InternVL: folder inside the checkpoint, a trusted path, or a hub id
    vggt: str | None = "vggt"  # None: no VGGT at all (fusion "none" only: plain InternVL)
    fusion: str = "cgmf"  # "cgmf" | "none" (plain InternVL baseline)
    cgmf: CGMFConfig = field(default_factory=CGMFConfig)
    vggt_layers: list[int] = field(default_factory=lambda: [-1])
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    num_frames: int = DEFAULTS.num_frames
    sampling: str = DEFAULTS.sampling
    prompt: PromptConfig = field(default_factory=PromptConfig)
    fusion_weights: str = "fusion.safetensors"
    lora: str | None = None
    versions: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["preprocess"] = self.preprocess.to_dict()
        return {"type": CONFIG_TYPE, "format_version": FORMAT_VERSION, **d}

    @classmethod
    def from_dict(cls, d: dict) -> SpaceMindConfig:
        if not isinstance(d, dict) or d.get("type") != CONFIG_TYPE:
            got = d.get("type") if isinstance(d, dict) else type(d).__name__
            raise CheckpointError(f"config type is {got!r}, expected {CONFIG_TYPE!r}")
        try:
            version = int(d.get("format_version", 0))
        except (TypeError, ValueError):
            raise CheckpointError(f"config format_version {d.get('format_version')!r} is not an integer") from None
        if version > FORMAT_VERSION:
            raise CheckpointError(
                f"checkpoint format {d.get('format_version')} is newer than this spacemind ({FORMAT_VERSION}); upgrade"
            )
        try:
            cfg = config_from_dict(cls, d, where="config", ignore=("type", "format_version"))
            cfg.cgmf = CGMFConfig.from_dict(d.get("cgmf", {}))
            cfg.preprocess = PreprocessConfig.from_dict(d.get("preprocess", {}))
            cfg.prompt = config_from_dict(PromptConfig, d.get("prompt", {}), where="prompt")
        except (TypeError, ValueError) as exc:
            # e.g. a setting this version does not know or of the wrong type: one line, not a traceback
            raise CheckpointError(f"config has invalid settings: {exc}") from None
        if cfg.fusion not in ("cgmf", "none"):
            raise CheckpointError(f"unknown fusion {cfg.fusion!r} (cgmf | none)")
        if cfg.vggt is None and cfg.fusion != "none":
            raise CheckpointError("config has no vggt, which fusion = cgmf needs (fusion = none runs without one)")
        return cfg


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path} does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path} is not valid JSON: {exc}") from None


def _trusted(paths) -> list[str]:
    out = [os.path.realpath(p) for p in paths or ()]
    env = os.environ.get("SPACEMIND_TRUST_PATHS")
    if env:
        out += [os.path.realpath(p) for p in env.split(os.pathsep) if p]
    return out


def resolve_component(root: Path, ref: str, what: str, trusted_paths=()) -> str:
    """Where a component's weights are: inside the checkpoint folder, at a path the user trusts,
    or a hub id. A config that points outside its folder is refused unless the user passed that
    path (--trust-path or SPACEMIND_TRUST_PATHS): a downloaded checkpoint must not make us read
    arbitrary files."""
    base = os.path.realpath(root)
    candidate = os.path.realpath(os.path.join(base, ref))
    if os.path.exists(candidate):
        if candidate == base or candidate.startswith(base + os.sep):
            return candidate
        for t in _trusted(trusted_paths):
            if candidate == t or candidate.startswith(t + os.sep):
                return candidate
        raise CheckpointError(
            f"{root}/config.json: {what} points outside the checkpoint folder to {candidate}; "
            f"pass --trust-path {candidate} (or set SPACEMIND_TRUST_PATHS) if you trust it"
        )
    if _HUB_ID.match(ref) and not ref.startswith((".", "/")):
        return ref
    raise CheckpointError(f"{root}/config.json: {what} {ref!r} not found")


def vggt_weight_files(path: str) -> list[Path]:
    p = Path(path)
    if p.is_file():
        return [p]
    for name in ("model.safetensors", "model.pt"):
        if (p / name).exists():
            return [p / name]
    raise CheckpointError(f"VGGT folder {path} holds neither model.safetensors nor model.pt")


def internvl_weight_files(path: str) -> list[Path]:
    files = sorted(Path(path).glob("*.safetensors"))
    if not files:
        raise CheckpointError(f"InternVL folder {path} holds no .safetensors weights")
    return files


def versions() -> dict:
    import transformers

    return {"spacemind": __version__, "torch": torch.__version__, "transformers": transformers.__version__}


def load_config(path: str | os.PathLike) -> SpaceMindConfig:
    return SpaceMindConfig.from_dict(read_json(Path(path) / "config.json"))


def encoder_fingerprint(path: str | os.PathLike, trusted_paths=()) -> str:
    """Fingerprint of what the encoders compute, from the checkpoint's files alone (no model
    load): InternViT's and VGGT's weight bytes and the settings that shape their outputs."""
    root = Path(path)
    config = load_config(root)
    base = resolve_component(root, config.base, "base (InternVL)", trusted_paths)
    if Path(base).exists():
        vision = safetensors_digest(internvl_weight_files(base), internvl.WEIGHT_PREFIXES["vision"])
        vision_cfg = read_json(Path(base) / "config.json")
    else:  # hub id: the id stands for its weights
        vision, vision_cfg = base, {}
    relevant = {
        k: vision_cfg.get(k)
        for k in ("vision_feature_layer", "vision_feature_select_strategy", "downsample_ratio")
    }
    parts = {"vision": vision, "vision_cfg": relevant}
    vggt_path = None
    if config.vggt is not None:  # without VGGT the features are InternViT's alone
        vggt_path = resolve_component(root, config.vggt, "vggt", trusted_paths)
        vggt_files = vggt_weight_files(vggt_path)
        if vggt_files[0].suffix == ".safetensors":
            parts["vggt"] = safetensors_digest(vggt_files, VGGT_PREFIXES)
        else:
            parts["vggt"] = file_digest(vggt_files[0])
    # The encoders' architecture settings shape their outputs as much as the weights do (e.g.
    # VGGT's rope_freq, InternViT's norm eps): a changed config must not reuse cached features.
    vision_arch = {k: v for k, v in (vision_cfg.get("vision_config") or {}).items() if k not in _CONFIG_NOISE}
    if vision_arch:
        parts["vision_arch"] = vision_arch
    if vggt_path is not None:
        parts["vggt_cfg"] = _vggt_config_dict(vggt_path)
    return text_digest(parts)


# Config keys that do not change what a model computes.
_CONFIG_NOISE = ("transformers_version", "_name_or_path", "architectures", "dtype", "torch_dtype", "_attn_implementation_autoset")


def _vggt_config_dict(vggt_path: str) -> dict:
    """The VGGT config VGGT.from_pretrained would use for this path, normalised."""
    from .vggt import VGGTConfig

    cfg_file = Path(vggt_path) / "config.json"
    if not cfg_file.is_file():  # a bare weight file, or a folder without config: VGGT-1B
        return VGGTConfig().to_dict()
    try:
        return VGGTConfig.from_dict(read_json(cfg_file)).to_dict()
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{cfg_file}: unreadable VGGT config ({exc})") from None


_INTERNVL_TEXT_SUFFIXES = (".json", ".txt", ".model", ".jinja", ".tiktoken")


def checkpoint_id(path: str | os.PathLike, trusted_paths=()) -> str:
    """Fingerprint of the whole model (encoders, fusion, LLM, prompt): answers made with one
    checkpoint id are interchangeable."""
    root = Path(path)
    config = load_config(root)
    settings = config.to_dict()
    settings.pop("versions", None)
    parts = {"encoders": encoder_fingerprint(root, trusted_paths), "config": settings}
    base = resolve_component(root, config.base, "base (InternVL)", trusted_paths)
    if Path(base).exists():
        parts["llm"] = [file_digest(f) for f in internvl_weight_files(base)]
        # Tokenizer, generation config (EOS ids) and LLM config change answers as well.
        small = [f for f in sorted(Path(base).iterdir()) if f.is_file() and f.suffix in _INTERNVL_TEXT_SUFFIXES]
        parts["internvl_files"] = {f.name: file_digest(f) for f in small}
    if config.fusion == "cgmf" and (root / config.fusion_weights).exists():
        parts["fusion"] = file_digest(root / config.fusion_weights)
    if config.lora:
        lora = Path(resolve_component(root, config.lora, "lora", trusted_paths))
        parts["lora"] = [file_digest(f) for f in sorted(lora.glob("*")) if f.is_file()]
    return text_digest(parts)


def copy_or_link(src: Path, dst: Path) -> None:
    """Hard-link when possible (instant, no extra disk), else copy."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def place_file(src: Path, dst: Path, link: bool) -> None:
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
    """Copy a model folder's files into `dst` (which may hold an earlier copy: see `place_file`).

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
        place_file(entry, dst / entry.name, link and (entry.suffix == ".safetensors" or pickled))
        placed.append(entry.name)
    if skipped:
        log.info("%s: skipped %d pickled file(s) (%s); only safetensors are used", what, len(skipped), ", ".join(skipped[:3]))
    return placed
