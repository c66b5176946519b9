"""Training data for a GPU machine that only receives what travels with the repository (64 MiB).

    python3 bench/prepare_gpu_data.py pack ../shared/data .gpu/data   (here; .gpu/ is git-ignored)
    python3 bench/prepare_gpu_data.py unpack DATA                      (there: the CIFAR mosaic -> .npy)

Every image is stored as lossless WebP (pixel-exact): the 37 JPEG photos reduced 3x (what training
does to JPEG sources anyway), the first 26 Urban100 images reduced 2x, every 4th CBSD68 image (the first
8 of those, validation crops only) and CIFAR-10 rows 0..7067 of train_x_partial.npy (the last 1000
rows stay held out) as one mosaic of 32x32 cells, 64 to a row.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

CELL, COLS, CIFAR_TRAIN = 32, 64, 7068


def save(img: Image.Image, out: Path):
    img.save(out, lossless=True, quality=100, method=3)
    if not np.array_equal(np.asarray(Image.open(out).convert(img.mode)), np.asarray(img)):
        raise SystemExit(f"{out}: the WebP copy is not pixel-exact")


def pack(shared: Path, dest: Path):
    sets = [("photos", "photos", sorted((shared / "photos").glob("*.jpg")), 3),
            ("urban100", "urban100h", sorted((shared / "urban100").glob("*.png"))[:26], 2),
            ("cbsd68", "cbsd68v", sorted((shared / "cbsd68").glob("*.png"))[::4][:8], 1)]
    for _, folder, files, factor in sets:
        (dest / folder).mkdir(parents=True, exist_ok=True)
        for f in files:
            with Image.open(f) as im:
                save(im.convert("RGB").reduce(factor), dest / folder / f"{f.stem}.webp")
    rows = np.load(shared / "cifar10" / "train_x_partial.npy")[:CIFAR_TRAIN]
    height = -(-len(rows) // COLS)
    mosaic = np.zeros((height, COLS, CELL, CELL, 3), np.uint8)
    mosaic.reshape(-1, CELL, CELL, 3)[:len(rows)] = rows
    save(Image.fromarray(mosaic.transpose(0, 2, 1, 3, 4).reshape(height * CELL, COLS * CELL, 3)),
         dest / "cifar_train.webp")


def unpack(dest: Path):
    out = dest / "cifar_train.npy"
    if out.exists():
        return
    mosaic = np.asarray(Image.open(dest / "cifar_train.webp").convert("RGB"))
    cells = mosaic.reshape(-1, CELL, COLS, CELL, 3).transpose(0, 2, 1, 3, 4).reshape(-1, CELL, CELL, 3)
    np.save(out, cells[:CIFAR_TRAIN])


if __name__ == "__main__":
    if sys.argv[1:2] == ["pack"] and len(sys.argv) == 4:
        pack(Path(sys.argv[2]), Path(sys.argv[3]))
    elif sys.argv[1:2] == ["unpack"] and len(sys.argv) == 3:
        unpack(Path(sys.argv[2]))
    else:
        raise SystemExit(__doc__)
