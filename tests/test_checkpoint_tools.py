"""checkpoint assemble / inspect and LoRA merging, on the tiny checkpoint's parts."""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from spacemind_cli.errors import CheckpointError
from spacemind_cli.models import internvl
from spacemind_cli.models.assemble import assemble
from spacemind_cli.models.checkpoint import checkpoint_id, copy_folder, encoder_fingerprint
from spacemind_cli.models.inspect import inspect
from spacemind_cli.models.lora import merge_lora
from spacemind_cli.models.preprocess import prepare
from spacemind_cli.models.spacemind import SpaceMind
from spacemind_cli.scenes import Sampling, discover_scenes, load_clip

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
QUESTIONS = ["How many chair are in this room?", "Describe the scene.", "What colour is the largest object?"]
SMALL_CGMF = dict(d_a=32, num_heads=4, hidden=32)  # keep fresh tiny CGMFs tiny


pytestmark = pytest.mark.usefixtures("one_torch_thread")




@pytest.fixture(scope="module")
def sm(ckpt) -> SpaceMind:
    return SpaceMind.from_pretrained(ckpt)


@pytest.fixture(scope="module")
def enc(sm):
    scene = discover_scenes(EXAMPLES / "videos" / "synthetic")[3]
    return sm.encode(prepare(load_clip(scene, Sampling(6)).frames, sm.config.preprocess))


def _parts(ckpt: Path) -> dict:
    return {"base": ckpt / "internvl", "vggt": ckpt / "vggt"}


# ----------------------------------------------------------------------------------- assemble
def test_assemble_fresh_cgmf_answers_like_plain_internvl(ckpt, enc, tmp_path):
    fresh = assemble(tmp_path / "fresh", **_parts(ckpt), cgmf_overrides=SMALL_CGMF, num_frames=6)
    plain = assemble(tmp_path / "plain", **_parts(ckpt), fusion="none")
    a, b = SpaceMind.from_pretrained(fresh), SpaceMind.from_pretrained(plain)

    cfg = a.config
    assert cfg.fusion == "cgmf" and cfg.cgmf.init == "residual_zero" and cfg.num_frames == 6
    assert (cfg.cgmf.d_v, cfg.cgmf.d_s, cfg.cgmf.d_a) == (64, 64, 32)  # text hidden, 2 x VGGT embed_dim
    assert (cfg.preprocess.vggt_size, cfg.preprocess.vit_size) == (56, 64)  # from the encoders' configs
    assert b.fusion is None and not (plain / "fusion.safetensors").exists()

    # residual_zero: the fused tokens are exactly the projector's, so the answers are InternVL's.
    assert torch.equal(a.fuse(enc), b.fuse(enc))
    assert a.answer(enc, QUESTIONS) == b.answer(enc, QUESTIONS)
    assert a.fusion.q_proj.weight.abs().sum() > 0  # ... though every other CGMF layer is random

    # Encoders unchanged: features cached with the source checkpoint stay valid.
    assert encoder_fingerprint(fresh) == encoder_fingerprint(plain) == encoder_fingerprint(ckpt)
    # Weights are hard links, small files copies (editing them must not edit the source).
    src = ckpt / "internvl" / "model.safetensors"
    assert os.path.samefile(fresh / "internvl" / "model.safetensors", src)
    assert os.path.samefile(fresh / "vggt" / "model.safetensors", ckpt / "vggt" / "model.safetensors")
    assert not os.path.samefile(fresh / "internvl" / "config.json", ckpt / "internvl" / "config.json")
    # Deterministic: the same inputs give the same checkpoint id.
    again = assemble(tmp_path / "again", **_parts(ckpt), cgmf_overrides=SMALL_CGMF, num_frames=6, link=False)
    assert checkpoint_id(again) == checkpoint_id(fresh)
    assert not os.path.samefile(again / "internvl" / "model.safetensors", src)


def test_copy_folder_links_weights_copies_small_files_and_can_redo_a_copy(tmp_path):
    """What assemble and the trained-checkpoint export need: weights (a VGGT folder's model.pt
    too, when asked) hard-linked, config and tokenizer files copied; copying again into the same
    folder keeps the links and replaces a small file that an older copy had linked."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    for name, data in [("model.safetensors", b"W"), ("model.pt", b"P"), ("config.json", b"{}"),
                       ("tokenizer.json", b"T"), (".hidden", b"H")]:
        (src / name).write_bytes(data)

    assert copy_folder(src, tmp_path / "default", True, "src") == ["config.json", "model.safetensors", "tokenizer.json"]

    dst.mkdir()
    os.link(src / "config.json", dst / "config.json")  # an older export's linked config
    placed = copy_folder(src, dst, True, "src", skip_pickled=False)
    assert placed == ["config.json", "model.pt", "model.safetensors", "tokenizer.json"]
    assert os.path.samefile(dst / "model.safetensors", src / "model.safetensors")
    assert os.path.samefile(dst / "model.pt", src / "model.pt")
    for name in ("config.json", "tokenizer.json"):
        assert not os.path.samefile(dst / name, src / name)
    (dst / "config.json").write_text('{"edited": true}')
    assert (src / "config.json").read_text() == "{}"

    assert copy_folder(src, dst, True, "src", skip_pickled=False) == placed  # again: links kept, copies redone
    assert os.path.samefile(dst / "model.safetensors", src / "model.safetensors")
    assert (dst / "config.json").read_text() == "{}"


def test_assemble_with_trained_fusion_weights_reproduces_the_checkpoint(ckpt, sm, enc, tmp_path):
    tiny_cgmf = {k: v for k, v in sm.config.cgmf.to_dict().items() if k not in ("d_v", "d_s")}
    out = assemble(
        tmp_path / "trained", **_parts(ckpt), fusion_weights=ckpt / "fusion.safetensors", cgmf_overrides=tiny_cgmf
    )
    again = SpaceMind.from_pretrained(out)
    assert again.answer(enc, QUESTIONS) == sm.answer(enc, QUESTIONS)
    assert torch.equal(again.fuse(enc), sm.fuse(enc))


def test_assemble_accepts_a_bare_vggt_weight_file(ckpt, tmp_path):
    out = assemble(tmp_path / "bare", base=ckpt / "internvl", vggt=ckpt / "vggt" / "model.safetensors")
    # Beside its config.json, so that config is used (not VGGT-1B's).
    assert json.loads((out / "vggt" / "config.json").read_text())["embed_dim"] == 32
    assert SpaceMind.from_pretrained(out).fusion.config.d_s == 64


def test_assemble_refusals(ckpt, tmp_path):
    parts = _parts(ckpt)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "x").write_text("")
    cases = [
        (dict(out_dir=busy, **parts), "already exists"),
        (dict(out_dir=tmp_path / "o1", base=ckpt / "vggt", vggt=ckpt / "vggt"), "model_type"),
        (dict(out_dir=tmp_path / "o2", base=ckpt / "internvl", vggt=ckpt / "internvl"), "not a VGGT"),
        (dict(out_dir=tmp_path / "o2b", base=ckpt / "internvl", vggt=busy), "neither model.safetensors"),
        (dict(out_dir=tmp_path / "o3", **parts, fusion="concat"), "unknown fusion"),
        (dict(out_dir=tmp_path / "o4", **parts, fusion="none", fusion_weights=ckpt / "fusion.safetensors"), "fusion = none"),
        (dict(out_dir=tmp_path / "o5", **parts, cgmf_overrides={"heads": 4}), "unknown CGMF settings"),
        (dict(out_dir=tmp_path / "o6", **parts, cgmf_overrides={"d_v": 128}), "conflicts"),
        (dict(out_dir=tmp_path / "o7", **parts, cgmf_overrides={"d_a": 30, "num_heads": 4}), "divisible"),
        (dict(out_dir=tmp_path / "o8", base=tmp_path / "nowhere", vggt=ckpt / "vggt"), "not a folder"),
    ]
    for kwargs, match in cases:
        with pytest.raises(CheckpointError, match=match):
            assemble(**kwargs)
    # VGGT weights that do not fit their config are refused from the header alone.
    wrong = tmp_path / "wrong_vggt"
    shutil.copytree(ckpt / "vggt", wrong)
    cfg = json.loads((wrong / "config.json").read_text())
    cfg["embed_dim"], cfg["num_heads"] = 64, 4
    (wrong / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="shape mismatch"):
        assemble(tmp_path / "o9", base=ckpt / "internvl", vggt=wrong)
    # Nothing half-written is left behind.
    assert not [p for p in tmp_path.iterdir() if p.name.startswith((".o", "o"))]


def test_fusion_weights_shape_mismatch_refused(ckpt, tmp_path):
    # The tiny CGMF has d_a=32; the default config here has d_a=1024.
    with pytest.raises(CheckpointError, match=r"do not match the CGMF config .*q_proj.weight is \[32, 64\]"):
        assemble(tmp_path / "x", **_parts(ckpt), fusion_weights=ckpt / "fusion.safetensors")
    state = load_file(str(ckpt / "fusion.safetensors"))
    state.pop("gate_1.weight")
    save_file(state, str(tmp_path / "partial.safetensors"))
    with pytest.raises(CheckpointError, match="missing gate_1.weight"):
        assemble(tmp_path / "y", **_parts(ckpt), fusion_weights=tmp_path / "partial.safetensors", cgmf_overrides=SMALL_CGMF)
    torch.save(state, tmp_path / "fusion.pt")
    with pytest.raises(CheckpointError, match="only .safetensors"):
        assemble(tmp_path / "z", **_parts(ckpt), fusion_weights=tmp_path / "fusion.pt", cgmf_overrides=SMALL_CGMF)


# ----------------------------------------------------------------------------------- LoRA
TARGETS = [f"layers.{i}.self_attn.{p}" for i in (0, 1) for p in ("q_proj", "v_proj")]


def _adapter(folder: Path, model, *, prefix="base_model.model.model.language_model.", r=4, alpha=8, rslora=False, extra=None):
    """A PEFT-format adapter with random A/B for q_proj/v_proj of the tiny LLM."""
    g = torch.Generator().manual_seed(7)
    modules = dict(model.named_modules())
    tensors = {}
    for t in TARGETS:
        lin = modules[f"model.language_model.{t}"]
        tensors[f"{prefix}{t}.lora_A.weight"] = torch.randn(r, lin.in_features, generator=g) * 0.5
        tensors[f"{prefix}{t}.lora_B.weight"] = torch.randn(lin.out_features, r, generator=g) * 0.5
    tensors.update(extra or {})
    folder.mkdir(parents=True)
    save_file(tensors, str(folder / "adapter_model.safetensors"))
    cfg = {
        "peft_type": "LORA", "r": r, "lora_alpha": alpha, "use_rslora": rslora,
        "target_modules": ["q_proj", "v_proj"], "task_type": "CAUSAL_LM", "bias": "none",
    }  # fmt: skip
    (folder / "adapter_config.json").write_text(json.dumps(cfg))
    return tensors


def _merged(weight, want) -> bool:
    """The merge is one fused addmm: W + scale * B @ A rounded once, not the reference's three
    roundings; a wrong scale or module is off by far more than fp32's rounding."""
    return torch.allclose(weight, want, rtol=0, atol=2e-6)


def _expected(base_model, tensors, prefix, scale):
    modules = dict(base_model.named_modules())
    return {
        t: modules[f"model.language_model.{t}"].weight + (tensors[f"{prefix}{t}.lora_B.weight"] @ tensors[f"{prefix}{t}.lora_A.weight"]) * scale
        for t in TARGETS
    }


def test_lora_assembled_and_merged_exactly(ckpt, sm, enc, tmp_path, caplog):
    prefix = "base_model.model.model.language_model."
    tensors = _adapter(tmp_path / "adapter", sm.internvl, prefix=prefix)
    out = assemble(tmp_path / "with_lora", **_parts(ckpt), lora=tmp_path / "adapter", cgmf_overrides=SMALL_CGMF)
    assert (out / "lora" / "adapter_model.safetensors").is_file()
    with caplog.at_level(logging.INFO, logger="spacemind_cli.models.lora"):
        merged = SpaceMind.from_pretrained(out)
    lines = [r.getMessage() for r in caplog.records if r.name == "spacemind_cli.models.lora"]
    assert len(lines) == 1 and "merged 4 modules" in lines[0], lines
    modules = dict(merged.internvl.named_modules())
    for t, want in _expected(sm.internvl, tensors, prefix, 8 / 4).items():
        assert _merged(modules[f"model.language_model.{t}"].weight, want), t
    # Only those weights moved.
    other = "model.language_model.layers.0.mlp.up_proj"
    assert torch.equal(modules[other].weight, dict(sm.internvl.named_modules())[other].weight)

    plain = SpaceMind.from_pretrained(assemble(tmp_path / "no_lora", **_parts(ckpt), fusion="none"))
    assert merged.answer(enc, QUESTIONS) != plain.answer(enc, QUESTIONS)
    assert encoder_fingerprint(out) == encoder_fingerprint(ckpt)  # LoRA never touches the encoders
    assert checkpoint_id(out) != checkpoint_id(tmp_path / "no_lora")
    report = inspect(out)
    lora = next(c for c in report["components"] if c["key"] == "lora")
    assert lora["modules"] == 4 and lora["parameters"] == sum(v.numel() for v in tensors.values())
    assert "r=4 alpha=8" in report["config"]["lora"]


@pytest.mark.parametrize(
    "prefix",
    [
        "base_model.model.language_model.model.",  # transformers 4.x / original InternVL names
        "base_model.model.model.",  # only the causal LM was wrapped
        "base_model.model.",  # only the decoder was wrapped
    ],
)
def test_lora_key_spellings_map_to_the_same_modules(ckpt, sm, tmp_path, prefix):
    tensors = _adapter(tmp_path / "a", sm.internvl, prefix=prefix, rslora=True, r=4, alpha=6)
    model, _ = internvl.load(str(ckpt / "internvl"), device="cpu", dtype=torch.float32)
    plan = merge_lora(model, tmp_path / "a")
    assert plan.num_modules == 4
    modules = dict(model.named_modules())
    for t, want in _expected(sm.internvl, tensors, prefix, 6 / math.sqrt(4)).items():  # rsLoRA: alpha / sqrt(r)
        assert _merged(modules[f"model.language_model.{t}"].weight, want), t


def test_lora_modules_to_save_and_rank_pattern(ckpt, sm, tmp_path):
    prefix = "base_model.model.model.language_model."
    head = torch.randn_like(sm.internvl.lm_head.weight)
    tensors = _adapter(tmp_path / "a", sm.internvl, prefix=prefix, extra={"base_model.model.lm_head.weight": head})
    cfg = json.loads((tmp_path / "a" / "adapter_config.json").read_text())
    cfg["alpha_pattern"] = {"v_proj": 2}
    (tmp_path / "a" / "adapter_config.json").write_text(json.dumps(cfg))
    model, _ = internvl.load(str(ckpt / "internvl"), device="cpu", dtype=torch.float32)
    merge_lora(model, tmp_path / "a")
    assert torch.equal(model.lm_head.weight, head)
    modules = dict(model.named_modules())
    q, v = "layers.0.self_attn.q_proj", "layers.0.self_attn.v_proj"
    assert _merged(modules[f"model.language_model.{q}"].weight, _expected(sm.internvl, tensors, prefix, 8 / 4)[q])
    assert _merged(modules[f"model.language_model.{v}"].weight, _expected(sm.internvl, tensors, prefix, 2 / 4)[v])


def test_lora_refusals(ckpt, sm, tmp_path):
    model, _ = internvl.load(str(ckpt / "internvl"), device="cpu", dtype=torch.float32)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    bad_key = "base_model.model.model.language_model.layers.0.self_attn.qkv_proj.lora_A.weight"
    cases = {
        "unmappable": ({bad_key: torch.zeros(4, 64), bad_key.replace("lora_A", "lora_B"): torch.zeros(64, 4)}, bad_key),
        "vision": (
            {
                "base_model.model.model.vision_tower.encoder.layer.0.attention.q_proj.lora_A.weight": torch.zeros(4, 32),
                "base_model.model.model.vision_tower.encoder.layer.0.attention.q_proj.lora_B.weight": torch.zeros(32, 4),
            },
            "vision tower",
        ),
        "lora_bias": (
            {"base_model.model.model.language_model.layers.0.self_attn.q_proj.lora_B.bias": torch.zeros(64)},
            "unsupported LoRA tensor",
        ),
        "unpaired": ({bad_key.replace("qkv_proj", "k_proj"): torch.zeros(4, 64)}, "no matching lora_B"),
        "shape": (
            {
                "base_model.model.model.language_model.layers.0.self_attn.q_proj.lora_A.weight": torch.zeros(4, 32),
                "base_model.model.model.language_model.layers.0.self_attn.q_proj.lora_B.weight": torch.zeros(64, 4),
            },
            "B @ A is",
        ),
    }
    for name, (extra, match) in cases.items():
        folder = tmp_path / name
        _adapter(folder, sm.internvl, extra=extra)
        with pytest.raises(CheckpointError, match=match):
            merge_lora(model, folder)
        if name == "unmappable":  # refused at assemble time as well, from the meta-device model
            with pytest.raises(CheckpointError, match="qkv_proj"):
                assemble(tmp_path / "asm", **_parts(ckpt), lora=folder)
    # All checks run before any weight changes.
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "adapter_config.json").write_text(json.dumps({"r": 4, "lora_alpha": 8}))
    (pickled / "adapter_model.bin").write_bytes(b"not unpickled")
    with pytest.raises(CheckpointError, match="never loaded"):
        merge_lora(model, pickled)
    (pickled / "adapter_config.json").write_text(json.dumps({"r": 4, "lora_alpha": 8, "use_dora": True}))
    with pytest.raises(CheckpointError, match="DoRA"):
        merge_lora(model, pickled)


# ----------------------------------------------------------------------------------- inspect
def test_inspect_counts_equal_the_loaded_modules(ckpt, sm, monkeypatch):
    import safetensors.torch
    import transformers

    def no_loading(*a, **k):
        raise AssertionError("inspect must not load weights")

    monkeypatch.setattr(safetensors.torch, "load_file", no_loading)
    monkeypatch.setattr(transformers.InternVLForConditionalGeneration, "from_pretrained", no_loading)
    report = inspect(ckpt)
    monkeypatch.undo()

    counts = {c["key"]: c["parameters"] for c in report["components"]}

    def n(module):
        return sum(p.numel() for p in module.parameters())

    inner = sm.internvl.model
    assert counts == {
        "internvl.vision": n(inner.vision_tower),
        "internvl.projector": n(inner.multi_modal_projector),
        "internvl.llm": n(inner.language_model) + n(sm.internvl.lm_head),
        "vggt.aggregator": n(sm.vggt.aggregator),
        "vggt.camera_head": n(sm.vggt.camera_head),
        "cgmf": n(sm.fusion),
    }
    assert report["parameters"] == n(sm.internvl) + n(sm.vggt) + n(sm.fusion)
    assert all(c["expected"] == c["parameters"] and c["dtypes"] == ["float32"] for c in report["components"])
    assert report["missing"] == []
    assert report["fingerprints"] == {"encoder_fingerprint": sm.encoder_fingerprint, "checkpoint_id": sm.checkpoint_id}
    assert report["config"]["fusion"] == "cgmf" and report["config"]["num_frames"] == 32
    assert "d_a=32" in report["config"]["cgmf"] and report["details"]["preprocess"]["vggt_size"] == 56


def _index_with_a_missing_shard(internvl_folder: Path) -> None:
    weight_map = {"lm_head.weight": "model.safetensors", "model.norm.weight": "model-00002-of-00002.safetensors"}
    (internvl_folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))


def test_a_missing_shard_is_named_by_assemble_inspect_and_load(ckpt, tmp_path):
    folder = tmp_path / "ckpt"
    shutil.copytree(ckpt, folder)
    _index_with_a_missing_shard(folder / "internvl")
    assert internvl.missing_shards(folder / "internvl") == {"model-00002-of-00002.safetensors": ["model.norm.weight"]}
    assert internvl.missing_shards(ckpt / "internvl") == {}  # no index: nothing listed, nothing missing
    with pytest.raises(CheckpointError, match="shard model-00002-of-00002.safetensors listed in "
                                              "model.safetensors.index.json is missing"):
        assemble(tmp_path / "out", base=folder / "internvl", vggt=folder / "vggt")
    assert "InternVL shard model-00002-of-00002.safetensors (listed in model.safetensors.index.json)" in inspect(folder)["missing"]
    with pytest.raises(CheckpointError, match=r"shard\(s\) model-00002-of-00002.safetensors .* 1 weights are not there"):
        internvl.load(folder / "internvl", device="cpu", dtype=torch.float32)
    (folder / "internvl" / "model.safetensors.index.json").write_text("[]")
    with pytest.raises(CheckpointError, match="model.safetensors.index.json is unreadable"):
        inspect(folder)


def test_inspect_reports_missing_weights(ckpt, tmp_path):
    no_fusion = tmp_path / "no_fusion"
    shutil.copytree(ckpt, no_fusion)
    (no_fusion / "fusion.safetensors").unlink()
    report = inspect(no_fusion)
    assert any("fusion.safetensors" in m for m in report["missing"])
    assert next(c for c in report["components"] if c["key"] == "cgmf")["parameters"] == 0

    no_vision = tmp_path / "no_vision"
    shutil.copytree(ckpt, no_vision)
    weights = no_vision / "internvl" / "model.safetensors"
    state = load_file(str(weights))
    dropped = {k: v for k, v in state.items() if not k.startswith("vision_tower.") and k != "language_model.model.norm.weight"}
    save_file(dropped, str(weights), metadata={"format": "pt"})
    report = inspect(no_vision)
    assert any(m.startswith("InternVL vision tower: no") for m in report["missing"])
    assert any(m.startswith("InternVL LLM:") and " of " in m for m in report["missing"])
    assert report["fingerprints"]["encoder_fingerprint"].startswith("unavailable")

    no_vggt = tmp_path / "no_vggt"
    shutil.copytree(ckpt, no_vggt)
    shutil.rmtree(no_vggt / "vggt")
    report = inspect(no_vggt)  # reported, not raised
    assert any("vggt 'vggt' not found" in m for m in report["missing"])
    assert report["fingerprints"]["checkpoint_id"].startswith("unavailable")

    with pytest.raises(CheckpointError, match="not a folder"):
        inspect(tmp_path / "nowhere")
    outside = tmp_path / "outside"
    outside.mkdir()
    cfg = json.loads((ckpt / "config.json").read_text())
    cfg["base"], cfg["vggt"] = str(ckpt / "internvl"), str(ckpt / "vggt")
    (outside / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="outside the checkpoint folder"):
        inspect(outside)
    assert inspect(outside, trusted_paths=[ckpt])["components"][0]["parameters"] > 0


def test_cli_assemble_and_inspect(ckpt, tmp_path):
    from typer.testing import CliRunner

    from spacemind_cli.cli.main import app

    runner = CliRunner()
    out = tmp_path / "cli"
    res = runner.invoke(app, ["checkpoint", "assemble", str(out), "--base", str(ckpt / "internvl"), "--vggt", str(ckpt / "vggt")])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["checkpoint", "inspect", str(out)])
    assert res.exit_code == 0, res.output
    assert "CGMF fusion" in res.output and "residual_zero" in res.output
    res = runner.invoke(app, ["checkpoint", "assemble", str(out), "--base", str(ckpt / "internvl"), "--vggt", str(ckpt / "vggt")])
    assert res.exit_code == 3  # CheckpointError: the folder is not empty


def test_a_truncated_shard_is_refused_by_assemble_and_fails_inspect(ckpt, tmp_path):
    """#22.3: assemble accepted a base with a truncated shard (exit 0); inspect printed what was
    missing or unavailable and exited 0. Both exit 3 now, naming the file."""
    from typer.testing import CliRunner

    from spacemind_cli.cli.main import app

    runner = CliRunner()
    folder = tmp_path / "ckpt"
    shutil.copytree(ckpt, folder)
    shard = folder / "internvl" / "model.safetensors"
    shard.write_bytes(shard.read_bytes()[:-4096])  # a download cut short
    res = runner.invoke(app, ["checkpoint", "assemble", str(tmp_path / "out"), "--base", str(folder / "internvl"),
                              "--vggt", str(folder / "vggt")])
    assert res.exit_code == 3, res.output
    assert str(shard) in "".join(res.output.split()) and "truncated" in res.output
    assert not (tmp_path / "out").exists()
    with pytest.raises(CheckpointError, match="truncated"):
        assemble(tmp_path / "out", base=folder / "internvl", vggt=folder / "vggt")

    report = inspect(folder)
    assert not report["complete"] and any(str(shard) in m and "truncated" in m for m in report["missing"])
    res = runner.invoke(app, ["checkpoint", "inspect", str(folder)])
    assert res.exit_code == 3, res.output
    assert "missing:" in res.output and "incomplete or broken" in res.output

    no_fusion = tmp_path / "no_fusion"  # a missing file, not a broken one: exit 3 as well
    shutil.copytree(ckpt, no_fusion)
    (no_fusion / "fusion.safetensors").unlink()
    assert runner.invoke(app, ["checkpoint", "inspect", str(no_fusion)]).exit_code == 3
    cut = tmp_path / "cut_vggt"
    shutil.copytree(ckpt, cut)
    vggt = cut / "vggt" / "model.safetensors"
    vggt.write_bytes(vggt.read_bytes()[:100])
    report = inspect(cut)  # reported, not raised
    assert not report["complete"] and any(str(vggt) in m for m in report["missing"])
    assert inspect(ckpt)["complete"]
    assert runner.invoke(app, ["checkpoint", "inspect", str(ckpt)]).exit_code == 0


def test_lora_merge_equals_peft_merge_and_leaves_plain_layers(ckpt, sm, tmp_path):
    """Our merge is PEFT's (its LoRA model over the same modules, merge_and_unload), to fp32
    rounding, and leaves the model's own Linear layers."""
    import warnings

    from peft import LoraConfig, get_peft_model
    from peft.utils import set_peft_model_state_dict

    prefix = "base_model.model.model.language_model."
    tensors = _adapter(tmp_path / "a", sm.internvl, prefix=prefix, r=4, alpha=6, rslora=True)
    model, _ = internvl.load(str(ckpt / "internvl"), device="cpu", dtype=torch.float32)
    merge_lora(model, tmp_path / "a")
    reference, _ = internvl.load(str(ckpt / "internvl"), device="cpu", dtype=torch.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        peft_model = get_peft_model(reference, LoraConfig(r=4, lora_alpha=6, use_rslora=True, lora_dropout=0.0,
                                                          target_modules=[f"model.language_model.{t}" for t in TARGETS]))
    set_peft_model_state_dict(peft_model, {k.replace(prefix, "base_model.model.model.language_model."): v
                                           for k, v in tensors.items()})
    peft_model.merge_and_unload()
    ours, theirs = dict(model.named_modules()), dict(reference.named_modules())
    for t in TARGETS:
        name = f"model.language_model.{t}"
        assert not torch.equal(ours[name].weight, sm.internvl.get_submodule(name).weight), t
        assert _merged(ours[name].weight, theirs[name].weight), t
    assert not any("lora" in name for name, _ in model.named_modules())
    assert type(model.model.language_model.layers[0].self_attn.q_proj) is torch.nn.Linear
    assert len(tensors) == 8
