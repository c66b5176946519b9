"""The adaptive stage's effort levels (part of its specification, entropy/adaptive.py): what each level computes
(contexts, mixers, APMs, predictors, chains), the tables' sizes, and the priors a level's fresh state starts from.
A file names its level; the Python table is the only definition (backends/native.py packs it for the C stage)."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .adaptive_features import (
    F_ACT, F_BRIGHT, F_CH, F_DAVG, F_DCN, F_DCW, F_DN, F_DNE, F_DNEX, F_DNN, F_DNNE, F_DNW, F_DNWX, F_DNX, F_DPLANE,
    F_DW, F_DWNE, F_DWW, F_DWX, F_FRAC, F_GRAD, F_IDX, F_IDX2, F_IDX8, F_LMS, F_OLS, F_OLSU, F_QR1, F_QR1U, F_QR2,
    F_QRN, F_QRNE, F_QRNN, F_QRNP, F_QRNW, F_QRW, F_QRWP, F_QRWW, F_R1, F_RN, F_RW, F_VN, F_VNE, F_VNN, F_VNW, F_VNWNE,
    F_MHIT, F_MX, F_T1, F_T2, F_T3, F_VOTE, F_VP, F_VW, F_VWN, F_VWW, F_VX, F_ZERO)
from .adaptive_priors import load_prior

# ---- effort levels -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Level:
    """What one effort level of the stage computes. Part of the format: a file names its level."""
    contexts: tuple[tuple[int, ...], ...]    # each context: the features it hashes (1 to 4)
    mixers: tuple[int, ...]                  # each mixer: the feature selecting its weight set (x node)
    apms: tuple[int, ...]                    # each APM: the feature selecting its table (x node)
    max_table_bits: int                      # blocks per context table at most 2^bits
    counter_limit: int                       # counters adapt at 1/(n + 1.5) down to 1/(limit + 1.5)
    mixer_rate: int                          # error multiplier of the mixers' training
    final_rate: int                          # ... of the final mixer
    mixer_init: int                          # initial weight of every context input (16.16)
    net_init: int                            # initial weight of the network's own probability (16.16)
    apm_rate: int                            # APM entries move by 1/2^rate of their error
    lms: int = 0                             # the residual predictor's step 2^-lms (0: none, F_LMS is 0)
    vote: int = 0                            # the exact-predictor vote's threshold (0: none, F_VOTE is 0)
    ols: bool = False                        # the least-squares predictor (F_OLS; without it F_OLS is 0)
    shifted: bool = False                    # with ols: the network's table moved to p + its prediction, one
    #                                            more mixer input (table_starts); net_init split between the two
    classical: bool = False                  # the network's (mu16, idx) replaced by a median predictor's and
    #                                            the local activity's (adaptive_features.classical_outputs)
    template: bool = False                   # F_T1..F_T3, the neighbours not 0 in TEMPLATES (else 0): planes of
    #                                            two values (level 14)
    match: bool = False                      # the match model: F_MX, F_MHIT (else 0; adaptive_features.match_index)
    match_centre: bool = False               # with match: its value, where it has one, is the binarisation's centre
    #                                            (mu16, at scale MATCH_CENTRE_IDX) in the network's place (level 16)
    bitwise: bool = False                    # x's own bits are the decisions, most significant first, instead of
    #                                            the tree about x - p (adaptive._code_bits): palette index planes
    chained: bool = False                    # a plane's tiles carry the state along `chains` (else each tile
    #                                            starts fresh): the codec's part (backends/adaptive_planes.py)
    priors: tuple[tuple[str, str], ...] = ()  # (network key, priors/FILE): the learned state a fresh one starts
    #                                            from, per network (prior_key); none for other networks
    prior: str = ""                           # the one in use: level_for() resolves it for a network


LEVELS = {
    1: Level(contexts=((F_IDX, F_FRAC), (F_IDX2, F_QRW, F_QRN), (F_QRN, F_QRNW, F_QRNE, F_IDX8),
                       (F_CH, F_QR1, F_QR2, F_IDX8), (F_ACT, F_GRAD, F_CH), (F_DW, F_DN, F_IDX8),
                       (F_DPLANE, F_DNNE, F_IDX8), (F_CH, F_DCW, F_DCN), (F_QRW, F_QRWW, F_QRNN, F_QRN),
                       (F_BRIGHT, F_IDX8, F_CH)),
             mixers=(F_IDX8, F_ACT), apms=(F_IDX2,), max_table_bits=14, counter_limit=255,
             mixer_rate=24, final_rate=10, mixer_init=4000, net_init=65536, apm_rate=7),
    2: Level(contexts=((F_IDX, F_FRAC), (F_IDX2, F_QRW, F_QRN), (F_QRN, F_QRNW, F_QRNE, F_IDX8),
                       (F_CH, F_QR1, F_QR2, F_IDX8), (F_ACT, F_GRAD, F_CH), (F_DW, F_DN, F_IDX8),
                       (F_DPLANE, F_DNNE, F_IDX8), (F_CH, F_DCW, F_DCN), (F_QRW, F_QRWW, F_QRNN, F_QRN),
                       (F_BRIGHT, F_IDX8, F_CH),
                       (F_DNW, F_DNE, F_DAVG), (F_DWNE, F_DNN, F_DWW), (F_RW, F_RN, F_IDX8), (F_R1, F_CH, F_QRWP),
                       (F_QRWP, F_QRNP, F_QR1, F_CH), (F_IDX, F_FRAC, F_QRW, F_QRN), (F_DCW, F_QR1, F_IDX8),
                       (F_ACT, F_IDX2), (F_DW, F_DN, F_DNW, F_DNE), (F_IDX2, F_QR1, F_CH)),
             mixers=(F_IDX8, F_ACT, F_QR1U), apms=(F_IDX2, F_ACT), max_table_bits=15, counter_limit=255,
             mixer_rate=24, final_rate=10, mixer_init=2500, net_init=65536, apm_rate=7),
}
# Levels 3 and 4: levels 1 and 2 with the residual predictor and one context on its prediction (session 13:
# -0.32 % / -0.28 % on CBSD68, -0.6 % / -0.3 % on the kinds, docs/ADAPTIVE.md)
# and priors, per network shape (prior_key; the files are in priors/, made by bench/make_priors.sh)
_PHOTO, _SMALL, _GREY, _MIX = "c3-h48-b4", "c3-h96-b8", "c1-h48-b4", "c3-h48-b4+c3-h96-b8"
_MIX3 = "c3-h48-b4+c3-h96-b8+c3-h96-b8"     # the three-member ensemble (session 30): the levels -e 7..9 run only
# and the neighbours' exact differences to p (-0.05 % on CBSD68, -4.4 % on the kinds: flat colours, gradients)
_EXACT = ((F_DWX, F_CH), (F_DNX, F_CH), (F_DNEX, F_DNWX, F_CH))
LEVELS[3] = replace(LEVELS[1], contexts=LEVELS[1].contexts + ((F_LMS, F_IDX8),) + _EXACT, lms=5,
                    priors=tuple((k, f"level3-{k}.npy") for k in (_PHOTO, _SMALL, _GREY)))
LEVELS[4] = replace(LEVELS[2], contexts=LEVELS[2].contexts + ((F_LMS, F_IDX8),) + _EXACT, lms=5,
                    priors=tuple((k, f"level4-{k}.npy") for k in (_PHOTO, _SMALL, _GREY, _MIX)))
# Levels 5 and 6: levels 3 and 4 with the exact-predictor vote (session 14): which of eight simple predictors
# was exact at the neighbours, and the voted one's difference to p, in two contexts; an APM (level 5) or a
# mixer (level 6) selected by the vote. 17 CBSD68 photos -0.8 %, the kinds' tiles -1.3 % / -1.1 % (docs/ADAPTIVE.md)
_VOTE = ((F_VOTE, F_VX), (F_VX, F_CH))
LEVELS[5] = replace(LEVELS[3], contexts=LEVELS[3].contexts + _VOTE, apms=LEVELS[3].apms + (F_VOTE,), vote=2,
                    priors=tuple((k, f"level5-{k}.npy") for k in (_PHOTO, _SMALL, _GREY)))
LEVELS[6] = replace(LEVELS[4], contexts=LEVELS[4].contexts + _VOTE, mixers=LEVELS[4].mixers + (F_VOTE,), vote=2,
                    priors=tuple((k, f"level6-{k}.npy") for k in (_PHOTO, _SMALL, _GREY, _MIX)))
# Levels 7 and 8: levels 5 and 6 with the least-squares predictor (session 16) in two contexts; level 7 (the default's)
# leaves out the LMS filter and four contexts the predictor makes redundant, for speed (docs/ADAPTIVE.md: 17 CBSD68
# photos -0.74 %, the kinds' tiles -1.0 % against level 5)
_OLS = ((F_OLS, F_IDX8), (F_OLS, F_CH))
_REDUNDANT = {(F_IDX, F_FRAC), (F_QRN, F_QRNW, F_QRNE, F_IDX8), (F_ACT, F_GRAD, F_CH), (F_DPLANE, F_DNNE, F_IDX8),
              (F_LMS, F_IDX8)}
LEVELS[7] = replace(LEVELS[5], contexts=tuple(c for c in LEVELS[5].contexts if c not in _REDUNDANT) + _OLS, lms=0,
                    ols=True, priors=tuple((k, f"level7-{k}.npy") for k in (_PHOTO, _SMALL, _GREY)))
LEVELS[8] = replace(LEVELS[6], contexts=LEVELS[6].contexts + _OLS, ols=True,
                    priors=tuple((k, f"level8-{k}.npy") for k in (_PHOTO, _SMALL, _GREY, _MIX, _MIX3)))
# Levels 9 and 10: levels 7 and 8 with the network's table moved to the least-squares prediction as one more mixer
# input, and the mixer that activity selected selected by that prediction instead (session 17; docs/ADAPTIVE.md: 17
# CBSD68 photos -0.42 % / -0.31 %, the kinds' tiles -0.9 %, no priors), and the state carried along chains of tiles
# (with priors: -0.17 % on the photos, -0.76 % on the kinds)
LEVELS[9] = replace(LEVELS[7], shifted=True, mixers=(F_IDX8, F_OLSU, F_QR1U), chained=True,
                    priors=tuple((k, f"level9-{k}.npy") for k in (_PHOTO, _SMALL, _GREY)))
LEVELS[10] = replace(LEVELS[8], shifted=True, mixers=(F_IDX8, F_OLSU, F_QR1U, F_VOTE), chained=True,
                     priors=tuple((k, f"level10-{k}.npy") for k in (_PHOTO, _SMALL, _GREY, _MIX, _MIX3)))
# Levels 11 and 12: levels 9 and 10 for planes of palette indices and levels' ranks (session 21), where a value
# names a colour: eleven contexts on the neighbours' values themselves, each with p's (the same colours recur
# beside each other: order-1 and order-2 contexts as in paq8px's 8-bit image model), for two of the residual
# contexts that did nothing there. Quantised Urban100 crops -6.4 %, the kinds' palette planes -1 to -9 %,
# photographs +0.1 % (docs/ADAPTIVE.md "Values as contexts"): the efforts take them for such planes only.
_VALUES = ((F_VWN, F_VP, F_CH), (F_VNWNE, F_VP, F_CH), (F_VN, F_VNE, F_VP, F_CH), (F_VW, F_VWW, F_VP, F_CH),
           (F_VN, F_VNN, F_VP, F_CH), (F_VW, F_VP, F_CH), (F_VN, F_VP, F_CH), (F_VP, F_CH), (F_VNW, F_VP, F_CH),
           (F_VNE, F_VP, F_CH), (F_VWN, F_CH))
_NOT_FOR_VALUES = {(F_QRW, F_QRWW, F_QRNN, F_QRN), (F_IDX2, F_QRW, F_QRN)}


def _for_values(level: Level, number: int) -> Level:
    kept = tuple(c for c in level.contexts if c not in _NOT_FOR_VALUES)
    return replace(level, contexts=kept + _VALUES,
                   priors=tuple((k, f"level{number}-{k}.npy") for k, _ in level.priors))


LEVELS[11] = _for_values(LEVELS[9], 11)
LEVELS[12] = _for_values(LEVELS[10], 12)
# Level 13 (session 23): level 12 with the network's outputs replaced by a median predictor's (classical_outputs).
# A photograph-trained network is a poor prior for a radial gradient or a chart's fills, whose neighbours predict
# them better: the efforts from -e 5 try it on planes they code in few bits (plane_options.FEW_BITS;
# docs/ADAPTIVE.md "Planes coded in few bits"). No prior: those were made for networks.
LEVELS[13] = replace(LEVELS[12], classical=True, priors=())
# Level 14 (session 25): level 13's first ten contexts and four on the templates of a bilevel coder
# (adaptive_features.TEMPLATES: 10, 16 and 28 neighbours, each 0 or not). Level 13's contexts see six to nine
# neighbours; a page of text needs more (docs/ADAPTIVE.md "Planes of two values": its other 27 contexts cost 3.6 %
# there). The efforts from -e 4 try it on few-bits planes of two values.
LEVELS[14] = replace(LEVELS[13], template=True,
                     contexts=LEVELS[13].contexts[:10] + ((F_T1,), (F_T1, F_T2), (F_T1, F_T2, F_T3), (F_T1, F_T3)))

# Level 15 (session 26): level 14 with the match model (adaptive_features.MATCH_NEIGHBOURS): the value that last
# followed the same 81 neighbours, against p, in three contexts (with the neighbours' record of the match's
# predictions, with the first template, with both) and selecting a mixer's weights in place of the earlier channel's
# residual (a plane of two values has one channel). A repeated glyph predicts itself after one occurrence, where
# counters need several: the page of text -21 % (docs/ADAPTIVE.md "Planes of two values"). The efforts from -e 4 try
# it where they tried 14.
LEVELS[15] = replace(LEVELS[14], match=True, mixers=(F_IDX8, F_OLSU, F_MX, F_VOTE),
                     contexts=LEVELS[14].contexts + ((F_MX, F_MHIT), (F_MX, F_T1), (F_MX, F_MHIT, F_T1)))
# Level 16 (session 26): level 13 (the median predictor, no network) with the match model, whose value, where it has
# one, is the binarisation's centre in the median's place: text of many grey levels (anti-aliased glyphs jump by up to
# 255 between neighbours, and a decision tree about x - p wastes a match given as a context): the anti-aliased page
# 52 576 -> 12 486 bytes in the stage (docs/ADAPTIVE.md "Planes of two values"). The efforts from -e 4 try it on
# one-channel planes whose neighbourhoods recur (plane_options.informative_repeats).
LEVELS[16] = replace(LEVELS[13], match=True, match_centre=True,
                     contexts=LEVELS[13].contexts + ((F_MX, F_MHIT), (F_MX, F_VW), (F_MX, F_MHIT, F_VWN)))
# Levels 17 and 18 (session 33): levels 9 and 10 (less the two residual contexts levels 11 and 12 leave out) with x's
# own bits as the decisions (bitwise) and twelve contexts on the neighbours' values alone: a palette's index plane,
# its colours by luminance, is no grey photograph: a dithered or quantised image's neighbours are colours near in the
# picture, not values near p, and a tree about x - p spreads what value contexts know over many decisions. Here the
# contexts predict the index's bits directly, without p (with p, as levels 11 and 12 have them: 8 % more); the
# network's probability of each bit is one more input. Their priors (the grey network's only: these levels take
# palette planes) were learned on index planes of quantised training tiles (adaptive_prior --palettes): -0.4 % on
# held-out quantised crops, -1.2 % on 96x96 ones. docs/ADAPTIVE.md "Palette indices bit by bit".
_BIT_VALUES = ((F_ZERO,), (F_VW,), (F_VN,), (F_VNW,), (F_VNE,), (F_VWN,), (F_VW, F_VNW), (F_VN, F_VNE),
               (F_VWN, F_VNE), (F_VWN, F_VNW), (F_VW, F_VWW), (F_VN, F_VNN))


def _bitwise(level: Level, number: int) -> Level:
    kept = tuple(c for c in level.contexts if c not in _NOT_FOR_VALUES)
    return replace(level, contexts=kept + _BIT_VALUES, bitwise=True, priors=((_GREY, f"level{number}-{_GREY}.npy"),))


LEVELS[17] = _bitwise(LEVELS[9], 17)
LEVELS[18] = _bitwise(LEVELS[10], 18)

CHAIN_TILES = 4                   # a chain holds at most this many tiles


def chains(n_tiles: int) -> list[list[int]]:
    """Which of a plane's tiles (raster order) share a state at a level with `chained`, each list in the
    order the state codes them: tile n continues from tile n - K, K = max(2, ceil(n_tiles / CHAIN_TILES)).
    The tile count alone decides (the format, never the thread count): at least two chains keep two threads
    busy (a 481x321 photo's two columns of tiles, a 768x512 one's tiles 0, 2, 4 and 1, 3, 5), and chains of
    at most four tiles keep many threads busy on large images (docs/ADAPTIVE.md "State sharing")."""
    k = max(2, -(-n_tiles // CHAIN_TILES))
    return [list(range(c, n_tiles, k)) for c in range(min(k, n_tiles))]


def table_bits(level: Level, n_subpixels: int) -> int:
    """Blocks per context table (log2) for a state that will code n_subpixels: about one per four
    sub-pixels, between 2^10 and 2^max_table_bits (small images do not clear megabytes)."""
    return max(10, min(level.max_table_bits, n_subpixels.bit_length() - 2))


# ---- priors: learned states a level's fresh state starts from -------------------------------------------------

def prior_key(model) -> str:
    """Which prior a network takes: its shape (channels, width, blocks), an ensemble's members' joined. A
    prior is the starting state of the stage for that network's outputs (their calibration differs from
    network to network: a photo network's prior costs CIFAR images coded by the small-image network
    +0.6 %), and the shape is what both sides know from the model file."""
    members = getattr(model, "members", None) or [model]
    return "+".join(f"c{m.cfg.channels}-h{m.cfg.hidden}-b{m.cfg.blocks}" for m in members)


def level_for(level: int | Level, model) -> Level:
    """Level `level` as the stage runs it for `model`'s outputs: with that network's prior, if the level has
    one for it (a Level passes through as it is)."""
    if isinstance(level, Level):
        return level
    lv = LEVELS[level]
    return replace(lv, prior=dict(lv.priors).get(prior_key(model), ""))


def prior_of(level: Level) -> np.ndarray | None:
    """The level's prior (int32, State.learned's order), or None."""
    return load_prior(level.prior) if level.prior else None
