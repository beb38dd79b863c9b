"""The benchmarks' shared VSI-Bench-like workload: distinct scenes, ~18 questions each.

Two forms of the same workload:

* on disk, for the job pipelines (`bench/cpu.py`): `build(out_dir, n_scenes, per_scene)` writes
  ``<out>/scenes/synthetic/<name>.mp4`` and ``<out>/questions.jsonl`` (VSI-Bench rows) and returns
  a `Workload`. The scenes are the 4 bundled example rooms re-encoded once per variant with a
  per-variant brightness offset (``room_0002_v03``: room 2, +3*BRIGHTNESS_STEP grey levels), so
  every scene has its own bytes and its own content-addressed cache entry (plain copies would share
  one). Each scene gets its base room's VSI-Bench questions (17 per room in the bundled set),
  cycled to `per_scene`.
* in memory, for the GPU benchmark (`bench/gpu/`, no files, no video codec): `synthetic_frames`
  (seeded smooth RGB frames) and `scene_prompts` (the same VSI-Bench prompts, built with the
  library's `build_prompt`).

Nothing heavy is imported at module level (the GPU machine has no Ray; `av` is only needed to
write the videos).
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
EXAMPLE_QUESTIONS = EXAMPLES / "questions.jsonl"
EXAMPLE_VIDEOS = EXAMPLES / "videos" / "synthetic"
DATASET = "synthetic"
BRIGHTNESS_STEP = 3  # grey levels per variant: invisible to the eye, new bytes and a new cache key
QUESTIONS_PER_SCENE = 18  # VSI-Bench: 5130 questions over 288 scenes = 17.8 per scene


@dataclass
class Workload:
    root: Path  # the folder holding scenes/ and questions.jsonl
    scenes_root: Path
    questions: Path
    scenes: list[str]
    rows: list[dict] = field(default_factory=list)
    how: str = ""

    @property
    def n_questions(self) -> int:
        return len(self.rows)

    def describe(self) -> dict:
        return {
            "scenes": len(self.scenes),
            "questions": self.n_questions,
            "questions_per_scene": round(self.n_questions / max(1, len(self.scenes)), 2),
            "how": self.how,
        }


def example_rows() -> list[dict]:
    return [json.loads(line) for line in EXAMPLE_QUESTIONS.read_text().splitlines() if line.strip()]


def _rows_by_scene() -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for r in example_rows():
        out.setdefault(r["scene_name"], []).append(r)
    return out


def make_examples_module():
    """examples/make_examples.py, loaded as a module (it is a script, not part of a package)."""
    spec = importlib.util.spec_from_file_location("_spacemind_make_examples", EXAMPLES / "make_examples.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def scene_names(n_scenes: int) -> list[tuple[str, str, int]]:
    """(name, base example room, variant) for n scenes: room_0000_v00, room_0001_v00, ..."""
    bases = sorted(p.stem for p in EXAMPLE_VIDEOS.glob("*.mp4"))
    if not bases:
        raise FileNotFoundError(f"no example videos under {EXAMPLE_VIDEOS}")
    return [(f"{bases[i % len(bases)]}_v{i // len(bases):02d}", bases[i % len(bases)], i // len(bases)) for i in range(n_scenes)]


def write_scenes(scenes_dir: Path, n_scenes: int) -> list[str]:
    """Re-encode the example videos into n distinct scenes (brightness offset per variant)."""
    mk = make_examples_module()
    codec = mk.pick_codec()
    out_dir = scenes_dir / DATASET
    out_dir.mkdir(parents=True, exist_ok=True)
    decoded: dict[str, list[np.ndarray]] = {}
    names = []
    for name, base, variant in scene_names(n_scenes):
        target = out_dir / f"{name}.mp4"
        names.append(name)
        if target.exists():
            continue
        if base not in decoded:
            decoded[base] = mk.decode_video(EXAMPLE_VIDEOS / f"{base}.mp4")
        frames = decoded[base]
        if variant:
            delta = BRIGHTNESS_STEP * variant
            frames = [np.clip(f.astype(np.int16) + delta, 0, 255).astype(np.uint8) for f in frames]
            mk.write_video(target, frames, codec, keep_same=False)
        else:  # variant 0 is the bundled video itself
            shutil.copyfile(EXAMPLE_VIDEOS / f"{base}.mp4", target)
    return names


def question_rows(names: list[tuple[str, str, int]], per_scene: int) -> list[dict]:
    """VSI-Bench rows: each scene gets its base room's questions, cycled to per_scene."""
    by_scene = _rows_by_scene()
    rows = []
    for name, base, _ in names:
        pool = by_scene[base]
        for k in range(per_scene):
            src = pool[k % len(pool)]
            rows.append({**src, "id": len(rows), "scene_name": name, "dataset": DATASET})
    return rows


def build(out_dir: str | Path, n_scenes: int = 20, per_scene: int = QUESTIONS_PER_SCENE) -> Workload:
    out = Path(out_dir)
    scenes_root = out / "scenes"
    names = scene_names(n_scenes)
    write_scenes(scenes_root, n_scenes)
    rows = question_rows(names, per_scene)
    qpath = out / "questions.jsonl"
    qpath.write_text("".join(json.dumps(r) + "\n" for r in rows))
    how = (
        f"{n_scenes} scenes: the {len(set(b for _, b, _ in names))} bundled example videos (48 frames 320x240) "
        f"re-encoded per variant with +{BRIGHTNESS_STEP}*variant grey levels (distinct bytes, distinct cache "
        f"keys); {per_scene} VSI-Bench questions per scene from examples/questions.jsonl (the base room's, cycled)"
    )
    return Workload(root=out, scenes_root=scenes_root, questions=qpath, scenes=[n for n, _, _ in names], rows=rows, how=how)


# ---------------------------------------------------------------- in memory (GPU script)


def scene_rows(scene_index: int, per_scene: int = QUESTIONS_PER_SCENE) -> list[dict]:
    """The VSI-Bench rows (question, options, ground truth) of one in-memory scene."""
    rows = example_rows()
    start = (scene_index * per_scene) % len(rows)
    return [rows[(start + k) % len(rows)] for k in range(per_scene)]


def scene_prompts(scene_index: int, per_scene: int = QUESTIONS_PER_SCENE) -> list[str]:
    """VSI-Bench prompts (the library's own prompt builder) for one in-memory scene."""
    from spacemind_cli.prompts import build_prompt

    return [build_prompt(row) for row in scene_rows(scene_index, per_scene)]


def synthetic_frames(n_frames: int, height: int = 480, width: int = 640, seed: int = 0) -> list[np.ndarray]:
    """n seeded, smooth RGB uint8 frames (a panning low-frequency pattern: cheap, compressible
    like real video, different per seed). Content does not change the models' cost."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, size=(9, 13 + n_frames, 3)).astype(np.float32)
    ys = np.linspace(0, coarse.shape[0] - 1, height)
    xs = np.linspace(0, 12, width)
    y0 = np.clip(ys.astype(int), 0, coarse.shape[0] - 2)
    fy = (ys - y0)[:, None, None]
    frames = []
    for t in range(n_frames):
        x = xs + t
        x0 = np.clip(x.astype(int), 0, coarse.shape[1] - 2)
        fx = (x - x0)[None, :, None]
        a = coarse[y0][:, x0] * (1 - fx) + coarse[y0][:, x0 + 1] * fx
        b = coarse[y0 + 1][:, x0] * (1 - fx) + coarse[y0 + 1][:, x0 + 1] * fx
        frames.append(np.ascontiguousarray((a * (1 - fy) + b * fy).astype(np.uint8)))
    return frames
