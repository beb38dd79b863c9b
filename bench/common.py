"""What the CPU benchmarks share: the machine they ran on, and writing their results."""

from __future__ import annotations

import json
import os
import platform
from datetime import UTC, datetime
from pathlib import Path


def machine_info() -> dict:
    import torch
    import transformers

    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "torch_threads": torch.get_num_threads(),
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
    }


def write_text(path: str | Path, text: str) -> None:
    """`text` into `path`, atomically (the whole file or the previous one, never half)."""
    from spacemind_cli.files import atomic_write_text

    atomic_write_text(Path(path), lambda fh: fh.write(text), durable=False)


def write_json(out: str | Path, result: dict) -> None:
    """`result` as indented JSON into `out`, atomically."""
    write_text(out, json.dumps(result, indent=2) + "\n")


def write_results(out: str | Path, result: dict, markdown: str, md: str | Path | None = None) -> None:
    """`out` (JSON) and its markdown (default: `out` with .md), each written atomically, and the
    markdown printed."""
    out = Path(out)
    write_json(out, result)
    write_text(Path(md) if md else out.with_suffix(".md"), markdown)
    print(markdown)
