"""Everyday images that no set here was made of, made from fixed seeds out of CBSD68 photographs and Urban100's last
images (neither trained on): icons with an anti-aliased round alpha (32, 64, 128 pixels), a photograph cut out with a
soft edge, photographs that went through JPEG (quality 90, 75, 30), one enlarged 2x bilinearly, one turned a quarter
(and upright), a grey photograph with alpha (LA), one quantised to 64 colours with dithering (P, a GIF's kind), an
Urban100 crop, a smooth field through the viridis colour map (and a noisy one through inferno), a dark-themed screen of
source code, film grain, an X-ray-like grey image. Each coded by `pixzip compress -e E` (decoded and compared) beside
PNG (Pillow optimize), WebP lossless (method 6, exact: invisible pixels kept) and JPEG XL e9 lossless (imagecodecs)
in the same run: where does pixzip lose?

    PYTHONPATH=$PWD python3 bench/everyday.py --data ../shared/data --out bench/results/everyday.md

Needs matplotlib (the colour maps) and imagecodecs; the screen of code needs the DejaVu Sans Mono font."""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from held_out import coded, heading, publish, reference_sizes
from pixzip.formats.images import read_image


def _round_alpha(size: int, soft: float) -> np.ndarray:
    """A disc's alpha, anti-aliased over `soft` pixels (0..255)."""
    y, x = np.mgrid[0:size, 0:size]
    r = np.hypot(y - (size - 1) / 2, x - (size - 1) / 2)
    return np.clip((size / 2 - r) / soft + 0.5, 0, 1) * 255


def _with_alpha(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    a = alpha.round().astype(np.uint8)
    out = np.dstack([rgb, a])
    out[a == 0, :-1] = 0                       # (an editor's export: nothing under full transparency)
    return out


def _jpeg(im: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def _code_screen(rng) -> Image.Image:
    screen = Image.new("RGB", (720, 420), (30, 30, 36))
    draw = ImageDraw.Draw(screen)
    try:
        font = ImageFont.truetype("DejaVuSansMono.ttf", 14)
    except OSError:
        font = ImageFont.load_default()
    tokens = [("def", (198, 120, 221)), ("return", (198, 120, 221)), ("value", (224, 108, 117)), ("(", (171, 178, 191)),
              ("self", (229, 192, 123)), ("42", (209, 154, 102)), ("'text'", (152, 195, 121)), ("compress", (97, 175, 239))]
    for row in range(24):
        x = 12 + 28 * (row % 4)
        for _ in range(rng.integers(3, 8)):
            text, colour = tokens[rng.integers(len(tokens))]
            draw.text((x, 8 + row * 17), text, fill=colour, font=font)
            x += 9 * len(text) + 9
    return screen


def make_images(folder: Path, data: Path) -> list[Path]:
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import colormaps
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(3)
    photos = sorted((data / "cbsd68").glob("*.png"))
    urban = sorted((data / "urban100").glob("*.png"))[-10:]

    def photo(k: int) -> Image.Image:
        return Image.open(photos[k]).convert("RGB")
    made: dict[str, Image.Image] = {}
    for k, size in ((5, 32), (17, 64), (40, 128)):
        icon = np.asarray(photo(k).resize((size, size), Image.Resampling.LANCZOS))
        made[f"icon-rgba-{size}.png"] = Image.fromarray(_with_alpha(icon, _round_alpha(size, 1.0)), "RGBA")
    cut = np.asarray(photo(9).crop((0, 0, 320, 320)))
    made["cutout-soft-rgba.png"] = Image.fromarray(_with_alpha(cut, _round_alpha(320, 12.0)), "RGBA")
    for quality in (90, 75, 30):
        made[f"jpeg-q{quality}.png"] = _jpeg(photo(22 if quality > 30 else 25), quality)
    made["upscaled-bilinear.png"] = photo(30).crop((100, 100, 300, 250)).resize((400, 300), Image.Resampling.BILINEAR)
    made["photo-upright.png"] = photo(33)
    made["photo-turned.png"] = photo(33).transpose(Image.Transpose.ROTATE_90)
    grey = np.asarray(Image.open(urban[2]).convert("L").crop((0, 0, 400, 400)))
    made["grey-alpha-LA.png"] = Image.fromarray(np.dstack([grey, _round_alpha(400, 3.0).astype(np.uint8)]), "LA")
    made["gif-like-64-P.png"] = photo(44).quantize(64, dither=Image.Dither.FLOYDSTEINBERG)
    made["urban-crop.png"] = Image.open(urban[5]).convert("RGB").crop((0, 0, 512, 384))
    yy, xx = np.mgrid[0:400, 0:500] / 60.0
    field = np.sin(xx) * np.cos(yy * 1.3) + 0.3 * np.sin(xx * yy / 4)

    def mapped(values: np.ndarray, name: str) -> Image.Image:
        index = ((values - field.min()) / (field.max() - field.min()) * 255).astype(np.uint8)
        return Image.fromarray((colormaps[name](index)[..., :3] * 255).round().astype(np.uint8))
    made["colormap-viridis.png"] = mapped(field, "viridis")
    made["colormap-noisy-inferno.png"] = mapped(np.clip(field + rng.normal(0, 0.05, field.shape), field.min(),
                                                        field.max()), "inferno")
    made["code-screen.png"] = _code_screen(rng)
    p = np.asarray(photo(12), dtype=np.float64)
    made["film-grain.png"] = Image.fromarray(np.clip(p + rng.normal(0, 6, p.shape[:2])[..., None], 0, 255)
                                             .round().astype(np.uint8))
    r = np.hypot(*(np.mgrid[0:480, 0:400] - np.array([240, 200])[:, None, None]))
    body = np.asarray(photo(30).convert("L").resize((400, 480)), dtype=np.float64) / 255
    xray = 20 + 180 * np.exp(-(r / 170) ** 4) * (0.7 + 0.3 * body) + rng.normal(0, 1.5, r.shape)
    made["xray-like-L.png"] = Image.fromarray(np.clip(xray, 0, 255).round().astype(np.uint8), "L")
    paths = []
    for name, im in made.items():
        im.save(folder / name)
        paths.append(folder / name)
    return paths


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    ap.add_argument("--effort", type=int, default=4)
    ap.add_argument("--images", type=Path, default=Path("/tmp/pixzip-everyday"))
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    rows = ["| image | mode | size | pixzip | PNG | WebP | JPEG XL e9 | x PNG | x WebP | x JXL e9 | s |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    total = {"pixzip": 0, "png": 0, "webp": 0, "jxl9": 0}
    for path in make_images(args.images, args.data):
        image = read_image(path, path.name)
        data, _, seconds = coded(image, args.effort)
        o = reference_sizes(path, webp=True)
        for k, v in (("pixzip", len(data)), *o.items()):
            total[k] += v
        rows.append(f"| {path.name} | {image.mode} | {image.width}x{image.height} | {len(data)} | {o['png']} | "
                    f"{o['webp']} | {o['jxl9']} | {len(data) / o['png']:.3f} | {len(data) / o['webp']:.3f} | "
                    f"{len(data) / o['jxl9']:.3f} | {seconds:.2f} |")
    rows.append(f"| **all** | | | **{total['pixzip']}** | {total['png']} | {total['webp']} | {total['jxl9']} | "
                f"{total['pixzip'] / total['png']:.3f} | {total['pixzip'] / total['webp']:.3f} | "
                f"**{total['pixzip'] / total['jxl9']:.3f}** | |")
    head = heading(f"Everyday images, `-e {args.effort}`",
                   "PYTHONPATH=$PWD python3 bench/everyday.py --data ../shared/data --out bench/results/everyday.md",
                   "one encode")
    publish(head + "\n".join(rows) + ("\n\nEvery pixzip file decoded and compared; PNG: Pillow optimize; WebP: Pillow "
                                     "lossless, method 6, exact (round trip checked); JPEG XL: imagecodecs lossless "
                                     "effort 9 (round trip checked; a P image as its RGB).\n"), args.out)

if __name__ == "__main__":
    main()
