"""The benchmarks run end to end: `python -m bench.gpu --tiny` (every section of the GPU benchmark,
on the CPU with toy architectures) and `bench.cpu --quick` (2 scenes x 3 questions).

Only structure is asserted, and that every ratio is computed from the measured values it names;
never a wall-clock threshold (a shared CI machine's speed says nothing about spacemind's)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
GPU_SECTIONS = ("env", "micro", "vggt", "build", "e2e", "projection", "targets", "profile")
JUDGED = ("vsibench_warm_s", "vsibench_cold_s", "speedup_cold_vs_baseline", "speedup_warm_vs_baseline",
          "vggt_fraction_of_peak", "vggt_memory_vs_naive")


def _run(args: list[str], tmp_path: Path, timeout: int) -> subprocess.CompletedProcess:
    env = {**os.environ, "SPACEMIND_HOME": str(tmp_path / "home")}
    proc = subprocess.run([sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True, timeout=timeout, env=env)
    assert proc.returncode == 0, f"{args} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc


def _pos(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x > 0


def _errors(obj, path="") -> list[str]:
    """Every "error" key anywhere in the JSON."""
    found = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k == "error":
                found.append(f"{path}: {v}")
            found += _errors(v, f"{path}.{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            found += _errors(v, f"{path}[{i}]")
    return found


def test_gpu_script_tiny_exercises_every_section(tmp_path):
    out = tmp_path / "gpu_tiny.json"
    _run(["bench.gpu", "--tiny", "--profile", "--out", str(out), "--cache-dir", str(tmp_path / "cache")], tmp_path, 600)
    r = json.loads(out.read_text())

    assert r["errors"] == {} and r["skipped"] == {}
    assert _errors(r) == []
    for name in GPU_SECTIONS:
        assert isinstance(r.get(name), dict) and "skipped" not in r[name], name
    assert r["env"]["torch"] and r["env"]["transformers"] and _pos(r["env"]["peak_bf16_tflops"])
    assert _pos(r["micro"]["matmul"]["tflops"]) and _pos(r["micro"]["sdpa_global"]["tflops"])

    # VGGT: every size, both configurations, numbers; the ratios are ours / naive of those numbers
    v = r["vggt"]
    for S in map(str, r["sizes"]["vggt_frames"]):
        ours, naive = v["ours"][S], v["naive"][S]
        for case in (ours, naive):
            for key in ("frames_per_s", "tflops", "fraction_of_peak", "peak_gib", "s_per_call", "tflop_per_call"):
                assert _pos(case[key]), (S, key, case)
        assert v["ratios"][S]["speed_ours_vs_naive"] == pytest.approx(ours["frames_per_s"] / naive["frames_per_s"], rel=1e-2)
        assert v["ratios"][S]["peak_memory_ours_vs_naive"] == pytest.approx(ours["peak_gib"] / naive["peak_gib"], rel=1e-2)
        flops = v["flops"][S]
        assert flops["total"] == pytest.approx(sum(x for k, x in flops.items() if k != "total"), rel=1e-3)
        assert ours["tflops"] == pytest.approx(ours["tflop_per_call"] / ours["s_per_call"], rel=1e-2)
    # naive keeps every layer, ours only the last one
    S = str(r["sizes"]["target_frames"])
    assert v["naive"][S]["kept_output_gib"] > v["ours"][S]["kept_output_gib"]

    # the half opt-in: same layers as the default, weights (and kept tokens) in bf16 instead of fp32
    assert v["layers_needed"] == [-1]
    assert v["params_bytes_naive"] == v["params_bytes_ours"] == 2 * v["params_bytes_ours_half"]
    for S in map(str, r["sizes"]["vggt_frames"]):
        ours, half, ratios = v["ours"][S], v["ours_half"][S], v["ratios"][S]
        for key in ("frames_per_s", "tflops", "peak_gib", "s_per_call", "weights_gib"):
            assert _pos(half[key]), (S, key, half)
        assert ours["weights_gib"] == pytest.approx(2 * half["weights_gib"], rel=1e-2)
        assert ours["kept_output_gib"] == pytest.approx(2 * half["kept_output_gib"], rel=1e-2)
        assert ratios["speed_half_vs_ours"] == pytest.approx(half["frames_per_s"] / ours["frames_per_s"], rel=1e-2)
        assert ratios["peak_memory_half_vs_ours"] == pytest.approx(half["peak_gib"] / ours["peak_gib"], rel=1e-2)
        assert ratios["memory_saved_by_half_gib"] == pytest.approx(ours["peak_gib"] - half["peak_gib"], abs=1e-6)

    # the full-size models at least build (meta device) and their parts fit together
    meta = r["build"]["full_size_meta_check"]
    assert meta["shapes"]["fused"] == [2, 256, 3584] and meta["params"]["internvl"] > 7.9e9
    assert r["build"]["buffers_match_normal_build"] is True

    # end to end: baseline, cold, warm measured (VGGT at the library's default precision); ratios from those figures
    e = r["e2e"]
    assert e["workload"]["vggt_weights"] == "fp32" and r["build"]["vggt_weights"].startswith("fp32")
    assert e["notes"] == []  # every batch decoded whole
    assert e["workload"]["questions"] == r["sizes"]["scenes"] * r["sizes"]["questions_per_scene"]
    assert e["baseline"]["questions_measured"] == r["sizes"]["baseline_questions"]
    for which in ("baseline", "cold", "warm"):
        assert _pos(e[which]["questions_per_s"]), which
    assert e["cold"]["scenes"] == e["warm"]["scenes"] == r["sizes"]["scenes"]
    for which in ("cold", "warm"):
        assert e["ratios"][f"{which}_vs_baseline"] == pytest.approx(
            e[which]["questions_per_s"] / e["baseline"]["questions_per_s"], rel=1e-2)
        assert set(e[which]["per_scene_s"]) >= {"fuse_s", "prefill_s", "generate_s"}
    assert {"encode_s", "cache_write_s"} <= set(e["cold"]["per_scene_s"]) and "cache_read_s" in e["warm"]["per_scene_s"]
    assert [d["batch"] for d in e["decode_scaling"]] == r["sizes"]["decode_batches"]
    assert all(_pos(d["ms_per_step"]) for d in e["decode_scaling"])
    assert _pos(e["prefill"]["tflops"])

    # projection = per-scene x 288 + per-question x 5130, from the measured costs
    p = r["projection"]
    assert p["vsibench_cold_s"] == pytest.approx(288 * p["cold_per_scene_s"] + 5130 * p["cold_per_question_decode_s"], rel=1e-2)
    assert p["vsibench_warm_s"] == pytest.approx(288 * p["warm_per_scene_s"] + 5130 * p["warm_per_question_decode_s"], rel=1e-2)
    assert p["vsibench_baseline_s"] == pytest.approx(5130 * e["baseline"]["per_question_s"], rel=1e-2)

    t = r["targets"]
    for name in JUDGED:
        assert isinstance(t[name]["met"], bool) and _pos(t[name]["value"]), name
        if not t[name]["met"]:
            assert t[name]["bound"], name
    assert sorted(t["met"] + t["missed"]) == sorted(JUDGED)

    prof = r["profile"]
    assert prof["vggt"]["top_ops"] and prof["decode"]["top_ops"]
    assert Path(prof["table_file"]).is_file()


def test_gpu_bench_answers_scenes_through_the_library_routine():
    """The e2e passes answer a scene with models.answering.answer_questions: a failed batch is
    answered one question at a time (noted), a question that fails alone fails the pass."""
    from dataclasses import replace
    from types import SimpleNamespace

    import torch

    from bench.gpu.context import TINY, Ctx
    from bench.gpu.e2e import answer_scene

    class Model:  # the SpaceMind surface answer_scene and answer_questions use
        device = torch.device("cpu")
        internvl = SimpleNamespace(config=SimpleNamespace(text_config=SimpleNamespace(max_position_embeddings=64)))

        def fuse(self, enc):
            return enc

        def prefill(self, fused):
            return SimpleNamespace(length=10)

        def suffix_ids(self, prompt):
            return [0] * len(prompt)

        def generate(self, prefix, prompts, *, max_new_tokens):
            if len(prompts) > 1 and "bad" in prompts:
                raise RuntimeError("CUDA out of memory")
            return [p.upper() for p in prompts]

    sizes = replace(TINY, batch_size=2, max_new_tokens=4)
    ctx = Ctx(SimpleNamespace(time_budget=60, tiny=True), sizes, torch.device("cpu"), torch.bfloat16)
    ctx.sm = Model()
    notes, row = [], {}
    _, texts = answer_scene(ctx, None, 3, ["a", "b", "bad", "c", "d"], row, notes)
    assert texts == ["A", "B", "BAD", "C", "D"]
    assert notes == ["scene 3: 2 questions answered one by one after their batch failed"]
    assert {"fuse_s", "prefill_s", "generate_s"} <= set(row)
    with pytest.raises(RuntimeError, match="question 1 of scene 3: its prompt is 60 tokens"):
        answer_scene(ctx, None, 3, ["a", "x" * 60], {}, [])


@pytest.mark.ray
def test_cpu_bench_quick_smoke(tmp_path):
    out = tmp_path / "cpu.json"
    _run(["bench.cpu", "--quick", "--out", str(out), "--workdir", str(tmp_path / "work")], tmp_path, 900)
    r = json.loads(out.read_text())

    m = r["machine"]
    assert m["cpu_count"] and m["torch"] and m["transformers"] and m["date"]
    assert r["workload"]["scenes"] == 2 and r["workload"]["questions"] == 6

    a = r["answer"]
    for run in ("local_cold", "local_warm", "ray_cold", "ray_warm"):
        assert a[run]["answered"] == 6 and a[run]["failed"] == 0, run
        assert _pos(a[run]["questions_per_s"]) and _pos(a[run]["wall_s"])
        assert a[run]["questions_per_s"] == pytest.approx(6 / a[run]["wall_s"], rel=1e-3)
        assert r["ratios"][f"{run}_vs_baseline"] == pytest.approx(
            a[run]["questions_per_s"] / a["baseline"]["questions_per_s"], rel=1e-3)
    assert a["local_cold"]["cache"] == {"miss": 2} and a["local_warm"]["cache"] == {"hit": 2}
    assert a["ray_cold"]["cache"] == {"miss": 2} and a["ray_warm"]["cache"] == {"hit": 2}
    assert a["baseline"]["questions_measured"] == 6
    assert a["baseline"]["questions_per_s"] == pytest.approx(6 / a["baseline"]["measured_s"], rel=1e-3)
    assert r["ratios"]["ray_cold_vs_local_cold"] == pytest.approx(
        a["ray_cold"]["questions_per_s"] / a["local_cold"]["questions_per_s"], rel=1e-3)
    assert r["ratios"]["local_warm_vs_local_cold"] == pytest.approx(
        a["local_warm"]["questions_per_s"] / a["local_cold"]["questions_per_s"], rel=1e-3)
    # the shared-prefix batched answers are the baseline's answers
    assert r["answers_equal_baseline"]["compared"] == 6
    assert r["answers_equal_baseline"]["equal"] == 6

    e = r["extract"]
    for ex in ("local", "ray"):
        assert e[ex]["scenes"] == 2 and e[ex]["encoded"] == 2 and _pos(e[ex]["scenes_per_s"])
    assert r["ratios"]["extract_ray_vs_local"] == pytest.approx(e["ray"]["scenes_per_s"] / e["local"]["scenes_per_s"], rel=1e-3)

    c = r["cache_io"]["store_mbps"]
    assert all(_pos(c[k]) for k in ("write_mbps", "read_cold_mbps", "read_warm_mbps"))

    w = r["where_time_goes"]
    assert {"encode", "prefill", "generate tokens", "decode video"} <= set(w["local_cold"]["stages"])
    assert "cache read" in w["local_warm"]["stages"] and "encode" not in w["local_warm"]["stages"]
    for run in ("baseline", "local_cold", "local_warm", "ray_cold", "ray_warm"):
        shares = [s["share"] for s in w[run]["stages"].values()]
        assert sum(shares) == pytest.approx(1.0, abs=1e-2), run

    md = out.with_suffix(".md").read_text()
    assert "vs baseline" in md and "Where the time goes" in md


def test_vggt_precision_bench_measures_the_half_weight_opt_in(tmp_path):
    out = tmp_path / "vggt_precision.json"
    _run(["bench.vggt_precision", "--quick", "--repeats", "1", "--out", str(out)], tmp_path, timeout=300)
    r = json.loads(out.read_text())
    w = r["vggt_1b_weights"]
    assert w["fp32_bytes"] == 2 * w["half_bytes"] == 4 * w["parameters"]
    assert 1.0e9 < w["parameters"] < 1.3e9  # VGGT-1B's aggregator + camera head
    assert all(_pos(v) for v in r["relative_deviation_of_half"].values())
    t = r["cpu_forward_s"]
    assert t["half_vs_reference"] == t["reference"] / t["half"]
    assert "GiB saved" in out.with_suffix(".md").read_text()


def test_committed_results_and_docs_hold_no_machine_paths():
    """Benchmark results and fixture docs travel with the repo: no absolute path of the machine
    that made them (temp folders, home or work directories)."""
    import re

    machine_path = re.compile(r"(?<![\w.])/(tmp|work|root|home|Users|var/folders)/")
    files = [*(REPO / "bench" / "results").glob("*"), *(REPO / "tests" / "fixtures").rglob("*.md"),
             *(REPO / "tests" / "fixtures").rglob("*.py"), REPO / "README.md", REPO / "bench" / "README.md"]
    offenders = [f"{p.relative_to(REPO)}: {m.group(0)}" for p in files if p.is_file() and p.suffix in (".json", ".md", ".py")
                 for m in [machine_path.search(p.read_text(errors="replace"))] if m]
    assert not offenders, offenders


def test_generalization_bench_trains_on_some_rooms_and_scores_unseen_ones(tmp_path):
    out = tmp_path / "generalization.json"
    _run(["bench.generalization", "--quick", "--out", str(out)], tmp_path, timeout=600)
    r = json.loads(out.read_text())
    assert r["train_rooms"] == 4 and r["held_out_rooms"] == 2
    assert set(r["scores"]) >= {"trained", "untrained", "blind_numeric_mean"}
    assert all(0 <= v <= 100 for s in r["scores"].values() for v in s.values() if v is not None)
    assert r["last_loss"] < r["first_loss"]
    assert "unseen rooms" in out.with_suffix(".md").read_text()


@pytest.mark.ray
def test_ray_overhead_bench_compares_ray_with_local_in_one_process(tmp_path):
    out = tmp_path / "ray_overhead.json"
    _run(["bench.ray_overhead", "--quick", "--out", str(out)], tmp_path, timeout=600)
    r = json.loads(out.read_text())
    runs, ratios = r["runs"], r["ratios"]
    assert set(runs) == {"local", "ray", "ray_dataset"} and all(v["answered"] == 12 for v in runs.values())
    assert ratios["ray_wall_vs_local"] == round(runs["ray"]["wall_s"] / runs["local"]["wall_s"], 3)
    assert r["answers_equal_local"] == "12/12"
    assert _pos(r["row_format"]["former_s"]) and _pos(r["row_format"]["typed_s"])
