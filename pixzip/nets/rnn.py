"""Integer Row LSTM and Diagonal BiLSTM: the coding path of the PixelRNN models (`training.rnn`).

The LSTM cell runs in fixed point with lookup tables stored in the model file (see `lstm_cell`), so
it is exact on any device. States live in the canvas like every other activation: h as int8, the cell
state c as int32 (Q12), one buffer per layer and direction, so any schedule that respects the
dependencies computes the same integers:

* Row LSTM: h(i, j) reads h(i-1, j-k/2 .. j+k/2) and c(i-1, j). The encoder runs layer by layer,
  row after row within a layer; the decoder walks wavefronts t = j + s*i like the PixelCNN.
* Diagonal BiLSTM: left-to-right h(i, j) reads h(i-1, j), h(i, j-1) and c(i, j-1); right-to-left
  reads h(i-1, j), h(i, j+1) and c(i, j+1) and reaches the output one row lower. The encoder runs
  layer by layer over anti-diagonals; the decoder goes pixel by pixel (raster order, tiles batched)
  and runs the right-to-left pass of a row once that row is decoded.
"""

from __future__ import annotations

import torch

from ..spec.config import ModelConfig
from ..spec import tables as spec_tables
from ..spec.fixed_point import CELL_FRAC, CELL_MAX, GATE_RANGE
from .base import IntModel
from .canvas import Canvas, Scattered
from .qconv import QConv, requantize, residual_add


RASTER_SLOPE = 1 << 20      # t = j + RASTER_SLOPE * i orders any tile's pixels in raster order



def gate_tables() -> dict[str, torch.Tensor]:
    """The sigmoid and tanh tables (`spec.tables.gate_tables`) as the engine holds them: int32 tensors."""
    return {name: torch.from_numpy(t) for name, t in spec_tables.gate_tables().items()}


class IntPixelRNN(IntModel):
    LAYER_CONVS: tuple = ()

    def __init__(self, cfg: ModelConfig, layers: dict, head: dict, tables: dict):
        super().__init__(cfg, layers, head, tables)
        self.lstm: list[dict[str, QConv]] = layers["lstm"]
        self.S = cfg.state_width
        self.sigmoid = tables["sigmoid"].to(torch.int32)
        self.tanh = tables["tanh"].to(torch.int32)

    @classmethod
    def from_convs(cls, cfg: ModelConfig, convs: dict, head: dict, tables: dict) -> "IntPixelRNN":
        layers = {k: convs[k] for k in ("first", "head1", "out", "skip") if k in convs}
        layers["lstm"] = [{n: convs[f"lstm{l}.{n}"] for n in cls.LAYER_CONVS} for l in range(cfg.layers)]
        return cls(cfg, layers, head, tables)

    def named_convs(self):
        yield "first", self.first
        for l, convs in enumerate(self.lstm):
            for n in self.LAYER_CONVS:
                yield f"lstm{l}.{n}", convs[n]
        yield "head1", self.head1
        yield "out", self.out
        if self.skip is not None:
            yield "skip", self.skip

    @property
    def pad(self) -> int:
        return max(self.cfg.first_kernel // 2, self.cfg.row_kernel // 2, 1)

    def state_buffers(self) -> dict:
        raise NotImplementedError

    def new_canvas(self, sizes: list[tuple[int, int]]) -> Canvas:
        cfg = self.cfg
        channels = {"img": cfg.channels}
        if cfg.skips:
            channels["k"] = cfg.hidden        # the skip connections' sum
        for l in range(cfg.layers + 1):
            channels[f"s{l}"] = cfg.hidden
        channels.update(self.state_buffers())
        return Canvas(sizes, self.pad, channels)

    # -- pieces shared by both LSTMs ------------------------------------------------------------------
    def lstm_cell(self, z: torch.Tensor, c_prev: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Gate pre-activations z (n, 4S) in 1/32 and the previous cell state (n, S) in Q12 -> h int8
        (1/128) and c int32 (Q12). Mirrored by `rnn.lstm_cell` in training."""
        # int32 is enough: gates are at most 32 768 (Q15) and |c| <= 2^16, so |f * c| + 2^14 < 2^31
        # and |i * g|, |o * t| <= 2^30
        S = self.S
        idx = z.to(torch.int32).clamp(-GATE_RANGE, GATE_RANGE - 1).add_(GATE_RANGE)     # (z left untouched)
        sig = self.sigmoid[idx[:, :3 * S]]
        i, f, o = sig[:, :S], sig[:, S:2 * S], sig[:, 2 * S:]
        g = self.tanh[idx[:, 3 * S:]]
        c = ((f * c_prev + (1 << 14)) >> 15).add_((i * g + (1 << 17)) >> 18)
        c.clamp_(-CELL_MAX * CELL_FRAC, CELL_MAX * CELL_FRAC)
        t = self.tanh[((c + 64) >> 7).clamp_(-GATE_RANGE, GATE_RANGE - 1).add_(GATE_RANGE)]
        h = ((o * t + (1 << 22)) >> 23).clamp_(-127, 127)
        return h.to(torch.int8), c

    def _conv(self, conv: QConv, canvas: Canvas, src: str, pos: torch.Tensor) -> torch.Tensor:
        return conv.requant(conv.accumulate(canvas.buf[src], self._gather(canvas, conv, pos), None), None)

    def _cell(self, canvas: Canvas, convs: dict, stream: str, state: tuple[str, str], c_offset: int,
              pos: torch.Tensor, which: str = "", z_in: torch.Tensor | None = None):
        """One LSTM cell at `pos`: gates from the stream below (or `z_in`, those input-to-state terms
        computed beforehand) and the neighbouring states; the cell state continues from pos + c_offset."""
        h_buf, c_buf = state
        z = self._conv(convs["input" + which], canvas, stream, pos) if z_in is None else z_in
        z = z + self._conv(convs["state" + which], canvas, h_buf, pos)
        h, c = self.lstm_cell(z, canvas.buf[c_buf].index_select(0, pos + c_offset))
        canvas.buf[h_buf].index_copy_(0, pos, h)
        canvas.buf[c_buf].index_copy_(0, pos, c)
        return h

    def _out(self, canvas: Canvas, l: int, pos: torch.Tensor, x: torch.Tensor):
        """Layer l's output back to the stream (masked 1x1 convolution, residual add)."""
        out = self.lstm[l]["out"]
        y = out.requant(out.matmul(x), None)
        if self.cfg.residual:
            y = residual_add(canvas.buf[f"s{l}"].index_select(0, pos), y)
        canvas.buf[f"s{l + 1}"].index_copy_(0, pos, y)

    def _first(self, canvas: Canvas, pos: torch.Tensor):
        canvas.buf["s0"].index_copy_(0, pos, self._conv(self.first, canvas, "img", pos))

    def _head(self, canvas: Canvas, pos: torch.Tensor, group: int | None, sites: Scattered | None = None) -> torch.Tensor:
        """Head outputs (n, channels or 1, D) at `pos`, from the last stream or the skip sum. The
        decoder passes the wavefront's `sites`, which keep the head's earlier channel groups."""
        src = f"s{self.cfg.layers}"
        if self.cfg.skips:
            total = sum(canvas.buf[f"s{l}"].index_select(0, pos).to(torch.int32)
                        for l in range(1, self.cfg.layers + 1))
            k = requantize(total, self.head["skips_mult"], self.head["skips_shift"], -128, 127)
            canvas.buf["k"].index_copy_(0, pos, k.to(torch.int8))
            src = "k"
        sites = sites or Scattered(self, canvas, pos)
        acc = self._head_trunk(canvas, sites.taps(canvas.buf[src], 1), sites, group)
        return self._head_params(acc, group, self._skip(canvas, sites, group))

    def gather_index(self, canvas: Canvas, pos: torch.Tensor) -> dict:
        return {"pos": pos, "sites": Scattered(self, canvas, pos)}

    def step_params(self, canvas: Canvas, index: dict, channel: int, cache: dict) -> torch.Tensor:
        """The decoder's step: every layer at the positions (all channel groups: a channel's groups see
        only the channels decoded so far, and the last channel's step leaves final states), then the
        head for one channel."""
        pos = index["pos"]
        self._trunk_step(canvas, pos, channel)
        return self._head(canvas, pos, channel, index["sites"])[:, 0]

    def _trunk_step(self, canvas: Canvas, pos: torch.Tensor, channel: int):
        raise NotImplementedError


class IntRowLSTM(IntPixelRNN):
    LAYER_CONVS = ("input", "state", "out")

    @property
    def slope(self) -> int:
        """h(i, j) needs h(i-1, j + k/2) and the first layer reaches first_kernel/2 columns right."""
        return max(self.cfg.first_kernel, self.cfg.row_kernel) // 2 + 1

    def state_buffers(self) -> dict:
        S = self.S
        return {**{f"h{l}": S for l in range(self.cfg.layers)},
                **{f"c{l}": (S, torch.int32) for l in range(self.cfg.layers)}}

    def _layers_at(self, canvas: Canvas, pos: torch.Tensor):
        for l, convs in enumerate(self.lstm):
            h = self._cell(canvas, convs, f"s{l}", (f"h{l}", f"c{l}"), -canvas.Wp, pos)
            self._out(canvas, l, pos, h)

    def encode_params(self, canvas: Canvas, pos: torch.Tensor) -> torch.Tensor:
        """Layer by layer: the input-to-state terms of every pixel in one product, then the recurrence
        row by row, then the layer's output for every pixel."""
        self._first(canvas, pos)
        _, i, _ = canvas.locate(pos)
        rows = _groups(i)
        for l, convs in enumerate(self.lstm):
            z_in = self._conv(convs["input"], canvas, f"s{l}", pos)
            for k in rows:
                self._cell(canvas, convs, f"s{l}", (f"h{l}", f"c{l}"), -canvas.Wp, pos[k], z_in=z_in[k])
            self._out(canvas, l, pos, canvas.buf[f"h{l}"].index_select(0, pos))
        return self._head(canvas, pos, None)

    def _trunk_step(self, canvas: Canvas, pos: torch.Tensor, channel: int):
        self._first(canvas, pos)
        self._layers_at(canvas, pos)


class IntDiagBiLSTM(IntPixelRNN):
    LAYER_CONVS = ("input_l", "state_l", "input_r", "state_r", "out")
    slope = RASTER_SLOPE            # the whole past is context: raster order within a tile

    def state_buffers(self) -> dict:
        S, n = self.S, self.cfg.layers
        bufs = {}
        for d in ("l", "r"):
            bufs.update({f"h{d}{l}": S for l in range(n)})
            bufs.update({f"c{d}{l}": (S, torch.int32) for l in range(n)})
        return bufs

    def _left(self, canvas, l, pos, z_in=None):
        self._cell(canvas, self.lstm[l], f"s{l}", (f"hl{l}", f"cl{l}"), -1, pos, "_l", z_in)

    def _right(self, canvas, l, pos, z_in=None):
        self._cell(canvas, self.lstm[l], f"s{l}", (f"hr{l}", f"cr{l}"), +1, pos, "_r", z_in)

    def _combine(self, canvas, l, pos):
        """Stream of layer l+1 at pos: [h left-to-right here | h right-to-left one row up]."""
        x = torch.cat([canvas.buf[f"hl{l}"].index_select(0, pos),
                       canvas.buf[f"hr{l}"].index_select(0, pos - canvas.Wp)], dim=1)
        self._out(canvas, l, pos, x)

    def encode_params(self, canvas: Canvas, pos: torch.Tensor) -> torch.Tensor:
        self._first(canvas, pos)
        _, i, j = canvas.locate(pos)
        lr = _groups(i + j)                          # h(i-1, j), h(i, j-1) come first
        rl = _groups(i + (canvas.W - 1 - j))         # h(i-1, j), h(i, j+1) come first
        for l, convs in enumerate(self.lstm):
            z_l = self._conv(convs["input_l"], canvas, f"s{l}", pos)     # every pixel in one product
            z_r = self._conv(convs["input_r"], canvas, f"s{l}", pos)
            for k in lr:
                self._left(canvas, l, pos[k], z_l[k])
            for k in rl:
                self._right(canvas, l, pos[k], z_r[k])
            self._combine(canvas, l, pos)
        return self._head(canvas, pos, None)

    def _trunk_step(self, canvas: Canvas, pos: torch.Tensor, channel: int):
        if channel == 0:
            tile, i, j = canvas.locate(pos)
            if int(j[0]) == 0 and int(i[0]) > 0:      # a new row: the previous one is complete
                self._right_to_left_row(canvas, tile, int(i[0]) - 1)
        self._first(canvas, pos)
        for l in range(self.cfg.layers):
            self._left(canvas, l, pos)
            self._combine(canvas, l, pos)

    def _right_to_left_row(self, canvas: Canvas, tiles: torch.Tensor, r: int):
        """The right-to-left states of row r of these tiles, every layer (row r is fully decoded)."""
        widths = torch.tensor([canvas.sizes[int(t)][1] for t in tiles])
        base = tiles * (canvas.Hp * canvas.Wp) + (r + canvas.pad) * canvas.Wp + canvas.pad
        for l in range(self.cfg.layers):
            for j in range(int(widths.max()) - 1, -1, -1):
                self._right(canvas, l, base[widths > j] + j)


def _groups(d: torch.Tensor) -> list[torch.Tensor]:
    """Indices of the entries of d, grouped by value ascending (rows or diagonals, in dependency order)."""
    order = torch.argsort(d, stable=True)
    counts = torch.bincount(d[order])
    return [k for k in torch.split(order, counts.tolist()) if len(k)]
