"""lmms-eval with the `spacemind` model (one encode and one prefill per video) against a
per-question baseline (each question's video encoded and its prompt prefilled anew, as lmms-eval
models usually do), both through lmms-eval's own evaluator, in this process, on the same task:

    python -m bench.lmms_eval            # the bundled examples: 68 VSI-Bench questions over 4 videos
    python -m bench.lmms_eval --quick    # 4 questions per video (the harness test's smoke run)

Needs lmms-eval (run it in .ci/lmms_eval.sh's environment: `.venv-lmms/bin/python -m bench.lmms_eval`).
The task is lmms-eval's own vsibench template over the bundled example videos and questions, read
from a local JSON file (`local_vsibench`, shared with tests/lmms_eval/check_harness.py). Both models
are the same tiny random-weight checkpoint with the same frames, so their answers must agree
(checked); what differs is the work per question. Writes bench/results/lmms_eval.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
TASK = "spacemind_vsibench_local"


# The quick run's questions: one of each type per video. lmms-eval 0.7.3's vsibench aggregation
# raises KeyError unless all three relative-direction types are present.
QUICK_TYPES = ("object_counting", "object_rel_direction_easy", "object_rel_direction_medium",
               "object_rel_direction_hard")


def local_vsibench(root: Path, examples: Path = EXAMPLES, *, quick: bool = False) -> dict:
    """A task folder for lmms-eval's --include_path: its vsibench template (prompts, scoring) over
    `examples`' questions (`quick`: one of each QUICK_TYPES per video), the dataset a local JSON file, the
    videos linked where its vsibench looks ($HF_HOME/vsibench/<dataset>/<scene>.mp4). Returns the
    task folder, the environment lmms-eval must run in (HF_HOME, offline) and the questions."""
    import lmms_eval

    questions = [json.loads(line) for line in (examples / "questions.jsonl").read_text().splitlines() if line.strip()]
    if quick:
        first: dict[tuple, dict] = {}
        for q in questions:
            if q["question_type"] in QUICK_TYPES:
                first.setdefault((q["dataset"], q["scene_name"], q["question_type"]), q)
        questions = [q for q in questions if q in first.values()]
    data = root / "data" / "vsibench_local.json"
    data.parent.mkdir(parents=True)
    data.write_text(json.dumps(questions))
    template = Path(lmms_eval.__file__).parent / "tasks" / "vsibench" / "_default_template_yaml"
    tasks = root / "tasks"
    tasks.mkdir()
    (tasks / f"{TASK}.yaml").write_text(
        f"include: {template}\ntask: {TASK}\ndataset_path: json\n"
        f"dataset_kwargs:\n  data_files:\n    test: {data}\ntest_split: test\n"
    )
    hf_home = root / "hf"
    for dataset in sorted({q["dataset"] for q in questions}):
        (hf_home / "vsibench").mkdir(parents=True, exist_ok=True)
        (hf_home / "vsibench" / dataset).symlink_to((examples / "videos" / dataset).resolve())
    env = {"HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    return {"tasks": tasks, "env": env, "questions": questions}


def per_question_model(base):
    """The baseline: `base` (our lmms-eval model class) asked one question at a time, so each
    question's video is sampled, encoded, fused and prefilled again."""

    class PerQuestion(base):
        def generate_until(self, requests):
            return [self.runner.generate([r.args], self.task_dict)[0] for r in requests]

    return PerQuestion


def evaluate(model, tasks: Path) -> tuple[float, float, dict]:
    """(wall seconds, this process's CPU seconds, lmms-eval's output) of one simple_evaluate of
    the local task. CPU seconds are the steadier figure on a shared machine."""
    from lmms_eval.evaluator import simple_evaluate
    from lmms_eval.tasks import TaskManager

    manager = TaskManager("WARNING", include_path=str(tasks), include_defaults=False)
    t0, c0 = time.perf_counter(), time.process_time()
    out = simple_evaluate(model=model, tasks=[TASK], task_manager=manager, log_samples=True, verbosity="WARNING")
    return time.perf_counter() - t0, time.process_time() - c0, out


def predictions(out: dict) -> dict[str, str]:
    """doc_id -> the text lmms-eval scored."""
    found = {}
    for sample in out["samples"][TASK]:
        text = sample.get("filtered_resps", sample.get("resps"))
        while isinstance(text, (list, tuple)):
            text = text[0]
        found[str(sample["doc_id"])] = text
    return found


def run(quick: bool = False, num_frames: int | None = None, batch_size: int = 8) -> dict:
    from bench.common import machine_info

    with tempfile.TemporaryDirectory(prefix="bench-lmms-") as tmp:
        root = Path(tmp)
        setup = local_vsibench(root, quick=quick)
        os.environ.update(setup["env"])  # before lmms-eval's vsibench utils are imported (it reads HF_HOME then)
        from spacemind_cli.integrations.lmms_eval.model import SpaceMind
        from spacemind_cli.models.tiny import write_tiny_checkpoint

        ckpt = write_tiny_checkpoint(root / "ckpt", seed=0)
        args = f"checkpoint={ckpt},batch_size={batch_size}" + (f",num_frames={num_frames}" if num_frames else "")
        ours = SpaceMind.create_from_arg_string(args, {"batch_size": 1})
        baseline = per_question_model(SpaceMind).create_from_arg_string(args, {"batch_size": 1})
        evaluate(ours, setup["tasks"])  # warm-up: lmms-eval's first task build, torch's first kernels
        ours_s, ours_cpu, ours_out = evaluate(ours, setup["tasks"])
        base_s, base_cpu, base_out = evaluate(baseline, setup["tasks"])
        if predictions(ours_out) != predictions(base_out):
            raise SystemExit("bench.lmms_eval: the per-question baseline answered differently")
        ours_s, base_s, ours_cpu, base_cpu = (round(x, 3) for x in (ours_s, base_s, ours_cpu, base_cpu))
        videos = len({(q["dataset"], q["scene_name"]) for q in setup["questions"]})
        n = len(setup["questions"])
        return {
            "machine": machine_info(),
            "lmms_eval": __import__("importlib.metadata").metadata.version("lmms-eval"),
            "checkpoint": "tiny (random weights, `spacemind checkpoint tiny`)",
            "num_frames": ours.runner.settings.num_frames,
            "decode_batch_size": ours.batch_size,
            "questions": n,
            "videos": videos,
            "encodes": {"spacemind": videos, "per_question": n},
            "seconds": {"spacemind": ours_s, "per_question": base_s},
            "cpu_seconds": {"spacemind": ours_cpu, "per_question": base_cpu},
            "questions_per_s": {"spacemind": round(n / ours_s, 3), "per_question": round(n / base_s, 3)},
            "speedup": round(base_s / ours_s, 2),
            "speedup_cpu": round(base_cpu / ours_cpu, 2),
            "same_predictions": True,
            "vsibench_overall": ours_out["results"][TASK].get("vsibench_overall,none"),
        }


def markdown(r: dict) -> str:
    m = r["machine"]
    return (
        "# lmms-eval: `spacemind` (one encode per video) vs a per-question baseline\n\n"
        f"`python -m bench.lmms_eval` in lmms-eval {r['lmms_eval']}'s environment (`.ci/lmms_eval.sh`), "
        f"{m['cpu_count']} CPUs, torch {m['torch']} ({m['torch_threads']} threads), load average at start "
        f"{m['loadavg_start'][0]}. Both runs in one process through lmms-eval's `simple_evaluate`, after a warm-up "
        f"run: the {r['checkpoint']} checkpoint, {r['num_frames']} frames per video, decode batch "
        f"{r['decode_batch_size']}, {r['questions']} VSI-Bench questions over {r['videos']} bundled example videos "
        "(lmms-eval's own vsibench template, local data). The baseline is the same model asked one question at a "
        "time: each question's video sampled, encoded (VGGT + InternViT), fused and prefilled again, as lmms-eval "
        "models usually do. Both gave the same predictions.\n\n"
        "| model | encodes | seconds | CPU seconds | questions/s |\n|---|---:|---:|---:|---:|\n"
        f"| per question (baseline) | {r['encodes']['per_question']} | {r['seconds']['per_question']} | "
        f"{r['cpu_seconds']['per_question']} | {r['questions_per_s']['per_question']} |\n"
        f"| spacemind | {r['encodes']['spacemind']} | {r['seconds']['spacemind']} | {r['cpu_seconds']['spacemind']} | "
        f"{r['questions_per_s']['spacemind']} |\n\n"
        f"**Speed-up: {r['speedup']}x** in wall time, {r['speedup_cpu']}x in CPU time (baseline / spacemind, whole "
        "`simple_evaluate` calls, task building and scoring included; this machine is shared, so the CPU-time "
        "ratio is the steadier one). Date: " + m["date"] + ".\n"
    )


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="one question of each of 4 types per video (smoke run)")
    p.add_argument("--num-frames", type=int, default=None, help="default: the checkpoint's")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--out", default=str(REPO / "bench" / "results" / "lmms_eval.json"))
    a = p.parse_args(argv)
    result = run(a.quick, a.num_frames, a.batch_size)
    from bench.common import write_results

    write_results(a.out, result, markdown(result))


if __name__ == "__main__":
    main()
