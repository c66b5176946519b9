"""Choosing a chain: the candidate chains worth trying for an image (its exact reductions, then levels,
palette or palette order, each again with repeated rows and columns dropped), and the choice among
them, by trial coding when the caller passes a coder, else by a cheap residual-entropy estimate.

The encoder's side only (the decoder reads the record); numpy only, and the trial coder comes in as a
callable, so nothing here imports the coding path."""

from __future__ import annotations

from typing import Callable

import numpy as np

from ...errors import PixzipError
from ..images import ImageData
from ..threads import each
from .palette import (MAX_EXCEPTIONS, EscapePalette, NearPalette, Palette, PaletteOrder, colour_keys, colours_of_keys,
                      luminance_order, nearest, palette_colours)
from .record import IDENTITY, TransformRecord
from .steps import (MAX_BODY, MAX_PALETTE, MAX_PALETTE_MODE, MAX_TRANSPARENCY, DropConstantPlane, DropRepeats,
                    GreyFromBilevel, GreyFromRGB, Levels, Step, constant_values, derived, is_grey, layout_of, levels_bitmap,
                    repeat_flags, repeats_payload, used_levels)


class _Forwards:
    """Each step's output on each image, computed once per `candidates` call: the chains share their
    first steps (the exact reductions, the repeats), and a palette step's image is needed both for its
    neighbour order and as a candidate. The same outputs as `TransformRecord.forward` (a step's
    forward depends only on its fields and the image); the inputs are held, so an id is not reused."""

    def __init__(self):
        self._outputs: dict[tuple[int, Step], tuple[ImageData, ImageData]] = {}

    def step(self, step: Step, image: ImageData) -> ImageData:
        key = (id(image), step)
        if key not in self._outputs:
            if image.mode != step.mode_before:
                raise PixzipError(f"transform {step.NAME} takes a {step.mode_before} image, not {image.mode}")
            self._outputs[key] = (image, step.forward(image))
        return self._outputs[key][1]

    def known(self, step: Step, image: ImageData, output: ImageData) -> None:
        """`output` is `step.forward(image)`, computed by the caller along with something else."""
        self._outputs[(id(image), step)] = (image, output)

    def chain(self, steps: list[Step], image: ImageData) -> ImageData:
        for step in steps:
            image = self.step(step, image)
        return image


def _exact_reductions(image: ImageData) -> list[Step]:
    """Steps that only remove what the image does not have: a constant plane beside another one, and
    G and B of a grey image; a bilevel image becomes the L image of its samples. Applied to every candidate (they shrink what is coded, and a network
    spends bits on even a perfectly predictable channel)."""
    steps: list[Step] = []
    current = image
    if current.mode == "1":                 # its samples as an L image: the L steps take it
        return [GreyFromBilevel("1")]
    while current.mode in ("LA", "RGBA"):
        # alpha first: with both planes constant, the colour plane stays and grey detection still applies
        dropped = next(((i, v) for i, p in reversed(list(enumerate(current.planes)))
                        if (v := constant_values(p)) is not None), None)
        if dropped is None:
            break
        step = DropConstantPlane(current.mode, dropped[0], dropped[1])
        steps.append(step)
        current = step.forward(current)
    if current.mode in ("RGB", "RGBA") and is_grey(current.planes[0]):
        steps.append(GreyFromRGB(current.mode))
    return steps


def _levels_steps(image: ImageData, shared: bool) -> list[Step]:
    """A Levels step for each plane with a channel under 256 values (`shared`: one table per plane, the
    union of its channels' values)."""
    steps: list[Step] = []
    for i, p in enumerate(image.planes):
        per_channel = [used_levels(p[..., c]) for c in range(p.shape[2])]
        if shared and p.shape[2] > 1:
            union = np.unique(np.concatenate(per_channel))
            if len(union) < 256:
                steps.append(Levels(image.mode, i, True, (levels_bitmap(union),)))
        elif min(len(v) for v in per_channel) < 256:
            steps.append(Levels(image.mode, i, False, tuple(levels_bitmap(v) for v in per_channel)))
    return steps


def _touching(index: np.ndarray, n: int, dense: bool | None = None) -> tuple[list[int], list[int]]:
    """Each colour's touching colours (horizontal + vertical neighbour pairs, either way round, a colour
    never touching itself), most pairs first, ties: the lower index; colour i's are
    `touching[starts[i]:starts[i + 1]]`. Counted in an n x n table when the image has more pairs than
    that, else from the sorted pairs themselves (a small image: no pass over n^2 entries). `dense`
    forces one way (tests: both give the same lists)."""
    codes = [(a.astype(np.int64) * n + b).reshape(-1) for a, b in ((index[:, 1:], index[:, :-1]),
                                                                     (index[1:], index[:-1]))]
    if dense is None:
        dense = 2 * sum(len(c) for c in codes) > n * n
    if dense:
        pairs = np.zeros(n * n, np.int64)
        for c in codes:
            pairs += np.bincount(c, minlength=n * n)
        touch = (pairs.reshape(n, n) + pairs.reshape(n, n).T).reshape(-1)
        touch[::n + 1] = 0
        code = np.flatnonzero(touch)                                       # by row, then column
        count = touch[code]
    else:
        one_way = np.concatenate(codes)
        code, count = np.unique(np.concatenate([one_way, one_way % n * n + one_way // n]), return_counts=True)
        keep = code // n != code % n
        code, count = code[keep], count[keep]
    order = np.argsort(code // n * (int(count.max(initial=0)) + 1) - count, kind="stable")
    return (code[order] % n).tolist(), np.searchsorted(code, np.arange(n + 1) * n).tolist()


def neighbour_order(index: np.ndarray, colours: np.ndarray) -> np.ndarray:
    """A second palette order: a path through the colours that puts colours that touch in the image
    next to each other (charts: a line's anti-aliased shades beside the line colour, whatever their
    luminance). `index` holds 0..n-1 with `colours` (n, k) in that order. From colour 0, append the
    unused colour with the most horizontal + vertical neighbour pairs with the path's end; when none
    touches it, the nearest unused colour; ties: the lowest index. Integer counts: deterministic."""
    n = len(colours)
    touching, starts = _touching(index, n)
    ct = colours.T.astype(np.int64)
    used = np.zeros(n, bool)
    path = [0]
    used[0] = True
    for _ in range(n - 1):
        end = path[-1]
        nxt = next((j for j in touching[starts[end]:starts[end + 1]] if not used[j]), -1)
        if nxt < 0:
            distance = ((ct - ct[:, end, None]) ** 2).sum(axis=0)
            distance[used] = np.iinfo(np.int64).max
            nxt = int(np.argmin(distance))
        path.append(nxt)
        used[nxt] = True
    return np.array(path, np.int64)


def _near_palette_step(image: ImageData, pixels: np.ndarray, keys: np.ndarray, distinct: np.ndarray,
                       counts: np.ndarray) -> Step | None:
    """NearPalette from the 256 most frequent colours (ties: the lower colour), by luminance, when
    the other colours' pixels fit the list. `pixels` (n, k), their `keys`, and the keys' distinct
    values and counts (np.unique) come from the caller, which counted them once."""
    # a listed pixel costs its position and colour in the record, several times what coding it would: past
    # 1/32 of the pixels (and 1 024) the candidate cannot win (a photograph lists 2-16 %), and on a 768x512
    # photograph building and estimating it took 0.1-0.3 s
    if counts.sum() - np.sort(counts)[::-1][:256].sum() > min(MAX_EXCEPTIONS, max(1024, len(pixels) // 32)):
        return None
    # the listed pixels: those whose colour the table lacks (a listed colour is its own nearest)
    table, lacking = _commonest(pixels, keys, distinct, counts, 256)
    listed = np.flatnonzero(lacking)
    return NearPalette(image.mode, table.tobytes(), listed.astype("<u4").tobytes(), pixels[listed].tobytes())


def _escape_palette_steps(image: ImageData, pixels: np.ndarray, keys: np.ndarray, distinct: np.ndarray,
                          counts: np.ndarray) -> list[Step]:
    """EscapePalette from the 255 most frequent colours: where a near-palette is a candidate (the same bound on the
    other colours' pixels), the escape is one too."""
    table, escaped = _commonest(pixels, keys, distinct, counts, 255)
    return [EscapePalette(image.mode, table.tobytes(), pixels[escaped].tobytes())]


def _commonest(pixels: np.ndarray, keys: np.ndarray, distinct: np.ndarray, counts: np.ndarray,
               n: int) -> tuple[np.ndarray, np.ndarray]:
    """The n most frequent colours (ties: the lower colour) by luminance, and per pixel whether they lack its colour."""
    top = np.sort(distinct[np.lexsort((distinct, -counts))[:n]])
    table = colours_of_keys(top, pixels.shape[1])
    return table[luminance_order(table)], top[np.minimum(np.searchsorted(top, keys), len(top) - 1)] != keys


def _index_image(image: ImageData, index: np.ndarray) -> ImageData:
    """A palette step's coded image: the index plane (NearPalette.forward's output)."""
    return derived(image, "L", [index.astype(np.uint8).reshape(image.height, image.width, 1)])


def _palette_steps(image: ImageData, forwards: _Forwards) -> list[Step]:
    """Palette by luminance, and by neighbour order when that differs; past 256 colours, NearPalette (both orders)
    and EscapePalette. The distinct colours are counted once, for all."""
    k = sum(layout_of(image))
    if k < 2:                             # one channel: a palette is exactly Levels
        return []
    pixels = np.concatenate(image.planes, axis=2).reshape(-1, k)
    keys = colour_keys(pixels)
    distinct, counts = np.unique(keys, return_counts=True)
    if len(distinct) > 256:
        near = _near_palette_step(image, pixels, keys, distinct, counts)
        if near is None:
            return []
        # both orders' index planes from one distance search: NearPalette.forward's, without its
        # self-check (the listed pixels are the ones the table lacks, by construction)
        table = near.table()
        index, tied = nearest(pixels, table, ties=True, unique=(distinct, np.searchsorted(distinct, keys)))
        forwards.known(near, image, _index_image(image, index))
        path = neighbour_order(index.reshape(image.height, image.width), table)
        by_neighbours = NearPalette(image.mode, table[path].tobytes(), near.positions, near.exact)
        if by_neighbours == near:
            return [near] + _escape_palette_steps(image, pixels, keys, distinct, counts)
        rank = np.empty(len(path), np.int64)
        rank[path] = np.arange(len(path))
        index = rank[index]                 # the same nearest entry at its new index, unless another
        if tied.any():                      # entry is as near: the lowest in the new order then
            index[tied] = nearest(pixels[tied], table[path])
        forwards.known(by_neighbours, image, _index_image(image, index))
        return [near, by_neighbours] + _escape_palette_steps(image, pixels, keys, distinct, counts)
    colours = colours_of_keys(distinct, k)
    by_luminance = Palette(image.mode, colours[luminance_order(colours)].tobytes())
    table = by_luminance.table()
    path = neighbour_order(forwards.step(by_luminance, image).planes[0][..., 0], table)
    by_neighbours = Palette(image.mode, table[path].tobytes())
    return [by_luminance] + ([by_neighbours] if by_neighbours != by_luminance else [])


def _palette_order_steps(image: ImageData, forwards: _Forwards) -> list[Step]:
    """PaletteOrder by luminance, and by neighbour order when that differs."""
    if len(image.palette) > MAX_PALETTE or len(image.transparency) > MAX_TRANSPARENCY \
            or len(image.palette_mode) > MAX_PALETTE_MODE:
        return []                         # not a palette Pillow writes: left as it is
    used = used_levels(image.planes[0])
    colours = palette_colours(image.palette_mode, image.palette)
    known = used[used < len(colours)]
    # indices past the palette's end (Pillow reads them) sort after the colours, in index order
    ordered = np.concatenate([known[luminance_order(colours[known])] if len(known) else known,
                              used[used >= len(colours)]]).astype(np.uint8)
    by_luminance = PaletteOrder("P", image.palette_mode, image.palette, image.transparency, ordered.tobytes())
    shown = np.zeros((len(ordered), colours.shape[1]), np.uint8)          # past the end: black, for distance
    shown[:len(known)] = colours[ordered[:len(known)]]
    path = neighbour_order(forwards.step(by_luminance, image).planes[0][..., 0], shown)
    by_neighbours = PaletteOrder("P", image.palette_mode, image.palette, image.transparency, ordered[path].tobytes())
    return [by_luminance] + ([by_neighbours] if by_neighbours != by_luminance else [])


def _repeats_step(image: ImageData) -> Step | None:
    """A DropRepeats step if any row or column repeats and its flags fit a record."""
    if image.height < 2 and image.width < 2 or (image.height + image.width) // 8 + 16 > MAX_BODY // 2:
        return None
    keep_rows, keep_columns = repeat_flags(image)
    if keep_rows.all() and keep_columns.all():
        return None
    payload = repeats_payload(keep_rows, keep_columns)
    rows_end = 8 + (image.height + 7) // 8
    return DropRepeats(image.mode, image.height, image.width, payload[8:rows_end], payload[rows_end:])


def _tails(image: ImageData, forwards: _Forwards) -> list[list[Step]]:
    """The chains' last parts for an image after its exact reductions (and any repeats): nothing,
    levels per channel, levels shared, palette or palette order by luminance and by neighbours."""
    tails: list[list[Step]] = [[]]
    if image.mode == "P":
        return tails + [[step] for step in _palette_order_steps(image, forwards)]
    for shared in (False, True):
        extra = _levels_steps(image, shared)
        if extra and extra not in tails:
            tails.append(extra)
    return tails + [[step] for step in _palette_steps(image, forwards)]


def candidates(image: ImageData) -> list[tuple[ImageData, TransformRecord]]:
    """Every chain worth trying, simplest first: the image with its exact reductions, then levels per
    channel, levels shared across channels, palette (RGB/RGBA/LA; NearPalette past 256 colours) or
    palette order (P), each by luminance and by neighbours; each again with repeated rows and columns
    dropped where any repeat (the tails built again on the smaller image: NearPalette lists pixels by
    position, and neighbour counts change)."""
    if image.mode not in ("L", "LA", "RGB", "RGBA", "P", "1"):
        return [(image, IDENTITY)]
    forwards = _Forwards()
    base = [] if image.mode == "P" else _exact_reductions(image)
    reduced = forwards.chain(base, image)
    chains = [base + tail for tail in _tails(reduced, forwards)]
    repeats = _repeats_step(reduced)
    if repeats is not None:
        chains += [base + [repeats] + tail for tail in _tails(forwards.step(repeats, reduced), forwards)]
    return [(forwards.chain(chain, image), TransformRecord(tuple(chain))) for chain in chains]


# -- choosing ----------------------------------------------------------------------------------------------
def med_residuals(x: np.ndarray, small: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """LOCO-I's median edge detector (a cheap stand-in for the network's mean): signed residuals, and
    the local activity |W-NW| + |N-NW| + |N-NE| the network's scale would follow. `small`: x is within
    +-255 (8-bit samples or their differences), so int16 holds every sum (half the memory traffic)."""
    pad = np.empty((x.shape[0] + 1, x.shape[1] + 2), np.int16 if small else np.int32)   # np.pad's "edge", cheaper
    pad[1:, 1:-1] = x
    pad[0, 1:-1] = x[0]
    pad[:, 0] = pad[:, 1]
    pad[:, -1] = pad[:, -2]
    x, w, n, nw, ne = pad[1:, 1:-1], pad[1:, :-2], pad[:-1, 1:-1], pad[:-1, :-2], pad[:-1, 2:]
    # the median of W, N and W + N - NW is W + N - NW clipped to [min(W, N), max(W, N)]
    pred = np.minimum(np.maximum(w + n - nw, np.minimum(w, n)), np.maximum(w, n))
    return x - pred, np.abs(w - nw) + np.abs(n - nw) + np.abs(n - ne)


# floor(log2(a + 1)) capped at 11, for the activities of samples within +-255
_ACTIVITY_BUCKET = np.minimum(np.array([(a + 1).bit_length() - 1 for a in range(2048)]), 11).astype(np.intp)


def _laplace_bits(residuals: np.ndarray, activity: np.ndarray) -> float:
    """Bits of the residuals under a two-sided geometric law fitted per activity bucket. A fitted law,
    not a histogram: like the network's, it spreads mass over the values between the ones that occur,
    so 6-bit levels spaced by 4 cost their ~2 extra bits here too, and ranks 0..63 do not."""
    if activity.dtype == np.int16:                  # 8-bit samples: activity <= 3 * 510, a table is faster
        bucket = _ACTIVITY_BUCKET[activity.reshape(-1)]
    else:
        bucket = np.minimum(np.log2(activity.reshape(-1) + 1).astype(np.int64), 11)
    size = np.bincount(bucket, minlength=12).astype(np.float64)
    total = np.bincount(bucket, weights=np.abs(residuals.reshape(-1)), minlength=12)
    used = size > 0
    m = total[used] / size[used]
    theta = np.clip((np.sqrt(1 + m * m) - 1) / np.maximum(m, 1e-9), 1e-3, 0.999)   # E|r| = 2t/(1-t^2)
    return float(-(size[used] * np.log2((1 - theta) / (1 + theta)) + total[used] * np.log2(theta)).sum())


ESTIMATE_PIXELS = 1 << 20      # beyond this, the estimate looks at evenly spaced bands of rows


def _row_bands(plane: np.ndarray, band: int = 32) -> np.ndarray:
    """Up to ESTIMATE_PIXELS of a plane as evenly spaced bands of whole rows: the estimate only ranks
    candidates, and on a large image a sample ranks them as well as every pixel, in bounded time.
    (A band's first row sees the last row of the band before: a few % of its pixels, in every candidate.)"""
    height, width = plane.shape[:2]
    bands = ESTIMATE_PIXELS // max(1, band * width)
    if height * width <= ESTIMATE_PIXELS or bands < 2:
        return plane
    starts = np.linspace(0, height - band, bands).astype(np.int64)
    return plane[(starts[:, None] + np.arange(band)).reshape(-1)]


def sample_bits(plane: np.ndarray) -> float:
    """The estimate's bits a sample of a one-channel plane (its first channel)."""
    p = _row_bands(plane)
    return _laplace_bits(*med_residuals(p[..., 0], p.dtype.itemsize == 1)) / max(1, p.shape[0] * p.shape[1])


def estimate_bits(image: ImageData) -> float:
    """A cheap stand-in for coding: MED residuals under per-context Laplace laws, per channel; a later
    channel of a plane may instead code its difference from the previous one, as the network
    conditions on it. Only ranks candidates when no trial coder is given."""
    bits = 0.0
    for whole in image.planes:
        p = _row_bands(whole)
        scale = whole.shape[0] / p.shape[0]              # a sample's bits stand for all the rows
        small = p.dtype.itemsize == 1
        for c in range(p.shape[2]):
            alone = _laplace_bits(*med_residuals(p[..., c], small))
            if c:
                alone = min(alone, _laplace_bits(*med_residuals(p[..., c].astype(np.int32) - p[..., c - 1], small)))
            bits += scale * alone
    return bits


def choose(image: ImageData, try_coding: Callable[[ImageData, TransformRecord], "bytes | int"] | None = None,
           max_trials: int | None = None, check_listed: bool = False,
           threads: int = 1) -> tuple[ImageData, TransformRecord]:
    """The candidate with the fewest bytes (coded image + record). `try_coding(candidate, record)` returns the
    coded bytes (or their count), e.g. `lambda im, record: api.compress(im)[0]` (the record says, for one,
    which planes hold levels' ranks); without it a residual-entropy
    estimate ranks them. `max_trials`: trial-code only that many, the best by the estimate (an effort
    knob: each trial is one encode). `check_listed`: the estimate chooses, unless its best lists pixels in its
    record (a near-palette): then its CHECKED_TRIALS best and its best that lists none are trial-coded. Ties keep
    the simpler chain. `threads`: estimates are computed in up to that many threads (the same choice)."""
    options = candidates(image)
    if len(options) == 1:
        return options[0]

    estimated = each(lambda option: candidate_cost(*option), options, threads)      # each candidate's, once
    if check_listed or (try_coding is not None and max_trials is not None and len(options) > max_trials):
        order = np.argsort(estimated, kind="stable")
        if check_listed:
            if try_coding is None or not options[order[0]][1].lists_pixels:
                return options[int(order[0])]
            plain = [i for i in order if not options[i][1].lists_pixels][:1]   # the best that lists none
            kept = sorted(set(order[:CHECKED_TRIALS].tolist()) | set(plain) | _best_escape(options, order))
        else:
            kept = sorted(set(order[:max(1, max_trials)].tolist()) | _best_escape(options, order))
        options, estimated = [options[i] for i in kept], [estimated[i] for i in kept]
    if try_coding is None:
        return options[int(np.argmin(estimated))]
    return options[_trials(options, try_coding, estimated)]


def _best_escape(options: list, order) -> set[int]:
    """The best escape palette by the estimate, which every trial codes too: the estimate misjudges its index plane (the
    escape index, last in the luminance order, makes large MED residuals at every escaped pixel), where the stage
    codes the escapes along with the edges they belong to (the kinds' screenshots: never among the estimate's best two,
    5-19 % smaller by trial)."""
    return set([i for i in order if options[i][1].escapes][:1])


# Trial coding stops once a candidate's file is this small: another could save at most these bytes, for a full
# coding each (a flat 1000x1000 image at -e 9 took 30 s, eight network passes over its planes, for 60 bytes).
ENOUGH_BYTES = 256


def _trials(options: list, try_coding, estimated: list[float]) -> int:
    """Which option trial-codes smallest (ties: the first listed, the simpler chain). They are tried in the
    estimate's order, the likeliest first, until one takes at most ENOUGH_BYTES."""
    best = None
    for i in np.argsort(estimated, kind="stable").tolist():
        cost = candidate_cost(*options[i], try_coding)
        if best is None or (cost, i) < best:
            best = (cost, i)
        if best[0] <= ENOUGH_BYTES:
            break
    return best[1]


# Where the estimate's best lists pixels (NearPalette), this many of its best, and the best that lists none, are
# trial-coded instead: a listed pixel costs its exact bytes in the record (about 3), while the estimate's bits for
# the planes run up to 2.5 times what the coder spends on images it codes well (anti-aliased charts), so the record
# looks cheaper than it is (a chart of 2 000 colours took a near-palette 27 % larger than its plain coding). The
# best that lists none is always among them: it is the alternative the check weighs (with a record packed smaller,
# a chart's three best by the estimate were all near-palettes: 21 778 bytes where its plain repeats take 19 422).
# Photographs take no trial: their 256 commonest colours leave more than MAX_EXCEPTIONS pixels to list (no
# near-palette candidate) or, on small ones, the estimate does not prefer listing them.
CHECKED_TRIALS = 2


def candidate_cost(coded: ImageData, record: TransformRecord,
                   try_coding: Callable[[ImageData, TransformRecord], "bytes | int"] | None = None) -> float:
    """Bytes a candidate costs: its coding (trial or estimate) plus its record (none for the identity)."""
    overhead = 0 if record.is_identity else len(record.to_bytes())
    if try_coding is None:
        return estimate_bits(coded) / 8 + overhead
    result = try_coding(coded, record)
    return (result if isinstance(result, int) else len(result)) + overhead

