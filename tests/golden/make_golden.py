"""Write the golden .pxz files of the current format version (only when the version changes: move the
old ones to a folder named after their version first, e.g. v1/, v2/; they must keep decoding).

    python tests/golden/make_golden.py

Writes two tiny models, one small image per mode, their .pxz files and the SHA-256 of the decoded pixels.
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

from conftest import make_tiny_model  # noqa: E402
from pixzip import api  # noqa: E402
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
        data, _ = api.compress(d, used, tile=8)
        (HERE / f"{name}.pxz").write_bytes(data)
        expected[f"{name}.pxz"] = {"mode": im.mode, "size": list(im.size), "sha256": pixel_hash(im)}
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
    data, _ = api.compress(images.split(golden_images()["rgb"]), [modelfile.load(path)], tile=8)
    (HERE / "rgb16.pxz").write_bytes(data)


if __name__ == "__main__":
    main()
