"""SpaceMind end to end on a tiny random-weight checkpoint: loading/saving, encode/fuse/answer,
the fusion="none" baseline against transformers' own InternVL path, preprocessing, the prompt,
the trust rule, config refusal and the fingerprints."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from spacemind_cli.errors import CheckpointError
from spacemind_cli.models import internvl
from spacemind_cli.models.checkpoint import SpaceMindConfig, checkpoint_id, encoder_fingerprint, load_config
from spacemind_cli.models.preprocess import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    PreprocessConfig,
    prepare,
    vggt_frame,
    vggt_frames,
    vggt_tensor,
    vit_frames,
    vit_tensor,
)
from spacemind_cli.models.spacemind import EncoderOutputs, SpaceMind
from spacemind_cli.scenes import Sampling, discover_scenes, load_clip

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
FRAMES = 8  # frames per clip in these tests (the tiny model's cost grows with the prefix)
QUESTIONS = [
    "How many chair are in this room?",
    "What is the size of this room (in square meters)?",
    "Describe the scene.",
    "If I am standing by the sofa and facing the tv, is the bed to my left or right?",
    "What colour is the largest object?",
]


pytestmark = pytest.mark.usefixtures("one_torch_thread")




@pytest.fixture(scope="module")
def sm(ckpt) -> SpaceMind:
    return SpaceMind.from_pretrained(ckpt)


@pytest.fixture(scope="module")
def clips(sm):
    scenes = discover_scenes(EXAMPLES / "videos" / "synthetic")[:2]
    return [prepare(load_clip(s, Sampling(FRAMES)).frames, sm.config.preprocess) for s in scenes]


@pytest.fixture(scope="module")
def encs(sm, clips):
    return [sm.encode(c) for c in clips]


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)  # real copies: tests edit files in the copy
    return dst


def _write_config(folder: Path, **changes) -> None:
    cfg = json.loads((folder / "config.json").read_text())
    cfg.update(changes)
    (folder / "config.json").write_text(json.dumps(cfg))


def _edit_tensor(path: Path, name_startswith: str) -> str:
    tensors = load_file(str(path))
    name = next(k for k in sorted(tensors) if k.startswith(name_startswith))
    tensors[name] = tensors[name] + 0.01
    save_file(tensors, str(path), metadata={"format": "pt"})
    return name


# ----------------------------------------------------------------------------------- checkpoint
def test_save_load_round_trip_is_identical(sm, clips, tmp_path):
    sm.save_pretrained(tmp_path / "again")
    sm2 = SpaceMind.from_pretrained(tmp_path / "again")
    a, b = sm.encode(clips[0]), sm2.encode(clips[0])
    for k in EncoderOutputs.TENSORS:
        assert torch.equal(getattr(a, k), getattr(b, k)), k
    assert torch.equal(sm.fuse(a), sm2.fuse(b))
    assert sm.answer(a, QUESTIONS) == sm2.answer(b, QUESTIONS)
    assert sm2.encoder_fingerprint == sm.encoder_fingerprint  # same encoder weights and settings
    assert load_config(tmp_path / "again").versions["transformers"]


def test_answer_from_frames_equals_answer_from_features(sm, clips, tmp_path):
    from_frames = sm.answer(clips[0], QUESTIONS)
    enc = sm.encode(clips[0])
    assert sm.answer(enc, QUESTIONS) == from_frames
    # Through a file, as the feature cache stores them: safetensors keeps dtypes and bits.
    save_file(enc.tensors(), str(tmp_path / "feat.safetensors"))
    loaded = EncoderOutputs.from_tensors(load_file(str(tmp_path / "feat.safetensors")))
    for k, v in enc.tensors().items():
        assert getattr(loaded, k).dtype == v.dtype and torch.equal(getattr(loaded, k), v)
    assert sm.answer(loaded, QUESTIONS) == from_frames
    assert enc.num_frames == FRAMES
    assert enc.vggt_patch.shape[:2] == (1, FRAMES) and enc.vggt_camera.shape[2] == 1
    assert enc.pose_enc.shape == (FRAMES, 9)


def test_encode_once_answer_many(sm, encs, monkeypatch):
    enc = encs[0]
    one_by_one = [sm.answer(enc, [q])[0] for q in QUESTIONS]
    calls = {"encode": 0, "prefill": 0}
    real_prefill = sm.prefill

    def no_encoder(*a, **k):
        calls["encode"] += 1
        raise AssertionError("answer() with EncoderOutputs must not run an encoder")

    def counting_prefill(fused):
        calls["prefill"] += 1
        return real_prefill(fused)

    monkeypatch.setattr(sm.vggt, "aggregate", no_encoder)
    monkeypatch.setattr(internvl, "vision_features", no_encoder)
    monkeypatch.setattr(sm, "prefill", counting_prefill)
    assert sm.answer(enc, QUESTIONS, batch_size=2) == one_by_one
    assert calls == {"encode": 0, "prefill": 1}  # one prefix for all five questions, three batches


def test_different_scenes_give_different_answers(sm, encs):
    a, b = (sm.answer(e, QUESTIONS) for e in encs)
    assert sum(x != y for x, y in zip(a, b)) >= len(QUESTIONS) - 1
    assert len(set(a)) > 1  # and different questions about one scene too
    assert not torch.allclose(sm.fuse(encs[0]), sm.fuse(encs[1]))


def test_fusion_none_is_plain_internvl(ckpt, sm, clips, encs, tmp_path):
    folder = _copy(ckpt, tmp_path / "none")
    _write_config(folder, fusion="none")
    (folder / "fusion.safetensors").unlink()  # not needed without fusion
    plain = SpaceMind.from_pretrained(folder)
    assert plain.fusion is None
    enc = encs[0]
    projected = internvl.project(plain.internvl, enc.internvit)
    assert torch.equal(plain.fuse(enc), projected)
    assert not torch.allclose(sm.fuse(enc), projected)  # the tiny CGMF does change the tokens

    # The same answers as transformers' own InternVL path: input_ids + pixel_values -> generate.
    pixels = vit_tensor(clips[0].vit, plain.config.preprocess, "cpu", torch.float32)
    eos = sorted(internvl.eos_token_ids(plain.internvl, plain.tokenizer))
    for q in QUESTIONS[:3]:
        ids = torch.tensor([plain.prefix_ids(FRAMES) + plain.suffix_ids(q)])
        out = plain.internvl.generate(
            input_ids=ids,
            pixel_values=pixels,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=12,
            do_sample=False,
            eos_token_id=eos,
            pad_token_id=internvl.pad_token_id(plain.tokenizer),
        )
        theirs = plain.tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True).strip()
        assert plain.answer(enc, [q], max_new_tokens=12) == [theirs]


@pytest.mark.parametrize("layer", [-1, -2])
def test_vision_features_and_project_equal_get_image_features(sm, clips, monkeypatch, layer):
    monkeypatch.setattr(sm.internvl.config, "vision_feature_layer", layer)
    pixels = vit_tensor(clips[0].vit, sm.config.preprocess, "cpu", torch.float32)
    ours = internvl.project(sm.internvl, internvl.vision_features(sm.internvl, pixels))
    theirs = internvl.image_features(sm.internvl, pixels)
    assert ours.shape == (FRAMES, sm.tokens_per_frame, sm.internvl.config.text_config.hidden_size)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


# ----------------------------------------------------------------------------------- preprocessing
def _frame(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(1, 256, size=(h, w, 3), dtype=np.uint8)  # never 0: padding is detectable


def _pil_resize(frame, w, h):
    return np.asarray(Image.fromarray(frame).resize((w, h), Image.Resampling.BICUBIC))


def test_vggt_pad_mode_landscape():
    frame = _frame(240, 320)
    out = vggt_frame(frame, PreprocessConfig())
    assert out.shape == (518, 518, 3) and out.dtype == np.uint8
    new_h = round(240 * 518 / 320 / 14) * 14
    assert new_h == 392
    top = (518 - new_h) // 2
    assert (out[:top] == 0).all() and (out[top + new_h :] == 0).all()
    assert np.array_equal(out[top : top + new_h], _pil_resize(frame, 518, new_h))
    assert (out[top : top + new_h] > 0).any(axis=2).any(axis=0).all()  # no padding left/right


def test_vggt_pad_mode_portrait_pads_left_right():
    frame = _frame(320, 240, seed=1)
    out = vggt_frame(frame, PreprocessConfig())
    new_w = round(240 * 518 / 320 / 14) * 14
    left = (518 - new_w) // 2
    assert out.shape == (518, 518, 3)
    assert (out[:, :left] == 0).all() and (out[:, left + new_w :] == 0).all()
    assert np.array_equal(out[:, left : left + new_w], _pil_resize(frame, new_w, 518))


def test_vggt_crop_mode():
    cfg = PreprocessConfig(vggt_mode="crop")
    wide = _frame(240, 320)
    out = vggt_frame(wide, cfg)  # width to 518, height a multiple of 14, nothing to crop
    assert out.shape == (392, 518, 3)
    assert np.array_equal(out, _pil_resize(wide, 518, 392))
    tall = _frame(480, 320, seed=2)
    new_h = round(480 * 518 / 320 / 14) * 14
    out = vggt_frame(tall, cfg)  # centre crop of the height
    start = (new_h - 518) // 2
    assert out.shape == (518, 518, 3)
    assert np.array_equal(out, _pil_resize(tall, 518, new_h)[start : start + 518])
    stacked = vggt_frames([wide, tall], cfg)  # mixed shapes: padded to the largest
    assert stacked.shape == (2, 518, 518, 3)
    with pytest.raises(ValueError, match="vggt_mode"):
        vggt_frame(wide, PreprocessConfig(vggt_mode="stretch"))


def test_vit_resize_and_tensors():
    cfg = PreprocessConfig()
    frames = [_frame(240, 320), _frame(100, 50, seed=3)]
    out = vit_frames(frames, cfg)
    assert out.shape == (2, 448, 448, 3) and out.dtype == np.uint8
    assert np.array_equal(out[1], _pil_resize(frames[1], 448, 448))
    x = vit_tensor(out, cfg, "cpu")
    assert x.shape == (2, 3, 448, 448)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    want = (torch.from_numpy(out).permute(0, 3, 1, 2).float() / 255 - mean) / std
    torch.testing.assert_close(x, want)
    v = vggt_tensor(vggt_frames(frames, cfg), "cpu")
    assert v.shape == (1, 2, 3, 518, 518) and 0 <= float(v.min()) and float(v.max()) <= 1


def test_read_only_frames_from_arrow_convert_without_a_warning(recwarn):
    """Ray Data batches and cache reads hand over read-only views; converting them must not
    warn in the user's terminal, nor change the values."""
    cfg = PreprocessConfig()
    frames = vit_frames([_frame(64, 64)], cfg)
    read_only = frames.copy()
    read_only.flags.writeable = False
    torch.testing.assert_close(vit_tensor(read_only, cfg, "cpu"), vit_tensor(frames, cfg, "cpu"))
    torch.testing.assert_close(vggt_tensor(read_only, "cpu"), vggt_tensor(frames, "cpu"))
    assert not [w for w in recwarn if "not writable" in str(w.message)]


# ----------------------------------------------------------------------------------- prompt
def test_prompt_has_one_block_per_frame(sm):
    n = sm.tokens_per_frame
    assert n == sm.internvl.config.image_seq_length == 64
    text = sm.prefix_text(FRAMES)
    assert text.count("<img>") == FRAMES and text.count("</img>") == FRAMES
    blocks = re.findall(r"Frame(\d+): <img>((?:<IMG_CONTEXT>)*)</img>", text)
    assert [int(i) for i, _ in blocks] == list(range(1, FRAMES + 1))
    assert all(body.count("<IMG_CONTEXT>") == n for _, body in blocks)
    assert text.startswith("<|im_start|>system\n") and text.endswith("</img>\n")
    ids = sm.prefix_ids(FRAMES)
    assert ids.count(sm.internvl.config.image_token_id) == FRAMES * n
    assert sm.suffix_text("Q?") == "Q?<|im_end|>\n<|im_start|>assistant\n"
    with pytest.raises(CheckpointError, match="image tokens"):
        sm.prefix_embeds(torch.zeros(FRAMES, n - 1, sm.internvl.config.text_config.hidden_size))


def test_prompt_without_frame_prefix(ckpt, tmp_path):
    folder = _copy(ckpt, tmp_path / "noprefix")
    cfg = json.loads((folder / "config.json").read_text())
    cfg["prompt"]["frame_prefix"] = False
    (folder / "config.json").write_text(json.dumps(cfg))
    text = SpaceMind.from_pretrained(folder).prefix_text(3)
    assert "Frame" not in text and text.count("<img>") == 3


# ----------------------------------------------------------------------------------- trust rule
def _outside_reference(ckpt: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "refs"
    folder.mkdir()
    shutil.copy(ckpt / "fusion.safetensors", folder / "fusion.safetensors")
    cfg = json.loads((ckpt / "config.json").read_text())
    cfg["base"], cfg["vggt"] = str(ckpt / "internvl"), str(ckpt / "vggt")
    (folder / "config.json").write_text(json.dumps(cfg))
    return folder


def test_trust_rule(ckpt, tmp_path, monkeypatch):
    monkeypatch.delenv("SPACEMIND_TRUST_PATHS", raising=False)
    folder = _outside_reference(ckpt, tmp_path)
    with pytest.raises(CheckpointError, match="outside the checkpoint folder"):
        SpaceMind.from_pretrained(folder)
    with pytest.raises(CheckpointError, match="trust-path"):
        encoder_fingerprint(folder)
    assert SpaceMind.from_pretrained(folder, trusted_paths=[ckpt]).fusion is not None
    monkeypatch.setenv("SPACEMIND_TRUST_PATHS", str(ckpt))
    assert SpaceMind.from_pretrained(folder).config.base == str(ckpt / "internvl")
    # A relative escape is the same thing.
    monkeypatch.delenv("SPACEMIND_TRUST_PATHS")
    rel = tmp_path / "rel"
    rel.mkdir()
    shutil.copy(folder / "fusion.safetensors", rel / "fusion.safetensors")
    cfg = json.loads((folder / "config.json").read_text())
    cfg["base"] = os.path.relpath(ckpt / "internvl", rel)  # "../../.../internvl"
    (rel / "config.json").write_text(json.dumps(cfg))
    assert cfg["base"].startswith("..")
    with pytest.raises(CheckpointError, match="outside the checkpoint folder"):
        SpaceMind.from_pretrained(rel)


@pytest.mark.parametrize(
    "change, match",
    [
        ({"fusion": "qformer"}, "unknown fusion"),
        ({"format_version": 99}, "newer"),
        ({"type": "llava"}, "config type"),
        ({"preprocess": {"vggt_size": 518, "future_knob": 1}}, "invalid settings"),
        ({"preprocess": {"vit_mean": None}}, "invalid settings: preprocess: vit_mean must be a list of 3 numbers"),
        ({"preprocess": {"vit_std": 0.5}}, "invalid settings: preprocess: vit_std must be a list of 3 numbers"),
        ({"preprocess": {"vit_std": "abc"}}, "vit_std must be a list of 3 numbers"),
    ],
)
def test_config_refused(ckpt, tmp_path, change, match):
    folder = tmp_path / "bad"
    folder.mkdir()
    cfg = json.loads((ckpt / "config.json").read_text())
    cfg.update(change)
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=match):
        SpaceMind.from_pretrained(folder)
    with pytest.raises(CheckpointError, match=match):
        SpaceMindConfig.from_dict(cfg)


def test_bad_vggt_weights_refused_before_loading(ckpt, monkeypatch):
    """A bad vggt_weights argument is the caller's mistake (ValueError), found before the minutes
    internvl.load takes for a real model, not a CheckpointError after it."""

    def no_loading(*args, **kwargs):
        raise AssertionError("internvl was loaded before vggt_weights was checked")

    monkeypatch.setattr(internvl, "load", no_loading)
    monkeypatch.setattr(internvl, "load_vision_only", no_loading)
    with pytest.raises(ValueError, match="vggt_weights must be one of fp32, half, got 'fp16'"):
        SpaceMind.from_pretrained(ckpt, vggt_weights="fp16")


def test_missing_or_mismatched_fusion_weights_refused(ckpt, tmp_path):
    folder = _copy(ckpt, tmp_path / "nofusion")
    (folder / "fusion.safetensors").unlink()
    with pytest.raises(CheckpointError, match="fusion.safetensors missing"):
        SpaceMind.from_pretrained(folder)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["cgmf"]["d_a"] = 16
    (folder / "config.json").write_text(json.dumps(cfg))
    shutil.copy(ckpt / "fusion.safetensors", folder / "fusion.safetensors")
    with pytest.raises(CheckpointError, match="does not match the CGMF config"):
        SpaceMind.from_pretrained(folder)


# ----------------------------------------------------------------------------------- fingerprints
def test_fingerprints(ckpt, sm, tmp_path):
    enc_fp, ckpt_id = encoder_fingerprint(ckpt), checkpoint_id(ckpt)
    assert sm.encoder_fingerprint == enc_fp and sm.checkpoint_id == ckpt_id

    moved = _copy(ckpt, tmp_path / "elsewhere" / "copy")  # another path, same content
    assert encoder_fingerprint(moved) == enc_fp and checkpoint_id(moved) == ckpt_id

    def changed(what: str, edit) -> tuple[bool, bool]:
        folder = _copy(ckpt, tmp_path / what)  # a fresh path per edit: no memo can hide it
        edit(folder)
        return encoder_fingerprint(folder) != enc_fp, checkpoint_id(folder) != ckpt_id

    weights = "internvl/model.safetensors"
    assert changed("vggt", lambda f: _edit_tensor(f / "vggt/model.safetensors", "aggregator.")) == (True, True)
    assert changed("vision", lambda f: _edit_tensor(f / weights, "vision_tower.")) == (True, True)
    assert changed("llm", lambda f: _edit_tensor(f / weights, "language_model.model.layers.1")) == (False, True)
    assert changed("projector", lambda f: _edit_tensor(f / weights, "multi_modal_projector.")) == (False, True)
    assert changed("head", lambda f: _edit_tensor(f / "vggt/model.safetensors", "camera_head.")) == (True, True)
    assert changed("fusion", lambda f: _edit_tensor(f / "fusion.safetensors", "q_proj")) == (False, True)

    def vggt_config(f: Path):
        cfg = json.loads((f / "vggt/config.json").read_text())
        cfg["rope_freq"] = 50.0  # same weights, different features
        (f / "vggt/config.json").write_text(json.dumps(cfg))

    def generation_config(f: Path):
        cfg = json.loads((f / "internvl/generation_config.json").read_text())
        cfg["eos_token_id"] = [0, 2]  # same weights, different answers
        (f / "internvl/generation_config.json").write_text(json.dumps(cfg))

    assert changed("vggt-config", vggt_config) == (True, True)
    assert changed("generation-config", generation_config) == (False, True)
    assert changed("prompt", lambda f: _write_config(f, num_frames=16)) == (False, True)


def test_encoder_only_load_gives_the_same_features_without_the_llm(ckpt, sm, clips):
    enc_only = SpaceMind.from_pretrained(ckpt, llm=False)
    lm_params = list(enc_only.internvl.model.language_model.parameters())
    assert lm_params and all(p.is_meta for p in lm_params)  # never allocated, never read
    assert all(p.is_meta for p in enc_only.internvl.model.multi_modal_projector.parameters())
    a, b = enc_only.encode(clips[0]), sm.encode(clips[0])
    for name in EncoderOutputs.TENSORS:
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    with pytest.raises(CheckpointError, match="encoding only"):
        enc_only.fuse(a)


def test_lazy_vggt_is_loaded_only_when_a_scene_needs_encoding(ckpt, sm, clips, encs):
    lazy = SpaceMind.from_pretrained(ckpt, lazy_vggt=True)
    assert lazy.vggt is None
    assert lazy.answer(encs[0], QUESTIONS[:2]) == sm.answer(encs[0], QUESTIONS[:2])
    assert lazy.vggt is None  # answering from features never touched VGGT
    assert torch.equal(lazy.encode(clips[0]).vggt_patch, encs[0].vggt_patch)
    assert lazy.vggt is not None


@pytest.mark.parametrize(
    "edit, named",
    [
        (lambda c: c["cgmf"].update(headz=8), "'headz'"),  # CGMFConfig used to drop it silently
        (lambda c: c["preprocess"].update(vit_sizes=448), "'vit_sizes'"),
        (lambda c: c["prompt"].update(system=""), "'system'"),
        (lambda c: c.update(fusion_weight="f.safetensors"), "'fusion_weight'"),
    ],
)
def test_an_unknown_setting_in_the_checkpoint_config_is_refused_by_name(ckpt, tmp_path, edit, named):
    bad = tmp_path / "bad"
    shutil.copytree(ckpt, bad)
    cfg = json.loads((bad / "config.json").read_text())
    edit(cfg)
    (bad / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=f"unknown setting.*{named}"):
        load_config(bad)


def test_vggt_config_refuses_unknown_keys_but_not_the_hubs_head_flags():
    from spacemind_cli.models.vggt import VGGTConfig

    hub = {"img_size": 518, "patch_size": 14, "embed_dim": 1024,
           "enable_camera": True, "enable_point": True, "enable_depth": True, "enable_track": True}
    assert VGGTConfig.from_dict(hub) == VGGTConfig()
    with pytest.raises(ValueError, match="unknown setting.*'emb_dim'"):
        VGGTConfig.from_dict({"emb_dim": 1024})
