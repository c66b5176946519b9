"""Held-out synthetic images, made here from fixed seeds (no set of ours was tuned on them): matplotlib charts
(anti-aliased lines, bars, a pie, a filled band chart, a histogram, a scatter with transparency, an annotated heat
map), rendered text with a button and with a photograph inset (a CBSD68 photo), a radial gradient, and a grey photo
saved as RGB. Each coded by `pixzip compress -e E` (decoded and compared) beside PNG (Pillow optimize) and JPEG XL
e9 in the same run, and with the transform chooser's estimate alone (no check of a near-palette by trial: session
20's chooser) to show what the check buys.

    PYTHONPATH=$PWD python3 bench/synthetic_kinds.py --data ../shared/data --out bench/results/synthetic-kinds.md

Needs matplotlib and imagecodecs (the bench extras)."""

from __future__ import annotations

import argparse
import io
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from pixzip import api
from pixzip.formats import transforms
from pixzip.formats.images import read_image


def _figure(name: str, folder: Path, draw, size=(6.4, 4.2), dpi=100):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=size, dpi=dpi)
    draw(ax, plt)
    fig.savefig(folder / name)
    plt.close(fig)


def make_images(folder: Path, data: Path) -> list[Path]:
    """The images (PNG files in `folder`), the same bytes on every run with the same library versions."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    x = np.linspace(0, 10, 200)
    walks = [rng.normal(0, .1, 200).cumsum() * .1 for _ in range(4)]

    def lines(ax, plt):
        for k in range(4):
            ax.plot(x, np.sin(x + k) * (k + 1) + walks[k], label=f"s{k}")
        ax.legend(); ax.grid(True); ax.set_title("held-out chart")
    _figure("chart-lines.png", folder, lines)
    heights = rng.integers(3, 20, 12)
    _figure("chart-bars.png", folder, lambda ax, plt: (ax.bar(range(12), heights, color=plt.cm.viridis(np.linspace(0, 1, 12))),
                                                      ax.set_xlabel("month")))
    xs, ys, cs = rng.normal(size=800), rng.normal(size=800), rng.random(800)
    _figure("chart-scatter.png", folder, lambda ax, plt: ax.scatter(xs, ys, c=cs, alpha=.5, cmap="plasma"), (6.4, 4.8))
    rng = np.random.default_rng(11)
    shares = rng.integers(1, 10, 6)
    _figure("chart-pie.png", folder, lambda ax, plt: ax.pie(shares, labels=list("abcdef"), autopct="%1.0f%%"), (5, 5))
    m = rng.random((8, 8))

    def heat(ax, plt):
        ax.imshow(m, cmap="coolwarm")
        for i in range(8):
            for j in range(8):
                ax.text(j, i, f"{m[i, j]:.1f}", ha="center", va="center", fontsize=7)
    _figure("chart-heatmap.png", folder, heat, (6, 5))
    a, b = rng.normal(size=5000), rng.normal(1, 1, 5000)
    _figure("chart-hist.png", folder, lambda ax, plt: (ax.hist(a, bins=80, color="tab:orange", alpha=.7),
                                                      ax.hist(b, bins=80, alpha=.5)), (7, 4), 110)
    t = np.linspace(0, 6, 300)

    def fill(ax, plt):
        for k in range(3):
            ax.fill_between(t, np.sin(t + k), np.sin(t + k) + .5, alpha=.3)
            ax.plot(t, np.sin(t + k), lw=2)
    _figure("chart-fill.png", folder, fill, (7, 4))
    font = ImageFont.load_default(size=15)
    words = "the quick brown fox jumps over the lazy dog lossless image compression pixel network".split()
    rng = np.random.default_rng(7)
    im = Image.new("RGB", (800, 500), (250, 250, 252))
    d = ImageDraw.Draw(im)
    for row in range(24):
        d.text((20, 10 + row * 20), " ".join(rng.choice(words, 10)), fill=(30, 30, 40), font=font)
    d.rectangle((600, 50, 780, 200), fill=(60, 120, 200))
    d.text((610, 60), "Button", fill=(255, 255, 255), font=font)
    im.save(folder / "text-screen.png")
    rng = np.random.default_rng(11)
    im = Image.new("RGB", (900, 600), (245, 245, 245))
    d = ImageDraw.Draw(im)
    menu = "window file edit view help pixel image lossless codec".split()
    for row in range(28):
        d.text((20, 10 + row * 20), " ".join(rng.choice(menu, 7)), fill=(20, 20, 20), font=ImageFont.load_default(size=14))
    im.paste(Image.open(data / "cbsd68" / "126007.png").convert("RGB").resize((320, 214)), (560, 40))
    im.save(folder / "screen-photo.png")
    yy, xx = np.mgrid[0:480, 0:640]
    r = np.hypot(yy - 200, xx - 300) / 400
    g = np.stack([255 * (1 - r), 128 + 100 * np.sin(r * 3), 255 * r], -1).clip(0, 255).astype(np.uint8)
    Image.fromarray(g).save(folder / "gradient-radial.png")
    Image.open(data / "cbsd68" / "108005.png").convert("L").convert("RGB").save(folder / "grey-as-rgb-cbsd.png")
    return sorted(folder.glob("*.png"))


def _estimate_only(image, try_coding=None, max_trials=None, check_listed=False, threads=1, _choose=transforms.choose):
    return _choose(image, None if check_listed else try_coding, max_trials, threads=threads)


def measure(paths: list[Path], effort: int) -> list[dict]:
    import imagecodecs
    rows = []
    for path in paths:
        image = read_image(path, path.name)
        t = time.time()
        data, _ = api.compress(image, effort=effort)
        seconds = time.time() - t
        back, _ = api.decompress(data)
        assert back.pixel_bytes() == image.pixel_bytes(), path
        shipped, transforms.choose = transforms.choose, _estimate_only
        try:
            t = time.time()
            plain = len(api.compress(image, effort=effort)[0])
            plain_seconds = time.time() - t
        finally:
            transforms.choose = shipped
        pil = Image.open(path)
        png = io.BytesIO()
        pil.save(png, "PNG", optimize=True)
        arr = np.asarray(pil)
        rows.append({"image": path.name, "mode": pil.mode, "size": f"{pil.width}x{pil.height}", "pixzip": len(data),
                     "seconds": seconds, "estimate_only": plain, "estimate_seconds": plain_seconds,
                     "png": len(png.getvalue()), "jxl9": len(imagecodecs.jpegxl_encode(arr, lossless=True, effort=9))})
    return rows


def table(rows: list[dict], effort: int, command: str) -> str:
    out = [f"# Held-out synthetic images at `-e {effort}`\n", f"    {command}\n",
           f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. Every pixzip file decoded and compared: all exact. "
           "Estimate only: the transform chooser without the near-palette check (session 20's). Seconds: one "
           "encode, two threads.\n",
           "| image | mode | size | pixzip | estimate only | PNG | JPEG XL e9 | x PNG | x JXL e9 | s | s (estimate only) |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r['image']} | {r['mode']} | {r['size']} | {r['pixzip']} | {r['estimate_only']} | {r['png']} | "
                   f"{r['jxl9']} | {r['pixzip'] / r['png']:.3f} | {r['pixzip'] / r['jxl9']:.3f} | {r['seconds']:.2f} | "
                   f"{r['estimate_seconds']:.2f} |")
    tot = {k: sum(r[k] for r in rows) for k in ("pixzip", "estimate_only", "png", "jxl9", "seconds", "estimate_seconds")}
    out.append(f"| **all** | | | **{tot['pixzip']}** | {tot['estimate_only']} | {tot['png']} | {tot['jxl9']} | "
               f"{tot['pixzip'] / tot['png']:.3f} | **{tot['pixzip'] / tot['jxl9']:.3f}** | {tot['seconds']:.1f} | "
               f"{tot['estimate_seconds']:.1f} |")
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    ap.add_argument("--images", type=Path, default=Path("/tmp/pixzip-synthetic"), help="where the images are written")
    ap.add_argument("--effort", type=int, default=4)
    ap.add_argument("--out", type=Path, default=Path("bench/results/synthetic-kinds.md"))
    args = ap.parse_args()
    rows = measure(make_images(args.images, args.data), args.effort)
    command = (f"PYTHONPATH=$PWD python3 bench/synthetic_kinds.py --data {args.data} --effort {args.effort} "
               f"--out {args.out}")
    args.out.write_text(table(rows, args.effort, command))
    print(args.out.read_text())


if __name__ == "__main__":
    main()
