"""A training run's GPU memory, estimated from the model's config (arithmetic, not measured), and
what it decides: gradient checkpointing on by default where the estimate does not fit the GPU.

    shape = model_shape(internvl_config_json)           # None: sizes not known
    gb = training_memory(shape, frames=32, questions_per_pack=4, lora_rank=256, cgmf_params=45e6,
                         checkpointing=False)           # {"frozen_weights": ..., "total": ...}
    on, why = decide_gradient_checkpointing(None, on_gpu=True, gpu_bytes=80e9, estimate_gb=gb["total"])

InternVL3-8B, 32 frames, packs of 4: ~68 GB without checkpointing (over 80% of an 80 GB GPU: on),
~30 GB with; the tiny test model: far under any GPU's memory (off).
"""

from __future__ import annotations

from dataclasses import dataclass

BYTES_FROZEN = 2  # the frozen weights in bf16
BYTES_TRAINED = 16  # a trained parameter: fp32 master weight, gradient, AdamW's two moments
# Activations the backward pass keeps, per token, per hidden unit, per decoder layer, in bf16: the
# attention projections' inputs and outputs, the MLP's gate / up / activation (its intermediate is
# ~5.3x the hidden size in Qwen2), the norms, LoRA's inputs: ~45 bytes.
ACTIVATION_BYTES = 45
CHECKPOINTED_BYTES = 2  # checkpointed: a layer's input only, one layer's activations recomputed at a time
HEADROOM = 0.8  # share of the GPU the estimate may fill (allocator fragmentation, CUDA context, logits)
GPU_BYTES_ASSUMED = 80e9  # a GPU not visible here (a Ray cluster's): the 80 GB GPU the recipe is sized for
TOKENS_PER_QUESTION = 128  # a question, its answer and end of turn (VSI-Bench's: ~60-280, mean ~115)
FRAME_TEXT_TOKENS = 8  # "FrameN: <img>" and "</img>\n" around a frame's image tokens
PROMPT_TOKENS = 64  # system message and chat template


@dataclass(frozen=True)
class ModelShape:
    hidden: int
    layers: int
    intermediate: int
    vocab: int
    heads: int
    kv_heads: int
    tied: bool
    image_tokens: int  # per frame
    vision_params: int


def model_shape(config: dict) -> ModelShape | None:
    """The sizes that matter, from an InternVL config.json (transformers' layout: text_config,
    vision_config); None when it does not say."""
    try:
        text, vision = config["text_config"], config.get("vision_config") or {}
        hidden, layers = int(text["hidden_size"]), int(text["num_hidden_layers"])
        heads = int(text.get("num_attention_heads", 1))
        vh, vl, vi = (int(vision.get(k, 0)) for k in ("hidden_size", "num_hidden_layers", "intermediate_size"))
        return ModelShape(
            hidden=hidden, layers=layers, intermediate=int(text["intermediate_size"]), vocab=int(text["vocab_size"]),
            heads=heads, kv_heads=int(text.get("num_key_value_heads", heads)),
            tied=bool(text.get("tie_word_embeddings", config.get("tie_word_embeddings", False))),
            image_tokens=int(config.get("image_seq_length", 256)), vision_params=vl * (4 * vh * vh + 2 * vh * vi),
        )  # fmt: skip
    except (KeyError, TypeError, ValueError):
        return None


def _linears(s: ModelShape) -> list[tuple[int, int]]:
    """(in, out) of a decoder layer's linear layers LoRA adapts (q k v o gate up down)."""
    kv = s.hidden // s.heads * s.kv_heads
    return [(s.hidden, s.hidden), (s.hidden, kv), (s.hidden, kv), (s.hidden, s.hidden),
            (s.hidden, s.intermediate), (s.hidden, s.intermediate), (s.intermediate, s.hidden)]


def llm_params(s: ModelShape) -> int:
    return s.layers * sum(i * o for i, o in _linears(s)) + s.vocab * s.hidden * (1 if s.tied else 2)


def lora_params(s: ModelShape, rank: int) -> int:
    return s.layers * sum(rank * (i + o) for i, o in _linears(s))


def pack_tokens(s: ModelShape, frames: int, questions: int) -> int:
    """Tokens of one packed sequence: the visual prefix once, then the questions."""
    return PROMPT_TOKENS + frames * (s.image_tokens + FRAME_TEXT_TOKENS) + questions * TOKENS_PER_QUESTION


def training_memory(s: ModelShape, *, frames: int, questions_per_pack: int, lora_rank: int, cgmf_params: int,
                    checkpointing: bool) -> dict[str, float]:
    """GB (1e9 bytes) of one worker's GPU memory, by part, for its longest pack."""
    tokens = pack_tokens(s, frames, questions_per_pack)
    per_layer = s.hidden * tokens
    activations = (CHECKPOINTED_BYTES * s.layers + ACTIVATION_BYTES) * per_layer if checkpointing \
        else ACTIVATION_BYTES * s.layers * per_layer
    parts = {
        "frozen_weights": BYTES_FROZEN * (llm_params(s) + s.vision_params),
        "trained": BYTES_TRAINED * (lora_params(s, lora_rank) + cgmf_params),
        "activations": activations,
    }
    gb = {k: round(v / 1e9, 1) for k, v in parts.items()}
    gb["total"] = round(sum(parts.values()) / 1e9, 1)
    gb["pack_tokens"] = tokens
    return gb


def decide_gradient_checkpointing(requested: bool | None, *, on_gpu: bool, gpu_bytes: float | None,
                                  estimate_gb: float | None) -> tuple[bool, str]:
    """(on, why). An explicit choice wins; "auto" (None) turns it on for a GPU run whose estimate
    without checkpointing fills more than HEADROOM of the GPU."""
    if requested is not None:
        return requested, f"{'on' if requested else 'off'}: asked for"
    if not on_gpu:
        return False, "off: a CPU run (gradient checkpointing only trades GPU memory for time)"
    if estimate_gb is None:
        return False, "off: the model's sizes are not known to estimate its memory"
    budget = HEADROOM * (gpu_bytes or GPU_BYTES_ASSUMED) / 1e9
    if estimate_gb > budget:
        return True, (f"on: ~{estimate_gb:.0f} GB estimated without it, over {budget:.0f} GB "
                      f"({HEADROOM:.0%} of a {(gpu_bytes or GPU_BYTES_ASSUMED) / 1e9:.0f} GB GPU)")
    return False, f"off: ~{estimate_gb:.0f} GB estimated without it fits {budget:.0f} GB of the GPU"
