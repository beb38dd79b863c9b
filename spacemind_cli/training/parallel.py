"""How the trained model is spread over the workers, and how its state is gathered.

    replicated   (default) every worker holds the whole model; gradients are averaged after each
                 step (DDP through the runtime, nothing with one worker)
    sharded      (--fsdp) PyTorch FSDP2 (`fully_shard`): each LLM decoder layer and then the rest
                 of the model sharded over the workers, parameters gathered layer by layer for the
                 forward and backward passes; for a model whose weights do not fit one GPU

Saving and exporting need the full trained tensors on the first worker: with sharding, gathering
them is a collective every worker takes part in (`trainable_state`, `optimizer_state`,
`export_tensors`), after which only the first worker writes.
"""

from __future__ import annotations

import torch
from torch import nn


def gradient_scale(world_size: int, step_targets: int) -> float:
    """What a worker multiplies its summed token loss by: data parallelism averages gradients over
    the workers, so this undoes the average and divides by every worker's targets in the step,
    making the step's gradient the sum over all its questions / all its targets, as in one
    process, however unevenly the targets fall on the workers."""
    return world_size / step_targets


def shard(model) -> nn.Module:
    """FSDP2 over the runtime's process group: one unit per LLM decoder layer, then the root."""
    from torch.distributed.fsdp import fully_shard

    for layer in model.sm.internvl.model.language_model.layers:
        fully_shard(layer)
    fully_shard(model)
    return model


def _options(**kw):
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, cpu_offload=True, **kw)


def trainable_state(model, sharded: bool) -> dict[str, torch.Tensor]:
    """The trained parameters by name (relative to the SpaceMind), in fp32 on the CPU; complete on
    the first worker (others may get nothing when sharded)."""
    if not sharded:
        return model.trainable_state()
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    full = get_model_state_dict(model, options=_options(ignore_frozen_params=True))
    # torch types state-dict values as any checkpointable value; a model's are tensors
    return {k.removeprefix("sm."): v.float().contiguous() for k, v in full.items()}  # type: ignore[union-attr]


def load_trainable_state(model, state: dict[str, torch.Tensor], sharded: bool) -> None:
    if not sharded:
        model.load_trainable_state(state)
        return
    from torch.distributed.checkpoint.state_dict import set_model_state_dict

    params = model.trainable()
    missing = sorted(set(params) - set(state))
    if missing:
        raise ValueError(f"training state does not fit this model: missing {missing[:3]}")
    set_model_state_dict(model, {f"sm.{k}": v for k, v in state.items()}, options=_options(strict=False))


def optimizer_state(model, optimizer, sharded: bool) -> dict:
    if not sharded:
        return optimizer.state_dict()
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    return get_optimizer_state_dict(model, optimizer, options=_options())


def load_optimizer_state(model, optimizer, state: dict, sharded: bool) -> None:
    if not sharded:
        optimizer.load_state_dict(state)
        return
    from torch.distributed.checkpoint.state_dict import set_optimizer_state_dict

    set_optimizer_state_dict(model, optimizer, state, options=_options())


def export_tensors(model, sharded: bool) -> dict[str, torch.Tensor]:
    """Every tensor the exported checkpoint needs from the training model: the CGMF's (trained or
    not), the LoRA pairs, the projector; full, fp32, on the CPU (a collective when sharded)."""
    out = {}
    for name, p in model.sm.named_parameters():
        wanted = p.requires_grad or name.startswith("fusion.")
        if not wanted:
            continue
        full = p.full_tensor() if hasattr(p, "full_tensor") else p  # DTensor shards -> the whole tensor
        out[name] = full.detach().float().cpu().contiguous()
    return out
