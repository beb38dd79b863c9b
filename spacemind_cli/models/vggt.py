"""VGGT (Visual Geometry Grounded Transformer) aggregator + camera head, weight-compatible with
the official `facebook/VGGT-1B` checkpoint (facebookresearch/vggt).

Our own implementation of the same math, in one file:

    images [B,S,3,H,W] in [0,1]
      -> ImageNet normalisation
      -> patch embed: DINOv2 ViT-L/14 with 4 registers (or a plain conv)     [B*S, Hp*Wp, C]
      -> per frame: [camera token, 4 register tokens, patch tokens]          [B*S, P, C], P = 5 + Hp*Wp
         (frame 0 uses the learned token set 0, every other frame set 1)
      -> depth x (frame block: attention inside each frame, global block: attention over all frames)
         layer i output = concat(frame-block out, global-block out)          [B, S, P, 2C]
    camera head: last layer's camera tokens [B,S,2C] -> 4 refinement iterations -> pose encoding
         [B,S,9] = [T (3), quaternion xyzw (4), fov_h, fov_w]; camera-from-world (OpenCV), frame 0 = world.

Parameter names and shapes equal the checkpoint's `aggregator.*` and `camera_head.*` tensors, so
`load_state_dict(strict=True)` works on that subset; `depth_head.*`, `point_head.*` and `track_head.*`
are skipped (we do not build those heads).

Numerics that matter (all mirrored from the reference, see tests/test_vggt.py for the parity test):
  * DINOv2 blocks and final norm use LayerNorm eps=1e-6; aggregator/camera-head blocks and their
    qk-norm use eps=1e-5; the camera head's adaLN norm is affine-free with eps=1e-6.
  * DINOv2 pos-embed: no interpolation when H == W and the patch count equals the checkpoint's grid
    (518x518 for VGGT-1B); otherwise bicubic with antialias=True to an explicit output size (no +0.1
    offset), computed in float32. Register tokens get no pos-embed. Only the final-normed patch
    tokens (x_norm_patchtokens) are kept; DINOv2's cls/register outputs are dropped.
  * 2-D RoPE (base 100): first half of each head's channels rotated by the y position, second half
    by x; within each half, rotate-half layout. Special tokens sit at position (0, 0) (identity
    rotation), patches at (y+1, x+1). We compute the rotation angles in float32 (the reference
    computes them in the query dtype, which is float32 under autocast since the qk-norm is a LayerNorm).
  * The camera head runs with autocast disabled, in the dtype of its own weights.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from spacemind_cli.errors import CheckpointError

from .config_dict import config_from_dict
from .preprocess import IMAGENET_MEAN, IMAGENET_STD

logger = logging.getLogger(__name__)

# The checkpoint's parts: what we load (strictly), and the heads we never build.
CHECKPOINT_PREFIXES = ("aggregator.", "camera_head.")
SKIPPED_PREFIXES = ("depth_head.", "point_head.", "track_head.")
# facebook/VGGT-1B's config.json holds its constructor's head switches (PyTorchModelHubMixin).
HUB_HEAD_FLAGS = ("enable_camera", "enable_point", "enable_depth", "enable_track")

# DINOv2-with-registers presets: name -> (embed_dim, depth, num_heads).
DINOV2_PRESETS = {
    "dinov2_vits14_reg": (384, 12, 6),
    "dinov2_vitb14_reg": (768, 12, 12),
    "dinov2_vitl14_reg": (1024, 24, 16),
    "dinov2_vitg2_reg": (1536, 40, 24),
}
PATCH_EMBEDS = ("conv", "dinov2", *DINOV2_PRESETS)

DINOV2_NORM_EPS = 1e-6  # DINOv2 blocks + final norm
BLOCK_NORM_EPS = 1e-5  # aggregator / camera-head blocks and qk-norm (torch default)
DINOV2_LAYERSCALE_INIT = 1.0
POSE_DIM = 9  # [T(3), quat xyzw(4), fov_h, fov_w]


# --------------------------------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------------------------------


@dataclass
class VGGTConfig:
    """Defaults = VGGT-1B (facebook/VGGT-1B)."""

    img_size: int = 518  # sets the DINOv2 pos-embed grid (img_size // patch_size)^2
    patch_size: int = 14
    embed_dim: int = 1024  # C; aggregator outputs are 2*C wide
    depth: int = 24  # number of (frame block, global block) pairs
    num_heads: int = 16
    mlp_ratio: float = 4.0
    num_register_tokens: int = 4  # per frame, after the camera token; also the DINOv2 registers
    rope_freq: float = 100.0  # <= 0 disables RoPE
    qk_norm: bool = True
    init_values: float = 0.01  # LayerScale init of the aggregator blocks
    # "dinov2_vit{s,b,l}14_reg" / "dinov2_vitg2_reg" (preset size), "dinov2" (size from the two
    # fields below) or "conv" (a single patchify conv). The DINOv2 width always equals embed_dim.
    patch_embed: str = "dinov2_vitl14_reg"
    patch_embed_depth: int | None = None  # DINOv2 blocks (None = from the preset)
    patch_embed_heads: int | None = None  # DINOv2 heads (None = from the preset)
    patch_embed_mlp_ratio: float = 4.0
    camera_trunk_depth: int = 4
    camera_num_heads: int = 16
    camera_mlp_ratio: float = 4.0
    camera_init_values: float = 0.01

    def __post_init__(self):
        if self.patch_embed not in PATCH_EMBEDS:
            raise ValueError(f"unknown patch_embed {self.patch_embed!r}; expected one of {PATCH_EMBEDS}")
        if self.patch_embed in DINOV2_PRESETS:
            dim, depth, heads = DINOV2_PRESETS[self.patch_embed]
            if dim != self.embed_dim:
                raise ValueError(f"patch_embed {self.patch_embed} is {dim} wide but embed_dim is {self.embed_dim}")
            self.patch_embed_depth = depth if self.patch_embed_depth is None else self.patch_embed_depth
            self.patch_embed_heads = heads if self.patch_embed_heads is None else self.patch_embed_heads
        elif self.patch_embed == "dinov2" and (self.patch_embed_depth is None or self.patch_embed_heads is None):
            raise ValueError("patch_embed='dinov2' needs patch_embed_depth and patch_embed_heads")
        if self.embed_dim % self.num_heads:
            raise ValueError(f"embed_dim {self.embed_dim} is not divisible by num_heads {self.num_heads}")
        if self.rope_freq > 0 and (self.embed_dim // self.num_heads) % 4:
            raise ValueError("2-D RoPE needs a head dim divisible by 4")
        if (2 * self.embed_dim) % self.camera_num_heads:
            raise ValueError(f"2*embed_dim is not divisible by camera_num_heads {self.camera_num_heads}")

    @property
    def patch_start_idx(self) -> int:
        return 1 + self.num_register_tokens

    @classmethod
    def from_dict(cls, d: Mapping) -> VGGTConfig:
        """Build from a dict; an unknown key is an error, except the hub config's flags for the
        depth / point / track heads, which we do not build (the camera head we always load)."""
        return config_from_dict(cls, d, where="VGGT config", ignore=HUB_HEAD_FLAGS)

    def to_dict(self) -> dict:
        return asdict(self)


# --------------------------------------------------------------------------------------------------
# Building blocks (names match the checkpoint: norm1 / attn.{qkv,q_norm,k_norm,proj} / ls1.gamma ...)
# --------------------------------------------------------------------------------------------------


class LayerScale(nn.Module):
    def __init__(self, dim: int, init_values: float):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), float(init_values)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Mlp(nn.Module):
    def __init__(self, dim_in: int, hidden: int, dim_out: int | None = None):
        super().__init__()
        self.fc1 = nn.Linear(dim_in, hidden)
        self.act = nn.GELU()  # exact (erf) GELU
        self.fc2 = nn.Linear(hidden, dim_out or dim_in)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


Rope = tuple[torch.Tensor, torch.Tensor]  # (cos, sin), each [N, head_dim], float32


def rope_cos_sin(pos: torch.Tensor, head_dim: int, freq: float) -> Rope:
    """2-D RoPE tables for integer positions pos [N, 2] = (y, x) -> (cos, sin), each [N, head_dim].

    Channel layout of one head: [y-half | x-half]; each half is [a | b] rotated as (a, b) -> (-b, a)
    with the same D/4 frequencies for a and b, i.e. cos = [cy, cy, cx, cx].
    """
    quarter = head_dim // 4
    half = 2 * quarter
    inv_freq = 1.0 / (freq ** (torch.arange(0, half, 2, device=pos.device).float() / half))  # [D/4]
    angles = pos.float()[..., None] * inv_freq  # [N, 2, D/4]
    angles = torch.cat([angles, angles], dim=-1).flatten(-2)  # [N, D]: [y, y, x, x]
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, rope: Rope) -> torch.Tensor:
    """x [B, heads, N, D] rotated by rope tables [N, D]."""
    cos, sin = (t.to(x.dtype) for t in rope)
    q0, q1, q2, q3 = x.chunk(4, dim=-1)
    rotated = torch.cat([-q1, q0, -q3, q2], dim=-1)
    return x * cos + rotated * sin


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int, qk_norm: bool):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.q_norm = nn.LayerNorm(self.head_dim, eps=BLOCK_NORM_EPS) if qk_norm else nn.Identity()
        self.k_norm = nn.LayerNorm(self.head_dim, eps=BLOCK_NORM_EPS) if qk_norm else nn.Identity()
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, rope: Rope | None = None) -> torch.Tensor:
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each [B, heads, N, D]
        q, k = self.q_norm(q), self.k_norm(k)
        if rope is not None:
            q, k = apply_rope(q, rope), apply_rope(k, rope)
        x = F.scaled_dot_product_attention(q, k, v)  # [B, heads, N, D]
        return self.proj(x.transpose(1, 2).reshape(B, N, C))


class Block(nn.Module):
    """Pre-norm transformer block with LayerScale: x += ls1(attn(norm1 x)); x += ls2(mlp(norm2 x))."""

    def __init__(self, dim, num_heads, mlp_ratio, init_values, qk_norm=False, norm_eps=BLOCK_NORM_EPS):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(dim, num_heads, qk_norm)
        self.ls1 = LayerScale(dim, init_values)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.ls2 = LayerScale(dim, init_values)

    def forward(self, x: torch.Tensor, rope: Rope | None = None) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x), rope))
        return x + self.ls2(self.mlp(self.norm2(x)))


# --------------------------------------------------------------------------------------------------
# Patch embeds
# --------------------------------------------------------------------------------------------------


class ConvPatchEmbed(nn.Module):
    """[N, 3, H, W] -> [N, Hp*Wp, C] (row-major patches)."""

    def __init__(self, patch_size: int, embed_dim: int):
        super().__init__()
        self.proj = nn.Conv2d(3, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class DinoV2(nn.Module):
    """DINOv2 ViT with registers, used as VGGT's patch embed. Returns the final-normed patch tokens.

    Keys (under aggregator.patch_embed.): patch_embed.proj.*, cls_token, pos_embed, register_tokens,
    mask_token (unused at inference, kept for strict loading), blocks.{i}.*, norm.*.
    """

    def __init__(self, cfg: VGGTConfig):
        super().__init__()
        C, grid = cfg.embed_dim, cfg.img_size // cfg.patch_size
        self.patch_size = cfg.patch_size
        self.num_register_tokens = cfg.num_register_tokens
        self.patch_embed = ConvPatchEmbed(cfg.patch_size, C)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, C))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + grid * grid, C))  # cls + grid x grid patches
        self.register_tokens = nn.Parameter(torch.zeros(1, cfg.num_register_tokens, C))
        self.mask_token = nn.Parameter(torch.zeros(1, C), requires_grad=False)
        depth, heads = cfg.patch_embed_depth, cfg.patch_embed_heads
        assert depth is not None and heads is not None  # VGGTConfig settles both for patch_embed="dinov2"
        self.blocks = nn.ModuleList(
            Block(C, heads, cfg.patch_embed_mlp_ratio, DINOV2_LAYERSCALE_INIT, norm_eps=DINOV2_NORM_EPS)
            for _ in range(depth)
        )
        self.norm = nn.LayerNorm(C, eps=DINOV2_NORM_EPS)

    def pos_embed_for(self, H: int, W: int) -> torch.Tensor:
        """Pos-embed [1, 1 + Hp*Wp, C] for an H x W image (cls first)."""
        pe: torch.Tensor = self.pos_embed
        n = pe.shape[1] - 1
        hp, wp = H // self.patch_size, W // self.patch_size
        if hp * wp == n and H == W:  # the reference's condition: pixel-square and same patch count
            return pe
        M, C = math.isqrt(n), pe.shape[-1]
        pe = pe.float()
        grid = pe[:, 1:].reshape(1, M, M, C).permute(0, 3, 1, 2)  # [1, C, M, M]
        grid = F.interpolate(grid, size=(hp, wp), mode="bicubic", antialias=True)  # [1, C, Hp, Wp]
        grid = grid.permute(0, 2, 3, 1).reshape(1, hp * wp, C)
        return torch.cat([pe[:, :1], grid], dim=1).to(self.pos_embed.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        N, _, H, W = x.shape
        t = self.patch_embed(x)  # [N, Hp*Wp, C]
        t = torch.cat([self.cls_token.expand(N, -1, -1), t], dim=1)  # [N, 1 + Hp*Wp, C]
        t = t + self.pos_embed_for(H, W)
        R = self.num_register_tokens
        t = torch.cat([t[:, :1], self.register_tokens.expand(N, -1, -1), t[:, 1:]], dim=1)  # [N, 1+R+Hp*Wp, C]
        for blk in self.blocks:
            t = blk(t)
        return self.norm(t[:, 1 + R :])  # x_norm_patchtokens [N, Hp*Wp, C]


# --------------------------------------------------------------------------------------------------
# Aggregator
# --------------------------------------------------------------------------------------------------


def first_and_rest(tokens: torch.Tensor, B: int, S: int) -> torch.Tensor:
    """Learned tokens [1, 2, X, C] -> [B*S, X, C]: set 0 for frame 0, set 1 for frames 1..S-1."""
    per_frame = torch.cat([tokens[:, :1], tokens[:, 1:].expand(1, S - 1, -1, -1)], dim=1)  # [1, S, X, C]
    return per_frame.expand(B, -1, -1, -1).reshape(B * S, *tokens.shape[2:])


class Aggregator(nn.Module):
    def __init__(self, cfg: VGGTConfig):
        super().__init__()
        C = cfg.embed_dim
        self.cfg = cfg
        self.patch_start_idx = cfg.patch_start_idx
        self.patch_embed: nn.Module
        if cfg.patch_embed == "conv":
            self.patch_embed = ConvPatchEmbed(cfg.patch_size, C)
        else:
            self.patch_embed = DinoV2(cfg)

        def block():
            return Block(C, cfg.num_heads, cfg.mlp_ratio, cfg.init_values, qk_norm=cfg.qk_norm)

        self.frame_blocks = nn.ModuleList(block() for _ in range(cfg.depth))
        self.global_blocks = nn.ModuleList(block() for _ in range(cfg.depth))
        self.camera_token = nn.Parameter(torch.zeros(1, 2, 1, C))  # [1, {frame 0, others}, 1, C]
        self.register_token = nn.Parameter(torch.zeros(1, 2, cfg.num_register_tokens, C))

    def rope_tables(self, hp: int, wp: int, device) -> Rope | None:
        """(cos, sin) [P, head_dim] for one frame: special tokens at (0, 0), patch (y, x) at (y+1, x+1)."""
        cfg = self.cfg
        if cfg.rope_freq <= 0:
            return None
        ys, xs = torch.meshgrid(torch.arange(hp, device=device), torch.arange(wp, device=device), indexing="ij")
        patch_pos = torch.stack([ys.flatten(), xs.flatten()], dim=-1) + 1  # [Hp*Wp, 2]
        special = torch.zeros(self.patch_start_idx, 2, dtype=patch_pos.dtype, device=device)
        return rope_cos_sin(torch.cat([special, patch_pos]), cfg.embed_dim // cfg.num_heads, cfg.rope_freq)

    def _run(self, block: nn.Module, x: torch.Tensor, rope: Rope | None) -> torch.Tensor:
        if self.training and torch.is_grad_enabled():
            return checkpoint(block, x, rope, use_reentrant=False)
        return block(x, rope)

    def forward(self, images: torch.Tensor, layers: Sequence[int]) -> list[torch.Tensor]:
        """images [B,S,3,H,W] in [0,1]; layers: indices in [0, depth) -> list aligned with `layers`
        of [B, S, P, 2C] tensors. Stops after the deepest requested layer."""
        B, S, _, H, W = images.shape
        ps = self.cfg.patch_size
        hp, wp = H // ps, W // ps

        mean = torch.tensor(IMAGENET_MEAN, device=images.device).view(1, 1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, device=images.device).view(1, 1, 3, 1, 1)
        x = (images.float() - mean) / std
        x = x.reshape(B * S, 3, H, W).to(self.camera_token.dtype)
        patches = self.patch_embed(x)  # [B*S, Hp*Wp, C]

        tokens = torch.cat(
            [
                first_and_rest(self.camera_token, B, S),  # [B*S, 1, C]
                first_and_rest(self.register_token, B, S),  # [B*S, R, C]
                patches,
            ],
            dim=1,
        )  # [B*S, P, C] (cat type-promotes, like the reference: fp32 under autocast)
        _, P, C = tokens.shape

        rope_frame = self.rope_tables(hp, wp, images.device)  # [P, D]
        rope_global = None if rope_frame is None else (rope_frame[0].repeat(S, 1), rope_frame[1].repeat(S, 1))  # [S*P, D]

        wanted = set(layers)
        kept: dict[int, torch.Tensor] = {}
        for i in range(max(wanted) + 1):
            frame_out = self._run(self.frame_blocks[i], tokens.reshape(B * S, P, C), rope_frame)  # [B*S, P, C]
            tokens = self._run(self.global_blocks[i], frame_out.reshape(B, S * P, C), rope_global)  # [B, S*P, C]
            if i in wanted:
                kept[i] = torch.cat([frame_out.reshape(B, S, P, C), tokens.reshape(B, S, P, C)], dim=-1)
        return [kept[i] for i in layers]


# --------------------------------------------------------------------------------------------------
# Camera head
# --------------------------------------------------------------------------------------------------


class CameraHead(nn.Module):
    """Last layer's camera tokens [B, S, 2C] -> pose encodings [B, S, 9] after each refinement step.

    Each step: adaLN-modulate the (fixed) normed camera tokens with the embedding of the current
    estimate (a learned empty pose at step 0), run the trunk (attention across the S frames), and
    add the pose-branch output to the raw (pre-activation) estimate. Activations: translation and
    quaternion linear, fov ReLU.
    """

    def __init__(self, cfg: VGGTConfig):
        super().__init__()
        D = 2 * cfg.embed_dim
        self.trunk = nn.Sequential(
            *(
                Block(D, cfg.camera_num_heads, cfg.camera_mlp_ratio, cfg.camera_init_values)
                for _ in range(cfg.camera_trunk_depth)
            )
        )
        self.token_norm = nn.LayerNorm(D)
        self.trunk_norm = nn.LayerNorm(D)
        self.empty_pose_tokens = nn.Parameter(torch.zeros(1, 1, POSE_DIM))
        self.embed_pose = nn.Linear(POSE_DIM, D)
        self.poseLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(D, 3 * D))  # -> shift, scale, gate
        self.adaln_norm = nn.LayerNorm(D, elementwise_affine=False, eps=1e-6)
        self.pose_branch = Mlp(D, D // 2, POSE_DIM)

    def forward(self, camera_tokens: torch.Tensor, num_iterations: int = 4) -> list[torch.Tensor]:
        B, S, _ = camera_tokens.shape
        tok = self.token_norm(camera_tokens)  # [B, S, D], the same input at every step
        raw = None  # pre-activation estimate [B, S, 9]
        out = []
        for _ in range(num_iterations):
            cond = self.empty_pose_tokens.expand(B, S, -1) if raw is None else raw.detach()
            shift, scale, gate = self.poseLN_modulation(self.embed_pose(cond)).chunk(3, dim=-1)
            x = gate * (self.adaln_norm(tok) * (1 + scale) + shift) + tok
            x = self.trunk(x)  # attention across the S frames
            delta = self.pose_branch(self.trunk_norm(x))  # [B, S, 9]
            raw = delta if raw is None else raw + delta
            out.append(torch.cat([raw[..., :7], F.relu(raw[..., 7:])], dim=-1))
        return out


# --------------------------------------------------------------------------------------------------
# VGGT (aggregator + camera head) and checkpoint I/O
# --------------------------------------------------------------------------------------------------


class VGGT(nn.Module):
    """VGGT aggregator + camera head. Submodule names equal the checkpoint prefixes."""

    def __init__(self, config: VGGTConfig | None = None):
        super().__init__()
        self.config = config or VGGTConfig()
        self.aggregator = Aggregator(self.config)
        self.camera_head = CameraHead(self.config)
        self._init_weights()

    @property
    def patch_start_idx(self) -> int:
        return self.config.patch_start_idx

    @torch.no_grad()
    def _init_weights(self):
        """Fresh-model init (checkpoints overwrite all of it). No-op on the meta device."""
        if any(p.is_meta for p in self.parameters()):
            return
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        agg = self.aggregator
        nn.init.normal_(agg.camera_token, std=1e-6)
        nn.init.normal_(agg.register_token, std=1e-6)
        if isinstance(agg.patch_embed, DinoV2):
            nn.init.trunc_normal_(agg.patch_embed.pos_embed, std=0.02)
            nn.init.normal_(agg.patch_embed.cls_token, std=1e-6)
            nn.init.normal_(agg.patch_embed.register_tokens, std=1e-6)

    # ---- inference -------------------------------------------------------------------------------

    def aggregate(self, images: torch.Tensor, layers: Sequence[int] = (-1,)) -> tuple[list[torch.Tensor], int]:
        """Run the aggregator.

        Args:
            images: [B, S, 3, H, W] in [0, 1] (normalised with ImageNet mean/std here); H and W must be
                multiples of patch_size. Frame 0 of each sequence is the reference (world) frame.
            layers: aggregator layers to return, in [-depth, depth) (-1 = last). Only these are kept
                in memory, and no block after the deepest one is run.

        Returns:
            (tokens, patch_start_idx): tokens is a list aligned with `layers`, each [B, S, P, 2C] with
            P = patch_start_idx + (H/ps)*(W/ps); token 0 is the camera token, tokens
            [1, patch_start_idx) the registers, then the patches row-major. Channels [:C] come from
            the frame block, [C:] from the global block. For `camera_pose`, pass the tensor of layer
            -1 (e.g. `tokens[-1]` when `layers` ends with -1).
        """
        if images.ndim != 5 or images.shape[2] != 3:
            raise ValueError(f"expected images [B, S, 3, H, W], got {tuple(images.shape)}")
        ps = self.config.patch_size
        if images.shape[-2] % ps or images.shape[-1] % ps:
            raise ValueError(f"image size {tuple(images.shape[-2:])} is not a multiple of patch size {ps}")
        depth = self.config.depth
        layers = list(layers)
        if not layers:
            raise ValueError("layers is empty")
        for i in layers:
            if isinstance(i, bool) or not isinstance(i, int) or not -depth <= i < depth:
                raise ValueError(f"layer {i!r} out of range for depth {depth}")
        tokens = self.aggregator(images, [i % depth for i in layers])
        return tokens, self.patch_start_idx

    def camera_pose(self, tokens_last_layer: torch.Tensor, num_iterations: int = 4) -> torch.Tensor:
        """Pose encoding [B, S, 9] = [T, quat xyzw, fov_h, fov_w] from the LAST aggregator layer.

        tokens_last_layer: [B, S, P, 2C] (layer -1 of `aggregate`) or just its camera tokens [B, S, 2C].
        Runs in the camera head's weight dtype with autocast disabled (as the reference does).
        """
        t = tokens_last_layer
        if t.ndim == 4:
            t = t[:, :, 0]  # camera token
        if t.ndim != 3 or t.shape[-1] != 2 * self.config.embed_dim:
            raise ValueError(
                f"expected [B, S, P, {2 * self.config.embed_dim}] tokens, got {tuple(tokens_last_layer.shape)}"
            )
        with torch.autocast(device_type=t.device.type, enabled=False):
            return self.camera_head(t.to(self.camera_head.embed_pose.weight.dtype), num_iterations)[-1]

    # ---- checkpoints ---------------------------------------------------------------------------

    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike,
        *,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        config: VGGTConfig | None = None,
    ) -> VGGT:
        """Load from a folder (model.safetensors, else model.pt; config.json if present), a bare
        .safetensors file, or a .pt/.pth file (torch.load with weights_only=True).

        `config` overrides config.json (default: config.json, else VGGT-1B). Builds on the meta device
        and assigns the checkpoint tensors (cast to `dtype`, moved to `device`), so no random init is
        materialised. aggregator.* and camera_head.* load strictly; depth/point/track head tensors are
        skipped (without being read from a .safetensors file). Raises CheckpointError.
        """
        path = Path(path)
        if path.is_dir():
            cfg_file = path / "config.json"
            if config is None and cfg_file.is_file():
                try:
                    config = VGGTConfig.from_dict(json.loads(cfg_file.read_text()))
                except (OSError, ValueError, TypeError) as e:
                    raise CheckpointError(f"{cfg_file}: unreadable VGGT config ({e})") from e
            for name in ("model.safetensors", "model.pt"):
                if (path / name).is_file():
                    path = path / name
                    break
            else:
                raise CheckpointError(f"{path}: no model.safetensors or model.pt in this folder")
        elif not path.is_file():
            raise CheckpointError(f"{path}: VGGT checkpoint not found")

        if path.suffix == ".safetensors":
            from .loading import ShardReader

            with ShardReader(path) as reader:  # remapped as it is read: a cast copy never sits beside the file's
                return cls._from_tensors(reader.keys(), reader.get, config, device, dtype, str(path))
        try:
            try:
                sd = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError:  # legacy (non-zip) format cannot be memory-mapped
                sd = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:
            raise CheckpointError(f"{path}: unreadable or unsafe torch checkpoint ({type(e).__name__}: {e})") from e
        if isinstance(sd, Mapping) and len(sd) == 1 and next(iter(sd)) in ("model", "state_dict"):
            sd = next(iter(sd.values()))
        if not isinstance(sd, Mapping) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
            raise CheckpointError(f"{path}: not a state dict of tensors")
        return cls.from_state_dict(sd, config, device=device, dtype=dtype, source=str(path))

    @classmethod
    def from_state_dict(
        cls,
        state_dict: Mapping[str, torch.Tensor],
        config: VGGTConfig | None = None,
        *,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        source: str = "state dict",
    ) -> VGGT:
        """Same loading rules as from_pretrained, from an in-memory (possibly meta) state dict."""
        return cls._from_tensors(list(state_dict), state_dict.__getitem__, config, device, dtype, source)

    @classmethod
    def _from_tensors(
        cls,
        keys: Iterable[str],
        get: Callable[[str], torch.Tensor],
        config: VGGTConfig | None,
        device,
        dtype: torch.dtype,
        source: str,
    ) -> VGGT:
        with torch.device("meta"):
            model = cls(config)
        expected = {k: v.shape for k, v in model.state_dict().items()}

        keys = list(keys)
        skipped = {p: 0 for p in SKIPPED_PREFIXES}
        unexpected, kept = [], []
        for k in keys:
            head = next((p for p in SKIPPED_PREFIXES if k.startswith(p)), None)
            if head is not None:
                skipped[head] += 1
            elif k in expected:
                kept.append(k)
            else:
                unexpected.append(k)
        kept_set = set(kept)
        missing = [k for k in expected if k not in kept_set]
        if missing or unexpected:

            def first(ks: list[str]) -> str:
                return ", ".join(ks[:3]) + (", ..." if len(ks) > 3 else "")

            parts = [f"{len(missing)} missing keys ({first(missing)})"] if missing else []
            parts += [f"{len(unexpected)} unexpected keys ({first(unexpected)})"] if unexpected else []
            raise CheckpointError(
                f"{source}: not a VGGT aggregator+camera_head checkpoint for this config: {'; '.join(parts)}"
            )

        state = {}
        for k in kept:
            t = get(k)
            if tuple(t.shape) != tuple(expected[k]):
                raise CheckpointError(
                    f"{source}: shape mismatch for {k}: checkpoint {tuple(t.shape)}, model {tuple(expected[k])}"
                )
            state[k] = t.to(device=device, dtype=dtype) if t.is_floating_point() else t.to(device=device)
        model.load_state_dict(state, strict=True, assign=True)  # keeps each Parameter's requires_grad
        logger.info(
            "VGGT weights from %s: loaded %d aggregator/camera_head tensors, skipped %d head tensors (%s)",
            source,
            len(kept),
            sum(skipped.values()),
            ", ".join(f"{p[:-1]} {n}" for p, n in skipped.items()),
        )
        return model.eval()

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        """Write model.safetensors (official key names) and config.json (our VGGTConfig)."""
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().to("cpu").contiguous() for k, v in self.state_dict().items()}
        tmp = directory / "model.safetensors.tmp"
        save_file(state, str(tmp), metadata={"format": "pt"})
        os.replace(tmp, directory / "model.safetensors")
        tmp = directory / "config.json.tmp"
        tmp.write_text(json.dumps(self.config.to_dict(), indent=2) + "\n")
        os.replace(tmp, directory / "config.json")


# --------------------------------------------------------------------------------------------------
# Pose encoding -> cameras
# --------------------------------------------------------------------------------------------------


def quat_to_mat(quat: torch.Tensor) -> torch.Tensor:
    """Quaternions [..., 4] (x, y, z, w; scalar last; need not be unit) -> rotation matrices [..., 3, 3]."""
    i, j, k, r = quat.unbind(-1)
    two_s = 2.0 / (quat * quat).sum(-1)
    m = torch.stack(
        (
            1 - two_s * (j * j + k * k),
            two_s * (i * j - k * r),
            two_s * (i * k + j * r),
            two_s * (i * j + k * r),
            1 - two_s * (i * i + k * k),
            two_s * (j * k - i * r),
            two_s * (i * k - j * r),
            two_s * (j * k + i * r),
            1 - two_s * (i * i + j * j),
        ),
        -1,
    )
    return m.reshape(quat.shape[:-1] + (3, 3))


def pose_encoding_to_extri_intri(
    pose_enc: torch.Tensor, image_size_hw: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """pose_enc [B, S, 9] -> (extrinsics [B, S, 3, 4] camera-from-world [R|t] OpenCV,
    intrinsics [B, S, 3, 3] in pixels with fy = (H/2)/tan(fov_h/2), fx = (W/2)/tan(fov_w/2) and the
    principal point at (W/2, H/2))."""
    T, quat, fov_h, fov_w = pose_enc[..., :3], pose_enc[..., 3:7], pose_enc[..., 7], pose_enc[..., 8]
    extrinsics = torch.cat([quat_to_mat(quat), T[..., None]], dim=-1)
    H, W = image_size_hw
    intrinsics = torch.zeros(pose_enc.shape[:-1] + (3, 3), device=pose_enc.device, dtype=pose_enc.dtype)
    intrinsics[..., 0, 0] = (W / 2.0) / torch.tan(fov_w / 2.0)
    intrinsics[..., 1, 1] = (H / 2.0) / torch.tan(fov_h / 2.0)
    intrinsics[..., 0, 2] = W / 2
    intrinsics[..., 1, 2] = H / 2
    intrinsics[..., 2, 2] = 1.0
    return extrinsics, intrinsics
