"""Compress and decompress whole images: planes, models, container. The CLI's only entry point.

Models travel as their numpy records (`LoadedModel.record`) down to `backends.codec`, which builds a torch
network only for a path that needs one: coding with a shipped PixelCNN through the native coder
imports no torch (tests/test_torchless.py)."""

from __future__ import annotations

import zlib
from dataclasses import dataclass, replace
from typing import Callable, Sequence

import numpy as np

from . import zoo
from .backends import adaptive_planes, codec
from .entropy import lowbits
from .entropy.value_map import ValueMap
from .formats import depth
from .formats import container
from .formats.container import (ADAPTIVE_STAGES, ADAPTIVE_VALUES, LZ, STATIC, STORED, WHOLE_PLANE, FormatError,
                                Header, ModelRef)
from .formats import metadata, stored, transforms
from .efforts import DEFAULT_EFFORT, EFFORTS, Effort
from .errors import PixzipError, TorchMissing
from .formats.images import DEFAULT_MAX_PIXELS, ImageData
from .nets.modelfile import LoadedModel
from .plane_options import coded_pixels, few_bits, plane_options, retry_options

# Tiles are coded independently (own streams: decodable in parallel, each losing its context at the
# edges). 256 rather than 128: CBSD68 -0.37 % in bits for ~5 % of the native CPU decoder's speed; the
# torch and GPU decoders step through 766 wavefronts a tile instead of 382 (--tile 128 for them).
DEFAULT_TILE = 256




def effort_plan(effort: int | Effort, version: int) -> Effort:
    """The level's choices, cut down to what the format version holds (v2, v3: static, no transforms).
    An Effort itself passes through (tests re-encode files of adaptive levels no effort writes now)."""
    if isinstance(effort, Effort):
        plan = effort
    elif effort not in EFFORTS:
        raise PixzipError(f"effort must be 1 to {max(EFFORTS)}, not {effort}")
    else:
        plan = EFFORTS[effort]
    if version < 4:
        return Effort(models=plan.models, stage=STATIC)
    return plan


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
    return model.channels == plane.shape[2] and (model.record.cfg.levels == 256 or image.mode == "1")


def choose_models(image: ImageData, preferred: Sequence[LoadedModel], effort: int = 1,
                  original: ImageData | None = None) -> list[LoadedModel]:
    """One model per plane: the first preferred model that fits the plane (a bilevel model first for a
    bilevel image), else the default at this model choice (zoo.EFFORT_MODELS). A preferred model that
    fits no plane is refused, unless it fits the `original` image a transform turned into this one
    (a grey image saved as RGB, coded as grey: `-m` named the colour model for it)."""
    if original is not None and original is not image:
        for m in preferred:
            if not any(_fits(m, image, p) for p in image.planes):
                choose_models(original, [m], effort)        # refuses a model that fits neither image
        preferred = [m for m in preferred if any(_fits(m, image, p) for p in image.planes)]
    chosen = []
    for plane in image.planes:
        c = plane.shape[2]
        fitting = sorted((m for m in preferred if _fits(m, image, plane)), key=lambda m: m.record.cfg.levels)
        chosen.append(fitting[0] if fitting else zoo.default_model(c, image.width * image.height, effort))
    for m in preferred:
        if m not in chosen:
            what = "bilevel (mode 1) images" if m.record.cfg.levels == 2 else f"{m.channels}-channel planes"
            raise PixzipError(f"model {m.name!r} codes {what}; this {image.mode} image has none")
    return chosen


def compress(image: ImageData, models: Sequence[LoadedModel] = (), tile: int = DEFAULT_TILE,
             progress: Callable[[int], None] | None = None, workers: int = 0, device=None,
             version: int = container.VERSION, effort: int = DEFAULT_EFFORT) -> tuple[bytes, Stats]:
    """Code an image; `models` are preferred over the defaults for planes of their channel count, and
    `effort` (1..9, EFFORTS) picks the models, the entropy stage and how transforms are chosen.
    `workers`: tiles are coded in that many threads (native coder) or, for large images on the torch
    path, processes (0: every core this process may use); `device` ("cuda") runs the network on a GPU.
    Neither changes a byte. `version`: the format written (4; 3 for pixzip 0.3
    readers and 2 for 0.2's, which hold neither 16-bit images, metadata, transforms nor the adaptive
    stage). A 16-bit image's planes are split (entropy/lowbits.py): the models code their top
    significant byte, the low bits follow in streams of their own."""
    return compress_many([image], models, tile, progress, workers, device, version, effort)[0]


def compress_many(images: Sequence[ImageData], models: Sequence[LoadedModel] = (), tile: int = DEFAULT_TILE,
                  progress: Callable[[int], None] | None = None, workers: int = 0,
                  device=None, version: int = container.VERSION,
                  effort: int = DEFAULT_EFFORT) -> list[tuple[bytes, Stats]]:
    """Code several images in one batched pass per model (tiles of all of them share the canvases);
    each image's file is byte for byte what it would be alone."""
    if version not in container.WRITABLE:
        raise PixzipError(f"cannot write format version {version} (writable: {container.WRITABLE})")
    plan = effort_plan(effort, version)
    workers = workers or codec.coding_threads()
    for im in images:
        _check_version_holds(im, version)
    chosen = [_transformed(im, plan, models, tile, workers, device, version) for im in images]
    return _code_images([c for c, _ in chosen], [r for _, r in chosen], images, models, tile, progress,
                        workers, device, version, plan)


def _transformed(image: ImageData, plan: Effort, models, tile: int, workers: int, device,
                 version: int) -> tuple[ImageData, transforms.TransformRecord]:
    """The image to code and its transform record (identity where the plan takes none, or where the
    image is 16-bit or bilevel: no step takes those)."""
    if plan.transforms == "none" or image.depth == 16 or image.mode == "1":
        return image, transforms.IDENTITY
    # (each candidate's planes meet the LZ stage's probe, and none tries the few-bits levels: only the chosen image's
    # planes are searched in full and tried at those. The estimate levels trial-code only where the estimate's best
    # lists pixels (choose.py), with their own stage and a quick LZ search: the static stage misranked a chart's
    # near-palette and plain candidates, 29 981 bytes where the plain one takes 25 777)
    bare = replace(plan, transforms="none", max_trials=None, lz_probe=True, few_bits_levels=(), flat_level=0,
                   two_values_level=0)
    if plan.transforms == "estimate":
        bare = replace(bare, lz_hard=False)

    def try_coding(candidate: ImageData, record: transforms.TransformRecord) -> int:
        # (the original only decides which named models may go unused; the record's bytes are added
        # by transforms.candidate_cost, so the trial's file holds none; the record still tells which
        # planes hold levels' ranks, coded in value space)
        return len(_code_images([candidate], [transforms.IDENTITY], [image], models, tile, None,
                                workers, device, version, bare, [record])[0][0])
    return transforms.choose(image, try_coding, plan.max_trials, check_listed=plan.transforms == "estimate",
                             threads=workers or codec.coding_threads())


def _code_images(images: Sequence[ImageData], records: list, originals: Sequence[ImageData], models,
                 tile: int, progress, workers: int, device, version: int, plan: Effort,
                 chains: list | None = None) -> list[tuple[bytes, Stats]]:
    """Code the (transformed) images: every plane with each of its options, batched per model and
    stage; per plane the smallest, or its samples stored where that is smaller still. `records` go into
    the files; `chains` (default: the same) are the images' transform chains, which say which planes hold
    levels' ranks (a trial codes a candidate without its record: transforms.candidate_cost adds it)."""
    chosen = [choose_models(im, models, plan.models, original) for im, original in zip(images, originals)]
    split = [_SplitImage.of(im) for im in images]
    chains = chains or records
    tables = {(i, p): chains[i].value_tables(p, im.planes[p].shape[2])
              for i, im in enumerate(images) for p in range(len(im.planes))}
    options = {(i, p): plane_options(m, im.planes[p], im, plan, models, tables[(i, p)] is not None,
                                     im.mode == "P" or chains[i].holds_symbols(p))
               for i, (im, ms) in enumerate(zip(images, chosen)) for p, m in enumerate(ms)}
    jobs: dict[tuple, tuple[LoadedModel, int, int, list]] = {}        # (model id, stage, level) -> planes
    for key, opts in options.items():
        for m, stage, level in opts:
            jobs.setdefault((m.id, stage, level), (m, stage, level, []))[3].append(key)
    coded: dict[tuple, list] = {key: [] for key in options}
    for m, stage, level, where in jobs.values():
        planes = [split[i].model_planes[p] for i, p in where]
        vmaps = [ValueMap.of(tables[key]) if stage == ADAPTIVE_VALUES else None for key in where]
        trial = (level, plan.one_tile_level) if stage in ADAPTIVE_STAGES and plan.one_tile_level else (level,)
        for key, codings in zip(where, _code_planes(m, stage, trial, planes, tile, progress, workers, device, version,
                                                    vmaps, plan.lz_hard)):
            coded[key] += [_CodedPlane(m, stage, lv, streams, bits) for lv, streams, bits in codings]
    for (i, p), codings in coded.items():
        best, plane = min(codings, key=lambda c: c.size), split[i].model_planes[p]
        # (the mask only where a retry may follow: a 50 MP photograph's would be 50 MB for nothing)
        in_stage = (coded_pixels(best.streams, *plane.shape[:2], tile)
                    if best.stage in ADAPTIVE_STAGES and few_bits(best.size, plane) else None)
        vmap = ValueMap.of(tables[(i, p)]) if best.stage == ADAPTIVE_VALUES else None
        for m, stage, level in retry_options((best.model, best.stage, best.level), best.size, plane, plan, in_stage, vmap):
            again = _code_planes(m, stage, (level,), [plane], tile, None, workers, device, version, [vmap], plan.lz_hard)
            codings += [_CodedPlane(m, stage, *c) for c in again[0]]
    out = []
    for i, im in enumerate(images):
        planes = [_smallest_coding(coded[(i, p)], split[i].model_planes[p], version, plan, workers)
                  for p in range(len(im.planes))]
        out.append(_container(im, records[i], originals[i], planes, split[i], tile, version))
    return out


@dataclass
class _CodedPlane:
    model: LoadedModel
    stage: int
    level: int
    streams: list
    bits: float                     # the ideal code length (static) or the coded bits (reporting only)
    stored_bits: int = 0
    lz_mode: int = 0

    @property
    def size(self) -> int:
        return sum(4 * s.size for s in self.streams)


def _code_planes(m: LoadedModel, stage: int, levels: tuple[int, ...], planes: list, tile: int, progress, workers: int,
                 device, version: int, vmaps: list, lz_hard: bool) -> list:
    """Per plane, its codings [(level, streams, bits)] with one model and stage: at levels[0], and (adaptive)
    a plane of one tile at the other levels too (adaptive_planes.encode_planes_trial; `vmaps`: per plane its
    ValueMap in stage 4, else None; tiles an LZ stream codes smaller go to one, compressed as `lz_hard` says)."""
    try:
        codec.check_tile(m.record, tile)
        codec.coding_device(m.record, device)
    except ValueError as e:
        raise PixzipError(f"model {m.name!r}: {e}") from None
    except TorchMissing as e:
        raise TorchMissing(f"model {m.name!r}: {e}") from None
    try:
        if stage in ADAPTIVE_STAGES:
            return adaptive_planes.encode_planes_trial(m.record, planes, tile, levels, [_stored_bits(p) for p in planes],
                                                       progress, workers, vmaps, lz_hard)
        return [[(levels[0], streams, bits)] for streams, bits in
                codec.encode_planes(m.record, planes, tile, progress, workers=workers, device=device,
                                    coder=container.CODERS[version])]
    except TorchMissing as e:                 # a path that needs torch, which is not installed
        raise TorchMissing(f"model {m.name!r}: {e}") from None


def _stored_bits(plane: np.ndarray) -> int:
    """Bits a stored sample of this plane takes: enough for its largest value."""
    return stored.bits_for_levels(stored.levels_needed(plane))


def _smallest_coding(options: list, plane: np.ndarray, version: int, plan: Effort, workers: int) -> _CodedPlane:
    """The smallest coded option; in format v4 the plane's samples stored instead where strictly smaller
    (uniform noise), so that no image costs more than its raw size and a few header bytes, or
    LZMA2-compressed where that is strictly smaller (screenshots, synthetic ramps: entropy/lz.py)."""
    best = min(options, key=lambda c: c.size)           # ties keep the first: the planned stage
    if version < 4:                                     # (no adaptive stage there: no stored width)
        return best
    bits = _stored_bits(plane)
    best.stored_bits = bits if best.stage in ADAPTIVE_STAGES else 0
    stored = codec.stored_plane_stream(plane, bits)
    if 4 * stored.size < best.size:
        best = _CodedPlane(best.model, STORED, 0, [stored], 32.0 * stored.size, bits)
    # (where the stage handed tiles to an LZ stream the probe's question is answered, and its budget, the
    # smaller coding, would wrongly rule out the whole plane: gradient.png 1 697 bytes that way, 1 150 whole)
    probe = plan.lz_probe and not (best.stage in ADAPTIVE_STAGES and _has_lz_tiles(best.streams))
    coded = codec.lz_plane_stream(plane, best.size, plan.lz_hard, probe, workers)
    if coded is not None:
        mode, words = coded
        best = _CodedPlane(best.model, LZ, 0, [words], 32.0 * words.size, lz_mode=mode)
    return best


def _has_lz_tiles(streams: list) -> bool:
    """Whether an adaptive plane's framed tiles include LZ tiles (container.FRAME_LZ)."""
    return any(container.framed_kind(s) == container.LZ_TILE for s in streams)


def _check_version_holds(image: ImageData, version: int):
    """Refuse rather than drop: before 4 a format holds no 16-bit samples nor metadata (a sub-8-bit PNG's
    declared depth it may drop: the same pixels), and 4 no more metadata than its readers take."""
    metadata.check(image.metadata)
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


def _container(image: ImageData, record, original: ImageData, planes: list[_CodedPlane], split: _SplitImage,
               tile: int, version: int) -> tuple[bytes, Stats]:
    """The file: the coded image's mode, size and planes; the original's depth, profile, metadata and
    pixel CRC; the transform record where there is one."""
    refs: list[LoadedModel] = []
    for c in planes:
        if c.model not in refs:
            refs.append(c.model)
    low_streams = split.low_streams()
    streams = [s for c in planes for s in c.streams] + low_streams
    # the low parts' coded size counts as their ideal length (reporting only)
    model_bits = sum(c.bits for c in planes) + 32 * sum(s.size for s in low_streams)
    depth = original.depth if version >= 4 else (1 if image.mode == "1" else 8)
    header = Header(image.mode, image.width, image.height, tile,
                    [ModelRef(m.id, "" if zoo.is_shipped(m) else m.name) for m in refs],
                    [(refs.index(c.model), p.shape[2]) for p, c in zip(image.planes, planes)],
                    pixel_crc=zlib.crc32(original.pixel_bytes()), model_bits=model_bits, icc=original.icc,
                    palette_mode=image.palette_mode, palette=image.palette, transparency=image.transparency,
                    version=version, depth=depth, splits=list(split.splits),
                    metadata=list(original.metadata), entropy=[c.stage for c in planes],
                    levels=[c.level for c in planes], stored_bits=[c.stored_bits for c in planes],
                    lz_modes=[c.lz_mode for c in planes],
                    transform=b"" if record.is_identity else record.to_bytes())
    data = container.write(header, streams)
    subpixels = original.width * original.height * sum(p.shape[2] for p in original.planes)
    return data, Stats(len(data), subpixels, model_bits)


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
    _check_adaptive_floors(header, plane_models, streams)
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


def _check_adaptive_floors(header: Header, plane_models: list, streams: list):
    """The same for the adaptive stage's coded tiles: every sub-pixel codes its zero flag at a
    probability of at most 4095/4096, so a tile of n sub-pixels takes at least n * log2(4096/4095)
    bits (a stored tile has no network work and is checked for its exact length, LZ tiles as a whole)."""
    floor = 0.9 * adaptive_planes.ADAPTIVE_MIN_BITS
    at = 0
    for (_, channels), stage, model in zip(header.planes, header.entropy, plane_models):
        shapes = [(1, 1)] if stage in WHOLE_PLANE else codec.stream_shapes(model.record, header.height, header.width,
                                                                      header.tile)
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


def sample(model: LoadedModel, height: int, width: int, seed: int = 0, complete=None, rows: int = 0,
           progress: Callable[[int], None] | None = None):
    """Draw an image from the model: the decoder driven by random draws instead of the entropy decoder.
    With `complete` (a plane of the model's channel count), its first `rows` rows are kept and the rest
    is drawn conditioned on them. Returns uint8 (height, width, channels)."""
    import numpy as np
    if hasattr(model.record, "members"):     # only the native coder runs ensembles, and it draws nothing
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
