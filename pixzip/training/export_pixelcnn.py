"""Float PixelCNN (`training.pixelcnn`) -> integer PixelCNN (`nets.pixelcnn`)."""

from __future__ import annotations

import torch

from ..nets.pixelcnn import IntPixelCNN
from ..nets.qconv import QConv
from .pixelcnn import PixelCNN
from .quantize import export_head, multiplier, quantize_conv, tables


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
    return IntPixelCNN(cfg, layers, head, tables())


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
