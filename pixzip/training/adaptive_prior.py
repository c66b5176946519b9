"""Make an adaptive level's prior: the learned small state (mixer weights, final weights, APM tables) that
its fresh states start from, instead of the untrained initial values (docs/ADAPTIVE.md, "Priors").

A fresh state spends a tile's first thousands of decisions learning how far to trust each context and the
network; most of that is the same for every photograph. The prior is the mean of the states reached at
the end of many training tiles (each coded from a fresh, prior-less state by the compiled stage), floor
division of the int64 sums. Training photographs only (the validation sets are never used):

    python3 -m pixzip.training.adaptive_prior --level 3 --model pixzip/models/pcnn-rgb-v7.pxm \\
        --out pixzip/entropy/priors/level3-c3-h48-b4.npy ../shared/data/urban100 ../shared/data/photos
    python3 -m pixzip.training.adaptive_prior --level 3 --model pixzip/models/pcnn-rgb-small-v5.pxm \\
        --out pixzip/entropy/priors/level3-c3-h96-b8.npy ../shared/data/cifar10/train_x_partial.npy

(bench/make_priors.sh makes every shipped prior)
prints the file's SHA-256, which entropy/adaptive_priors.py's PRIOR_SHA256 must then name (a prior is part
of the format: it never changes once files use it)."""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import io
from pathlib import Path

import numpy as np
from PIL import Image

from ..backends import native
from ..entropy import adaptive
from ..formats.tiles import tile_grid

PHOTO_REDUCTION = 3      # the training photos are JPEGs: reduced as the networks' training data was


def training_tiles(folders: list[Path], tile: int, per_image: int, channels: int = 3, rows: int = 1500,
                   images: int | None = None):
    """Up to `per_image` tiles of each image (sorted names; the first `images` of a folder where given), the full
    tiles first; CIFAR-10's training rows (an .npy of N x 32 x 32 x 3, the held-out last 1000 rows excluded) one
    tile each."""
    for folder in folders:
        if folder.suffix == ".npy":
            for r in np.load(folder)[:-1000][:rows]:
                yield np.ascontiguousarray(r if channels == 3 else np.asarray(Image.fromarray(r).convert("L"))[..., None])
            continue
        paths = [p for p in sorted(folder.iterdir()) if p.suffix.lower() in (".png", ".jpg", ".jpeg")]
        for path in paths[:images]:
            im = Image.open(path).convert("RGB" if channels == 3 else "L")
            if path.suffix.lower() != ".png":
                im = im.reduce(PHOTO_REDUCTION)
            px = np.asarray(im).reshape(im.height, im.width, channels)
            grid = sorted(tile_grid(*px.shape[:2], tile), key=lambda g: -g[2] * g[3])
            for y, x, h, w in grid[:per_image]:
                yield np.ascontiguousarray(px[y:y + h, x:x + w])


# the palettes the index planes of the bitwise levels' priors are made with, in turn (`palette_planes`)
PALETTE_SIZES = (256, 128, 64, 32, 16)


def palette_planes(tiles):
    """Each colour tile quantised by Pillow as a palette image (PALETTE_SIZES in turn, median cut or octree,
    Floyd-Steinberg dithered or not), as the index plane the codec's palette transform by luminance makes: what
    levels 17 and 18 code (plane_options.photo_palette)."""
    from ..formats.images import ImageData
    from ..formats.transforms.choose import candidates
    for k, t in enumerate(tiles):
        method = Image.Quantize.MEDIANCUT if k % 3 else Image.Quantize.FASTOCTREE
        dither = Image.Dither.FLOYDSTEINBERG if k % 2 else Image.Dither.NONE
        rgb = np.asarray(Image.fromarray(t).quantize(PALETTE_SIZES[k % len(PALETTE_SIZES)], method, dither=dither)
                         .convert("RGB"))
        for coded, record in candidates(ImageData("RGB", rgb.shape[1], rgb.shape[0], [rgb])):
            if record.holds_palette(0) and "by luminance" in record.describe() and len(record.steps) == 1:
                yield np.ascontiguousarray(coded.planes[0])
                break


def make_prior(level: adaptive.Level, model, tiles) -> np.ndarray:
    """The mean of the learned states at the end of each tile (fresh, prior-less states)."""
    bare = dataclasses.replace(level, prior="", priors=())
    total, n = None, 0
    for t in tiles:
        state = native.AdaptiveState(bare, t.size)
        native.encode_tile_adaptive(model, t, state=state)
        learned = state.learned().astype(np.int64)
        total = learned if total is None else total + learned
        n += 1
    if not n:
        raise SystemExit("no training tiles")
    return (total // n).astype(np.int32)


def main(argv=None):
    from ..nets import modelfile
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("folders", nargs="+", type=Path)
    ap.add_argument("--level", type=int, required=True)
    ap.add_argument("--model", type=Path, required=True, help="the model file (.pxm)")
    ap.add_argument("--tile", type=int, default=256)
    ap.add_argument("--per-image", type=int, default=2, help="tiles per image")
    ap.add_argument("--rows", type=int, default=1500, help="CIFAR-10 training rows (an .npy folder argument)")
    ap.add_argument("--images", type=int, default=None, help="the first N images of each folder only")
    ap.add_argument("--palettes", action="store_true",
                    help="the tiles quantised to palettes, their index planes (a grey model; the bitwise levels)")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args(argv)
    net = modelfile.load(a.model).net
    tiles = training_tiles(a.folders, a.tile, a.per_image, 3 if a.palettes else net.cfg.channels, a.rows, a.images)
    prior = make_prior(adaptive.LEVELS[a.level], net, palette_planes(tiles) if a.palettes else tiles)
    print(f"network key {adaptive.prior_key(net)}")
    buf = io.BytesIO()
    np.save(buf, prior, allow_pickle=False)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_bytes(buf.getvalue())
    print(f"{a.out}: {prior.size} values, sha256 {hashlib.sha256(buf.getvalue()).hexdigest()}")


if __name__ == "__main__":
    main()
