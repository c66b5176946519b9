"""A network's integers as numpy arrays, with its config: what a model file holds, torch-free.

A model file (`formats.pxm`) loads into a record (`from_file`); the native coder (`backends.native`)
packs its C structures from a record, so coding a shipped PixelCNN needs numpy and the C coder only.
The torch integer networks (`nets.registry`, built by `nets.modelfile.network`) are made from the same
arrays where torch runs (the reference, GPU and LSTM paths), and a network built in torch (an export,
a test's model) gives its record back with `record_of`. One layout, read in one place: the layer names
and tensor names below are the model file's.

This module imports neither torch nor any module that does (tests/test_layout.py)."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from ..spec import tables as spec_tables
from ..spec.config import ModelConfig


def conv_taps(k: int) -> list[tuple[int, int]]:
    """(dy, dx) offsets a causal kxk convolution reads: rows above, left in the row, the centre."""
    p = k // 2
    return [(dy, dx) for dy in range(-p, 1) for dx in range(-p, p + 1) if dy < 0 or dx <= 0]


@dataclass
class ConvRecord:
    """A masked convolution's integers (`nets.qconv.QConv` computes with them): int8 weights
    (taps * cin, cout) tap-major, bias, requantisation multiplier and shift per output channel."""
    k: int
    weight: np.ndarray
    bias: np.ndarray
    mult: np.ndarray
    shift: np.ndarray
    relu_in: bool = False
    lo: int = -128
    hi: int = 127
    groups: int = 1
    weight_low: np.ndarray | None = None     # wide weights: w = 256 * weight + weight_low
    taps: tuple | None = None                # (dy, dx) in weight order; None: conv_taps(k)

    @property
    def cout(self) -> int:
        return self.weight.shape[1]

    def tap_list(self) -> list[tuple[int, int]]:
        return list(self.taps) if self.taps is not None else conv_taps(self.k)

    def meta(self) -> dict:
        """The layer's entry in a model file's header."""
        meta = {"k": self.k, "relu_in": self.relu_in, "lo": self.lo, "hi": self.hi, "groups": self.groups}
        if self.taps is not None:
            meta["taps"] = [list(t) for t in self.taps]
        return meta

    def arrays(self, name: str) -> dict[str, np.ndarray]:
        """The layer's tensors as a model file names and orders them."""
        out = {f"{name}.weight": self.weight, f"{name}.bias": self.bias, f"{name}.mult": self.mult,
               f"{name}.shift": self.shift}
        if self.weight_low is not None:
            out[f"{name}.weight_low"] = self.weight_low
        return out


class NetRecord:
    """One network (any architecture; a multi-scale model's two stages under the prefixes small. and
    big.): its config, layers by name, head constants and tables, as numpy arrays."""

    def __init__(self, cfg: ModelConfig, convs: dict[str, ConvRecord], head: dict[str, np.ndarray],
                 tables: dict[str, np.ndarray]):
        self.cfg, self.convs, self.head, self.tables = cfg, convs, head, tables
        self._cache: dict = {}       # derived once: the native coder's packing, the torch network, ...

    def __getstate__(self):
        return {**self.__dict__, "_cache": {}}

    # what the coder asks of a PixelCNN without building it (nets.pixelcnn.IntPixelCNN says the same)
    @property
    def pad(self) -> int:
        return self.cfg.pixelcnn_pad

    @property
    def slope(self) -> int:
        if self.cfg.arch != "pixelcnn":
            raise ValueError(f"the decode slope of a {self.cfg.arch} model is its network's")
        return self.cfg.pixelcnn_slope

    @property
    def symbol_values(self) -> np.ndarray:
        return self.cfg.symbol_values

    def pixelcnn_layers(self) -> tuple[ConvRecord, ConvRecord, ConvRecord, ConvRecord | None, list, list]:
        """(first, head1, out, skip or None, conv_a per block, conv_b per block) of a PixelCNN."""
        c = self.convs
        return (c["first"], c["head1"], c["out"], c.get("skip"), [c[f"conv_a{b}"] for b in range(self.cfg.blocks)],
                [c[f"conv_b{b}"] for b in range(self.cfg.blocks)])

    def min_bits_per_symbol(self) -> float:
        return spec_tables.min_bits_per_symbol(self.tables["exp"], self.cfg.levels)

    def laplace_prefix(self) -> np.ndarray:
        """The Laplace rows' prefix sums (`spec.tables.laplace_prefix`), made once."""
        if "laplace_prefix" not in self._cache:
            self._cache["laplace_prefix"] = spec_tables.laplace_prefix(self.tables["exp"], self.tables["invb"])
        return self._cache["laplace_prefix"]


class EnsembleRecord:
    """An ensemble's members (`nets.ensemble.IntEnsemble` mixes them), stored under m0., m1., ..."""

    arch = "ensemble"

    def __init__(self, members: list[NetRecord]):
        self.members = list(members)
        self.cfg = self.members[0].cfg          # channels, levels, symbols: the members'
        self._cache: dict = {}

    def __getstate__(self):
        return {**self.__dict__, "_cache": {}}

    @property
    def slope(self) -> int:
        return self.members[0].slope

    @property
    def symbol_values(self) -> np.ndarray:
        return self.cfg.symbol_values

    def min_bits_per_symbol(self) -> float:
        return min(m.min_bits_per_symbol() for m in self.members)


RECORDS = (NetRecord, EnsembleRecord)


def from_file(body: dict, tensors: dict[str, np.ndarray]) -> NetRecord | EnsembleRecord:
    """The record a model file's header and tensors describe (`formats.pxm.unpack`), in file order.
    KeyError, TypeError or ValueError for a malformed header."""
    order = {name.rsplit(".", 1)[0]: None for name in tensors}          # layers in the order of their tensors
    layers = body["layers"]
    names = [n for n in order if n in layers] + [n for n in layers if n not in order]

    def conv(n):
        m = layers[n]
        taps = m.get("taps")
        return ConvRecord(k=int(m["k"]), weight=tensors[f"{n}.weight"], bias=tensors[f"{n}.bias"],
                          mult=tensors[f"{n}.mult"], shift=tensors[f"{n}.shift"], relu_in=bool(m["relu_in"]),
                          lo=int(m["lo"]), hi=int(m["hi"]), groups=int(m["groups"]),
                          weight_low=tensors.get(f"{n}.weight_low"),
                          taps=None if taps is None else tuple((int(dy), int(dx)) for dy, dx in taps))

    convs = {n: conv(n) for n in names}

    def build(config: dict, prefix: str = "") -> NetRecord:
        cfg = ModelConfig.from_dict(config)
        part = {n[len(prefix):]: c for n, c in convs.items() if n.startswith(prefix)}
        head = {k[len(prefix) + 5:]: v for k, v in tensors.items() if k.startswith(prefix + "head.")}
        tables = {k[len(prefix) + 6:]: v for k, v in tensors.items() if k.startswith(prefix + "table.")}
        net = NetRecord(cfg, part, head, tables)
        if cfg.arch == "pixelcnn":
            net.pixelcnn_layers()            # KeyError where a layer is missing
        return net

    config = body["config"]
    if not isinstance(config, dict):
        raise TypeError("config")
    if config.get("arch") == "ensemble":
        return EnsembleRecord([build(c, f"m{k}.") for k, c in enumerate(config["members"])])
    return build(config)


def to_file(record: NetRecord | EnsembleRecord) -> tuple[dict, dict, dict[str, np.ndarray]]:
    """(config, layers, tensors) of a model file (`formats.pxm.pack`): an ensemble stores its members'
    layers, heads and tables under the prefixes m0., m1., ... and the config {"arch": "ensemble",
    "members": [their configs]}."""
    ensemble = isinstance(record, EnsembleRecord)
    parts = [(f"m{k}.", m) for k, m in enumerate(record.members)] if ensemble else [("", record)]
    layers, tensors = {}, {}
    for prefix, part in parts:
        for name, conv in part.convs.items():
            layers[prefix + name] = conv.meta()
            tensors.update(conv.arrays(prefix + name))
    for prefix, part in parts:
        tensors.update({f"{prefix}head.{n}": v for n, v in part.head.items()})
        tensors.update({f"{prefix}table.{n}": v for n, v in part.tables.items()})
    config = ({"arch": "ensemble", "members": [m.cfg.to_dict() for m in record.members]} if ensemble
              else record.cfg.to_dict())
    return config, layers, {k: np.ascontiguousarray(v) for k, v in tensors.items()}


def _array(t) -> np.ndarray:
    # a copy that owns its memory: a tensor's storage can move (sending a model to a worker process
    # moves it to shared memory), which would leave a view pointing at freed memory
    return np.array(t.numpy() if hasattr(t, "numpy") else t, copy=True)


def record_of(model) -> NetRecord | EnsembleRecord:
    """A model's record: itself for a record; for a torch integer network (or ensemble) on the CPU its
    integers copied to numpy, made once (kept in the network's cache) — the arrays of the record it
    was built from, where it was built from one (`nets.modelfile.network`)."""
    if isinstance(model, RECORDS):
        return model
    cache = getattr(model, "_cache", None)
    if cache is not None and "record" in cache:
        return cache["record"]
    with _MAKING:           # tiles code in threads: one record per network, which its packing lives in
        if cache is not None and "record" in cache:
            return cache["record"]
        return _record_of(model, cache)


_MAKING = threading.RLock()


def _record_of(model, cache) -> NetRecord | EnsembleRecord:
    if hasattr(model, "members"):
        record = EnsembleRecord([record_of(m) for m in model.members])
    else:
        convs = {name: ConvRecord(k=conv.k, weight=_array(conv.weight), bias=_array(conv.bias),
                                  mult=_array(conv.mult), shift=_array(conv.shift), relu_in=conv.relu_in,
                                  lo=conv.lo, hi=conv.hi, groups=conv.groups,
                                  weight_low=None if conv.weight_low is None else _array(conv.weight_low),
                                  taps=conv.taps)
                 for name, conv in model.named_convs()}
        record = NetRecord(model.cfg, convs, {k: _array(v) for k, v in model.head.items()},
                           {k: _array(v) for k, v in model.tables.items()})
    if cache is not None:
        cache["record"] = record
    return record
