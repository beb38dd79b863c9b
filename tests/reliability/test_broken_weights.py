"""Broken weight files (issue #22.2): a truncated VGGT or InternVL safetensors file, or a cut
fusion.safetensors, is a checkpoint error (exit 3) in one line naming the file, in every command
that opens weights, never a traceback."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from reliability_support import answer_args, cli, frames_scene, question, write_jsonl

BROKEN = {
    "vggt": ("vggt/model.safetensors", "truncated"),
    "internvl": ("internvl/model.safetensors", "truncated"),
    "fusion": ("fusion.safetensors", "invalid header length"),
}


@pytest.fixture
def job(tmp_path) -> tuple[Path, Path]:
    root = tmp_path / "scenes"
    frames_scene(root / "room", n=4, seed=5)
    return root, write_jsonl(tmp_path / "q.jsonl", [question(1, "room", ground_truth=2)])


def break_file(ckpt: Path, which: str) -> Path:
    path = ckpt / BROKEN[which][0]
    data = path.read_bytes()
    # a download cut short: the tensors' data ends early; a cut fusion file: inside its header
    path.write_bytes(data[:-100] if which != "fusion" else data[:20])
    return path


def commands(which: str, root: Path, q: Path, ckpt: Path, tmp: Path) -> dict[str, list]:
    cmds = {
        "answer": answer_args(root, q, ckpt, tmp / "a.jsonl"),
        "train": ["train", root, "--questions", q, "--checkpoint", ckpt, "--output", tmp / "run", "--executor",
                  "local", "--num-frames", "4", "--max-steps", "1", "--threads", "1"],
    }
    if which != "fusion":  # extract and the cache read the encoders only
        cmds["extract"] = ["extract", root, "--checkpoint", ckpt, "--cache", tmp / "cache", "--executor", "local",
                           "--num-frames", "4", "--threads", "1"]
        cmds["cache prune"] = ["cache", "prune", tmp / "warm-cache", "--keep-checkpoint", ckpt]
    return cmds


@pytest.mark.parametrize("which", sorted(BROKEN))
def test_a_broken_weight_file_is_exit_3_in_one_line_naming_it(which, tiny_ckpt, tmp_path, job):
    root, q = job
    # a cache that exists, for `cache prune` (made with the good checkpoint)
    res = cli("extract", root, "--checkpoint", tiny_ckpt, "--cache", tmp_path / "warm-cache", "--executor", "local",
              "--num-frames", "4", "--threads", "1")
    assert res.exit_code == 0, res
    ckpt = tmp_path / "ckpt"
    shutil.copytree(tiny_ckpt, ckpt)
    path = break_file(ckpt, which)
    for name, args in commands(which, root, q, ckpt, tmp_path).items():
        res = cli(*args)
        assert res.exit_code == 3, (name, str(res))
        assert res.exception is None and "Traceback" not in res.stderr, (name, str(res))
        assert res.stderr.lstrip().startswith("error:") and res.stderr.count("error:") == 1, (name, str(res))
        assert str(path) in "".join(res.stderr.split()), (name, str(res))  # wrapped at any width
        assert BROKEN[which][1] in " ".join(res.stderr.split()), (name, str(res))


def test_read_header_checks_offsets_against_the_file_size(tmp_path):
    from safetensors.torch import save_file

    from spacemind_cli.errors import CheckpointError
    from spacemind_cli.weights import load_weights, read_header

    path = tmp_path / "w.safetensors"
    save_file({"a": torch.arange(10, dtype=torch.float32), "b": torch.ones(3, dtype=torch.bfloat16)}, str(path))
    header, start = read_header(path)
    assert set(header) == {"a", "b"} and start == path.stat().st_size - 46
    assert torch.equal(load_weights(path)["a"], torch.arange(10, dtype=torch.float32))
    whole = path.read_bytes()
    for cut, reason in ((whole[:4], "shorter than the 8-byte header length"), (whole[:30], "invalid header length"),
                        (whole[:-1], "truncated"), (whole + b"\0", "bytes after the last tensor")):
        path.write_bytes(cut)
        with pytest.raises(CheckpointError, match=reason) as err:
            read_header(path)
        assert str(path) in str(err.value)
        with pytest.raises(CheckpointError, match=reason):
            load_weights(path)
