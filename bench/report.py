"""`spacemind report` at VSI-Bench size: page weight, build time cold vs warm, time to open.

    python -m bench.report                 # 288 scenes, 5,130 questions (~3 min on 2 cores, most of it making videos)
    python -m bench.report --quick         # 12 scenes, 210 questions (the test's smoke run)

Workload: the shared synthetic scenes of `bench/workload.py` (the bundled example rooms
re-encoded per variant: 48 frames of 320x240 each, distinct bytes per scene) and their VSI-Bench
questions, 18 per scene minus one for the first 54 scenes = 5,130 questions over 288 scenes, as
VSI-Bench. Two answer files are made by fixed rules (no model): A answers ~half right, B differs
from A on about two questions in three. Every row lists the 32 frames `spacemind answer`
samples from a 48-frame clip.

Measured, in one process:
* cold: an empty report folder and an empty fingerprint memo (a fresh SPACEMIND_HOME): every
  scene hashed and its 32 frames decoded and thumbnailed;
* warm: the same command again into the same folder, as a new process would run it (the
  in-process fingerprint memo is cleared; the on-disk one answers): nothing decoded;
* compare: A vs B into the same folder (thumbnails reused);
* ratios: cold / warm build time;
* page weight: index.html + assets, the thumbnails, what the first page needs (html + assets +
  the first page's thumbnails, an upper bound: images are lazy), and the zipped folder;
* in headless Chromium (when installed): time from navigation to the first page rendered (the
  page's `report-ready` mark), median of 3 loads; time to apply a filter and a search.

Writes bench/results/report.json and report.md (relative paths only).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from bench import workload
from bench.common import machine_info, write_results
from spacemind_cli.parsing import parse_answer
from spacemind_cli.scenes import Sampling, sample_indices

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
VSI_SCENES, VSI_QUESTIONS = 288, 5130
FRAMES = sample_indices(48, Sampling(32))  # what `spacemind answer` samples from a 48-frame clip


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def prediction(row: dict, rule: int) -> str:
    """rule 0: the truth; 1: the option's full text ("A. left", right by the official first-word
    rule) or +25 % for numbers (MRA 0.6); 2: the truth in a sentence the official rules cannot
    read ("The answer is A." / "about 1.3": first word not a letter / not a number); 3: a wrong
    letter / three times the number."""
    gt = row["ground_truth"]
    if row.get("options"):
        letters = [o[0] for o in row["options"]]
        if rule == 0:
            return gt
        if rule == 1:
            return row["options"][letters.index(gt)]
        if rule == 2:
            return f"The answer is {gt}."
        return next(x for x in letters if x != gt)
    g = float(gt)
    return [f"{g:g}", f"{g * 1.25:g}", f"about {g:g}", f"{g * 3:g}"][rule]


def answer_row(row: dict, text: str, run: str = "run0", frames: list[int] | None = None) -> dict:
    """`row` answered `text`, shaped like `spacemind answer`'s output rows (jobs/answer.py:
    output_row); `run` names its checkpoint and run key, `frames` the frames used (FRAMES)."""
    frames = list(frames if frames is not None else FRAMES)
    out = dict(row)
    out.update(
        prediction=text,
        answer=parse_answer(text, options=row.get("options"), question_type=row["question_type"]),
        scene_key=f"{row['dataset']}/{row['scene_name']}",
        checkpoint_id=f"ckpt-{run}",
        run_key=f"key-{run}",
        frames_used=len(frames),
        frame_indices=frames,
        timing={"generate_s": 0.1, "batch": 8},
        cache="none",
    )
    return out


def make_answers(rows: list[dict], path: Path, seed: int) -> Path:
    with open(path, "w") as fh:
        for i, r in enumerate(rows):
            text = prediction(r, (i * 7 + seed * 3 + i // 18) % 4)
            fh.write(json.dumps(answer_row(r, text, run=f"bench-{seed}")) + "\n")
    return path


def vsi_rows(names, n_questions: int) -> list[dict]:
    rows = workload.question_rows(names, workload.QUESTIONS_PER_SCENE)
    extra = len(rows) - n_questions  # drop the last question of the first `extra` scenes
    drop = {(s + 1) * workload.QUESTIONS_PER_SCENE - 1 for s in range(max(0, extra))}
    rows = [r for i, r in enumerate(rows) if i not in drop]
    for i, r in enumerate(rows):
        r["id"] = i
    return rows


def _build(label: str, answers: Path, scenes: Path, out: Path, compare: Path | None = None) -> dict:
    from spacemind_cli import fingerprint
    from spacemind_cli.report import build_report

    fingerprint._memory_memo.clear()  # as a new process: only the on-disk memo remembers
    t = time.perf_counter()
    summary = build_report(answers, scenes, out, compare=compare)
    wall = time.perf_counter() - t
    log(f"{label}: {wall:.2f} s, {summary['decoded']} thumbnails decoded, {summary['cached']} reused")
    return {"wall_s": round(wall, 3), "decoded": summary["decoded"], "cached": summary["cached"],
            "stages_s": summary["timing_s"], "summary": summary}  # fmt: skip


def _zip_bytes(folder: Path, tmp: Path) -> int:
    target = tmp / "report.zip"
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                zf.write(p, p.relative_to(folder))
    size = target.stat().st_size
    target.unlink()
    return size


def browser_timings(report: Path, loads: int = 3) -> dict:
    from bench.browser import Chromium, find_chromium

    if not find_chromium():
        return {"skipped": "no Chromium installed"}
    url = (report / "index.html").resolve().as_uri()
    ready = "document.body && document.body.dataset.ready === '1'"
    opened, filters, searches = [], [], []
    with Chromium() as browser:
        for _ in range(loads):
            with browser.open(url, wait=ready, timeout=60) as page:
                opened.append(page.js("performance.getEntriesByName('report-ready')[0].startTime"))
                filters.append(page.js(
                    "(() => { const el = document.querySelector('#f-res'), t = performance.now(); el.value = 'wrong';"
                    " el.dispatchEvent(new Event('change')); return performance.now() - t; })()"))
                searches.append(page.js(
                    "(() => { const el = document.querySelector('#f-search'), t = performance.now(); el.value = 'table chair';"
                    " el.dispatchEvent(new Event('input')); return performance.now() - t; })()"))
                dom = page.js("({nodes: document.getElementsByTagName('*').length, cards: document.querySelectorAll('article.q').length,"
                              " images: document.querySelectorAll('#list img').length})")
    return {
        "open_ms_median": round(statistics.median(opened), 1),
        "open_ms": [round(x, 1) for x in opened],
        "filter_ms_median": round(statistics.median(filters), 1),
        "search_ms_median": round(statistics.median(searches), 1),
        "dom_after_search": dom,
        "how": "headless Chromium, 1280x900; open = navigation start to the first page rendered (performance mark)",
    }


def markdown(res: dict) -> str:
    w, c, wm, cmp_ = res["workload"], res["cold"], res["warm"], res["compare"]
    b = res["bytes"]

    def mb(x: int) -> str:
        return f"{x / 1e6:.2f} MB"

    lines = [
        "# spacemind report benchmark",
        "",
        f"{res['machine']['date']}, {res['machine']['cpu_count']} CPUs ({res['machine']['machine']}), Python "
        f"{res['machine']['python']}; load average {res['machine']['loadavg_start']} (shared machine: times are noisy).",
        f"Workload: {w['questions']} questions over {w['scenes']} scenes ({w['how']}).",
        "",
        "| build | wall s | thumbnails decoded | reused | hash + load + score s | thumbnails s | write s |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in (("cold (empty folder and memo)", c), ("warm (same folder)", wm), ("warm, --compare B", cmp_)):
        s = r["stages_s"]
        lines.append(f"| {name} | {r['wall_s']:.2f} | {r['decoded']} | {r['cached']} | {s['load_and_score']:.2f} | "
                     f"{s['thumbnails']:.2f} | {s['write']:.2f} |")
    lines += [
        "",
        f"Cold / warm: **{res['ratios']['cold_over_warm']}x**. Warm builds decode nothing "
        f"({wm['decoded']} thumbnails decoded).",
        "",
        "| page weight | bytes |",
        "|---|---:|",
        f"| index.html (overview + every question as JSON) | {mb(b['index_html'])} |",
        f"| index.html, gzip | {mb(b['index_html_gzip'])} |",
        f"| page: index.html + assets (app.js, style.css, plot) | {mb(b['page'])} |",
        f"| thumbnails ({b['thumbnail_files']} files, 160 px JPEG) | {mb(b['thumbnails'])} |",
        f"| first page: page + the first {res['first_page']['questions']} questions' "
        f"{res['first_page']['thumbnails']} thumbnails (upper bound, images are lazy) | {mb(b['first_page'])} |",
        f"| whole folder zipped | {mb(b['zip'])} |",
        f"| compare report (A vs B): index.html | {mb(b['compare_index_html'])} |",
    ]
    br = res["browser"]
    if "skipped" not in br:
        lines += [
            "",
            f"Headless Chromium: first page rendered **{br['open_ms_median']} ms** after navigation (median of "
            f"{len(br['open_ms'])}: {br['open_ms']}); a filter {br['filter_ms_median']} ms, a search "
            f"{br['search_ms_median']} ms (all {w['questions']} questions filtered, one page re-rendered).",
        ]
    else:
        lines += ["", f"Browser timings skipped: {br['skipped']}."]
    lines += ["", "Synthetic scenes are 48-frame 320x240 clips: real VSI-Bench videos are longer and larger, so their cold "
              "decode costs more per scene (seek + decode to 32 frames); warm builds decode nothing either way."]
    return "\n".join(lines) + "\n"


def run(n_scenes: int, n_questions: int, workdir: Path, browser: bool = True) -> dict:
    os.environ["SPACEMIND_HOME"] = str(workdir / "home")  # a fresh fingerprint memo: cold means cold
    machine = machine_info()
    t = time.perf_counter()
    names = workload.scene_names(n_scenes)
    workload.write_scenes(workdir / "scenes", n_scenes)
    rows = vsi_rows(names, n_questions)
    a = make_answers(rows, workdir / "a.jsonl", seed=0)
    b = make_answers(rows, workdir / "b.jsonl", seed=1)
    log(f"workload: {len(rows)} questions over {n_scenes} scenes in {time.perf_counter() - t:.1f} s")

    # Warm-up outside the measurement: imports (eval, matplotlib, PyAV, Pillow's JPEG codec) are a
    # once-per-process cost that a cold *report* should not be charged with.
    from spacemind_cli.report import build_report

    build_report(a, None, workdir / "warmup")
    import av  # noqa: F401
    from PIL import JpegImagePlugin  # noqa: F401

    out = workdir / "report"
    cold = _build("cold", a, workdir / "scenes", out)
    warm = _build("warm", a, workdir / "scenes", out)
    cmp_out = workdir / "report-compare"
    shutil.copytree(out / "thumbs", cmp_out / "thumbs")  # a compare report built beside it, thumbs reused
    (cmp_out / "report.json").write_text((out / "report.json").read_text())
    compare = _build("compare", a, workdir / "scenes", cmp_out, compare=b)
    assert warm["decoded"] == 0 and compare["decoded"] == 0, "a warm build decoded frames"

    s = warm["summary"]
    thumbs = sorted((out / "thumbs").glob("*/*.jpg"))
    res = {
        "machine": machine,
        "workload": {
            "scenes": n_scenes,
            "questions": len(rows),
            "frames_per_scene": 32,
            "how": "bench/workload.py scenes (48-frame 320x240 mp4 each, distinct bytes), VSI-Bench question types, "
                   "rule-made predictions (no model), 32 sampled frames per scene",
        },
        "cold": {k: v for k, v in cold.items() if k != "summary"},
        "warm": {k: v for k, v in warm.items() if k != "summary"},
        "compare": {k: v for k, v in compare.items() if k != "summary"},
        "ratios": {"cold_over_warm": float(f"{cold['wall_s'] / warm['wall_s']:.3g}")},
        "first_page": s["first_page"],
        "bytes": {
            **s["bytes"],
            "index_html_gzip": len(gzip.compress((out / "index.html").read_bytes())),
            "thumbnail_files": len(thumbs),
            "zip": _zip_bytes(out, workdir),
            "compare_index_html": compare["summary"]["bytes"]["index_html"],
        },
        "browser": browser_timings(out) if browser else {"skipped": "--no-browser"},
    }
    if "skipped" not in res["browser"]:
        log(f"browser: first page in {res['browser']['open_ms_median']} ms")
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="12 scenes, ~210 questions")
    ap.add_argument("--out", type=Path, default=RESULTS / "report.json", help="results JSON (and .md beside it)")
    ap.add_argument("--workdir", type=Path, default=None, help="keep the scenes and reports here (default: a temp dir, removed)")
    ap.add_argument("--no-browser", action="store_true")
    args = ap.parse_args(argv)
    n_scenes = 12 if args.quick else VSI_SCENES
    n_questions = 12 * 17 + 6 if args.quick else VSI_QUESTIONS
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="spacemind-bench-report-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        res = run(n_scenes, n_questions, workdir, browser=not args.no_browser)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    write_results(args.out, res, markdown(res))
    log(f"wrote {args.out} and {args.out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
