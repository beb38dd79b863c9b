"""Big-job benchmark: does `spacemind answer` stay bounded in memory as the job grows?

Generates tiny scenes (4-frame 64x48 PNG folders) and a question file spread over them, runs
`python -m spacemind_cli answer --executor local` on each size as a fresh process, and records
the process's peak RSS (getrusage of that child via os.wait4, so nothing else is counted), its
wall time and throughput. A least-squares line through (questions, peak RSS) gives the slope:
how much memory each extra 1,000 questions (and 50 scenes) costs.

    python bench/bigjob.py                                  # 1,000/50, 4,000/200, 10,000/500
    python bench/bigjob.py --sizes 200x10,1000x50 --out /tmp/bigjob.json

Writes bench/results/bigjob.json by default. The tiny checkpoint is written once into the work
folder (random weights: answers are noise, which does not matter here).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent

QUESTION_TEMPLATES = [
    ("object_counting", "How many {o}(s) are in this room?", None),
    ("object_abs_distance", "Measuring from the closest point of each object, what is the distance between the {o} and the {p} (in meters)?", None),
    ("object_size_estimation", "What is the length of the longest dimension (length, width, or height) of the {o}, measured in centimeters?", None),
    ("room_size_estimation", "What is the size of this room (in square meters)? If multiple rooms are shown, estimate the size of the combined space.", None),
    ("object_rel_distance", "Measuring from the closest point of each object, which of these objects ({o}, {p}, lamp, bed) is the closest to the tv?", ["A. {o}", "B. {p}", "C. lamp", "D. bed"]),
    ("object_rel_direction_easy", "If I am standing by the {o} and facing the {p}, is the lamp to my left or right?", ["A. left", "B. right"]),
    ("route_planning", "You are a robot beginning at the {o} and facing the {p}. You want to navigate to the bed. Turn left or right?", ["A. Turn left", "B. Turn right", "C. go forward", "D. Turn back"]),
    ("obj_appearance_order", "What will be the first-time appearance order of the following categories in the video: {o}, {p}, lamp, bed?", ["A. {o}, {p}, lamp, bed", "B. {p}, {o}, bed, lamp", "C. lamp, bed, {o}, {p}", "D. bed, lamp, {p}, {o}"]),
]
OBJECTS = ["chair", "table", "sofa", "lamp", "bed", "tv", "plant", "cabinet"]


def make_scenes(root: Path, n_scenes: int, frames: int = 4, size=(64, 48), seed: int = 0) -> list[str]:
    """`n_scenes` frame folders ROOT/bench/scene_XXXXX/ of `frames` random PNGs each (kept if present)."""
    from PIL import Image

    names = []
    for s in range(n_scenes):
        name = f"scene_{s:05d}"
        folder = root / "bench" / name
        names.append(name)
        if folder.is_dir() and len(list(folder.glob("*.png"))) == frames:
            continue
        folder.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(seed + s)
        for f in range(frames):
            Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(folder / f"{f:03d}.png", compress_level=1)
    return names


def make_questions(path: Path, scenes: list[str], n_questions: int, seed: int = 0) -> Path:
    """`n_questions` VSI-Bench-style rows spread evenly over `scenes`, written in a shuffled
    order (as real files are: scene-interleaved), streamed to disk."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(n_questions)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        for k in order:
            k = int(k)
            qtype, text, options = QUESTION_TEMPLATES[k % len(QUESTION_TEMPLATES)]
            o, p = OBJECTS[k % len(OBJECTS)], OBJECTS[(k // 8 + 3) % len(OBJECTS)]
            row = {
                "id": k,
                "dataset": "bench",
                "scene_name": scenes[k % len(scenes)],
                "question_type": qtype,
                "question": text.format(o=o, p=p),
                "options": [x.format(o=o, p=p) for x in options] if options else None,
                "ground_truth": "A" if options else "2",
            }
            fh.write(json.dumps(row) + "\n")
    return path


def run_measured(cmd: list[str], env: dict | None = None, cwd: Path | None = None, timeout: float | None = None) -> dict:
    """Run `cmd`; its exit code, wall time and peak RSS (MiB, from wait4's rusage of that child)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # drain the pipes on threads so a chatty child never blocks; wait4 needs the raw pid
    import threading

    out: dict[str, bytes] = {}
    readers = [threading.Thread(target=lambda n, s: out.__setitem__(n, s.read()), args=(n, s), daemon=True)
               for n, s in (("stdout", proc.stdout), ("stderr", proc.stderr))]
    for r in readers:
        r.start()
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if deadline is not None and time.monotonic() > deadline:
            proc.kill()
            pid, status, usage = os.wait4(proc.pid, 0)
            break
        time.sleep(0.05)
    proc.returncode = os.waitstatus_to_exitcode(status)
    for r in readers:
        r.join()
    return {
        "exit_code": proc.returncode,
        "wall_s": round(time.perf_counter() - t0, 2),
        "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),  # Linux: KiB
        "stdout": out.get("stdout", b"").decode(errors="replace"),
        "stderr": out.get("stderr", b"").decode(errors="replace"),
    }


ANSWER_FLAGS = ["--executor", "local", "--num-frames", "4", "--max-new-tokens", "4", "--batch-size", "20", "--no-eval"]


def answer_command(root: Path, questions: Path, ckpt: Path, out: Path, extra=()) -> list[str]:
    return [sys.executable, "-m", "spacemind_cli", "-q", "answer", str(root), "--questions", str(questions),
            "--checkpoint", str(ckpt), "--output", str(out), "--overwrite", *ANSWER_FLAGS, *extra]


def bench_env() -> dict:
    env = dict(os.environ)
    env.pop("RAY_ADDRESS", None)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("SPACEMIND_HOME", str(Path(tempfile.gettempdir()) / "spacemind-bigjob-home"))
    return env


def check_output(out: Path, n_questions: int) -> dict:
    """Stream the answers file: row count, distinct ids, ids in file order (no row held)."""
    n, ids, last_ok = 0, set(), True
    with open(out, encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            n += 1
            ids.add(row["id"])
            last_ok = last_ok and isinstance(row.get("prediction"), str)
    return {"rows": n, "distinct_ids": len(ids), "complete": n == n_questions == len(ids) and last_ok}


def run_size(work: Path, ckpt: Path, n_questions: int, n_scenes: int, extra=(), timeout: float | None = None) -> dict:
    root = work / "scenes"
    t0 = time.perf_counter()
    scenes = make_scenes(root, n_scenes)
    qfile = make_questions(work / f"q_{n_questions}x{n_scenes}.jsonl", scenes, n_questions)
    gen_s = time.perf_counter() - t0
    out = work / f"answers_{n_questions}x{n_scenes}.jsonl"
    res = run_measured(answer_command(root, qfile, ckpt, out, extra), env=bench_env(), cwd=REPO, timeout=timeout)
    row = {"questions": n_questions, "scenes": n_scenes, "questions_file_bytes": qfile.stat().st_size,
           "generate_inputs_s": round(gen_s, 2), **{k: v for k, v in res.items() if k not in ("stdout", "stderr")}}
    if res["exit_code"] == 0:
        row.update(check_output(out, n_questions))
        summary = json.loads(out.with_name(out.name + ".summary.json").read_text())
        row["questions_per_s"] = summary.get("questions_per_s")
        row["output_bytes"] = out.stat().st_size
    else:
        row["stderr_tail"] = res["stderr"][-2000:]
    return row


def slope(rows: list[dict]) -> dict:
    """Least-squares peak RSS (MiB) per 1,000 questions across the sizes (scenes grow in step)."""
    x = np.array([r["questions"] / 1000 for r in rows], dtype=float)
    y = np.array([r["peak_rss_mib"] for r in rows], dtype=float)
    if len(rows) < 2:
        return {}
    a, b = np.polyfit(x, y, 1)
    return {"mib_per_1000_questions": round(float(a), 2), "intercept_mib": round(float(b), 1),
            "kib_per_question": round(float(a) * 1024 / 1000, 3),
            "growth_smallest_to_largest_mib": round(float(y[-1] - y[0]), 1),
            "growth_pct_of_smallest": round(float((y[-1] - y[0]) / y[0] * 100), 2)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1000x50,4000x200,10000x500", help="QUESTIONSxSCENES, comma separated")
    ap.add_argument("--work", type=Path, default=None, help="work folder (default: a temp folder, removed after)")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "bigjob.json")
    ap.add_argument("--checkpoint", type=Path, default=None, help="default: a tiny checkpoint written into the work folder")
    args = ap.parse_args(argv)
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]

    work = args.work or Path(tempfile.mkdtemp(prefix="spacemind-bigjob-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        ckpt = args.checkpoint
        if ckpt is None:
            ckpt = work / "tiny-ckpt"
            if not (ckpt / "config.json").exists():
                from spacemind_cli.models.tiny import write_tiny_checkpoint

                write_tiny_checkpoint(ckpt, seed=0)
        rows = []
        for q, s in sizes:
            row = run_size(work, ckpt, q, s)
            rows.append(row)
            print(json.dumps(row), flush=True)
        import torch

        result = {
            "benchmark": "spacemind answer, tiny checkpoint, --executor local, peak RSS of the whole process",
            "command": " ".join(["spacemind", "answer", "ROOT", "--questions", "Q", "--checkpoint", "TINY", "--output", "OUT",
                                 "--overwrite", *ANSWER_FLAGS]),
            "scenes": "frame folders of 4 random 64x48 PNG frames each; questions spread evenly, file order shuffled",
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                        "torch": torch.__version__},
            "date": time.strftime("%Y-%m-%d %H:%M:%S"),
            "sizes": rows,
            "slope": slope([r for r in rows if r["exit_code"] == 0]),
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps(result["slope"]))
        return 0 if all(r["exit_code"] == 0 and r.get("complete") for r in rows) else 1
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
