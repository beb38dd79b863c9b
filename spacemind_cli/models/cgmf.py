"""Camera-Guided Modality Fusion (SpaceMind, arXiv 2511.23075, Sec. 3).

Per frame, appearance tokens f_v (InternViT after InternVL's projector) query geometry tokens
f_s (VGGT patch tokens) under the guidance of the frame's VGGT camera token f_c:

    Q = P_Q(LN_v f_v)   K = P_K(LN_s f_s)   V = P_V(LN_s f_s)   C = P_C(f_c)
    B = MLP_geo([f_s ; f_c])              K += B, V += B            (camera bias)
    W = sigmoid(MLP_tw(f_s))              V = W * V                 (importance)
    K' = [C ; K], V' = [C ; V]                                     (camera memory slot)
    A = MHA(Q, K', V')
    g = SiLU(P_g1 C) * P_g2 C                                      (camera gate)
    f_fused = P_L(LN_o(P_O A)) * g + f_v

Widths, heads, hidden sizes, dropout and init are not published: they are config fields. Each
of the four camera parts can be switched off to build the paper's ablation variants.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .config_dict import config_from_dict


@dataclass
class CGMFConfig:
    d_v: int = 3584  # LLM hidden size (f_v after the projector)
    d_s: int = 2048  # VGGT token width (2 x aggregator embed_dim)
    d_a: int = 1024  # attention width
    num_heads: int = 8
    hidden: int | None = None  # MLP_geo / MLP_tw hidden width; None -> d_a
    dropout: float = 0.0
    camera_bias: bool = True
    importance: bool = True
    camera_memory: bool = True
    camera_gate: bool = True
    # "residual_zero": P_L starts at zero so an untrained CGMF leaves InternVL's tokens untouched.
    # "random": every layer random (tiny test checkpoints, where the fusion must matter).
    init: str = "residual_zero"

    @property
    def hidden_width(self) -> int:
        return self.hidden or self.d_a

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> CGMFConfig:
        return config_from_dict(cls, d, where="cgmf")


class CGMF(nn.Module):
    def __init__(self, config: CGMFConfig):
        super().__init__()
        c = self.config = config
        if c.d_a % c.num_heads:
            raise ValueError(f"CGMF d_a={c.d_a} is not divisible by num_heads={c.num_heads}")
        h = c.hidden_width
        self.ln_v = nn.LayerNorm(c.d_v)  # LN_v
        self.ln_s = nn.LayerNorm(c.d_s)  # LN_s
        self.q_proj = nn.Linear(c.d_v, c.d_a)  # P_Q
        self.k_proj = nn.Linear(c.d_s, c.d_a)  # P_K
        self.v_proj = nn.Linear(c.d_s, c.d_a)  # P_V
        if c.camera_memory or c.camera_gate:
            self.c_proj = nn.Linear(c.d_s, c.d_a)  # P_C (no LayerNorm on f_c)
        if c.camera_bias:
            self.geo_mlp = nn.Sequential(nn.Linear(2 * c.d_s, h), nn.ReLU(), nn.Linear(h, c.d_a))  # MLP_geo
        if c.importance:
            self.importance_mlp = nn.Sequential(nn.Linear(c.d_s, h), nn.ReLU(), nn.Linear(h, 1))  # MLP_tw
        self.o_proj = nn.Linear(c.d_a, c.d_v)  # P_O
        self.ln_o = nn.LayerNorm(c.d_v)  # LN_o
        if c.camera_gate:
            self.gate_1 = nn.Linear(c.d_a, c.d_v)  # P_g1
            self.gate_2 = nn.Linear(c.d_a, c.d_v)  # P_g2
        self.out_proj = nn.Linear(c.d_v, c.d_v)  # P_L
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        if self.config.init == "residual_zero":
            nn.init.zeros_(self.out_proj.weight)
        elif self.config.init != "random":
            raise ValueError(f"unknown CGMF init {self.config.init!r} (residual_zero | random)")

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        n, m, _ = x.shape  # [N, M, d_a] -> [N, heads, M, d_a / heads]
        return x.view(n, m, self.config.num_heads, -1).transpose(1, 2)

    def forward(self, f_v: torch.Tensor, f_s: torch.Tensor, f_c: torch.Tensor) -> torch.Tensor:
        """f_v [N, M_v, d_v], f_s [N, M_s, d_s], f_c [N, 1, d_s] -> f_fused [N, M_v, d_v]."""
        c = self.config
        n, m_v, _ = f_v.shape
        q = self.q_proj(self.ln_v(f_v))  # [N, M_v, d_a]
        s = self.ln_s(f_s)
        k = self.k_proj(s)  # [N, M_s, d_a]
        v = self.v_proj(s)
        cam = self.c_proj(f_c) if (c.camera_memory or c.camera_gate) else None  # [N, 1, d_a]

        if c.camera_bias:
            geo = torch.cat([f_s, f_c.expand(-1, f_s.shape[1], -1)], dim=-1)  # [N, M_s, 2 d_s]
            bias = self.geo_mlp(geo)
            k = k + bias
            v = v + bias
        if c.importance:
            v = torch.sigmoid(self.importance_mlp(f_s)) * v  # [N, M_s, 1] weights
        if cam is not None and c.camera_memory:
            k = torch.cat([cam, k], dim=1)  # [N, 1 + M_s, d_a]
            v = torch.cat([cam, v], dim=1)

        drop = c.dropout if self.training else 0.0
        attn = F.scaled_dot_product_attention(self._heads(q), self._heads(k), self._heads(v), dropout_p=drop)
        attn = attn.transpose(1, 2).reshape(n, m_v, c.d_a)
        f_proj = self.ln_o(self.o_proj(attn))
        if drop:
            f_proj = F.dropout(f_proj, p=drop, training=True)
        update = self.out_proj(f_proj)
        if c.camera_gate:
            gate = F.silu(self.gate_1(cam)) * self.gate_2(cam)  # [N, 1, d_v]: one gate per frame
            update = update * gate
        return update + f_v
