"""Float PixelRNN models for training: Row LSTM and Diagonal BiLSTM (van den Oord et al. 2016, sec. 3).

Both share the PixelCNN's mask-A first layer and masked 1x1 head (`training.base.ARModel`); between
them sit LSTM layers whose gates and cell are fake-quantised exactly where the integer engine
(`nets.rnn`) rounds:
  * gate pre-activations z in 1/32 steps, clamped to [-8, 8): sigmoid and tanh become 512-entry tables;
  * gate values (sigmoid, tanh) in Q15, the cell state c in Q12 clamped to +-16;
  * the LSTM output h = o * tanh(c) as int8 in 1/128 steps (|h| < 1, so its scale is fixed);
  * each layer's output returns to the int8 residual stream through a masked 1x1 convolution.

Row LSTM: input-to-state is a masked k x 1 convolution along the row (mask B), state-to-state a k x 1
convolution over the previous row's h; the cell state runs down the columns. Triangular receptive field.

Diagonal BiLSTM: in a skewed map (row i shifted right by i) each direction's LSTM walks the columns, its
state-to-state a 2 x 1 convolution over the previous column; unskewed, h(i, j) reads h(i-1, j) and
h(i, j-1) (right-to-left: h(i, j+1)). The right-to-left map is shifted down one row before the sum,
so the receptive field is the whole causal past.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..spec.config import ModelConfig
from ..spec.fixed_point import CELL_FRAC, CELL_MAX, GATE_FRAC, GATE_ONE, GATE_RANGE, H_FRAC
from .base import ARModel
from .layers import ActQuant, MaskedConv, group_allowed, round_ste


def _fq(x: torch.Tensor, frac: float, lo: float | None = None, hi: float | None = None) -> torch.Tensor:
    """Fake-quantise to steps of 1/frac (straight-through gradient), optionally clamped (in steps)."""
    q = round_ste(x * frac)
    if lo is not None:
        q = q.clamp(lo, hi)
    return q / frac


def lstm_cell(z_in: torch.Tensor, z_state: torch.Tensor, c_prev: torch.Tensor, quant: bool):
    """Gates [i, f, o, g] (B, 4S, ...) -> (h, c). Mirrors `nets.rnn.IntPixelRNN.lstm_cell` when quant is on."""
    if quant:
        z = (round_ste(z_in * GATE_FRAC) + round_ste(z_state * GATE_FRAC)).clamp(-GATE_RANGE, GATE_RANGE - 1)
        z = z / GATE_FRAC
    else:
        z = z_in + z_state
    zi, zf, zo, zg = z.chunk(4, dim=1)
    i, f, o, g = torch.sigmoid(zi), torch.sigmoid(zf), torch.sigmoid(zo), torch.tanh(zg)
    if quant:
        i, f, o, g = (_fq(t, GATE_ONE) for t in (i, f, o, g))
        c = _fq(f * c_prev, CELL_FRAC) + _fq(i * g, CELL_FRAC)
    else:
        c = f * c_prev + i * g
    c = c.clamp(-CELL_MAX, CELL_MAX)
    if quant:
        t = _fq(torch.tanh(_fq(c, GATE_FRAC, -GATE_RANGE, GATE_RANGE - 1)), GATE_ONE)
        h = _fq(o * t, H_FRAC, -127, 127)
    else:
        h = o * torch.tanh(c)
    return h, c


class StateConv(nn.Module):
    """State-to-state weights (4S, S, taps): unmasked (the states read are all earlier pixels), no
    bias, int8 fake-quantised per output channel. `taps` are the (dy, dx) offsets, in the image, of
    the states each tap reads."""

    def __init__(self, state: int, taps: list[tuple[int, int]]):
        super().__init__()
        self.taps = taps
        self.weight = nn.Parameter(torch.randn(4 * state, state, len(taps)) * (0.5 / (state * len(taps)) ** 0.5))
        self.quantize = False

    def weight_scale(self) -> torch.Tensor:
        return self.weight.detach().abs().amax(dim=(1, 2)).clamp_min(1e-8) / 127

    def quantized_weight(self) -> torch.Tensor:
        if not self.quantize:
            return self.weight
        s = self.weight_scale()[:, None, None]
        return round_ste(self.weight / s).clamp(-127, 127) * s


def gate_conv(cfg: ModelConfig, k: int, rows: int, mask_type: str = "B") -> MaskedConv:
    """Input-to-state convolution hidden -> 4 * state gates, masked by R/G/B group within each gate."""
    S = cfg.state_width
    conv = MaskedConv(cfg.hidden, 4 * S, k, cfg.trunk_groups, mask_type, out_period=S, rows=rows)
    with torch.no_grad():
        conv.bias.view(4, S)[1] = 1.0           # forget gate open at the start
    return conv


class RowLSTMLayer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        k, S = cfg.row_kernel, cfg.state_width
        self.input = gate_conv(cfg, k, rows=1)
        self.state = StateConv(S, [(-1, dx) for dx in range(-(k // 2), k // 2 + 1)])
        self.out = MaskedConv(S, cfg.hidden, 1, cfg.trunk_groups, "B")

    def forward(self, x: torch.Tensor, quant: bool) -> torch.Tensor:
        """Stream (B, hidden, H, W) -> h (B, S, H, W), one LSTM step per row."""
        z_in = self.input(x)
        B, _, H, W = z_in.shape
        w = self.state.quantized_weight()
        h = c = z_in.new_zeros(B, w.shape[1], W)
        rows = []
        for z_row in z_in.unbind(2):     # (unbind: one cheap backward, not a zero-filled tensor per row)
            h, c = lstm_cell(z_row, F.conv1d(h, w, padding=w.shape[2] // 2), c, quant)
            rows.append(h)
        return torch.stack(rows, dim=2)


def skew(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, H, W + H - 1), row r shifted right by r (a reshape, cheap to backprop:
    rows of length W + H read with stride W + H - 1 move one column right per row)."""
    B, C, H, W = x.shape
    flat = F.pad(x, (0, H)).reshape(B, C, H * (W + H))
    return flat[:, :, :H * (W + H - 1)].reshape(B, C, H, W + H - 1)


def unskew(x: torch.Tensor, W: int) -> torch.Tensor:
    """Inverse of skew."""
    B, C, H, _ = x.shape
    flat = F.pad(x.reshape(B, C, -1), (0, H))
    return flat.reshape(B, C, H, W + H)[..., :W]


class DiagBiLSTMLayer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        S, h, G = cfg.state_width, cfg.hidden, cfg.trunk_groups
        self.input_l = gate_conv(cfg, 1, rows=1)
        self.input_r = gate_conv(cfg, 1, rows=1)
        # unskewed, the previous column of the skewed map is the pixel above and the one before
        self.state_l = StateConv(S, [(-1, 0), (0, -1)])
        self.state_r = StateConv(S, [(-1, 0), (0, 1)])
        # [h left-to-right at (i, j) | h right-to-left at (i-1, j)] -> stream; the second half comes
        # from the row above, fully known, so only the first is masked by channel group
        mask = torch.ones(h, 2 * S, 1, 1)
        mask[:, :S, 0, 0] = group_allowed(S, h, G, "B")
        self.out = MaskedConv(2 * S, h, 1, G, "B", mask=mask)

    def forward(self, x: torch.Tensor, quant: bool) -> torch.Tensor:
        """Stream (B, hidden, H, W) -> [h_l, h_r shifted down one row] (B, 2S, H, W).

        Both directions scan together (right-to-left on the mirrored map), stacked in the batch."""
        B = x.shape[0]
        z = torch.cat([self.input_l(x), self.input_r(x).flip(3)], dim=0)
        w = torch.stack([self.state_l.quantized_weight(), self.state_r.quantized_weight()])
        h = self.scan(z, w, quant)
        h_l, h_r = h[:B], h[B:].flip(3)
        h_r = F.pad(h_r, (0, 0, 1, 0))[:, :, :-1]
        return torch.cat([h_l, h_r], dim=1)

    @staticmethod
    def scan(z_in: torch.Tensor, w: torch.Tensor, quant: bool) -> torch.Tensor:
        """Left-to-right diagonal LSTMs over gate inputs (D*B, 4S, H, W), D directions stacked in the
        batch, with state weights w (D, 4S, S, 2) whose taps are the row above and the same row of
        the previous skewed column."""
        DB, _, H, W = z_in.shape
        D, S = w.shape[0], w.shape[2]
        z = skew(z_in)
        valid = skew(z_in.new_ones(1, 1, H, W))[:, 0].unbind(2)     # (1, H) per skewed column
        h = c = z_in.new_zeros(DB, S, H)
        cols = []
        for t, z_col in enumerate(z.unbind(3)):
            hd = h.view(D, DB // D, S, H)
            up = F.pad(hd, (1, 0))[..., :-1]                      # h of the row above
            z_state = torch.einsum("dos,dbsh->dboh", w[..., 0], up) + torch.einsum("dos,dbsh->dboh", w[..., 1], hd)
            h, c = lstm_cell(z_col, z_state.reshape(DB, 4 * S, H), c, quant)
            # outside the image (the skew's padding) states stay zero, as in the integer engine
            h, c = h * valid[t], c * valid[t]
            cols.append(h)
        return unskew(torch.stack(cols, dim=3), W)


class PixelRNN(ARModel):
    """Mask-A 7x7 convolution, `layers` LSTM layers (residual and skip connections switchable), head."""

    def build_trunk(self, cfg: ModelConfig):
        layer = {"rowlstm": RowLSTMLayer, "diagbilstm": DiagBiLSTMLayer}[cfg.arch]
        self.layers = nn.ModuleList(layer(cfg) for _ in range(cfg.layers))
        self.q_skips = ActQuant() if cfg.skips else None

    def head_input(self, x: torch.Tensor, u: torch.Tensor | None = None) -> torch.Tensor:
        total = 0
        for layer in self.layers:
            y = self.q_stream(layer.out(layer(x, self.quantized)))
            x = self.q_stream(x + y) if self.cfg.residual else y
            total = total + x
        return self.q_skips(total) if self.q_skips is not None else x
