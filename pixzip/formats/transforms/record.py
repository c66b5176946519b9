"""The transform record: the chain of steps from the original image to the coded one, as the container
stores it beside the header (an empty field: the identity).

numpy only: the decoder needs this without torch."""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import numpy as np

from ...errors import PixzipError
from .. import lzma2
from ..images import DEFAULT_MAX_PIXELS, ImageData
from ..varint import Reader
from .palette import EscapePalette, NearPalette, Palette, PaletteOrder
from .steps import (MAX_BODY, MODE_CODES, DropConstantPlane, DropRepeats, GreyFromBilevel, GreyFromRGB, Levels,
                    Step, corrupt, read_mode)

RECORD_FORMAT = 1
MAX_STEPS = 8                 # a real chain has at most 5 (drop, grey, repeats, levels per plane)
_FLAG_DEFLATED = 1
_FLAG_LZMA = 2                # (session 22) the body as raw LZMA2: a chart's palette of 234 colours 655 -> 341 bytes

STEP_KINDS: dict[int, type[Step]] = {s.KIND: s for s in (DropConstantPlane, GreyFromRGB, Levels, Palette,
                                                         PaletteOrder, DropRepeats, NearPalette, GreyFromBilevel,
                                                         EscapePalette)}


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

    @property
    def lists_pixels(self) -> bool:
        """Whether a step lists pixels with their own colours (NearPalette's exceptions, EscapePalette's escapes)."""
        return any(isinstance(step, (NearPalette, EscapePalette)) for step in self.steps)

    @property
    def escapes(self) -> bool:
        """Whether a step is an EscapePalette (the estimate misjudges its index plane: choose._best_escape)."""
        return any(isinstance(step, EscapePalette) for step in self.steps)

    def _symbol_step(self, plane: int):
        """The step that made this coded plane's samples symbols (a Levels step's ranks, a palette's indices),
        if it is among the chain's last steps, those that change no values of this plane after it (other
        planes' Levels, DropRepeats); else None."""
        for step in reversed(self.steps):
            if isinstance(step, Levels) and step.plane == plane:
                return step
            if isinstance(step, (Palette, PaletteOrder)) and plane == 0:       # NearPalette, EscapePalette too
                return step
            if not isinstance(step, (Levels, DropRepeats)):
                return None
        return None

    def holds_symbols(self, plane: int) -> bool:
        """Whether the coded plane holds a Levels step's ranks or a palette's indices (whose values name
        colours: the adaptive stage's levels 11 and 12 take such planes)."""
        return self._symbol_step(plane) is not None

    def holds_palette(self, plane: int) -> bool:
        """Whether the coded plane holds a palette's indices (Palette, NearPalette, EscapePalette, PaletteOrder)."""
        return isinstance(self._symbol_step(plane), (Palette, PaletteOrder))

    def value_tables(self, plane: int, channels: int) -> list | None:
        """The values (rank -> value, per channel) a coded plane can hold, for entropy stage 4: a Levels step's
        used values (the network then reads them instead of the ranks), or the indices 0..n-1 of a palette
        step of n < 256 entries (read as they are; the stage gains only their range). None for any other
        plane (`_symbol_step`)."""
        step = self._symbol_step(plane)
        if isinstance(step, Levels):
            return step.tables(channels)
        if step is not None and 0 < step.entries() < 256:
            return [np.arange(step.entries(), dtype=np.uint8)]
        return None

    def describe(self) -> str:
        return " -> ".join(s.describe() for s in self.steps) or "none"

    def to_bytes(self) -> bytes:
        body = bytes([len(self.steps)]) + b"".join(
            bytes([s.KIND, MODE_CODES.index(s.mode_before)]) + s.payload() for s in self.steps)
        if len(body) > MAX_BODY or len(self.steps) > MAX_STEPS:
            raise PixzipError("transform record too large")        # the encoder's own bug, refused early
        # colour tables and listed pixels pack; tiny bodies do not: the smallest of the three (ties: the first)
        return min((bytes([RECORD_FORMAT, 0]) + body,
                    bytes([RECORD_FORMAT, _FLAG_DEFLATED]) + zlib.compress(body, 9),
                    bytes([RECORD_FORMAT, _FLAG_LZMA]) + lzma2.pack(body, MAX_BODY, lzma2.EXTREME)), key=len)

    @classmethod
    def from_bytes(cls, data: bytes) -> "TransformRecord":
        if len(data) < 2 or data[0] != RECORD_FORMAT or data[1] not in (0, _FLAG_DEFLATED, _FLAG_LZMA):
            raise corrupt("header")
        body = _inflate(data[2:]) if data[1] == _FLAG_DEFLATED else _unlzma(data[2:]) if data[1] else data[2:]
        if len(body) > MAX_BODY:
            raise corrupt("too large")
        r = Reader(body, corrupt)
        count = r.u8()
        if count > MAX_STEPS:
            raise corrupt("too many steps")
        steps = []
        for _ in range(count):
            kind = r.u8()
            if kind not in STEP_KINDS:        # a later pixzip's step (or damage the CRC would catch)
                raise PixzipError(f"file uses transform step {kind}, which this pixzip does not know (upgrade pixzip)")
            steps.append(STEP_KINDS[kind].parse(read_mode(r), r))
        if r.pos != len(body):
            raise corrupt("trailing bytes")
        for a, b in zip(steps, steps[1:]):
            if b.mode_before != a.coded_mode:
                raise corrupt("steps do not follow on")
        if sum(isinstance(s, DropRepeats) for s in steps) > 1:
            raise corrupt("repeats twice")
        return cls(tuple(steps))


def _inflate(data: bytes) -> bytes:
    """Deflated body, bounded: a record that inflates past MAX_BODY is refused without inflating it all."""
    d = zlib.decompressobj()
    try:
        body = d.decompress(data, MAX_BODY + 1)
    except zlib.error:
        raise corrupt("bad deflate data") from None
    if len(body) > MAX_BODY or not d.eof or d.unused_data or d.unconsumed_tail:
        raise corrupt("bad deflate framing")
    return body


def _unlzma(data: bytes) -> bytes:
    """A raw LZMA2 body, bounded as _inflate's."""
    try:
        return lzma2.inflate(data, MAX_BODY, MAX_BODY)
    except ValueError as e:
        raise corrupt(str(e)) from None


IDENTITY = TransformRecord()
