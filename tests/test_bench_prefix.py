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
    from spacemind_cli.training.schedule import split_sizes

    r = _run("bench.packing", tmp_path / "packing.json")
    z = r["sizes"]
    p, s, small = r["whole"], r["separate"], r["small"]
    n = z["scenes"] * z["questions"]
    # All process every question's tokens; separate samples repeat the prefix per question, small
    # packs once per pack.
    assert s["tokens"] - p["tokens"] == (n - z["scenes"]) * r["prefix_tokens"]
    packs = z["scenes"] * len(split_sizes(z["questions"], z["questions_per_pack"]))
    assert s["tokens"] - small["tokens"] == (n - packs) * r["prefix_tokens"] and packs > z["scenes"]
    assert r["ratios_separate_vs_packed"]["tokens"] == pytest.approx(s["tokens"] / p["tokens"], rel=1e-3)
    assert r["ratios_separate_vs_packed"]["time"] == pytest.approx(s["s"] / p["s"], rel=1e-2)
    assert r["ratios_separate_vs_small"]["tokens"] == pytest.approx(s["tokens"] / small["tokens"], rel=1e-3)
    for check in r["check"].values():
        assert check["max_loss_rel_diff"] < 1e-5 and check["max_grad_rel_diff"] < 1e-4
    assert r["trained_parameters"] > 0
    plan = r["plan"]
    steps = plan["scenes"] * plan["questions_per_scene"] // plan["batch"]
    cap = plan["caps"][str(z["questions_per_pack"])]
    assert cap["scenes_per_step_min"] == plan["batch"] // z["questions_per_pack"]  # every pack of another scene
    today = plan["caps"]["32"]  # a whole scene per pack
    assert today["scenes_per_step_min"] == plan["batch"] // plan["questions_per_scene"]
    assert today["prefix_passes_64_workers_today_split"] == steps * plan["batch"]  # one question per GPU
    assert plan["caps"]["1"]["prefix_passes"] == steps * plan["batch"]
    assert cap["unpacked_vs_this_tokens_tiny"] == pytest.approx(
        plan["caps"]["1"]["tokens_tiny"] / cap["tokens_tiny"], abs=0.01)


def test_readahead_bench_quick(tmp_path):
    r = _run("bench.readahead", tmp_path / "readahead.json")
    sync, ahead = r["runs"]["synchronous"], r["runs"]["read_ahead"]
    assert sync["ahead"] == 0 and ahead["ahead"] == 1
    assert sync["scenes_per_step"] == ahead["scenes_per_step"] == 2
    assert r["ratios_synchronous_vs_read_ahead"]["step_s"] == pytest.approx(
        sync["step_s_warm_mean"] / ahead["step_s_warm_mean"], rel=1e-2)
    assert r["entry_mb"] > 0 and r["warm_read_s_per_entry"] > 0
