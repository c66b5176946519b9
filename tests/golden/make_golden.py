"""Write the golden .pxz files of the current format version (only when the version changes: move the
old ones to a folder named after their version first, e.g. v1/, v2/; they must keep decoding).

    python tests/golden/make_golden.py

Writes two tiny models, one small image per mode, their .pxz files and the SHA-256 of the decoded pixels.
Version 4 adds files for its entropy stages and the transform record (V4_FILES: adaptive planes, a
stored plane, a grey-as-RGB image coded as grey); expected.json records each file's effort (the current
version's files must re-encode to the same bytes) and the first version that has it.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from conftest import make_tiny_model, radial_blend, smooth_sixteen_bit, text_beside_photo, to_rgb565  # noqa: E402
from pixzip import api  # noqa: E402
from pixzip.efforts import Effort  # noqa: E402
from pixzip.formats import container  # noqa: E402
from pixzip.formats import images  # noqa: E402
from pixzip.nets import modelfile  # noqa: E402


def golden_images() -> dict[str, Image.Image]:
    rng = np.random.default_rng(2026)
    yy, xx = np.mgrid[0:19, 0:23]
    rgb = np.stack([xx * 11, yy * 13, (xx * yy) % 256], -1).astype(np.uint8)
    rgb = (rgb + rng.integers(0, 8, rgb.shape)).astype(np.uint8)
    base = Image.fromarray(rgb)
    rgba = base.copy()
    rgba.putalpha(Image.fromarray(((xx + yy) * 6).astype(np.uint8)))
    la = base.convert("L")
    la.putalpha(Image.fromarray(((xx * 9) % 256).astype(np.uint8)))
    return {"rgb": base, "rgba": rgba, "l": base.convert("L"), "la": la,
            "p": base.quantize(colors=16), "1": base.convert("L").point(lambda v: 255 * (v > 100)).convert("1")}


def vote_image() -> Image.Image:
    """Where the exact-predictor vote of levels 5 and 6 fires: a ramp along the anti-diagonals (NE exact),
    flat halves, a channel equal to another in the lower half, sparse noise."""
    rng = np.random.default_rng(2028)
    yy, xx = np.mgrid[0:19, 0:23]
    px = np.stack([(xx + yy) * 9 % 256, np.where(xx < 12, 40, 200), xx * 7 % 256], -1)
    px[10:, :, 2] = px[10:, :, 0]
    noisy = rng.random((19, 23)) < 0.1
    px[noisy] = rng.integers(0, 256, (int(noisy.sum()), 3))
    return Image.fromarray(px.astype(np.uint8))


def glyphs_image() -> Image.Image:
    """Where the LZ stage (entropy stage 3) wins: three 6x8 'glyphs' of three inks repeated on a flat ground
    (48x120: the stage takes planes of 2^12 samples or more)."""
    rng = np.random.default_rng(2029)
    inks = np.array([[20, 20, 30], [110, 120, 200], [235, 235, 230]], dtype=np.uint8)
    glyphs = inks[rng.integers(0, 3, (3, 6, 8))]
    px = np.full((48, 120, 3), 235, dtype=np.uint8)
    for k in range(120):
        y, x = 6 * (k // 15), 8 * (k % 15)
        px[y:y + 6, x:x + 8] = glyphs[(k * 2 + k // 4) % 3]
    return Image.fromarray(px)


def v4_images() -> dict[str, tuple[Image.Image, int]]:
    """Version 4's stages and transforms, each with the effort that codes it so: an RGBA image at -e 5
    (transforms), a stored plane (noise), a grey image saved as RGB (a transform record),
    a P image (its palette order in the record), repeated glyphs (an LZ plane) and a bilevel page (grey from
    bilevel, session 26). (The adaptive stage's files use golden-rgb16.pxm,
the native coder's structure: the encoder takes the stage only where the compiled coder runs the model.)"""
    base = golden_images()
    rng = np.random.default_rng(2027)
    noise = Image.fromarray(rng.integers(0, 256, (11, 13, 3), dtype=np.uint8))
    return {"transform-rgba.pxz": (base["rgba"], 5), "stored-noise.pxz": (noise, 1),
            "grey-as-rgb.pxz": (base["l"].convert("RGB"), 2), "palette-p.pxz": (base["p"], 2),
            "lz-glyphs.pxz": (glyphs_image(), 1),
            "bilevel-transform.pxz": (bilevel_image().convert("1", dither=Image.Dither.NONE), 2)}


def pixel_hash(im: Image.Image) -> str:
    return hashlib.sha256(images.split(im).pixel_bytes()).hexdigest()


def main():
    """Writes the current format's files with the committed models (making the models only if they are
    missing: older versions' files in v1/ etc. name them and must keep decoding)."""
    if not (HERE / "golden-rgb.pxm").exists():
        modelfile.save(make_tiny_model(3, seed=31)[1], HERE / "golden-rgb.pxm", {"note": "golden test model"})
        modelfile.save(make_tiny_model(1, seed=32)[1], HERE / "golden-gray.pxm", {"note": "golden test model"})
    rgb = modelfile.load(HERE / "golden-rgb.pxm")
    gray = modelfile.load(HERE / "golden-gray.pxm")
    expected = {}
    for name, im in golden_images().items():
        d = images.split(im)
        used = [m for m in (rgb, gray) if any(p.shape[2] == m.channels for p in d.planes)]
        data, _ = api.compress(d, used, tile=8, effort=1)
        (HERE / f"{name}.pxz").write_bytes(data)
        expected[f"{name}.pxz"] = {"mode": im.mode, "size": list(im.size), "sha256": pixel_hash(im),
                                   "effort": 1, "since": 1}
    for name, (im, effort) in v4_images().items():
        d = images.split(im)
        used = [m for m in (rgb, gray) if any(p.shape[2] == m.channels for p in d.planes)]
        if name == "grey-as-rgb.pxz":
            used.append(gray)           # its transform turns it into a grey image
        data, _ = api.compress(d, used, tile=8, effort=effort)
        (HERE / name).write_bytes(data)
        expected[name] = {"mode": im.mode, "size": list(im.size), "sha256": pixel_hash(im), "effort": effort,
                          "since": 4}
    (HERE / "expected.json").write_text(json.dumps(expected, indent=1, sort_keys=True) + "\n")
    wide_stream_golden()


def wide_stream_golden():
    """A model with the v2 models' structure (16-bit residual stream, slope 2) and the RGB image coded
    with it (models/: format 2 onwards): its arithmetic (the int8 reads of the stream, the trimmed
    taps) must keep giving the same integers."""
    path = HERE / "golden-rgb16.pxm"
    if not path.exists():
        net = make_tiny_model(3, seed=33, blocks=2, first_kernel=7, skip_kernel=5, stream_bits=16, slope=2)[1]
        modelfile.save(net, path, {"note": "golden test model: 16-bit stream, slope 2"})
    data, _ = api.compress(images.split(golden_images()["rgb"]), [modelfile.load(path)], tile=8, effort=1)
    (HERE / "rgb16.pxz").write_bytes(data)
    # the native coder's structure: an adaptive file the compiled stage writes (and the reference reads)
    # one per level; the files of earlier sessions (levels 1 and 2: session 12, 3 and 4: session 13) are kept
    # as written, not rewritten
    # (levels 5 and 6 code vote_image, where their vote has something to find)
    for name, level in (("rgb16-adaptive5.pxz", 5), ("rgb16-adaptive6.pxz", 6)):
        effort = Effort(models=1, stage=container.ADAPTIVE, level=level)
        data, _ = api.compress(images.split(vote_image()), [modelfile.load(path)], tile=8, effort=effort)
        (HERE / name).write_bytes(data)
    least_squares_golden()


def least_squares_golden():
    """Levels 7 and 8 (the least-squares predictor, session 16) and 9 and 10 (its shifted table, session 17) on
    vote_image in one tile of 32: 437 sub-pixels a channel, so its weights are solved three times (every 128)
    and used."""
    path = HERE / "golden-rgb16.pxm"
    for name, level in (("rgb16-adaptive7.pxz", 7), ("rgb16-adaptive8.pxz", 8), ("rgb16-adaptive9.pxz", 9),
                        ("rgb16-adaptive10.pxz", 10)):
        effort = Effort(models=1, stage=container.ADAPTIVE, level=level)
        data, _ = api.compress(images.split(vote_image()), [modelfile.load(path)], tile=32, effort=effort)
        (HERE / name).write_bytes(data)
    # level 9 carries its state along chains of tiles (session 17): in tiles of 8, nine tiles in three chains
    effort = Effort(models=1, stage=container.ADAPTIVE, level=9)
    data, _ = api.compress(images.split(vote_image()), [modelfile.load(path)], tile=8, effort=effort)
    (HERE / "rgb16-adaptive9-chains.pxz").write_bytes(data)
    value_levels_golden()


def rgb565_image() -> Image.Image:
    """The RGB image at RGB565's depth (conftest.to_rgb565): a levels plane, coded in value space (entropy stage
    4, session 20)."""
    return Image.fromarray(to_rgb565(np.asarray(golden_images()["rgb"])))


def value_levels_golden():
    """Levels in value space (stage 4, session 20): the RGB565 image at level 9, tiles of 8 (three chains)."""
    effort = Effort(models=1, stage=container.ADAPTIVE, level=9, transforms="estimate")
    data, _ = api.compress(images.split(rgb565_image()), [modelfile.load(HERE / "golden-rgb16.pxm")], tile=8,
                           effort=effort)
    (HERE / "rgb16-levels-values.pxz").write_bytes(data)
    symbols_golden()


def symbols_image() -> Image.Image:
    """A P image of 12 colours, 48 x 40: bands of two colours dithered in a checkerboard, a few stray pixels."""
    rng = np.random.default_rng(2030)
    yy, xx = np.mgrid[0:40, 0:48]
    band = (xx // 6 + yy // 5) % 6
    idx = 2 * band + (xx + yy) % 2
    stray = rng.random((40, 48)) < 0.03
    idx[stray] = rng.integers(0, 12, int(stray.sum()))
    im = Image.fromarray(idx.astype(np.uint8), "P")
    im.putpalette(rng.integers(0, 256, 36, dtype=np.uint8).tobytes())
    return im


SYMBOLS_GOLDEN = (("p-symbols11.pxz", 9, 11), ("p-symbols12.pxz", 10, 12), ("p-symbols17.pxz", 9, 17),
                  ("p-symbols18.pxz", 10, 18))


def symbols_golden():
    """Levels 11 and 12 (contexts on the values, session 21), and 17 and 18 (the same, an index's own bits as the
    decisions, session 33): symbols_image's palette indices (12 colours, stage 4) coded by a grey model of the native
    structure (golden-gray16.pxm), tiles of 16 (three chains)."""
    path = HERE / "golden-gray16.pxm"
    if not path.exists():
        net = make_tiny_model(1, seed=34, blocks=2, skip_kernel=5, stream_bits=16, slope=2)[1]
        modelfile.save(net, path, {"note": "golden test model: grey, 16-bit stream, slope 2"})
    for name, level, symbols in SYMBOLS_GOLDEN:
        effort = Effort(models=1, stage=container.ADAPTIVE, level=level, symbols_level=symbols, transforms="estimate")
        data, _ = api.compress(images.split(symbols_image()), [modelfile.load(path)], tile=16, effort=effort)
        (HERE / name).write_bytes(data)
    lz_tiles_golden()


def lz_tiles_golden():
    """LZ tiles (session 22): conftest.text_beside_photo at level 9 in tiles of 48, its text's four tiles in one
    LZ stream (two of them chain heads, replayed), the photograph's in the stage. With the shipped pcnn-rgb-v8:
    the tiny models code text too badly for the encoder to try LZ tiles (lz._TILE_MAX_BITS)."""
    from pixzip import zoo
    effort = Effort(models=1, stage=container.ADAPTIVE, level=9)
    data, _ = api.compress(images.ImageData("RGB", 192, 96, [text_beside_photo()]), [zoo.load_model("pcnn-rgb-v8")],
                           tile=48, effort=effort)
    (HERE / "lz-tiles.pxz").write_bytes(data)
    classical_golden()


def radial_image() -> Image.Image:
    """conftest.radial_blend, 40 x 48, centred off the image (8, 15): a plane its neighbours predict."""
    return Image.fromarray(radial_blend(40, 48, 8, 15))


def classical_golden():
    """Level 13 (the median predictor in the network's place, session 23): radial_image, tiles of 16 (three chains),
    with the native-structure RGB model (whose outputs the level ignores)."""
    effort = Effort(models=1, stage=container.ADAPTIVE, level=13)
    data, _ = api.compress(images.split(radial_image()), [modelfile.load(HERE / "golden-rgb16.pxm")], tile=16,
                           effort=effort)
    (HERE / "rgb16-classical13.pxz").write_bytes(data)
    bilevel_golden()
    low_part_golden()


def bilevel_image() -> Image.Image:
    """A made page of two values, 40 x 64: five 5x7 glyphs (seeded) set in lines with one-pixel gaps, 0 on 255."""
    rng = np.random.default_rng(14)
    glyphs = rng.random((5, 7, 5)) < 0.45
    page = np.full((40, 64), 255, np.uint8)
    for top in range(2, 33, 10):
        for left in range(2, 58, 6):
            page[top:top + 7, left:left + 5][glyphs[rng.integers(0, 5)]] = 0
    return Image.fromarray(page)


def bilevel_golden(levels=(14, 15, 16)):
    """Level 14 (a bilevel coder's template contexts on level 13, session 25), 15 (with the match model) and 16 (the
    match's value as the centre, session 26): bilevel_image (16: anti-aliased, grey_glyphs_image), tiles of 16, with
    the native-structure grey model (whose outputs the levels ignore)."""
    for level in levels:
        effort = Effort(models=1, stage=container.ADAPTIVE, level=level)
        image = bilevel_image() if level < 16 else grey_glyphs_image()
        data, _ = api.compress(images.split(image), [modelfile.load(HERE / "golden-gray16.pxm")], tile=16,
                               effort=effort)
        (HERE / f"bilevel{level}.pxz").write_bytes(data)


def grey_glyphs_image() -> Image.Image:
    """bilevel_image's page anti-aliased: each glyph's ink in five grey levels (seeded), 40 x 64."""
    rng = np.random.default_rng(16)
    glyphs = rng.integers(0, 5, (5, 7, 5)) * 255 // 4
    page = np.full((40, 64), 255, np.uint8)
    for top in range(2, 33, 10):
        for left in range(2, 58, 6):
            page[top:top + 7, left:left + 5] = glyphs[rng.integers(0, 5)]
    return Image.fromarray(page)


def low_part_golden():
    """A 16-bit RGB image whose low part takes layout 2 (tables per the prediction's position against the bin,
    session 24): conftest.smooth_sixteen_bit, 96 x 128, the golden RGB model at -e 1."""
    image = images.ImageData("RGB", 128, 96, [smooth_sixteen_bit(96, 128)], depth=16)
    data, _ = api.compress(image, [modelfile.load(HERE / "golden-rgb.pxm")], tile=8, effort=1)
    (HERE / "sixteen-low2.pxz").write_bytes(data)
    escape_palette_golden()



def escape_image() -> Image.Image:
    """300 colours on 40 x 40 pixels, 50 of them once each (seeded): past a palette, with rare colours to escape."""
    rng = np.random.default_rng(2033)
    table = rng.integers(0, 256, (300, 3), dtype=np.uint8)
    which = np.concatenate([np.arange(300), rng.integers(0, 250, 40 * 40 - 300)])
    return Image.fromarray(table[rng.permutation(which).reshape(40, 40)])


def escape_palette_golden():
    """The escape palette (transform kind 9, session 33): escape_image through its EscapePalette candidate, the
    index plane coded statically by the golden grey model in tiles of 8 (the encoder's own choice is not asked:
    the record is given, so the file holds the step whatever a chooser prefers)."""
    from pixzip.efforts import EFFORTS
    from pixzip.formats import transforms
    image = images.split(escape_image())
    coded, record = next((c, r) for c, r in transforms.candidates(image)
                         if [type(s) for s in r.steps] == [transforms.EscapePalette])
    data, _ = api._code_images([coded], [record], [image], [modelfile.load(HERE / "golden-gray.pxm")], 8, None, 1,
                               None, container.VERSION, EFFORTS[1])[0]
    (HERE / "escape-palette.pxz").write_bytes(data)


if __name__ == "__main__":
    main()
