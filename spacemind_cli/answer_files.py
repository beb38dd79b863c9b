"""The files beside an answers file OUT (`answer --output OUT`), named once for the job that
writes them (`jobs/output.py`) and the report that reads them (`report/data.py`)."""

from __future__ import annotations

from pathlib import Path


def output_paths(output: Path) -> dict[str, Path]:
    """OUT.parts/ (resumable shards), OUT.errors.jsonl, OUT.summary.json."""
    return {
        "parts": output.with_name(output.name + ".parts"),
        "errors": output.with_name(output.name + ".errors.jsonl"),
        "summary": output.with_name(output.name + ".summary.json"),
    }
