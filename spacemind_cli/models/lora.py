"""Apply a PEFT-format LoRA adapter to InternVL's language model, in place: on the side of each
adapted Linear (`LoraDelta`), or merged into its weight.

An adapter folder holds `adapter_config.json` (r, lora_alpha, target_modules, use_rslora,
optionally rank_pattern / alpha_pattern / modules_to_save) and `adapter_model.safetensors` with
keys `base_model.model.<module path>.lora_A.weight` / `.lora_B.weight` (and, for
modules_to_save or trained biases, full tensors `base_model.model.<module path>.<param>`).
Each LoRA pair adds scale * x A^T B^T to its Linear's output, scale = alpha / r (alpha / sqrt(r)
with rsLoRA), as PEFT's LoRA forward does; merged, W += scale * B @ A, as PEFT's merge does.
Merging in bf16 rounds the adapter away (each weight moves by up to half a bf16 step); the side
path costs r (in + out) / (in * out) of its Linear's flops, ~1% at r 8 (arithmetic; measured in
`bench/results/lora_answer.md`). `SpaceMind.from_pretrained` merges when the weights are fp32.

The module path depends on what PEFT wrapped: the whole `InternVLForConditionalGeneration`
(transformers 5.x names `model.language_model.layers...`, 4.x / original InternVL names
`language_model.model.layers...`) or only the language model (`model.layers...`, `layers...`).
We try those spellings; every key must resolve to exactly one module or the adapter is refused.
The vision tower is refused: its outputs are cached under a fingerprint that does not see LoRA.
Only safetensors are read (an `adapter_model.bin` is never unpickled).
"""

from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..errors import CheckpointError
from .internvl import WEIGHT_PREFIXES

log = logging.getLogger(__name__)

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
_PEFT_PREFIXES = ("base_model.model.", "base_model.")
_LORA_PART = re.compile(r"^(?P<module>.+)\.(?P<part>lora_A|lora_B)(?:\.(?P<adapter>[^.]+))?\.weight$")
_UNSUPPORTED_PARTS = ("lora_embedding_A", "lora_embedding_B", "lora_magnitude_vector", "lora_E")


@dataclass
class LoraPair:
    module: str  # name in the InternVL model
    key: str  # adapter key of lora_A (for messages)
    a: str
    b: str
    r: int = 0
    alpha: float = 0.0


@dataclass
class LoraPlan:
    """What merging an adapter would do, resolved against a model (which may live on the meta device)."""

    path: Path
    pairs: list[LoraPair] = field(default_factory=list)
    full: dict[str, str] = field(default_factory=dict)  # model parameter name -> adapter key (replaced)
    config: dict = field(default_factory=dict)

    @property
    def num_modules(self) -> int:
        return len(self.pairs)


def read_adapter_config(adapter_dir: str | Path) -> dict:
    path = Path(adapter_dir) / ADAPTER_CONFIG
    try:
        cfg = json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"LoRA adapter {adapter_dir}: {ADAPTER_CONFIG} missing") from None
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"LoRA adapter {path}: unreadable ({exc})") from None
    if not isinstance(cfg, dict):
        raise CheckpointError(f"LoRA adapter {path}: not a JSON object")
    peft_type = str(cfg.get("peft_type", "LORA")).upper()
    if peft_type != "LORA":
        raise CheckpointError(f"LoRA adapter {path}: peft_type {cfg.get('peft_type')!r} is not LORA")
    if cfg.get("use_dora"):
        raise CheckpointError(f"LoRA adapter {path}: DoRA adapters (use_dora) are not supported")
    for key in ("r", "lora_alpha"):
        if not isinstance(cfg.get(key), (int, float)) or isinstance(cfg.get(key), bool) or cfg[key] <= 0:
            raise CheckpointError(f"LoRA adapter {path}: {key} must be a positive number, got {cfg.get(key)!r}")
    return cfg


def adapter_weights_file(adapter_dir: str | Path) -> Path:
    folder = Path(adapter_dir)
    if not folder.is_dir():
        raise CheckpointError(f"LoRA adapter {folder} is not a folder")
    path = folder / ADAPTER_WEIGHTS
    if not path.is_file():
        pickled = [p.name for p in folder.glob("adapter_model.*") if p.suffix in (".bin", ".pt", ".pth")]
        hint = f" ({pickled[0]} is a pickle and is never loaded; convert it to safetensors)" if pickled else ""
        raise CheckpointError(f"LoRA adapter {folder}: {ADAPTER_WEIGHTS} missing{hint}")
    return path


def adapter_tensor_shapes(adapter_dir: str | Path) -> dict[str, tuple[int, ...]]:
    """Tensor names and shapes of the adapter (safetensors header only)."""
    from ..weights import read_header

    header, _ = read_header(adapter_weights_file(adapter_dir))
    return {k: tuple(int(d) for d in v["shape"]) for k, v in header.items()}


def _pattern_value(patterns: dict | None, module_path: str, default):
    """PEFT's rank_pattern / alpha_pattern lookup: a pattern matches a module path ending in it."""
    for pattern, value in (patterns or {}).items():
        if re.match(rf"(.*\.)?({pattern})$", module_path):
            return value
    return default


def _strip_peft_prefix(key: str) -> str:
    for prefix in _PEFT_PREFIXES:
        if key.startswith(prefix):
            return key[len(prefix) :]
    return key


def _candidates(path: str) -> list[str]:
    """Spellings of a PEFT module path in transformers 5.x InternVLForConditionalGeneration."""
    out = [path, "model." + path]
    for old, new in (
        ("language_model.model.", "model.language_model."),  # 4.x / original InternVL wrapping
        ("language_model.lm_head", "lm_head"),
        ("model.language_model.model.", "model.language_model."),
        ("model.", "model.language_model."),  # only the causal LM was wrapped
        ("layers.", "model.language_model.layers."),  # only the decoder was wrapped
        ("embed_tokens", "model.language_model.embed_tokens"),
        ("norm", "model.language_model.norm"),
        ("language_model.", "model.language_model."),
        ("vision_model.", "model.vision_tower."),  # original InternVL naming: refused below
    ):
        if path.startswith(old):
            out.append(new + path[len(old) :])
    seen, unique = set(), []
    for c in out:
        if c not in seen:
            seen.add(c)
            unique.append(c)
    return unique


def _resolve_module(modules: dict[str, nn.Module], path: str, key: str, want_linear: bool) -> str:
    found = [c for c in _candidates(path) if c in modules and (not want_linear or isinstance(modules[c], nn.Linear))]
    if len(found) != 1:
        why = "no Linear" if want_linear else "no module"
        if found:
            why = f"{len(found)} modules ({', '.join(found)})"
        raise CheckpointError(f"LoRA adapter key {key} maps to {why} in the InternVL model (module path {path!r})")
    name = found[0]
    if name.startswith(WEIGHT_PREFIXES["vision"]):
        raise CheckpointError(
            f"LoRA adapter key {key} targets the vision tower ({name}); only the LLM and projector can be "
            "adapted (vision features are cached under a fingerprint that does not include LoRA)"
        )
    return name


def plan_lora(model: nn.Module, adapter_dir: str | Path) -> LoraPlan:
    """Resolve every adapter key against `model` and check shapes, without touching weights."""
    folder = Path(adapter_dir)
    cfg = read_adapter_config(folder)
    shapes = adapter_tensor_shapes(folder)
    modules = dict(model.named_modules())
    params = dict(model.named_parameters())
    plan = LoraPlan(path=folder, config=cfg)
    r_default, alpha_default = cfg["r"], cfg["lora_alpha"]

    lora: dict[str, dict[str, str]] = {}
    for key in sorted(shapes):
        if any(f".{p}" in key for p in _UNSUPPORTED_PARTS):
            raise CheckpointError(f"LoRA adapter key {key}: only LoRA on Linear layers is supported")
        m = _LORA_PART.match(key)
        if m:
            lora.setdefault(m.group("module"), {})[m.group("part")] = key
            continue
        if re.search(r"\.lora_\w", key):  # e.g. lora_B.bias (lora_bias=True)
            raise CheckpointError(f"LoRA adapter key {key}: unsupported LoRA tensor (only lora_A/lora_B weights)")
        # A full tensor: modules_to_save (e.g. lm_head.weight) or a trained bias.
        stripped = _strip_peft_prefix(key)
        module_path, _, param = stripped.rpartition(".")
        if not module_path:
            raise CheckpointError(f"LoRA adapter key {key} is neither a lora_A/lora_B weight nor a module parameter")
        name = _resolve_module(modules, module_path, key, want_linear=False)
        full = f"{name}.{param}"
        if full not in params:
            raise CheckpointError(f"LoRA adapter key {key}: {name} has no parameter {param!r}")
        if tuple(params[full].shape) != shapes[key]:
            raise CheckpointError(
                f"LoRA adapter key {key}: shape {list(shapes[key])} does not match {full} {list(params[full].shape)}"
            )
        plan.full[full] = key

    used: set[str] = set()
    for module_key, parts in sorted(lora.items()):
        if set(parts) != {"lora_A", "lora_B"}:
            missing = "lora_B" if "lora_A" in parts else "lora_A"
            raise CheckpointError(f"LoRA adapter key {next(iter(parts.values()))} has no matching {missing}")
        path = _strip_peft_prefix(module_key)
        name = _resolve_module(modules, path, parts["lora_A"], want_linear=True)
        if name in used:
            raise CheckpointError(f"LoRA adapter key {parts['lora_A']}: {name} is adapted twice")
        used.add(name)
        linear = modules[name]
        a_shape, b_shape = shapes[parts["lora_A"]], shapes[parts["lora_B"]]
        r = _pattern_value(cfg.get("rank_pattern"), path, r_default)
        alpha = _pattern_value(cfg.get("alpha_pattern"), path, alpha_default)
        out_f, in_f = linear.weight.shape
        if cfg.get("fan_in_fan_out"):
            out_f, in_f = in_f, out_f
        if len(a_shape) != 2 or len(b_shape) != 2 or a_shape[0] != b_shape[1]:
            raise CheckpointError(f"LoRA adapter key {parts['lora_A']}: lora_A {list(a_shape)} / lora_B {list(b_shape)} do not pair")
        if a_shape[1] != in_f or b_shape[0] != out_f:
            raise CheckpointError(
                f"LoRA adapter key {parts['lora_A']}: B @ A is {[b_shape[0], a_shape[1]]}, "
                f"{name}.weight is {list(linear.weight.shape)}"
            )
        if a_shape[0] != r:
            raise CheckpointError(f"LoRA adapter key {parts['lora_A']}: rank {a_shape[0]} but the config says r={r}")
        plan.pairs.append(LoraPair(module=name, key=parts["lora_A"], a=parts["lora_A"], b=parts["lora_B"],
                                   r=int(a_shape[0]), alpha=float(alpha)))
    if not plan.pairs and not plan.full:
        raise CheckpointError(f"LoRA adapter {folder}: {ADAPTER_WEIGHTS} holds no tensors")
    return plan


def scale_of(pair: LoraPair, config: dict) -> float:
    """PEFT's scaling: alpha / r, or alpha / sqrt(r) with rsLoRA."""
    return pair.alpha / (math.sqrt(pair.r) if config.get("use_rslora") else pair.r)


class LoraDelta(nn.Module):
    """The adapter's side path of one Linear, `scale * x A^T B^T`, added to the Linear's output by a
    forward hook: the base weight stays as loaded, so in bf16 the adapter is not rounded away into
    it (merging moves each weight by up to half a bf16 step, as large as the adapter's own change).
    A and B are in the Linear's dtype, as training's bf16 autocast computes them; buffers, not
    parameters: the model's state dict and parameter names stay the base's."""

    lora_A: torch.Tensor  # [r, in], a buffer
    lora_B: torch.Tensor  # [out, r], a buffer

    def __init__(self, a: torch.Tensor, b: torch.Tensor, scale: float):
        super().__init__()
        self.register_buffer("lora_A", a, persistent=False)  # [r, in]
        self.register_buffer("lora_B", b, persistent=False)  # [out, r]
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(nn.functional.linear(x, self.lora_A), self.lora_B) * self.scale


def add_lora_delta(linear: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
    # torch types a module's attributes as Tensor | Module; lora_delta is the LoraDelta apply_lora set
    return output + linear.lora_delta(inputs[0])  # type: ignore[operator]


def unmerged_modules(model: nn.Module) -> list[str]:
    """Names of the Linears that carry an unmerged adapter."""
    return [n for n, m in model.named_modules() if isinstance(getattr(m, "lora_delta", None), LoraDelta)]


@torch.no_grad()
def apply_lora(model: nn.Module, adapter_dir: str | Path, *, merge: bool) -> LoraPlan:
    """Apply the adapter at `adapter_dir` to `model` (an InternVLForConditionalGeneration) in place:
    merged into the weights (W += scale * B @ A in one addmm, rounded once to the weight's dtype)
    or kept on the side (`LoraDelta`). Exact in fp32 either way; in bf16 only the side path
    keeps what was trained.

    Every key is resolved and checked first (`plan_lora`: any spelling above, shapes, ranks, the
    vision tower refused), before any weight changes. modules_to_save tensors replace the model's.
    """
    from ..weights import open_weights

    plan = plan_lora(model, adapter_dir)
    params = dict(model.named_parameters())
    modules = dict(model.named_modules())
    fan_in_fan_out = bool(plan.config.get("fan_in_fan_out", False))
    with open_weights(adapter_weights_file(adapter_dir)) as f:
        for pair in plan.pairs:
            linear = modules[pair.module]
            weight = linear.weight
            a, b = f.get_tensor(pair.a).float(), f.get_tensor(pair.b).float()
            if fan_in_fan_out:  # PEFT's delta is (B @ A)^T: the same as B' = A^T, A' = B^T
                a, b = b.T, a.T
            scale = scale_of(pair, plan.config)
            if merge:  # one pass over the weight, no temporary of its size
                weight.addmm_(b.to(weight.device, weight.dtype), a.to(weight.device, weight.dtype), alpha=scale)
            else:
                linear.lora_delta = LoraDelta(a.to(weight.device, weight.dtype).contiguous(),
                                              b.to(weight.device, weight.dtype).contiguous(), scale)
                linear.register_forward_hook(add_lora_delta)
        for name, key in plan.full.items():
            p = params[name]
            p.copy_(f.get_tensor(key).to(device=p.device, dtype=p.dtype))
    extra = f", replaced {len(plan.full)} tensors (modules_to_save)" if plan.full else ""
    rs = " (rsLoRA)" if plan.config.get("use_rslora") else ""
    how = "merged" if merge else "kept beside the weights of"
    log.info("LoRA %s: %s %d modules%s%s", Path(adapter_dir), how, plan.num_modules, rs, extra)
    return plan


def merge_lora(model: nn.Module, adapter_dir: str | Path) -> LoraPlan:
    """`apply_lora(merge=True)`: the adapter folded into the weights."""
    return apply_lora(model, adapter_dir, merge=True)
