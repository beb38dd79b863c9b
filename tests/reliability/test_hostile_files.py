"""4. Hostile files: checkpoints never unpickle arbitrary objects, a config.json cannot make us
read outside its folder unless the user trusts that path, and file names are only ever data
(no shell is invoked with them, whatever they contain).
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from reliability_support import REPO, answer_args, cli, cli_proc, frames_scene, question, read_jsonl, write_jsonl


class _Payload:
    """Unpickling this runs a shell command (what a malicious checkpoint would do)."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch '{self.marker}'",)


class _EvalPayload:
    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return eval, (f"open({self.marker!r}, 'w').close()",)


@pytest.fixture
def ckpt_copy(tiny_ckpt, tmp_path) -> Path:
    dst = tmp_path / "ckpt"
    shutil.copytree(tiny_ckpt, dst)
    return dst


@pytest.fixture
def small_job(tmp_path) -> tuple[Path, Path]:
    root = tmp_path / "scenes"
    frames_scene(root / "room", n=4, seed=5)
    return root, write_jsonl(tmp_path / "q.jsonl", [question(1, "room"), question(2, "room", "What colour is it?")])


def write_payload_pt(path: Path, payload, fmt: str) -> None:
    state = {"aggregator.patch_embed.proj.weight": torch.zeros(2), "evil": payload}
    if fmt == "zip":
        torch.save(state, path)
    elif fmt == "legacy":
        torch.save(state, path, _use_new_zipfile_serialization=False)
    else:  # a plain pickle file named model.pt
        path.write_bytes(pickle.dumps(state))


# ------------------------------------------------------------------------------ pickles


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("fmt", ["zip", "legacy", "raw-pickle"])
@pytest.mark.parametrize("payload_cls", [_Payload, _EvalPayload], ids=["os.system", "eval"])
def test_malicious_vggt_model_pt_is_refused_and_never_run(tmp_path, ckpt_copy, small_job, fmt, payload_cls):
    marker = tmp_path / "PWNED"
    (ckpt_copy / "vggt" / "model.safetensors").unlink()
    weights = ckpt_copy / "vggt" / "model.pt"
    write_payload_pt(weights, payload_cls(marker), fmt)
    # the payload is real: a plain torch.load / pickle.load would run it
    root, q = small_job
    for args in (answer_args(root, q, ckpt_copy, tmp_path / "a.jsonl"),
                 ["extract", root, "--checkpoint", ckpt_copy, "--cache", tmp_path / "cache", "--executor", "local"]):
        res = cli(*args)
        assert res.exit_code == 3, res
        msg = " ".join(res.stderr.split())
        assert f"{weights}: unreadable or unsafe torch checkpoint" in msg, msg
        assert not marker.exists(), "the pickled payload ran"
    assert not (tmp_path / "a.jsonl").exists()
    inspect = cli("checkpoint", "inspect", ckpt_copy)  # reads headers only: must not run it either
    assert inspect.exception is None, inspect
    assert not marker.exists(), "the pickled payload ran during inspect"


def test_the_payload_would_run_if_unpickled(tmp_path):
    """Control for the test above: the same file under an unsafe load does run its payload."""
    marker = tmp_path / "PWNED"
    path = tmp_path / "model.pt"
    write_payload_pt(path, _Payload(marker), "zip")
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_internvl_folder_with_only_pytorch_model_bin_is_refused(tmp_path, ckpt_copy, small_job):
    marker = tmp_path / "PWNED"
    internvl = ckpt_copy / "internvl"
    (internvl / "model.safetensors").unlink()
    torch.save({"evil": _Payload(marker)}, internvl / "pytorch_model.bin")
    root, q = small_job
    for args in (answer_args(root, q, ckpt_copy, tmp_path / "a.jsonl"),
                 ["extract", root, "--checkpoint", ckpt_copy, "--cache", tmp_path / "cache", "--executor", "local"]):
        res = cli(*args)
        assert res.exit_code == 3, res
        assert f"InternVL folder {internvl} holds no .safetensors weights" in " ".join(res.stderr.split())
    assert not marker.exists()


def test_lora_adapter_given_as_a_pickle_is_refused(tmp_path, ckpt_copy, small_job):
    marker = tmp_path / "PWNED"
    lora = ckpt_copy / "lora"
    lora.mkdir()
    (lora / "adapter_config.json").write_text(json.dumps({"r": 4, "lora_alpha": 8, "target_modules": ["q_proj"],
                                                          "peft_type": "LORA"}))
    torch.save({"evil": _Payload(marker)}, lora / "adapter_model.bin")
    cfg = json.loads((ckpt_copy / "config.json").read_text())
    cfg["lora"] = "lora"
    (ckpt_copy / "config.json").write_text(json.dumps(cfg))
    root, q = small_job
    res = cli(*answer_args(root, q, ckpt_copy, tmp_path / "a.jsonl"))
    assert res.exit_code == 3, res
    assert "adapter_model.bin is a pickle and is never loaded" in " ".join(res.stderr.split())
    assert not marker.exists()


# ------------------------------------------------------------------------------ config.json pointing outside


@pytest.fixture
def outside_vggt(tiny_ckpt, tmp_path) -> Path:
    dst = tmp_path / "elsewhere" / "vggt"
    shutil.copytree(tiny_ckpt / "vggt", dst)
    return dst


def point_vggt_to(ckpt: Path, ref: str) -> None:
    cfg = json.loads((ckpt / "config.json").read_text())
    cfg["vggt"] = ref
    (ckpt / "config.json").write_text(json.dumps(cfg))


@pytest.mark.parametrize("how", ["absolute", "dotdot", "symlink"])
def test_config_pointing_outside_its_folder_is_refused_unless_trusted(tmp_path, ckpt_copy, outside_vggt, small_job,
                                                                      tiny_ckpt, how):
    shutil.rmtree(ckpt_copy / "vggt")
    if how == "absolute":
        point_vggt_to(ckpt_copy, str(outside_vggt))
    elif how == "dotdot":
        point_vggt_to(ckpt_copy, "../elsewhere/vggt")
    else:  # config untouched; the folder inside is a symlink to elsewhere
        os.symlink(outside_vggt, ckpt_copy / "vggt")
    root, q = small_job
    out = tmp_path / "a.jsonl"
    res = cli(*answer_args(root, q, ckpt_copy, out))
    assert res.exit_code == 3, res
    msg = " ".join(res.stderr.split())
    assert f"vggt points outside the checkpoint folder to {outside_vggt}" in msg
    assert f"--trust-path {outside_vggt}" in msg
    assert not out.exists()

    unrelated = cli(*answer_args(root, q, ckpt_copy, out, "--trust-path", tmp_path / "scenes"))
    assert unrelated.exit_code == 3, unrelated  # trusting another path does not help

    trusted = cli(*answer_args(root, q, ckpt_copy, out, "--trust-path", outside_vggt.parent))
    assert trusted.exit_code == 0, trusted
    ref = tmp_path / "ref.jsonl"
    assert cli(*answer_args(root, q, tiny_ckpt, ref)).exit_code == 0
    same = lambda rows: [(r["id"], r["prediction"]) for r in rows]  # noqa: E731 (same weights, other config)
    assert same(read_jsonl(out)) == same(read_jsonl(ref))


def test_trust_from_the_environment(tmp_path, ckpt_copy, outside_vggt, small_job, monkeypatch):
    shutil.rmtree(ckpt_copy / "vggt")
    point_vggt_to(ckpt_copy, str(outside_vggt))
    root, q = small_job
    monkeypatch.setenv("SPACEMIND_TRUST_PATHS", os.pathsep.join(["/nonexistent", str(outside_vggt)]))
    res = cli(*answer_args(root, q, ckpt_copy, tmp_path / "a.jsonl"))
    assert res.exit_code == 0, res


def test_config_pointing_at_a_system_file_is_refused(tmp_path, ckpt_copy, small_job):
    point_vggt_to(ckpt_copy, "/etc/passwd")
    root, q = small_job
    res = cli(*answer_args(root, q, ckpt_copy, tmp_path / "a.jsonl"))
    assert res.exit_code == 3, res
    assert "points outside the checkpoint folder to /etc/passwd" in " ".join(res.stderr.split())


# ------------------------------------------------------------------------------ file names are data, never shell


HOSTILE_NAMES = [
    "semi;colon; touch PWNED_semi",
    "dollar $(touch PWNED_dollar)",
    "tick `touch PWNED_tick`",
    "quotes ' \" both",
    "new\nline",
    "-rf --help",
    "pipe | touch PWNED_pipe &",
    "glob * ? [x]",
    "unicodé 场景 🙂",
]


def hostile_job(tmp_path: Path) -> tuple[Path, Path, Path, list[dict]]:
    base = tmp_path / "dir with spaces; $(touch PWNED_base)"
    root = base / "scenes `x`"
    rows = []
    for i, name in enumerate(HOSTILE_NAMES):
        frames_scene(root / name, n=3, seed=30 + i, ext=".png")
        # frame files named like commands too
        os.rename(root / name / "000.png", root / name / "$(touch PWNED_frame); 0.png")
        rows.append(question(f"q{i} $(id)", name))
    qfile = write_jsonl(base / "questions; rm -rf ~ $(touch PWNED_q).jsonl", rows)
    out = base / "out `touch PWNED_out`" / "answers $(x).jsonl"
    return base, root, qfile, out


def assert_hostile_run(res, base: Path, out: Path, tmp_path: Path) -> None:
    assert res.exit_code == 0, res
    rows = read_jsonl(out)
    assert [r["scene"] for r in rows] == HOSTILE_NAMES and [r["scene_key"] for r in rows] == HOSTILE_NAMES
    assert [r["id"] for r in rows] == [f"q{i} $(id)" for i in range(len(HOSTILE_NAMES))]
    # a shell would have created these in its working directory (ours, or the repo for subprocesses)
    markers = list(tmp_path.rglob("PWNED*")) + list(Path.cwd().glob("PWNED*")) + list(REPO.glob("PWNED*"))
    assert markers == [], markers


def test_hostile_file_names_are_data_and_no_shell_is_ever_started(tmp_path, tiny_ckpt, monkeypatch):
    base, root, qfile, out = hostile_job(tmp_path)
    started: list = []

    def forbidden(name):
        def refuse(*args, **kwargs):
            started.append((name, args))
            raise AssertionError(f"{name} called with {args!r}")
        return refuse

    for mod, attr in [(subprocess, "Popen"), (subprocess, "run"), (subprocess, "call"), (subprocess, "check_output"),
                      (os, "system"), (os, "popen"), (os, "posix_spawn"), (os, "posix_spawnp"), (os, "execv"),
                      (os, "execve"), (os, "execvp"), (os, "spawnv"), (os, "fork")]:
        monkeypatch.setattr(mod, attr, forbidden(f"{mod.__name__}.{attr}"))
    cache = base / "cache $(touch PWNED_cache)"
    res = cli(*answer_args(root, qfile, tiny_ckpt, out, "--cache", cache))
    monkeypatch.undo()
    assert started == []
    assert_hostile_run(res, base, out, tmp_path)
    assert len(list(cache.glob("entries/*/*.parquet"))) == len(HOSTILE_NAMES)


def test_hostile_file_names_through_the_real_cli_process(tmp_path, tiny_ckpt):
    """The same names through a real `python -m spacemind_cli answer` process, and special files a
    careless reader would block on (a FIFO frame, a FIFO named .mp4) are passed over."""
    base, root, qfile, out = hostile_job(tmp_path)
    os.mkfifo(root / HOSTILE_NAMES[0] / "999.png")
    os.mkfifo(root / "pipe.mp4")
    rows = read_jsonl(qfile) + [question("fifo", "pipe")]
    write_jsonl(qfile, rows)
    res = cli_proc(*answer_args(root, qfile, tiny_ckpt, out), timeout=240)
    assert res.exit_code == 1, res  # only the FIFO "video" fails
    errs = read_jsonl(out.with_name(out.name + ".errors.jsonl"))
    assert [e["id"] for e in errs] == ["fifo"] and "not found" in errs[0]["error"]
    res.exit_code = 0
    assert_hostile_run(res, base, out, tmp_path)


def test_file_names_that_are_not_utf8(tmp_path, tiny_ckpt):
    """A scene folder whose name is not UTF-8 (bytes 0xff 0xfe) used to crash extract and annotation
    jobs with a traceback (UnicodeEncodeError writing the error log / Arrow columns)."""
    import pyarrow.dataset as pads
    import pyarrow.parquet as pq

    root = tmp_path / "scenes"
    frames_scene(root / "good", n=4, seed=1)
    bad_name = os.fsdecode(b"bad\xff\xfename")  # 'bad\udcff\udcfename'
    frames_scene(root / bad_name, n=4, seed=2)
    assert os.fsencode(root / bad_name).endswith(b"bad\xff\xfename")

    cache = tmp_path / "cache"
    res = cli("extract", root, "--checkpoint", tiny_ckpt, "--cache", cache, "--executor", "local", "--num-frames", "4", "--threads", "1")
    assert res.exit_code == 0, res
    assert cli("cache", "verify", cache).exit_code == 0 and len(list(cache.glob("entries/*/*.parquet"))) == 2

    # a question can name it too (JSON escapes for the two bytes); JSONL and Parquet outputs
    q = tmp_path / "q.jsonl"
    q.write_text(json.dumps(question(1, bad_name)) + "\n" + json.dumps(question(2, "good")) + "\n")
    for name in ("a.jsonl", "a.parquet"):
        out = tmp_path / name
        res = cli(*answer_args(root, q, tiny_ckpt, out, "--cache", cache))
        assert res.exit_code == 0, res
    assert [r["scene_key"] for r in read_jsonl(tmp_path / "a.jsonl")] == [bad_name, "good"]
    assert pq.read_table(tmp_path / "a.parquet").column("scene_key").to_pylist() == ["bad\\udcff\\udcfename", "good"]

    template = write_jsonl(tmp_path / "t.jsonl", [{"question_type": "caption", "question": "Describe it."}])
    ds = tmp_path / "ds"
    res = cli("answer", root, "--template", template, "--checkpoint", tiny_ckpt, "--output", ds, "--executor", "local",
              "--num-frames", "4", "--max-new-tokens", "2")
    assert res.exit_code == 0, res
    assert sorted(pads.dataset(ds, format="parquet", partitioning="hive").to_table().column("scene").to_pylist()) == \
        ["bad\\udcff\\udcfename", "good"]
