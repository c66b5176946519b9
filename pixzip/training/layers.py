"""The float building blocks, fake-quantised where the integer engine rounds: masks, the
straight-through rounding, activation quantisers (LSQ) and masked convolutions."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def group_allowed(in_ch: int, out_ch: int, groups: int, mask_type: str, out_period: int = 0) -> torch.Tensor:
    """(out, in) channel-group mask at the centre pixel. Channels are split into `groups` contiguous
    groups (R, G, B); output group g sees input groups < g (mask A) or <= g (mask B). With
    `out_period` the outputs are several blocks (LSTM gates), each split into the groups."""
    period = out_period or out_ch
    gin = torch.arange(in_ch) * groups // in_ch
    gout = (torch.arange(out_ch) % period) * groups // period
    allowed = gin[None, :] < gout[:, None] if mask_type == "A" else gin[None, :] <= gout[:, None]
    return allowed.float()


def causal_mask(k: int, in_ch: int, out_ch: int, groups: int, mask_type: str, out_period: int = 0,
                rows: int | None = None) -> torch.Tensor:
    """Mask of shape (out, in, rows, k): rows above, left of centre, and the centre by channel group.
    rows=1 gives the k x 1 convolution along the row (the Row LSTM's input-to-state)."""
    rows = k if rows is None else rows
    m = torch.zeros(out_ch, in_ch, rows, k)
    c, r = k // 2, rows // 2
    m[:, :, :r, :] = 1
    m[:, :, r, :c] = 1
    m[:, :, r, c] = group_allowed(in_ch, out_ch, groups, mask_type, out_period)
    return m


def trim_to_slope(mask: torch.Tensor, slope: int) -> torch.Tensor:
    """Zero the taps (dy < 0, dx >= slope * -dy) of a square causal mask (out, in, k, k): what is left
    reads only pixels decoded before wavefront t = j + slope * i."""
    k = mask.shape[-1]
    p = k // 2
    for dy in range(-p, 0):
        for dx in range(-p, p + 1):
            if dx >= slope * -dy:
                mask[:, :, dy + p, dx + p] = 0
    return mask


def round_ste(x: torch.Tensor) -> torch.Tensor:
    return x + (torch.round(x) - x).detach()


class ActQuant(nn.Module):
    """Int8 fake quantisation of activations.

    Before quantisation-aware training starts, the scale is observed as a running maximum of |x|. When
    it starts, the scale becomes a learned parameter (LSQ, Esser et al. 2020) initialised from that
    maximum: a max-based step wastes resolution on rare outliers (measured: the residual stream's
    step cost 0.17 bits/dim on an RGB model), the learned one trades clipping against rounding."""

    def __init__(self, momentum: float = 0.01, bits: int = 8):
        super().__init__()
        self.qmax = (1 << (bits - 1)) - 1
        self.register_buffer("max_abs", torch.tensor(0.0))
        self.register_buffer("learned", torch.tensor(False))
        self.log_scale = nn.Parameter(torch.tensor(0.0))
        self.momentum = momentum
        self.enabled = False
        # host copies of the buffers' states, so that a forward pass never waits for the device
        self._learned, self._observed = False, False

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self._learned, self._observed = bool(self.learned), bool(self.max_abs != 0)

    @property
    def scale(self) -> float:
        if bool(self.learned):
            return float(self.log_scale.exp())
        return max(float(self.max_abs), 1e-8) / self.qmax

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and not self._learned:
            m = x.detach().abs().amax()
            if self._observed:
                self.max_abs.lerp_(m, self.momentum)
            else:
                self.max_abs.copy_(m)
                self._observed = True
        if not self.enabled:
            return x
        if not self._learned:
            with torch.no_grad():
                self.log_scale.copy_(torch.log(self.max_abs.clamp_min(1e-8) / self.qmax))
                self.learned.fill_(True)
            self._learned = True
        # LSQ's gradient scale 1/sqrt(n * qmax) keeps the step size's updates in proportion
        g = 1.0 / math.sqrt(x.numel() * self.qmax)
        log_s = self.log_scale * g + (self.log_scale * (1 - g)).detach()
        s = log_s.exp()
        return round_ste(torch.clamp(x / s, -self.qmax - 1, self.qmax)) * s


class MaskedConv(nn.Conv2d):
    """Convolution whose weight is masked for causality and fake-quantised per output channel.

    `taps` lists the (dy, dx) offsets the integer engine gathers, in its weight order; None means the
    square causal pattern `conv_taps(k)` of the engine."""
    taps = None

    def __init__(self, in_ch, out_ch, k, groups, mask_type, out_period: int = 0, rows: int | None = None,
                 mask: torch.Tensor | None = None, slope: int = 0):
        rows = k if rows is None else rows
        super().__init__(in_ch, out_ch, (rows, k), padding=(rows // 2, k // 2))
        if mask is None:
            mask = causal_mask(k, in_ch, out_ch, groups, mask_type, out_period, rows)
        if slope:
            mask = trim_to_slope(mask, slope)
        if rows != k or slope:
            self.taps = [(dy, dx) for dy in range(-(rows // 2), 1) for dx in range(-(k // 2), k // 2 + 1)
                         if mask[:, :, dy + rows // 2, dx + k // 2].any()]
        self.register_buffer("mask", mask)
        self.quantize = False
        with torch.no_grad():  # rescale init to the unmasked fan-in
            fan = self.mask.sum(dim=(1, 2, 3)).clamp_min(1)
            self.weight.normal_(0, 1).mul_((2.0 / fan).sqrt()[:, None, None, None] * 0.7)
            self.weight.mul_(self.mask)
            self.bias.zero_()

    # int8 weights, or "wide" 15-bit weights (|q| <= 127 * 256) that the engine applies as two int8
    # products (high and low byte); the linear skip predictor needs them: with int8 weights its mu was
    # off by a fraction of a grey level (measured: +0.035 bits/dim on a grey model)
    WEIGHT_QMAX = {False: 127, True: 127 * 256}
    wide = False

    def weight_scale(self) -> torch.Tensor:
        w = self.weight * self.mask
        return w.detach().abs().amax(dim=(1, 2, 3)).clamp_min(1e-8) / self.WEIGHT_QMAX[self.wide]

    def masked_weight(self) -> torch.Tensor:
        w = self.weight * self.mask
        if self.quantize:
            s = self.weight_scale()[:, None, None, None]
            q = self.WEIGHT_QMAX[self.wide]
            w = round_ste(w / s).clamp(-q, q) * s
        return w

    def forward(self, x):
        return F.conv2d(x, self.masked_weight(), self.bias, padding=self.padding)




class CondConv(MaskedConv):
    """Unmasked 1x1 convolution without bias (the conditioned layer has one), int8 fake-quantised."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__(in_ch, out_ch, 1, 1, "B", mask=torch.ones(out_ch, in_ch, 1, 1))
        self.register_parameter("bias", None)
        with torch.no_grad():
            self.weight.mul_(0.5)
