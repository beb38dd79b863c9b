"""Rows (dicts) to Arrow tables and Parquet files, one schema settled from all rows before
writing, so a column that appears late or changes type is never dropped. Parquet files are
written atomically (``files.atomic_target``)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from .files import atomic_target


def row_batches(rows: Iterable[dict], batch_rows: int) -> Iterator[list[dict]]:
    buf: list[dict] = []
    for row in rows:
        buf.append(row)
        if len(buf) >= batch_rows:
            yield buf
            buf = []
    if buf:
        yield buf


def _arrow_safe(value):
    """Arrow stores only valid UTF-8: text with lone surrogates (non-UTF-8 file names) gets them
    as backslash escapes, the same text a JSON reader shows."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
            return value
        except UnicodeEncodeError:
            return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, list):
        return [_arrow_safe(v) for v in value]
    if isinstance(value, dict):
        return {_arrow_safe(k): _arrow_safe(v) for k, v in value.items()}
    return value


def _jsonable_cell(value):
    # Columns that mix types (a ground truth that is sometimes a number) become text.
    return value if isinstance(value, str) or value is None else json.dumps(value)


def infer_schema(rows: list[dict]):
    import pyarrow as pa

    rows = [_arrow_safe(r) for r in rows]
    keys: dict[str, None] = {}
    for r in rows:
        keys.update(dict.fromkeys(r))
    fields = []
    for k in keys:
        col = [r.get(k) for r in rows]
        try:
            arr = pa.array(col)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            arr = pa.array([_jsonable_cell(v) for v in col], type=pa.string())
        fields.append(pa.field(k, arr.type))
    return pa.schema(fields)


def merged_schema(schema, rows: list[dict]):
    """`schema` widened to fit `rows` too: new columns are added, mixed types promoted (numbers
    and text to text), so a column that first appears late or changes type is never dropped."""
    import pyarrow as pa

    new = infer_schema(rows)
    if schema is None:
        return new
    fields = {f.name: f for f in schema}
    for f in new:
        old = fields.get(f.name)
        if old is None or old.type == f.type:
            fields.setdefault(f.name, f)
            continue
        try:
            fields[f.name] = pa.unify_schemas([pa.schema([old]), pa.schema([f])], promote_options="permissive").field(0)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            fields[f.name] = pa.field(f.name, pa.string())
    return pa.schema(list(fields.values()))


def to_table(rows: list[dict], schema):
    import pyarrow as pa

    rows = [_arrow_safe(r) for r in rows]
    cols = {}
    for f in schema:
        col = [r.get(f.name) for r in rows]
        try:
            cols[f.name] = pa.array(col, type=f.type)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            if pa.types.is_string(f.type) or pa.types.is_large_string(f.type):
                cols[f.name] = pa.array([_jsonable_cell(v) for v in col], type=f.type)
            else:
                raise
    return pa.table(cols, schema=schema)


def write_parquet(path: Path, rows_factory: Callable[[], Iterable[dict]], batch_rows: int = 2048) -> int:
    """Stream rows into one Parquet file atomically: a first pass settles a schema every row fits,
    the second writes. Rows are never all in memory; returns the row count."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = None
    for buf in row_batches(rows_factory(), batch_rows):
        schema = merged_schema(schema, buf)
    if schema is None:
        schema = pa.schema([])
    count = 0
    with atomic_target(path) as tmp:
        with pq.ParquetWriter(tmp, schema) as writer:
            for buf in row_batches(rows_factory(), batch_rows):
                writer.write_table(to_table(buf, schema))
                count += len(buf)
    return count
