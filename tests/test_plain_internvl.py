"""`--fusion none` without VGGT: plain InternVL (or any fine-tune of it) as a checkpoint that loads
no VGGT and still runs encode-once, prefix sharing, the feature cache and Ray."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from pipelines import answer as run_answer
from pipelines import extract as run_extract
from spacemind_cli.cache.store import FeatureCache
from spacemind_cli.errors import CheckpointError, InputError
from spacemind_cli.models.assemble import assemble
from spacemind_cli.models.checkpoint import encoder_fingerprint, load_config
from spacemind_cli.models.inspect import inspect
from spacemind_cli.models.preprocess import prepare
from spacemind_cli.models.spacemind import EncoderOutputs, SpaceMind
from spacemind_cli.scenes import Sampling, discover_scenes, load_clip

pytestmark = pytest.mark.usefixtures("one_torch_thread")

QUESTIONS = ["How many chair are in this room?", "Describe the scene.", "What colour is the largest object?"]
FRAMES = 3
VOLATILE = ("timing", "cache", "checkpoint_id", "run_key")  # the two checkpoints differ by their VGGT


@pytest.fixture(scope="module")
def plain(tiny_ckpt, tmp_path_factory) -> Path:
    return assemble(tmp_path_factory.mktemp("plain") / "ckpt", base=tiny_ckpt / "internvl", fusion="none", num_frames=FRAMES)


@pytest.fixture(scope="module")
def with_vggt(tiny_ckpt, tmp_path_factory) -> Path:
    """The same InternVL, fusion none, VGGT assembled in (loaded and run, its features unused)."""
    return assemble(tmp_path_factory.mktemp("vggt") / "ckpt", base=tiny_ckpt / "internvl", vggt=tiny_ckpt / "vggt",
                    fusion="none", num_frames=FRAMES)


@pytest.fixture
def no_vggt(monkeypatch):
    """Any VGGT module constructed in this process fails the test."""
    from spacemind_cli.models import vggt

    def refuse(*args, **kwargs):
        raise AssertionError("a VGGT module was constructed")

    monkeypatch.setattr(vggt.VGGT, "__init__", refuse)


def rows(path: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(line).items() if k not in VOLATILE} for line in path.read_text().splitlines()]


def test_assembled_without_vggt(plain, with_vggt):
    assert not (plain / "vggt").exists() and not (plain / "fusion.safetensors").exists()
    cfg = load_config(plain)
    assert cfg.vggt is None and cfg.fusion == "none"
    # its features are InternViT's alone: another key than the one with VGGT
    assert encoder_fingerprint(plain) != encoder_fingerprint(with_vggt)
    report = inspect(plain)
    assert report["missing"] == [] and not any(c["name"].startswith("VGGT") for c in report["components"])
    assert "no VGGT" in report["config"]["preprocess"]


def test_assemble_needs_vggt_for_cgmf(tiny_ckpt, tmp_path):
    with pytest.raises(InputError, match="--vggt is needed for fusion cgmf"):
        assemble(tmp_path / "x", base=tiny_ckpt / "internvl")
    cfg = json.loads((tiny_ckpt / "config.json").read_text())
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text(json.dumps({**cfg, "vggt": None}))
    with pytest.raises(CheckpointError, match="no vggt, which fusion = cgmf needs"):
        load_config(tmp_path / "bad")


@pytest.fixture(scope="module")
def reference(with_vggt, examples, tmp_path_factory) -> Path:
    """Answers of the fusion-none checkpoint with VGGT (run before any no-VGGT guard)."""
    out = tmp_path_factory.mktemp("ref") / "a.jsonl"
    run_answer(examples / "videos", checkpoint=with_vggt, output=out, questions=str(examples / "questions.jsonl"),
               executor="local", cpu_threads=1)
    return out


def test_loads_no_vggt_and_answers_as_plain_internvl(plain, with_vggt, examples, no_vggt):
    from spacemind_cli.models import internvl
    from spacemind_cli.models.preprocess import vit_tensor

    scene = discover_scenes(examples / "videos")[1]
    sm = SpaceMind.from_pretrained(plain)
    assert sm.vggt is None and not sm.has_vggt
    clip = prepare(load_clip(scene, Sampling(FRAMES)).frames, sm.config.preprocess)
    enc = sm.encode(clip)
    assert enc.vggt_patch is None and enc.pose_enc is None and set(enc.tensors()) == {"internvit"}
    # the fused tokens are InternVL's own projector output (transformers' get_image_features)
    pixels = vit_tensor(clip.vit, sm.config.preprocess, sm.device, sm.dtype)
    assert torch.equal(sm.fuse(enc), internvl.image_features(sm.internvl, pixels))
    answers = sm.answer(enc, QUESTIONS)  # one prefix, questions decoded in a batch against it
    assert answers == [sm.answer_alone(enc, q) for q in QUESTIONS]  # each alone, transformers' generate
    with pytest.raises(CheckpointError, match="has no VGGT"):
        sm._encoder_vggt()
    ref = SpaceMind.from_pretrained(with_vggt, lazy_vggt=True)  # given features, it never needs its VGGT
    assert answers == ref.answer(enc, QUESTIONS)


def test_extract_then_answer_from_the_cache_without_vggt(plain, reference, examples, tmp_path, no_vggt):
    cache = tmp_path / "cache"
    summary = run_extract(examples / "videos", checkpoint=plain, cache=cache, executor="local", cpu_threads=1)
    assert summary["failed"] == 0 and summary["encoded"] == 4
    fc = FeatureCache(cache)
    keys = [e.key for e in fc.entries()]
    assert len(keys) == 4
    for key in keys:  # InternViT's features only
        entry = fc.get(key, fingerprint=encoder_fingerprint(plain), tensor_names=EncoderOutputs.INTERNVIT_ONLY)
        assert set(entry.tensors) == {"internvit"}
    out = tmp_path / "a.jsonl"
    summary = run_answer(examples / "videos", checkpoint=plain, output=out, questions=str(examples / "questions.jsonl"),
                         cache=cache, executor="local", cpu_threads=1)
    assert summary["answered"] == 68 and summary["failed"] == 0
    assert {json.loads(line)["cache"] for line in out.read_text().splitlines()} == {"hit"}
    assert rows(out) == rows(reference)


@pytest.mark.ray
def test_ray_answers_without_vggt_equal_local(plain, reference, examples, tmp_path):
    out = tmp_path / "ray.jsonl"
    cache = tmp_path / "cache"
    summary = run_answer(examples / "videos", checkpoint=plain, output=out, questions=str(examples / "questions.jsonl"),
                         executor="ray", cache=cache, cpu_threads=1)
    assert summary["answered"] == 68 and summary["failed"] == 0
    assert rows(out) == rows(reference)
    fc = FeatureCache(cache)
    entries = [fc.get(e.key, tensor_names=EncoderOutputs.INTERNVIT_ONLY) for e in fc.entries()]
    assert len(entries) == 4 and all(set(e.tensors) == {"internvit"} for e in entries)  # no VGGT ran in the actors


def test_train_with_a_cgmf_refused_on_a_base_without_vggt(plain, examples, tmp_path):
    from pipelines import train

    with pytest.raises(CheckpointError, match="has no VGGT"):
        train(examples / "videos", checkpoint=plain, questions=str(examples / "questions.jsonl"),
              output=tmp_path / "trained", cache=tmp_path / "cache", executor="local")
