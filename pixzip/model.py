"""Float PixelCNN for training, with quantisation-aware training (QAT).

This module knows nothing about entropy coding. It defines the network of the PixelRNN paper's PixelCNN
(a 7x7 mask-A convolution, residual blocks of mask-B convolutions, masked 1x1 output layers, R->G->B
channel groups) and fake-quantises it exactly where the integer engine (`pixzip.engine`) rounds, so that
`pixzip.export` can turn it into an integer model that loses almost nothing.

Quantisation points (mirrored one for one by the integer engine):
  * input pixels v in 0..255 enter as the int8 value v-128 (scale 1/128, exact);
  * weights are int8 with one scale per output channel; biases int32;
  * the residual stream has one int8 scale shared by all blocks, so adds are plain integer adds;
  * every other activation is int8 with its own scale, observed during training;
  * the head outputs a location `mu` in 1/16 of a grey level and a log-scale in 1/8 steps (Laplace
    head), or free logits in 1/16 nat (softmax head, the paper's choice).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn as nn
import torch.nn.functional as F

# Head constants shared with the integer engine (they are written into exported models).
MU_FRAC = 16          # mu is coded in 1/16 grey level
LS_FRAC = 8           # log-scale (natural log of the Laplace scale) in steps of 1/8
LS_MIN, LS_MAX = -3.0, 6.0
LOGIT_FRAC = 16       # logits in 1/16 nat


@dataclass
class ModelConfig:
    """Everything needed to rebuild a model; stored inside checkpoints and exported model files."""
    arch: str = "pixelcnn"
    channels: int = 3          # image channels: 3 (RGB) or 1 (grey)
    levels: int = 256
    hidden: int = 48           # width of the residual stream; divisible by `channels`
    first_kernel: int = 7      # the mask-A layer
    blocks: int = 4            # residual blocks: relu -> kxk mask B -> relu -> 1x1 mask B
    block_kernel: int = 3
    head_hidden: int = 48      # width of the masked 1x1 layer before the output
    head: str = "laplace"      # "laplace" (mu, log-scale) or "softmax" (free logits)
    skip_kernel: int = 0       # Laplace head: a masked kxk linear predictor from the image straight to mu
    channel_deps: str = "masks"  # "masks": the paper's R/G/B mask-B groups through the whole net;
                                 # "skip": a spatial trunk shared by R, G, B (computed once per pixel);
                                 # a channel sees the earlier ones only through the linear skip to mu

    def __post_init__(self):
        if self.channels not in (1, 3):
            raise ValueError("channels must be 1 or 3")
        for name in ("hidden", "head_hidden"):
            if getattr(self, name) % self.channels:
                raise ValueError(f"{name} must be divisible by channels")
        if self.first_kernel % 2 == 0 or self.block_kernel % 2 == 0:
            raise ValueError("kernel sizes must be odd")
        if self.head not in ("laplace", "softmax"):
            raise ValueError(f"unknown head {self.head!r}")
        if self.skip_kernel and (self.skip_kernel % 2 == 0 or self.head != "laplace"):
            raise ValueError("skip_kernel must be odd and needs the laplace head")
        if self.skip_kernel > self.first_kernel:
            raise ValueError("skip_kernel cannot exceed first_kernel")
        if self.channel_deps not in ("masks", "skip"):
            raise ValueError(f"unknown channel_deps {self.channel_deps!r}")
        if self.channel_deps == "skip" and not self.skip_kernel:
            raise ValueError('channel_deps="skip" needs skip_kernel')
        if self.levels != 256:
            raise ValueError("only 256 levels are supported by this model")

    @property
    def trunk_groups(self) -> int:
        """Channel groups of the trunk's masks: R/G/B groups, or one group (a purely spatial trunk)."""
        return self.channels if self.channel_deps == "masks" else 1

    @property
    def head_dim(self) -> int:
        """Outputs per image channel."""
        return 2 if self.head == "laplace" else self.levels

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


def causal_mask(k: int, in_ch: int, out_ch: int, groups: int, mask_type: str) -> torch.Tensor:
    """Mask of shape (out, in, k, k): rows above, left of centre, and the centre by channel group.

    Channels are split into `groups` contiguous groups (R, G, B). At the centre, output group g sees
    input groups < g (mask A) or <= g (mask B).
    """
    m = torch.zeros(out_ch, in_ch, k, k)
    c = k // 2
    m[:, :, :c, :] = 1
    m[:, :, c, :c] = 1
    gin = torch.arange(in_ch) * groups // in_ch
    gout = torch.arange(out_ch) * groups // out_ch
    allowed = gin[None, :] < gout[:, None] if mask_type == "A" else gin[None, :] <= gout[:, None]
    m[:, :, c, c] = allowed.float()
    return m


def round_ste(x: torch.Tensor) -> torch.Tensor:
    return x + (torch.round(x) - x).detach()


class ActQuant(nn.Module):
    """Int8 fake quantisation of activations.

    Before quantisation-aware training starts, the scale is observed as a running maximum of |x|. When
    it starts, the scale becomes a learned parameter (LSQ, Esser et al. 2020) initialised from that
    maximum: a max-based step wastes resolution on rare outliers (measured: the residual stream's
    step cost 0.17 bits/dim on an RGB model), the learned one trades clipping against rounding."""

    def __init__(self, momentum: float = 0.01):
        super().__init__()
        self.register_buffer("max_abs", torch.tensor(0.0))
        self.register_buffer("learned", torch.tensor(False))
        self.log_scale = nn.Parameter(torch.tensor(0.0))
        self.momentum = momentum
        self.enabled = False

    @property
    def scale(self) -> float:
        if bool(self.learned):
            return float(self.log_scale.exp())
        return max(float(self.max_abs), 1e-8) / 127.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and not bool(self.learned):
            m = x.detach().abs().amax()
            if self.max_abs == 0:
                self.max_abs.copy_(m)
            else:
                self.max_abs.lerp_(m, self.momentum)
        if not self.enabled:
            return x
        if not bool(self.learned):
            with torch.no_grad():
                self.log_scale.copy_(torch.log(self.max_abs.clamp_min(1e-8) / 127.0))
                self.learned.fill_(True)
        # LSQ's gradient scale 1/sqrt(n * 127) keeps the step size's updates in proportion
        g = 1.0 / math.sqrt(x.numel() * 127.0)
        log_s = self.log_scale * g + (self.log_scale * (1 - g)).detach()
        s = log_s.exp()
        return round_ste(torch.clamp(x / s, -128, 127)) * s


class MaskedConv(nn.Conv2d):
    """Convolution whose weight is masked for causality and fake-quantised per output channel."""

    def __init__(self, in_ch, out_ch, k, groups, mask_type):
        super().__init__(in_ch, out_ch, k, padding=k // 2)
        self.register_buffer("mask", causal_mask(k, in_ch, out_ch, groups, mask_type))
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


class PixelCNN(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        C, h, G = cfg.channels, cfg.hidden, cfg.trunk_groups
        self.first = MaskedConv(C, h, cfg.first_kernel, G, "A")
        self.conv_a = nn.ModuleList(MaskedConv(h, h, cfg.block_kernel, G, "B") for _ in range(cfg.blocks))
        self.conv_b = nn.ModuleList(MaskedConv(h, h, 1, G, "B") for _ in range(cfg.blocks))
        self.head1 = MaskedConv(h, cfg.head_hidden, 1, G, "B")
        self.out = MaskedConv(cfg.head_hidden, C * cfg.head_dim, 1, G, "B")
        self.q_stream = ActQuant()
        self.q_mid = nn.ModuleList(ActQuant() for _ in range(cfg.blocks))
        self.q_head = ActQuant()
        if cfg.head == "laplace":
            with torch.no_grad():  # start wide: Laplace scale e^2 ~ 7 grey levels
                self.out.bias.view(C, 2)[:, 1] = 2.0
        self.skip = None
        if cfg.skip_kernel:
            # The int8 trunk cannot carry pixel values to 1/16 of a grey level; this linear predictor
            # reads the image at full precision (int8 x int8 -> int32, no requantisation before mu).
            # It starts as the mean of the left and upper neighbours (same channel), the net corrects it.
            self.skip = MaskedConv(C, C, cfg.skip_kernel, C, "A")
            self.skip.wide = True
            with torch.no_grad():
                self.skip.weight.zero_()
                p = cfg.skip_kernel // 2
                for c in range(C):
                    self.skip.weight[c, c, p, p - 1] = 0.5
                    self.skip.weight[c, c, p - 1, p] = 0.5

    def set_quantize(self, on: bool):
        for m in self.modules():
            if isinstance(m, MaskedConv):
                m.quantize = on
            if isinstance(m, ActQuant):
                m.enabled = on

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        """img: uint8/long (B, C, H, W) in 0..255 -> logits (B, C, 256, H, W) (unnormalised)."""
        x_in = (img.float() - 128.0) / 128.0
        x = self.q_stream(self.first(x_in))
        for conv_a, conv_b, q_mid in zip(self.conv_a, self.conv_b, self.q_mid):
            y = q_mid(F.relu(conv_a(F.relu(x))))
            y = self.q_stream(conv_b(y))
            x = self.q_stream(x + y)
        h = self.q_head(F.relu(self.head1(F.relu(x))))
        o = self.out(h)
        B, _, H, W = o.shape
        skip = self.skip(x_in) if self.skip is not None else None
        return quantize_head(o.view(B, self.cfg.channels, self.cfg.head_dim, H, W), self.cfg.head, skip)


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
    """Per-sub-pixel code length in bits, (B, C, H, W), of img under the quantised head outputs q."""
    if head == "softmax":
        logp = F.log_softmax(q, dim=2).gather(2, img.long().unsqueeze(2)).squeeze(2)
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


def bits_per_dim(q: torch.Tensor, img: torch.Tensor, head: str) -> torch.Tensor:
    """Mean code length in bits per sub-pixel."""
    return nll_bits(q, img, head).mean()


def build_model(cfg: ModelConfig) -> nn.Module:
    if cfg.arch == "pixelcnn":
        return PixelCNN(cfg)
    raise ValueError(f"unknown architecture {cfg.arch!r}")
