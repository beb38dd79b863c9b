"""VGGT aggregator + camera head: parity with the reference implementation, checkpoint contract.

Golden fixtures in tests/fixtures/vggt/ were produced by the reference facebookresearch/vggt code
(see tests/fixtures/vggt/README.md); the reference itself is not part of this repository.
"""

from __future__ import annotations

import fractions
import gzip
import json
import logging
import math
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from spacemind_cli.errors import CheckpointError
from spacemind_cli.models import VGGT, VGGTConfig, pose_encoding_to_extri_intri

FIX = Path(__file__).parent / "fixtures" / "vggt"
LOGGER = "spacemind_cli.models.vggt"
TOL = 1e-4  # fp32 parity bound (we observe exact equality on CPU)


# --------------------------------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_cfg() -> dict:
    return json.loads((FIX / "tiny_config.json").read_text())


@pytest.fixture(scope="module")
def tiny_sd() -> dict[str, torch.Tensor]:
    return load_file(str(FIX / "tiny_dinov2.safetensors"))  # fp16, official key names


@pytest.fixture(scope="module")
def models(tiny_cfg, tiny_sd) -> dict[str, VGGT]:
    dino = VGGT.from_pretrained(FIX / "tiny_dinov2.safetensors", config=VGGTConfig.from_dict(tiny_cfg))
    conv_sd = {k: v for k, v in tiny_sd.items() if not k.startswith("aggregator.patch_embed.")}
    conv_sd.update(load_file(str(FIX / "tiny_conv_patch_embed.safetensors")))
    conv = VGGT.from_state_dict(conv_sd, VGGTConfig.from_dict({**tiny_cfg, "patch_embed": "conv"}))
    return {"dinov2": dino, "conv": conv}


@pytest.fixture(scope="module")
def cases() -> tuple[dict, dict]:
    with safe_open(str(FIX / "tiny_cases.safetensors"), "pt") as f:
        meta = json.loads(f.metadata()["cases"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    return meta, tensors


@pytest.fixture(scope="module")
def full_listing() -> dict:
    with gzip.open(FIX / "vggt1b_keys.json.gz") as f:
        return json.loads(f.read())


def images_of(tensors, case) -> torch.Tensor:
    return tensors[f"{case}.images_u8"].float() / 255.0  # exactly as the generator did


def maxdiff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return float((a.float() - b.float()).abs().max())


# --------------------------------------------------------------------------------------------------
# 1. parity with the reference (tiny DINOv2-patch-embed and conv-patch-embed models)
# --------------------------------------------------------------------------------------------------

CASES = ["dino_square", "dino_wide", "dino_large", "conv"]


def test_fixture_cases_cover_the_interesting_shapes(cases):
    meta, tensors = cases
    assert sorted(meta) == sorted(CASES)
    shapes = {c: tuple(tensors[f"{c}.images_u8"].shape) for c in CASES}
    assert shapes["dino_wide"][-2] != shapes["dino_wide"][-1]  # H != W
    assert shapes["dino_square"][0] > 1 and shapes["dino_square"][1] > 2  # B > 1, S > 2


@pytest.mark.parametrize("case", CASES)
@torch.no_grad()
def test_parity_with_reference(models, cases, case):
    meta, tensors = cases
    m = meta[case]
    model = models[m["patch_embed"]]
    n = m["num_layers"]
    tokens, psi = model.aggregate(images_of(tensors, case), layers=tuple(range(n)))
    assert psi == m["patch_start_idx"] == 5
    assert len(tokens) == n == model.config.depth
    for i, t in enumerate(tokens):
        ref = tensors[f"{case}.layer{i}"]
        assert t.dtype == torch.float32
        assert maxdiff(t, ref) <= TOL, f"{case} layer {i}"
        assert float(ref.abs().mean()) > 0.1  # the reference output is not degenerate

    ref_iters = tensors[f"{case}.pose_enc_iters"]  # [iters, B, S, 9]
    iters = model.camera_head(tokens[-1][:, :, 0], num_iterations=ref_iters.shape[0])
    assert len(iters) == 4
    for k, p in enumerate(iters):
        assert maxdiff(p, ref_iters[k]) <= TOL, f"{case} camera iteration {k}"
    pose = model.camera_pose(tokens[-1])
    assert pose.shape == ref_iters.shape[1:]
    assert maxdiff(pose, ref_iters[-1]) <= TOL
    assert bool((pose[..., 7:] >= 0).all())  # fov goes through a ReLU


def test_norm_eps_and_activations_match_reference(models):
    """LayerNorm eps differences (1e-5 vs 1e-6) are too small to show in every output; the generator
    recorded each LayerNorm/GELU of the reference by module path."""
    with safe_open(str(FIX / "tiny_dinov2.safetensors"), "pt") as f:
        ref = json.loads(f.metadata()["modules"])
    ours = {}
    for name, mod in models["dinov2"].named_modules():
        if isinstance(mod, torch.nn.LayerNorm):
            ours[name] = f"LayerNorm(eps={mod.eps:g}, affine={mod.elementwise_affine})"
        elif isinstance(mod, torch.nn.GELU):
            ours[name] = f"GELU(approximate={mod.approximate})"
    assert ours == ref
    assert ref["aggregator.patch_embed.norm"] == "LayerNorm(eps=1e-06, affine=True)"
    assert ref["aggregator.frame_blocks.0.attn.q_norm"] == "LayerNorm(eps=1e-05, affine=True)"
    assert ref["camera_head.adaln_norm"] == "LayerNorm(eps=1e-06, affine=False)"


# --------------------------------------------------------------------------------------------------
# layer selection
# --------------------------------------------------------------------------------------------------


@torch.no_grad()
def test_layers_returns_only_requested_layers_in_order(models, cases):
    _, tensors = cases
    model = models["dinov2"]
    imgs = images_of(tensors, "dino_square")
    tokens, psi = model.aggregate(imgs, layers=(2, 0, -1, -3))
    assert psi == 5 and len(tokens) == 4
    for t, i in zip(tokens, (2, 0, 2, 0)):
        assert maxdiff(t, tensors[f"dino_square.layer{i}"]) <= TOL
    (last,), _ = model.aggregate(imgs)  # default layers=(-1,)
    assert maxdiff(last, tensors["dino_square.layer2"]) <= TOL
    assert maxdiff(model.camera_pose(last), tensors["dino_square.pose_enc_iters"][-1]) <= TOL


@torch.no_grad()
def test_aggregate_stops_after_deepest_requested_layer(models, cases):
    _, tensors = cases
    model = models["dinov2"]
    calls = []
    hooks = [
        blk.register_forward_hook(lambda mod, inp, out, i=i: calls.append(i))
        for i, blk in enumerate(model.aggregator.global_blocks)
    ]
    try:
        (t0,), _ = model.aggregate(images_of(tensors, "dino_square"), layers=(0,))
    finally:
        for h in hooks:
            h.remove()
    assert calls == [0]
    assert maxdiff(t0, tensors["dino_square.layer0"]) <= TOL


@pytest.mark.parametrize("layers", [(3,), (-4,), (), (True,), (0.0,)])
def test_aggregate_rejects_bad_layers(models, layers):
    with pytest.raises(ValueError):
        models["dinov2"].aggregate(torch.zeros(1, 1, 3, 42, 42), layers=layers)


@pytest.mark.parametrize("shape", [(1, 3, 42, 42), (1, 1, 4, 42, 42), (1, 1, 3, 40, 42)])
def test_aggregate_rejects_bad_images(models, shape):
    with pytest.raises(ValueError):
        models["dinov2"].aggregate(torch.zeros(shape))


@torch.no_grad()
def test_camera_pose_accepts_camera_tokens_and_autocast(models, cases):
    _, tensors = cases
    model = models["dinov2"]
    imgs = images_of(tensors, "dino_square")
    ref = tensors["dino_square.pose_enc_iters"][-1]
    (last,), _ = model.aggregate(imgs)
    assert maxdiff(model.camera_pose(last[:, :, 0]), ref) <= TOL  # [B, S, 2C] camera tokens
    with torch.autocast("cpu", dtype=torch.bfloat16):
        (last_ac,), _ = model.aggregate(imgs)
        pose_ac = model.camera_pose(last_ac)
    assert last_ac.dtype == torch.float32  # the residual stream stays fp32 under autocast
    assert pose_ac.dtype == torch.float32  # camera head runs with autocast disabled
    # bf16 aggregator, fp32 camera head on identical bf16 tokens: exact w.r.t. those tokens
    assert maxdiff(pose_ac, model.camera_pose(last_ac)) == 0.0
    assert maxdiff(pose_ac, ref) < 0.5  # and still close to the fp32 result


# --------------------------------------------------------------------------------------------------
# 2. full-size (VGGT-1B) key/shape contract, on the meta device
# --------------------------------------------------------------------------------------------------


def test_full_size_builds_on_meta_with_checkpoint_keys_and_shapes(full_listing):
    assert full_listing["num_tensors"] == len(full_listing["keys"]) == 1797
    ref = {k: tuple(s) for k, s in full_listing["keys"]}
    prefixes = {k.split(".")[0] for k in ref}
    assert prefixes == {"aggregator", "camera_head", "depth_head", "point_head", "track_head"}
    subset = {k: s for k, s in ref.items() if k.startswith(("aggregator.", "camera_head."))}

    with torch.device("meta"):
        model = VGGT()  # VGGT-1B defaults
    assert all(p.is_meta for p in model.parameters())
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert ours == subset
    assert ours["aggregator.patch_embed.pos_embed"] == (1, 1370, 1024)
    assert ours["camera_head.pose_branch.fc2.weight"] == (9, 1024)
    n_agg = sum(math.prod(s) for k, s in ours.items() if k.startswith("aggregator."))
    assert round(n_agg / 1e9, 2) == 0.91
    assert round(full_listing["num_params"] / 1e9, 2) == 1.26
    assert model.patch_start_idx == 5


def _meta_state_dict(full_listing) -> dict[str, torch.Tensor]:
    return {k: torch.empty(s, device="meta") for k, s in full_listing["keys"]}


def test_full_size_loading_path_on_meta(full_listing, caplog):
    sd = _meta_state_dict(full_listing)
    caplog.set_level(logging.INFO, logger=LOGGER)
    model = VGGT.from_state_dict(sd, device="meta", source="vggt1b-meta")
    assert all(p.is_meta for p in model.parameters())
    assert not model.training
    records = [r for r in caplog.records if r.name == LOGGER and r.levelno == logging.INFO]
    assert len(records) == 1
    msg = records[0].getMessage()
    n_heads = sum(k.startswith(("depth_head.", "point_head.", "track_head.")) for k in sd)
    assert n_heads == 1797 - 1279
    assert "vggt1b-meta" in msg and "loaded 1279 " in msg and f"skipped {n_heads} " in msg
    assert "depth_head 62" in msg and "point_head 62" in msg and "track_head 394" in msg
    # dtype is applied on load
    m16 = VGGT.from_state_dict(sd, device="meta", dtype=torch.bfloat16)
    assert {p.dtype for p in m16.parameters()} == {torch.bfloat16}


def test_full_size_missing_key_raises(full_listing):
    sd = _meta_state_dict(full_listing)
    del sd["aggregator.global_blocks.7.attn.q_norm.weight"]
    with pytest.raises(CheckpointError) as e:
        VGGT.from_state_dict(sd, device="meta", source="ckpt.safetensors")
    msg = str(e.value)
    assert "ckpt.safetensors" in msg and "aggregator.global_blocks.7.attn.q_norm.weight" in msg
    assert "1 missing" in msg and "\n" not in msg


@pytest.mark.parametrize("extra", ["aggregator.extra_token", "camera_head.trunk.4.norm1.weight", "module.foo"])
def test_full_size_unexpected_key_raises(full_listing, extra):
    sd = _meta_state_dict(full_listing)
    sd[extra] = torch.empty(3, device="meta")
    with pytest.raises(CheckpointError, match="unexpected") as e:
        VGGT.from_state_dict(sd, device="meta", source="ckpt.pt")
    assert extra in str(e.value) and "ckpt.pt" in str(e.value)


def test_full_size_shape_mismatch_raises(full_listing):
    sd = _meta_state_dict(full_listing)
    sd["aggregator.camera_token"] = torch.empty(1, 1, 1, 1024, device="meta")
    with pytest.raises(CheckpointError, match="aggregator.camera_token"):
        VGGT.from_state_dict(sd, device="meta")


# --------------------------------------------------------------------------------------------------
# 3. from_pretrained / save_pretrained
# --------------------------------------------------------------------------------------------------


def _same_weights(a: VGGT, b: VGGT) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@torch.no_grad()
def test_round_trip_folder_safetensors_and_pt(models, cases, tmp_path, tiny_cfg):
    _, tensors = cases
    model = models["dinov2"]
    cfg = VGGTConfig.from_dict(tiny_cfg)
    imgs = images_of(tensors, "dino_wide")
    (ref,), _ = model.aggregate(imgs)

    model.save_pretrained(tmp_path / "folder")
    assert sorted(p.name for p in (tmp_path / "folder").iterdir()) == ["config.json", "model.safetensors"]
    loaded = VGGT.from_pretrained(tmp_path / "folder")  # config from config.json
    assert loaded.config == model.config and _same_weights(loaded, model)
    (out,), _ = loaded.aggregate(imgs)
    assert torch.equal(out, ref)

    bare = VGGT.from_pretrained(tmp_path / "folder" / "model.safetensors", config=cfg)
    assert _same_weights(bare, model)

    # model.pt as upstream ships it: a plain state dict with all heads
    sd = dict(model.state_dict())
    sd["depth_head.projects.0.weight"] = torch.zeros(2, 2)
    sd["track_head.x"] = torch.zeros(1)
    torch.save(sd, tmp_path / "model.pt")
    pt = VGGT.from_pretrained(tmp_path / "model.pt", config=cfg)
    assert _same_weights(pt, model)
    (tmp_path / "ptdir").mkdir()
    torch.save(sd, tmp_path / "ptdir" / "model.pt")
    (tmp_path / "ptdir" / "config.json").write_text(json.dumps(cfg.to_dict()))
    assert _same_weights(VGGT.from_pretrained(tmp_path / "ptdir"), model)

    half = VGGT.from_pretrained(tmp_path / "folder", dtype=torch.bfloat16)
    assert {p.dtype for p in half.parameters()} == {torch.bfloat16}
    assert not half.aggregator.patch_embed.mask_token.requires_grad
    assert half.aggregator.frame_blocks[0].attn.qkv.weight.requires_grad


def test_from_pretrained_default_config_is_vggt1b(tmp_path, tiny_sd):
    # a tiny checkpoint without config.json is read as VGGT-1B and fails with a clear error
    save_file(tiny_sd, str(tmp_path / "model.safetensors"))
    with pytest.raises(CheckpointError, match="missing keys") as e:
        VGGT.from_pretrained(tmp_path)
    assert str(tmp_path / "model.safetensors") in str(e.value)


def test_from_pretrained_errors(tmp_path, tiny_cfg):
    cfg = VGGTConfig.from_dict(tiny_cfg)
    with pytest.raises(CheckpointError, match="not found"):
        VGGT.from_pretrained(tmp_path / "nope.safetensors", config=cfg)
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no model.safetensors"):
        VGGT.from_pretrained(tmp_path / "empty", config=cfg)
    (tmp_path / "bad.safetensors").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(CheckpointError, match="bad.safetensors"):
        VGGT.from_pretrained(tmp_path / "bad.safetensors", config=cfg)
    # weights_only=True refuses arbitrary pickled objects
    torch.save({"aggregator.camera_token": torch.zeros(1), "obj": fractions.Fraction(1, 3)}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="evil.pt"):
        VGGT.from_pretrained(tmp_path / "evil.pt", config=cfg)


def test_heads_skipped_and_counted_in_one_log_line(tiny_sd, tiny_cfg, tmp_path, caplog):
    sd = dict(tiny_sd)
    sd.update({f"point_head.w{i}": torch.zeros(1) for i in range(3)})
    save_file(sd, str(tmp_path / "m.safetensors"))
    caplog.set_level(logging.INFO, logger=LOGGER)
    VGGT.from_pretrained(tmp_path / "m.safetensors", config=VGGTConfig.from_dict(tiny_cfg))
    msgs = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert len(msgs) == 1 and "skipped 3 " in msgs[0] and "point_head 3" in msgs[0]


# --------------------------------------------------------------------------------------------------
# config and pose encoding
# --------------------------------------------------------------------------------------------------


def test_config_round_trip_and_validation(tiny_cfg):
    cfg = VGGTConfig.from_dict(tiny_cfg)
    assert VGGTConfig.from_dict(cfg.to_dict()) == cfg
    default = VGGTConfig()
    assert (default.patch_embed_depth, default.patch_embed_heads, default.patch_start_idx) == (24, 16, 5)
    # the hub config (PyTorchModelHubMixin init kwargs) maps onto ours
    hub = VGGTConfig.from_dict({"img_size": 518, "patch_size": 14, "embed_dim": 1024, "enable_track": True})
    assert hub == default
    with pytest.raises(ValueError):
        VGGTConfig(patch_embed="resnet")
    with pytest.raises(ValueError):
        VGGTConfig(embed_dim=64)  # dinov2_vitl14_reg is 1024 wide
    with pytest.raises(ValueError):
        VGGTConfig(embed_dim=64, patch_embed="dinov2")  # needs depth/heads


def test_pose_encoding_to_extri_intri_hand_checked():
    H, W = 480, 640
    fov_h, fov_w = 2 * math.atan(240 / 500), 2 * math.atan(320 / 600)  # fy = 500, fx = 600
    s = math.sqrt(0.5)
    enc = torch.tensor(
        [
            [
                [0, 0, 0, 0, 0, 0, 1, fov_h, fov_w],  # frame 0: world frame
                [1, 2, 3, 0, 0, s, s, fov_h, fov_w],  # +90 deg about z, xyzw
                [1, 2, 3, 0, 0, 2 * s, 2 * s, fov_h, fov_w],  # same rotation, non-unit quaternion
            ]
        ],
        dtype=torch.float64,
    )
    extri, intri = pose_encoding_to_extri_intri(enc, (H, W))
    assert extri.shape == (1, 3, 3, 4) and intri.shape == (1, 3, 3, 3)
    eye = torch.cat([torch.eye(3, dtype=torch.float64), torch.zeros(3, 1, dtype=torch.float64)], dim=1)
    assert torch.equal(extri[0, 0], eye)
    rz = torch.tensor([[0, -1, 0, 1], [1, 0, 0, 2], [0, 0, 1, 3]], dtype=torch.float64)
    assert torch.allclose(extri[0, 1], rz, atol=1e-12) and torch.allclose(extri[0, 2], rz, atol=1e-12)
    k = torch.tensor([[600, 0, 320], [0, 500, 240], [0, 0, 1]], dtype=torch.float64)
    for i in range(3):
        assert torch.allclose(intri[0, i], k, atol=1e-9)
