"""Rates and speeds of pixzip against PNG, WebP, JPEG XL, JPEG 2000, JPEG-LS and QOI (all lossless),
measured in one run on the same images.

Every codec's round trip is checked, not assumed. Rates come from real encoded bytes.
"""

from __future__ import annotations

import io
import json
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from . import api
from .errors import PixzipError
from .formats import images
from .training.data import list_sources


@dataclass
class Result:
    codec: str
    images: int = 0
    subpixels: int = 0
    pixels: int = 0
    bytes: int = 0
    encode_s: float = 0.0
    decode_s: float = 0.0
    exact: bool = True
    model_bits: float = 0.0            # pixzip only: the model's ideal code length
    models: list = field(default_factory=list)   # pixzip only: the models its files name, in first use order
    per_image: list = field(default_factory=list)

    @property
    def label(self) -> str:
        """The codec, and for pixzip the models its files name."""
        return f"{self.codec} ({', '.join(self.models)})" if self.models else self.codec

    @classmethod
    def from_row(cls, row: dict) -> "Result":
        """A result read back from the JSON that write_json wrote (to plot several runs together)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in row.items() if k in names})

    @property
    def bpsp(self) -> float:
        return 8 * self.bytes / max(self.subpixels, 1)

    def add(self, img_name: str, a: np.ndarray, blob: bytes, encode_s: float, decode_s: float, exact: bool,
            model_bits: float = 0.0):
        """Account one image's coded bytes, times and round-trip check."""
        self.images += 1
        self.pixels += a.shape[0] * a.shape[1]
        self.subpixels += a.size
        self.bytes += len(blob)
        self.encode_s += encode_s
        self.decode_s += decode_s
        self.exact &= exact
        self.model_bits += model_bits
        if model_bits:                 # a pixzip file: which models coded it (e.g. those an effort level chose)
            self.models += [n for n in _model_names(blob) if n not in self.models]
        self.per_image.append({"image": img_name, "bytes": len(blob), "bpsp": 8 * len(blob) / a.size,
                               "encode_s": encode_s, "decode_s": decode_s, "exact": exact})

    def row(self) -> dict:
        d = {k: v for k, v in asdict(self).items() if k != "per_image"}
        d.update(bits_per_subpixel=self.bpsp, encode_mp_s=self.pixels / 1e6 / max(self.encode_s, 1e-9),
                 decode_mp_s=self.pixels / 1e6 / max(self.decode_s, 1e-9))
        if self.model_bits:
            d.update(model_bits_per_subpixel=self.model_bits / self.subpixels,
                     overhead_pct=100 * (8 * self.bytes / self.model_bits - 1))
        d["per_image"] = self.per_image
        return d


# -- codecs: encode(array) -> (bytes, extra) and decode(bytes) -> array --------------------------------
def _model_names(blob: bytes) -> list[str]:
    return [ref.name or ref.id[:16] for ref in api.read_header(blob).models]


def _png_encode(a):
    buf = io.BytesIO()
    Image.fromarray(a.squeeze(-1) if a.shape[-1] == 1 else a).save(buf, "PNG", optimize=True)
    return buf.getvalue()


def _pil_decode(b):
    a = np.asarray(Image.open(io.BytesIO(b)))
    return a[..., None] if a.ndim == 2 else a


def _imagecodecs():
    try:
        import imagecodecs
    except ImportError:
        raise PixzipError("this codec needs imagecodecs (pip install -e '.[bench]')") from None
    return imagecodecs


def _squeeze(a):
    return a[..., 0] if a.shape[-1] == 1 else a


def _expand(a):
    return a[..., None] if a.ndim == 2 else a


def _rgb_only(encode, decode):
    """A codec without a grey mode: grey is coded as RGB, as a user would have to, and one channel
    (they are identical) taken back."""
    grey = []

    def enc(a):
        grey[:] = [a.shape[-1] == 1]
        return encode(np.repeat(a, 3, axis=-1) if grey[0] else a)

    def dec(b):
        a = decode(b)
        return a[..., :1] if grey and grey[0] else a
    return enc, dec


def _webp():
    ic = _imagecodecs()
    return _rgb_only(lambda a: ic.webp_encode(a, level=100, lossless=True, method=6), ic.webp_decode)


def _qoi():
    ic = _imagecodecs()
    return _rgb_only(ic.qoi_encode, ic.qoi_decode)


def _jpeg2000():
    ic = _imagecodecs()    # reversible 5/3 wavelet and colour transform: lossless
    return (lambda a: ic.jpeg2k_encode(_squeeze(a), level=0, reversible=True),
            lambda b: _expand(ic.jpeg2k_decode(b)))


def _jpegls():
    ic = _imagecodecs()    # near-lossless distance 0: lossless
    return lambda a: ic.jpegls_encode(_squeeze(a), level=0), lambda b: _expand(ic.jpegls_decode(b))


def _jxl(effort):
    ic = _imagecodecs()
    return (lambda a: ic.jpegxl_encode(_squeeze(a), lossless=True, effort=effort),
            lambda b: _expand(ic.jpegxl_decode(b)))


def _pixzip(models, tile, workers, device=None, effort=1):
    def enc(a):
        im = Image.fromarray(_squeeze(a))
        data, stats = api.compress(images.split(im), models, tile, workers=workers, device=device, effort=effort)
        return data, stats.model_bits

    def dec(b):
        image, _ = api.decompress(b, models, workers=workers, device=device)
        return np.concatenate(image.planes, axis=2)
    return enc, dec


def codec_table(models=(), tile: int | None = None, workers: int = 1, device=None,
                effort: int = 1) -> dict[str, Callable]:
    return {"pixzip": lambda: _pixzip(models, tile, workers, device, effort), "png": lambda: (_png_encode, _pil_decode),
            "webp": _webp, "jxl7": lambda: _jxl(7), "jxl9": lambda: _jxl(9), "jpeg2000": _jpeg2000,
            "jpegls": _jpegls, "qoi": _qoi}


# -- data ---------------------------------------------------------------------------------------------
def load_images(paths, grey: bool = False, limit: int = 0, items: slice = slice(None)):
    """(name, uint8 (H, W, C)) for every image file and every item of every .npy stack (`items` selects
    rows of the stacks, e.g. slice(-1000, None) for a held-out tail)."""
    out = []
    for f in list_sources(paths):
        if f.suffix.lower() == ".npy":
            stack = np.load(f, mmap_mode="r", allow_pickle=False)
            rows = range(len(stack))[items]
            for k in rows:
                out.append((f"{f.name}[{k}]", _expand(np.asarray(stack[k], dtype=np.uint8))))
        else:
            try:
                with Image.open(f) as im:
                    out.append((f.name, _expand(np.asarray(im.convert("RGB")))))
            except (OSError, SyntaxError, ValueError) as e:
                raise PixzipError(f"{f}: not an image Pillow can read ({type(e).__name__})") from None
        if limit and len(out) >= limit:
            out = out[:limit]
            break
    if grey:
        out = [(n, _expand(np.asarray(Image.fromarray(_squeeze(a)).convert("L")))) for n, a in out]
    return out


BATCH_PIXELS = 1 << 20    # small images are coded together, as `pixzip compress *.png` does


def _pixzip_batched(data, models, tile, workers, progress, device=None, effort=1) -> Result:
    """pixzip on many small images: each is its own file, byte for byte what it is alone (tested), but
    encoded and decoded in batches as the CLI does for several inputs; times are shared out by pixels."""
    r = Result("pixzip")
    batch = []
    for k, item in enumerate(data):
        batch.append(item)
        if sum(a.shape[0] * a.shape[1] for _, a in batch) < BATCH_PIXELS and k + 1 < len(data):
            continue
        ims = [images.split(Image.fromarray(_squeeze(a))) for _, a in batch]
        t0 = time.perf_counter()
        coded = api.compress_many(ims, models, tile, workers=workers, device=device, effort=effort)
        t1 = time.perf_counter()
        back = api.decompress_many([blob for blob, _ in coded], models, workers=workers, device=device)
        t2 = time.perf_counter()
        px = sum(a.shape[0] * a.shape[1] for _, a in batch)
        for (img_name, a), (blob, stats), b in zip(batch, coded, back):
            exact = not isinstance(b, Exception) and np.array_equal(np.concatenate(b[0].planes, axis=2), a)
            share = a.shape[0] * a.shape[1] / px
            r.add(img_name, a, blob, (t1 - t0) * share, (t2 - t1) * share, exact, stats.model_bits)
            if progress:
                progress("pixzip", img_name)
        batch = []
    return r


def run(data, codecs: list[str], models=(), tile: int | None = None, progress=None,
        workers: int = 1, device=None, effort: int = 1) -> list[Result]:
    """Every codec on every image; pixzip's network on `device` (None: the CPU), its default models
    those of `effort`."""
    table = codec_table(models, tile, workers, device, effort)
    unknown = [c for c in codecs if c not in table]
    if unknown:
        raise PixzipError(f"unknown codec(s): {', '.join(unknown)} (known: {', '.join(table)})")
    results = []
    for name in codecs:
        if name == "pixzip" and len(data) > 1 and max(a.shape[0] * a.shape[1] for _, a in data) <= BATCH_PIXELS // 4:
            results.append(_pixzip_batched(data, models, tile, workers, progress, device, effort))
            continue
        enc, dec = table[name]()
        r = Result(name)
        for img_name, a in data:
            t0 = time.perf_counter()
            out = enc(a)
            t1 = time.perf_counter()
            blob, model_bits = out if isinstance(out, tuple) else (out, 0.0)
            back = dec(blob)
            t2 = time.perf_counter()
            exact = back.shape == a.shape and np.array_equal(back, a)
            r.add(img_name, a, blob, t1 - t0, t2 - t1, exact, model_bits)
            if progress:
                progress(name, img_name)
        results.append(r)
    return results


def markdown(results: list[Result]) -> str:
    ref = next((r for r in results if r.codec == "jxl9"), None) or next((r for r in results if r.codec == "jxl7"), None)
    lines = ["| codec | bits/sub-pixel | vs " + (ref.codec if ref else "-") +
             " | exact | encode MP/s | decode MP/s | model bits/sub-pixel | file overhead |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results:
        d = r.row()
        rel = f"{r.bpsp / ref.bpsp:.3f}" if ref else "-"
        model = f"{d['model_bits_per_subpixel']:.4f}" if r.model_bits else ""
        over = f"{d['overhead_pct']:+.2f}%" if r.model_bits else ""
        lines.append(f"| {r.label} | {r.bpsp:.4f} | {rel} | {'yes' if r.exact else 'NO'} | "
                     f"{d['encode_mp_s']:.3f} | {d['decode_mp_s']:.3f} | {model} | {over} |")
    return "\n".join(lines)


def write_json(results: list[Result], path: Path, meta: dict):
    Path(path).write_text(json.dumps({"meta": meta, "results": [r.row() for r in results]}, indent=1))


def plot(results: list[Result], path: Path, title: str):
    """Rate against decode speed, one point per codec (needs matplotlib: pip install -e '.[bench]')."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise PixzipError("--plot needs matplotlib (pip install -e '.[bench]')") from None
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    for k, r in enumerate(sorted(results, key=lambda r: r.bpsp)):
        d = r.row()
        ax.scatter(d["decode_mp_s"], r.bpsp, s=40)
        # labels alternately above and below their points: codecs of nearly the same rate stay readable
        ax.annotate(r.label, (d["decode_mp_s"], r.bpsp), textcoords="offset points",
                    xytext=(6, 4 if k % 2 else -12), fontsize=9)
    ax.set_xscale("log")
    ax.set_xlabel("decode speed (megapixels/s, log scale)")
    ax.set_ylabel("bits per sub-pixel (lower is better)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
