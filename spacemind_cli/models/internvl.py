"""InternVL (InternViT + projector + Qwen2 LLM) through transformers, across versions 5.17+.

We use transformers' `InternVLForConditionalGeneration` unchanged and only split its image
path in two: `vision_features` (vision tower + pixel shuffle, what the feature cache stores)
and `project` (the multimodal projector). Their composition equals the library's own
`get_image_features`, which returns an output object with `pooler_output` (a tuple under
`return_dict=False`); `image_features` reads either.
"""

from __future__ import annotations

import contextlib
import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ..errors import CheckpointError
from . import loading

if TYPE_CHECKING:
    from transformers import InternVLForConditionalGeneration

log = logging.getLogger(__name__)

IMG_START = "<img>"
IMG_END = "</img>"
IMG_CONTEXT = "<IMG_CONTEXT>"


def load(path: str, *, device: str, dtype: torch.dtype, attn_implementation: str = "sdpa"):
    """Load model + tokenizer from a local HF-format folder (or a hub id when online).

    Strict: every weight the architecture needs must be in the folder and nothing else, or a
    CheckpointError names the missing / unexpected keys and the folder (transformers would
    initialise missing weights at random and only warn). Never unpickles: safetensors only, no
    remote code. A local folder's shards are read one at a time straight into `dtype` on `device`
    (`loading.py`): never the checkpoint's copy and the converted one at once.
    """
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # we report progress ourselves; nothing else prints
    if not Path(path).exists():
        return _load_from_hub(path, dtype=dtype, device=device, attn_implementation=attn_implementation)
    folder = Path(path)
    _check_shards(folder)
    try:
        config = _config(path, True)
        model = _skeleton(config, dtype, attn_implementation)
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True, trust_remote_code=False)
        model.generation_config = _generation_config(folder, model)
    except (OSError, ValueError, KeyError) as exc:
        raise CheckpointError(f"cannot load InternVL from {path}: {' '.join(str(exc).split())[:300]}") from None
    expected = set(model.state_dict())
    _, unexpected, mismatched = _read_weights(model, folder, lambda key: model_key(key, expected), device)
    model.tie_weights()  # a tied lm_head is the embedding the checkpoint filled
    problems = _loading_problems(
        {"missing_keys": loading.on_meta(model), "unexpected_keys": unexpected, "mismatched_keys": mismatched}
    )
    if problems:
        raise CheckpointError(f"InternVL weights in {path} do not match its config: {'; '.join(problems)}")
    model.to(device).eval()  # the buffers (rotary frequencies); the weights are there already
    model.requires_grad_(False)
    return model, tokenizer


def import_modeling() -> None:
    """Import transformers' InternVL modules now (a model worker's slowest import, ~2 s on a
    CPU), so that a worker warmed ahead of its job does not wait for them."""
    from transformers import InternVLForConditionalGeneration  # noqa: F401


def _skeleton(config, dtype: torch.dtype, attn_implementation: str):
    """The architecture with its parameters on the meta device, in `dtype`."""
    from transformers import InternVLForConditionalGeneration

    with loading.empty_weights(), _transformers_quiet():
        model = InternVLForConditionalGeneration._from_config(config, attn_implementation=attn_implementation, dtype=dtype)
    model.config.name_or_path = getattr(config, "name_or_path", "")
    return model


def _generation_config(folder: Path, model):
    """generation_config.json as transformers' from_pretrained reads it (EOS ids), else the one the
    model derived from its config."""
    from transformers import GenerationConfig

    if (folder / "generation_config.json").is_file():
        return GenerationConfig.from_pretrained(str(folder), local_files_only=True)
    return model.generation_config


# InternVL's weight-key names, in one place: each part's prefixes (5.x names first, then the
# legacy ones older saves carry), read by loading, fingerprints, `checkpoint inspect` and LoRA;
WEIGHT_PREFIXES = {
    "vision": ("model.vision_tower.", "vision_tower."),
    "projector": ("model.multi_modal_projector.", "multi_modal_projector."),
    "llm": ("model.language_model.", "language_model.", "lm_head."),
}
# and older saves' names (transformers 4.x, InternVL's -hf conversion) -> the 5.x names, the
# renaming transformers' own loader applies to InternVL; the first prefix that matches wins.
LEGACY_KEYS = (
    ("language_model.model.", "model.language_model."),
    ("language_model.lm_head.", "lm_head."),
    ("language_model.", "model.language_model."),
    ("vision_tower.", "model.vision_tower."),
    ("multi_modal_projector.", "model.multi_modal_projector."),
)


def model_key(key: str, expected: set[str]) -> str:
    """The model tensor a checkpoint key fills: the key itself, or its older name renamed."""
    if key in expected:
        return key
    for old, new in LEGACY_KEYS:
        if key.startswith(old):
            return new + key[len(old) :]
    return key


def weight_files(folder: Path) -> list[Path]:
    """The shards the index lists, else every .safetensors file in the folder."""
    import json

    index = folder / SHARD_INDEX
    if index.is_file():
        return [folder / s for s in sorted(set(json.loads(index.read_text())["weight_map"].values()))]
    return sorted(folder.glob("*.safetensors"))


def _read_weights(model, folder: Path, target, device):
    try:
        return loading.load_shards(model, weight_files(folder), target, device=device)
    except OSError as exc:
        raise CheckpointError(f"InternVL weights in {folder} are unreadable: {' '.join(str(exc).split())[:300]}") from None


def _load_from_hub(path: str, *, device: str, dtype: torch.dtype, attn_implementation: str):
    """A hub id: transformers' own loader (downloads, then maps every shard until loaded)."""
    from transformers import AutoTokenizer, InternVLForConditionalGeneration

    try:
        config = _config(path, False)
        with _transformers_quiet():  # its load report would print; our error says it in one line
            # output_loading_info=True returns a (model, info) pair, which transformers' stubs omit
            loaded: Any = InternVLForConditionalGeneration.from_pretrained(
                path,
                config=config,
                dtype=dtype,
                attn_implementation=attn_implementation,
                use_safetensors=True,
                trust_remote_code=False,
                output_loading_info=True,
            )
            model, info = loaded
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
    except (OSError, ValueError, KeyError) as exc:
        raise CheckpointError(f"cannot load InternVL from {path}: {' '.join(str(exc).split())[:300]}") from None
    problems = _loading_problems(info)
    if problems:
        raise CheckpointError(f"InternVL weights in {path} do not match its config: {'; '.join(problems)}")
    model.to(device).eval()
    model.requires_grad_(False)
    return model, tokenizer


def _config(path: str, local: bool):
    """The InternVL config, with embedding tying taken from the language model's config when the
    top level does not say: InternVLConfig defaults to tied, but InternVL3-8B-hf's Qwen2.5 LLM has
    its own lm_head (text_config.tie_word_embeddings = false) and its config.json has no top-level
    key, so transformers would warn that it is asked to tie two different tensors."""
    from transformers import InternVLConfig

    config = InternVLConfig.from_pretrained(path, local_files_only=local)
    raw = {}
    if local and (Path(path) / "config.json").is_file():
        import json

        raw = json.loads((Path(path) / "config.json").read_text())
    if "tie_word_embeddings" not in raw:
        config.tie_word_embeddings = bool(getattr(config.get_text_config(), "tie_word_embeddings", False))
    return config


SHARD_INDEX = "model.safetensors.index.json"


def missing_shards(folder: Path) -> dict[str, list[str]]:
    """The shards `folder`'s safetensors index lists that are not there, each with the weights it
    holds ({} when every shard is there or the folder has no index). An index that cannot be read
    is a CheckpointError naming it."""
    import json

    index = Path(folder) / SHARD_INDEX
    if not index.is_file():
        return {}
    try:
        weight_map = json.loads(index.read_text())["weight_map"]
        entries = [(str(key), str(shard)) for key, shard in weight_map.items()]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise CheckpointError(f"{index} is unreadable: {exc}") from None
    missing: dict[str, list[str]] = {}
    for key, shard in entries:
        if not (Path(folder) / shard).is_file():
            missing.setdefault(shard, []).append(key)
    return missing


def _check_shards(folder: Path) -> None:
    """Every shard the index lists must exist (name the missing ones and the weights they hold),
    and every weight file must be whole (its header and size: a truncated shard is named before
    transformers reads it)."""
    from ..weights import check_files

    check_files(sorted(folder.glob("*.safetensors")))
    missing = missing_shards(folder)
    if missing:
        keys = sorted(k for ks in missing.values() for k in ks)
        raise CheckpointError(
            f"InternVL folder {folder}: shard(s) {', '.join(sorted(missing))} listed in {SHARD_INDEX} are missing; "
            f"{len(keys)} weights are not there ({_first(keys)})"
        )


def _first(keys: list[str], n: int = 3) -> str:
    return ", ".join(keys[:n]) + (f", ... ({len(keys) - n} more)" if len(keys) > n else "")


def _loading_problems(info: dict) -> list[str]:
    out = []
    missing = sorted(info.get("missing_keys") or ())
    unexpected = sorted(info.get("unexpected_keys") or ())
    mismatched = info.get("mismatched_keys") or ()
    if missing:
        out.append(f"{len(missing)} missing weights ({_first(missing)})")
    if unexpected:
        out.append(f"{len(unexpected)} unexpected weights ({_first(unexpected)})")
    if mismatched:
        shapes = [f"{m[0]} {tuple(m[1])} vs {tuple(m[2])}" if isinstance(m, (tuple, list)) and len(m) == 3 else str(m)
                  for m in mismatched]
        out.append(f"{len(shapes)} weights of another shape ({_first(shapes)})")
    out += [" ".join(str(e).split())[:200] for e in info.get("error_msgs") or ()]
    return out


@contextlib.contextmanager
def _transformers_quiet():
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)


def load_vision_only(path: str, *, device: str, dtype: torch.dtype, attn_implementation: str = "sdpa"):
    """InternVL with only its vision tower loaded (the projector and LLM stay on the meta device,
    unallocated, their weights never read): what feature extraction needs, without reading an 8B
    LLM's 15 GB of weights."""
    from transformers import InternVLConfig

    if not Path(path).exists():
        raise CheckpointError(f"encoder-only loading needs a local InternVL folder, got {path}")
    try:
        config = InternVLConfig.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read InternVL config in {path}: {' '.join(str(exc).split())[:300]}") from None
    model = _skeleton(config, dtype, attn_implementation)
    tower = WEIGHT_PREFIXES["vision"][0]
    expected = set(model.state_dict())

    def vision_key(key: str) -> str | None:
        name = model_key(key, expected)
        return name if name.startswith(tower) else None

    _, unexpected, mismatched = _read_weights(model, Path(path), vision_key, device)
    missing = [n for n in loading.on_meta(model.model.vision_tower)]
    problems = _loading_problems({"missing_keys": [tower + n for n in missing], "unexpected_keys": unexpected,
                                  "mismatched_keys": mismatched})
    if problems:
        raise CheckpointError(f"{path}: vision tower weights do not match its config: {'; '.join(problems)}")
    model.model.vision_tower.to(device).eval().requires_grad_(False)
    model.eval()
    return model


def parts(model: InternVLForConditionalGeneration) -> tuple[nn.Module, nn.Linear, nn.Module]:
    """(language model decoder, lm_head, input embeddings)."""
    inner = model.model
    return inner.language_model, model.lm_head, inner.get_input_embeddings()


@torch.no_grad()
def vision_features(model: InternVLForConditionalGeneration, pixel_values: torch.Tensor) -> torch.Tensor:
    """[S, 3, H, W] -> [S, tokens, 4 * vision_hidden]: vision tower, CLS dropped, pixel shuffle.

    This is InternVL's image path up to (not including) the projector.
    """
    cfg = model.config
    inner = model.model
    layer = cfg.vision_feature_layer
    pixel_values = pixel_values.to(dtype=inner.vision_tower.dtype)
    out = inner.vision_tower(pixel_values=pixel_values, return_dict=True, output_hidden_states=layer != -1)
    feats = out.last_hidden_state if layer == -1 else out.hidden_states[layer]
    if cfg.vision_feature_select_strategy == "default":
        feats = feats[:, 1:, :]
    b, n, _ = feats.shape
    side = int(math.isqrt(n))
    feats = feats.reshape(b, side, side, -1)
    feats = inner.pixel_shuffle(feats, scale_factor=cfg.downsample_ratio)
    return feats.reshape(b, -1, feats.shape[-1])


def project(model: InternVLForConditionalGeneration, feats: torch.Tensor) -> torch.Tensor:
    """[S, tokens, 4 * vision_hidden] -> [S, tokens, llm_hidden] through InternVL's projector."""
    proj = model.model.multi_modal_projector
    return proj(feats.to(proj.linear_1.weight.dtype))


@torch.no_grad()
def image_features(model: InternVLForConditionalGeneration, pixel_values: torch.Tensor) -> torch.Tensor:
    """transformers' own projected image features (its output object, or that object's tuple)."""
    # return_dict=True: with a config saying return_dict=False, 5.x would return a tuple.
    out = model.get_image_features(pixel_values=pixel_values, return_dict=True)
    if getattr(out, "pooler_output", None) is not None:
        return out.pooler_output
    if isinstance(out, (tuple, list)):
        # BaseModelOutputWithPooling.to_tuple(): (last_hidden_state, pooler_output, ...); the
        # projected features are the pooler output, never the vision tower's last hidden state.
        if len(out) < 2:
            raise TypeError("get_image_features returned a 1-tuple without the projected features")
        return out[1]
    raise TypeError(f"unexpected get_image_features output {type(out).__name__}")


def tokens_per_image(model: InternVLForConditionalGeneration) -> int:
    return int(model.config.image_seq_length)


def special_token_ids(tokenizer) -> dict[str, int]:
    ids = {}
    for tok in (IMG_START, IMG_END, IMG_CONTEXT):
        tid = tokenizer.convert_tokens_to_ids(tok)
        if tid is None or tid == tokenizer.unk_token_id:
            raise CheckpointError(f"tokenizer lacks InternVL's special token {tok}")
        ids[tok] = int(tid)
    return ids


def eos_token_ids(model: nn.Module, tokenizer) -> set[int]:
    ids: set[int] = set()
    gen = getattr(model, "generation_config", None)
    eos = getattr(gen, "eos_token_id", None) if gen is not None else None
    if isinstance(eos, int):
        ids.add(eos)
    elif isinstance(eos, (list, tuple)):
        ids.update(int(e) for e in eos)
    for tok in ("<|im_end|>", tokenizer.eos_token):
        if tok:
            tid = tokenizer.convert_tokens_to_ids(tok)
            if tid is not None and tid != tokenizer.unk_token_id:
                ids.add(int(tid))
    return ids


def pad_token_id(tokenizer) -> int:
    for tid in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if tid is not None:
            return int(tid)
    return 0
