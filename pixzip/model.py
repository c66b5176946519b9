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
from dataclasses import asdict, dataclass, fields, replace

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
    stream_bits: int = 8        # PixelCNN residual stream: int8, or int16 with every ReLU'd read of it
                                # requantised to int8 (measured on pcnn-rgb-v1: the int8 stream alone
                                # cost 0.17 of its 0.19 bits/dim quantisation loss)
    slope: int = 0              # PixelCNN decode wavefront slope s: pixel (i, j) reads only pixels of smaller
                                # j + s*i, the kernels' far upper-right taps trimmed to allow it; 0: the
                                # square kernels' own slope, largest radius + 1 (4 for a 7x7 first layer).
                                # s = 2 decodes a 128-pixel tile in 382 wavefronts instead of 636
    # PixelRNN layers (arch "rowlstm" / "diagbilstm"); `hidden` is the width between layers (the
    # paper's 2h), `state` the LSTM's h (0: hidden // 2)
    layers: int = 0
    state: int = 0
    row_kernel: int = 3         # Row LSTM: k of the k x 1 input-to-state and state-to-state convolutions
    residual: bool = True       # residual connection around every LSTM layer
    skips: bool = False         # skip connections: every layer's output summed into the head
    # Multi-scale (arch "multiscale"): a `small_arch` model codes the image subsampled by `scale`
    # (every scale-th pixel), then a PixelCNN codes the full image with every layer biased by an
    # unmasked 1x1 convolution of a learned upsampling (deconvolution) of the small image, `cond` wide.
    # A PixelCNN with cond > 0 is that conditional second stage.
    scale: int = 2
    cond: int = 0
    small_arch: str = "pixelcnn"

    def __post_init__(self):
        if self.arch not in ARCHS:
            raise ValueError(f"unknown architecture {self.arch!r} (one of {', '.join(ARCHS)})")
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
        if self.slope and (self.arch != "pixelcnn" or self.slope <= self.block_kernel // 2):
            raise ValueError("slope is a PixelCNN option and must exceed the block kernel's radius")
        if self.stream_bits not in (8, 16):
            raise ValueError("stream_bits must be 8 or 16")
        if self.stream_bits == 16 and self.arch != "pixelcnn":
            raise ValueError("a 16-bit residual stream is a PixelCNN option")
        if self.levels not in (2, 256):
            raise ValueError("levels must be 256 (8-bit images) or 2 (bilevel images)")
        if self.levels != 256 and self.head != "softmax":
            raise ValueError("a bilevel model (2 levels) needs the softmax head")
        if self.arch == "multiscale":
            if self.scale < 2 or self.small_arch not in ARCHS[:3]:
                raise ValueError("multiscale needs scale >= 2 and small_arch pixelcnn, rowlstm or diagbilstm")
            self.parts()          # validates both stages
        elif self.arch != "pixelcnn":
            if self.layers < 1:
                raise ValueError(f"{self.arch} needs layers >= 1")
            if self.state_width % self.channels:
                raise ValueError("state must be divisible by channels")
            if self.channel_deps != "masks":
                raise ValueError('LSTM models use channel_deps="masks"')
            if self.row_kernel % 2 == 0 or self.row_kernel < 3:
                raise ValueError("row_kernel must be odd and >= 3")

    def parts(self) -> tuple["ModelConfig", "ModelConfig"]:
        """A multiscale model's two stages: (the small image's model, the conditional PixelCNN)."""
        depth = self.layers or self.blocks
        cnn = self.small_arch == "pixelcnn"
        small = replace(self, arch=self.small_arch, cond=0, blocks=depth if cnn else 0, layers=0 if cnn else depth)
        big = replace(self, arch="pixelcnn", cond=self.cond or max(4, self.hidden // 2), blocks=depth, layers=0)
        return small, big

    @property
    def state_width(self) -> int:
        return self.state or max(self.channels, self.hidden // 2)

    @property
    def trunk_groups(self) -> int:
        """Channel groups of the trunk's masks: R/G/B groups, or one group (a purely spatial trunk)."""
        return self.channels if self.channel_deps == "masks" else 1

    @property
    def head_dim(self) -> int:
        """Outputs per image channel."""
        return 2 if self.head == "laplace" else self.levels

    def symbols(self, values):
        """Pixel values 0..255 -> the symbols coded (0..levels-1)."""
        return to_symbols(values, self.levels)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


ARCHS = ("pixelcnn", "rowlstm", "diagbilstm", "multiscale")


def to_symbols(values, levels: int):
    """Pixel values 0..255 (arrays or tensors) -> symbols 0..levels-1; bilevel planes hold 0 and 255."""
    return values if levels == 256 else values // 128


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


class CondConv(MaskedConv):
    """Unmasked 1x1 convolution without bias (the conditioned layer has one), int8 fake-quantised."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__(in_ch, out_ch, 1, 1, "B", mask=torch.ones(out_ch, in_ch, 1, 1))
        self.register_parameter("bias", None)
        with torch.no_grad():
            self.weight.mul_(0.5)


class PixelCNN(ARModel):
    def build_trunk(self, cfg: ModelConfig):
        h, G = cfg.hidden, cfg.trunk_groups
        self.conv_a = nn.ModuleList(MaskedConv(h, h, cfg.block_kernel, G, "B") for _ in range(cfg.blocks))
        self.conv_b = nn.ModuleList(MaskedConv(h, h, 1, G, "B") for _ in range(cfg.blocks))
        self.q_mid = nn.ModuleList(ActQuant() for _ in range(cfg.blocks))
        if cfg.stream_bits == 16:   # the int8 reads of the 16-bit stream: one per block, then the head
            self.q_read = nn.ModuleList(ActQuant() for _ in range(cfg.blocks + 1))
        if cfg.cond:
            self.upsample = nn.ConvTranspose2d(cfg.channels, cfg.cond, cfg.scale, stride=cfg.scale)
            self.q_cond = ActQuant()
            widths = {"first": h, "head1": cfg.head_hidden}
            widths.update({f"conv_a{b}": h for b in range(cfg.blocks)})
            widths.update({f"conv_b{b}": h for b in range(cfg.blocks)})
            self.cond_convs = nn.ModuleDict({k: CondConv(cfg.cond, w) for k, w in widths.items()})

    def head_input(self, x: torch.Tensor, u: torch.Tensor | None = None) -> torch.Tensor:
        for b, (conv_a, conv_b, q_mid) in enumerate(zip(self.conv_a, self.conv_b, self.q_mid)):
            y = q_mid(F.relu(conv_a(self.relu_read(x, b)) + self.bias(f"conv_a{b}", u)))
            y = self.q_stream(conv_b(y) + self.bias(f"conv_b{b}", u))
            x = self.q_stream(x + y)
        return x

    def relu_read(self, x: torch.Tensor, reader: int) -> torch.Tensor:
        x = F.relu(x)
        return self.q_read[reader](x) if self.cfg.stream_bits == 16 else x


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


def build_model(cfg: ModelConfig) -> nn.Module:
    if cfg.arch == "pixelcnn":
        return PixelCNN(cfg)
    if cfg.arch == "multiscale":
        return MultiScale(cfg)
    from .rnn import PixelRNN
    return PixelRNN(cfg)


def subsample(img: torch.Tensor, scale: int) -> torch.Tensor:
    """Every scale-th pixel of every scale-th row: (..., H, W) -> (..., ceil(H/s), ceil(W/s))."""
    return img[..., ::scale, ::scale]


class MultiScale(nn.Module):
    """Two stages trained together: the small image's model and the conditional PixelCNN. The loss
    is the code length of both per sub-pixel of the full image, as the file carries both."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        small, big = cfg.parts()
        self.small = build_model(small)
        self.big = PixelCNN(big)

    def set_quantize(self, on: bool):
        self.small.set_quantize(on)
        self.big.set_quantize(on)

    def bits(self, img: torch.Tensor) -> torch.Tensor:
        s = subsample(img, self.cfg.scale)
        total = nll_bits(self.small(s), s, self.cfg.head, self.cfg.levels).sum()
        total = total + nll_bits(self.big(img, s), img, self.cfg.head, self.cfg.levels).sum()
        return total / img.numel()
