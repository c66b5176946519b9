"""The .pxz container, format versions 1 to 4 (see docs/FORMAT.md). Pure bytes: no torch, no models.

Version 2 (written since pixzip 0.2) is version 1 made smaller for small images: one CRC-32 over the
whole file instead of a header and a payload CRC, 64-bit model identities instead of 128, the last
stream's size implied by the file's length, and model names optional (empty for the shipped models,
which are found by identity). Version 3 (pixzip 0.3) has version 2's layout; only its streams differ:
they are rANS lanes (`pixzip.rans`) instead of constriction's range coder. Version 4 adds the bit
depth, the 16-bit planes' low parts, a per-plane entropy stage (static rANS lanes, the adaptive stage,
or stored samples), the metadata section and the transform record. Older files keep decoding."""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

import numpy as np

from ..errors import PixzipError
from . import metadata
from .depth import read_split
from .tiles import tile_grid
from .varint import Reader, varint as _varint

MAGIC = b"\x89PXZ\r\n\x1a\n"
VERSION = 4
WRITABLE = (2, 3, 4)     # the versions `write` produces (1 is read only)
CODERS = {1: "range", 2: "range", 3: "rans", 4: "rans"}    # the model streams' coder, by format version
# v4: the bit depths each mode may declare (sub-8: a PNG's declared depth; L's planes then hold the
# samples scaled to 0..255, P's the indices; 16: the planes are uint16)
DEPTHS = {"L": (2, 4, 8, 16), "LA": (8, 16), "RGB": (8, 16), "RGBA": (8, 16), "P": (1, 2, 4, 8), "1": (1,)}
# v4: a plane's entropy stage: 0 = the static rANS lanes of v3 with the model's tables; 1 = the adaptive
# stage (entropy/adaptive.py) at a level of ADAPTIVE_LEVELS, a fresh state per tile, byte-framed tile
# streams of which any may be stored instead; 2 = the whole plane stored (bit-packed samples, one stream);
# 3 = the whole plane filtered and LZMA2-compressed (entropy/lz.py, one stream); 4 = as 1, for a plane that
# holds a Levels transform's ranks (the network reading their values) or a palette's indices, each channel
# coded within its own range (entropy/value_map.py)
STATIC, ADAPTIVE, STORED, LZ, ADAPTIVE_VALUES = 0, 1, 2, 3, 4
ENTROPY_STAGES = (STATIC, ADAPTIVE, STORED, LZ, ADAPTIVE_VALUES)
ADAPTIVE_STAGES = (ADAPTIVE, ADAPTIVE_VALUES)   # the stages coded by the adaptive stage (tile streams, a level)
WHOLE_PLANE = (STORED, LZ)                    # the stages that code a plane as one stream, without a model
# the LZ stage's mode byte (entropy/lz.py): the residuals' filter in bits 0-1, bit 2 the planar order
LZ_FILTERS = ("none", "W", "N", "W+N-NW")
LZ_PLANAR = 4
LZ_MODES = tuple(range(8))
ADAPTIVE_LEVELS = tuple(range(1, 19))       # entropy.adaptive.LEVELS' keys (a test keeps them in step)
MAX_RECORD = (1 << 20) + 64       # a transform record's bytes at most (transforms.MAX_BODY and its head)
MODE_CODES = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4, "P": 5, "1": 6}
MODE_NAMES = {v: k for k, v in MODE_CODES.items()}
PLANES_PER_MODE = {"L": 1, "LA": 2, "RGB": 1, "RGBA": 2, "P": 1, "1": 1}
MAX_HEADER = 1 << 26


class FormatError(PixzipError):
    """The bytes are not a valid .pxz file (the message says how)."""


@dataclass
class ModelRef:
    id: str            # hex of the first ID_BYTES[version] bytes of the integer model's SHA-256
    name: str          # may be empty (version 2): the model is then found by identity alone


@dataclass
class Header:
    mode: str
    width: int
    height: int
    tile: int
    models: list[ModelRef]
    planes: list[tuple[int, int]]            # (model index, channels) per plane (of the coded image)
    stream_sizes: list[int] = field(default_factory=list)   # bytes per stream, planes then tiles
    pixel_crc: int = 0
    payload_crc: int = 0
    model_bits: float = 0.0                  # the model's ideal code length, for reporting only
    icc: bytes = b""
    palette_mode: str = ""
    palette: bytes = b""
    transparency: bytes = b""
    version: int = VERSION
    depth: int = 8                           # v4 (older files: 8, or 1 for mode 1)
    entropy: list[int] = field(default_factory=list)      # v4: per plane (empty: 0 for every plane)
    levels: list[int] = field(default_factory=list)       # v4: per plane, the adaptive stage's level (else 0)
    stored_bits: list[int] = field(default_factory=list)  # v4: per plane, bits of a stored sample (stages 1, 2)
    lz_modes: list[int] = field(default_factory=list)     # v4: per plane, the LZ stage's filter and order (else 0)
    transform: bytes = b""                   # v4: the TransformRecord's bytes (empty: none); mode, size and
    #                                          planes above are then the coded image's, depth and CRC the original's
    splits: list = field(default_factory=list)            # v4, 16-bit: depth.Split per plane
    metadata: list = field(default_factory=list)          # v4: metadata.Item list

    @property
    def subpixels(self) -> int:
        return self.width * self.height * sum(c for _, c in self.planes)

    @property
    def low_streams(self) -> int:
        """Streams after the models' ones: one per 16-bit plane with a low part."""
        return sum(1 for split in self.splits if split.low_bits)


ID_BYTES = {1: 16, 2: 8, 3: 8, 4: 8}   # model identity: the first 128 (v1) or 64 (v2, v3) bits of its SHA-256
OPT_ICC, OPT_PALETTE, OPT_TRANSPARENCY, OPT_TRANSFORM = 1, 2, 4, 8


def _reader(data: bytes) -> Reader:
    return Reader(data, lambda what: FormatError(f"header is corrupted ({what})"))


def _blob(b: bytes) -> bytes:
    return _varint(len(b)) + b


def write(h: Header, streams: list[np.ndarray]) -> bytes:
    """A file of version h.version (2 or 3: the same layout; 4 adds its fields; the streams are the
    caller's: the models' streams, then the low parts')."""
    if h.version not in WRITABLE:
        raise ValueError(f"cannot write format version {h.version}")
    if h.version < 4 and (h.depth not in (8, 1) or h.metadata or h.transform or any(h.entropy)):
        raise ValueError(f"format version {h.version} holds no bit depths, metadata, transforms or entropy stages")
    payload = [s.astype("<u4").tobytes() for s in streams]
    h.stream_sizes = [len(p) for p in payload]
    body = _common_fields(h, id_bytes=ID_BYTES[h.version])
    # every stream's size but the last, which is what remains of the file
    body += _varint(len(payload)) + b"".join(_varint(n // 4) for n in h.stream_sizes[:-1])
    body += struct.pack("<I", h.pixel_crc) + _varint(max(0, round(h.model_bits)))
    head = MAGIC + bytes([h.version, 0]) + _varint(len(body)) + bytes(body)
    joined = b"".join(payload)
    return head + struct.pack("<I", zlib.crc32(joined, zlib.crc32(head))) + joined


def _common_fields(h: Header, id_bytes: int) -> bytearray:
    """Mode, size, tile, models, planes and the optional fields (the same in both versions but for
    the identity length)."""
    body = bytearray([MODE_CODES[h.mode]])
    if h.version >= 4:
        body.append(h.depth)
    body += _varint(h.width) + _varint(h.height) + _varint(h.tile)
    body.append(len(h.models))
    for m in h.models:
        body += bytes.fromhex(m.id)[:id_bytes] + _blob(m.name.encode())
    entropy = h.entropy or [STATIC] * len(h.planes)
    for p, ((model_index, channels), stage) in enumerate(zip(h.planes, entropy)):   # as many as the mode has
        body += bytes([model_index, channels])
        if h.version >= 4:
            body += bytes([stage]) + _stage_fields(h, p, stage)
    if h.version >= 4 and h.depth == 16:
        body += b"".join(split.to_bytes() for split in h.splits)
    optional = (OPT_ICC if h.icc else 0) | (OPT_PALETTE if h.palette else 0) | \
        (OPT_TRANSPARENCY if h.transparency else 0) | (OPT_TRANSFORM if h.transform else 0)
    body.append(optional)
    if h.icc:
        body += _blob(h.icc)
    if h.palette:
        body += _blob(h.palette_mode.encode()) + _blob(h.palette)
    if h.transparency:
        body += _blob(h.transparency)
    if h.transform:
        body += _blob(h.transform)
    if h.version >= 4:
        body += metadata.encode(h.metadata, _varint)
    return body


def _stage_fields(h: Header, p: int, stage: int) -> bytes:
    """v4: after a plane's stage byte, the adaptive level (stages 1, 4), the stored sample width (1, 2, 4) or
    the LZ stage's mode (3)."""
    fields = b""
    if stage in ADAPTIVE_STAGES:
        fields += bytes([h.levels[p]])
    if stage in ADAPTIVE_STAGES + (STORED,):
        fields += bytes([h.stored_bits[p]])
    if stage == LZ:
        fields += bytes([h.lz_modes[p]])
    return fields


def describe_stage(h: Header, p: int) -> str:
    """How plane p is coded, in words (docs/FORMAT.md, "Entropy stages"): `pixzip info`, `compress -v`."""
    stage = (h.entropy or [STATIC] * len(h.planes))[p]
    if stage in ADAPTIVE_STAGES:
        return f"adaptive level {h.levels[p]}" + (", in the plane's own values" if stage == ADAPTIVE_VALUES else "")
    if stage == STORED:
        return f"stored ({h.stored_bits[p]}-bit samples)"
    if stage == LZ:
        return f"LZMA2 ({lz_mode_name(h.lz_modes[p])})"
    return "static rANS"


def tile_kinds(h: Header, streams: list) -> list[list[str]] | None:
    """Each plane's tiles as unframe_tile names them (CODED, STORED_TILE, LZ_TILE; none for a whole-plane stage),
    for `pixzip info`; None where a plane is static (its stream count follows its model) or a frame is damaged."""
    stages = h.entropy or [STATIC] * len(h.planes)
    if STATIC in stages:
        return None
    tiles, out, at = len(tile_grid(h.height, h.width, h.tile)), [], 0
    try:
        for stage in stages:
            n = 1 if stage in WHOLE_PLANE else tiles
            out.append([] if stage in WHOLE_PLANE else [unframe_tile(s)[1] for s in streams[at:at + n]])
            at += n
    except FormatError:
        return None
    return out


def describe_tiles(kinds: list[str]) -> str:
    """An adaptive plane's stored and LZ tiles in words ("" where every tile is coded by the stage)."""
    parts = [f"{kinds.count(kind)} {what}" for kind, what in ((LZ_TILE, "in an LZ stream"), (STORED_TILE, "stored"))
             if kind in kinds]
    return f" (of {len(kinds)} tiles: {', '.join(parts)})" if parts else ""


def lz_mode_name(mode: int) -> str:
    return f"{LZ_FILTERS[mode & 3]}{', planar' if mode & LZ_PLANAR else ''}"


def _read_stage(r: Reader) -> tuple[int, int, int, int]:
    """(stage, level, stored bits, LZ mode) of one plane, each bounded; an unknown stage in its own words."""
    stage = r.u8()
    if stage not in ENTROPY_STAGES:
        raise FormatError(f"file uses entropy stage {stage}, which this pixzip does not know (upgrade pixzip)")
    level = r.u8() if stage in ADAPTIVE_STAGES else 0
    if stage in ADAPTIVE_STAGES and level not in ADAPTIVE_LEVELS:
        raise FormatError(f"file uses adaptive level {level}, which this pixzip does not know (upgrade pixzip)")
    bits = r.u8() if stage in ADAPTIVE_STAGES + (STORED,) else 0
    if bits > 8:
        raise FormatError(f"header is corrupted (stored sample width {bits})")
    lz_mode = r.u8() if stage == LZ else 0
    if lz_mode not in LZ_MODES:
        raise FormatError(f"header is corrupted (LZ stage mode {lz_mode})")
    return stage, level, bits, lz_mode


def read_header(data: bytes) -> tuple[Header, int]:
    """Parse and check the header; returns it and the payload offset. Checks every length against the
    actual data before anything is allocated from it."""
    if len(data) < 11 or data[:8] != MAGIC:
        if MAGIC.startswith(data[:8]) and len(data) < 11:
            raise FormatError("file is truncated")
        raise FormatError("not a pixzip file (bad magic)")
    version, flags = data[8], data[9]
    if version > VERSION:
        raise FormatError(f"file uses format version {version}; this pixzip reads up to version {VERSION} "
                          "(upgrade pixzip)")
    pre = _reader(data[10:20])
    try:
        body_len = pre.varint()
    except FormatError:
        raise FormatError("file is truncated" if len(data) < 20 else "header is corrupted") from None
    start = 10 + pre.pos
    end = start + body_len
    if body_len > MAX_HEADER or end + 4 > len(data):
        raise FormatError("file is truncated" if body_len <= MAX_HEADER else "header is corrupted")
    (crc,) = struct.unpack("<I", data[end:end + 4])
    if version == 1 and zlib.crc32(data[:end]) != crc:
        raise FormatError("header is corrupted (checksum mismatch)")
    if version >= 2 and zlib.crc32(data[end + 4:], zlib.crc32(data[:end])) != crc:
        raise FormatError("file is corrupted or truncated (checksum mismatch)")
    if version < 1 or flags != 0:
        raise FormatError("header is corrupted (bad version or flags)")
    r = _reader(data[start:end])
    code = r.u8()
    if code not in MODE_NAMES:
        raise FormatError(f"header names an unknown image mode ({code})")
    mode = MODE_NAMES[code]
    depth = r.u8() if version >= 4 else (1 if mode == "1" else 8)
    width, height, tile = r.varint(), r.varint(), r.varint()
    models = [ModelRef(r.take(ID_BYTES[version]).hex(), r.blob().decode("utf-8", "replace")) for _ in range(r.u8())]
    planes, stages = [], []
    for _ in range(PLANES_PER_MODE[mode]):
        planes.append((r.u8(), r.u8()))
        stages.append(_read_stage(r) if version >= 4 else (STATIC, 0, 0, 0))
    h = Header(mode, width, height, tile, models, planes, version=version, depth=depth,
               entropy=[s[0] for s in stages], levels=[s[1] for s in stages], stored_bits=[s[2] for s in stages],
               lz_modes=[s[3] for s in stages])
    if depth == 16:
        try:
            h.splits = [read_split(r) for _ in planes]
        except ValueError:
            raise FormatError("header is corrupted (16-bit split)") from None
    optional = r.u8()
    known = OPT_ICC | OPT_PALETTE | OPT_TRANSPARENCY | (OPT_TRANSFORM if version >= 4 else 0)
    if optional & ~known:
        raise FormatError("header is corrupted (unknown optional fields)")
    if optional & OPT_ICC:
        h.icc = r.blob()
    if optional & OPT_PALETTE:
        h.palette_mode = r.blob().decode("ascii", "replace")
        h.palette = r.blob()
    if optional & OPT_TRANSPARENCY:
        h.transparency = r.blob()
    if optional & OPT_TRANSFORM:
        h.transform = r.blob()
        if not 2 <= len(h.transform) <= MAX_RECORD:
            raise FormatError("header is corrupted (transform record length)")
    _check_depth(h)
    if version >= 4:
        h.metadata = metadata.decode(r, FormatError)
    n_streams = r.varint()
    if not 1 <= n_streams <= len(data):
        raise FormatError("header is corrupted (stream table)")
    offset = end + 4
    if version == 1:
        h.stream_sizes = [4 * r.varint() for _ in range(n_streams)]
        h.pixel_crc, h.payload_crc = r.u32(), r.u32()
    else:
        sizes = [4 * r.varint() for _ in range(n_streams - 1)]
        h.stream_sizes = sizes + [len(data) - offset - sum(sizes)]
        if h.stream_sizes[-1] < 0:
            raise FormatError("header is corrupted (stream sizes)")
        h.pixel_crc = r.u32()
    h.model_bits = float(r.varint())
    if r.pos != len(r.data):
        raise FormatError("header is corrupted (unexpected length)")
    _validate(h)
    if offset + sum(h.stream_sizes) > len(data):
        raise FormatError(f"file is truncated ({len(data)} bytes, the header promises "
                          f"{offset + sum(h.stream_sizes)})")
    if offset + sum(h.stream_sizes) < len(data):
        raise FormatError("unexpected data after the end of the compressed streams")
    return h, offset


def _check_depth(h: Header):
    """v4: the declared depth belongs to the original image: the coded mode's depths, or with a
    transform record any mode's (the record's original mode is checked against it when it is parsed)."""
    if h.version < 4:
        return
    allowed = {d for ds in DEPTHS.values() for d in ds} - {16} if h.transform else DEPTHS[h.mode]
    if h.depth not in allowed:
        raise FormatError(f"header is corrupted (bit depth {h.depth} for mode {h.mode})")


def _validate(h: Header):
    if not (1 <= h.width < 1 << 31 and 1 <= h.height < 1 << 31):
        raise FormatError("header is corrupted (image size)")
    if not h.models or h.tile > 0xFFFF:
        raise FormatError("header is corrupted (plane table)")
    for model_index, channels in h.planes:
        if model_index >= len(h.models) or channels not in (1, 3):
            raise FormatError("header is corrupted (plane table)")
    t = h.tile
    tiles = 1 if t == 0 else -(-h.width // t) * -(-h.height // t)
    # at least one stream per tile and coded plane (a stored plane has one; a multi-scale model adds its
    # small image's tiles; the exact count, which depends on the models, is checked by the caller),
    # before any tile list is built
    least = sum(1 if stage in WHOLE_PLANE else tiles for stage in (h.entropy or [STATIC] * len(h.planes)))
    if least + h.low_streams > len(h.stream_sizes):
        raise FormatError("header is corrupted (stream count)")
    if any(s % 4 for s in h.stream_sizes):
        raise FormatError("header is corrupted (stream sizes)")


def read_streams(data: bytes, h: Header, offset: int) -> list[np.ndarray]:
    """Split and checksum the payload."""
    payload = data[offset:offset + sum(h.stream_sizes)]
    if h.version == 1 and zlib.crc32(payload) != h.payload_crc:      # (version 2: checked with the header)
        raise FormatError("compressed data is corrupted (checksum mismatch)")
    out, pos = [], 0
    for n in h.stream_sizes:
        out.append(np.frombuffer(payload, dtype="<u4", count=n // 4, offset=pos).astype(np.uint32))
        pos += n
    return out


# -- v4 byte-framed streams (entropy stages 1 to 4) -------------------------------------------------------
# The adaptive stage writes bytes, the container stores 4-byte words: a framed stream is a head byte
# (bits 0-1: how many zero bytes pad the end; bit 2: the tile is stored, not coded; bit 3: the tile's
# samples are in its plane's LZ stream of tiles, entropy/lz.py, adaptive stages only; other bits zero),
# the payload, then the padding. The decoder must know the payload's exact end: the adaptive decoder
# checks that it used its bytes exactly.
FRAME_PAD, FRAME_STORED, FRAME_LZ = 3, 4, 8
CODED, STORED_TILE, LZ_TILE = "coded", "stored", "lz"        # what a framed tile holds (unframe_tile)


def frame(payload: bytes, stored: bool = False, lz: bool = False) -> np.ndarray:
    pad = -(1 + len(payload)) % 4
    data = bytes([pad | (FRAME_STORED if stored else 0) | (FRAME_LZ if lz else 0)]) + payload + bytes(pad)
    return np.frombuffer(data, dtype="<u4").astype(np.uint32)


def _unframe(words: np.ndarray, flags: int) -> tuple[bytes, int]:
    data = np.asarray(words, dtype="<u4").tobytes()
    if not data or data[0] & ~(FRAME_PAD | flags) or (data[0] & FRAME_STORED and data[0] & FRAME_LZ):
        raise FormatError("compressed data is corrupted (stream head)")
    pad = data[0] & FRAME_PAD
    if len(data) < 1 + pad or any(data[len(data) - pad:]):
        raise FormatError("compressed data is corrupted (stream padding)")
    return data[1:len(data) - pad], data[0]


def unframe(words: np.ndarray) -> tuple[bytes, bool]:
    """(payload, stored) of a framed stream; FormatError if the head or the padding is wrong (or it has
    the LZ-tile bit, which only an adaptive plane's tiles may have: unframe_tile)."""
    payload, head = _unframe(words, FRAME_STORED)
    return payload, bool(head & FRAME_STORED)


def framed_kind(words: np.ndarray) -> str:
    """What a framed tile's head byte says it holds (CODED, STORED_TILE or LZ_TILE), read without unframing it: the
    encoder's and the header checks' quick look (an empty or damaged stream reads as CODED; unframe_tile refuses
    it when the plane is decoded)."""
    head = int(words[0]) & 0xFF if np.size(words) else 0        # the words are little-endian: the first byte
    return STORED_TILE if head & FRAME_STORED else LZ_TILE if head & FRAME_LZ else CODED


def unframe_tile(words: np.ndarray) -> tuple[bytes, str]:
    """(payload, CODED / STORED_TILE / LZ_TILE) of an adaptive plane's framed tile; FormatError as unframe."""
    payload, head = _unframe(words, FRAME_STORED | FRAME_LZ)
    return payload, STORED_TILE if head & FRAME_STORED else LZ_TILE if head & FRAME_LZ else CODED
