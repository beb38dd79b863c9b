"""5. Big jobs stay bounded: `spacemind answer` over many generated scenes completes, every
question answered once and in file order, with a peak RSS that does not grow with the job
(questions and scenes are streamed through; the model dominates the footprint).

The CI size (1,000 questions over 50 scenes against 200 over 10) runs always; the full size
(10,000 over 500, several minutes) only with SPACEMIND_BIGJOB=1 (marker `bigjob`).
`bench/bigjob.py` runs the same measurement at three sizes and records the slope in
bench/results/bigjob.json.
"""

from __future__ import annotations

import importlib.util
import json

import pytest
from reliability_support import REPO

_spec = importlib.util.spec_from_file_location("bench_bigjob", REPO / "bench" / "bigjob.py")
bigjob = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bigjob)

# The CI size keeps the bench's flags but decodes one token from one frame: the memory
# question is about the job's size, not the model's work per question.
CI_FLAGS = ("--num-frames", "1", "--max-new-tokens", "1")


def run_and_check(work, ckpt, n_questions, n_scenes, extra=(), timeout=600) -> dict:
    row = bigjob.run_size(work, ckpt, n_questions, n_scenes, extra=extra, timeout=timeout)
    assert row["exit_code"] == 0, row
    assert row["complete"], row  # every question answered exactly once
    # in question-file order (streamed comparison of the two files)
    qfile = work / f"q_{n_questions}x{n_scenes}.jsonl"
    out = work / f"answers_{n_questions}x{n_scenes}.jsonl"
    with open(qfile) as qf, open(out) as of:
        for q_line, a_line in zip(qf, of, strict=True):
            assert json.loads(q_line)["id"] == json.loads(a_line)["id"]
    assert not out.with_name(out.name + ".errors.jsonl").exists()
    return row


def test_ci_size_job_completes_and_memory_does_not_grow_with_it(tmp_path, tiny_ckpt):
    small = run_and_check(tmp_path, tiny_ckpt, 200, 10, CI_FLAGS, timeout=300)
    big = run_and_check(tmp_path, tiny_ckpt, 1000, 50, CI_FLAGS, timeout=300)
    growth = big["peak_rss_mib"] - small["peak_rss_mib"]
    print(f"peak RSS {small['peak_rss_mib']} MiB (200 q / 10 scenes) -> {big['peak_rss_mib']} MiB (1,000 q / 50 scenes)")
    # 5x the questions and scenes; a per-question or per-scene leak of >= 40 KiB / 800 KiB trips it
    assert growth < 40, f"peak RSS grew by {growth:.1f} MiB from 200 to 1,000 questions"


@pytest.mark.bigjob
def test_full_size_job_10000_questions_over_500_scenes(tmp_path, tiny_ckpt):
    base = run_and_check(tmp_path, tiny_ckpt, 1000, 50, timeout=600)
    full = run_and_check(tmp_path, tiny_ckpt, 10000, 500, timeout=3600)
    growth = full["peak_rss_mib"] - base["peak_rss_mib"]
    print(f"peak RSS {base['peak_rss_mib']} MiB (1,000 q) -> {full['peak_rss_mib']} MiB (10,000 q)")
    assert growth < 150, f"peak RSS grew by {growth:.1f} MiB from 1,000 to 10,000 questions"
