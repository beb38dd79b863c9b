"""Does training generalise? The tiny model trained on some synthetic rooms, scored on unseen ones.

    python -m bench.generalization                 # 48 rooms: 36 to train on, 12 held out (~10 min on 2 cores)
    python -m bench.generalization --quick         # 6 rooms (the test's smoke run)

Rooms come from `examples/make_examples.py --random-rooms` (boxes for furniture, a camera sweeping
the room, VSI-Bench questions whose ground truths are computed from the known geometry). The tiny
random-weight checkpoint (seed 0) is trained with `spacemind train` on the training rooms'
questions, then the held-out rooms' questions are answered by the trained and the untrained
checkpoint and scored by `spacemind eval` (official VSI-Bench rules), beside two baselines that
never look at a frame: chance on the multiple-choice types (1 / options), and, for numeric types,
the training set's mean answer per type. Whatever the scores are, they are written down as
measured: a toy model with random toy encoders is not expected to learn much geometry from a few
dozen rooms; the figure says how far it gets.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from bench.common import write_results
from bench.workload import make_examples_module

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"


def blind_baselines(train_rows: list[dict], eval_rows: list[dict]) -> list[dict]:
    """Predictions that never look at a frame: the MC option at chance (expected score, spread
    over the options) is scored by `chance_mc`; numeric types get the training mean of their type."""
    means: dict[str, float] = {}
    for qtype in {r["question_type"] for r in train_rows if not r.get("options")}:
        values = [float(r["ground_truth"]) for r in train_rows if r["question_type"] == qtype]
        means[qtype] = statistics.fmean(values)
    out = []
    for r in eval_rows:
        if r.get("options"):
            continue
        mean = means.get(r["question_type"])
        if mean is not None:
            out.append({**r, "prediction": f"{mean:.2f}"})
    return out


def chance_mc(eval_rows: list[dict]) -> float | None:
    mc = [r for r in eval_rows if r.get("options")]
    return 100 * statistics.fmean(1 / len(r["options"]) for r in mc) if mc else None


def run(rooms: int, held_out: int, epochs: int, frames: int, seed: int, work: Path) -> dict:
    from pipelines import answer, train
    from spacemind_cli.eval import evaluate_file, evaluate_records
    from spacemind_cli.eval.records import Record
    from spacemind_cli.models.tiny import write_tiny_checkpoint
    from spacemind_cli.training.config import TrainConfig

    t0 = time.perf_counter()
    mk = make_examples_module()
    mk.generate(work / "rooms", quiet=True, scenes=mk.random_scenes(rooms, seed))
    render_s = time.perf_counter() - t0
    rows = [json.loads(line) for line in (work / "rooms" / "questions.jsonl").read_text().splitlines()]
    names = sorted({r["scene_name"] for r in rows})
    test_rooms = set(names[-held_out:])
    train_rows = [r for r in rows if r["scene_name"] not in test_rooms]
    eval_rows = [r for r in rows if r["scene_name"] in test_rooms]
    for path, data in (("train.jsonl", train_rows), ("heldout.jsonl", eval_rows)):
        (work / path).write_text("".join(json.dumps(r) + "\n" for r in data))
    base = write_tiny_checkpoint(work / "tiny", seed=0)
    scenes = work / "rooms" / "videos"

    t0 = time.perf_counter()
    config = TrainConfig(epochs=epochs, lr=1e-3, batch_size=16, seed=seed, save_every=10**6)
    summary = train(scenes, questions=work / "train.jsonl", output=work / "trained", checkpoint=base, config=config,
                    cache=work / "cache", executor="local", num_frames=frames, eval_questions=work / "heldout.jsonl")
    train_s = time.perf_counter() - t0

    scores = {}
    for label, ckpt in (("trained", work / "trained"), ("untrained", base)):
        out = work / f"{label}.jsonl"
        answer(scenes, output=out, questions=str(work / "heldout.jsonl"), checkpoint=ckpt, cache=work / "cache",
               executor="local", num_frames=frames)
        result = evaluate_file(out)
        scores[label] = {s.column: s.value for s in result.scores}
    blind = blind_baselines(train_rows, eval_rows)
    if blind:
        recs = [Record(i + 1, r, r["prediction"], None, "answers", f"blind:{i + 1}") for i, r in enumerate(blind)]
        scores["blind_numeric_mean"] = {s.column: s.value for s in evaluate_records(recs, "vsibench").scores}
    log = [json.loads(line) for line in (work / "trained" / "training" / "log.jsonl").read_text().splitlines()]
    return {
        "rooms": rooms, "train_rooms": rooms - held_out, "held_out_rooms": held_out,
        "train_questions": len(train_rows), "held_out_questions": len(eval_rows),
        "frames": frames, "epochs": epochs, "steps": summary.get("steps"),
        "first_loss": log[0]["loss"], "last_loss": log[-1]["loss"],
        "scores": scores, "chance_multiple_choice": chance_mc(eval_rows),
        "render_s": round(render_s, 1), "train_s": round(train_s, 1),
        "what": "tiny random-weight checkpoint (seed 0) trained with spacemind train on synthetic rooms; held-out "
                "rooms scored with spacemind eval (official VSI-Bench rules)",
    }


def to_markdown(r: dict) -> str:
    cols = sorted({c for s in r["scores"].values() for c in s})
    cols = ["Avg."] + [c for c in cols if c != "Avg."]
    lines = [
        "# Generalisation of the tiny model: trained rooms -> unseen rooms",
        "",
        f"{r['train_rooms']} rooms ({r['train_questions']} questions) to train on, {r['held_out_rooms']} held out "
        f"({r['held_out_questions']} questions); {r['frames']} frames, {r['epochs']} epochs ({r['steps']} steps), "
        f"training loss {r['first_loss']:.2f} -> {r['last_loss']:.2f}; rendering {r['render_s']} s, training {r['train_s']} s.",
        "",
        "| run | " + " | ".join(cols) + " |",
        "|---|" + "---|" * len(cols),
    ]
    for label, s in r["scores"].items():
        lines.append(f"| {label} | " + " | ".join("" if s.get(c) is None else f"{s[c]:.1f}" for c in cols) + " |")
    if r["chance_multiple_choice"] is not None:
        lines += ["", f"Chance on the multiple-choice questions: {r['chance_multiple_choice']:.1f}. "
                      "`blind_numeric_mean` answers every numeric question with the training mean of its type."]
    lines += ["", "Measured on this 2-core CPU; a toy model with random toy encoders, not SpaceMind's weights.", ""]
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--rooms", type=int, default=48)
    ap.add_argument("--held-out", type=int, default=12)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=RESULTS / "generalization.json")
    args = ap.parse_args(argv)
    if args.quick:
        args.rooms, args.held_out, args.epochs, args.frames = 6, 2, 2, 4
    with tempfile.TemporaryDirectory(prefix="spacemind-gen-") as tmp:
        r = run(args.rooms, args.held_out, args.epochs, args.frames, args.seed, Path(tmp))
    write_results(args.out, r, to_markdown(r))


if __name__ == "__main__":
    main()
