"""Reading safetensors weights into a model built without them, never holding two copies.

A model is built with its parameters on the meta device (no memory, no random init), then each
checkpoint tensor is read from its memory-mapped shard and placed straight in the compute dtype
and on the compute device:

- a tensor already in the compute dtype, on a CPU, stays a view of the mapped file (no copy; the
  page cache holds it, shared with every process that maps the same file);
- a tensor cast to another dtype (bf16 weights answered in fp32) or moved to a GPU is read, cast
  or copied, and its mapped pages let go: the shard is unmapped and reopened after every
  `WINDOW_BYTES` read, so at most that much of the checkpoint is mapped besides the weights.

transformers' own `from_pretrained` keeps every shard mapped until the whole model is loaded: a
bf16 checkpoint loaded in fp32 peaked at ~1.5x the fp32 weights (`bench/results/load_memory.md`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..weights import broken, read_header

# Checkpoint bytes read from one mapping before it is dropped and the shard reopened: bounds what
# a load holds besides the weights (a tensor larger than this is read whole).
WINDOW_BYTES = 64 << 20
LOADER_THREADS = 4  # casts in flight (they wait on page faults more than on the CPU)


@contextlib.contextmanager
def empty_weights() -> Iterator[None]:
    """Modules built inside get their parameters on the meta device; buffers stay real (rotary
    frequencies are computed in __init__ and are not in checkpoints)."""
    register = nn.Module.register_parameter

    def to_meta(module: nn.Module, name: str, param: nn.Parameter | None) -> None:
        register(module, name, param)
        if param is not None and param.device.type != "meta":
            kwargs = {"requires_grad": param.requires_grad}
            module._parameters[name] = type(param)(param.to("meta"), **kwargs)

    nn.Module.register_parameter = to_meta  # type: ignore[method-assign, assignment]
    try:
        yield
    finally:
        nn.Module.register_parameter = register  # type: ignore[method-assign]


class ShardReader:
    """The tensors of one safetensors file, memory-mapped, remapped every WINDOW_BYTES read (a view
    handed out stays valid: it keeps its own mapping alive for as long as it is used). The file is
    checked first (`spacemind_cli.weights.read_header`); its errors are CheckpointErrors naming it."""

    def __init__(self, path: str | Path, window: int = WINDOW_BYTES):
        self.path = str(path)
        self.window = window
        self._handle: Any = None  # safetensors' safe_open while open
        self._read = 0
        read_header(self.path)  # a truncated or foreign file is a CheckpointError naming it
        self._open()

    def _open(self) -> None:
        from safetensors import safe_open

        try:
            self._handle = safe_open(self.path, framework="pt", device="cpu")
        except Exception as exc:  # safetensors raises its own error types
            raise _broken(self.path, exc) from None
        self._read = 0

    def keys(self) -> list[str]:
        return list(self._handle.keys())

    def shape(self, key: str) -> tuple[int, ...]:
        return tuple(self._handle.get_slice(key).get_shape())

    def get(self, key: str) -> torch.Tensor:
        if self._read >= self.window:
            self.close()
            self._open()
        try:
            tensor = self._handle.get_tensor(key)
        except Exception as exc:  # the file changed under us
            raise _broken(self.path, exc) from None
        self._read += tensor.numel() * tensor.element_size()
        return tensor

    def close(self) -> None:
        if self._handle is not None:
            self._handle.__exit__(None, None, None)
            self._handle = None

    def __enter__(self) -> ShardReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _broken(path: str, exc: Exception):
    return broken(path, " ".join(f"{type(exc).__name__}: {exc}".split())[:300])


def place(tensor: torch.Tensor, like: torch.Tensor, device: str | torch.device) -> torch.Tensor:
    """`tensor` in `like`'s dtype (floating point only) on `device`. On a GPU the tensor travels in
    its stored dtype and is cast there (no fp32 copy on the host); on a CPU a tensor already in the
    dtype is returned as is (a view of the mapped file)."""
    dtype = like.dtype if tensor.is_floating_point() else tensor.dtype
    if torch.device(device).type == "cpu":
        return tensor.to(dtype)
    return tensor.to(device).to(dtype)


def assign(model: nn.Module, name: str, value: torch.Tensor) -> None:
    """Set parameter or buffer `name` of `model` to `value` (a frozen Parameter for a parameter)."""
    module_name, _, attr = name.rpartition(".")
    module = model.get_submodule(module_name) if module_name else model
    if attr in module._parameters:
        module._parameters[attr] = nn.Parameter(value, requires_grad=False)
    else:
        module._buffers[attr] = value


def load_shards(
    model: nn.Module,
    files: list[Path],
    target: Callable[[str], str | None],
    *,
    device: str | torch.device,
) -> tuple[set[str], list[str], list[str]]:
    """Fill `model`'s tensors from safetensors `files`, shard by shard. `target(key)` is the model
    tensor a checkpoint key fills, or None to skip it (never read). Returns (filled names,
    unexpected checkpoint keys, shape mismatches as "key (ckpt shape) vs (model shape)");
    mismatched tensors are not read.

    Each window's tensors are cast on LOADER_THREADS threads: the time goes into page faults (the
    mapped file's, the new tensors'), which threads overlap (3.5 s -> 1.4 s for 0.6 GB on 2 cores)."""
    from concurrent.futures import ThreadPoolExecutor

    expected = model.state_dict(keep_vars=True)
    filled: set[str] = set()
    unexpected: list[str] = []
    mismatched: list[str] = []
    with ThreadPoolExecutor(LOADER_THREADS, thread_name_prefix="weights") as pool:

        def flush(batch: list[tuple[str, torch.Tensor, torch.Tensor]]) -> None:
            placed = pool.map(lambda item: place(item[2], item[1], device), batch)
            for (name, _, _), value in zip(batch, placed):
                assign(model, name, value)
                filled.add(name)
            batch.clear()  # the views go: the next remap unmaps their pages

        for path in files:
            with ShardReader(path) as shard:
                batch: list[tuple[str, torch.Tensor, torch.Tensor]] = []
                size = 0
                for key in shard.keys():
                    name = target(key)
                    if name is None:
                        continue
                    if name not in expected:
                        unexpected.append(key)
                        continue
                    like = expected[name]
                    shape = shard.shape(key)
                    if shape != tuple(like.shape):
                        mismatched.append(f"{key} {shape} vs {tuple(like.shape)}")
                        continue
                    tensor = shard.get(key)
                    batch.append((name, like, tensor))
                    size += tensor.numel() * tensor.element_size()
                    if size >= shard.window:
                        flush(batch)
                        size = 0
                flush(batch)
    return filled, unexpected, mismatched


def on_meta(model: nn.Module) -> list[str]:
    """Names of the parameters and buffers still without memory."""
    return [n for n, t in model.state_dict(keep_vars=True).items() if t.is_meta]
