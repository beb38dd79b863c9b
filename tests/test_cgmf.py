"""CGMF: shapes, the four camera switches, residual-zero init, gradients, size, and faithfulness
to the paper's formulas through an independent plain-tensor re-implementation."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from spacemind_cli.models.cgmf import CGMF, CGMFConfig

SWITCHES = ("camera_bias", "importance", "camera_memory", "camera_gate")
SMALL = dict(d_v=48, d_s=40, d_a=32, num_heads=4, hidden=24)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _inputs(n=3, m_v=7, m_s=11, d_v=48, d_s=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    f_v = torch.randn(n, m_v, d_v, generator=g)
    f_s = torch.randn(n, m_s, d_s, generator=g)
    f_c = torch.randn(n, 1, d_s, generator=g)
    return f_v, f_s, f_c


def _module(seed=0, **kw) -> CGMF:
    torch.manual_seed(seed)
    cfg = CGMFConfig(**{**SMALL, "init": "random", **kw})
    m = CGMF(cfg).eval()
    # LayerNorm affine params start at 1/0; perturb them so the reference must use them right.
    with torch.no_grad():
        for name, p in m.named_parameters():
            if name.startswith("ln_"):
                p.add_(torch.randn(p.shape) * 0.3)
    return m


# ---------------------------------------------------------------------------------------------
# an independent implementation of the paper's formulas (SpaceMind Sec. 3), plain tensor ops
# ---------------------------------------------------------------------------------------------
def _lin(x, sd, name):
    return x @ sd[f"{name}.weight"].T + sd[f"{name}.bias"]


def _ln(x, sd, name, eps=1e-5):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + eps) * sd[f"{name}.weight"] + sd[f"{name}.bias"]


def _mlp(x, sd, name):  # Linear -> ReLU -> Linear, stored as Sequential indices 0 and 2
    return _lin(torch.clamp(_lin(x, sd, f"{name}.0"), min=0), sd, f"{name}.2")


def reference_cgmf(cfg: CGMFConfig, sd: dict, f_v, f_s, f_c):
    """Per frame: Q = P_Q(LN_v f_v); K = P_K(LN_s f_s); V = P_V(LN_s f_s); C = P_C(f_c);
    B = MLP_geo([f_s ; f_c]); K += B; V += B; W = sigmoid(MLP_tw(f_s)); V = W * V;
    K' = [C ; K]; V' = [C ; V]; A = MHA(Q, K', V'); f_proj = LN_o(P_O A);
    g = SiLU(P_g1 C) * P_g2 C; f_fused = P_L(f_proj) * g + f_v."""
    out = []
    h = cfg.num_heads
    dh = cfg.d_a // h
    for i in range(f_v.shape[0]):  # frame by frame, exactly as the formulas read
        fv, fs, fc = f_v[i], f_s[i], f_c[i]  # [M_v, d_v], [M_s, d_s], [1, d_s]
        Q = _lin(_ln(fv, sd, "ln_v"), sd, "q_proj")
        K = _lin(_ln(fs, sd, "ln_s"), sd, "k_proj")
        V = _lin(_ln(fs, sd, "ln_s"), sd, "v_proj")
        C = _lin(fc, sd, "c_proj") if (cfg.camera_memory or cfg.camera_gate) else None
        if cfg.camera_bias:
            B = _mlp(torch.cat([fs, fc.repeat(fs.shape[0], 1)], dim=-1), sd, "geo_mlp")
            K = K + B
            V = V + B
        if cfg.importance:
            W = torch.sigmoid(_mlp(fs, sd, "importance_mlp"))  # [M_s, 1]
            V = W * V
        if cfg.camera_memory:
            K = torch.cat([C, K], dim=0)
            V = torch.cat([C, V], dim=0)
        heads = []
        for j in range(h):
            q, k, v = (t[:, j * dh : (j + 1) * dh] for t in (Q, K, V))
            scores = q @ k.T / math.sqrt(dh)
            heads.append(torch.softmax(scores, dim=-1) @ v)
        A = torch.cat(heads, dim=-1)
        f_proj = _ln(_lin(A, sd, "o_proj"), sd, "ln_o")
        update = _lin(f_proj, sd, "out_proj")
        if cfg.camera_gate:
            g = F.silu(_lin(C, sd, "gate_1")) * _lin(C, sd, "gate_2")
            update = update * g
        out.append(update + fv)
    return torch.stack(out)


@pytest.mark.parametrize(
    "switches",
    [
        {},  # the full model
        {s: False for s in SWITCHES},
        *({s: False} for s in SWITCHES),
        {"camera_memory": False, "camera_gate": False},
    ],
    ids=lambda d: "full" if not d else "-".join(f"no_{k}" for k in d),
)
def test_module_matches_independent_reference(switches):
    m = _module(**switches)
    f_v, f_s, f_c = _inputs()
    with torch.no_grad():
        got = m(f_v, f_s, f_c)
        want = reference_cgmf(m.config, {k: v.detach() for k, v in m.state_dict().items()}, f_v, f_s, f_c)
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_output_shapes():
    m = _module()
    for n, m_v, m_s in ((1, 5, 9), (4, 16, 3)):
        f_v, f_s, f_c = _inputs(n=n, m_v=m_v, m_s=m_s)
        assert m(f_v, f_s, f_c).shape == (n, m_v, SMALL["d_v"])


@pytest.mark.parametrize("switch", SWITCHES)
def test_each_switch_changes_the_output(switch):
    f_v, f_s, f_c = _inputs()
    on = _module(seed=3)
    off = CGMF(CGMFConfig(**{**SMALL, "init": "random", switch: False})).eval()
    # Same weights for every module both have: only the switch differs.
    missing, unexpected = off.load_state_dict(on.state_dict(), strict=False)
    assert not missing
    # The switched-off part's weights are the only ones left over (camera_memory reuses P_C,
    # which the gate still needs).
    assert bool(unexpected) == (switch != "camera_memory")
    with torch.no_grad():
        a, b = on(f_v, f_s, f_c), off(f_v, f_s, f_c)
    assert (a - b).abs().max() > 1e-3


def test_switched_off_parts_have_no_weights():
    names = {n.split(".")[0] for n, _ in CGMF(CGMFConfig(**SMALL, **{s: False for s in SWITCHES})).named_parameters()}
    assert names == {"ln_v", "ln_s", "q_proj", "k_proj", "v_proj", "o_proj", "ln_o", "out_proj"}


def test_residual_zero_init_is_exactly_identity():
    torch.manual_seed(0)
    m = CGMF(CGMFConfig(**SMALL)).eval()  # init defaults to residual_zero
    assert m.config.init == "residual_zero"
    f_v, f_s, f_c = _inputs()
    with torch.no_grad():
        out = m(f_v, f_s, f_c)
    assert torch.equal(out, f_v)
    # ... while every other layer is random: training can move it away from the identity.
    assert m.q_proj.weight.abs().sum() > 0 and m.gate_1.weight.abs().sum() > 0


def test_unknown_init_and_bad_heads_are_refused():
    with pytest.raises(ValueError, match="init"):
        CGMF(CGMFConfig(**{**SMALL, "init": "xavier"}))
    with pytest.raises(ValueError, match="divisible"):
        CGMF(CGMFConfig(**{**SMALL, "num_heads": 5}))


def test_gradient_reaches_every_parameter():
    m = _module(seed=1).train()
    f_v, f_s, f_c = _inputs(seed=2)
    f_v.requires_grad_(True)
    out = m(f_v, f_s, f_c)
    # A random projection, not a plain sum: LayerNorm outputs sum to a constant per token.
    probe = torch.randn(out.shape, generator=torch.Generator().manual_seed(5))
    (out * probe).sum().backward()
    for name, p in m.named_parameters():
        assert p.grad is not None, name
        assert p.grad.abs().max() > 0, f"zero gradient for {name}"
    assert f_v.grad is not None and f_v.grad.abs().max() > 0


def test_parameter_count_at_paper_sizes_is_about_45m():
    cfg = CGMFConfig(d_v=3584, d_s=2048, d_a=1024, num_heads=8)
    assert cfg.hidden_width == 1024  # h = d_a
    with torch.device("meta"):
        m = CGMF(cfg)
    n = sum(p.numel() for p in m.parameters())
    assert 40e6 <= n <= 50e6, n
    # Hand count: P_Q, P_K, P_V, P_C, MLP_geo, MLP_tw, P_O, P_g1, P_g2, P_L and four LayerNorms.
    d_v, d_s, d_a, h = 3584, 2048, 1024, 1024
    hand = (
        (d_v * d_a + d_a) + 3 * (d_s * d_a + d_a)
        + (2 * d_s * h + h + h * d_a + d_a) + (d_s * h + h + h + 1)
        + (d_a * d_v + d_v) + 2 * (d_a * d_v + d_v) + (d_v * d_v + d_v)
        + 2 * d_v + 2 * d_s + 2 * d_v
    )  # fmt: skip
    assert n == hand
