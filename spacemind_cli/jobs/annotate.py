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
from collections.abc import Callable, Iterable
from pathlib import Path

from ..errors import resource_error
from ..tables import merged_schema, row_batches, to_table

FLAT_DATASET = "default"  # partition value for scenes of a flat root (no dataset folder)


def write_partitioned(out_dir: str | Path, rows_factory: Callable[[], Iterable[dict]], batch_rows: int = 4096) -> int:
    """Write the rows `rows_factory()` yields as a dataset partitioned by `dataset`. Two passes:
    the first settles one schema from all rows (a column that first appears in a later batch or
    partition, like `frames_note`, is kept; mixed types are widened), the second writes every
    partition with it, so any reader sees every column whatever file it looks at first."""
    import pyarrow.parquet as pq

    out = Path(out_dir)

    def partitions(buf: list[dict]) -> dict[str, list[dict]]:
        by_part: dict[str, list[dict]] = {}
        for r in buf:
            by_part.setdefault(str(r.get("dataset") or FLAT_DATASET), []).append(
                {k: v for k, v in r.items() if k != "dataset"}
            )
        return by_part

    schema = None
    for buf in row_batches(rows_factory(), batch_rows):
        schema = merged_schema(schema, [r for prow in partitions(buf).values() for r in prow])

    staging = out / f".staging-{uuid.uuid4().hex}"
    writers: dict[str, pq.ParquetWriter] = {}
    count = 0
    try:
        staging.mkdir(parents=True)
        for buf in row_batches(rows_factory(), batch_rows):
            for part, prow in partitions(buf).items():
                if part not in writers:
                    folder = staging / f"dataset={part}"
                    folder.mkdir()
                    writers[part] = pq.ParquetWriter(folder / "part-0.parquet", schema)
                writers[part].write_table(to_table(prow, schema))
            count += len(buf)
        for writer in writers.values():
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
        for writer in writers.values():
            writer.close()
        shutil.rmtree(staging, ignore_errors=True)
    return count
