"""Float model -> integer model. The only place where float scales become integer multipliers."""

from __future__ import annotations

import torch

from .engine import IntModel, IntMultiScale, IntPixelCNN, QConv, conv_taps, exp_table, invb_table
from .model import LOGIT_FRAC, LS_FRAC, MU_FRAC, ARModel, MaskedConv, MultiScale, PixelCNN


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


def export(model) -> IntModel | IntMultiScale:
    """Any float model -> its integer model."""
    if isinstance(model, PixelCNN):
        return export_pixelcnn(model)
    if isinstance(model, MultiScale):
        return IntMultiScale(model.cfg, export(model.small), export_pixelcnn(model.big))
    from .export_rnn import export_pixelrnn
    return export_pixelrnn(model)


@torch.no_grad()
def export_pixelcnn(model: PixelCNN) -> IntPixelCNN:
    cfg = model.cfg
    G = cfg.trunk_groups
    s_img, s_stream = 1 / 128, model.q_stream.scale
    wide = cfg.stream_bits == 16
    stream_range = (-(1 << 15), (1 << 15) - 1) if wide else None
    # what the layers read: the int8 stream with a ReLU at the gather, or the int8 ReLU'd copies of a
    # 16-bit stream (one scale per reader: blocks 0..B-1, then the head)
    reads = [q.scale for q in model.q_read] if wide else [s_stream] * (cfg.blocks + 1)
    layers = {"first": quantize_conv(model.first, s_img, s_stream, G, out_range=stream_range),
              "conv_a": [], "conv_b": []}
    for ca, cb, qm, s_read in zip(model.conv_a, model.conv_b, model.q_mid, reads):
        layers["conv_a"].append(quantize_conv(ca, s_read, qm.scale, G, relu_in=not wide, relu_out=True))
        layers["conv_b"].append(quantize_conv(cb, qm.scale, s_stream, G, out_range=stream_range))
    head = export_head(model, reads[-1], layers, relu_in=not wide)
    if wide:
        head["read_mult"], head["read_shift"] = multiplier(s_stream / torch.tensor(reads, dtype=torch.float64))
    if cfg.cond:
        export_condition(model, layers)
    return IntPixelCNN(cfg, layers, head, {"exp": exp_table(), "invb": invb_table()})


def export_condition(model: PixelCNN, layers: dict):
    """The deconvolution (small image -> int8 map u) and each layer's 1x1 bias from u. A biased layer
    rounds once: (acc * m1 + acc_u * m2 + offset) >> shift, both multipliers at one shift."""
    s_u = model.q_cond.scale
    up = model.upsample                      # ConvTranspose2d weight (C, cond, s, s)
    w = up.weight.detach().double()
    s_w = w.abs().amax(dim=(0, 2, 3)).clamp_min(1e-8) / 127               # per output channel
    wq = torch.round(w / s_w[None, :, None, None]).clamp(-127, 127)
    mat = wq.permute(0, 2, 3, 1).reshape(w.shape[0], -1)                   # (C, s*s*cond), phase-major
    n = w.shape[2] * w.shape[3]
    acc_scale = (1 / 128) * s_w
    mult, shift = multiplier((acc_scale / s_u).repeat(n))
    layers["upsample"] = QConv(k=1, weight=mat.to(torch.int8).contiguous(),
                               bias=torch.round(up.bias.detach().double() / acc_scale).repeat(n).to(torch.int32),
                               mult=mult, shift=shift)
    targets = {"first": (layers["first"], model.q_stream.scale), "head1": (layers["head1"], model.q_head.scale)}
    for b in range(model.cfg.blocks):
        targets[f"conv_a{b}"] = (layers["conv_a"][b], model.q_mid[b].scale)
        targets[f"conv_b{b}"] = (layers["conv_b"][b], model.q_stream.scale)
    layers["cond"] = {}
    for name, (parent, s_out) in targets.items():
        cq = quantize_conv(model.cond_convs[name], s_u, None, parent.groups)
        real_u = s_u * model.cond_convs[name].weight_scale().double() / s_out
        real_x = parent.mult.double() / torch.pow(2.0, parent.shift.double())
        _, shift_u = multiplier(real_u)
        shift = torch.minimum(parent.shift, shift_u)
        scale = torch.pow(2.0, shift.double())
        parent.mult, parent.shift = torch.round(real_x * scale).long(), shift
        cq.mult, cq.shift = torch.round(real_u * scale).long(), shift
        layers["cond"][name] = cq


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
