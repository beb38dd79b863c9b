"""Helpers of the reliability suite: scene generators, CLI runners, output comparison.

Every test here goes through `spacemind answer` / `spacemind extract` / `spacemind cache` as a
user would: in-process through the Typer app (fast: the model libraries are imported once per
session) or as a real `python -m spacemind_cli` subprocess where a process must die (kill -9)
or its peak memory be measured. The tiny checkpoint (`tiny_ckpt`, tests/conftest.py) is the model.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
VOLATILE = ("timing", "cache")  # wall-clock and cache provenance differ between equivalent runs

# Small, fast job settings every reliability run uses unless a test says otherwise. Equal
# settings give equal run keys, so a rerun resumes what an interrupted run wrote.
FAST = ("--executor", "local", "--num-frames", "4", "--max-new-tokens", "4", "--batch-size", "4", "--threads", "1")


# ---------------------------------------------------------------------------- files


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


def write_jsonl(path: Path, rows: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def stable(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in VOLATILE} for r in rows]


def frames_scene(folder: Path, n: int = 4, size=(64, 48), seed: int = 0, ext: str = ".png") -> Path:
    """A frame folder of `n` random RGB frames (width, height = size)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        arr = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        Image.fromarray(arr).save(folder / f"{i:03d}{ext}")
    return folder


def mp4_scene(path: Path, n: int = 6, size=(64, 48), seed: int = 0) -> Path:
    """A short H.264 (or MPEG-4 part 2) video of `n` random frames."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    rng = np.random.default_rng(seed)
    with av.open(str(path), mode="w", format="mp4") as container:
        stream = container.add_stream(codec, rate=10)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        stream.codec_context.thread_count = 1
        for i in range(n):
            img = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuv420p")
            frame.pts = i
            frame.time_base = Fraction(1, 10)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def question(qid, scene: str | None = None, text: str = "How many chair(s) are in this room?", **extra) -> dict:
    row = {"id": qid, "question_type": "object_counting", "question": text}
    if scene is not None:
        row["scene"] = scene
    row.update(extra)
    return row


def temp_files(*dirs: Path) -> list[Path]:
    """Hidden temp files (`.*.tmp`) anywhere under the given folders."""
    out = []
    for d in dirs:
        if Path(d).exists():
            out += [p for p in Path(d).rglob("*") if p.name.startswith(".") and p.name.endswith(".tmp")]
    return out


# ---------------------------------------------------------------------------- running the CLI


@dataclass
class Result:
    exit_code: int
    stdout: str
    stderr: str
    exception: BaseException | None = None

    def __str__(self) -> str:  # shown by pytest when an assertion on it fails
        return f"exit {self.exit_code}\n--- stdout\n{self.stdout[-3000:]}\n--- stderr\n{self.stderr[-3000:]}"


class _CurrentStderr:
    """A stream that writes to whatever sys.stderr is at the time (CliRunner swaps it per call)."""

    def write(self, text):
        return sys.stderr.write(text)

    def flush(self):
        sys.stderr.flush()


def _install_log_handler() -> None:
    # The CLI installs its stderr log handler once per process, bound to the sys.stderr of the
    # moment; under CliRunner that stream is closed after the first call. Pre-install one that
    # follows sys.stderr, marked as the CLI's so it does not add another.
    root = logging.getLogger()
    if not any(getattr(h, "_spacemind", False) for h in root.handlers):
        handler = logging.StreamHandler(_CurrentStderr())
        handler.setFormatter(logging.Formatter("%(levelname).1s %(name)s: %(message)s"))
        handler._spacemind = True  # type: ignore[attr-defined]
        root.addHandler(handler)


def cli(*args) -> Result:
    """`spacemind ARGS...` in this process (the real Typer app, exit codes and messages)."""
    from typer.testing import CliRunner

    from spacemind_cli.cli.main import app

    _install_log_handler()
    res = CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=True)
    exc = res.exception if res.exception is not None and not isinstance(res.exception, SystemExit) else None
    stderr = res.stderr
    if exc is not None:  # an uncaught exception is a bug: show it in assertion messages
        import traceback

        stderr += "\n" + "".join(traceback.format_exception(exc))
    return Result(res.exit_code, res.stdout, stderr, exc)


def cli_env() -> dict:
    env = dict(os.environ)
    env.pop("RAY_ADDRESS", None)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def spacemind_cmd(*args) -> list[str]:
    return [sys.executable, "-m", "spacemind_cli", *[str(a) for a in args]]


def cli_proc(*args, timeout: float = 300, env: dict | None = None) -> Result:
    """`python -m spacemind_cli ARGS...` as a real subprocess."""
    proc = subprocess.run(spacemind_cmd(*args), capture_output=True, text=True, timeout=timeout,
                          env=env or cli_env(), cwd=REPO)
    return Result(proc.returncode, proc.stdout, proc.stderr)


def answer_args(root, questions, ckpt, output, *extra) -> list:
    return ["answer", root, "--questions", questions, "--checkpoint", ckpt, "--output", output, *FAST, *extra]


