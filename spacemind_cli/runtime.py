"""Facts about the machine we run on: devices, dtypes, attention backend, Ray."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path


def has_flash_attn() -> bool:
    # find_spec, not import: importing a broken flash-attn build can abort the process.
    return importlib.util.find_spec("flash_attn") is not None


def cuda_devices() -> list[str]:
    import torch

    if not torch.cuda.is_available():
        return []
    out = []
    for i in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(i)
        out.append(f"cuda:{i} {props.name} ({props.total_memory / 2**30:.0f} GiB)")
    return out


def pick_device(device: str | None = None) -> str:
    import torch

    if device:
        if device.startswith("cuda") and not torch.cuda.is_available():
            from .errors import InputError

            raise InputError(f"--device {device} asked for, but no CUDA device is available")
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def torch_threads(requested: int | None, reserved_cpus: float | None = None) -> int:
    """The torch thread count of a model worker on CPU, the one policy for answer, extract and
    train on every executor: `requested` (--threads) when given; else the CPUs the worker reserved
    (a Ray model worker's or Ray Train worker's share: taking the machine's count would oversubscribe a
    node running several workers, or one unlike the driver's); else the CPUs this process may run on."""
    if requested:
        return requested
    if reserved_cpus is not None:
        return max(1, int(reserved_cpus))
    return len(os.sched_getaffinity(0))


def use_torch_threads(requested: int | None) -> int:
    """Set torch's thread count in this worker by `torch_threads`; returns it."""
    import torch

    threads = torch_threads(requested)
    torch.set_num_threads(threads)
    return threads


def compute_dtype(device: str, requested: str | None = None):
    """bf16 on GPUs that support it, fp16 on older GPUs, fp32 on CPU (unless asked)."""
    import torch

    if requested:
        return {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16,
                "float16": torch.float16, "fp32": torch.float32, "float32": torch.float32}[requested]
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def autocast(device, dtype):
    """Autocast to the compute dtype where torch has it: bf16 and fp16 on CUDA, bf16 on CPU (so a
    CPU run computes what the GPU path computes). Frozen weights are held in that dtype and
    trained ones in fp32; autocast is what lets the two meet."""
    import contextlib

    import torch

    kind = device.type if isinstance(device, torch.device) else str(device).split(":")[0]
    if dtype in (torch.bfloat16, torch.float16) and (kind == "cuda" or dtype == torch.bfloat16):
        return torch.autocast(kind, dtype=dtype)
    return contextlib.nullcontext()


def lm_attention_implementation(device: str) -> str:
    """What transformers is asked for: FlashAttention-2 when present on CUDA, else SDPA."""
    if device.startswith("cuda") and has_flash_attn():
        return "flash_attention_2"
    return "sdpa"


def attention_backend() -> str:
    import torch

    if torch.cuda.is_available():
        lm = lm_attention_implementation("cuda")
        flash = "flash-attn installed" if has_flash_attn() else "flash-attn not installed"
        return f"LM: {lm} ({flash}); VGGT/CGMF: torch SDPA (flash/mem-efficient kernels on CUDA)"
    return "sdpa on CPU (math kernel); flash-attn only applies on CUDA"


def ray_status() -> str:
    if importlib.util.find_spec("ray") is None:
        return "not installed (use --executor local)"
    import ray

    address = os.environ.get("RAY_ADDRESS")
    if address:
        return f"ray {ray.__version__}; RAY_ADDRESS={address} (answer/extract join it unless given --ray-address)"
    # Ray writes the address of a cluster started on this machine under its temp dir, which
    # RAY_TMPDIR moves (default /tmp/ray).
    current = Path(os.environ.get("RAY_TMPDIR") or "/tmp/ray") / "ray_current_cluster"
    if current.exists():
        return f"ray {ray.__version__}; a cluster was started on this machine at {current.read_text().strip()}"
    return f"ray {ray.__version__}; no cluster running (answer/extract start an embedded one)"
