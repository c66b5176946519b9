"""Scanned pages (session 27: docs/ADAPTIVE.md "Backgrounds"), made here from fixed seeds: rendered text, blurred as a
scanner's optics do, on paper with the sensor's noise (Gaussian, deviation 1 to 3), a page turned a little under uneven
light, and a colour scan of tinted paper. Each coded by `pixzip compress -e E` (decoded and compared), and again with
the background retry switched off (plane_options.BACKGROUND_SHARE out of reach: the coding before session 27), beside
PNG (Pillow optimize) and JPEG XL e9 lossless (imagecodecs, round trip checked) in the same run.

    PYTHONPATH=$PWD python3 bench/scans.py --out bench/results/scans.md

The pages need the DejaVu fonts (Pillow's default font otherwise: other bytes, said in the table's notes)."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from held_out import coded, heading, publish, reference_sizes
from pixzip import plane_options
from pixzip.formats.images import read_image

WORDS = ("invoice total amount payable date account number reference customer service please remit within thirty "
         "days the of and to in archive document letter contract signed page").split()


def _font(name: str, size: int) -> tuple[ImageFont.ImageFont, str]:
    try:
        return ImageFont.truetype(name, size), f"{name} {size}"
    except OSError:
        return ImageFont.load_default(), f"Pillow's default font ({name} missing)"


def page(seed: int, font_name: str, size: int, width: int = 800, height: int = 1000) -> tuple[np.ndarray, str]:
    """Lines of seeded words, black on white, blurred (sigma 0.8): the page before the scanner's noise."""
    rng = np.random.default_rng(seed)
    font, which = _font(font_name, size)
    im = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(im)
    for y in range(30, height - 40, int(size * 1.5)):
        draw.text((40, y), " ".join(rng.choice(WORDS, 10)), fill=0, font=font)
    return np.asarray(im.filter(ImageFilter.GaussianBlur(0.8)), dtype=np.float64), which


def _noisy(clean: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(0, sigma, clean.shape)
    return np.clip(np.round(clean + noise), 0, 255).astype(np.uint8)


def make_images(folder: Path) -> tuple[list[Path], str]:
    folder.mkdir(parents=True, exist_ok=True)
    serif, font = page(1, "DejaVuSerif.ttf", 18)
    sans, _ = page(2, "DejaVuSans.ttf", 15)
    paper = serif * (225 / 255) + 12                                     # grey paper, not quite black ink
    yy, xx = np.mgrid[0:sans.shape[0], 0:sans.shape[1]]
    turned = np.asarray(Image.fromarray(sans.astype(np.uint8)).rotate(0.6, Image.Resampling.BICUBIC, fillcolor=255),
                        dtype=np.float64)
    light = 0.82 + 0.12 * xx / xx.shape[1] + 0.05 * np.sin(yy / 90)
    tint = np.stack([paper, paper * 0.97, paper * 0.9], axis=-1)
    made = {"serif-noise-1.png": _noisy(paper, 1, 11), "serif-noise-3.png": _noisy(paper, 3, 12),
            "sans-noise-2.png": _noisy(sans * 0.9 + 10, 2, 13), "sans-turned-uneven.png": _noisy(turned * light, 2, 14),
            "serif-colour.png": _noisy(tint, 1.5, 15)}
    paths = []
    for name, pixels in made.items():
        Image.fromarray(pixels).save(folder / name)
        paths.append(folder / name)
    return paths, font


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--effort", type=int, default=4)
    ap.add_argument("--images", type=Path, default=Path("/tmp/pixzip-scans"))
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    paths, font = make_images(args.images)
    rows = ["| image | mode | size | background share | pixzip | level | without the retry | level | PNG | JPEG XL e9 | "
            "x JXL e9 | x JXL e9 without | s |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    total = {"pixzip": 0, "plain": 0, "png": 0, "jxl9": 0}
    shipped = plane_options.BACKGROUND_SHARE
    for path in paths:
        image = read_image(path, path.name)
        data, header, seconds = coded(image, args.effort)
        plane_options.BACKGROUND_SHARE = 2.0                             # no plane reaches it: the retry is off
        try:
            plain, plain_header, _ = coded(image, args.effort)
        finally:
            plane_options.BACKGROUND_SHARE = shipped
        levels = [header.levels, plain_header.levels]
        o = reference_sizes(path)
        for k, v in (("pixzip", len(data)), ("plain", len(plain)), *o.items()):
            total[k] += v
        share = plane_options.background_share(image.planes[0])
        rows.append(f"| {path.name} | {image.mode} | {image.width}x{image.height} | {share:.2f} | {len(data)} | "
                    f"{', '.join(map(str, levels[0]))} | {len(plain)} | {', '.join(map(str, levels[1]))} | {o['png']} | "
                    f"{o['jxl9']} | {len(data) / o['jxl9']:.3f} | {len(plain) / o['jxl9']:.3f} | {seconds:.2f} |")
    rows.append(f"| **all** | | | | **{total['pixzip']}** | | {total['plain']} | | {total['png']} | {total['jxl9']} | "
                f"**{total['pixzip'] / total['jxl9']:.3f}** | {total['plain'] / total['jxl9']:.3f} | |")
    head = heading(f"Scanned pages, `-e {args.effort}` (docs/ADAPTIVE.md \"Backgrounds\")",
                   "PYTHONPATH=$PWD python3 bench/scans.py --out bench/results/scans.md", "one encode with the retry")
    publish(head + "\n".join(rows) + (f"\n\n`pixzip compress -e {args.effort}` (api.compress), every file decoded and "
                                     f"compared; \"without the retry\": plane_options.BACKGROUND_SHARE out of reach; "
                                     f"PNG: Pillow optimize; JPEG XL: imagecodecs lossless effort 9. The serif pages' "
                                     f"font: {font}.\n"), args.out)

if __name__ == "__main__":
    main()
