"""The native CPU decoder (`pixzip/csrc/`, built at install when a C compiler is present).

It decodes a whole tile of format v3 in one call: the integer engine's arithmetic and the rANS lanes,
pixel by pixel in the decoding order, with the same integers as `IntPixelCNN.step_params` and
`codec._LaneDecoder` (tests/test_native.py compares them). Python and torch decode a sub-step in ~200
small calls whatever its width; here it is a loop, which is what makes a CPU decode fast. It also
encodes a whole tile in one call: a dense pass over the known pixels (row by row, several pixels per
product) and the lanes run backwards, the bytes of `codec._code_lanes`.

It covers the shipped PixelCNNs' structure (masked R/G/B groups, 16-bit residual stream, Laplace head
with the linear skip predictor); other models, a missing build, or PIXZIP_NATIVE=0 use the torch path.

The same library holds the adaptive entropy stage (csrc/adaptive.c, specification
pixzip/entropy/adaptive.py, docs/ADAPTIVE.md): encode_tile_adaptive / decode_tile_adaptive code a tile
with the network and the stage instead of the rANS lanes; AdaptiveState is the stage's learned state.
This module only packs a model's integers into the C structures, from its numpy record (`nets.record`:
what a model file loads into, or a torch network's integers): it imports no torch, and neither does the
C code.
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading

import numpy as np

from ..entropy import adaptive
from ..formats import clib
from ..entropy.value_map import ValueMap
from ..nets.record import ConvRecord, EnsembleRecord, NetRecord, record_of
from ..spec.fixed_point import LS_FRAC, LS_MIN

_i32p, _i64p, _i8p, _u8p = (ctypes.POINTER(t) for t in (ctypes.c_int32, ctypes.c_int64, ctypes.c_int8, ctypes.c_uint8))


class _Conv(ctypes.Structure):
    _fields_ = [("ntaps", ctypes.c_int32), ("cin", ctypes.c_int32), ("k4", ctypes.c_int32),
                ("cout", ctypes.c_int32), ("groups", ctypes.c_int32), ("npad", ctypes.c_int32),
                ("nruns", ctypes.c_int32), ("run_dy", _i32p), ("run_dx", _i32p), ("run_len", _i32p),
                ("w4", _i8p), ("w4_low", _i8p),
                ("bias", _i64p), ("mult", _i64p), ("shift", _i64p), ("offset", _i64p),
                ("lo", ctypes.c_int64), ("hi", ctypes.c_int64), ("requant", ctypes.c_int32)]


class _Model(ctypes.Structure):
    _fields_ = [("channels", ctypes.c_int32), ("hidden", ctypes.c_int32), ("blocks", ctypes.c_int32),
                ("slope", ctypes.c_int32), ("pad", ctypes.c_int32), ("levels", ctypes.c_int32),
                ("first", _Conv), ("head1", _Conv), ("out", _Conv), ("skip", _Conv),
                ("conv_a", ctypes.POINTER(_Conv)), ("conv_b", ctypes.POINTER(_Conv)),
                ("read_mult", _i64p), ("read_shift", _i64p), ("head_mult", _i64p), ("head_shift", _i64p),
                ("skip_mult", _i64p), ("skip_shift", _i64p), ("prefix", _i64p),
                ("ls_min", ctypes.c_int64), ("ls_max", ctypes.c_int64), ("symbol_values", _u8p)]


_MAX_CONTEXTS = 40         # csrc/adaptive.h's AD_MAX_CONTEXTS


class _Level(ctypes.Structure):
    """An effort level of the adaptive stage (csrc/adaptive.h's PzLevel), packed from adaptive.LEVELS."""
    _fields_ = [("n_contexts", ctypes.c_int32), ("ctx_len", ctypes.c_int32 * _MAX_CONTEXTS),
                ("ctx_feature", (ctypes.c_int32 * 4) * _MAX_CONTEXTS),
                ("n_mixers", ctypes.c_int32), ("mixer_feature", ctypes.c_int32 * 4), ("mixer_size", ctypes.c_int32 * 4),
                ("n_apms", ctypes.c_int32), ("apm_feature", ctypes.c_int32 * 4), ("apm_size", ctypes.c_int32 * 4),
                ("max_table_bits", ctypes.c_int32), ("counter_limit", ctypes.c_int32), ("mixer_rate", ctypes.c_int32),
                ("final_rate", ctypes.c_int32), ("mixer_init", ctypes.c_int32), ("net_init", ctypes.c_int32),
                ("apm_rate", ctypes.c_int32), ("lms", ctypes.c_int32), ("vote", ctypes.c_int32),
                ("ols", ctypes.c_int32), ("shifted", ctypes.c_int32), ("classical", ctypes.c_int32),
                ("template_bits", ctypes.c_int32),
                ("match", ctypes.c_int32), ("bitwise", ctypes.c_int32),
                ("prior", ctypes.c_void_p), ("prior_len", ctypes.c_int64)]


def _declare_adaptive(lib) -> None:
    """The adaptive stage's C functions (csrc/adaptive.c), where the library has them (an older build
    does not: the stage then runs in Python, adaptive.py)."""
    lib.has_adaptive = hasattr(lib, "pz_adaptive_new")
    if not lib.has_adaptive:
        return
    if not hasattr(lib, "pz_level_size") or lib.pz_level_size() != ctypes.sizeof(_Level):
        # a build of older sources: its level structure is laid out otherwise, and would be misread
        print("pixzip: the compiled coder is older than this pixzip (rebuild it: pip install .); its adaptive stage is "
              "not used (the Python one decodes, slowly)", file=sys.stderr)
        lib.has_adaptive = False
        return
    lib.pz_adaptive_new.argtypes = [ctypes.POINTER(_Level), ctypes.c_int64]
    lib.pz_adaptive_new.restype = ctypes.c_void_p
    lib.pz_adaptive_free.argtypes = [ctypes.c_void_p]
    lib.pz_adaptive_memory.argtypes = [ctypes.c_void_p]
    lib.pz_adaptive_memory.restype = ctypes.c_int64
    lib.pz_adaptive_learned.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    lib.pz_adaptive_learned.restype = ctypes.c_int64
    lib.pz_adaptive_encode_known.argtypes = [ctypes.c_void_p, _i64p, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                                             ctypes.c_int, _u8p, _i64p, _u8p, ctypes.c_int64]
    lib.pz_adaptive_encode_known.restype = ctypes.c_int64
    lib.pz_adaptive_decode_known.argtypes = [ctypes.c_void_p, _i64p, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                                             ctypes.c_int, _u8p, ctypes.c_int64, _i64p, _u8p]
    lib.pz_adaptive_decode_known.restype = ctypes.c_int
    members = ctypes.POINTER(ctypes.POINTER(_Model))
    lib.pz_encode_tile_adaptive.argtypes = [members, ctypes.c_int, ctypes.POINTER(ctypes.c_void_p), ctypes.c_int,
                                            ctypes.c_int, ctypes.c_int, _u8p, _u8p, ctypes.c_int64, _i64p, _i32p,
                                            ctypes.c_int]
    lib.pz_encode_tile_adaptive.restype = ctypes.c_int64
    lib.pz_decode_tile_adaptive.argtypes = [members, ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.c_int, _u8p,
                                            ctypes.c_int64, _u8p, _i32p, ctypes.c_int]
    lib.pz_decode_tile_adaptive.restype = ctypes.c_int


def _load():
    """The compiled library with the coder's functions declared, or None (not built, or switched off with
    PIXZIP_NATIVE=0; formats/clib.py finds and loads it)."""
    lib = clib.library()
    if lib is None:
        return None
    models = ctypes.POINTER(ctypes.POINTER(_Model))      # a model's C structure, or an ensemble's members'
    lib.pz_decode_tile.argtypes = [models, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int, _i64p,
                                   ctypes.POINTER(ctypes.c_uint32), ctypes.c_int64, _u8p]
    lib.pz_decode_tile.restype = ctypes.c_int
    lib.pz_tile_params.argtypes = [ctypes.POINTER(_Model), ctypes.c_int, ctypes.c_int, _u8p, _i64p]
    lib.pz_encode_tile.argtypes = [models, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int, _u8p, _i64p,
                                   ctypes.POINTER(ctypes.c_uint32), _i64p, _i32p, _i32p, _i64p]
    lib.pz_encode_tile.restype = ctypes.c_int
    lib.pz_select_kernel.argtypes = [ctypes.c_int]
    lib.pz_limits.argtypes = [ctypes.c_int]
    _declare_adaptive(lib)
    # PIXZIP_NATIVE_KERNEL=plain forces the portable product loop (tests compare both)
    lib.kernel = lib.pz_select_kernel(0 if os.environ.get("PIXZIP_NATIVE_KERNEL") == "plain" else -1)
    return lib


_LIB = _load()


def use_kernel(name: str) -> str:
    """Switch the product kernel ('plain', or 'best': AVX512-VNNI where the CPU has it; for tests and
    benchmarks); returns the one now in use. The pixels never depend on it."""
    _LIB.kernel = _LIB.pz_select_kernel(0 if name == "plain" else -1)
    return kernel()


def available() -> bool:
    return _LIB is not None


def adaptive_available() -> bool:
    """Whether the compiled coder has the adaptive stage."""
    return _LIB is not None and _LIB.has_adaptive


def kernel() -> str:
    """Which product kernel the library runs: 'avx512-vnni', 'plain', or 'none' (not available)."""
    return "none" if _LIB is None else ("avx512-vnni" if _LIB.kernel == 1 else "plain")


def supports(model) -> bool:
    """Whether the native coder computes this model's integers (else the torch path codes it): a
    record or a torch integer network on the CPU. An ensemble: whether it does for every member (no
    other path runs ensembles)."""
    if _LIB is None:
        return False
    device = getattr(model, "device", None)           # a torch network's; a record is on the CPU
    if device is not None and device.type != "cpu":
        return False
    if not hasattr(model, "members") and model.cfg.arch != "pixelcnn":
        return False
    rec = record_of(model)
    if "supports" not in rec._cache:
        rec._cache["supports"] = _structure_supported(rec)
    return rec._cache["supports"]


def _structure_supported(rec: NetRecord | EnsembleRecord) -> bool:
    if isinstance(rec, EnsembleRecord):
        return all(_structure_supported(m) for m in rec.members)
    cfg = rec.cfg
    if cfg.arch != "pixelcnn":
        return False
    first, head1, out, skip, conv_a, conv_b = rec.pixelcnn_layers()
    convs = [first, head1, out, *conv_a, *conv_b]
    return (cfg.channel_deps == "masks" and cfg.head == "laplace" and cfg.stream_bits == 16 and not cfg.cond
            and cfg.levels == 256 and skip is not None and "upsample" not in rec.convs
            and all(not c.relu_in and c.groups == cfg.channels for c in convs + [skip])
            and first.cout == cfg.hidden and out.cout == 2 * cfg.channels
            and min(int(rec.head[k].min()) for k in ("shift", "skip_shift", "read_shift")) > 0)


class _Packed:
    """A model's integers in the C structures; the arrays are kept alive with them."""

    def __init__(self, rec: NetRecord):
        self.keep: list = []
        cfg = rec.cfg
        first, head1, out, skip, conv_a, conv_b = rec.pixelcnn_layers()
        m = _Model(channels=cfg.channels, hidden=cfg.hidden, blocks=cfg.blocks, slope=rec.slope, pad=rec.pad,
                   levels=cfg.levels)
        m.first = self._conv(first, image=True)
        m.skip = self._conv(skip, image=True, requant=False)
        m.head1 = self._conv(head1)
        m.out = self._conv(out, requant=False)
        blocks = [(self._conv(a), self._conv(b)) for a, b in zip(conv_a, conv_b)]
        conv_a = (_Conv * max(1, len(blocks)))(*[a for a, _ in blocks])
        conv_b = (_Conv * max(1, len(blocks)))(*[b for _, b in blocks])
        self.keep += [conv_a, conv_b]
        m.conv_a, m.conv_b = conv_a, conv_b
        head = rec.head
        m.read_mult = self._ptr(head["read_mult"], np.int64)
        m.read_shift = self._ptr(head["read_shift"], np.int64)
        m.head_mult, m.head_shift = self._ptr(head["mult"], np.int64), self._ptr(head["shift"], np.int64)
        m.skip_mult = self._ptr(head["skip_mult"], np.int64)
        m.skip_shift = self._ptr(head["skip_shift"], np.int64)
        m.prefix = self._ptr(rec.laplace_prefix(), np.int64)
        m.ls_min = int(LS_MIN * LS_FRAC)
        m.ls_max = len(rec.tables["invb"]) - 1 + m.ls_min
        m.symbol_values = self._ptr(np.asarray(rec.symbol_values), np.uint8)
        self.model = m

    def _ptr(self, a, dtype):
        a = np.array(a, dtype=dtype, order="C", copy=True)        # owned by this packing, kept alive with it
        self.keep.append(a)
        return a.ctypes.data_as(ctypes.POINTER(np.ctypeslib.as_ctypes_type(dtype)))

    def _conv(self, conv: ConvRecord, image: bool = False, requant: bool = True) -> _Conv:
        """A layer's weights as quads per group (see csrc/network.h); a layer reading the image (uint8 there,
        int8 value - 128 in the engine) gets -128 * its columns' weight sums in the bias."""
        taps = conv.tap_list()
        w = conv.weight.astype(np.int64)
        wide = conv.weight_low is not None
        full = w * 256 + conv.weight_low.astype(np.int64) if wide else w
        bias = conv.bias.astype(np.int64) - (128 * full.sum(0) if image else 0)
        K, cout, G = w.shape[0], conv.cout, conv.groups
        n = cout // G
        k4, npad = -(-K // 4), -(-n // 16) * 16
        if k4 > _LIB.pz_limits(0) or npad > _LIB.pz_limits(1):
            raise ValueError("layer too large for the native decoder")

        def quads(weight):
            q = np.zeros((G, 4 * k4, npad), dtype=np.int8)
            for g in range(G):
                q[g, :K, :n] = weight[:, g * n:(g + 1) * n]
            return q.reshape(G, k4, 4, npad).transpose(0, 1, 3, 2)

        mult, shift = conv.mult.astype(np.int64), conv.shift.astype(np.int64)
        offset = bias * mult + (np.int64(1) << np.maximum(shift - 1, 0)) * (shift > 0)
        runs = _runs(taps)
        return _Conv(ntaps=len(taps), cin=K // len(taps), k4=k4, cout=cout, groups=G, npad=npad, nruns=len(runs),
                     run_dy=self._ptr([r[0] for r in runs], np.int32), run_dx=self._ptr([r[1] for r in runs], np.int32),
                     run_len=self._ptr([r[2] for r in runs], np.int32),
                     w4=self._ptr(quads(conv.weight), np.int8),
                     w4_low=self._ptr(quads(conv.weight_low), np.int8) if wide else None,
                     bias=self._ptr(bias, np.int64), mult=self._ptr(mult, np.int64),
                     shift=self._ptr(shift, np.int64), offset=self._ptr(offset, np.int64),
                     lo=conv.lo, hi=conv.hi, requant=int(requant))


def _runs(taps) -> list[tuple[int, int, int]]:
    """Taps (dy, dx) in weight order as runs (dy, first dx, count) of consecutive columns of one row:
    each run is one contiguous read of a buffer."""
    runs: list[list[int]] = []
    for dy, dx in taps:
        if runs and runs[-1][0] == dy and runs[-1][1] + runs[-1][2] == dx:
            runs[-1][2] += 1
        else:
            runs.append([dy, dx, 1])
    return [tuple(r) for r in runs]


_PACKING = threading.Lock()


def _packed(model) -> _Packed:
    """The C structures of a model (a record or a torch network: its record's), built once (under a
    lock: tiles decode in threads, and a second packing would free the first's arrays while a thread
    reads them)."""
    rec = record_of(model)
    with _PACKING:
        if "native" not in rec._cache:
            rec._cache["native"] = _Packed(rec)
        return rec._cache["native"]


def _members(model):
    """(the C array of the model's or its members' structures, their count); the packed models stay
    alive in the records' caches."""
    rec = record_of(model)
    nets = rec.members if isinstance(rec, EnsembleRecord) else [rec]
    array = (ctypes.POINTER(_Model) * len(nets))(*[ctypes.pointer(_packed(m).model) for m in nets])
    return array, len(nets)


def decode_tile(model: NetRecord | EnsembleRecord, states: np.ndarray, words: np.ndarray, h: int, w: int) -> np.ndarray:
    """A tile's pixels (h, w, channels) uint8 from its lanes' start states and its refill words.
    ValueError if the stream does not decode to its end exactly (corruption)."""
    members, count = _members(model)
    out = np.empty((h, w, model.cfg.channels), dtype=np.uint8)
    x = np.ascontiguousarray(states, dtype=np.int64)
    words = np.ascontiguousarray(words, dtype=np.uint32)
    status = _LIB.pz_decode_tile(members, count, h, w, len(x), x.ctypes.data_as(_i64p),
                                 words.ctypes.data_as(ctypes.POINTER(ctypes.c_uint32)), len(words),
                                 out.ctypes.data_as(_u8p))
    if status == -2:
        raise MemoryError("native decoder: out of memory")
    if status != 0:
        raise ValueError("a stream does not decode to its end exactly")
    return out


def tile_params(model: NetRecord, pixels: np.ndarray) -> np.ndarray:
    """The head outputs (mu16, log-scale index) of every sub-pixel of a known tile (h, w, channels)
    as the native decoder computes them, in the decoding order (wavefront, channel, row): int64 (n, 2).
    For tests: they must equal the engine's."""
    h, w, C = pixels.shape
    params = np.empty((h * w * C, 2), dtype=np.int64)
    pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
    if _LIB.pz_tile_params(ctypes.byref(_packed(model).model), h, w, pixels.ctypes.data_as(_u8p),
                           params.ctypes.data_as(_i64p)) != 0:
        raise MemoryError("native decoder: out of memory")
    return params


def _encode_call(model: NetRecord | EnsembleRecord, pixels: np.ndarray, lanes: int, params: np.ndarray | None):
    h, w, C = pixels.shape
    n = h * w * C
    pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
    states = np.empty(max(1, lanes), dtype=np.int64)
    words = np.empty(0 if params is not None else n, dtype=np.uint32)
    count = np.zeros(1, dtype=np.int64)
    total, width = (np.empty(0 if params is not None else n, dtype=np.int32) for _ in range(2))
    members, n_members = _members(model)
    status = _LIB.pz_encode_tile(members, n_members, h, w, lanes, pixels.ctypes.data_as(_u8p),
                                 states.ctypes.data_as(_i64p), words.ctypes.data_as(ctypes.POINTER(ctypes.c_uint32)),
                                 count.ctypes.data_as(_i64p), total.ctypes.data_as(_i32p),
                                 width.ctypes.data_as(_i32p), None if params is None else params.ctypes.data_as(_i64p))
    if status != 0:
        raise MemoryError("native encoder: out of memory")
    return states[:lanes], words[:int(count[0])], total, width


def encode_tile(model: NetRecord | EnsembleRecord, pixels: np.ndarray, lanes: int):
    """Code a tile of known pixels (h, w, channels) uint8 with `lanes` rANS lanes (row i: lane i % lanes):
    (final lane states int64, refill words uint32 in the decoder's reading order, and per sub-pixel in
    the decoding order its table's total and its symbol's width, int32, for the ideal bits). The same
    integers as codec._code_lanes over the engine's tables (tests/test_native.py)."""
    return _encode_call(model, pixels, lanes, None)


def dense_params(model: NetRecord, pixels: np.ndarray) -> np.ndarray:
    """The head outputs of every sub-pixel as the native encoder's dense pass computes them, in the
    decoding order: int64 (n, 2), as tile_params. For tests: they must equal the walk's."""
    params = np.empty((pixels.shape[0] * pixels.shape[1] * pixels.shape[2], 2), dtype=np.int64)
    _encode_call(model, pixels, 0, params)
    return params


# ---- the adaptive entropy stage (csrc/adaptive.c; specification: pixzip/entropy/adaptive.py) -------------------

def _pack_level(level) -> _Level:
    """adaptive.Level as the C structure (the Python table is the only definition of a level; its prior,
    adaptive.prior_of, is the array the structure points to, kept alive by that function's cache)."""
    from ..entropy.adaptive import SELECTOR_SIZES, prior_of
    prior = prior_of(level)
    lv = _Level(prior=None if prior is None else prior.ctypes.data, prior_len=0 if prior is None else prior.size,
                n_contexts=len(level.contexts), n_mixers=len(level.mixers), n_apms=len(level.apms),
                max_table_bits=level.max_table_bits, counter_limit=level.counter_limit, mixer_rate=level.mixer_rate,
                final_rate=level.final_rate, mixer_init=level.mixer_init, net_init=level.net_init,
                apm_rate=level.apm_rate, lms=level.lms, vote=level.vote, ols=int(level.ols),
                shifted=int(level.shifted), classical=int(level.classical), template_bits=int(level.template),
                match=int(level.match) + int(level.match and level.match_centre), bitwise=int(level.bitwise))
    lv.keep = prior          # the array the pointer names lives as long as the structure (the C stage copies it)
    for k, ctx in enumerate(level.contexts):
        lv.ctx_len[k] = len(ctx)
        for f, feature in enumerate(ctx):
            lv.ctx_feature[k][f] = feature
    for m, feature in enumerate(level.mixers):
        lv.mixer_feature[m], lv.mixer_size[m] = feature, SELECTOR_SIZES[feature]
    for a, feature in enumerate(level.apms):
        lv.apm_feature[a], lv.apm_size[a] = feature, SELECTOR_SIZES[feature]
    return lv


class AdaptiveState:
    """The C stage's adaptive state (adaptive.State's numbers) for `level` (a number of adaptive.LEVELS or
    a Level), sized for n_subpixels: fresh for one tile, or passed to the tiles of a chain in turn."""

    def __init__(self, level, n_subpixels: int, lib=None):
        from ..entropy.adaptive import LEVELS
        self.lib = lib or _LIB
        self.level = LEVELS[level] if isinstance(level, int) else level
        self.ptr = self.lib.pz_adaptive_new(ctypes.byref(_pack_level(self.level)), n_subpixels)
        if not self.ptr:
            raise MemoryError("adaptive stage: out of memory (or an invalid level)")

    def learned(self) -> np.ndarray:
        """The learned small state (adaptive.State.learned's int32 order): what priors are made of."""
        out = np.zeros(self.lib.pz_adaptive_learned(self.ptr, None), dtype=np.int32)
        self.lib.pz_adaptive_learned(self.ptr, out.ctypes.data)
        return out

    @property
    def memory(self) -> int:
        """Bytes the state holds (tables, weights, APMs)."""
        return self.lib.pz_adaptive_memory(self.ptr)

    def __del__(self):
        if getattr(self, "ptr", None):
            self.lib.pz_adaptive_free(self.ptr)
            self.ptr = None


def adaptive_encode_known(pixels: np.ndarray, params: np.ndarray, cdf: np.ndarray, slope: int, level=1,
                          state: AdaptiveState | None = None) -> bytes:
    """adaptive.encode_tile in C: a tile (h, w, C) uint8, its sub-pixels' (mu16, idx) in the decoding order
    (n, 2) and the model's Laplace prefix sums (int64) to bytes; `state` carried along a chain, or None
    for a fresh one."""
    h, w, C = pixels.shape
    state = state or AdaptiveState(level, h * w * C)
    pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
    params = np.ascontiguousarray(params, dtype=np.int64)
    cap = _stream_capacity(h * w * C)
    out = np.empty(cap, dtype=np.uint8)
    cdf = np.ascontiguousarray(cdf, dtype=np.int64)
    n = state.lib.pz_adaptive_encode_known(state.ptr, cdf.ctypes.data_as(_i64p), h, w, C, slope, pixels.ctypes.data_as(_u8p),
                                           params.ctypes.data_as(_i64p), out.ctypes.data_as(_u8p), cap)
    if n == -5:
        raise ValueError("the adaptive stage needs slope >= 2")
    if n < 0:
        raise MemoryError("adaptive stage: out of memory")
    return out[:n].tobytes()


def adaptive_decode_known(data: bytes, h: int, w: int, C: int, cdf: np.ndarray, slope: int, params: np.ndarray,
                          level=1, state: AdaptiveState | None = None) -> np.ndarray:
    """adaptive.decode_tile in C with every sub-pixel's (mu16, idx) known (tests, benchmarks; the coder
    decodes with the network's outputs as it goes: decode_tile_adaptive). ValueError on corrupt data."""
    state = state or AdaptiveState(level, h * w * C)
    params = np.ascontiguousarray(params, dtype=np.int64)
    buf = np.frombuffer(data, dtype=np.uint8) if len(data) else np.zeros(1, dtype=np.uint8)
    out = np.empty((h, w, C), dtype=np.uint8)
    cdf = np.ascontiguousarray(cdf, dtype=np.int64)
    status = state.lib.pz_adaptive_decode_known(state.ptr, cdf.ctypes.data_as(_i64p), h, w, C, slope,
                                                buf.ctypes.data_as(_u8p), len(data),
                                                params.ctypes.data_as(_i64p), out.ctypes.data_as(_u8p))
    if status == -2:
        raise MemoryError("adaptive stage: out of memory")
    if status == -5:
        raise ValueError("the adaptive stage needs slope >= 2")
    if status != 0:
        raise ValueError("adaptive stream: not decoded exactly to its end (corrupt data)")
    return out


def _stream_capacity(n_subpixels: int) -> int:
    return 24 * n_subpixels + 16         # 16 decisions a sub-pixel at most, 12 bits each at most


def _value_map(vmap: ValueMap | None, channels: int):
    """A ValueMap's packed tables for the C stage (packed once per map; the caller holds them while C reads), or
    NULL."""
    if vmap is None:
        return None, None
    if vmap.channels != channels:
        raise ValueError("the value map has another channel count than the model")
    packed = vmap.packed
    return packed, packed.ctypes.data_as(_i32p)


def encode_tile_adaptive(model: NetRecord | EnsembleRecord, pixels: np.ndarray, level=1,
                         state: AdaptiveState | None = None, vmap: ValueMap | None = None, threads: int = 1) -> bytes:
    """Code a tile of known pixels (h, w, channels) uint8 with the network (its dense pass) and the adaptive
    stage (entropy stage 1): the stream's bytes. `state`: carried from the previous tile of a chain (the
    format decides which tiles share one, never the thread count), or None for a fresh one. One model,
    or an ensemble whose members' outputs the stage takes averaged (adaptive.ensemble_outputs); slope >= 2.
    `vmap`: the pixels are a levels plane's ranks and the network reads their values (stage 4, value_map).
    `threads`: an ensemble's members' passes run in them (the same bytes for any count)."""
    h, w, C = pixels.shape
    return encode_tile_adaptive_states(model, pixels, [state or AdaptiveState(adaptive.level_for(level, model), h * w * C)],
                                       vmap, threads)[0]


def encode_tile_adaptive_states(model: NetRecord | EnsembleRecord, pixels: np.ndarray,
                                states: list[AdaptiveState], vmap: ValueMap | None = None,
                                threads: int = 1) -> list[bytes]:
    """encode_tile_adaptive with each of `states` on one network pass (the encoder's trial of levels): one
    stream per state, each the bytes encode_tile_adaptive writes with that state; the members' passes, then the
    states' streams, in up to `threads` threads."""
    pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
    packed, vmap_ptr = _value_map(vmap, pixels.shape[2])    # (packed: held while C reads it)
    cap = len(states) * _stream_capacity(pixels.size)
    out = np.empty(cap, dtype=np.uint8)
    lengths = np.zeros(len(states), dtype=np.int64)
    pointers = (ctypes.c_void_p * len(states))(*[st.ptr for st in states])
    n = _LIB.pz_encode_tile_adaptive(*_members(model), pointers, len(states), pixels.shape[0], pixels.shape[1],
                                     pixels.ctypes.data_as(_u8p), out.ctypes.data_as(_u8p), cap,
                                     lengths.ctypes.data_as(_i64p), vmap_ptr, threads)
    if n in (-3, -5):
        raise ValueError("the adaptive stage needs models of slope >= 2 (an ensemble's alike)"
                         + (", and ranks the value map has" if vmap is not None else ""))
    if n < 0:
        raise MemoryError("native encoder: out of memory")
    ends = np.cumsum(lengths)
    return [out[e - k:e].tobytes() for k, e in zip(lengths, ends)]


def decode_tile_adaptive(model: NetRecord | EnsembleRecord, data: bytes, h: int, w: int, level=1,
                         state: AdaptiveState | None = None, vmap: ValueMap | None = None,
                         threads: int = 1) -> np.ndarray:
    """A tile's pixels (h, w, channels) uint8 from its adaptive stream: the wavefront walk gives the stage
    each sub-pixel's head outputs. `state` and `vmap` as for encode_tile_adaptive (with `vmap`: the ranks
    the stage decoded). `threads`: the walk's, each wavefront's rows split between them (the same pixels for
    any count). ValueError if the stream does not decode exactly to its end (corruption)."""
    C = model.cfg.channels
    state = state or AdaptiveState(adaptive.level_for(level, model), h * w * C)
    packed, vmap_ptr = _value_map(vmap, C)                  # (packed: held while C reads it)
    buf = np.frombuffer(data, dtype=np.uint8) if len(data) else np.zeros(1, dtype=np.uint8)
    out = np.empty((h, w, C), dtype=np.uint8)
    status = _LIB.pz_decode_tile_adaptive(*_members(model), state.ptr, h, w, buf.ctypes.data_as(_u8p),
                                          len(data), out.ctypes.data_as(_u8p), vmap_ptr, threads)
    if status == -2:
        raise MemoryError("native decoder: out of memory")
    if status in (-3, -5):
        raise ValueError("the adaptive stage needs models of slope >= 2 (an ensemble's alike)")
    if status != 0:
        raise ValueError("adaptive stream: not decoded exactly to its end (corrupt data)")
    return out
