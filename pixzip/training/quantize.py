"""Float scales -> integer multipliers: the pieces every architecture's export shares (a masked
convolution, the head). The only place where float scales become integer multipliers."""

from __future__ import annotations

import torch

from ..nets.qconv import QConv, conv_taps
from ..spec import tables as spec_tables
from ..spec.fixed_point import LOGIT_FRAC, LS_FRAC, MU_FRAC
from .base import ARModel
from .layers import MaskedConv


def multiplier(real: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Represent positive reals as mult / 2^shift with mult in [2^30, 2^31)."""
    real = real.double().clamp_min(1e-30)
    exp = torch.floor(torch.log2(real)).long()
    shift = (30 - exp).clamp(1, 62)
    mult = torch.round(real * torch.pow(2.0, shift.double())).long()
    return mult, shift


def quantize_conv(conv: MaskedConv, s_in: float, s_out: float | None, groups: int,
                  relu_in: bool = False, relu_out: bool = False, out_range: tuple[int, int] | None = None) -> QConv:
    """Int8 weights per output channel, int32 bias, and the requantisation to scale s_out (into
    int8, or `out_range`)."""
    rows, k = conv.kernel_size
    w = (conv.weight * conv.mask).detach().double()
    s_w = conv.weight_scale().double()
    qmax = conv.WEIGHT_QMAX[conv.wide]
    wq = torch.round(w / s_w[:, None, None, None]).clamp(-qmax, qmax)
    taps = conv.taps or conv_taps(k)
    # (cout, cin, rows, k) -> (taps * cin, cout), tap-major, as the engine gathers its input
    mat = torch.stack([wq[:, :, dy + rows // 2, dx + k // 2] for dy, dx in taps], dim=0)   # (taps, cout, cin)
    mat = mat.permute(0, 2, 1).reshape(len(taps) * conv.in_channels, conv.out_channels)
    low = None
    if conv.wide:   # q = 256 * high + low, both int8 (|q| <= 127 * 256 keeps high within int8)
        low = torch.remainder(mat + 128, 256) - 128
        mat = (mat - low) / 256
        low = low.to(torch.int8).contiguous()
    acc_scale = s_in * s_w
    bias = torch.zeros(conv.out_channels, dtype=torch.float64) if conv.bias is None else \
        torch.round(conv.bias.detach().double() / acc_scale)
    if s_out is None:
        mult = shift = torch.zeros(conv.out_channels, dtype=torch.int64)
    else:
        mult, shift = multiplier(acc_scale / s_out)
    lo, hi = out_range or (0 if relu_out else -128, 127)
    return QConv(k=k, weight=mat.to(torch.int8).contiguous(), bias=bias.to(torch.int32),
                 mult=mult, shift=shift, relu_in=relu_in, lo=lo, hi=hi, groups=groups,
                 weight_low=low, taps=None if conv.taps is None else tuple(map(tuple, conv.taps)))


def export_head(model: ARModel, s_in: float, layers: dict, relu_in: bool = True) -> dict:
    """head1, out and the skip predictor into `layers`; returns the head's requantisation constants.
    relu_in: head1 applies the ReLU to its gathered input (not when that input is ReLU'd already)."""
    cfg = model.cfg
    C, G = cfg.channels, cfg.trunk_groups
    s_img, s_head = 1 / 128, model.q_head.scale
    layers["head1"] = quantize_conv(model.head1, s_in, s_head, G, relu_in=relu_in, relu_out=True)
    layers["out"] = quantize_conv(model.out, s_head, None, G)
    acc_scale = s_head * model.out.weight_scale().double()
    if cfg.head == "softmax":
        real = acc_scale * LOGIT_FRAC
    else:  # per channel: (mu, log-scale); mu = 128 + 128 * o in 1/16 grey levels
        real = acc_scale.view(C, 2) * torch.tensor([128.0 * MU_FRAC, LS_FRAC], dtype=torch.float64)
        real = real.reshape(-1)
    mult, shift = multiplier(real)
    head = {"mult": mult, "shift": shift}
    if model.skip is not None:
        layers["skip"] = quantize_conv(model.skip, s_img, None, C)
        head["skip_mult"], head["skip_shift"] = multiplier(
            s_img * model.skip.weight_scale().double() * 128.0 * MU_FRAC)
    return head


def tables() -> dict[str, torch.Tensor]:
    """The exp and Laplace slope tables every exported model stores (`spec.tables`' integers)."""
    return {"exp": torch.from_numpy(spec_tables.exp_table()), "invb": torch.from_numpy(spec_tables.invb_table())}
