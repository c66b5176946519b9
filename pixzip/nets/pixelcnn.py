"""The integer PixelCNN (`training.pixelcnn` trains it): masked convolutions over a canvas, evaluated
densely by the encoder and wavefront by wavefront, channel group by channel group, by the decoder."""

from __future__ import annotations

import torch

from ..spec.config import ModelConfig
from .base import IntModel
from .canvas import Canvas, Scattered, dense_runs
from .qconv import QConv, requantize, residual_add


class IntPixelCNN(IntModel):
    """The integer PixelCNN. Built by `training.export` or loaded from a model file."""

    gpu_path = True

    def __init__(self, cfg: ModelConfig, layers: dict, head: dict, tables: dict):
        super().__init__(cfg, layers, head, tables)
        self.conv_a: list[QConv] = layers["conv_a"]
        self.conv_b: list[QConv] = layers["conv_b"]

    @classmethod
    def from_convs(cls, cfg: ModelConfig, convs: dict, head: dict, tables: dict) -> "IntPixelCNN":
        layers = {k: convs[k] for k in ("first", "head1", "out", "skip") if k in convs}
        layers["conv_a"] = [convs[f"conv_a{b}"] for b in range(cfg.blocks)]
        layers["conv_b"] = [convs[f"conv_b{b}"] for b in range(cfg.blocks)]
        if "upsample" in convs:
            layers["upsample"] = convs["upsample"]
            layers["cond"] = {k[5:]: v for k, v in convs.items() if k.startswith("cond.")}
        return cls(cfg, layers, head, tables)

    def named_convs(self):
        yield "first", self.first
        for b, (ca, cb) in enumerate(zip(self.conv_a, self.conv_b)):
            yield f"conv_a{b}", ca
            yield f"conv_b{b}", cb
        yield "head1", self.head1
        yield "out", self.out
        if self.skip is not None:
            yield "skip", self.skip
        if self.upsample is not None:
            yield "upsample", self.upsample
            for k, v in self.cond.items():
                yield f"cond.{k}", v

    # -- scheduling -----------------------------------------------------------------------------------
    @property
    def pad(self) -> int:
        return self.cfg.pixelcnn_pad

    @property
    def slope(self) -> int:
        """Wavefront slope s: pixel (i, j) only needs pixels of smaller t = j + s*i."""
        return self.cfg.pixelcnn_slope

    @property
    def wide_stream(self) -> bool:
        """A 16-bit residual stream s0..sB, read by the layers through int8 buffers r0..rB holding the
        ReLU of the stream requantised (head["read_mult"], head["read_shift"], one per reader)."""
        return self.cfg.stream_bits == 16

    def new_canvas(self, sizes: list[tuple[int, int]]) -> Canvas:
        # only what a layer reads off-centre needs a buffer: the image, and the stream (8-bit) or its
        # int8 reads (16-bit); centre-only (1x1) reads take values kept in hand
        C, h, B = self.cfg.channels, self.cfg.hidden, self.cfg.blocks
        stream = "r" if self.wide_stream else "s"
        channels = {"img": C, **{f"{stream}{b}": h for b in range(B + 1)}}
        if self.cfg.cond:
            channels["u"] = self.cfg.cond
        return Canvas(sizes, self.pad, channels, self.device)

    # -- the network ----------------------------------------------------------------------------------
    def _conv(self, conv: QConv, canvas: Canvas, x: torch.Tensor, sites, group, name: str) -> torch.Tensor:
        """One requantised layer: inputs x (taps, or centre values) -> outputs of `group`."""
        return conv.requant(conv.matmul(x, group), group, self._cond(canvas, name, sites, group))

    def _stream(self, canvas: Canvas, b: int, sites, y: torch.Tensor, cols: slice) -> tuple[str, torch.Tensor]:
        """Store stream s{b} (values y, columns `cols`) where the next layers read it; returns that
        buffer's name and its values here. A 16-bit stream is read through its int8 ReLU."""
        if self.wide_stream:   # one table lookup: the requantisation of every value 0..32767, precomputed
            y = self._read_table(b).index_select(0, y.clamp(min=0).reshape(-1).to(torch.int32)).view(y.shape)
        name = f"r{b}" if self.wide_stream else f"s{b}"
        sites.write(canvas.buf[name], cols, y)
        return name, y

    def _read_table(self, b: int) -> torch.Tensor:
        """int8 ReLU read of stream b for every non-negative int16 value: exactly
        requantize(v, read_mult[b], read_shift[b], 0, 127), tabulated once (32 KB)."""
        key = ("read", b)
        if key not in self._cache:
            v = torch.arange(1 << 15, dtype=torch.int64, device=self.device)
            self._cache[key] = requantize(v, self.head["read_mult"][b], self.head["read_shift"][b], 0, 127).to(torch.int8)
        return self._cache[key]

    def gather_index(self, canvas: Canvas, pos: torch.Tensor) -> Scattered:
        """The decoder's sites at flat positions `pos`; their gather indices are built once per
        wavefront and reused for the R, G and B steps."""
        return Scattered(self, canvas, pos)

    def encode_params(self, canvas: Canvas, pos: torch.Tensor) -> torch.Tensor:
        """The encoder's pass: head outputs (n, channels, D) at flat positions `pos` (every real pixel
        of the canvas, in canvas.pixels() order), all groups at once, evaluated densely."""
        return torch.cat([self.forward(canvas, run, None)[run.valid[:, 0].bool()]
                          for run in dense_runs(self, canvas, pos)])

    def forward(self, canvas: Canvas, sites, group: int | None = None) -> torch.Tensor:
        """Evaluate every layer at `sites` (Scattered or Dense) for one channel group
        (None: all groups; a spatial trunk, channel_deps="skip", always runs for all).

        The image buffer must already hold every pixel these positions may see. Returns the head's
        integer outputs, (n, channels, D): (mu16, log-scale index) for the Laplace head, logits in 1/16
        nat for the softmax head.
        """
        trunk_group = group if self.cfg.channel_deps == "masks" else None
        acc = self._trunk(canvas, sites, trunk_group)
        if group is not None and trunk_group is None:
            acc = acc[:, self._channel_cols(group)]
        return self._head_params(acc, group, self._skip(canvas, sites, group))

    def step_params(self, canvas: Canvas, index: Scattered, channel: int, cache: dict) -> torch.Tensor:
        """The decoder's step: head outputs (n, D) of one channel at one wavefront. With a spatial trunk
        the trunk runs once per wavefront (cached for the next channels); only the skip predictor, which
        sees the channels decoded so far, runs per channel."""
        if self.cfg.channel_deps == "masks":
            return self.forward(canvas, index, channel)[:, 0]
        if channel == 0:
            cache["acc"] = self._trunk(canvas, index, None)
        acc = cache["acc"][:, self._channel_cols(channel)]
        return self._head_params(acc, channel, self._skip(canvas, index, channel))[:, 0]

    def _trunk(self, canvas: Canvas, sites, group: int | None) -> torch.Tensor:
        """All trunk layers, then the output layer's biased int32 accumulators."""
        cols = self.first.cols(group)
        y = self._conv(self.first, canvas, sites.taps(canvas.buf["img"], self.first.key, "img", group), sites,
                       group, "first")
        src, read = self._stream(canvas, 0, sites, y, cols)
        for b, (ca, cb) in enumerate(zip(self.conv_a, self.conv_b)):
            mid = self._conv(ca, canvas, sites.taps(canvas.buf[src], ca.key, src, group), sites, group, f"conv_a{b}")
            mid = sites.centre(f"mid{b}", group, mid)
            # the residual: this group's stream values at these sites are the y in hand
            y = residual_add(y, self._conv(cb, canvas, mid, sites, group, f"conv_b{b}"))
            src, read = self._stream(canvas, b + 1, sites, y, cols)
        return self._head_trunk(canvas, sites.centre("head", group, read), sites, group)
