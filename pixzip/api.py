"""Compress and decompress whole images: planes, models, container. The CLI's only entry point."""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Callable, Sequence

from . import codec, container, zoo
from .container import FormatError, Header, ModelRef
from .errors import PixzipError
from .images import ImageData
from .modelfile import LoadedModel

DEFAULT_TILE = 128


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


def choose_models(image: ImageData, preferred: Sequence[LoadedModel]) -> list[LoadedModel]:
    """One model per plane: the first preferred model with the plane's channel count, else the default."""
    chosen = []
    for plane in image.planes:
        c = plane.shape[2]
        chosen.append(next((m for m in preferred if m.channels == c), None) or zoo.default_model(c))
    for m in preferred:
        if m not in chosen:
            raise PixzipError(f"model {m.name!r} codes {m.channels}-channel planes; this {image.mode} "
                              f"image has none")
    return chosen


def compress(image: ImageData, models: Sequence[LoadedModel] = (), tile: int = DEFAULT_TILE,
             progress: Callable[[int], None] | None = None) -> tuple[bytes, Stats]:
    """Code an image; `models` are preferred over the defaults for planes of their channel count."""
    return compress_many([image], models, tile, progress)[0]


def compress_many(images: Sequence[ImageData], models: Sequence[LoadedModel] = (), tile: int = DEFAULT_TILE,
                  progress: Callable[[int], None] | None = None) -> list[tuple[bytes, Stats]]:
    """Code several images in one batched pass per model (tiles of all of them share the canvases);
    each image's file is byte for byte what it would be alone."""
    chosen = [choose_models(im, models) for im in images]
    jobs: dict[str, tuple[LoadedModel, list]] = {}          # model id -> (model, [(image, plane)])
    for i, (im, ms) in enumerate(zip(images, chosen)):
        for p, m in enumerate(ms):
            jobs.setdefault(m.id, (m, []))[1].append((i, p))
    coded = {}
    for m, where in jobs.values():
        planes = [images[i].planes[p] for i, p in where]
        for key, result in zip(where, codec.encode_planes(m.net, planes, tile, progress)):
            coded[key] = result
    return [_container(im, ms, [coded[(i, p)] for p in range(len(im.planes))], tile)
            for i, (im, ms) in enumerate(zip(images, chosen))]


def _container(image: ImageData, models: list[LoadedModel], coded: list, tile: int) -> tuple[bytes, Stats]:
    refs: list[LoadedModel] = []
    for m in models:
        if m not in refs:
            refs.append(m)
    streams = [s for plane_streams, _ in coded for s in plane_streams]
    model_bits = sum(bits for _, bits in coded)
    header = Header(image.mode, image.width, image.height, tile,
                    [ModelRef(m.id, m.name) for m in refs],
                    [(refs.index(m), p.shape[2]) for p, m in zip(image.planes, models)],
                    pixel_crc=zlib.crc32(image.pixel_bytes()), model_bits=model_bits, icc=image.icc,
                    palette_mode=image.palette_mode, palette=image.palette, transparency=image.transparency)
    data = container.write(header, streams)
    return data, Stats(len(data), header.subpixels, model_bits)


def read_header(data: bytes) -> Header:
    return container.read_header(data)[0]


def decompress(data: bytes, extra_models: list[LoadedModel] = (), max_pixels: int | None = None,
               progress: Callable[[int], None] | None = None, workers: int = 1) -> tuple[ImageData, Header]:
    """Decode a .pxz file; `workers` > 1 decodes groups of tiles in parallel processes."""
    header, offset = container.read_header(data)
    if max_pixels is not None and header.width * header.height > max_pixels:
        raise PixzipError(f"image is {header.width}x{header.height}, over the limit of {max_pixels} pixels")
    models = [zoo.find_by_id(r.name, r.id, extra_models) for r in header.models]
    for model_index, channels in header.planes:
        if models[model_index].channels != channels:
            raise FormatError("header is corrupted (model and plane disagree)")
    grid = codec.tile_grid(header.height, header.width, header.tile)
    per_plane = len(grid)
    if len(header.stream_sizes) != per_plane * len(header.planes):
        raise FormatError("header is corrupted (stream count)")
    # A stream shorter than its tile's symbols could possibly code to is corrupt: refusing it before
    # decoding keeps work and memory proportional to the file's real size.
    for p, (model_index, channels) in enumerate(header.planes):
        floor = 0.9 * models[model_index].net.min_bits_per_symbol()
        for n, (_, _, h, w) in enumerate(grid):
            if 8 * header.stream_sizes[p * per_plane + n] + 64 < h * w * channels * floor:
                raise FormatError("compressed data is corrupted (a stream is too short for its tile)")
    streams = container.read_streams(data, header, offset)
    planes = []
    for p, (model_index, _) in enumerate(header.planes):
        try:
            planes.append(codec.decode_plane(models[model_index].net, header.height, header.width, header.tile,
                                             streams[p * per_plane:(p + 1) * per_plane], progress,
                                             workers=workers))
        except (ValueError, RuntimeError, OverflowError):
            raise FormatError("compressed data is corrupted (undecodable stream)") from None
    image = ImageData(header.mode, header.width, header.height, planes, icc=header.icc,
                      palette_mode=header.palette_mode, palette=header.palette, transparency=header.transparency)
    if zlib.crc32(image.pixel_bytes()) != header.pixel_crc:
        raise FormatError("decoded pixels fail the checksum: the file is corrupted")
    return image, header
