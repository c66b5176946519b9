"""Exact, reversible transforms that turn an image into one the network codes for what it is.

A fixed network codes every plane as it comes, so an image that is really grey, really a palette or
really 6-bit pays for information it does not have (G and B of a grey image, 256 levels where 64
occur). The encoder applies a short chain of *steps*; the image it codes is the last step's output, the
chain travels in the file as a `TransformRecord`, and the decoder applies the inverses in reverse order.

Steps (each exact for every input; each inverse checks what it is given and raises PixzipError):
    DropConstantPlane  a plane whose every channel holds one value (all-255 alpha) is not coded
    GreyFromRGB        an RGB plane with R == G == B everywhere becomes one grey channel
    Levels             a plane whose channels use n < 256 values is coded as each value's rank in
                       the sorted set: monotone, so edges and gradients survive, but the range the
                       network's Laplace spreads over shrinks (6-bit grey: 0..63 instead of 0..252)
    Palette            an image of <= 256 distinct colours becomes one index plane, colours sorted by
                       luminance so that the index plane looks like a grey image, or along a path of
                       colours that touch in the image (charts: a line beside its anti-aliasing)
    NearPalette        past 256 colours: the 256 most frequent, every pixel coded as its nearest, and
                       the pixels of the other colours listed exactly in the record (screenshots)
    PaletteOrder       a P-mode image: its used indices re-ranked by their colour's luminance, the
                       palette, transparency and index numbering kept for the exact P image back
    DropRepeats        rows equal to the row above and columns equal to the column before are not
                       coded (pixel art scaled up, flat bands of charts); the image gets smaller

`choose(image, try_coding)` builds the candidate chains and keeps the cheapest: by trial coding when
the caller passes a coder, else by a cheap residual-entropy estimate. The stored (raw) fallback's
bit packing is at the end: `pack_bits` / `unpack_bits`, `stored_pays`.

How the coder uses it (api.compress / decompress, the container):
    encode:  coded, record = choose(image, try_coding)    # try_coding: lambda im: compress(im)[0], or None
             the container codes `coded` (its mode, width, height, planes) and stores, beside the header,
             record.to_bytes() when not record.is_identity (an empty field = identity), and the CRC of the
             ORIGINAL image's pixel_bytes() (so a bad record is caught like bad pixels)
    decode:  record = TransformRecord.from_bytes(field)   # PixzipError if corrupt
             check record.coded_mode == header mode and record.original_size(w, h) against max_pixels
             before decoding; image = record.inverse(decoded, max_pixels); then the CRC
The ICC profile stays in the container (every step keeps it); a P image's palette and transparency
travel in the record once PaletteOrder has turned it into an L image.

numpy only: the decoder needs this without torch.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Callable, ClassVar, Sequence

import numpy as np

from ..errors import PixzipError
from .images import DEFAULT_MAX_PIXELS, ImageData

# -- modes and their plane layouts ------------------------------------------------------------------------
# Channels of each plane, per mode (images.py's split). "1" and "P" are listed so that a record naming
# them parses; no step takes "1" (its bilevel model is already the right coder).
LAYOUTS = {"L": (1,), "LA": (1, 1), "RGB": (3,), "RGBA": (3, 1), "P": (1,), "1": (1,)}
MODE_CODES = ("L", "LA", "RGB", "RGBA", "P", "1")      # the byte that names a mode in a record
_MODE_OF_LAYOUT = {(1,): "L", (1, 1): "LA", (3,): "RGB", (3, 1): "RGBA"}

RECORD_FORMAT = 1
MAX_STEPS = 8                 # a real chain has at most 5 (drop, grey, repeats, levels per plane)
MAX_BODY = 1 << 20            # NearPalette's list: <= 65536 pixels of <= 4 + 5 bytes; the rest < 8 KB
MAX_PALETTE = 1024            # 256 entries of 4 bytes: the most a Pillow palette holds
MAX_TRANSPARENCY = 1 + 1024   # images.py's prefix byte + tRNS
MAX_PALETTE_MODE = 16
_FLAG_DEFLATED = 1


def _corrupt(what: str) -> PixzipError:
    return PixzipError(f"transform record is corrupted ({what})")


def _layout(image: ImageData) -> tuple[int, ...]:
    return tuple(p.shape[2] for p in image.planes)


def _derived(image: ImageData, mode: str, planes: list[np.ndarray], palette_mode: str = "",
             palette: bytes = b"", transparency: bytes = b"") -> ImageData:
    """A new ImageData of the same size and ICC profile (the container keeps the profile)."""
    return ImageData(mode, image.width, image.height, [np.ascontiguousarray(p, dtype=np.uint8) for p in planes],
                     icc=image.icc, palette_mode=palette_mode, palette=palette, transparency=transparency)


def _expect(image: ImageData, mode: str, step: str) -> None:
    """An inverse only runs on the image its step produced: mode, plane layout, shapes, dtype."""
    if image.mode != mode or _layout(image) != LAYOUTS[mode]:
        raise PixzipError(f"transform {step}: expected a {mode} image, got {image.mode} "
                          f"with planes {_layout(image)}")
    for p in image.planes:
        if p.dtype != np.uint8 or p.shape[:2] != (image.height, image.width):
            raise PixzipError(f"transform {step}: a plane is not uint8 {image.height}x{image.width}")


class _Reader:
    """Strict reads from a record body: a short read is a corrupt record, never an IndexError."""

    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise _corrupt("truncated")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def byte(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return int.from_bytes(self.take(2), "little")

    def mode(self) -> str:
        code = self.byte()
        if code >= len(MODE_CODES):
            raise _corrupt("unknown mode")
        return MODE_CODES[code]

    def blob(self, limit: int) -> bytes:
        n = self.u16()
        if n > limit:
            raise _corrupt("field too long")
        return self.take(n)


def _blob(b: bytes) -> bytes:
    return len(b).to_bytes(2, "little") + b


# -- bitmaps of used values (Levels) -----------------------------------------------------------------------
def _bitmap(values: np.ndarray) -> bytes:
    """The set of used byte values as 32 bytes: cheaper than a list once n > 32, and always valid."""
    used = np.zeros(256, np.uint8)
    used[values] = 1
    return np.packbits(used, bitorder="little").tobytes()


def _values_of_bitmap(bitmap: bytes) -> np.ndarray:
    return np.flatnonzero(np.unpackbits(np.frombuffer(bitmap, np.uint8), bitorder="little")).astype(np.uint8)


# -- the steps ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Step:
    """One reversible step. `mode_before` is the mode of the image it takes; `coded_mode` what it gives."""
    KIND: ClassVar[int] = 0
    NAME: ClassVar[str] = ""
    mode_before: str

    @property
    def coded_mode(self) -> str:
        return self.mode_before

    def forward(self, image: ImageData) -> ImageData:
        raise NotImplementedError

    def inverse(self, image: ImageData) -> ImageData:
        raise NotImplementedError

    def payload(self) -> bytes:
        raise NotImplementedError

    @classmethod
    def parse(cls, mode_before: str, r: _Reader) -> "Step":
        raise NotImplementedError

    def describe(self) -> str:
        return self.NAME


@dataclass(frozen=True)
class DropConstantPlane(Step):
    """A plane that holds one value per channel everywhere is not coded; the values are kept. Only a
    plane beside another one (alpha of LA/RGBA, or their colour part): the coded image keeps a plane."""
    KIND: ClassVar[int] = 1
    NAME: ClassVar[str] = "drop-constant"
    plane: int = 0
    values: bytes = b""

    @property
    def coded_mode(self) -> str:
        layout = list(LAYOUTS[self.mode_before])
        del layout[self.plane]
        return _MODE_OF_LAYOUT[tuple(layout)]

    def forward(self, image: ImageData) -> ImageData:
        if constant_values(image.planes[self.plane]) != self.values:
            raise PixzipError(f"transform {self.NAME}: plane {self.plane} is not constant {list(self.values)}")
        planes = list(image.planes)
        del planes[self.plane]
        return _derived(image, self.coded_mode, planes)

    def inverse(self, image: ImageData) -> ImageData:
        _expect(image, self.coded_mode, self.NAME)
        planes = list(image.planes)
        value = np.frombuffer(self.values, np.uint8)
        planes.insert(self.plane, np.broadcast_to(value, (image.height, image.width, len(value))))
        return _derived(image, self.mode_before, planes)

    def payload(self) -> bytes:
        return bytes([self.plane]) + self.values

    @classmethod
    def parse(cls, mode_before: str, r: _Reader) -> "DropConstantPlane":
        if mode_before not in ("LA", "RGBA"):
            raise _corrupt("a constant plane dropped from a single-plane mode")
        plane = r.byte()
        if plane >= len(LAYOUTS[mode_before]):
            raise _corrupt("plane index")
        return cls(mode_before, plane, r.take(LAYOUTS[mode_before][plane]))

    def describe(self) -> str:
        return f"{self.NAME}(plane {self.plane} = {list(self.values)})"


@dataclass(frozen=True)
class GreyFromRGB(Step):
    """An RGB plane whose three channels are equal everywhere: one grey channel carries all of it."""
    KIND: ClassVar[int] = 2
    NAME: ClassVar[str] = "grey"

    @property
    def coded_mode(self) -> str:
        return {"RGB": "L", "RGBA": "LA"}[self.mode_before]

    def forward(self, image: ImageData) -> ImageData:
        if not is_grey(image.planes[0]):
            raise PixzipError(f"transform {self.NAME}: the colour plane is not grey")
        return _derived(image, self.coded_mode, [image.planes[0][..., :1]] + list(image.planes[1:]))

    def inverse(self, image: ImageData) -> ImageData:
        _expect(image, self.coded_mode, self.NAME)
        return _derived(image, self.mode_before, [np.repeat(image.planes[0], 3, axis=2)] + list(image.planes[1:]))

    def payload(self) -> bytes:
        return b""

    @classmethod
    def parse(cls, mode_before: str, r: _Reader) -> "GreyFromRGB":
        if mode_before not in ("RGB", "RGBA"):
            raise _corrupt("grey from a mode without RGB")
        return cls(mode_before)


@dataclass(frozen=True)
class Levels(Step):
    """Each channel of one plane coded as the rank of its value among the values it uses.

    `bitmaps`: one 32-byte set of used values per channel, or a single set for all channels (`shared`),
    which keeps channels on one scale where the network relates them (G near R): RGB565's channels have
    32/64/32 levels, whose per-channel ranks put G at twice R's scale."""
    KIND: ClassVar[int] = 3
    NAME: ClassVar[str] = "levels"
    plane: int = 0
    shared: bool = False
    bitmaps: tuple[bytes, ...] = ()

    def tables(self, channels: int) -> list[np.ndarray]:
        """Sorted used values per channel: rank -> value."""
        values = [_values_of_bitmap(b) for b in self.bitmaps]
        return values * channels if self.shared else values

    def forward(self, image: ImageData) -> ImageData:
        p = image.planes[self.plane]
        out = np.empty_like(p)
        for c, table in enumerate(self.tables(p.shape[2])):
            if np.setdiff1d(used_levels(p[..., c]), table).size:
                raise PixzipError(f"transform {self.NAME}: channel {c} uses a value its table lacks")
            rank = np.zeros(256, np.uint8)
            rank[table] = np.arange(len(table), dtype=np.uint8)
            out[..., c] = rank[p[..., c]]
        planes = list(image.planes)
        planes[self.plane] = out
        return _derived(image, image.mode, planes)

    def inverse(self, image: ImageData) -> ImageData:
        _expect(image, self.mode_before, self.NAME)
        p = image.planes[self.plane]
        out = np.empty_like(p)
        for c, table in enumerate(self.tables(p.shape[2])):
            ch = p[..., c]
            if ch.size and int(ch.max()) >= len(table):   # a rank no value has: corrupt data
                raise PixzipError(f"transform {self.NAME}: rank {int(ch.max())} beyond the {len(table)} levels")
            out[..., c] = table[ch]
        planes = list(image.planes)
        planes[self.plane] = out
        return _derived(image, self.mode_before, planes)

    def payload(self) -> bytes:
        return bytes([self.plane, int(self.shared)]) + b"".join(self.bitmaps)

    @classmethod
    def parse(cls, mode_before: str, r: _Reader) -> "Levels":
        if mode_before not in ("L", "LA", "RGB", "RGBA"):
            raise _corrupt("levels of a P or bilevel image")
        plane, shared = r.byte(), r.byte()
        if plane >= len(LAYOUTS[mode_before]) or shared > 1:
            raise _corrupt("levels header")
        count = 1 if shared else LAYOUTS[mode_before][plane]
        bitmaps = tuple(r.take(32) for _ in range(count))
        if any(not any(b) for b in bitmaps):
            raise _corrupt("a channel with no levels")
        return cls(mode_before, plane, bool(shared), bitmaps)

    def describe(self) -> str:
        counts = [len(_values_of_bitmap(b)) for b in self.bitmaps]
        return f"{self.NAME}(plane {self.plane}, {'shared ' if self.shared else ''}{counts})"


def _colour_keys(colours: np.ndarray) -> np.ndarray:
    """Pack (n, k) uint8 colours into one integer each (k <= 4), for exact set operations."""
    keys = np.zeros(colours.shape[0], np.uint32)
    for c in range(colours.shape[1]):
        keys = (keys << np.uint32(8)) | colours[:, c].astype(np.uint32)
    return keys


def _luminance_order(colours: np.ndarray) -> np.ndarray:
    """Indices of (n, k) colours sorted by luminance, then each channel: any total order is exact
    (the order is stored); luminance makes the index plane as smooth as the image's lightness."""
    grey = colours[:, 0].astype(np.int64) * 1000 if colours.shape[1] < 3 else \
        colours[:, :3].astype(np.int64) @ np.array([299, 587, 114])
    return np.lexsort(tuple(colours[:, c] for c in reversed(range(colours.shape[1]))) + (grey,))


@dataclass(frozen=True)
class Palette(Step):
    """An image of at most 256 distinct colours (over all its planes: RGB, RGBA, grey+alpha) coded as
    one index plane; `colours` (n rows of the mode's channels) turns indices back into pixels."""
    KIND: ClassVar[int] = 4
    NAME: ClassVar[str] = "palette"
    colours: bytes = b""              # n * channels bytes, row per index (stored as differences)

    @property
    def coded_mode(self) -> str:
        return "L"

    def table(self) -> np.ndarray:
        k = sum(LAYOUTS[self.mode_before])
        return np.frombuffer(self.colours, np.uint8).reshape(-1, k)

    def forward(self, image: ImageData) -> ImageData:
        table = self.table()
        keys = _colour_keys(np.concatenate(image.planes, axis=2).reshape(-1, table.shape[1]))
        order = np.argsort(_colour_keys(table))
        sorted_keys = _colour_keys(table)[order]
        where = np.minimum(np.searchsorted(sorted_keys, keys), len(table) - 1)
        if not np.array_equal(sorted_keys[where], keys):
            raise PixzipError(f"transform {self.NAME}: the image has a colour the palette lacks")
        index = order[where].astype(np.uint8).reshape(image.height, image.width, 1)
        return _derived(image, "L", [index])

    def inverse(self, image: ImageData) -> ImageData:
        _expect(image, "L", self.NAME)
        table = self.table()
        index = image.planes[0][..., 0]
        if index.size and int(index.max()) >= len(table):
            raise PixzipError(f"transform {self.NAME}: index {int(index.max())} beyond {len(table)} colours")
        pixels = table[index]
        splits = np.cumsum(LAYOUTS[self.mode_before])[:-1]
        return _derived(image, self.mode_before, np.split(pixels, splits, axis=2))

    def payload(self) -> bytes:
        # each colour as its difference from the one before (mod 256): neighbours in either order are
        # close colours, so the differences are small and the record's deflate shrinks them
        table = self.table()
        deltas = np.diff(table, axis=0, prepend=np.zeros((1, table.shape[1]), np.uint8))
        return bytes([len(table) - 1]) + deltas.astype(np.uint8).tobytes()

    @classmethod
    def parse(cls, mode_before: str, r: _Reader) -> "Palette":
        if mode_before not in ("LA", "RGB", "RGBA"):
            raise _corrupt("palette of a single-channel mode")
        n, k = r.byte() + 1, sum(LAYOUTS[mode_before])
        deltas = np.frombuffer(r.take(n * k), np.uint8).reshape(n, k)
        step = cls(mode_before, np.cumsum(deltas, axis=0, dtype=np.uint8).tobytes())    # wraps mod 256
        if len(np.unique(_colour_keys(step.table()))) != n:      # two indices, one colour: never written
            raise _corrupt("repeated palette colour")
        return step

    def describe(self) -> str:
        table = self.table()
        by = "luminance" if np.array_equal(_luminance_order(table), np.arange(len(table))) else "neighbours"
        return f"{self.NAME}({len(table)} colours by {by})"


def _palette_colours(palette_mode: str, palette: bytes) -> np.ndarray:
    """A P image's palette as (entries, channels), for ordering only (the bytes are kept as they are)."""
    k = len(palette_mode) if palette_mode in ("L", "LA", "RGB", "RGBA") else 3
    n = len(palette) // k
    return np.frombuffer(palette[:n * k], np.uint8).reshape(n, k)


@dataclass(frozen=True)
class PaletteOrder(Step):
    """A P image's index plane re-ranked: the indices it uses, sorted by their colour's luminance, become
    0..n-1. `order[rank]` is the original index, so the P image (palette bytes, transparency, index
    numbering, unused entries) comes back identical."""
    KIND: ClassVar[int] = 5
    NAME: ClassVar[str] = "palette-order"
    palette_mode: str = ""
    palette: bytes = b""
    transparency: bytes = b""
    order: bytes = b""

    @property
    def coded_mode(self) -> str:
        return "L"

    def forward(self, image: ImageData) -> ImageData:
        if np.setdiff1d(used_levels(image.planes[0]), np.frombuffer(self.order, np.uint8)).size:
            raise PixzipError(f"transform {self.NAME}: the image uses an index the order lacks")
        rank = np.zeros(256, np.uint8)
        rank[np.frombuffer(self.order, np.uint8)] = np.arange(len(self.order), dtype=np.uint8)
        return _derived(image, "L", [rank[image.planes[0]]])

    def inverse(self, image: ImageData) -> ImageData:
        _expect(image, "L", self.NAME)
        index = image.planes[0]
        if index.size and int(index.max()) >= len(self.order):
            raise PixzipError(f"transform {self.NAME}: rank {int(index.max())} beyond {len(self.order)} indices")
        original = np.frombuffer(self.order, np.uint8)[index]
        return _derived(image, "P", [original], self.palette_mode, self.palette, self.transparency)

    def payload(self) -> bytes:
        return (_blob(self.palette_mode.encode("ascii")) + _blob(self.palette) + _blob(self.transparency)
                + bytes([len(self.order) - 1]) + self.order)

    @classmethod
    def parse(cls, mode_before: str, r: _Reader) -> "PaletteOrder":
        if mode_before != "P":
            raise _corrupt("palette order of a non-P image")
        mode = r.blob(MAX_PALETTE_MODE)
        if not all(0x20 < b < 0x7f for b in mode):
            raise _corrupt("palette mode")
        palette, transparency = r.blob(MAX_PALETTE), r.blob(MAX_TRANSPARENCY)
        order = r.take(r.byte() + 1)
        if len(set(order)) != len(order):
            raise _corrupt("palette order is not a permutation")
        return cls("P", mode.decode("ascii"), palette, transparency, order)

    def describe(self) -> str:
        return f"{self.NAME}({len(self.order)} used)"


@dataclass(frozen=True)
class DropRepeats(Step):
    """Rows equal to the row above, then columns equal to the column before, are not coded: pixel art
    scaled up by any factor, the flat bands of charts and screenshots. `rows` / `columns` flag, per
    original row / column, whether it starts a new run (1) or repeats the previous one (0); the first
    of each is always 1. The image's size changes: the original is known from the flags."""
    KIND: ClassVar[int] = 6
    NAME: ClassVar[str] = "repeats"
    height: int = 0
    width: int = 0
    rows: bytes = b""                 # packbits of `height` flags, MSB first
    columns: bytes = b""

    def flags(self) -> tuple[np.ndarray, np.ndarray]:
        return (np.unpackbits(np.frombuffer(self.rows, np.uint8))[:self.height].astype(bool),
                np.unpackbits(np.frombuffer(self.columns, np.uint8))[:self.width].astype(bool))

    def forward(self, image: ImageData) -> ImageData:
        keep_rows, keep_columns = self.flags()
        found = repeat_flags(image) if (image.height, image.width) == (self.height, self.width) else None
        if found is None or not (np.array_equal(found[0], keep_rows) and np.array_equal(found[1], keep_columns)):
            raise PixzipError(f"transform {self.NAME}: the image's repeated rows and columns differ")
        planes = [p[keep_rows][:, keep_columns] for p in image.planes]
        return ImageData(image.mode, int(keep_columns.sum()), int(keep_rows.sum()),
                         [np.ascontiguousarray(p) for p in planes], icc=image.icc, palette_mode=image.palette_mode,
                         palette=image.palette, transparency=image.transparency)

    def inverse(self, image: ImageData, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageData:
        keep_rows, keep_columns = self.flags()
        if (image.height, image.width) != (int(keep_rows.sum()), int(keep_columns.sum())):
            raise PixzipError(f"transform {self.NAME}: a {image.width}x{image.height} image does not fit "
                              f"its {int(keep_columns.sum())}x{int(keep_rows.sum())} runs")
        if self.height * self.width > max_pixels:
            raise PixzipError(f"image is {self.width}x{self.height}, over the limit of {max_pixels} pixels")
        _expect(image, self.mode_before, self.NAME)
        row_of = np.cumsum(keep_rows) - 1          # original row -> its run's kept row
        column_of = np.cumsum(keep_columns) - 1
        planes = [p[row_of][:, column_of] for p in image.planes]
        return ImageData(image.mode, self.width, self.height, [np.ascontiguousarray(p) for p in planes],
                         icc=image.icc, palette_mode=image.palette_mode, palette=image.palette,
                         transparency=image.transparency)

    def payload(self) -> bytes:
        return self.height.to_bytes(4, "little") + self.width.to_bytes(4, "little") + self.rows + self.columns

    @classmethod
    def parse(cls, mode_before: str, r: _Reader) -> "DropRepeats":
        height, width = int.from_bytes(r.take(4), "little"), int.from_bytes(r.take(4), "little")
        if not 1 <= height <= 8 * MAX_BODY or not 1 <= width <= 8 * MAX_BODY:   # the flags must fit a body
            raise _corrupt("repeats size")
        step = cls(mode_before, height, width, r.take((height + 7) // 8), r.take((width + 7) // 8))
        keep_rows, keep_columns = step.flags()
        if not (keep_rows[0] and keep_columns[0]) or step.payload() != _repeats_payload(keep_rows, keep_columns):
            raise _corrupt("repeats flags")          # a first row that repeats nothing, or padding bits set
        return step

    def describe(self) -> str:
        keep_rows, keep_columns = self.flags()
        return f"{self.NAME}({self.width}x{self.height} -> {int(keep_columns.sum())}x{int(keep_rows.sum())})"


def _repeats_payload(keep_rows: np.ndarray, keep_columns: np.ndarray) -> bytes:
    return (len(keep_rows).to_bytes(4, "little") + len(keep_columns).to_bytes(4, "little")
            + np.packbits(keep_rows).tobytes() + np.packbits(keep_columns).tobytes())


def repeat_flags(image: ImageData) -> tuple[np.ndarray, np.ndarray]:
    """Per row: differs from the row above (or is the first); then per column of the kept rows: differs
    from the column before. Columns compared over kept rows only is exact: every row equals a kept one."""
    stack = np.concatenate(image.planes, axis=2)
    keep_rows = np.ones(image.height, bool)
    keep_rows[1:] = (stack[1:] != stack[:-1]).any(axis=(1, 2))
    kept = stack[keep_rows]
    keep_columns = np.ones(image.width, bool)
    keep_columns[1:] = (kept[:, 1:] != kept[:, :-1]).any(axis=(0, 2))
    return keep_rows, keep_columns


MAX_EXCEPTIONS = 1 << 16      # NearPalette: pixels listed with their own colour (bounds the record)


def _varints(values: np.ndarray) -> bytes:
    """Non-negative integers as LEB128 (7 bits a byte, high bit = more follows)."""
    out = bytearray()
    for v in values.tolist():
        while v >= 0x80:
            out.append(v & 0x7F | 0x80)
            v >>= 7
        out.append(v)
    return bytes(out)


def _read_varint(r: _Reader) -> int:
    value = 0
    for shift in range(0, 35, 7):
        b = r.byte()
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value
    raise _corrupt("varint too long")


@dataclass(frozen=True)
class NearPalette(Palette):
    """An image of more than 256 colours of which a few are rare (a screenshot's anti-aliasing): its 256
    most frequent colours form the palette, every pixel is coded as its nearest palette colour, and the
    pixels whose colour is not in the palette are listed with their exact colour (`positions`: raster
    indices, increasing; `exact`: their colours). Trial coding decides whether the list pays."""
    KIND: ClassVar[int] = 7
    NAME: ClassVar[str] = "near-palette"
    positions: bytes = b""            # uint32 little-endian raster indices, strictly increasing
    exact: bytes = b""                # channels bytes per listed pixel

    def forward(self, image: ImageData) -> ImageData:
        table = self.table()
        pixels = np.concatenate(image.planes, axis=2).reshape(-1, table.shape[1])
        index = _nearest(pixels, table)
        listed = np.flatnonzero(np.any(table[index] != pixels, axis=1))
        if listed.tobytes() != np.frombuffer(self.positions, "<u4").astype(np.int64).tobytes() \
                or pixels[listed].tobytes() != self.exact:
            raise PixzipError(f"transform {self.NAME}: the listed pixels differ from the image's")
        return _derived(image, "L", [index.astype(np.uint8).reshape(image.height, image.width, 1)])

    def inverse(self, image: ImageData) -> ImageData:
        positions = np.frombuffer(self.positions, "<u4")
        if len(positions) and int(positions[-1]) >= image.width * image.height:
            raise PixzipError(f"transform {self.NAME}: a listed pixel is outside the image")
        restored = Palette.inverse(self, image)
        k = self.table().shape[1]
        pixels = np.concatenate(restored.planes, axis=2).reshape(-1, k)
        pixels[positions] = np.frombuffer(self.exact, np.uint8).reshape(-1, k)
        splits = np.cumsum(LAYOUTS[self.mode_before])[:-1]
        return _derived(image, self.mode_before, np.split(pixels.reshape(image.height, image.width, k), splits, axis=2))

    def payload(self) -> bytes:
        positions = np.frombuffer(self.positions, "<u4").astype(np.int64)
        gaps = np.diff(positions, prepend=-1) - 1                      # strictly increasing: gaps >= 0
        return Palette.payload(self) + _varints(np.array([len(positions)])) + _varints(gaps) + self.exact

    @classmethod
    def parse(cls, mode_before: str, r: _Reader) -> "NearPalette":
        palette = Palette.parse(mode_before, r)
        count = _read_varint(r)
        if count > MAX_EXCEPTIONS:
            raise _corrupt("too many listed pixels")
        positions, at = [], -1
        for _ in range(count):
            at += _read_varint(r) + 1
            if at >= 1 << 32:
                raise _corrupt("listed pixel position")
            positions.append(at)
        exact = r.take(count * palette.table().shape[1])
        return cls(mode_before, palette.colours, np.array(positions, "<u4").tobytes(), exact)

    def describe(self) -> str:
        return Palette.describe(self).replace(" by", f", {len(self.positions) // 4} pixels listed, by")


def _nearest(pixels: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Per pixel, the index of the nearest table colour (squared distance; ties: lowest index),
    computed once per distinct colour."""
    keys = _colour_keys(pixels)
    distinct, inverse = np.unique(keys, return_inverse=True)
    k = table.shape[1]
    shifts = np.array([8 * (k - 1 - c) for c in range(k)], np.uint32)
    colours = ((distinct[:, None] >> shifts) & np.uint32(255)).astype(np.int64)
    best = np.zeros(len(distinct), np.int64)
    for start in range(0, len(distinct), 4096):                     # bounded temporaries
        block = colours[start:start + 4096]
        best[start:start + 4096] = np.argmin(((block[:, None, :] - table[None].astype(np.int64)) ** 2).sum(2), axis=1)
    return best[inverse.reshape(-1)]


STEP_KINDS: dict[int, type[Step]] = {s.KIND: s for s in (DropConstantPlane, GreyFromRGB, Levels, Palette,
                                                         PaletteOrder, DropRepeats, NearPalette)}


# -- the record --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TransformRecord:
    """The chain of steps from the original image to the coded one; empty = identity.

    Bytes: format (1), flags (bit 0: body deflated), body. Body: step count (1 byte, <= MAX_STEPS), then
    per step: kind (1), mode before the step (1, MODE_CODES), the kind's fields (see each `payload`).
    Every field is bounded and checked; the chain's modes must follow on from each other."""
    steps: tuple[Step, ...] = field(default_factory=tuple)

    @property
    def is_identity(self) -> bool:
        return not self.steps

    @property
    def original_mode(self) -> str | None:
        return self.steps[0].mode_before if self.steps else None

    @property
    def coded_mode(self) -> str | None:
        return self.steps[-1].coded_mode if self.steps else None

    def forward(self, image: ImageData) -> ImageData:
        for step in self.steps:
            if image.mode != step.mode_before:
                raise PixzipError(f"transform {step.NAME} takes a {step.mode_before} image, not {image.mode}")
            image = step.forward(image)
        return image

    def inverse(self, image: ImageData, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageData:
        """The original image from the decoded one; PixzipError if they do not fit this record, or if
        the original would be larger than `max_pixels` (the decoder's limit: a record can enlarge)."""
        for step in reversed(self.steps):
            image = step.inverse(image, max_pixels) if isinstance(step, DropRepeats) else step.inverse(image)
        return image

    def original_size(self, coded_width: int, coded_height: int) -> tuple[int, int]:
        """(width, height) of the original image: check it against the pixel limit before decoding."""
        repeats = [s for s in self.steps if isinstance(s, DropRepeats)]
        return (repeats[0].width, repeats[0].height) if repeats else (coded_width, coded_height)

    def describe(self) -> str:
        return " -> ".join(s.describe() for s in self.steps) or "none"

    def to_bytes(self) -> bytes:
        body = bytes([len(self.steps)]) + b"".join(
            bytes([s.KIND, MODE_CODES.index(s.mode_before)]) + s.payload() for s in self.steps)
        if len(body) > MAX_BODY or len(self.steps) > MAX_STEPS:
            raise PixzipError("transform record too large")        # the encoder's own bug, refused early
        packed = zlib.compress(body, 9)
        if len(packed) < len(body):                                 # colour tables deflate; tiny bodies do not
            return bytes([RECORD_FORMAT, _FLAG_DEFLATED]) + packed
        return bytes([RECORD_FORMAT, 0]) + body

    @classmethod
    def from_bytes(cls, data: bytes) -> "TransformRecord":
        if len(data) < 2 or data[0] != RECORD_FORMAT or data[1] & ~_FLAG_DEFLATED:
            raise _corrupt("header")
        body = _inflate(data[2:]) if data[1] & _FLAG_DEFLATED else data[2:]
        if len(body) > MAX_BODY:
            raise _corrupt("too large")
        r = _Reader(body)
        count = r.byte()
        if count > MAX_STEPS:
            raise _corrupt("too many steps")
        steps = []
        for _ in range(count):
            kind = r.byte()
            if kind not in STEP_KINDS:
                raise _corrupt("unknown step")
            steps.append(STEP_KINDS[kind].parse(r.mode(), r))
        if r.pos != len(body):
            raise _corrupt("trailing bytes")
        for a, b in zip(steps, steps[1:]):
            if b.mode_before != a.coded_mode:
                raise _corrupt("steps do not follow on")
        if sum(isinstance(s, DropRepeats) for s in steps) > 1:
            raise _corrupt("repeats twice")
        return cls(tuple(steps))


def _inflate(data: bytes) -> bytes:
    """Deflated body, bounded: a record that inflates past MAX_BODY is refused without inflating it all."""
    d = zlib.decompressobj()
    try:
        body = d.decompress(data, MAX_BODY + 1)
    except zlib.error:
        raise _corrupt("bad deflate data") from None
    if len(body) > MAX_BODY or not d.eof or d.unused_data or d.unconsumed_tail:
        raise _corrupt("bad deflate framing")
    return body


IDENTITY = TransformRecord()


# -- detection ---------------------------------------------------------------------------------------------
def is_grey(plane: np.ndarray) -> bool:
    return plane.shape[2] == 3 and np.array_equal(plane[..., 0], plane[..., 1]) and \
        np.array_equal(plane[..., 1], plane[..., 2])


def constant_values(plane: np.ndarray) -> bytes | None:
    """The per-channel values of a plane that holds one value per channel everywhere, else None."""
    first = plane[:1, :1]
    return bytes(first.reshape(-1)) if plane.size and np.all(plane == first) else None


def used_levels(channel: np.ndarray) -> np.ndarray:
    """The sorted distinct values of one channel (a count, O(pixels))."""
    return np.flatnonzero(np.bincount(channel.reshape(-1), minlength=256)).astype(np.uint8)


def distinct_colours(image: ImageData, limit: int = 256) -> np.ndarray | None:
    """The distinct colours over all planes as (n, channels), or None once there are more than `limit`.
    Rows are taken in blocks so a many-coloured image stops early instead of sorting every pixel."""
    k = sum(_layout(image))
    if k > 4:
        return None
    pixels = np.concatenate(image.planes, axis=2).reshape(-1, k)
    seen = np.zeros(0, np.uint32)
    block = max(65536, limit * 64)
    for start in range(0, len(pixels), block):
        seen = np.union1d(seen, _colour_keys(pixels[start:start + block]))
        if len(seen) > limit:
            return None
    shifts = np.array([8 * (k - 1 - c) for c in range(k)], np.uint32)
    return ((seen[:, None] >> shifts) & np.uint32(255)).astype(np.uint8)


def _exact_reductions(image: ImageData) -> list[Step]:
    """Steps that only remove what the image does not have: a constant plane beside another one, and
    G and B of a grey image. Applied to every candidate (they shrink what is coded, and a network
    spends bits on even a perfectly predictable channel)."""
    steps: list[Step] = []
    current = image
    while current.mode in ("LA", "RGBA"):
        # alpha first: with both planes constant, the colour plane stays and grey detection still applies
        dropped = next(((i, v) for i, p in reversed(list(enumerate(current.planes)))
                        if (v := constant_values(p)) is not None), None)
        if dropped is None:
            break
        step = DropConstantPlane(current.mode, dropped[0], dropped[1])
        steps.append(step)
        current = step.forward(current)
    if current.mode in ("RGB", "RGBA") and is_grey(current.planes[0]):
        steps.append(GreyFromRGB(current.mode))
    return steps


def _levels_steps(image: ImageData, shared: bool) -> list[Step]:
    """A Levels step for each plane with a channel under 256 values (`shared`: one table per plane, the
    union of its channels' values)."""
    steps: list[Step] = []
    for i, p in enumerate(image.planes):
        per_channel = [used_levels(p[..., c]) for c in range(p.shape[2])]
        if shared and p.shape[2] > 1:
            union = np.unique(np.concatenate(per_channel))
            if len(union) < 256:
                steps.append(Levels(image.mode, i, True, (_bitmap(union),)))
        elif min(len(v) for v in per_channel) < 256:
            steps.append(Levels(image.mode, i, False, tuple(_bitmap(v) for v in per_channel)))
    return steps


def neighbour_order(index: np.ndarray, colours: np.ndarray) -> np.ndarray:
    """A second palette order: a path through the colours that puts colours that touch in the image
    next to each other (charts: a line's anti-aliased shades beside the line colour, whatever their
    luminance). `index` holds 0..n-1 with `colours` (n, k) in that order. From colour 0, append the
    unused colour with the most horizontal + vertical neighbour pairs with the path's end; when none
    touches it, the nearest unused colour; ties: the lowest index. Integer counts: deterministic."""
    n = len(colours)
    pairs = np.zeros(n * n, np.int64)
    for a, b in ((index[:, 1:], index[:, :-1]), (index[1:], index[:-1])):
        pairs += np.bincount((a.astype(np.int64) * n + b).reshape(-1), minlength=n * n)
    touch = pairs.reshape(n, n) + pairs.reshape(n, n).T
    np.fill_diagonal(touch, 0)
    c = colours.astype(np.int64)
    used = np.zeros(n, bool)
    path = [0]
    used[0] = True
    for _ in range(n - 1):
        end = path[-1]
        weight = np.where(used, -1, touch[end])
        if weight.max() > 0:
            nxt = int(np.argmax(weight))
        else:
            distance = np.where(used, np.iinfo(np.int64).max, ((c - c[end]) ** 2).sum(axis=1))
            nxt = int(np.argmin(distance))
        path.append(nxt)
        used[nxt] = True
    return np.array(path, np.int64)


def _near_palette_step(image: ImageData) -> Step | None:
    """NearPalette from the 256 most frequent colours (ties: the lower colour), by luminance, when
    the other colours' pixels fit the list."""
    k = sum(_layout(image))
    pixels = np.concatenate(image.planes, axis=2).reshape(-1, k)
    keys, counts = np.unique(_colour_keys(pixels), return_counts=True)
    if counts.sum() - np.sort(counts)[::-1][:256].sum() > MAX_EXCEPTIONS:
        return None
    top = np.sort(keys[np.lexsort((keys, -counts))[:256]])
    shifts = np.array([8 * (k - 1 - c) for c in range(k)], np.uint32)
    table = ((top[:, None] >> shifts) & np.uint32(255)).astype(np.uint8)
    table = table[_luminance_order(table)]
    index = _nearest(pixels, table)
    listed = np.flatnonzero(np.any(table[index] != pixels, axis=1))
    return NearPalette(image.mode, table.tobytes(), listed.astype("<u4").tobytes(), pixels[listed].tobytes())


def _palette_steps(image: ImageData) -> list[Step]:
    """Palette by luminance, and by neighbour order when that differs; past 256 colours, NearPalette."""
    if sum(_layout(image)) < 2:          # one channel: a palette is exactly Levels
        return []
    colours = distinct_colours(image)
    if colours is None:
        near = _near_palette_step(image)
        if near is None:
            return []
        path = neighbour_order(near.forward(image).planes[0][..., 0], near.table())
        by_neighbours = NearPalette(image.mode, near.table()[path].tobytes(), near.positions, near.exact)
        return [near] + ([by_neighbours] if by_neighbours != near else [])
    by_luminance = Palette(image.mode, colours[_luminance_order(colours)].tobytes())
    table = by_luminance.table()
    path = neighbour_order(by_luminance.forward(image).planes[0][..., 0], table)
    by_neighbours = Palette(image.mode, table[path].tobytes())
    return [by_luminance] + ([by_neighbours] if by_neighbours != by_luminance else [])


def _palette_order_steps(image: ImageData) -> list[Step]:
    """PaletteOrder by luminance, and by neighbour order when that differs."""
    if len(image.palette) > MAX_PALETTE or len(image.transparency) > MAX_TRANSPARENCY \
            or len(image.palette_mode) > MAX_PALETTE_MODE:
        return []                         # not a palette Pillow writes: left as it is
    used = used_levels(image.planes[0])
    colours = _palette_colours(image.palette_mode, image.palette)
    known = used[used < len(colours)]
    # indices past the palette's end (Pillow reads them) sort after the colours, in index order
    ordered = np.concatenate([known[_luminance_order(colours[known])] if len(known) else known,
                              used[used >= len(colours)]]).astype(np.uint8)
    by_luminance = PaletteOrder("P", image.palette_mode, image.palette, image.transparency, ordered.tobytes())
    shown = np.zeros((len(ordered), colours.shape[1]), np.uint8)          # past the end: black, for distance
    shown[:len(known)] = colours[ordered[:len(known)]]
    path = neighbour_order(by_luminance.forward(image).planes[0][..., 0], shown)
    by_neighbours = PaletteOrder("P", image.palette_mode, image.palette, image.transparency, ordered[path].tobytes())
    return [by_luminance] + ([by_neighbours] if by_neighbours != by_luminance else [])


def _repeats_step(image: ImageData) -> Step | None:
    """A DropRepeats step if any row or column repeats and its flags fit a record."""
    if image.height < 2 and image.width < 2 or (image.height + image.width) // 8 + 16 > MAX_BODY // 2:
        return None
    keep_rows, keep_columns = repeat_flags(image)
    if keep_rows.all() and keep_columns.all():
        return None
    payload = _repeats_payload(keep_rows, keep_columns)
    rows_end = 8 + (image.height + 7) // 8
    return DropRepeats(image.mode, image.height, image.width, payload[8:rows_end], payload[rows_end:])


def _tails(image: ImageData) -> list[list[Step]]:
    """The chains' last parts for an image after its exact reductions (and any repeats): nothing,
    levels per channel, levels shared, palette or palette order by luminance and by neighbours."""
    tails: list[list[Step]] = [[]]
    if image.mode == "P":
        return tails + [[step] for step in _palette_order_steps(image)]
    for shared in (False, True):
        extra = _levels_steps(image, shared)
        if extra and extra not in tails:
            tails.append(extra)
    return tails + [[step] for step in _palette_steps(image)]


def candidates(image: ImageData) -> list[tuple[ImageData, TransformRecord]]:
    """Every chain worth trying, simplest first: the image with its exact reductions, then levels per
    channel, levels shared across channels, palette (RGB/RGBA/LA; NearPalette past 256 colours) or
    palette order (P), each by luminance and by neighbours; each again with repeated rows and columns
    dropped where any repeat (the tails built again on the smaller image: NearPalette lists pixels by
    position, and neighbour counts change)."""
    if image.mode not in ("L", "LA", "RGB", "RGBA", "P"):
        return [(image, IDENTITY)]
    base = [] if image.mode == "P" else _exact_reductions(image)
    reduced = TransformRecord(tuple(base)).forward(image)
    chains = [base + tail for tail in _tails(reduced)]
    repeats = _repeats_step(reduced)
    if repeats is not None:
        chains += [base + [repeats] + tail for tail in _tails(repeats.forward(reduced))]
    out = []
    for chain in chains:
        record = TransformRecord(tuple(chain))
        out.append((record.forward(image), record))
    return out


# -- choosing ----------------------------------------------------------------------------------------------
def _med_residuals(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """LOCO-I's median edge detector (a cheap stand-in for the network's mean): signed residuals, and
    the local activity |W-NW| + |N-NW| + |N-NE| the network's scale would follow."""
    x = x.astype(np.int32)
    pad = np.pad(x, ((1, 0), (1, 1)), mode="edge")
    w, n, nw, ne = pad[1:, :-2], pad[:-1, 1:-1], pad[:-1, :-2], pad[:-1, 2:]
    pred = np.where(nw >= np.maximum(w, n), np.minimum(w, n),
                    np.where(nw <= np.minimum(w, n), np.maximum(w, n), w + n - nw))
    return x - pred, np.abs(w - nw) + np.abs(n - nw) + np.abs(n - ne)


def _laplace_bits(residuals: np.ndarray, activity: np.ndarray) -> float:
    """Bits of the residuals under a two-sided geometric law fitted per activity bucket. A fitted law,
    not a histogram: like the network's, it spreads mass over the values between the ones that occur,
    so 6-bit levels spaced by 4 cost their ~2 extra bits here too, and ranks 0..63 do not."""
    bucket = np.minimum(np.log2(activity.reshape(-1) + 1).astype(np.int64), 11)
    size = np.bincount(bucket, minlength=12).astype(np.float64)
    total = np.bincount(bucket, weights=np.abs(residuals.reshape(-1)), minlength=12)
    used = size > 0
    m = total[used] / size[used]
    theta = np.clip((np.sqrt(1 + m * m) - 1) / np.maximum(m, 1e-9), 1e-3, 0.999)   # E|r| = 2t/(1-t^2)
    return float(-(size[used] * np.log2((1 - theta) / (1 + theta)) + total[used] * np.log2(theta)).sum())


ESTIMATE_PIXELS = 1 << 20      # beyond this, the estimate looks at evenly spaced bands of rows


def _row_bands(plane: np.ndarray, band: int = 32) -> np.ndarray:
    """Up to ESTIMATE_PIXELS of a plane as evenly spaced bands of whole rows: the estimate only ranks
    candidates, and on a large image a sample ranks them as well as every pixel, in bounded time.
    (A band's first row sees the last row of the band before: a few % of its pixels, in every candidate.)"""
    height, width = plane.shape[:2]
    bands = ESTIMATE_PIXELS // max(1, band * width)
    if height * width <= ESTIMATE_PIXELS or bands < 2:
        return plane
    starts = np.linspace(0, height - band, bands).astype(np.int64)
    return plane[(starts[:, None] + np.arange(band)).reshape(-1)]


def estimate_bits(image: ImageData) -> float:
    """A cheap stand-in for coding: MED residuals under per-context Laplace laws, per channel; a later
    channel of a plane may instead code its difference from the previous one, as the network
    conditions on it. Only ranks candidates when no trial coder is given."""
    bits = 0.0
    for whole in image.planes:
        p = _row_bands(whole)
        scale = whole.shape[0] / p.shape[0]              # a sample's bits stand for all the rows
        for c in range(p.shape[2]):
            alone = _laplace_bits(*_med_residuals(p[..., c]))
            if c:
                alone = min(alone, _laplace_bits(*_med_residuals(p[..., c].astype(np.int32) - p[..., c - 1])))
            bits += scale * alone
    return bits


def choose(image: ImageData, try_coding: Callable[[ImageData], "bytes | int"] | None = None,
           max_trials: int | None = None) -> tuple[ImageData, TransformRecord]:
    """The candidate with the fewest bytes (coded image + record). `try_coding(candidate)` returns the
    coded bytes (or their count), e.g. `lambda im: api.compress(im)[0]`; without it a residual-entropy
    estimate ranks them. `max_trials`: trial-code only that many, the best by the estimate (an effort
    knob: each trial is one encode). Ties keep the simpler chain."""
    options = candidates(image)
    if len(options) == 1:
        return options[0]
    if try_coding is not None and max_trials is not None and len(options) > max_trials:
        estimates = [candidate_cost(c, r) for c, r in options]
        options = [options[i] for i in sorted(np.argsort(estimates, kind="stable")[:max(1, max_trials)])]
    return options[int(np.argmin([candidate_cost(c, r, try_coding) for c, r in options]))]


def candidate_cost(coded: ImageData, record: TransformRecord,
                   try_coding: Callable[[ImageData], "bytes | int"] | None = None) -> float:
    """Bytes a candidate costs: its coding (trial or estimate) plus its record (none for the identity)."""
    overhead = 0 if record.is_identity else len(record.to_bytes())
    if try_coding is None:
        return estimate_bits(coded) / 8 + overhead
    result = try_coding(coded)
    return (result if isinstance(result, int) else len(result)) + overhead


# -- the stored fallback -----------------------------------------------------------------------------------
def bits_for_levels(levels: int) -> int:
    """Bits per sub-pixel that hold values 0..levels-1 (0 for a single level: nothing to store)."""
    if not 1 <= levels <= 256:
        raise ValueError(f"levels {levels} outside 1..256")
    return (levels - 1).bit_length()


def stored_size(count: int, bits: int) -> int:
    """Bytes `count` sub-pixels take bit-packed at `bits` each."""
    return (count * bits + 7) // 8


def pack_bits(values: np.ndarray, bits: int) -> bytes:
    """Sub-pixels (any shape, uint8, each < 2**bits) as a bit string, most significant bit first, in
    C order; the last byte's unused low bits are zero."""
    if not 0 <= bits <= 8:
        raise ValueError(f"bits {bits} outside 0..8")
    flat = np.ascontiguousarray(values, dtype=np.uint8).reshape(-1)
    if bits < 8 and flat.size and int(flat.max()) >> bits:
        raise ValueError(f"a value does not fit in {bits} bits")
    if bits == 0:
        return b""
    planes = np.unpackbits(flat[:, None], axis=1)[:, 8 - bits:]     # each value's low `bits` bits, MSB first
    return np.packbits(planes.reshape(-1)).tobytes()


def unpack_bits(data: bytes, shape: Sequence[int], bits: int) -> np.ndarray:
    """The exact inverse of pack_bits; PixzipError if the length or the padding bits are wrong."""
    if not 0 <= bits <= 8:
        raise PixzipError(f"stored plane: {bits} bits per sub-pixel")
    count = int(np.prod(shape, dtype=np.int64))
    if len(data) != stored_size(count, bits):
        raise PixzipError("stored plane: wrong length")
    if bits == 0:
        return np.zeros(tuple(shape), np.uint8)
    stream = np.unpackbits(np.frombuffer(data, np.uint8))
    if stream[count * bits:].any():
        raise PixzipError("stored plane: padding bits are not zero")
    columns = np.zeros((count, 8), np.uint8)
    columns[:, 8 - bits:] = stream[:count * bits].reshape(count, bits)
    return np.packbits(columns, axis=1).reshape(tuple(shape))


def stored_pays(coded_bytes: int, count: int, bits: int, stored_overhead: int = 0) -> bool:
    """Store raw when it is strictly smaller than the coded stream (ties keep the coder)."""
    return stored_size(count, bits) + stored_overhead < coded_bytes


def levels_needed(plane: np.ndarray) -> int:
    """The level count a plane is stored at: its largest value + 1 (after Levels/Palette, its rank count)."""
    return int(plane.max()) + 1 if plane.size else 1
