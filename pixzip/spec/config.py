"""ModelConfig: the description of a network, torch-free.

It is stored inside every checkpoint and exported model file and decides the integer network's shape,
so it belongs to the spec: the model file reader, the integer networks and the float models all read
it from here."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace


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
    def symbol_values(self):
        """symbol -> pixel value (numpy): 0..255, or 0 and 255 for a bilevel model."""
        import numpy as np
        return np.arange(256) if self.levels == 256 else np.array([0, 255])

    @property
    def pixelcnn_pad(self) -> int:
        """A PixelCNN's canvas padding: its widest kernel's radius."""
        return max(self.first_kernel, self.block_kernel) // 2

    @property
    def pixelcnn_slope(self) -> int:
        """A PixelCNN's decode wavefront slope: `slope`, or the square kernels' own, pad + 1."""
        return self.slope or self.pixelcnn_pad + 1

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
