"""Which codings the encoder tries for one plane (model, entropy stage, level); api codes each and keeps the
smallest. The encoder's policy only: a file names what it chose, and the decoder reads that."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from . import zoo
from .backends import adaptive_planes
from .efforts import Effort
from .entropy.adaptive_features import MATCH_NEIGHBOURS
from .entropy.adaptive_levels import LEVELS
from .entropy.value_map import ValueMap
from .formats.container import ADAPTIVE, ADAPTIVE_VALUES, CODED, STATIC, framed_kind
from .formats.images import ImageData
from .formats.tiles import tile_grid
from .formats.transforms.choose import med_residuals, sample_bits
from .formats.transforms.palette import colour_keys
from .nets.modelfile import LoadedModel


def plane_options(model: LoadedModel, plane: np.ndarray, image: ImageData, plan: Effort,
                  preferred: Sequence[LoadedModel], in_values: bool = False,
                  symbols: bool = False, palette: bool = False) -> list[tuple[LoadedModel, int, int]]:
    """(model, stage, level) candidates for one plane. The adaptive stage takes one PixelCNN: where the
    plane's model is another (an ensemble, an LSTM) it codes with the plane's single-network default (the
    ensemble then competes with the static stage at `static_too`), or, for a model the user named, the
    static stage; so does a model the compiled coder does not run.
    `in_values`: the plane holds levels' ranks, which stage 4 codes with the network reading their values
    (efforts that trial-code transforms try stage 1 too: a few images gain, docs/ADAPTIVE.md).
    `symbols`: the plane holds palette indices or levels' ranks, whose values name colours: the level's
    variant with contexts on the values themselves (`plan.symbols_level`) codes it. `palette`: the plane holds
    palette indices; where they are a quantised photograph's (`photo_palette`), `plan.palette_level` codes them."""
    if plan.stage == STATIC:
        return [(model, STATIC, 0)]
    adaptive_model = model
    if adaptive_planes.adaptive_refusal(model.record) and model not in preferred:
        adaptive_model = zoo.default_model(plane.shape[2], image.width * image.height, 1)
    level = plan.symbols_level if symbols and plan.symbols_level else plan.level
    if palette and plan.palette_level and photo_palette(plane):
        level = plan.palette_level
    options = []
    # the encoder takes the adaptive stage where the compiled coder runs it: the Python reference codes
    # about 1 000 sub-pixels a second (a photo in an hour); it still decodes such files anywhere
    if not adaptive_planes.adaptive_refusal(adaptive_model.record) and adaptive_planes.adaptive_native(adaptive_model.record):
        options.append((adaptive_model, ADAPTIVE_VALUES if in_values else ADAPTIVE, level))
        if in_values and plan.transforms == "trial":
            options.append((adaptive_model, ADAPTIVE, level))
    if plan.static_too or not options:
        options.append((model, STATIC, 0))
    return options


# A plane the stage codes in under this many bits a sample: a chart, a gradient, flat graphics, but also the smooth
# sky of a photograph (the speed runs' Bridge crop, 768x512: 0.62). The efforts from -e 5 also code such a plane at
# their few_bits_levels and keep the smallest: the contexts on the values pay there as on palette indices (level 11
# against 9, no priors: held-out charts -0.5 to -5 %, a radial gradient -15 %), and a median predictor in the
# network's place more where the network, trained on photographs, predicts a gradient worse than its neighbours do
# (docs/ADAPTIVE.md "Planes coded in few bits"). Each is another pass over the plane: the sky's encode took three
# times as long at -e 4 and gained nothing, so the default first codes the plane's busiest SAMPLE_SIDE-pixel window
# at both levels (about 10 ms) and retries only where the other takes at most SAMPLE_GAIN of the bytes there: on the
# charts and gradients that gain 0.38-0.91 of the window's bytes, on seven photographs under FEW_BITS (skies, smooth
# crops of wallpapers, where the whole plane gains nothing) 1.12-1.40 (docs/ADAPTIVE.md).
FEW_BITS = 0.75
SAMPLE_SIDE = 32
SAMPLE_GAIN = 0.95
# A few-bits plane whose FLAT_COLOURS commonest colours cover at least FLAT_SHARE of the pixels the stage coded (a
# chart's fills and lines, anti-aliased past any palette) is also coded at the effort's flat_level (the values as
# contexts, as for palette indices): the held-out charts 0.945-0.996 of their pixels, the gradients 0.006-0.15, the
# seven photographs under FEW_BITS 0.07-0.65; level 11 against 9 there: the charts -3.6 to -5 %, the photographs
# -1 to +0.2 % (docs/ADAPTIVE.md)
FLAT_COLOURS = 16
FLAT_SHARE = 0.9
# A page of text is coded in tiles of TEXT_TILE unless the caller names a size (auto_tiles): bench/two_values.py's
# eight images at -e 4, 60 650 bytes in tiles of 256, 58 087 of 512, 56 328 of 1024 (the page of text 7 983 -> 6 588);
# the anti-aliased page at level 16: 20 807, 14 565, 10 103 (session 26, docs/ADAPTIVE.md "Planes of two values")
TEXT_TILE = 1024
# A one-channel plane of more than two values is also coded at the effort's match_level (16: the match's value as the
# centre) where at least REPEATS_SHARE of its first REPEATS_SAMPLES samples are informative repeats (informative_repeats,
# whatever the plane's rate): measured (session 26) 0.150 on an anti-aliased page of text, 0.199 on a screen of text,
# 0.008-0.017 on the kinds' screenshots' index planes (where 16 gains nothing), under 0.005 on their charts, 0 on
# palette and levels planes and on photographs in grey
REPEATS_SHARE = 0.03
REPEATS_SAMPLES = 1 << 18
# A plane coded in more than FEW_BITS a sample, at least BACKGROUND_SHARE of whose samples lie within BACKGROUND_WIDTH
# neighbouring values (per channel, the densest such window; background_share), is also coded at the effort's
# background_level (the values as contexts), the smaller kept. A page's paper with the scanner's noise on it is such a
# background: a prediction from noisy neighbours leaves their noise in its residuals (level 9 codes uniform noise of
# deviation 1 at 3 % above its entropy), where contexts on the values learn the paper's own levels. Measured (session
# 27, level 11 against 9, chains and priors as in files): text pages with noise 0.54-0.67 of their samples there, -0.8
# to -5.6 % (12 against 11: -0.3 to -4.3 % more); the kinds' framed photographs 0.46, -0.3 %; seven CBSD68 photographs
# 0.10-0.29 (where level 11 costs up to 0.3 %), the kinds' grey photographs 0.07-0.12 (docs/ADAPTIVE.md "Backgrounds")
BACKGROUND_WIDTH = 8
BACKGROUND_SHARE = 0.4
# ... and where that background is noise, not a gradient (background_noise at least BACKGROUND_NOISE): the smooth,
# blurred backdrops of two wallpaper photographs (shares 0.44 and 0.46, noise 0.32 and 0.43) gained nothing from the
# retry, which halved the default's encode speed there; CBSD68's 302008 (0.49, 0.62) gained 0.05 %. The pages 1.46-1.94,
# CBSD68's 167062 (0.41, 1.39; -0.66 %), a scatter chart's white (6.3; -0.5 %)
BACKGROUND_NOISE = 1.0


# A plane of palette indices that the transforms' estimate (MED residuals, choose.sample_bits) puts at PHOTO_PALETTE_BITS a
# sample or more is a quantised photograph's, and is coded at the effort's palette_level (17, 18: the index's own bits
# as the decisions, docs/ADAPTIVE.md "Palette indices bit by bit"). Measured (session 33): 20 quantised Urban100 crops
# (16 to 256 colours, dithered or not, P and RGB; held out) at -e 4 -13.1 % in all, every file smaller (256 colours
# -12 to -26 %, 16 and 32 colours -3.4 to -7.5 %); the kinds' 256-colour palette files (estimate 3.5-6.6) -13 to -21 %.
# Charts and pixel art (estimate 0.02-0.75) keep the values' levels and their retries: a chart's plane at level 11's
# contexts made bitwise lost 9 % there.
PHOTO_PALETTE_BITS = 1.0


def photo_palette(plane: np.ndarray) -> bool:
    """Whether a plane of palette indices is a quantised photograph's rather than a drawing's (PHOTO_PALETTE_BITS)."""
    return plane.shape[2] == 1 and sample_bits(plane) >= PHOTO_PALETTE_BITS


def few_bits(size: int, plane: np.ndarray) -> bool:
    """Whether `size` bytes code the plane in under FEW_BITS a sample (the planes retry_options may retry)."""
    return 8 * size < FEW_BITS * plane.size


def coded_pixels(streams: list, height: int, width: int, tile: int) -> np.ndarray:
    """Which pixels of an adaptive plane the stage coded: those of its tiles (one framed stream each, in raster
    order) that are neither stored nor handed to an LZ stream."""
    mask = np.zeros((height, width), dtype=bool)
    for (y, x, h, w), stream in zip(tile_grid(height, width, tile), streams):
        mask[y:y + h, x:x + w] = framed_kind(stream) == CODED
    return mask


def retry_options(best: tuple[LoadedModel, int, int], size: int, plane: np.ndarray, plan: Effort,
                  coded: np.ndarray | None = None, vmap: ValueMap | None = None) -> list[tuple[LoadedModel, int, int]]:
    """(model, stage, level) to code a plane with too, given its best coding so far (`best`, `size` bytes; `coded`:
    which of its pixels the stage coded (coded_pixels; None: all). The few-bits levels only where that is under
    FEW_BITS a sample and the stage coded some of it: where all is stored or handed to an LZ stream, they have nothing
    to do (`gradient.png`, all of whose tiles one LZ stream takes, where the retries took 1.9 s for nothing), and the
    sample window is taken where it did (a screenshot's text tiles, which an LZ stream takes, are not where level 13
    could pay). The match level wherever a one-channel plane's neighbourhoods recur (informative_repeats): a screen of
    text that the values' level codes in 1.6 bits a sample takes 0.2 at 16. The background level where a plane of more
    bits has a background (background_share: a scanned page's noisy paper). `vmap`: the plane's ValueMap where the
    stage codes it in value space)."""
    model, stage, level = best
    if stage not in (ADAPTIVE, ADAPTIVE_VALUES):
        return []
    repeats = (plan.match_level and plan.match_level != level and plane.shape[2] == 1 and not two_values(plane)
               and informative_repeats(plane) >= REPEATS_SHARE)
    levels = []
    if (coded is None or coded.any()) and few_bits(size, plane):
        levels = [lv for lv in plan.few_bits_levels if lv != level and not (repeats and holds(plan.match_level, lv))]
        if plan.few_bits_sampled and levels:
            sizes = adaptive_planes.sample_sizes(model.record, plane, (level, *levels), SAMPLE_SIDE, vmap, coded)
            levels = [lv for lv, n in zip(levels, sizes[1:]) if n <= SAMPLE_GAIN * sizes[0]]
        if plan.flat_level and plan.flat_level != level and flat_share(plane, coded) >= FLAT_SHARE:
            levels.append(plan.flat_level)
        if plan.two_values_level and plan.two_values_level not in (level, *levels) and two_values(plane):
            levels.append(plan.two_values_level)
    background = plan.background_level
    if plane.shape[2] == 1 and plan.grey_background_level:
        background = plan.grey_background_level
    if (background and level == plan.level and (coded is None or coded.any()) and not few_bits(size, plane)
            and background_share(plane) >= BACKGROUND_SHARE and background_noise(plane) >= BACKGROUND_NOISE):
        levels.append(background)
    if repeats and plan.match_level not in levels:
        levels.append(plan.match_level)
    return [(model, stage, lv) for lv in levels]


def holds(level: int, other: int) -> bool:
    """Whether adaptive `level` is `other` with more: the same predictor in the network's place and `other`'s contexts
    first. Where the match level (16, level 13's and the match's) is tried, level 13 is not: on the anti-aliased page of
    bench/two_values.py it took 1.9-4.2 times 16's bytes, for a pass of its own at each tile size."""
    big, small = LEVELS[level], LEVELS[other]
    return big.classical == small.classical and big.contexts[:len(small.contexts)] == small.contexts


def page_of_text(image, plan: Effort) -> str:
    """What kind of page of text a (coded) image is: "two values" where every plane holds at most two (text, line art,
    a bilevel scan), "repeats" at efforts with a match level for a grey image whose neighbourhoods recur
    (informative_repeats: anti-aliased glyphs), else "". Asked once per image: only a "repeats" image keeps the
    effort's match level (api.compress_many)."""
    planes = image.planes
    if all(two_values(p) for p in planes):
        return "two values"
    grey = len(planes) == 1 and planes[0].shape[2] == 1
    return "repeats" if plan.match_level and grey and informative_repeats(planes[0]) >= REPEATS_SHARE else ""


def auto_tiles(kind: str, default: int) -> tuple[int, ...]:
    """The tile sizes to code an image in when the caller names none, the smaller file kept, by its page_of_text
    kind: `default` (api.DEFAULT_TILE: tiles decode in parallel, chains of them share the stage's state); TEXT_TILE
    alone for two values (contexts of up to 28 neighbours need more samples to learn than chains of 256-pixel tiles
    give each); both for repeats (the match model's table is a chain's, so a glyph must have been seen in the same
    chain; but a screen of text may code smaller in 256-pixel tiles, some handed to an LZ stream:
    bench/synthetic_kinds.py's `text-screen` 6 848 bytes so, 8 189 in one tile). Such planes code several times
    faster than photographs."""
    return {"two values": (TEXT_TILE,), "repeats": (default, TEXT_TILE)}.get(kind, (default,))


def informative_repeats(plane: np.ndarray) -> float:
    """The share of a one-channel plane's samples (raster order; at most REPEATS_SAMPLES' worth of rows) whose match
    model's neighbourhood (adaptive_features.MATCH_NEIGHBOURS) occurred before, followed by the same value, where
    LOCO-I's median predictor does not give it: what level 16's match would tell that level 13 does not know."""
    x = plane[:max(1, REPEATS_SAMPLES // plane.shape[1]), :, 0]
    h, w = x.shape
    pad = np.full((h + 5, w + 16), 256, np.uint32)
    pad[5:, 8:8 + w] = x
    key = np.ones((h, w), np.uint32)
    for di, dj in MATCH_NEIGHBOURS:                    # the stage's hash before its last step, in place
        np.multiply(key, np.uint32(0x9E3779B1), out=key)
        np.add(key, pad[5 + di:5 + di + h, 8 + dj:8 + dj + w], out=key)
        key += np.uint32(1)
    key, flat = key.reshape(-1), x.reshape(-1)
    order = np.argsort(key, kind="stable")             # equal neighbourhoods together, earliest first
    k, v = key[order], flat[order]
    again = np.zeros(flat.size, bool)
    again[order[1:]] = (k[1:] == k[:-1]) & (v[1:] == v[:-1])
    missed = med_residuals(x, small=True)[0].reshape(-1) != 0
    return float(np.count_nonzero(again & missed) / max(flat.size, 1))


def _densest_window(x: np.ndarray) -> tuple[int, int, int]:
    """A channel's (H, W) densest BACKGROUND_WIDTH neighbouring values: (the first of them, its samples there, how
    many values the channel holds)."""
    counts = np.bincount(x.reshape(-1), minlength=256)
    cumulative = np.concatenate([[0], np.cumsum(counts)])
    window = cumulative[BACKGROUND_WIDTH:] - cumulative[:-BACKGROUND_WIDTH]
    first = int(np.argmax(window))
    return first, int(window[first]), int(np.count_nonzero(counts))


def background_share(plane: np.ndarray) -> float:
    """The share of a plane's samples in its densest BACKGROUND_WIDTH neighbouring values, the mean over channels; 0
    where no channel holds more than two values (no noise around a background: levels 14 and 15 take such planes)."""
    windows = [_densest_window(plane[..., c]) for c in range(plane.shape[2])]
    if max(values for _, _, values in windows) <= 2:
        return 0.0
    return float(np.mean([n for _, n, _ in windows])) / max(plane.shape[0] * plane.shape[1], 1)


def background_noise(plane: np.ndarray) -> float:
    """On the samples in each channel's densest window, how far LOCO-I's median predictor misses them against how far
    they spread: the mean |residual| over the mean |value - their median|, each averaged over the channels. Noise on
    paper: 1.5-1.9 (the prediction from noisy neighbours errs more than the values spread); a blurred backdrop's
    gradient: 0.3-0.6."""
    missed, spread = [], []
    for c in range(plane.shape[2]):
        x = plane[..., c]
        first = _densest_window(x)[0]
        there = (x >= first) & (x < first + BACKGROUND_WIDTH)
        values = x[there].astype(np.int64)
        missed.append(np.abs(med_residuals(x, small=True)[0][there]).mean() if values.size else 0.0)
        spread.append(np.abs(values - np.median(values)).mean() if values.size else 0.0)
    return float(np.mean(missed) / max(np.mean(spread), 1e-9))


def two_values(plane: np.ndarray) -> bool:
    """Whether a one-channel plane holds at most two values (a page of text, line art, a bilevel scan)."""
    return plane.shape[2] == 1 and np.count_nonzero(np.bincount(plane.reshape(-1), minlength=2)) <= 2


def flat_share(plane: np.ndarray, where: np.ndarray | None = None) -> float:
    """The share of the pixels (of those `where` holds; every other row and column: a sample) that the plane's
    FLAT_COLOURS commonest colours take."""
    pixels = plane[::2, ::2]
    colour = colour_keys(pixels.reshape(-1, plane.shape[2]))
    if where is not None:
        colour = colour[where[::2, ::2].reshape(-1)]
    if not colour.size:
        return 0.0
    counts = np.sort(np.unique(colour, return_counts=True)[1])
    return float(counts[-FLAT_COLOURS:].sum() / colour.size)
