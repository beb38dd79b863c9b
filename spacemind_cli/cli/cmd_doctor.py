"""`spacemind doctor`: what this machine can run."""

from __future__ import annotations

import importlib
import platform

from rich.table import Table

from .common import console, handle_errors

HELP = "Show versions, CUDA devices, the attention backend that will be used, and Ray status."


def _version(module: str) -> str:
    try:
        mod = importlib.import_module(module)
    except Exception as exc:  # a broken install must not crash doctor
        return f"not available ({type(exc).__name__})"
    return getattr(mod, "__version__", "installed")


@handle_errors
def doctor():
    from ..runtime import attention_backend, cuda_devices, ray_status

    table = Table(title="spacemind doctor", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    from .. import __version__

    table.add_row("spacemind", __version__)
    table.add_row("python", platform.python_version())
    for name in ("torch", "transformers", "ray", "pyarrow", "av", "PIL", "safetensors", "numpy"):
        table.add_row(name, _version(name))
    devices = cuda_devices()
    table.add_row("CUDA devices", "\n".join(devices) if devices else "none (CPU only)")
    table.add_row("attention", attention_backend())
    table.add_row("ray", ray_status())
    console.print(table)
