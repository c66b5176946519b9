"""The palette steps: Palette (<= 256 colours as one index plane), NearPalette (past 256 colours: the
256 most frequent and a list of the other pixels) and PaletteOrder (a P image's indices re-ranked),
and the colour helpers they and the chooser share.

numpy only: the decoder needs this without torch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ...errors import PixzipError
from ..images import ImageData
from ..varint import Reader, varint
from .steps import (LAYOUTS, MAX_PALETTE, MAX_PALETTE_MODE, MAX_TRANSPARENCY, Step, corrupt, derived, expect,
                    layout_of, used_levels)

MAX_EXCEPTIONS = 1 << 16      # NearPalette: pixels listed with their own colour (bounds the record)


def _blob(b: bytes) -> bytes:
    return len(b).to_bytes(2, "little") + b


def _read_blob(r: Reader, limit: int) -> bytes:
    n = r.u16()
    if n > limit:
        raise corrupt("field too long")
    return r.take(n)


def colour_keys(colours: np.ndarray) -> np.ndarray:
    """Pack (n, k) uint8 colours into one integer each (k <= 4), for exact set operations."""
    keys = np.zeros(colours.shape[0], np.uint32)
    for c in range(colours.shape[1]):
        keys = (keys << np.uint32(8)) | colours[:, c].astype(np.uint32)
    return keys


def colours_of_keys(keys: np.ndarray, channels: int) -> np.ndarray:
    """The inverse of colour_keys: (n,) keys -> (n, channels) uint8 colours."""
    shifts = np.array([8 * (channels - 1 - c) for c in range(channels)], np.uint32)
    return ((keys[:, None] >> shifts) & np.uint32(255)).astype(np.uint8)


def luminance_order(colours: np.ndarray) -> np.ndarray:
    """Indices of (n, k) colours sorted by luminance, then each channel: any total order is exact
    (the order is stored); luminance makes the index plane as smooth as the image's lightness."""
    grey = colours[:, 0].astype(np.int64) * 1000 if colours.shape[1] < 3 else \
        colours[:, :3].astype(np.int64) @ np.array([299, 587, 114])
    return np.lexsort(tuple(colours[:, c] for c in reversed(range(colours.shape[1]))) + (grey,))


def table_index(table: np.ndarray, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel (..., k), its colour's row in the (n, k) table of distinct colours, and whether the table holds it
    (where not, the row is meaningless)."""
    keys = colour_keys(pixels.reshape(-1, table.shape[1]))
    table_keys = colour_keys(table)
    order = np.argsort(table_keys)
    where = np.minimum(np.searchsorted(table_keys[order], keys), len(table) - 1)
    return order[where], table_keys[order][where] == keys


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

    def entries(self) -> int:
        """The index plane's values are 0..entries() - 1."""
        return len(self.table())

    def forward(self, image: ImageData) -> ImageData:
        index, known = table_index(self.table(), np.concatenate(image.planes, axis=2))
        if not known.all():
            raise PixzipError(f"transform {self.NAME}: the image has a colour the palette lacks")
        return derived(image, "L", [index.astype(np.uint8).reshape(image.height, image.width, 1)])

    def inverse(self, image: ImageData) -> ImageData:
        expect(image, "L", self.NAME)
        table = self.table()
        index = image.planes[0][..., 0]
        if index.size and int(index.max()) >= len(table):
            raise PixzipError(f"transform {self.NAME}: index {int(index.max())} beyond {len(table)} colours")
        pixels = table[index]
        splits = np.cumsum(LAYOUTS[self.mode_before])[:-1]
        return derived(image, self.mode_before, np.split(pixels, splits, axis=2))

    def payload(self) -> bytes:
        # each colour as its difference from the one before (mod 256): neighbours in either order are
        # close colours, so the differences are small and the record's deflate shrinks them
        table = self.table()
        deltas = np.diff(table, axis=0, prepend=np.zeros((1, table.shape[1]), np.uint8))
        return bytes([len(table) - 1]) + deltas.astype(np.uint8).tobytes()

    @classmethod
    def parse(cls, mode_before: str, r: Reader) -> "Palette":
        if mode_before not in ("LA", "RGB", "RGBA"):
            raise corrupt("palette of a single-channel mode")
        n, k = r.u8() + 1, sum(LAYOUTS[mode_before])
        deltas = np.frombuffer(r.take(n * k), np.uint8).reshape(n, k)
        step = cls(mode_before, np.cumsum(deltas, axis=0, dtype=np.uint8).tobytes())    # wraps mod 256
        if len(np.unique(colour_keys(step.table()))) != n:      # two indices, one colour: never written
            raise corrupt("repeated palette colour")
        return step

    def describe(self) -> str:
        table = self.table()
        by = "luminance" if np.array_equal(luminance_order(table), np.arange(len(table))) else "neighbours"
        return f"{self.NAME}({len(table)} colours by {by})"


def palette_colours(palette_mode: str, palette: bytes) -> np.ndarray:
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

    def entries(self) -> int:
        """The index plane's values are 0..entries() - 1 (the ranks of the used indices)."""
        return len(self.order)

    def forward(self, image: ImageData) -> ImageData:
        if np.setdiff1d(used_levels(image.planes[0]), np.frombuffer(self.order, np.uint8)).size:
            raise PixzipError(f"transform {self.NAME}: the image uses an index the order lacks")
        rank = np.zeros(256, np.uint8)
        rank[np.frombuffer(self.order, np.uint8)] = np.arange(len(self.order), dtype=np.uint8)
        return derived(image, "L", [rank[image.planes[0]]])

    def inverse(self, image: ImageData) -> ImageData:
        expect(image, "L", self.NAME)
        index = image.planes[0]
        if index.size and int(index.max()) >= len(self.order):
            raise PixzipError(f"transform {self.NAME}: rank {int(index.max())} beyond {len(self.order)} indices")
        original = np.frombuffer(self.order, np.uint8)[index]
        return derived(image, "P", [original], self.palette_mode, self.palette, self.transparency)

    def payload(self) -> bytes:
        return (_blob(self.palette_mode.encode("ascii")) + _blob(self.palette) + _blob(self.transparency)
                + bytes([len(self.order) - 1]) + self.order)

    @classmethod
    def parse(cls, mode_before: str, r: Reader) -> "PaletteOrder":
        if mode_before != "P":
            raise corrupt("palette order of a non-P image")
        mode = _read_blob(r, MAX_PALETTE_MODE)
        if not all(0x20 < b < 0x7f for b in mode):
            raise corrupt("palette mode")
        palette, transparency = _read_blob(r, MAX_PALETTE), _read_blob(r, MAX_TRANSPARENCY)
        order = r.take(r.u8() + 1)
        if len(set(order)) != len(order):
            raise corrupt("palette order is not a permutation")
        return cls("P", mode.decode("ascii"), palette, transparency, order)

    def describe(self) -> str:
        return f"{self.NAME}({len(self.order)} used)"


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
        index = nearest(pixels, table)
        listed = np.flatnonzero(np.any(table[index] != pixels, axis=1))
        if listed.tobytes() != np.frombuffer(self.positions, "<u4").astype(np.int64).tobytes() \
                or pixels[listed].tobytes() != self.exact:
            raise PixzipError(f"transform {self.NAME}: the listed pixels differ from the image's")
        return derived(image, "L", [index.astype(np.uint8).reshape(image.height, image.width, 1)])

    def inverse(self, image: ImageData) -> ImageData:
        positions = np.frombuffer(self.positions, "<u4")
        if len(positions) and int(positions[-1]) >= image.width * image.height:
            raise PixzipError(f"transform {self.NAME}: a listed pixel is outside the image")
        restored = Palette.inverse(self, image)
        k = self.table().shape[1]
        pixels = np.concatenate(restored.planes, axis=2).reshape(-1, k)
        pixels[positions] = np.frombuffer(self.exact, np.uint8).reshape(-1, k)
        splits = np.cumsum(LAYOUTS[self.mode_before])[:-1]
        return derived(image, self.mode_before, np.split(pixels.reshape(image.height, image.width, k), splits, axis=2))

    def payload(self) -> bytes:
        positions = np.frombuffer(self.positions, "<u4").astype(np.int64)
        gaps = np.diff(positions, prepend=-1) - 1                      # strictly increasing: gaps >= 0
        # a gap under 128 is its own one-byte varint: the usual case, written without a call per pixel
        packed = gaps.astype(np.uint8).tobytes() if len(gaps) == 0 or gaps.max() < 128 \
            else b"".join(map(varint, gaps.tolist()))
        return Palette.payload(self) + varint(len(positions)) + packed + self.exact

    @classmethod
    def parse(cls, mode_before: str, r: Reader) -> "NearPalette":
        palette = Palette.parse(mode_before, r)
        count = r.varint(35)
        if count > MAX_EXCEPTIONS:
            raise corrupt("too many listed pixels")
        positions, at = [], -1
        for _ in range(count):
            at += r.varint(35) + 1
            if at >= 1 << 32:
                raise corrupt("listed pixel position")
            positions.append(at)
        exact = r.take(count * palette.table().shape[1])
        return cls(mode_before, palette.colours, np.array(positions, "<u4").tobytes(), exact)

    def describe(self) -> str:
        return Palette.describe(self).replace(" by", f", {len(self.positions) // 4} pixels listed, by")


@dataclass(frozen=True)
class EscapePalette(Palette):
    """NearPalette's other form (session 33): the 255 most frequent colours of an image of more than 256, and
    one more index, `entries() - 1`, the *escape*: a pixel of a colour of its own, whose colours follow in raster
    order (`exact`). The index plane says where the escapes are, so no position is listed, and the adaptive stage
    codes them with the edges and glyphs they belong to (the kinds' screenshots: 1-9 % smaller files than with
    NearPalette's list at -e 4; docs/FORMAT.md "Transforms")."""
    KIND: ClassVar[int] = 9
    NAME: ClassVar[str] = "escape-palette"
    exact: bytes = b""                # channels bytes per escaped pixel, raster order

    def entries(self) -> int:
        """The index plane's values are 0..entries() - 1: the colours, then the escape."""
        return len(self.table()) + 1

    def forward(self, image: ImageData) -> ImageData:
        table = self.table()
        pixels = np.concatenate(image.planes, axis=2).reshape(-1, table.shape[1])
        index, known = table_index(table, pixels)
        if pixels[~known].tobytes() != self.exact:
            raise PixzipError(f"transform {self.NAME}: the escaped pixels differ from the image's")
        index = np.where(known, index, len(table)).astype(np.uint8)
        return derived(image, "L", [index.reshape(image.height, image.width, 1)])

    def inverse(self, image: ImageData) -> ImageData:
        expect(image, "L", self.NAME)
        table = self.table()
        index = image.planes[0][..., 0].reshape(-1)
        if index.size and int(index.max()) > len(table):
            raise PixzipError(f"transform {self.NAME}: index {int(index.max())} beyond {len(table)} colours and the escape")
        escaped = np.flatnonzero(index == len(table))
        exact = np.frombuffer(self.exact, np.uint8).reshape(-1, table.shape[1])
        if len(escaped) != len(exact):
            raise PixzipError(f"transform {self.NAME}: {len(escaped)} escapes for {len(exact)} listed colours")
        pixels = table[np.minimum(index, len(table) - 1)]
        pixels[escaped] = exact
        splits = np.cumsum(LAYOUTS[self.mode_before])[:-1]
        shape = (image.height, image.width, table.shape[1])
        return derived(image, self.mode_before, np.split(pixels.reshape(shape), splits, axis=2))

    def payload(self) -> bytes:
        return Palette.payload(self) + varint(len(self.exact) // self.table().shape[1]) + self.exact

    @classmethod
    def parse(cls, mode_before: str, r: Reader) -> "EscapePalette":
        palette = Palette.parse(mode_before, r)
        if len(palette.table()) > 255:
            raise corrupt("escape palette of 256 colours")
        count = r.varint(35)
        if count > MAX_EXCEPTIONS:
            raise corrupt("too many escaped pixels")
        return cls(mode_before, palette.colours, r.take(count * palette.table().shape[1]))

    def describe(self) -> str:
        count = len(self.exact) // self.table().shape[1]
        return Palette.describe(self).replace(" by", f" and an escape, {count} pixels escaped, by")


def nearest(pixels: np.ndarray, table: np.ndarray, ties: bool = False, unique=None):
    """Per pixel, the index of the nearest table colour (squared distance; ties: lowest index),
    computed once per distinct colour. A colour the table holds is its own nearest (distance 0: its
    first entry); only the others are measured against the table, a channel at a time in int32
    (at most 4 * 255^2: exact, so the same argmin as the int64 distances). `ties`: also, per pixel,
    whether another table entry is as near (then a reordered table may pick another entry; elsewhere
    the same entry, at its new index). `unique`: (the pixels' distinct keys, each pixel's index among
    them), where the caller has them. The index by a binary search: np.unique's return_inverse sorts
    every pixel's index, 6x slower on a 768x512 photograph."""
    if unique is None:
        keys = colour_keys(pixels)
        distinct = np.unique(keys)
        unique = distinct, np.searchsorted(distinct, keys)
    distinct, inverse = unique
    k = table.shape[1]
    table_keys, first, repeats = np.unique(colour_keys(table), return_index=True, return_counts=True)
    at = np.minimum(np.searchsorted(table_keys, distinct), len(table_keys) - 1)
    member = table_keys[at] == distinct
    best = np.where(member, first[at], 0).astype(np.int64)
    tied = member & (repeats[at] > 1)
    others = np.flatnonzero(~member)
    if len(others):
        colours = colours_of_keys(distinct[others], k).astype(np.int32)
        entries = table.astype(np.int32)
        for start in range(0, len(others), 4096):                    # bounded temporaries
            block = colours[start:start + 4096]
            distance = np.zeros((len(block), len(table)), np.int32)
            for c in range(k):
                step = block[:, c, None] - entries[None, :, c]
                distance += step * step
            where = others[start:start + 4096]
            best[where] = np.argmin(distance, axis=1)
            if ties:
                least = distance[np.arange(len(block)), best[where]]
                tied[where] = (distance == least[:, None]).sum(axis=1) > 1
    index = best[inverse.reshape(-1)]
    return (index, tied[inverse.reshape(-1)]) if ties else index


def distinct_colours(image: ImageData, limit: int = 256) -> np.ndarray | None:
    """The distinct colours over all planes as (n, channels), or None once there are more than `limit`.
    Rows are taken in blocks so a many-coloured image stops early instead of sorting every pixel."""
    k = sum(layout_of(image))
    if k > 4:
        return None
    pixels = np.concatenate(image.planes, axis=2).reshape(-1, k)
    seen = np.zeros(0, np.uint32)
    block = max(65536, limit * 64)
    for start in range(0, len(pixels), block):
        seen = np.union1d(seen, colour_keys(pixels[start:start + block]))
        if len(seen) > limit:
            return None
    return colours_of_keys(seen, k)

