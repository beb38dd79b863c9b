"""Annotation datasets keep every column: a column that first appears after the first batch
(`frames_note`, added only when a clip is short) and a column whose type changes are written."""

from __future__ import annotations

import pyarrow.dataset as pads

from spacemind_cli.jobs.annotate import write_partitioned


def test_a_column_that_first_appears_late_is_kept(tmp_path):
    rows = [{"dataset": "a", "id": i, "prediction": f"p{i}"} for i in range(4)]
    rows += [{"dataset": "a", "id": 4, "prediction": "p4", "frames_note": "clip has 3 frames; 32 asked"}]
    rows += [{"dataset": "b", "id": 5, "prediction": "p5", "ground_truth": 2},
             {"dataset": "b", "id": 6, "prediction": "p6", "ground_truth": "left"}]  # the type changes
    n = write_partitioned(tmp_path / "ds", lambda: iter(rows), batch_rows=2)
    assert n == len(rows)
    table = pads.dataset(tmp_path / "ds", format="parquet", partitioning="hive").to_table().to_pylist()
    by_id = {r["id"]: r for r in table}
    assert by_id[4]["frames_note"] == "clip has 3 frames; 32 asked"
    assert by_id[0]["frames_note"] is None
    assert {by_id[5]["ground_truth"], by_id[6]["ground_truth"]} == {"2", "left"}
    assert sorted(by_id) == list(range(7))
