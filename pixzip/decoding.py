"""Decompress whole images: the container's header and streams checked, the planes decoded (batched per model,
stage and tile size across files), the 16-bit low parts joined, the transforms undone and the pixel CRC checked.
`api` re-exports `decompress`, `decompress_many` and `read_header`; the encoder's half is `api.py` (zstd's
compress / decompress split)."""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from . import zoo
from .backends import adaptive_planes, codec
from .entropy import lowbits
from .entropy.value_map import ValueMap
from .errors import PixzipError, TorchMissing
from .formats import container, depth, transforms
from .formats.container import ADAPTIVE_STAGES, ADAPTIVE_VALUES, LZ, STATIC, WHOLE_PLANE, FormatError, Header
from .formats.images import DEFAULT_MAX_PIXELS, ImageData
from .nets.modelfile import LoadedModel


def read_header(data: bytes) -> Header:
    """The header, with the names of installed models filled in where the file leaves them out."""
    header = container.read_header(data)[0]
    for ref in header.models:
        if not ref.name:
            m = zoo.installed_by_id(ref.id)
            ref.name = m.name if m else ""
    return header


@dataclass
class _Parsed:
    """A file whose header, models and streams passed every check, ready to decode."""
    header: Header
    models: list                  # per plane (None for a stored plane: it needs no model)
    streams: list[list]           # per plane, per tile (a stored plane: its one stream)
    low_streams: list             # 16-bit: one per plane with a low part
    record: transforms.TransformRecord


def _record_of(header: Header, max_pixels: int) -> transforms.TransformRecord:
    """The file's transform record, checked against the header and the pixel limit before decoding."""
    if not header.transform:
        return transforms.IDENTITY
    try:
        record = transforms.TransformRecord.from_bytes(header.transform)
    except PixzipError as e:
        raise FormatError(str(e)) from None
    if record.is_identity or record.coded_mode != header.mode:
        raise FormatError("header is corrupted (transform record does not match the image)")
    if header.depth not in container.DEPTHS[record.original_mode] or header.depth == 16:
        raise FormatError(f"header is corrupted (bit depth {header.depth} for mode {record.original_mode})")
    width, height = record.original_size(header.width, header.height)
    if width * height > max_pixels:
        raise PixzipError(f"image is {width}x{height}, over the limit of {max_pixels} pixels")
    return record


def _plane_stream_count(header: Header, p: int, model) -> int:
    if header.entropy[p] in WHOLE_PLANE:
        return 1
    return codec.stream_count(model.record, header.height, header.width, header.tile)


def _parse(data: bytes, extra_models, max_pixels: int | None) -> _Parsed:
    header, offset = container.read_header(data)
    max_pixels = max_pixels or DEFAULT_MAX_PIXELS
    if header.width * header.height > max_pixels:
        raise PixzipError(f"image is {header.width}x{header.height}, over the limit of {max_pixels} pixels")
    record = _record_of(header, max_pixels)
    used = {m for (m, _), stage in zip(header.planes, header.entropy) if stage not in WHOLE_PLANE}
    models = [zoo.find_by_id(r.name, r.id, extra_models) if k in used else None
              for k, r in enumerate(header.models)]
    plane_models = [models[m] for m, _ in header.planes]
    for p, ((_, channels), stage, model) in enumerate(zip(header.planes, header.entropy, plane_models)):
        if model is None:                   # (a whole-plane stage: stored or LZ)
            continue
        if model.channels != channels or (model.record.cfg.levels != 256 and header.mode != "1"):
            raise FormatError("header is corrupted (model and plane disagree)")
        if stage in ADAPTIVE_STAGES and adaptive_planes.adaptive_refusal(model.record):
            raise FormatError("header is corrupted (the adaptive stage with a model it cannot take)")
        try:
            codec.check_tile(model.record, header.tile)
        except ValueError:
            raise FormatError("header is corrupted (tile size)") from None
        if stage == ADAPTIVE_VALUES and record.value_tables(p, channels) is None:
            raise FormatError("header is corrupted (entropy stage 4 without its levels or palette transform)")
    counts = [_plane_stream_count(header, p, m) for p, m in enumerate(plane_models)]
    if sum(counts) + header.low_streams != len(header.stream_sizes):
        raise FormatError("header is corrupted (stream count)")
    _check_stream_floors(header, plane_models)
    streams = container.read_streams(data, header, offset)
    _check_adaptive_floors(header, plane_models, streams, record)
    starts = np.cumsum([0] + counts)
    return _Parsed(header, plane_models, [streams[a:b] for a, b in zip(starts[:-1], starts[1:])],
                   streams[starts[-1]:], record)


_TOO_SHORT = "compressed data is corrupted (a stream is too short for its tile)"


def _check_stream_floors(header: Header, plane_models: list):
    """A static stream shorter than its tile's symbols could possibly code to is corrupt: refusing it
    before decoding keeps work and memory proportional to the file's real size. (Stored streams are
    checked for their exact length; adaptive ones after the payload is split: _check_adaptive_floors.)"""
    sizes = iter(header.stream_sizes)
    for (_, channels), stage, model in zip(header.planes, header.entropy, plane_models):
        if stage in WHOLE_PLANE:
            next(sizes)
            continue
        net = model.record
        floor = 0.9 * net.min_bits_per_symbol() if stage == STATIC else 0.0
        for h, w in codec.stream_shapes(net, header.height, header.width, header.tile):
            if 8 * next(sizes) + 64 < h * w * channels * floor:
                raise FormatError(_TOO_SHORT)


def _check_adaptive_floors(header: Header, plane_models: list, streams: list, record):
    """The same for the adaptive stage's coded tiles: every sub-pixel that can take more than one value codes
    its zero flag at a probability of at most 4095/4096, so a tile of n such sub-pixels takes at least
    n * log2(4096/4095) bits (a stored tile has no network work and is checked for its exact length, LZ tiles
    as a whole). In entropy stage 4 a channel of one value (a palette of one colour) codes nothing."""
    floor = 0.9 * adaptive_planes.ADAPTIVE_MIN_BITS
    at = 0
    for p, ((_, channels), stage, model) in enumerate(zip(header.planes, header.entropy, plane_models)):
        shapes = [(1, 1)] if stage in WHOLE_PLANE else codec.stream_shapes(model.record, header.height, header.width,
                                                                      header.tile)
        if stage == ADAPTIVE_VALUES:
            channels = sum(len(values) > 1 for values in record.value_tables(p, channels))
        for h, w in shapes:
            words = streams[at]
            at += 1
            coded = container.framed_kind(words) == container.CODED
            if stage in ADAPTIVE_STAGES and coded and 32 * words.size + 64 < h * w * channels * floor:
                raise FormatError(_TOO_SHORT)


def decompress(data: bytes, extra_models: Sequence[LoadedModel] = (), max_pixels: int | None = None,
               progress: Callable[[int], None] | None = None, workers: int = 0,
               device=None) -> tuple[ImageData, Header]:
    """Decode a .pxz file; `workers` as for compress (threads, or processes for large images on the torch
    path; 0: every core), `device` ("cuda") runs the network on a GPU."""
    result = decompress_many([data], extra_models, max_pixels, progress, workers, device)[0]
    if isinstance(result, PixzipError):
        raise result
    return result


def decompress_many(datas: Sequence[bytes], extra_models: Sequence[LoadedModel] = (),
                    max_pixels: int | None = None, progress: Callable[[int], None] | None = None,
                    workers: int = 0, device=None) -> list:
    """Decode several files, the tiles of all planes that share a model and tile size on shared canvases.

    Returns, per file, (ImageData, Header) or the PixzipError that file raised: one bad file never
    spoils the others (a batch that fails to decode is retried file by file to find the culprit)."""
    results: list = [None] * len(datas)
    workers = workers or codec.coding_threads()
    parsed: dict[int, _Parsed] = {}
    for i, data in enumerate(datas):
        try:
            parsed[i] = _parse(data, extra_models, max_pixels)
        except PixzipError as e:
            results[i] = e
    groups: dict[tuple, list] = {}           # (model id, tile, coder, level) -> [(file, plane)]
    planes: dict[tuple, object] = {}
    for i, f in parsed.items():
        for p, m in enumerate(f.models):
            if f.header.entropy[p] in WHOLE_PLANE:
                planes[(i, p)] = _whole_plane(f, p)
                continue
            coder = "adaptive" if f.header.entropy[p] in ADAPTIVE_STAGES else container.CODERS[f.header.version]
            groups.setdefault((m.id, f.header.tile, coder, f.header.levels[p]), []).append((i, p))
    for (_, tile, coder, level), members in groups.items():
        model = parsed[members[0][0]].models[members[0][1]]
        try:
            codec.coding_device(model.record, device)
        except ValueError as e:
            raise PixzipError(f"model {model.name!r}: {e}") from None
        except TorchMissing as e:         # --device cuda, or a GPU asked of a model that needs torch
            raise TorchMissing(f"model {model.name!r}: {e}") from None
        try:
            decoded = _decode_group(parsed, members, tile, coder, level, progress, workers, device)
        except TorchMissing as e:         # this group's files need torch: each says so, the others decode
            decoded = [TorchMissing(f"model {model.name!r}: {e}")] * len(members)
        except FormatError:
            if len({i for i, _ in members}) == 1:
                decoded = [FormatError("compressed data is corrupted (undecodable stream)")] * len(members)
            else:
                decoded = []
                for i, p in members:
                    try:
                        decoded += _decode_group(parsed, [(i, p)], tile, coder, level, progress, workers, device)
                    except FormatError as e:
                        decoded.append(e)
        planes.update(zip(members, decoded))
    for i, f in parsed.items():
        h = f.header
        got = [planes[(i, p)] for p in range(len(h.planes))]
        bad = next((g for g in got if isinstance(g, PixzipError)), None)
        if bad is not None:
            results[i] = bad
            continue
        try:
            got = _join_low_parts(h, got, f.low_streams)
        except ValueError:
            results[i] = FormatError("compressed data is corrupted (undecodable low-byte stream)")
            continue
        try:
            image = _original(h, got, f.record, max_pixels or DEFAULT_MAX_PIXELS)
        except PixzipError as e:
            results[i] = FormatError(f"decoded pixels do not fit the transform record: {e}")
            continue
        if zlib.crc32(image.pixel_bytes()) != h.pixel_crc:
            results[i] = FormatError("decoded pixels fail the checksum: the file is corrupted")
        else:
            results[i] = (image, h)
    return results


def _whole_plane(f: _Parsed, p: int):
    """A stored or LZ-coded plane's samples, or the FormatError its stream raises."""
    h = f.header
    shape = (h.height, h.width, h.planes[p][1])
    try:
        if h.entropy[p] == LZ:
            return codec.lz_plane(f.streams[p][0], shape, h.lz_modes[p])
        return codec.stored_plane(f.streams[p][0], shape, h.stored_bits[p])
    except (ValueError, FormatError):
        return FormatError(f"compressed data is corrupted ({'LZ' if h.entropy[p] == LZ else 'stored'} plane)")


def _original(h: Header, planes: list, record: transforms.TransformRecord, max_pixels: int) -> ImageData:
    """The decoded image, through the transform record's inverse where there is one."""
    if record.is_identity:
        return ImageData(h.mode, h.width, h.height, planes, icc=h.icc, palette_mode=h.palette_mode,
                         palette=h.palette, transparency=h.transparency, depth=h.depth, metadata=list(h.metadata))
    coded = ImageData(h.mode, h.width, h.height, planes, icc=h.icc, palette_mode=h.palette_mode,
                      palette=h.palette, transparency=h.transparency)
    image = record.inverse(coded, max_pixels)
    image.depth, image.metadata, image.icc = h.depth, list(h.metadata), h.icc
    return image


def _join_low_parts(h: Header, highs: list, low_streams: list) -> list:
    """16-bit files: each decoded high plane joined with its low part (ValueError if corrupt)."""
    if h.depth != 16:
        return highs
    streams = iter(low_streams)
    planes = []
    for high, split in zip(highs, h.splits):
        low = lowbits.decode(next(streams), high, split.low_bits) if split.low_bits else None
        planes.append(depth.join(high, low, split))
    return planes


def _decode_group(parsed: dict, members: list, tile: int, coder: str, level: int, progress, workers,
                  device=None) -> list:
    model = parsed[members[0][0]].models[members[0][1]]
    shapes = [(parsed[i].header.height, parsed[i].header.width) for i, _ in members]
    streams = [parsed[i].streams[p] for i, p in members]
    try:
        if coder == "adaptive":
            bits = [parsed[i].header.stored_bits[p] for i, p in members]
            return adaptive_planes.decode_planes_adaptive(model.record, shapes, tile, streams, level, bits, progress, workers,
                                                          [_value_map(parsed[i], p) for i, p in members])
        return codec.decode_planes(model.record, shapes, tile, streams, progress, workers=workers, device=device,
                                   coder=coder)
    except (ValueError, RuntimeError, OverflowError):
        raise FormatError("compressed data is corrupted (undecodable stream)") from None


def _value_map(f: _Parsed, p: int) -> ValueMap | None:
    """A stage-4 plane's ValueMap, from the levels its transform record holds (checked in _parse)."""
    if f.header.entropy[p] != ADAPTIVE_VALUES:
        return None
    return ValueMap.of(f.record.value_tables(p, f.header.planes[p][1]))
