"""Integer-exact inference engine: the single probability path of encoder and decoder.

Everything that decides a probability here is integer arithmetic: int8 activations and weights, int32
accumulation with `torch._int_mm`, requantisation by an integer multiply and an arithmetic shift, and
lookup tables (stored in the model file) for exp() and the Laplace slopes. Integer addition is
associative, so any device, thread count, kernel or batch composition gives the same integers.

The network is evaluated on a *canvas*: a batch of equally sized, zero-padded tiles. Each layer writes
its int8 output into a padded buffer; a convolution gathers its taps from the buffer below at a set of
positions. The encoder calls `IntPixelCNN.forward` once with every position and every channel group;
the decoder calls it wavefront by wavefront and group by group. Both run the same code, so they compute
the same integers (tests/test_engine.py proves it).
"""

from __future__ import annotations

import copy

import numpy as np
import torch

from ..entropy.tables import DenseTables, PrefixTables
from ..spec import tables as spec_tables
from ..spec.config import ModelConfig
from ..spec.fixed_point import LS_FRAC, LS_MIN
from .canvas import Canvas
from .qconv import QConv, requantize, taps_of


class IntModel:
    """What every integer architecture shares: the head (masked 1x1 layers, optional linear skip
    predictor), the requantisation of its outputs and the frequency tables. Subclasses define the
    trunk, the canvas buffers, the decode schedule (`slope`) and `encode_params` / `step_params`.

    The codec uses: `cfg`, `slope`, `new_canvas`, `encode_params` (the encoder's pass over all
    pixels of a canvas), `gather_index` + `step_params` (the decoder's step: one wavefront, one
    channel), `frequencies` (format v2's tables), `cdf_tables` (v3's; `cdf_tables_here` on a GPU),
    `symbol_values`."""

    gpu_path = False     # whether the GPU path (graphs, device lanes) runs this architecture

    def __init__(self, cfg: ModelConfig, layers: dict, head: dict, tables: dict):
        self.cfg = cfg
        self.first: QConv = layers["first"]
        self.head1: QConv = layers["head1"]
        self.out: QConv = layers["out"]
        self.skip: QConv | None = layers.get("skip")      # image -> mu linear predictor, or None
        self.head = head            # mult/shift per output channel for mu, log-scale or logits
        # conditional models (cfg.cond): the deconvolution of the small image and per-layer 1x1 biases
        self.upsample: QConv | None = layers.get("upsample")
        self.cond: dict[str, QConv] = layers.get("cond", {})
        self.tables = tables
        self.exp_table = tables["exp"].to(torch.int32)
        self._exp_f64 = self.exp_table.to(torch.float64)
        self.invb_table = tables["invb"].to(torch.int32)
        self._cache: dict = {}     # derived once from the model: gather offsets per canvas width, tables
        self.device = torch.device("cpu")
        self.host = self           # the model on the CPU (where the coder's tables are made)
        self._on: dict = {}        # device -> this model's copy there
        # symbol -> pixel value (bilevel models code 0 and 255 as 0 and 1)
        self.symbol_values = cfg.symbol_values

    def named_convs(self):
        """(name, QConv) of every layer, as the model file stores them."""
        raise NotImplementedError

    def __getstate__(self):
        """Pickled (for worker processes) without its copies on other devices (CUDA tensors would
        travel by IPC) and without derived data, which is rebuilt on demand."""
        if self.device.type != "cpu":
            raise ValueError("only a model on the CPU goes to worker processes")
        return {**self.__dict__, "_on": {}, "_cache": {}}

    def on(self, device) -> "IntModel":
        """This model with its layers on `device`: a copy, made once per device (the CPU: itself). The
        head's outputs come back to the CPU, where the frequency tables are made for the coder, so the
        tables stay here."""
        device = torch.device(device)
        if self.host is not self:
            return self.host.on(device)
        if device.type == "cpu":
            return self
        require_gpu_path(self)
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        if device not in self._on:
            m = copy.copy(self)
            for name, value in vars(self).items():
                if isinstance(value, QConv):
                    setattr(m, name, value.to(device))
                elif isinstance(value, list) and value and isinstance(value[0], QConv):
                    setattr(m, name, [c.to(device) for c in value])
                elif isinstance(value, dict) and value and isinstance(next(iter(value.values())), QConv):
                    setattr(m, name, {k: c.to(device) for k, c in value.items()})
            m.head = {k: v.to(device) for k, v in self.head.items()}
            m.device, m._cache, m._on = device, {}, {}
            self._on[device] = m
        return self._on[device]

    @property
    def pad(self) -> int:
        raise NotImplementedError

    def _offs(self, canvas: Canvas, conv_key) -> torch.Tensor:
        key = (canvas.Wp, conv_key)
        if key not in self._cache:
            self._cache[key] = canvas.offsets(taps_of(conv_key))
        return self._cache[key]

    def _gather(self, canvas: Canvas, conv: QConv, pos: torch.Tensor) -> torch.Tensor:
        """(n, taps) buffer rows that `conv` reads for outputs at flat positions `pos`."""
        return pos[:, None] + self._offs(canvas, conv.key)[None, :]

    def _head_trunk(self, canvas: Canvas, x: torch.Tensor, sites, group: int | None) -> torch.Tensor:
        """head1 (ReLU, masked 1x1, ReLU), then the output layer's biased int32 accumulators, at
        `sites` (Scattered or Dense); x is head1's input there (all channels, or the groups up to
        `group`)."""
        y = self.head1.requant(self.head1.matmul(x, group), group, self._cond(canvas, "head1", sites, group))
        return self.out.biased(self.out.matmul(sites.centre("h", group, y), group), group)

    def _cond(self, canvas: Canvas, layer: str, sites, group: int | None):
        """(accumulators, QConv) of a layer's conditional bias at `sites`."""
        conv = self.cond.get(layer)
        return None if conv is None else (conv.matmul(sites.taps(canvas.buf["u"], 1), group), conv)

    def condition(self, canvas: Canvas, tile: int, small: np.ndarray):
        """Fill the conditioning map of one tile from its part of the subsampled image (uint8
        (ceil(h/s), ceil(w/s), C)): the deconvolution, one int8 vector per full-resolution pixel."""
        s = self.cfg.scale
        h, w = canvas.sizes[tile]
        x = torch.from_numpy(small.reshape(-1, small.shape[2]).astype(np.int16) - 128).to(torch.int8)
        y = self.upsample.requant(self.upsample.matmul(x.contiguous()), None)      # (n, s*s*cond) phase-major
        hs, ws = small.shape[:2]
        y = y.view(hs, ws, s, s, -1).permute(0, 2, 1, 3, 4).reshape(hs * s, ws * s, -1)[:h, :w]
        i, j = np.divmod(np.arange(h * w), w)
        canvas.buf["u"].index_copy_(0, canvas.flat(np.full(h * w, tile), i, j), y.reshape(h * w, -1).contiguous())

    def _skip(self, canvas: Canvas, sites, group: int | None) -> torch.Tensor | None:
        if self.skip is None:
            return None
        return self.skip.biased(self.skip.matmul(sites.taps(canvas.buf["img"], self.skip.key, "img", group), group),
                                group)

    def _channel_cols(self, channel: int | None) -> slice:
        D = self.cfg.head_dim
        return slice(0, self.cfg.channels * D) if channel is None else slice(channel * D, (channel + 1) * D)

    def _head_params(self, acc: torch.Tensor, group: int | None, skip: torch.Tensor | None) -> torch.Tensor:
        c = self._channel_cols(group)
        D = self.cfg.head_dim
        mult, shift = self.head["mult"][c], self.head["shift"][c]
        if self.cfg.head == "softmax":
            q = requantize(acc, mult, shift, -(2 ** 30), 2 ** 30)
            return q.view(len(acc), -1, D)
        q = acc.view(len(acc), -1, 2)
        mult, shift = mult.view(-1, 2), shift.view(-1, 2)
        mu = requantize(q[..., 0], mult[:, 0], shift[:, 0], -(2 ** 30), 2 ** 30) + 128 * 16
        if skip is not None:
            c = self.skip.cols(group)
            mu += requantize(skip, self.head["skip_mult"][c], self.head["skip_shift"][c], -(2 ** 30), 2 ** 30)
        ls = requantize(q[..., 1], mult[:, 1], shift[:, 1], int(LS_MIN * LS_FRAC), len(self.invb_table) - 1 + int(LS_MIN * LS_FRAC))
        return torch.stack([mu.clamp(0, 255 * 16), ls - int(LS_MIN * LS_FRAC)], dim=-1)

    def min_bits_per_symbol(self) -> float:
        """No symbol costs less: the likeliest value gets at most exp_table[0] against at least
        exp_table[-1] for each of the other levels (for reporting and sanity bounds, not for coding)."""
        return spec_tables.min_bits_per_symbol(self.exp_table.numpy(), self.cfg.levels)

    def frequencies(self, params: torch.Tensor, dtype: torch.dtype = torch.int32) -> torch.Tensor:
        """Head outputs (n, D) of n sub-pixels -> integer frequency tables (n, levels), every entry >= 1.

        dtype=torch.float64 returns the same integers as float64 (exact: they are below 2^17), the form
        constriction takes, without a conversion pass."""
        table = self.exp_table if dtype == torch.int32 else self._exp_f64
        if params.device != table.device:     # the decoder's lanes on a GPU: the table goes there once
            table = self._copy_on(params.device, ("exp", dtype), table)
        if self.cfg.head == "softmax":
            excess = (params.amax(dim=1, keepdim=True) - params).clamp_(max=len(self.exp_table) - 1)
            return table.index_select(0, excess.view(-1).to(torch.int32)).view(excess.shape)
        # Laplace: each table is 256 consecutive entries of the precomputed rows (the same integers as
        # the formula); a sliding-window view makes the gather one row copy per table
        return self._laplace_windows(dtype).index_select(0, self._laplace_start(params))

    def _laplace_start(self, params: torch.Tensor) -> torch.Tensor:
        """Where each Laplace table starts in the flattened rows of `laplace_rows`."""
        return spec_tables.laplace_start(params[:, 0].to(torch.int64), params[:, 1].to(torch.int64))

    def _laplace_windows(self, dtype: torch.dtype) -> torch.Tensor:
        """Every 256-entry window of the flattened Laplace rows (a view, nothing copied)."""
        return self.laplace_rows(dtype).view(-1).unfold(0, self.cfg.levels, 1)

    def code_lengths(self, params: torch.Tensor, symbols: np.ndarray, freq: torch.Tensor) -> np.ndarray:
        """Each symbol's ideal code length in bits under its table (for reporting only). A Laplace
        table's total comes from precomputed prefix sums, so the tables are not read again."""
        sym = torch.from_numpy(symbols.astype(np.int64))
        hit = freq.gather(1, sym[:, None])[:, 0].to(torch.float64)
        if self.cfg.head == "softmax":
            total = freq.to(torch.float64).sum(dim=1)
        else:
            start = self._laplace_start(params)
            total = (self._laplace_prefix()[start + self.cfg.levels] - self._laplace_prefix()[start]).to(torch.float64)
        return (torch.log2(total) - torch.log2(hit)).numpy()

    def _laplace_prefix(self) -> torch.Tensor:
        """Prefix sums of the flattened Laplace rows (int64, CPU): a table starting at `start` has
        C(k) = prefix[start + k] - prefix[start]; strictly increasing (every entry is >= 1)."""
        key = "laplace_prefix"
        if key not in self._cache:
            self._cache[key] = torch.from_numpy(spec_tables.laplace_prefix(self.exp_table.numpy(),
                                                                           self.invb_table.numpy()))
        return self._cache[key]

    def cdf_tables(self, params: torch.Tensor | np.ndarray) -> "DenseTables | PrefixTables":
        """Head outputs (n, D) on any device (or as a numpy array) -> the cumulative frequencies of their
        integer tables, on the CPU, in the form the rANS coder reads (`entropy.rans`). A Laplace table's
        are two lookups in the rows' prefix sums: no table is built."""
        p = params.cpu().numpy() if torch.is_tensor(params) else params
        if self.cfg.head == "softmax":
            return DenseTables(self.cdf_tables_here(torch.from_numpy(p)).cum.numpy())
        start = spec_tables.laplace_start(p[:, 0].astype(np.int64), p[:, 1].astype(np.int64))   # in numpy: a hot path
        return PrefixTables(self._laplace_prefix().numpy(), start, self.cfg.levels)

    def cdf_tables_here(self, params: torch.Tensor) -> "DenseTables | PrefixTables":
        """cdf_tables as int64 tensors on the device of `params` (the decoder's lanes on a GPU, with no
        round trip to the host): the same integers."""
        if self.cfg.head == "softmax":
            freq = self.frequencies(params).to(torch.int64)
            return DenseTables(torch.nn.functional.pad(freq.cumsum(1), (1, 0)))
        prefix = self._copy_on(params.device, "laplace_prefix", self._laplace_prefix())
        start = spec_tables.laplace_start(params[:, 0].to(torch.int64), params[:, 1].to(torch.int64))
        return PrefixTables(prefix, start, self.cfg.levels)

    def _copy_on(self, device: torch.device, key, table: torch.Tensor) -> torch.Tensor:
        """A CPU table's copy on `device` (the table itself on the CPU), made once."""
        if device.type == "cpu":
            return table
        key = ("copy", device, key)
        if key not in self._cache:
            self._cache[key] = table.to(device)
        return self._cache[key]

    def laplace_rows(self, dtype: torch.dtype) -> torch.Tensor:
        """The Laplace head's frequency tables, every (log-scale index, mu16 mod 16) row, precomputed
        once from the model's stored tables by `spec.tables.laplace_excess` (the formula's one home)."""
        key = ("laplace", dtype)
        if key not in self._cache:
            excess = spec_tables.laplace_excess(self.invb_table.numpy(), len(self.exp_table))
            table = self.exp_table if dtype == torch.int32 else self._exp_f64
            self._cache[key] = table[torch.from_numpy(excess)].contiguous()
        return self._cache[key]


def require_gpu_path(model):
    """The GPU path runs the models whose class says so (`gpu_path`: the PixelCNN; the LSTM and
    multi-scale engines are not ported)."""
    if not getattr(model, "gpu_path", False):
        arch = getattr(model, "arch", None) or model.cfg.arch
        raise ValueError(f"GPU coding is implemented for PixelCNN models, not {arch}: use --device cpu")
