"""Training data: image folders and .npy stacks, held in memory, sampled as random crops."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

IMAGE_SUFFIXES = {".png", ".bmp", ".tif", ".tiff", ".ppm", ".pgm", ".pnm", ".webp", ".jpg", ".jpeg"}


def list_sources(paths) -> list[Path]:
    """Expand folders (recursively) into image files and .npy stacks, sorted for reproducibility."""
    out = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES | {".npy"})
        elif p.exists():
            out.append(p)
        else:
            raise FileNotFoundError(f"no such file or folder: {p}")
    return out


def load_arrays(paths, channels: int, downsample: int = 1, jpeg_downsample: int = 1) -> list[np.ndarray]:
    """Load every source as uint8 arrays of shape (H, W, channels).

    `downsample` box-filters every image; `jpeg_downsample` applies (in addition) to JPEG sources, whose
    block artefacts and chroma subsampling would otherwise teach the model to expect them.
    """
    arrays = []
    for f in list_sources(paths):
        if f.suffix.lower() == ".npy":
            stack = np.load(f, allow_pickle=False)
            if stack.ndim == 3:
                stack = stack[..., None]
            arrays += [_to_channels(a, channels) for a in stack.astype(np.uint8)]
            continue
        with Image.open(f) as im:
            im = im.convert("RGB" if channels == 3 else "L")
            factor = downsample * (jpeg_downsample if f.suffix.lower() in {".jpg", ".jpeg"} else 1)
            if factor > 1:
                im = im.reduce(factor)
            a = np.asarray(im)
        arrays.append(a[..., None] if a.ndim == 2 else a)
    return arrays


def _to_channels(a: np.ndarray, channels: int) -> np.ndarray:
    if a.shape[-1] == channels:
        return a
    if channels == 1:  # ITU-R 601 luma, as Pillow's convert("L")
        rgb = a.astype(np.int32)
        return ((rgb[..., 0] * 19595 + rgb[..., 1] * 38470 + rgb[..., 2] * 7471 + 0x8000) >> 16
                ).astype(np.uint8)[..., None]
    return np.repeat(a, 3, axis=-1)


class CropSampler:
    """Random crops (with horizontal flips unless flip=False), images drawn in proportion to their area."""

    def __init__(self, arrays: list[np.ndarray], crop: int, seed: int = 0, flip: bool = True):
        self.flip = flip
        self.arrays = [a for a in arrays if a.shape[0] >= crop and a.shape[1] >= crop]
        if not self.arrays:
            raise ValueError(f"no image is at least {crop}x{crop}")
        area = np.array([a.shape[0] * a.shape[1] for a in self.arrays], dtype=np.float64)
        self.p = area / area.sum()
        self.crop = crop
        self.rng = np.random.default_rng(seed)

    def batch(self, n: int) -> np.ndarray:
        """(n, C, crop, crop) uint8."""
        out = []
        for i in self.rng.choice(len(self.arrays), size=n, p=self.p):
            a = self.arrays[i]
            y = self.rng.integers(0, a.shape[0] - self.crop + 1)
            x = self.rng.integers(0, a.shape[1] - self.crop + 1)
            c = a[y:y + self.crop, x:x + self.crop]
            if self.rng.random() < 0.5 and self.flip:
                c = c[:, ::-1]
            out.append(c.transpose(2, 0, 1))
        return np.ascontiguousarray(np.stack(out))


def fixed_crops(arrays: list[np.ndarray], crop: int, n: int, seed: int = 1234, flip: bool = True) -> np.ndarray:
    """A deterministic validation set of crops."""
    return CropSampler(arrays, crop, seed, flip).batch(n)
