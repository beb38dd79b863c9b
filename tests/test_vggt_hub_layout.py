"""VGGT-1B as the hub has it: `config.json` (PyTorchModelHubMixin's init kwargs, with the head
flags) + `model.safetensors`, and `model.pt` (a plain state dict, read with weights_only), both
holding the depth / point / track heads SpaceMind does not build."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from spacemind_cli.errors import CheckpointError
from spacemind_cli.models.assemble import assemble
from spacemind_cli.models.inspect import inspect
from spacemind_cli.models.preprocess import prepare
from spacemind_cli.models.spacemind import SpaceMind
from spacemind_cli.scenes import Sampling, discover_scenes, load_clip

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _hub_state(tiny_ckpt: Path) -> dict[str, torch.Tensor]:
    state = load_file(str(tiny_ckpt / "vggt" / "model.safetensors"))
    g = torch.Generator().manual_seed(0)
    for head in ("depth_head.scratch.output_conv2.0.weight", "point_head.projects.0.bias", "track_head.fnet.norm.weight"):
        state[head] = torch.randn(8, generator=g)  # heads the hub file carries and SpaceMind skips
    return state


def _hub_config(tiny_ckpt: Path) -> dict:
    ours = json.loads((tiny_ckpt / "vggt" / "config.json").read_text())
    return {**ours, "enable_camera": True, "enable_point": True, "enable_depth": True, "enable_track": True}


@pytest.fixture
def hub_folders(tiny_ckpt, tmp_path) -> dict[str, Path]:
    state, cfg = _hub_state(tiny_ckpt), _hub_config(tiny_ckpt)
    both, pt_only = tmp_path / "VGGT-hub", tmp_path / "VGGT-pt"
    for folder in (both, pt_only):
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps(cfg))
        torch.save(state, folder / "model.pt")
    save_file(state, str(both / "model.safetensors"))
    return {"both": both, "pt": pt_only}


def test_hub_layouts_assemble_and_encode_alike(tiny_ckpt, hub_folders, tmp_path, examples):
    encs = {}
    scene = discover_scenes(examples / "videos")[2]
    for name, folder in hub_folders.items():
        ckpt = assemble(tmp_path / name, base=tiny_ckpt / "internvl", vggt=folder, fusion="none")
        files = sorted(p.name for p in (ckpt / "vggt").iterdir())
        assert files == (["config.json", "model.safetensors"] if name == "both" else ["config.json", "model.pt"])
        saved = json.loads((ckpt / "vggt" / "config.json").read_text())
        assert "enable_track" not in saved and saved["embed_dim"] == 32
        report = inspect(ckpt)
        assert report["missing"] == [], report["missing"]
        assert report["details"]["vggt_unused_head_parameters"] == 24  # the three heads' tensors, read, not built
        sm = SpaceMind.from_pretrained(ckpt)
        encs[name] = sm.encode(prepare(load_clip(scene, Sampling(2)).frames, sm.config.preprocess))
    reference = SpaceMind.from_pretrained(tiny_ckpt)
    ref = reference.encode(prepare(load_clip(scene, Sampling(2)).frames, reference.config.preprocess))
    for enc in encs.values():
        assert torch.equal(enc.vggt_patch, ref.vggt_patch) and torch.equal(enc.pose_enc, ref.pose_enc)


def test_a_bad_model_pt_is_refused_at_assemble(tiny_ckpt, hub_folders, tmp_path):
    folder = hub_folders["pt"]
    state = _hub_state(tiny_ckpt)
    key = next(k for k in state if k.startswith("aggregator.") and state[k].dim() == 2)
    state[key] = state[key][:, :-1].contiguous()
    torch.save(state, folder / "model.pt")
    with pytest.raises(CheckpointError, match=key.replace(".", r"\.")):
        assemble(tmp_path / "bad-shape", base=tiny_ckpt / "internvl", vggt=folder)
    # a pickle with anything but tensors is refused (weights_only), as is a file that is not torch's
    torch.save({**_hub_state(tiny_ckpt), "extra": Unpicklable()}, folder / "model.pt")
    with pytest.raises(CheckpointError, match="model.pt"):
        assemble(tmp_path / "unsafe", base=tiny_ckpt / "internvl", vggt=folder)
    (folder / "model.pt").write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError, match="model.pt"):
        assemble(tmp_path / "not-torch", base=tiny_ckpt / "internvl", vggt=folder)
    assert not any((tmp_path / n).exists() for n in ("bad-shape", "unsafe", "not-torch"))


class Unpicklable:
    """A class torch.load(weights_only=True) must refuse to build."""
