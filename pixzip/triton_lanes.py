"""Format v3's lane decoder for the Laplace head as one Triton kernel per sub-step (`PIXZIP_TRITON=1`).

`codec._DeviceLanes` decodes a sub-step in up to 8 passes of ~40 small torch kernels each; on an
H100 those kernels, not the network, were most of a decoding step (docs/ENGINE.md). Here one
program per tile runs all of its passes: its K lanes are one block, the passes a loop, the state
and the stream pointer stay in registers between them, and the decoded values go straight into the
image buffer. The arithmetic is `pixzip.rans.decode_step` and `refill`, integer for integer:

- a Laplace table is 256 consecutive entries of the global prefix sums starting at `start`
  (`engine.laplace_start`), so the symbol search `first g with prefix[g] >= base + bound` (numpy's
  `searchsorted` over the whole array) is a binary search of those 256 entries: the prefix is
  strictly increasing and 0 < bound <= total, so the answer lies in (start, start + 256];
- a lane that needs a word reads it at its tile's pointer plus its rank among the pass's reading
  lanes (a cumulative sum over the block), as on the host.

Triton is imported only when the kernel is used (it comes with PyTorch's CUDA builds). Under
TRITON_INTERPRET=1 the kernel runs on CPU tensors, which is how tests/test_rans.py checks it against
the host's lanes on a machine without a GPU.
"""

from __future__ import annotations

import importlib.util
import os

import torch

from . import rans

_kernel = None


def available(device: torch.device) -> bool:
    """Whether the kernel runs here: PIXZIP_TRITON=1, Triton importable, and a GPU (or Triton's
    interpreter, TRITON_INTERPRET=1, which runs it on CPU tensors)."""
    if os.environ.get("PIXZIP_TRITON", "0") != "1":
        return False
    if device.type != "cuda" and os.environ.get("TRITON_INTERPRET", "0") != "1":
        return False
    return importlib.util.find_spec("triton") is not None


def _build():
    import triton
    import triton.language as tl

    @triton.jit
    def decode_lanes(params, seg, n_tiles, lane_base, lanes, x, at, words, last_word, prefix, pos, img,
                     values, C, c, PASSES: tl.constexpr, ROW: tl.constexpr, LEVELS: tl.constexpr, SEARCH_STEPS: tl.constexpr,
                     PRECISION: tl.constexpr, WORD_BITS: tl.constexpr, KB: tl.constexpr):
        tile = tl.program_id(0)
        a = tl.load(seg + tile).to(tl.int64)                  # its first pixel in the wavefront
        n = tl.load(seg + n_tiles + tile).to(tl.int64)        # how many
        i0 = tl.load(seg + 2 * n_tiles + tile).to(tl.int64)   # the row of the first
        K = tl.load(lanes + tile).to(tl.int64)
        r = tl.arange(0, KB).to(tl.int64)
        mine = r < K
        lane = tl.load(lane_base + tile).to(tl.int64) + (i0 + r) % tl.maximum(K, 1)
        state = tl.load(x + lane, mask=mine, other=1 << PRECISION)
        ptr = tl.load(at + tile)
        mask = (1 << PRECISION) - 1
        for p in tl.static_range(PASSES):      # a tile with fewer passes: masked
            k = p * K + r
            live = mine & (k < n)
            w = a + k
            mu = tl.load(params + 2 * w, mask=live, other=0)
            ls = tl.load(params + 2 * w + 1, mask=live, other=0)
            start = (ls * 16 + mu % 16) * ROW + (255 - mu // 16)
            base = tl.load(prefix + start, mask=live, other=0)
            total = tl.load(prefix + start + LEVELS, mask=live, other=1) - base
            slot = state & mask
            target = base + (((slot + 1) * total + mask) >> PRECISION)
            lo = start + 1
            hi = start + LEVELS
            for _ in tl.static_range(SEARCH_STEPS):      # first g in [lo, hi] with prefix[g] >= target
                mid = (lo + hi) >> 1
                ge = tl.load(prefix + mid, mask=live, other=0) >= target
                hi = tl.where(ge, mid, hi)
                lo = tl.where(ge, lo, mid + 1)
            below = tl.load(prefix + lo - 1, mask=live, other=0) - base
            upto = tl.load(prefix + lo, mask=live, other=1) - base
            q_lo = (below << PRECISION) // total
            q_hi = (upto << PRECISION) // total
            new = (q_hi - q_lo) * (state >> PRECISION) + slot - q_lo
            need = live & (new < (1 << PRECISION))
            reads = need.to(tl.int64)
            at_word = ptr + tl.cumsum(reads, 0) - reads
            word = tl.load(words + tl.minimum(tl.maximum(at_word, 0), last_word), mask=need, other=0)
            new = tl.where(need, (new << WORD_BITS) | word, new)
            state = tl.where(live, new, state)
            ptr += tl.sum(reads, 0)
            symbol = lo - 1 - start
            where = tl.load(pos + w, mask=live, other=0)
            tl.store(img + where * C + c, tl.load(values + symbol, mask=live, other=0), mask=live)
        tl.store(x + lane, state, mask=mine)
        tl.store(at + tile, ptr)

    return decode_lanes


def decode_into(params: torch.Tensor, seg: torch.Tensor, lane_base: torch.Tensor, lanes: torch.Tensor,
                x: torch.Tensor, at: torch.Tensor, words: torch.Tensor, prefix: torch.Tensor, pos: torch.Tensor,
                img_flat: torch.Tensor, values: torch.Tensor, channels: int, channel: int, levels: int,
                row: int, max_lanes: int, n_passes: int):
    """Decode one sub-step of every tile and write the values: `params` (width, 2) int64 head outputs
    (mu16, log-scale index) in wavefront order, `seg` (3, tiles) int32 each tile's first position in
    the wavefront, pixel count and first row; `lane_base`, `lanes` (tiles,) its first lane and lane
    count; `x` lane states and `at` stream pointers (int64, advanced in place); `words` the streams;
    `prefix` the Laplace prefix sums; `pos` the wavefront's canvas positions; `img_flat` the image
    buffer (value - 128 at pos * channels + channel), `values` symbol -> that value."""
    global _kernel
    if _kernel is None:
        _kernel = _build()
    n_tiles = len(lanes)
    _kernel[(n_tiles,)](params.contiguous(), seg, n_tiles, lane_base, lanes, x, at, words, len(words) - 1, prefix,
                        pos, img_flat, values, channels, channel, PASSES=n_passes, ROW=row, LEVELS=levels,
                        SEARCH_STEPS=max(1, (levels - 1).bit_length()), PRECISION=rans.PRECISION,
                        WORD_BITS=rans.WORD_BITS, KB=max(2, 1 << (max_lanes - 1).bit_length()))
