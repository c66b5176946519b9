"""Compress and decompress whole images: planes, models, container. The CLI's only entry point. This module
is the encoder's half; the decoder's (`decompress`, `decompress_many`, `read_header`) is `decoding.py`,
re-exported here.

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
from .formats.container import ADAPTIVE_STAGES, ADAPTIVE_VALUES, LZ, STATIC, STORED, Header, ModelRef
from .formats import metadata, stored, transforms
from .efforts import DEFAULT_EFFORT, EFFORTS, Effort
from .errors import PixzipError, TorchMissing
from .formats.images import ImageData
from .nets.modelfile import LoadedModel
from .plane_options import auto_tiles, coded_pixels, few_bits, page_of_text, plane_options, retry_options
from .decoding import decompress, decompress_many, read_header      # the API's decoding half

__all__ = ["DEFAULT_TILE", "EFFORTS", "Stats", "choose_models", "compress", "compress_many", "decompress",
           "decompress_many", "effort_plan", "read_header", "sample"]

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


def compress(image: ImageData, models: Sequence[LoadedModel] = (), tile: int | None = None,
             progress: Callable[[int], None] | None = None, workers: int = 0, device=None,
             version: int = container.VERSION, effort: int = DEFAULT_EFFORT) -> tuple[bytes, Stats]:
    """Code an image; `models` are preferred over the defaults for planes of their channel count, and
    `effort` (1..9, EFFORTS) picks the models, the entropy stage and how transforms are chosen. `tile`: the
    tile size in pixels (0: the whole image); None: plane_options.auto_tiles' choice for the coded image.
    `workers`: tiles are coded in that many threads (native coder) or, for large images on the torch
    path, processes (0: every core this process may use); `device` ("cuda") runs the network on a GPU.
    Neither changes a byte. `version`: the format written (4; 3 for pixzip 0.3
    readers and 2 for 0.2's, which hold neither 16-bit images, metadata, transforms nor the adaptive
    stage). A 16-bit image's planes are split (entropy/lowbits.py): the models code their top
    significant byte, the low bits follow in streams of their own."""
    return compress_many([image], models, tile, progress, workers, device, version, effort)[0]


def compress_many(images: Sequence[ImageData], models: Sequence[LoadedModel] = (), tile: int | None = None,
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
    default_tile = plan.tile or DEFAULT_TILE
    chosen = [_transformed(im, plan, models, default_tile if tile is None else tile, workers, device, version)
              for im in images]
    kinds = [page_of_text(coded, plan) for coded, _ in chosen]
    tiles = [auto_tiles(kind, default_tile) if tile is None else (tile,) for kind in kinds]
    plans = [_plan_for(plan, kind) for kind in kinds]
    results: list[dict] = [{} for _ in images]
    for t, p in dict.fromkeys((t, p) for ts, p in zip(tiles, plans) for t in ts):    # one batch per size and plan
        which = [i for i, (ts, q) in enumerate(zip(tiles, plans)) if t in ts and q == p]
        coded = _code_images([chosen[i][0] for i in which], [chosen[i][1] for i in which],
                             [images[i] for i in which], models, t, progress, workers, device, version, p)
        for i, result in zip(which, coded):
            results[i][t] = result
    # per image the smallest file (ties: its first size), whatever the batch
    return [min((results[i][t] for t in ts), key=lambda r: len(r[0])) for i, ts in enumerate(tiles)]


def _plan_for(plan: Effort, kind: str) -> Effort:
    """The plan for an image of page_of_text's `kind`: the effort's match level only for a page whose neighbourhoods
    recur; on any page of text no one-tile level (levels 7 and 8 are for small images the network knows: on the
    pages of bench/two_values.py and synthetic_kinds.py's text screen they took no plane, for a stage pass each)."""
    return replace(plan, match_level=plan.match_level if kind == "repeats" else 0,
                   one_tile_level=0 if kind else plan.one_tile_level)


def _transformed(image: ImageData, plan: Effort, models, tile: int, workers: int, device,
                 version: int) -> tuple[ImageData, transforms.TransformRecord]:
    """The image to code and its transform record (identity where the plan takes none, where the image is
    16-bit: no step takes those, or bilevel with a bilevel model given: that model codes its samples)."""
    bilevel_model = image.mode == "1" and any(m.record.cfg.levels != 256 for m in models)
    if plan.transforms == "none" or image.depth == 16 or bilevel_model:
        return image, transforms.IDENTITY
    # (each candidate's planes meet the LZ stage's probe, and none tries the few-bits levels: only the chosen image's
    # planes are searched in full and tried at those. The estimate levels trial-code only where the estimate's best
    # lists pixels (choose.py), with their own stage and a quick LZ search: the static stage misranked a chart's
    # near-palette and plain candidates, 29 981 bytes where the plain one takes 25 777)
    bare = replace(plan, transforms="none", max_trials=None, lz_probe=True, few_bits_levels=(), flat_level=0,
                   two_values_level=0, match_level=0, background_level=0)
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
                                     im.mode == "P" or chains[i].holds_symbols(p),
                                     im.mode == "P" or chains[i].holds_palette(p))
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
