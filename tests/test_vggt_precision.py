"""VGGT runs at the reference's precision unless the user opts into half-precision weights.

The reference (facebookresearch/vggt) keeps fp32 weights and runs the aggregator under bf16
autocast, with the camera head in fp32. The tiny model on the CPU (CPU autocast) shows that our
default computes exactly that, and measures how far the `half` opt-in drifts from it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from spacemind_cli.jobs.settings import RunOptions, make_settings
from spacemind_cli.models.preprocess import prepare, vggt_tensor
from spacemind_cli.models.spacemind import SpaceMind
from spacemind_cli.models.vggt import VGGT
from spacemind_cli.scenes import Sampling, discover_scenes, load_clip

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def clip(ckpt):
    scene = discover_scenes(EXAMPLES / "videos")[0]
    cfg = SpaceMind.from_pretrained(ckpt, llm=False).config.preprocess
    return prepare(load_clip(scene, Sampling(6)).frames, cfg)


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.float(), b.float()
    return float((a - b).norm() / b.norm())


def test_default_is_the_references_precision(ckpt, clip):
    sm = SpaceMind.from_pretrained(ckpt, dtype=torch.bfloat16, llm=False)
    assert {p.dtype for p in sm.vggt.parameters()} == {torch.float32}
    enc = sm.encode(clip)

    ref = VGGT.from_pretrained(ckpt / "vggt", dtype=torch.float32).eval()
    images = vggt_tensor(clip.vggt, "cpu", torch.float32)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        (tokens,), start = ref.aggregate(images, layers=(-1,))
        pose = ref.camera_pose(tokens)  # the head disables autocast and runs in its fp32 weights
    assert torch.equal(enc.vggt_patch[0], tokens[0, :, start:].to(torch.bfloat16))
    assert torch.equal(enc.vggt_camera[0], tokens[0, :, :1].to(torch.bfloat16))
    assert pose.dtype == torch.float32 and torch.equal(enc.pose_enc, pose[0])


def test_half_weights_are_an_opt_in_whose_deviation_is_measured(ckpt, clip):
    ref = SpaceMind.from_pretrained(ckpt, dtype=torch.bfloat16, llm=False).encode(clip)
    half_model = SpaceMind.from_pretrained(ckpt, dtype=torch.bfloat16, llm=False, vggt_weights="half")
    assert {p.dtype for p in half_model.vggt.parameters()} == {torch.bfloat16}
    half = half_model.encode(clip)
    deviation = {k: relative_error(getattr(half, k), getattr(ref, k)) for k in ("vggt_patch", "vggt_camera", "pose_enc")}
    print("half-weight VGGT, relative deviation from the reference precision:", deviation)
    assert all(d > 0 for d in deviation.values())  # a real difference: the opt-in is not a no-op
    assert max(deviation.values()) < 0.1  # and a small one
    assert torch.equal(half.internvit, ref.internvit)  # InternViT is untouched by the VGGT choice


def test_the_choice_is_part_of_the_cache_and_run_keys(ckpt):
    full = make_settings(RunOptions(ckpt, dtype="bf16"))
    half = make_settings(RunOptions(ckpt, dtype="bf16", vggt_weights="half"))
    assert full.vggt_weights == "fp32" and half.vggt_weights == "half"
    assert full.feature_key("scene") != half.feature_key("scene")
    assert full.run_key() != half.run_key()
    # in fp32 both mean the same computation, so they share keys
    assert make_settings(RunOptions(ckpt, dtype="fp32", vggt_weights="half")).feature_key("scene") == make_settings(
        RunOptions(ckpt, dtype="fp32")).feature_key("scene")
