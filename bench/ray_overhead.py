"""What Ray costs on one machine, and where the time goes.

    python -m bench.ray_overhead            # 5 scenes x 120 questions (600), tiny checkpoint, ~3 min
    python -m bench.ray_overhead --quick    # 2 scenes x 6 questions (the test's smoke run)

Same process, same workload, same thread count, fresh output each run:

  local          `pipelines.answer(executor="local")`
  ray            `pipelines.answer(executor="ray")`, embedded Ray started and stopped inside the
                 timed call (what a user waits for); on one node this takes Ray's node route
                 (one model task reading its own scenes, results streamed back)
  ray_dataset    the same job through the Ray Data route clusters use (CPU load tasks, an actor
                 pool, frames through the object store), forced on this one node for comparison

For each Ray run: `ray_init_s` (starting the embedded Ray), `first_result_s` (job start to the
first answered scene: worker start, model load, the first scene), and the rest. The row-format
micro benchmark prices one full-size item (32 frames for VGGT at 518 px and InternViT at 448 px)
through a stage hop: the former format (frames packed into an npz blob, item / load / result as
JSON strings, parsed back at every hop) against the typed records (`jobs/records.py`: frames as
numpy arrays, one JSON string per small part).
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.common import machine_info, write_results

from . import workload

RESULTS = Path(__file__).resolve().parent / "results"


def _r(x, n=3):
    return None if x is None else round(float(x), n)


def timed_answer(wl, ckpt: Path, out: Path, executor: str, threads: int, force_dataset: bool = False) -> dict:
    """One answer job, timed from the call (Ray started inside it) to its return."""
    from pipelines import answer, ray_runtime

    first: dict = {}
    t0 = time.perf_counter()

    def progress(event):
        first.setdefault("s", time.perf_counter() - t0)

    real_nodes, real_connect = ray_runtime.alive_nodes, ray_runtime.connect
    init: dict = {}

    def connect(*a, **k):
        t = time.perf_counter()
        started = real_connect(*a, **k)
        init["s"] = time.perf_counter() - t
        return started

    ray_runtime.connect = connect
    if force_dataset:
        ray_runtime.alive_nodes = lambda: 2  # take the cluster route on this one node
    try:
        summary = answer(wl.scenes_root, output=out, questions=str(wl.questions), checkpoint=ckpt,
                         executor=executor, cpu_threads=threads, overwrite=True, progress=progress)
    finally:
        ray_runtime.alive_nodes, ray_runtime.connect = real_nodes, real_connect
    wall = time.perf_counter() - t0
    return {"wall_s": _r(wall), "questions_per_s": _r(summary["answered"] / wall), "answered": summary["answered"],
            "ray_init_s": _r(init.get("s")), "first_result_s": _r(first.get("s")),
            "after_first_s": _r(wall - first["s"]) if "s" in first else None}


def row_format(repeats: int = 5) -> dict:
    """One full-size item through a stage hop, former npz/JSON rows vs typed records."""
    from spacemind_cli.jobs.records import (
        ItemResult,
        LoadedItem,
        LoadInfo,
        QuestionRef,
        WorkItem,
    )
    from spacemind_cli.models.answering import Answer
    from spacemind_cli.models.preprocess import PreparedClip
    from spacemind_cli.scenes import SceneRef

    rng = np.random.default_rng(0)
    frames = PreparedClip(vggt=rng.integers(0, 255, (32, 518, 518, 3), dtype=np.uint8),
                          vit=rng.integers(0, 255, (32, 448, 448, 3), dtype=np.uint8))
    scene = SceneRef(key="synthetic/room_0000", path=Path("scenes/synthetic/room_0000.mp4"), kind="video",
                     dataset="synthetic", scene_name="room_0000")
    item = WorkItem("synthetic/room_0000#0", scene, [QuestionRef(i, str(i), "How many chairs? " * 8) for i in range(18)])
    info = LoadInfo(status="ok", key="k" * 32, meta={"frame_indices": list(range(32)), "num_frames": 32},
                    timing={"hash_s": 0.1})
    loaded = LoadedItem(item, info, frames)
    result = ItemResult(item.item_id, "ok", key="k" * 32, meta=info.meta,
                        answers=[Answer(i, "2", 0.1, 8) for i in range(18)])

    def former():
        buf = io.BytesIO()
        np.savez(buf, vggt=frames.vggt, vit=frames.vit)
        row = {"item": json.dumps(item.to_dict()), "load": json.dumps(vars(info)), "payload": buf.getvalue()}
        item2, load2 = json.loads(row["item"]), json.loads(row["load"])
        with np.load(io.BytesIO(row["payload"]), allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        out = {"item": json.dumps(item2), "result": json.dumps(result.to_dict())}
        return arrays, load2, json.loads(out["result"])

    def typed():
        back = LoadedItem.from_row(loaded.to_row())
        return back, ItemResult.from_row(result.to_row())

    def best(fn):
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        return min(times)

    f, t = best(former), best(typed)
    return {"frames_bytes": int(frames.vggt.nbytes + frames.vit.nbytes), "former_s": _r(f, 5), "typed_s": _r(t, 5),
            "former_vs_typed": _r(f / t, 1)}


def run(quick: bool, threads: int) -> dict:
    from spacemind_cli.models.tiny import write_tiny_checkpoint

    scenes, per_scene = (2, 6) if quick else (5, 120)
    machine = machine_info() | {"platform": platform.platform(), "threads": threads}
    with tempfile.TemporaryDirectory(prefix="spacemind-ray-bench-") as tmp:
        tmp = Path(tmp)
        wl = workload.build(tmp / "workload", n_scenes=scenes, per_scene=per_scene)
        ckpt = write_tiny_checkpoint(tmp / "ckpt", seed=0)
        runs = {
            "local": timed_answer(wl, ckpt, tmp / "local.jsonl", "local", threads),
            "ray": timed_answer(wl, ckpt, tmp / "ray.jsonl", "ray", threads),
            "ray_dataset": timed_answer(wl, ckpt, tmp / "ray_dataset.jsonl", "ray", threads, force_dataset=True),
        }
        same = [json.loads(a)["prediction"] == json.loads(b)["prediction"]
                for a, b in zip((tmp / "local.jsonl").read_text().splitlines(), (tmp / "ray.jsonl").read_text().splitlines())]
    local = runs["local"]
    return {
        "machine": machine,
        "workload": {"scenes": scenes, "questions": scenes * per_scene},
        "runs": runs,
        "ratios": {
            "ray_throughput_vs_local": _r(runs["ray"]["questions_per_s"] / local["questions_per_s"]),
            "ray_wall_vs_local": _r(runs["ray"]["wall_s"] / local["wall_s"]),
            "ray_dataset_throughput_vs_local": _r(runs["ray_dataset"]["questions_per_s"] / local["questions_per_s"]),
            "ray_dataset_wall_vs_local": _r(runs["ray_dataset"]["wall_s"] / local["wall_s"]),
        },
        "answers_equal_local": f"{sum(same)}/{len(same)}",
        "row_format": row_format(2 if quick else 5),
    }


def to_markdown(r: dict) -> str:
    runs, ratios = r["runs"], r["ratios"]
    lines = ["# Ray on one machine: cost and where the time goes", "",
             f"{r['machine']['date']}, {r['machine']['cpu_count']} CPUs, {r['machine']['threads']} torch thread(s); "
             f"{r['workload']['questions']} questions over {r['workload']['scenes']} scenes, tiny checkpoint.", "",
             "| run | wall s | questions/s | Ray start s | first result s | after the first s |",
             "|---|---:|---:|---:|---:|---:|"]
    for name, v in runs.items():
        lines.append(f"| {name} | {v['wall_s']} | {v['questions_per_s']} | {v['ray_init_s'] or ''} | "
                     f"{v['first_result_s']} | {v['after_first_s']} |")
    rf = r["row_format"]
    lines += ["",
              f"Ray (node route) vs local: {ratios['ray_throughput_vs_local']}x the throughput, "
              f"{ratios['ray_wall_vs_local']}x the wall time (goals: >= 0.8x, <= 1.25x). Ray Data route: "
              f"{ratios['ray_dataset_throughput_vs_local']}x, {ratios['ray_dataset_wall_vs_local']}x. "
              f"Answers equal to local: {r['answers_equal_local']}.", "",
              f"One full-size item ({rf['frames_bytes'] / 2**20:.0f} MiB of frames) through a stage hop: former "
              f"npz + JSON rows {rf['former_s'] * 1e3:.1f} ms, typed records {rf['typed_s'] * 1e3:.2f} ms "
              f"({rf['former_vs_typed']}x).", ""]
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=RESULTS / "ray_overhead.json")
    args = ap.parse_args(argv)
    r = run(args.quick, args.threads)
    write_results(args.out, r, to_markdown(r))


if __name__ == "__main__":
    main()
