"""What the benches of images made here share (bench/two_values.py, scans.py, everyday.py): the file pixzip writes,
decoded and compared; the other codecs' sizes in the same run, each round trip checked; the table's heading with
the time and commit. Imported by those scripts (they run with bench/ on the path)."""

from __future__ import annotations

import io
import subprocess
import time
from pathlib import Path

import numpy as np
from PIL import Image

from pixzip import api

# the array JPEG XL codes for an image of each mode (bilevel as grey, a palette as its colours; the rest as they are)
_JXL_MODE = {"1": "L", "P": "RGB"}


def coded(image, effort: int):
    """pixzip's file for `image` at `effort`, its header, and the encode's seconds; the file decoded and compared."""
    t = time.perf_counter()
    data, _ = api.compress(image, effort=effort)
    seconds = time.perf_counter() - t
    back, header = api.decompress(data)
    assert back.pixel_bytes() == image.pixel_bytes(), image
    return data, header, seconds


def reference_sizes(path: Path, webp: bool = False) -> dict[str, int]:
    """PNG (Pillow optimize), JPEG XL e9 lossless (imagecodecs) and, with `webp`, WebP lossless (method 6, exact:
    invisible pixels kept) sizes of the image file at `path`, each round trip checked but PNG's."""
    import imagecodecs
    im = Image.open(path)
    png = io.BytesIO()
    im.save(png, format="PNG", optimize=True)
    a = np.asarray(im.convert(_JXL_MODE[im.mode]) if im.mode in _JXL_MODE else im)
    jxl = imagecodecs.jpegxl_encode(a, lossless=True, effort=9)
    assert np.array_equal(imagecodecs.jpegxl_decode(jxl), a)
    sizes = {"png": len(png.getvalue()), "jxl9": len(jxl)}
    if webp:
        shown, buf = im.convert("RGBA" if im.mode in ("RGBA", "LA") else "RGB"), io.BytesIO()
        shown.save(buf, format="WEBP", lossless=True, method=6, quality=100, exact=True)
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert(shown.mode)), np.asarray(shown))
        sizes["webp"] = len(buf.getvalue())
    return sizes


def heading(title: str, command: str, seconds: str) -> str:
    """A results file's first lines: its title, the command that makes it, the time and commit, what the seconds are."""
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    return (f"# {title}\n\n    {command}\n\n{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, pixzip "
            f"{commit or '?'}; the seconds are {seconds}, on whatever else ran.\n\n")


def publish(text: str, out: Path | None) -> None:
    print(text)
    if out:
        out.write_text(text)
