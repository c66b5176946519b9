"""Float PixelRNN (`training.rnn`) -> integer PixelRNN (`nets.rnn`)."""

from __future__ import annotations

import torch

from ..nets.qconv import QConv
from ..nets.rnn import IntDiagBiLSTM, IntPixelRNN, IntRowLSTM, gate_tables
from ..spec.fixed_point import GATE_FRAC, H_FRAC
from .quantize import export_head, multiplier, quantize_conv, tables
from .rnn import PixelRNN, StateConv


GATE_RANGE_WIDE = (-(1 << 15), 1 << 15)     # each gate term is clamped wide; their sum to the table


def quantize_state(conv: StateConv) -> QConv:
    """State-to-state weights (4S, S, taps) reading h (1/128) -> gate pre-activations in 1/GATE_FRAC."""
    s_w = conv.weight_scale().double()
    wq = torch.round(conv.weight.detach().double() / s_w[:, None, None]).clamp(-127, 127)
    mat = wq.permute(2, 1, 0).reshape(-1, wq.shape[0])             # (taps * S, 4S), tap-major
    mult, shift = multiplier(s_w / H_FRAC * GATE_FRAC)
    return QConv(k=1, weight=mat.to(torch.int8).contiguous(), bias=torch.zeros(wq.shape[0], dtype=torch.int32),
                 mult=mult, shift=shift, lo=GATE_RANGE_WIDE[0], hi=GATE_RANGE_WIDE[1],
                 taps=tuple(map(tuple, conv.taps)))


@torch.no_grad()
def export_pixelrnn(model: PixelRNN) -> IntPixelRNN:
    cfg = model.cfg
    G = cfg.trunk_groups
    s_img, s_stream = 1 / 128, model.q_stream.scale
    layers = {"first": quantize_conv(model.first, s_img, s_stream, G), "lstm": []}
    for layer in model.layers:
        convs = {}
        for name, m in layer.named_children():
            if isinstance(m, StateConv):
                convs[name] = quantize_state(m)
            elif name == "out":
                convs[name] = quantize_conv(m, 1 / H_FRAC, s_stream, G)
            else:   # input-to-state: the stream -> gate pre-activations
                convs[name] = quantize_conv(m, s_stream, 1 / GATE_FRAC, G, out_range=GATE_RANGE_WIDE)
        layers["lstm"].append(convs)
    s_head_in = s_stream
    extra = {}
    if cfg.skips:
        s_head_in = model.q_skips.scale
        mult, shift = multiplier(torch.tensor([s_stream / s_head_in]))
        extra = {"skips_mult": mult, "skips_shift": shift}
    head = {**export_head(model, s_head_in, layers), **extra}
    lstm = {"rowlstm": IntRowLSTM, "diagbilstm": IntDiagBiLSTM}[cfg.arch]
    return lstm(cfg, layers, head, {**tables(), **gate_tables()})
