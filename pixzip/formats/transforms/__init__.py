"""Exact, reversible transforms that turn an image into one the network codes for what it is.

A fixed network codes every plane as it comes, so an image that is really grey, really a palette or
really 6-bit pays for information it does not have (G and B of a grey image, 256 levels where 64
occur). The encoder applies a short chain of *steps*; the image it codes is the last step's output, the
chain travels in the file as a `TransformRecord`, and the decoder applies the inverses in reverse order.

Steps (each exact for every input; each inverse checks what it is given and raises PixzipError):
    DropConstantPlane  a plane whose every channel holds one value (all-255 alpha) is not coded
    GreyFromRGB        an RGB plane with R == G == B everywhere becomes one grey channel
    GreyFromBilevel    a bilevel ("1") image becomes the L image of its samples (0 and 255), which the
                       L steps then take (repeats, levels to ranks 0 and 1)
    Levels             a plane whose channels use n < 256 values is coded as each value's rank in
                       the sorted set: monotone, so edges and gradients survive, but the range the
                       network's Laplace spreads over shrinks (6-bit grey: 0..63 instead of 0..252)
    Palette            an image of <= 256 distinct colours becomes one index plane, colours sorted by
                       luminance so that the index plane looks like a grey image, or along a path of
                       colours that touch in the image (charts: a line beside its anti-aliasing)
    NearPalette        past 256 colours: the 256 most frequent, every pixel coded as its nearest, and
                       the pixels of the other colours listed exactly in the record (screenshots)
    EscapePalette      past 256 colours: the 255 most frequent and an escape index, the escaped pixels'
                       colours in the record in raster order (their places are in the index plane)
    PaletteOrder       a P-mode image: its used indices re-ranked by their colour's luminance, the
                       palette, transparency and index numbering kept for the exact P image back
    DropRepeats        rows equal to the row above and columns equal to the column before are not
                       coded (pixel art scaled up, flat bands of charts); the image gets smaller

`choose(image, try_coding)` builds the candidate chains and keeps the cheapest: by trial coding when
the caller passes a coder, else by a cheap residual-entropy estimate.

The modules: `steps.py` (the base, the layout and level steps, the checks they share), `palette.py`
(the palette steps and their colour helpers), `record.py` (`TransformRecord`: the chain as bytes),
`choose.py` (the candidates and the choice; the encoder's side only). The stored (raw) fallback's bit
packing is `formats/stored.py`.

How the coder uses it (api.compress / decompress, the container):
    encode:  coded, record = choose(image, try_coding)    # try_coding(im, record) -> bytes or their count, or None
             the container codes `coded` (its mode, width, height, planes) and stores, beside the header,
             record.to_bytes() when not record.is_identity (an empty field = identity), and the CRC of the
             ORIGINAL image's pixel_bytes() (so a bad record is caught like bad pixels)
    decode:  record = TransformRecord.from_bytes(field)   # PixzipError if corrupt
             check record.coded_mode == header mode and record.original_size(w, h) against max_pixels
             before decoding; image = record.inverse(decoded, max_pixels); then the CRC
The ICC profile stays in the container (every step keeps it); a P image's palette and transparency
travel in the record once PaletteOrder has turned it into an L image.

numpy only: the decoder needs this without torch.
"""

from .choose import candidate_cost, candidates, choose, estimate_bits, neighbour_order
from .palette import MAX_EXCEPTIONS, EscapePalette, NearPalette, Palette, PaletteOrder, distinct_colours
from .record import IDENTITY, MAX_STEPS, RECORD_FORMAT, STEP_KINDS, TransformRecord
from .steps import (LAYOUTS, MAX_BODY, MODE_CODES, DropConstantPlane, DropRepeats, GreyFromBilevel, GreyFromRGB,
                    Levels, Step, constant_values, is_grey, repeat_flags, used_levels)

__all__ = ["IDENTITY", "LAYOUTS", "MAX_BODY", "MAX_EXCEPTIONS", "MAX_STEPS", "MODE_CODES", "RECORD_FORMAT",
           "STEP_KINDS", "DropConstantPlane", "DropRepeats", "GreyFromBilevel", "GreyFromRGB", "Levels", "NearPalette", "EscapePalette", "Palette",
           "PaletteOrder", "Step", "TransformRecord", "candidate_cost", "candidates", "choose", "constant_values",
           "distinct_colours", "estimate_bits", "is_grey", "neighbour_order", "repeat_flags", "used_levels"]
