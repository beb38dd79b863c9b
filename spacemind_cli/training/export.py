"""The trained model as a complete SpaceMind checkpoint folder, loadable by `answer`, `extract`,
`eval` and `checkpoint inspect` as is:

    NEW_CKPT/config.json          the base's config with the trained fusion and `lora: "lora"`
    NEW_CKPT/fusion.safetensors   the trained CGMF
    NEW_CKPT/lora/                the LoRA adapter in PEFT's format (+ the projector, when trained,
                                  as PEFT `modules_to_save` tensors)
    NEW_CKPT/internvl/, vggt/     the base's frozen weights hard-linked (copied across devices), its
                                  small files (configs, tokenizer) copied: editing them edits no base
    NEW_CKPT/training/            the run: config, log.jsonl, loss.png, resumable state

config.json is written last: until the run has finished, the folder is not a checkpoint.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from ..files import atomic_write, atomic_write_text
from ..models.checkpoint import SpaceMindConfig, copy_folder, load_config, resolve_component, versions
from .config import TrainConfig

log = logging.getLogger(__name__)

ADAPTER = "lora"


def _component(base: Path, ref: str, what: str, out: Path, name: str, trusted) -> str:
    """Where the new checkpoint finds a frozen component: its own folder when the base has one
    on disk, else the same reference (a hub id)."""
    src = resolve_component(base, ref, what, trusted)
    if not Path(src).is_dir():
        return src
    copy_folder(Path(src), out / name, link=True, what=f"{what} {src}", skip_pickled=False)
    return name


def export_checkpoint(spec, model, cfg: TrainConfig, tensors: dict) -> Path:
    """`tensors`: `parallel.export_tensors` (full CGMF, LoRA and projector tensors by name)."""
    from safetensors.torch import save_file

    out = Path(spec.output)
    base = Path(spec.base_checkpoint)
    trusted = spec.settings.trusted_paths
    base_cfg = load_config(base)
    config = SpaceMindConfig.from_dict(base_cfg.to_dict())
    config.base = _component(base, base_cfg.base, "base (InternVL)", out, "internvl", trusted)
    if base_cfg.vggt is not None:  # a plain-InternVL base (fusion none) has none to carry over
        config.vggt = _component(base, base_cfg.vggt, "vggt", out, "vggt", trusted)
    sm = model.sm
    config.fusion = "cgmf" if sm.fusion is not None else "none"
    if sm.fusion is not None:
        config.cgmf = sm.fusion.config
        state = {k.removeprefix("fusion."): v for k, v in tensors.items() if k.startswith("fusion.")}
        atomic_write(out / config.fusion_weights, lambda tmp: save_file(state, tmp, metadata={"format": "pt"}))
    config.lora = _write_adapter(out / ADAPTER, model, cfg, tensors)
    # the frames the model was trained on are the ones it should be asked with
    config.num_frames, config.sampling = spec.settings.num_frames, spec.settings.sampling
    config.versions = versions()
    atomic_write_text(out / "config.json", lambda fh: fh.write(json.dumps(config.to_dict(), indent=2) + "\n"))
    log.info("wrote the trained checkpoint %s", out)
    return out


def adapter_key(name: str) -> str:
    """A trained parameter's name in the SpaceMind -> its key in a PEFT adapter file."""
    return "base_model.model." + name.removeprefix("internvl.").replace(".default.", ".")


def _write_adapter(folder: Path, model, cfg: TrainConfig, tensors: dict) -> str | None:
    """The LoRA adapter in PEFT's format (adapter_config.json + adapter_model.safetensors) and the
    trained projector as `modules_to_save` tensors, or None when neither was trained."""
    from safetensors.torch import save_file

    lora = {adapter_key(k): v for k, v in tensors.items() if ".lora_" in k}
    projector = {adapter_key(k): v for k, v in tensors.items()
                 if "projector" in cfg.train and k.startswith("internvl.model.multi_modal_projector.")}
    if not lora and not projector:
        return None
    folder.mkdir(parents=True, exist_ok=True)
    if model.peft is not None:
        model.peft.peft_config["default"].save_pretrained(str(folder))
        adapter_config = json.loads((folder / "adapter_config.json").read_text())
    else:
        adapter_config = {"peft_type": "LORA", "r": cfg.lora_rank, "lora_alpha": cfg.lora_alpha, "target_modules": []}
    if projector:
        adapter_config["modules_to_save"] = ["multi_modal_projector"]
    weights = lora | projector
    atomic_write(folder / "adapter_model.safetensors", lambda tmp: save_file(weights, tmp, metadata={"format": "pt"}))
    atomic_write_text(folder / "adapter_config.json", lambda fh: fh.write(json.dumps(adapter_config, indent=2) + "\n"))
    return ADAPTER


def plot_loss(log_path: Path, out: Path) -> Path | None:
    """The loss curve (and eval scores, when there are some) as a PNG."""
    if not log_path.is_file():
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    steps = [r["step"] for r in rows if "loss" in r]
    if not steps:
        return None
    fig, ax = plt.subplots(figsize=(7, 3.6), dpi=110)
    ax.plot(steps, [r["loss"] for r in rows if "loss" in r], color="#3366cc", lw=1.4, label="train loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (per target token)")
    ax.grid(alpha=0.3)
    evals = [(r["step"], r["eval"].get("overall")) for r in rows if isinstance(r.get("eval"), dict)]
    evals = [(s, v) for s, v in evals if v is not None]
    if evals:
        ax2 = ax.twinx()
        ax2.plot([s for s, _ in evals], [v for _, v in evals], "o-", color="#dd7722", label="eval score")
        ax2.set_ylabel("eval score")
    ax.set_title("spacemind train")
    fig.tight_layout()
    atomic_write(out, lambda tmp: fig.savefig(tmp, format="png"))
    plt.close(fig)
    return out
