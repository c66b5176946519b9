"""What every float architecture shares (`ARModel`: the mask-A first layer, the masked 1x1 head, the
linear skip predictor, the stream and head quantisers), the head's rounding onto the integer grid and
the training loss."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..spec.config import ModelConfig, to_symbols
from ..spec.fixed_point import LOGIT_FRAC, LS_FRAC, LS_MAX, LS_MIN, MU_FRAC
from .layers import ActQuant, MaskedConv, round_ste


class ARModel(nn.Module):
    """What every architecture shares: the mask-A first layer, the masked 1x1 head, the optional
    linear skip predictor (Laplace head) and the fake quantisers of the stream and the head."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        C, h, G = cfg.channels, cfg.hidden, cfg.trunk_groups
        self.first = MaskedConv(C, h, cfg.first_kernel, G, "A", slope=cfg.slope)
        self.q_stream = ActQuant(bits=cfg.stream_bits)
        self.build_trunk(cfg)
        self.head1 = MaskedConv(h, cfg.head_hidden, 1, G, "B")
        self.out = MaskedConv(cfg.head_hidden, C * cfg.head_dim, 1, G, "B")
        self.q_head = ActQuant()
        self.quantized = False
        if cfg.head == "laplace":
            with torch.no_grad():  # start wide: Laplace scale e^2 ~ 7 grey levels
                self.out.bias.view(C, 2)[:, 1] = 2.0
        self.skip = None
        if cfg.skip_kernel:
            # The int8 trunk cannot carry pixel values to 1/16 of a grey level; this linear predictor
            # reads the image at full precision (int8 x int8 -> int32, no requantisation before mu).
            # It starts as the mean of the left and upper neighbours (same channel), the net corrects it.
            self.skip = MaskedConv(C, C, cfg.skip_kernel, C, "A", slope=cfg.slope)
            self.skip.wide = True
            with torch.no_grad():
                self.skip.weight.zero_()
                p = cfg.skip_kernel // 2
                for c in range(C):
                    self.skip.weight[c, c, p, p - 1] = 0.5
                    self.skip.weight[c, c, p - 1, p] = 0.5

    def set_quantize(self, on: bool):
        self.quantized = on
        for m in self.modules():
            if hasattr(m, "quantize") and m is not self:
                m.quantize = on
            if isinstance(m, ActQuant):
                m.enabled = on

    def forward(self, img: torch.Tensor, small: torch.Tensor | None = None) -> torch.Tensor:
        """img: uint8/long (B, C, H, W) in 0..255 -> head outputs (B, C, D, H, W) on the coding grid.
        A conditional model (cfg.cond) also takes the subsampled image `small`."""
        x_in = (img.float() - 128.0) / 128.0
        o = self.raw_head(x_in, None if small is None else (small.float() - 128.0) / 128.0)
        skip = self.skip(x_in) if self.skip is not None else None
        return quantize_head(o, self.cfg.head, skip)

    def bits(self, img: torch.Tensor) -> torch.Tensor:
        """Mean code length of img in bits per sub-pixel (the training loss)."""
        return bits_per_dim(self(img), img, self.cfg.head, self.cfg.levels)

    def raw_head(self, x_in: torch.Tensor, small: torch.Tensor | None = None) -> torch.Tensor:
        """Normalised image (B, C, H, W) -> unrounded head outputs (B, C, D, H, W), without the skip
        predictor (tests take gradients through it)."""
        u = self.condition(small, x_in.shape[-2:])
        x = self.head_input(self.q_stream(self.first(x_in) + self.bias("first", u)), u)
        o = self.out(self.q_head(F.relu(self.head1(self.relu_read(x, -1)) + self.bias("head1", u))))
        B, _, H, W = o.shape
        return o.view(B, self.cfg.channels, self.cfg.head_dim, H, W)

    def condition(self, small: torch.Tensor | None, size) -> torch.Tensor | None:
        """The conditioning map: the small image upsampled by a learned deconvolution (int8)."""
        if not self.cfg.cond:
            return None
        if small is None:
            raise ValueError("a conditional model needs the subsampled image")
        return self.q_cond(self.upsample(small))[..., :size[0], :size[1]]

    def bias(self, layer: str, u: torch.Tensor | None):
        """A layer's conditional bias: an unmasked 1x1 convolution of the conditioning map."""
        return 0 if u is None else self.cond_convs[layer](u)

    def relu_read(self, x: torch.Tensor, reader: int) -> torch.Tensor:
        """ReLU of the stream as a layer reads it (`reader`: block number, -1 the head); a 16-bit
        stream is requantised to int8 for each reader."""
        return F.relu(x)

    def build_trunk(self, cfg: ModelConfig):
        """Create the layers between the first layer and the head."""
        raise NotImplementedError

    def head_input(self, x: torch.Tensor, u: torch.Tensor | None = None) -> torch.Tensor:
        """The trunk: the first layer's (quantised) output (and the conditioning map u, if any) ->
        the head's input."""
        raise NotImplementedError



def quantize_head(o: torch.Tensor, head: str, skip: torch.Tensor | None = None) -> torch.Tensor:
    """Round raw head outputs (B, C, D, H, W) to the grid the integer engine codes with.

    Laplace: channel 0 is mu in grey levels (1/16 steps, clamped to 0..255), channel 1 the natural log
    of the scale (1/8 steps). Softmax: free logits in nats (1/16 steps).
    """
    if head == "softmax":
        return round_ste(o * LOGIT_FRAC) / LOGIT_FRAC
    mu16 = 128.0 * MU_FRAC + round_ste(128.0 * MU_FRAC * o[:, :, 0:1])
    if skip is not None:   # rounded separately, as the integer engine adds two requantised terms
        mu16 = mu16 + round_ste(128.0 * MU_FRAC * skip.unsqueeze(2))
    mu = mu16.clamp(0, 255 * MU_FRAC) / MU_FRAC
    ls = round_ste(o[:, :, 1:2] * LS_FRAC).clamp(LS_MIN * LS_FRAC, LS_MAX * LS_FRAC) / LS_FRAC
    return torch.cat([mu, ls], dim=2)


def nll_bits(q: torch.Tensor, img: torch.Tensor, head: str, levels: int = 256) -> torch.Tensor:
    """Per-sub-pixel code length in bits, (B, C, H, W), of img (pixel values 0..255) under the
    quantised head outputs q."""
    if head == "softmax":
        symbols = to_symbols(img.long(), levels)
        logp = F.log_softmax(q, dim=2).gather(2, symbols.unsqueeze(2)).squeeze(2)
        return -logp / math.log(2)
    # Laplace over the integers 0..levels-1: the normaliser is two geometric series, summed in
    # closed form so training never materialises the 256-way table.
    mu, ls = q[:, :, 0], q[:, :, 1]
    inv_b = torch.exp(-ls)
    k0 = torch.floor(mu).clamp(max=levels - 1).detach()
    r = torch.exp(-inv_b)
    one_minus_r = -torch.expm1(-inv_b)
    left = torch.exp(-(mu - k0) * inv_b) * (1 - r ** (k0 + 1)) / one_minus_r
    right = torch.exp(-(k0 + 1 - mu) * inv_b) * (1 - r ** (levels - 1 - k0)) / one_minus_r
    logp = -(img.float() - mu).abs() * inv_b - torch.log(left + right)
    return -logp / math.log(2)


def bits_per_dim(q: torch.Tensor, img: torch.Tensor, head: str, levels: int = 256) -> torch.Tensor:
    """Mean code length in bits per sub-pixel."""
    return nll_bits(q, img, head, levels).mean()



def subsample(img: torch.Tensor, scale: int) -> torch.Tensor:
    """Every scale-th pixel of every scale-th row: (..., H, W) -> (..., ceil(H/s), ceil(W/s))."""
    return img[..., ::scale, ::scale]
