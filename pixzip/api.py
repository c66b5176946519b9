"""Compress and decompress whole images: planes, models, container. The CLI's only entry point."""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from . import zoo
from .backends import codec
from .entropy import lowbits
from .formats import depth
from .formats import container
from .formats.container import FormatError, Header, ModelRef
from .errors import PixzipError
from .formats.images import DEFAULT_MAX_PIXELS, ImageData
from .nets.ensemble import IntEnsemble
from .nets.modelfile import LoadedModel

# Tiles are coded independently (own streams: decodable in parallel, each losing its context at the
# edges). 256 rather than 128: CBSD68 -0.37 % in bits for ~5 % of the native CPU decoder's speed; the
# torch and GPU decoders step through 766 wavefronts a tile instead of 382 (--tile 128 for them).
DEFAULT_TILE = 256


@dataclass
class Stats:
    bytes: int
    subpixels: int
    model_bits: float

    @property
    def bits_per_subpixel(self) -> float:
        return 8 * self.bytes / self.subpixels

    @property
    def model_bits_per_subpixel(self) -> float:
        return self.model_bits / self.subpixels


def _fits(model: LoadedModel, image: ImageData, plane) -> bool:
    """A model codes planes of its channel count; a bilevel (2-level) model only bilevel images."""
    return model.channels == plane.shape[2] and (model.net.cfg.levels == 256 or image.mode == "1")


def choose_models(image: ImageData, preferred: Sequence[LoadedModel], effort: int = 1) -> list[LoadedModel]:
    """One model per plane: the first preferred model that fits the plane (a bilevel model first for a
    bilevel image), else the default at this effort level (zoo.EFFORT_MODELS)."""
    chosen = []
    for plane in image.planes:
        c = plane.shape[2]
        fitting = sorted((m for m in preferred if _fits(m, image, plane)), key=lambda m: m.net.cfg.levels)
        chosen.append(fitting[0] if fitting else zoo.default_model(c, image.width * image.height, effort))
    for m in preferred:
        if m not in chosen:
            what = "bilevel (mode 1) images" if m.net.cfg.levels == 2 else f"{m.channels}-channel planes"
            raise PixzipError(f"model {m.name!r} codes {what}; this {image.mode} image has none")
    return chosen


def compress(image: ImageData, models: Sequence[LoadedModel] = (), tile: int = DEFAULT_TILE,
             progress: Callable[[int], None] | None = None, workers: int = 1, device=None,
             version: int = container.VERSION, effort: int = 1) -> tuple[bytes, Stats]:
    """Code an image; `models` are preferred over the defaults for planes of their channel count, and
    `effort` picks the defaults (1: fast; 2: the strongest shipped models, slower). `workers` > 1 codes
    groups of tiles in parallel processes; `device` ("cuda") runs the network on a GPU. Neither changes
    a byte. `version`: the format written (4, a draft; 3 for pixzip 0.3 readers, which refuses 16-bit images
    and metadata; 2 for pixzip 0.2 readers). A 16-bit image's planes are split (pixzip.lowbits): the
    models code their top significant byte, the low bits follow in streams of their own."""
    return compress_many([image], models, tile, progress, workers, device, version, effort)[0]


def compress_many(images: Sequence[ImageData], models: Sequence[LoadedModel] = (), tile: int = DEFAULT_TILE,
                  progress: Callable[[int], None] | None = None, workers: int = 1,
                  device=None, version: int = container.VERSION, effort: int = 1) -> list[tuple[bytes, Stats]]:
    """Code several images in one batched pass per model (tiles of all of them share the canvases);
    each image's file is byte for byte what it would be alone."""
    if version not in container.WRITABLE:
        raise PixzipError(f"cannot write format version {version} (writable: {container.WRITABLE})")
    for im in images:
        _check_version_holds(im, version)
    chosen = [choose_models(im, models, effort) for im in images]
    split = [_SplitImage.of(im) for im in images]
    jobs: dict[str, tuple[LoadedModel, list]] = {}          # model id -> (model, [(image, plane)])
    for i, (im, ms) in enumerate(zip(images, chosen)):
        for p, m in enumerate(ms):
            jobs.setdefault(m.id, (m, []))[1].append((i, p))
    coded = {}
    for m, where in jobs.values():
        try:
            codec.check_tile(m.net, tile)
            codec.coding_device(m.net, device)
        except ValueError as e:
            raise PixzipError(f"model {m.name!r}: {e}") from None
        planes = [split[i].model_planes[p] for i, p in where]
        for key, result in zip(where, codec.encode_planes(m.net, planes, tile, progress, workers=workers,
                                                          device=device, coder=container.CODERS[version])):
            coded[key] = result
    return [_container(im, ms, [coded[(i, p)] for p in range(len(im.planes))], split[i], tile, version)
            for i, (im, ms) in enumerate(zip(images, chosen))]


def _check_version_holds(image: ImageData, version: int):
    """Formats before 4 hold neither 16-bit samples nor metadata: refuse rather than drop them (a
    sub-8-bit PNG's declared depth is a storage detail they may drop: its pixels are the same)."""
    if version >= 4:
        return
    if image.depth == 16 or image.metadata:
        raise PixzipError(f"format version {version} cannot hold "
                          f"{'16-bit samples' if image.depth == 16 else 'metadata'}; use version 4")


@dataclass
class _SplitImage:
    """The planes the models code (a 16-bit plane's top significant byte) and the low parts."""
    model_planes: list
    splits: list                   # depth.Split per plane (16-bit images only)
    lows: list                     # low part or None, per plane

    @classmethod
    def of(cls, image: ImageData) -> "_SplitImage":
        if image.depth != 16:
            return cls(image.planes, [], [])
        splits = [depth.choose_split(p) for p in image.planes]
        parts = [depth.high_and_low(p, s) for p, s in zip(image.planes, splits)]
        return cls([h for h, _ in parts], splits, [low for _, low in parts])

    def low_streams(self) -> list:
        return [lowbits.encode(h, low, s.low_bits)
                for h, low, s in zip(self.model_planes, self.lows, self.splits) if low is not None]


def _container(image: ImageData, models: list[LoadedModel], coded: list, split: _SplitImage, tile: int,
               version: int) -> tuple[bytes, Stats]:
    refs: list[LoadedModel] = []
    for m in models:
        if m not in refs:
            refs.append(m)
    low_streams = split.low_streams()
    streams = [s for plane_streams, _ in coded for s in plane_streams] + low_streams
    # the low parts' coded size counts as their ideal length (reporting only)
    model_bits = sum(bits for _, bits in coded) + 32 * sum(s.size for s in low_streams)
    depth = image.depth if version >= 4 else (1 if image.mode == "1" else 8)
    header = Header(image.mode, image.width, image.height, tile,
                    [ModelRef(m.id, "" if zoo.is_shipped(m) else m.name) for m in refs],
                    [(refs.index(m), p.shape[2]) for p, m in zip(image.planes, models)],
                    pixel_crc=zlib.crc32(image.pixel_bytes()), model_bits=model_bits, icc=image.icc,
                    palette_mode=image.palette_mode, palette=image.palette, transparency=image.transparency,
                    version=version, depth=depth, splits=list(split.splits),
                    metadata=list(image.metadata))
    data = container.write(header, streams)
    return data, Stats(len(data), header.subpixels, model_bits)


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
    models: list[LoadedModel]
    streams: list[list]           # per plane, per tile
    low_streams: list             # 16-bit: one per plane with a low part


def _parse(data: bytes, extra_models, max_pixels: int | None) -> _Parsed:
    header, offset = container.read_header(data)
    max_pixels = max_pixels or DEFAULT_MAX_PIXELS
    if header.width * header.height > max_pixels:
        raise PixzipError(f"image is {header.width}x{header.height}, over the limit of {max_pixels} pixels")
    models = [zoo.find_by_id(r.name, r.id, extra_models) for r in header.models]
    for model_index, channels in header.planes:
        if models[model_index].channels != channels or (models[model_index].net.cfg.levels != 256
                                                         and header.mode != "1"):
            raise FormatError("header is corrupted (model and plane disagree)")
    counts = [codec.stream_count(models[m].net, header.height, header.width, header.tile) for m, _ in header.planes]
    if sum(counts) + header.low_streams != len(header.stream_sizes):
        raise FormatError("header is corrupted (stream count)")
    for m, _ in header.planes:
        try:
            codec.check_tile(models[m].net, header.tile)
        except ValueError:
            raise FormatError("header is corrupted (tile size)") from None
    # A stream shorter than its tile's symbols could possibly code to is corrupt: refusing it before
    # decoding keeps work and memory proportional to the file's real size.
    sizes = iter(header.stream_sizes)
    for model_index, channels in header.planes:
        net = models[model_index].net
        floor = 0.9 * net.min_bits_per_symbol()
        for h, w in codec.stream_shapes(net, header.height, header.width, header.tile):
            if 8 * next(sizes) + 64 < h * w * channels * floor:
                raise FormatError("compressed data is corrupted (a stream is too short for its tile)")
    streams = container.read_streams(data, header, offset)
    starts = np.cumsum([0] + counts)
    return _Parsed(header, [models[m] for m, _ in header.planes],
                   [streams[a:b] for a, b in zip(starts[:-1], starts[1:])], streams[starts[-1]:])


def decompress(data: bytes, extra_models: Sequence[LoadedModel] = (), max_pixels: int | None = None,
               progress: Callable[[int], None] | None = None, workers: int = 1,
               device=None) -> tuple[ImageData, Header]:
    """Decode a .pxz file; `workers` > 1 decodes groups of tiles in parallel processes, `device`
    ("cuda") runs the network on a GPU."""
    result = decompress_many([data], extra_models, max_pixels, progress, workers, device)[0]
    if isinstance(result, PixzipError):
        raise result
    return result


def decompress_many(datas: Sequence[bytes], extra_models: Sequence[LoadedModel] = (),
                    max_pixels: int | None = None, progress: Callable[[int], None] | None = None,
                    workers: int = 1, device=None) -> list:
    """Decode several files, the tiles of all planes that share a model and tile size on shared canvases.

    Returns, per file, (ImageData, Header) or the PixzipError that file raised: one bad file never
    spoils the others (a batch that fails to decode is retried file by file to find the culprit)."""
    results: list = [None] * len(datas)
    parsed: dict[int, _Parsed] = {}
    for i, data in enumerate(datas):
        try:
            parsed[i] = _parse(data, extra_models, max_pixels)
        except PixzipError as e:
            results[i] = e
    groups: dict[tuple, list] = {}                 # (model id, tile, coder) -> [(file, plane)]
    for i, f in parsed.items():
        for p, m in enumerate(f.models):
            groups.setdefault((m.id, f.header.tile, container.CODERS[f.header.version]), []).append((i, p))
    planes: dict[tuple, object] = {}
    for (_, tile, coder), members in groups.items():
        model = parsed[members[0][0]].models[members[0][1]]
        try:
            codec.coding_device(model.net, device)
        except ValueError as e:
            raise PixzipError(f"model {model.name!r}: {e}") from None
        try:
            decoded = _decode_group(parsed, members, tile, coder, progress, workers, device)
        except FormatError:
            if len({i for i, _ in members}) == 1:
                decoded = [FormatError("compressed data is corrupted (undecodable stream)")] * len(members)
            else:
                decoded = []
                for i, p in members:
                    try:
                        decoded += _decode_group(parsed, [(i, p)], tile, coder, progress, workers, device)
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
        image = ImageData(h.mode, h.width, h.height, got, icc=h.icc, palette_mode=h.palette_mode,
                          palette=h.palette, transparency=h.transparency, depth=h.depth,
                          metadata=list(h.metadata))
        if zlib.crc32(image.pixel_bytes()) != h.pixel_crc:
            results[i] = FormatError("decoded pixels fail the checksum: the file is corrupted")
        else:
            results[i] = (image, h)
    return results


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


def _decode_group(parsed: dict, members: list, tile: int, coder: str, progress, workers, device=None) -> list:
    model = parsed[members[0][0]].models[members[0][1]]
    shapes = [(parsed[i].header.height, parsed[i].header.width) for i, _ in members]
    streams = [parsed[i].streams[p] for i, p in members]
    try:
        return codec.decode_planes(model.net, shapes, tile, streams, progress, workers=workers, device=device,
                                   coder=coder)
    except (ValueError, RuntimeError, OverflowError):
        raise FormatError("compressed data is corrupted (undecodable stream)") from None


def sample(model: LoadedModel, height: int, width: int, seed: int = 0, complete=None, rows: int = 0,
           progress: Callable[[int], None] | None = None):
    """Draw an image from the model: the decoder driven by random draws instead of the entropy decoder.
    With `complete` (a plane of the model's channel count), its first `rows` rows are kept and the rest
    is drawn conditioned on them. Returns uint8 (height, width, channels)."""
    import numpy as np
    if isinstance(model.net, IntEnsemble):     # only the native coder runs ensembles, and it draws nothing
        raise PixzipError(f"{model.name} is an ensemble; sample from one of its members instead")
    rng = np.random.default_rng(seed)

    def choose(key, freq, where):
        freq = freq.numpy().astype(np.int64)
        cdf = np.cumsum(freq, axis=1)
        draw = rng.integers(0, cdf[:, -1])
        values = (cdf <= draw[:, None]).sum(axis=1)
        if complete is not None:
            i, j, c = where
            known = i < rows
            values[known] = complete[i[known], j[known], c]
        return values

    return codec.wavefront_decode(model.net, height, width, 0, choose, progress)
