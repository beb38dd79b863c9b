"""The shared-prefix benchmarks run (`bench.decode --quick`, `bench.packing --quick`) and every
figure they report is computed from what they measured. Structure and exact counts only; never a
time threshold. Subprocesses: bench.decode changes the process's malloc settings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _run(module: str, out: Path) -> dict:
    proc = subprocess.run(
        [sys.executable, "-m", module, "--quick", "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=300, env={**os.environ},
    )  # fmt: skip
    assert proc.returncode == 0, f"{module} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert out.with_suffix(".md").read_text().startswith("# ")
    text = out.read_text()
    assert str(REPO) not in text and str(out.parent) not in text  # no machine paths in results
    return json.loads(text)


def test_decode_bench_quick(tmp_path):
    r = _run("bench.decode", tmp_path / "decode.json")
    assert [row["batch"] for row in r["batches"]] == r["sizes"]["batches"] == [1, 2, 4]
    prefix = r["prefix_kv_bytes"]
    s = r["sizes"]
    head_dim = s["hidden"] // s["heads"]
    per_token = 2 * s["layers"] * s["kv_heads"] * head_dim * 4  # fp32 keys + values
    assert prefix == s["prefix_len"] * per_token
    for row in r["batches"]:
        b, old, new = row["batch"], row["old"], row["new"]
        assert row["tokens_equal"] is True  # the two paths answer alike (fp32)
        suffix_slots = b * (max(row["suffix_tokens"]) + s["max_new_tokens"] - 1)
        # new: the one prefix + the rows' own suffixes; old: the prefix + b copies of prefix and suffix
        assert new["prefix_kv_bytes"] == prefix and new["suffix_kv_bytes"] == suffix_slots * per_token
        assert new["kv_bytes_held"] == prefix + suffix_slots * per_token
        assert old["copied_kv_bytes"] == b * s["prefix_len"] * per_token + suffix_slots * per_token
        assert old["kv_bytes_held"] == prefix + old["copied_kv_bytes"]
        q = row["ratios_old_vs_new"]
        assert q["time"] == pytest.approx(old["s"] / new["s"], rel=1e-3)
        assert q["kv_bytes_held"] == pytest.approx(old["kv_bytes_held"] / new["kv_bytes_held"], rel=1e-3)
        assert old["s"] == min(old["all_s"]) and new["s"] == min(new["all_s"])
        if old["peak_extra_bytes"] is not None and new["peak_extra_bytes"]:
            assert q["peak_extra_bytes"] == pytest.approx(old["peak_extra_bytes"] / new["peak_extra_bytes"], rel=1e-3)
    assert r["summary"]["tokens_equal_everywhere"] is True
    assert r["summary"]["old_kv_bytes_held_per_row"] == pytest.approx(s["prefix_len"] * per_token, rel=0.2)
    assert r["summary"]["new_kv_bytes_held_per_row"] < prefix / 10


def test_packing_bench_quick(tmp_path):
    r = _run("bench.packing", tmp_path / "packing.json")
    z = r["sizes"]
    p, s = r["packed"], r["separate"]
    n = z["scenes"] * z["questions"]
    # Both process every question's tokens; separate samples repeat the prefix per question.
    assert s["tokens"] - p["tokens"] == (n - z["scenes"]) * r["prefix_tokens"]
    assert r["ratios_separate_vs_packed"]["tokens"] == pytest.approx(s["tokens"] / p["tokens"], rel=1e-3)
    assert r["ratios_separate_vs_packed"]["time"] == pytest.approx(s["s"] / p["s"], rel=1e-2)
    assert r["check"]["max_loss_rel_diff"] < 1e-5 and r["check"]["max_grad_rel_diff"] < 1e-4
    assert r["trained_parameters"] > 0
