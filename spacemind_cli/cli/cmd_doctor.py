"""`spacemind doctor`: what this machine can run."""

from __future__ import annotations

import importlib
import platform

from .common import console, handle_errors, summary_table

HELP = "Show versions, CUDA devices, the attention backend that will be used, and Ray status."


def _version(module: str) -> str:
    try:
        mod = importlib.import_module(module)
    except Exception as exc:  # a broken install must not crash doctor
        return f"not available ({type(exc).__name__})"
    return getattr(mod, "__version__", "installed")


@handle_errors
def doctor():
    from .. import __version__
    from ..runtime import attention_backend, cuda_devices, ray_status

    devices = cuda_devices()
    console.print(summary_table("spacemind doctor", [
        ("spacemind", __version__),
        ("python", platform.python_version()),
        *((name, _version(name)) for name in ("torch", "transformers", "ray", "pyarrow", "av", "PIL", "safetensors", "numpy")),
        ("CUDA devices", "\n".join(devices) if devices else "none (CPU only)"),
        ("attention", attention_backend()),
        ("ray", ray_status()),
    ]))
