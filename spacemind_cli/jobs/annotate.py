"""Annotation jobs' output: a Parquet dataset partitioned by `dataset` (hive style).

    ds/dataset=scannet/part-0.parquet, ds/dataset=arkitscenes/part-0.parquet, ...
    ds/_state/  ds/_errors.jsonl  ds/_summary.json   (ignored by Arrow readers: leading "_")

Any Arrow reader opens it (`pyarrow.dataset.dataset("ds", partitioning="hive")`, duckdb
`read_parquet('ds/**/*.parquet', hive_partitioning=true)`). The new partitions are written into
a hidden staging folder and swapped in, so readers never see a half-written dataset.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import Iterable

from ..errors import resource_error
from .output import _infer_schema, _to_table

FLAT_DATASET = "default"  # partition value for scenes of a flat root (no dataset folder)


def write_partitioned(out_dir: str | Path, rows: Iterable[dict], batch_rows: int = 4096) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = Path(out_dir)
    staging = out / f".staging-{uuid.uuid4().hex}"
    writers: dict[str, tuple] = {}
    count = 0
    try:
        staging.mkdir(parents=True)
        buf: list[dict] = []

        def flush():
            # One writer per partition; a later batch with new columns is written with the first
            # batch's schema widened (missing columns null).
            by_part: dict[str, list[dict]] = {}
            for r in buf:
                by_part.setdefault(str(r.get("dataset") or FLAT_DATASET), []).append(r)
            for part, prow in by_part.items():
                prow = [{k: v for k, v in r.items() if k != "dataset"} for r in prow]
                if part not in writers:
                    schema = _infer_schema(prow)
                    folder = staging / f"dataset={part}"
                    folder.mkdir()
                    writers[part] = (pq.ParquetWriter(folder / "part-0.parquet", schema), schema)
                writer, schema = writers[part]
                writer.write_table(_to_table(prow, schema))

        for row in rows:
            buf.append(row)
            count += 1
            if len(buf) >= batch_rows:
                flush()
                buf = []
        if buf:
            flush()
        for writer, _ in writers.values():
            writer.close()
        old = out / f".old-{uuid.uuid4().hex}"
        old.mkdir()
        for existing in out.glob("dataset=*"):
            os.replace(existing, old / existing.name)
        for fresh in staging.iterdir():
            os.replace(fresh, out / fresh.name)
        shutil.rmtree(old, ignore_errors=True)
    except OSError as exc:
        raise resource_error(exc, out) from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return count
