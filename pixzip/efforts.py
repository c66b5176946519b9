"""The effort levels (`-e 1` ... `-e 9`): the only mapping from a level to coding choices. Torch-free, so
the command line can check and describe levels without loading the coder (README, "Effort levels",
has each level's measured rate and speed and the commands that made them)."""

from __future__ import annotations

from dataclasses import dataclass

from .formats.container import ADAPTIVE, STATIC


@dataclass(frozen=True)
class Effort:
    """What one effort level (`-e N`) does: the only mapping from a level to coding choices."""
    models: int                 # the default models (1) or the strongest shipped ones (2: zoo.EFFORT_MODELS)
    stage: int                  # container.STATIC (static rANS lanes) or ADAPTIVE (the adaptive stage)
    level: int = 0              # the adaptive stage's level (entropy.adaptive.LEVELS)
    transforms: str = "none"    # "none", "estimate" (a residual-entropy estimate ranks them) or "trial"
    max_trials: int | None = None   # trial coding: at most this many candidates (the estimate's best)
    static_too: bool = False    # also code each plane with the static stage (and the strongest models,
    #                             which the adaptive stage cannot take: the ensemble) and keep the smaller
    lz_hard: bool = True        # the LZ stage's final compression: xz -9e twice (lc 0, 1), else -9 once
    #                             (4-8x faster, 3-40 % larger where it wins: the fast levels')
    lz_probe: bool = True       # rule the LZ stage out by its fast probe (entropy/lz.py); the trial levels
    #                             search every plane instead (the probe misses some: a radial gradient)
    symbols_level: int = 0      # the adaptive level of planes of palette indices or levels' ranks (0: `level`):
    #                             levels 11 and 12 add contexts on the values, which name colours there
    palette_level: int = 0      # ... of planes of palette indices where they are a quantised photograph's (plane_options.
    #                             photo_palette; 0: symbols_level): levels 17 and 18 code an index's own bits
    few_bits_levels: tuple[int, ...] = ()   # a plane coded in few bits a sample (charts, gradients, but also a
    #                             photograph's smooth sky) is also coded at these adaptive levels, the smallest kept:
    #                             the values as contexts (12) and the classical predictor in the network's place
    #                             (13); each is another pass over the plane (plane_options.FEW_BITS,
    #                             retry_options; docs/ADAPTIVE.md "Planes coded in few bits")
    few_bits_sampled: bool = False  # try a few-bits level only where it codes the plane's busiest window in
    #                             clearly fewer bytes (plane_options.retry_options): cheap enough for the default
    flat_level: int = 0         # a few-bits plane that a few colours nearly fill (a chart) is also coded at this
    #                             level, the smaller kept (plane_options.FLAT_SHARE; -e 5.. try 12 on every such plane)
    two_values_level: int = 0   # a few-bits plane of two values (a page of text, line art) is also coded at this
    #                             level, the smaller kept: 15's contexts on a bilevel coder's templates and its match
    #                             model (plane_options)
    match_level: int = 0        # a one-channel plane of more than two values whose neighbourhoods recur (anti-aliased text)
    #                             is also coded at this level, the smaller kept: 16's match model as the centre
    background_level: int = 0   # a plane most of whose samples lie in a few neighbouring values (a page's paper, noise
    #                             and all: a scan) is also coded at this level, the smaller kept: the values as contexts
    #                             learn the background's own levels, which a prediction from noisy neighbours misses
    #                             (plane_options.BACKGROUND_SHARE)
    grey_background_level: int = 0  # the same for a one-channel plane, where it is not 0: a grey pixel is one sub-pixel
    #                             where a colour one is three, so the default affords the heavier level there
    tile: int = 0               # the tile size where the caller names none (0: api.DEFAULT_TILE, 256: tiles decode in
    #                             parallel); the ensemble's levels (7-9) take 512: a 481x321 photograph in one tile,
    #                             whose network and stage state see all of it (CBSD68 at -e 7's settings -0.17 %); an
    #                             ensemble's wavefronts split between the threads (csrc/adaptive_tiles.c, walk_adaptive), so
    #                             one tile decodes about 1.8x as fast on two (README "Effort levels")
    one_tile_level: int = 0     # a plane of one tile is also coded at this adaptive level, the smaller kept:
    #                             levels 9 and 10's shifted table costs images that the network predicts
    #                             better than their own fit can (CIFAR-10 rows: +0.45 %), levels 7 and 8
    #                             lack it; one tile is cheap to code twice (docs/ADAPTIVE.md)


# README "Effort levels": what each level costs and gains, measured (bench/effort_speed.py). The default
# is the best rate whose encode and decode stay about >= 0.5 MP/s on 2 cores, network included. Levels 3 to 8
# (sessions 13-16's -e 4 and -e 5..9) stay decodable; files name their level.
EFFORTS = {
    1: Effort(models=1, stage=STATIC, lz_hard=False),                        # today's pure-network coding
    2: Effort(models=1, stage=STATIC, transforms="estimate", lz_hard=False),
    3: Effort(models=2, stage=STATIC, transforms="estimate"),                # the ensemble, static
    4: Effort(models=1, stage=ADAPTIVE, level=9, symbols_level=11, palette_level=17, transforms="estimate",
              few_bits_levels=(13,), few_bits_sampled=True, flat_level=11, two_values_level=15, match_level=16,
              background_level=11, grey_background_level=12, one_tile_level=7),
    5: Effort(models=1, stage=ADAPTIVE, level=10, symbols_level=12, palette_level=18, transforms="estimate",
              few_bits_levels=(12, 13), two_values_level=15, match_level=16, background_level=12,
              one_tile_level=8),
    6: Effort(models=1, stage=ADAPTIVE, level=10, symbols_level=12, palette_level=18, transforms="trial", max_trials=2,
              lz_probe=False, few_bits_levels=(12, 13), two_values_level=15, match_level=16, background_level=12,
              one_tile_level=8),
    7: Effort(models=2, stage=ADAPTIVE, level=10, symbols_level=12, palette_level=18, transforms="estimate",
              few_bits_levels=(12, 13), two_values_level=15, match_level=16, background_level=12,
              one_tile_level=8, tile=512),   # the ensemble in the stage
    8: Effort(models=2, stage=ADAPTIVE, level=10, symbols_level=12, palette_level=18, transforms="trial", max_trials=2,
              lz_probe=False, few_bits_levels=(12, 13), two_values_level=15, match_level=16, background_level=12,
              one_tile_level=8, tile=512),
    9: Effort(models=2, stage=ADAPTIVE, level=10, symbols_level=12, palette_level=18, transforms="trial", static_too=True,
              lz_probe=False, few_bits_levels=(12, 13), two_values_level=15, match_level=16, background_level=12,
              one_tile_level=8, tile=512),
}
DEFAULT_EFFORT = 4
STATIC_ONLY = Effort(models=1, stage=STATIC)      # what format versions before 4 can hold (with `models`)
