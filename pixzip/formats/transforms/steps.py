"""The reversible steps that change an image's layout or levels (drop a constant plane, grey from RGB,
levels, repeated rows and columns), their base class and the checks every step shares; the palette
steps are in `palette.py`. Each step is exact for every input; each inverse checks what it is given
and raises PixzipError. A step's fields travel in the record as its `payload`, read back by `parse`.

numpy only: the decoder needs this without torch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ...errors import PixzipError
from ..images import DEFAULT_MAX_PIXELS, ImageData
from ..varint import Reader

# -- modes and their plane layouts ------------------------------------------------------------------------
# Channels of each plane, per mode (images.py's split). A "1" image's plane holds 0 and 255 (images.py);
# GreyFromBilevel makes it an L image, which the L steps then take (repeats, levels to ranks 0 and 1).
LAYOUTS = {"L": (1,), "LA": (1, 1), "RGB": (3,), "RGBA": (3, 1), "P": (1,), "1": (1,)}
MODE_CODES = ("L", "LA", "RGB", "RGBA", "P", "1")      # the byte that names a mode in a record
_MODE_OF_LAYOUT = {(1,): "L", (1, 1): "LA", (3,): "RGB", (3, 1): "RGBA"}
MAX_BODY = 1 << 20            # NearPalette's list: <= 65536 pixels of <= 4 + 5 bytes; the rest < 8 KB
MAX_PALETTE = 1024            # 256 entries of 4 bytes: the most a Pillow palette holds
MAX_TRANSPARENCY = 1 + 1024   # images.py's prefix byte + tRNS
MAX_PALETTE_MODE = 16


def corrupt(what: str) -> PixzipError:
    return PixzipError(f"transform record is corrupted ({what})")


def layout_of(image: ImageData) -> tuple[int, ...]:
    return tuple(p.shape[2] for p in image.planes)


def derived(image: ImageData, mode: str, planes: list[np.ndarray], palette_mode: str = "",
             palette: bytes = b"", transparency: bytes = b"") -> ImageData:
    """A new ImageData of the same size and ICC profile (the container keeps the profile)."""
    return ImageData(mode, image.width, image.height, [np.ascontiguousarray(p, dtype=np.uint8) for p in planes],
                     icc=image.icc, palette_mode=palette_mode, palette=palette, transparency=transparency)


def expect(image: ImageData, mode: str, step: str) -> None:
    """An inverse only runs on the image its step produced: mode, plane layout, shapes, dtype."""
    if image.mode != mode or layout_of(image) != LAYOUTS[mode]:
        raise PixzipError(f"transform {step}: expected a {mode} image, got {image.mode} "
                          f"with planes {layout_of(image)}")
    for p in image.planes:
        if p.dtype != np.uint8 or p.shape[:2] != (image.height, image.width):
            raise PixzipError(f"transform {step}: a plane is not uint8 {image.height}x{image.width}")


def read_mode(r: Reader) -> str:
    code = r.u8()
    if code >= len(MODE_CODES):
        raise corrupt("unknown mode")
    return MODE_CODES[code]


# -- bitmaps of used values (Levels) -----------------------------------------------------------------------
def levels_bitmap(values: np.ndarray) -> bytes:
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
    def parse(cls, mode_before: str, r: Reader) -> "Step":
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
        return derived(image, self.coded_mode, planes)

    def inverse(self, image: ImageData) -> ImageData:
        expect(image, self.coded_mode, self.NAME)
        planes = list(image.planes)
        value = np.frombuffer(self.values, np.uint8)
        planes.insert(self.plane, np.broadcast_to(value, (image.height, image.width, len(value))))
        return derived(image, self.mode_before, planes)

    def payload(self) -> bytes:
        return bytes([self.plane]) + self.values

    @classmethod
    def parse(cls, mode_before: str, r: Reader) -> "DropConstantPlane":
        if mode_before not in ("LA", "RGBA"):
            raise corrupt("a constant plane dropped from a single-plane mode")
        plane = r.u8()
        if plane >= len(LAYOUTS[mode_before]):
            raise corrupt("plane index")
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
        return derived(image, self.coded_mode, [image.planes[0][..., :1]] + list(image.planes[1:]))

    def inverse(self, image: ImageData) -> ImageData:
        expect(image, self.coded_mode, self.NAME)
        return derived(image, self.mode_before, [np.repeat(image.planes[0], 3, axis=2)] + list(image.planes[1:]))

    def payload(self) -> bytes:
        return b""

    @classmethod
    def parse(cls, mode_before: str, r: Reader) -> "GreyFromRGB":
        if mode_before not in ("RGB", "RGBA"):
            raise corrupt("grey from a mode without RGB")
        return cls(mode_before)


@dataclass(frozen=True)
class GreyFromBilevel(Step):
    """A bilevel ("1") image as the L image of its samples, 0 and 255, so that the steps of an L image take
    it: repeated rows dropped, levels to ranks 0 and 1 (the stage codes a rank in one or two decisions; as
    0 and 255 a residual of 255 takes up to nine). Format v4 from session 26 (KIND 8: older readers refuse it)."""
    KIND: ClassVar[int] = 8
    NAME: ClassVar[str] = "grey-from-bilevel"

    @property
    def coded_mode(self) -> str:
        return "L"

    def forward(self, image: ImageData) -> ImageData:
        return derived(image, "L", list(image.planes))

    def inverse(self, image: ImageData) -> ImageData:
        expect(image, "L", self.NAME)
        p = image.planes[0]
        if np.any((p != 0) & (p != 255)):        # the step's output only ever holds 0 and 255
            raise PixzipError(f"transform {self.NAME}: a sample that is neither 0 nor 255")
        return derived(image, "1", [p])

    def payload(self) -> bytes:
        return b""

    @classmethod
    def parse(cls, mode_before: str, r: Reader) -> "GreyFromBilevel":
        if mode_before != "1":
            raise corrupt("grey from bilevel of another mode")
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
        return derived(image, image.mode, planes)

    def inverse(self, image: ImageData) -> ImageData:
        expect(image, self.mode_before, self.NAME)
        p = image.planes[self.plane]
        out = np.empty_like(p)
        for c, table in enumerate(self.tables(p.shape[2])):
            ch = p[..., c]
            if ch.size and int(ch.max()) >= len(table):   # a rank no value has: corrupt data
                raise PixzipError(f"transform {self.NAME}: rank {int(ch.max())} beyond the {len(table)} levels")
            out[..., c] = table[ch]
        planes = list(image.planes)
        planes[self.plane] = out
        return derived(image, self.mode_before, planes)

    def payload(self) -> bytes:
        return bytes([self.plane, int(self.shared)]) + b"".join(self.bitmaps)

    @classmethod
    def parse(cls, mode_before: str, r: Reader) -> "Levels":
        if mode_before not in ("L", "LA", "RGB", "RGBA"):
            raise corrupt("levels of a P or bilevel image")
        plane, shared = r.u8(), r.u8()
        if plane >= len(LAYOUTS[mode_before]) or shared > 1:
            raise corrupt("levels header")
        count = 1 if shared else LAYOUTS[mode_before][plane]
        bitmaps = tuple(r.take(32) for _ in range(count))
        if any(not any(b) for b in bitmaps):
            raise corrupt("a channel with no levels")
        return cls(mode_before, plane, bool(shared), bitmaps)

    def describe(self) -> str:
        counts = [len(_values_of_bitmap(b)) for b in self.bitmaps]
        return f"{self.NAME}(plane {self.plane}, {'shared ' if self.shared else ''}{counts})"


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
        expect(image, self.mode_before, self.NAME)
        row_of = np.cumsum(keep_rows) - 1          # original row -> its run's kept row
        column_of = np.cumsum(keep_columns) - 1
        planes = [p[row_of][:, column_of] for p in image.planes]
        return ImageData(image.mode, self.width, self.height, [np.ascontiguousarray(p) for p in planes],
                         icc=image.icc, palette_mode=image.palette_mode, palette=image.palette,
                         transparency=image.transparency)

    def payload(self) -> bytes:
        return self.height.to_bytes(4, "little") + self.width.to_bytes(4, "little") + self.rows + self.columns

    @classmethod
    def parse(cls, mode_before: str, r: Reader) -> "DropRepeats":
        height, width = int.from_bytes(r.take(4), "little"), int.from_bytes(r.take(4), "little")
        if not 1 <= height <= 8 * MAX_BODY or not 1 <= width <= 8 * MAX_BODY:   # the flags must fit a body
            raise corrupt("repeats size")
        step = cls(mode_before, height, width, r.take((height + 7) // 8), r.take((width + 7) // 8))
        keep_rows, keep_columns = step.flags()
        if not (keep_rows[0] and keep_columns[0]) or step.payload() != repeats_payload(keep_rows, keep_columns):
            raise corrupt("repeats flags")          # a first row that repeats nothing, or padding bits set
        return step

    def describe(self) -> str:
        keep_rows, keep_columns = self.flags()
        return f"{self.NAME}({self.width}x{self.height} -> {int(keep_columns.sum())}x{int(keep_rows.sum())})"


def repeats_payload(keep_rows: np.ndarray, keep_columns: np.ndarray) -> bytes:
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

