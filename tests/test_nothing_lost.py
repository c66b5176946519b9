"""Nothing lost (issue 18): every input kind either round-trips exactly through `pixzip compress` and
`decompress` (pixels, bit depth, channels, alpha, palette) or is refused in one line with nothing
written. The pixels are compared by an independent decoder (imagecodecs: libpng, libtiff, libwebp,
giflib), never by Pillow, which truncates 16-bit colour."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from pixzip.formats import pngio
from pixzip.cli import main

ic = pytest.importorskip("imagecodecs")
png = pytest.importorskip("png")
tifffile = pytest.importorskip("tifffile")

H, W = 7, 9


def run(*args):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def samples(rng, channels: int, bits: int) -> np.ndarray:
    return rng.integers(0, 1 << bits, (H, W, channels)).astype(np.uint16 if bits > 8 else np.uint8)


def pypng_bytes(a: np.ndarray, bits: int, **kw) -> bytes:
    buf = io.BytesIO()
    c = a.shape[2]
    png.Writer(W, H, greyscale=c <= 2, alpha=c in (2, 4), bitdepth=bits, **kw).write(buf, a.reshape(H, -1).tolist())
    return buf.getvalue()


def palette_png(rng, bits: int, with_trns: bool) -> bytes:
    n = 1 << bits
    colours = [tuple(int(v) for v in rng.integers(0, 256, 3)) for _ in range(n)]
    if with_trns:
        colours[0] = colours[0] + (0,)
        colours[1] = colours[1] + (128,)
    buf = io.BytesIO()
    png.Writer(W, H, palette=colours, bitdepth=bits).write(buf, rng.integers(0, n, (H, W)).tolist())
    return buf.getvalue()


def tiff_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    c = a.shape[2]
    tifffile.imwrite(buf, a if c > 1 else a[..., 0], photometric="rgb" if c >= 3 else "minisblack",
                     extrasamples=("unassalpha",) if c in (2, 4) else None)
    return buf.getvalue()


def pnm_bytes(a: np.ndarray, bits: int) -> bytes:
    magic = b"P5" if a.shape[2] == 1 else b"P6"
    maxval = (1 << bits) - 1
    return magic + f"\n# made by a test\n{W} {H}\n{maxval}\n".encode() + a.astype(">u2" if bits > 8 else np.uint8).tobytes()


def pillow_bytes(a: np.ndarray, fmt: str, mode: str | None = None, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a[..., 0] if a.shape[2] == 1 else a, mode).save(buf, format=fmt, **kw)
    return buf.getvalue()


def _pbm(bits: np.ndarray) -> bytes:
    """A raw PBM (P4): 1 is black, rows padded to whole bytes."""
    return f"P4\n{W} {H}\n".encode() + np.packbits(bits.astype(np.uint8), axis=1).tobytes()


def cases():
    """(file name, bytes) of every input kind that must round-trip."""
    rng = np.random.default_rng(18)
    out = []
    for bits in (1, 2, 4, 8, 16):
        out.append((f"grey{bits}.png", pypng_bytes(samples(rng, 1, bits), bits)))
    for bits in (8, 16):
        for c, name in ((2, "la"), (3, "rgb"), (4, "rgba")):
            out.append((f"{name}{bits}.png", ic.png_encode(samples(rng, c, bits))))
        out.append((f"grey{bits}-trns.png", pypng_bytes(samples(rng, 1, bits), bits, transparent=3)))
        out.append((f"rgb{bits}-trns.png", pypng_bytes(samples(rng, 3, bits), bits, transparent=(1, 2, 3))))
    out.append(("rgb16-interlaced.png", pypng_bytes(samples(rng, 3, 16), 16, interlace=True)))
    for bits in (1, 2, 4, 8):
        for trns in (False, True):
            out.append((f"p{bits}{'-trns' if trns else ''}.png", palette_png(rng, bits, trns)))
    for bits in (8, 16):
        for c in (1, 2, 3, 4):
            out.append((f"tiff{bits}-{c}.tif", tiff_bytes(samples(rng, c, bits))))
        for c in (1, 3):
            out.append((f"pnm{bits}-{c}.{'pgm' if c == 1 else 'ppm'}", pnm_bytes(samples(rng, c, bits), bits)))
    out.append(("bits.pbm", _pbm(samples(rng, 1, 1)[..., 0])))
    indices = Image.fromarray(samples(rng, 1, 5)[..., 0], "P")
    indices.putpalette(rng.integers(0, 256, 96).astype(np.uint8).tobytes())
    buf = io.BytesIO()
    indices.save(buf, format="TIFF")
    out.append(("palette.tif", buf.getvalue()))
    out.append(("rgb.bmp", pillow_bytes(samples(rng, 3, 8), "BMP")))
    out.append(("grey.bmp", pillow_bytes(samples(rng, 1, 8), "BMP")))
    out.append(("rgba.webp", ic.webp_encode(samples(rng, 4, 8), lossless=True)))
    out.append(("rgb.webp", ic.webp_encode(samples(rng, 3, 8), lossless=True)))
    for trns in (False, True):
        im = Image.fromarray(samples(rng, 1, 4)[..., 0], "P")
        im.putpalette(rng.integers(0, 256, 48).astype(np.uint8).tobytes())
        buf = io.BytesIO()
        im.save(buf, format="GIF", **({"transparency": 3} if trns else {}))
        out.append((f"still{'-trns' if trns else ''}.gif", buf.getvalue()))
    return out


def independent_decode(path: str) -> np.ndarray:
    """Samples as imagecodecs' decoders (not Pillow) give them; PNM by its header (trivial format)."""
    data = Path(path).read_bytes()
    if data[:2] == b"P4":
        w, h = map(int, data.split(b"\n")[1].split())
        return np.unpackbits(np.frombuffer(data[-h * ((w + 7) // 8):], np.uint8).reshape(h, -1), axis=1)[:, :w]
    if data[:2] in (b"P5", b"P6"):
        header = data.split(b"\n")
        w, h = map(int, [t for t in header if not t.startswith(b"#")][1].split())
        maxval = int([t for t in header if not t.startswith(b"#")][2])
        c = 1 if data[:2] == b"P5" else 3
        return np.frombuffer(data[-w * h * c * (2 if maxval > 255 else 1):],
                             dtype=">u2" if maxval > 255 else np.uint8).reshape(h, w, c)
    if path.endswith(".gif"):
        return rgba(ic.gif_decode(data))
    if path.endswith(".gif.png"):           # a GIF's colours, as a PNG: compared as RGBA
        return rgba(ic.png_decode(data))
    return ic.imread(data)


def rgba(a: np.ndarray) -> np.ndarray:
    """RGBA, with the colour of fully transparent pixels zeroed (giflib gives them no colour)."""
    a = a[..., None] if a.ndim == 2 else a
    a = np.repeat(a, 3, axis=2) if a.shape[2] == 1 else a
    a = np.concatenate([a, np.full(a.shape[:2] + (1,), 255, a.dtype)], axis=2) if a.shape[2] == 3 else a.copy()
    a[a[..., 3] == 0] = 0
    return a


def ihdr(path: str):
    """What a PNG's header says about its samples (interlacing is a storage detail: written plain)."""
    h = pngio.read_header(Path(path).read_bytes(), path)
    return h.width, h.height, h.depth, h.colour_type


@pytest.mark.parametrize("name,data", cases(), ids=[n for n, _ in cases()])
def test_every_kind_round_trips_exactly(tmp_path, tiny_models, monkeypatch, name, data):
    monkeypatch.chdir(tmp_path)
    Path(name).write_bytes(data)
    r = run("compress", name, "-q")
    assert r.exit_code == 0, r.stderr
    os.rename(name, "source-" + name)
    r = run("decompress", name + ".pxz", "-q")
    assert r.exit_code == 0, r.stderr
    restored = name if not name.endswith(".gif") else name + ".png"
    expected, got = independent_decode("source-" + name), independent_decode(restored)
    assert expected.dtype == got.dtype and expected.shape == got.shape
    assert np.array_equal(expected, got)
    if name.endswith(".png"):          # the same bit depth and colour type, the same tRNS and PLTE
        assert ihdr(restored) == ihdr("source-" + name)
        chunks = {t: p for t, p in pngio.iter_chunks(Path("source-" + name).read_bytes(), name)
                  if t in (b"PLTE", b"tRNS")}
        assert chunks == {t: p for t, p in pngio.iter_chunks(Path(restored).read_bytes(), name)
                          if t in (b"PLTE", b"tRNS")}


def test_sixteen_bit_images_keep_their_low_bytes(tmp_path, tiny_models, monkeypatch):
    """The issue's repro: a 16-bit RGB PNG came back 8-bit with exit 0."""
    monkeypatch.chdir(tmp_path)
    a = np.random.default_rng(0).integers(0, 65536, (20, 30, 3)).astype(np.uint16)
    Path("rgb16.png").write_bytes(ic.png_encode(a))
    assert run("compress", "--verify", "rgb16.png").exit_code == 0
    assert run("decompress", "rgb16.png.pxz", "-o", "rt.png").exit_code == 0
    back = ic.png_decode(Path("rt.png").read_bytes())
    assert back.dtype == np.uint16 and np.array_equal(back, a)
    r = run("info", "rgb16.png.pxz")
    assert "30x20 RGB, 16-bit" in r.stdout and "16-bit planes:   samples, low 8 bits coded apart" in r.stdout


@pytest.mark.parametrize("out", ["x.tif", "x.ppm"])
def test_sixteen_bit_to_other_formats_that_hold_16_bits(tmp_path, tiny_models, monkeypatch, out):
    monkeypatch.chdir(tmp_path)
    a = np.random.default_rng(1).integers(0, 65536, (5, 6, 3)).astype(np.uint16)
    Path("a.png").write_bytes(ic.png_encode(a))
    assert run("compress", "a.png", "-q").exit_code == 0
    assert run("decompress", "a.png.pxz", "-o", out).exit_code == 0
    assert np.array_equal(independent_decode(out), a)


@pytest.mark.parametrize("out", ["x.bmp", "x.webp"])
def test_sixteen_bit_to_an_8_bit_format_is_refused(tmp_path, tiny_models, monkeypatch, out):
    monkeypatch.chdir(tmp_path)
    Path("a.png").write_bytes(ic.png_encode(np.full((4, 4), 1000, np.uint16)))
    assert run("compress", "a.png", "-q").exit_code == 0
    r = run("decompress", "a.png.pxz", "-o", out)
    assert r.exit_code == 1 and "16-bit" in r.stderr and not Path(out).exists()
    assert len(r.stderr.strip().splitlines()) == 1


def refused_cases():
    rng = np.random.default_rng(5)
    cmyk = io.BytesIO()
    Image.new("CMYK", (4, 4)).save(cmyk, format="JPEG")
    float_tif, int_tif, pages = io.BytesIO(), io.BytesIO(), io.BytesIO()
    tifffile.imwrite(float_tif, rng.random((4, 4, 3)).astype(np.float32), photometric="rgb")
    tifffile.imwrite(int_tif, rng.integers(0, 1 << 30, (4, 4)).astype(np.uint32))
    with tifffile.TiffWriter(pages) as tif:
        for _ in range(3):
            tif.write(rng.integers(0, 65535, (4, 4)).astype(np.uint16))
    anim = io.BytesIO()
    frames = [Image.new("RGB", (4, 4), (60 * k, 0, 0)) for k in range(3)]
    frames[0].save(anim, format="PNG", save_all=True, append_images=frames[1:])
    return [("cmyk.jpg", cmyk.getvalue(), "CMYK"), ("float.tif", float_tif.getvalue(), "not supported"),
            ("int32.tif", int_tif.getvalue(), "not supported"), ("pages.tif", pages.getvalue(), "3 "),
            ("anim.png", anim.getvalue(), "3 frames"),
            ("maxval.pgm", b"P5 2 2 1023\n" + b"\x00" * 8, "maximum value 1023")]


@pytest.mark.parametrize("name,data,why", refused_cases(), ids=[n for n, _, _ in refused_cases()])
def test_what_cannot_be_kept_is_refused_in_one_line(tmp_path, tiny_models, monkeypatch, name, data, why):
    monkeypatch.chdir(tmp_path)
    Path(name).write_bytes(data)
    r = run("compress", name)
    assert r.exit_code == 1 and why in r.stderr and name in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert sorted(os.listdir(".")) == [name]


def test_jpeg_is_kept_as_its_decoded_pixels_with_a_warning(tmp_path, tiny_models, monkeypatch):
    monkeypatch.chdir(tmp_path)
    a = samples(np.random.default_rng(2), 3, 8)
    Path("a.jpg").write_bytes(pillow_bytes(a, "JPEG", quality=80))
    r = run("compress", "a.jpg")
    assert r.exit_code == 0
    warning = [line for line in r.stderr.splitlines() if "warning" in line]
    assert len(warning) == 1 and "JPEG" in warning[0] and "larger" in warning[0] and "a.jpg" in warning[0]
    assert "warning" not in run("compress", "a.jpg", "-q", "-f").stderr
    assert run("decompress", "a.jpg.pxz").exit_code == 0
    # what is kept is the JPEG decoder's output (Pillow's libjpeg, the decoder pixzip reads with)
    assert np.array_equal(ic.png_decode(Path("a.jpg.png").read_bytes()), np.asarray(Image.open("a.jpg")))


def test_lossy_webp_warns_and_lossless_webp_does_not(tmp_path, tiny_models, monkeypatch):
    monkeypatch.chdir(tmp_path)
    a = samples(np.random.default_rng(3), 3, 8)
    Path("lossy.webp").write_bytes(ic.webp_encode(a, level=80, lossless=False))
    Path("lossless.webp").write_bytes(ic.webp_encode(a, lossless=True))
    assert "lossy WebP" in run("compress", "lossy.webp").stderr
    assert "warning" not in run("compress", "lossless.webp").stderr


def test_sub_8_bit_grey_to_pnm_and_tiff_is_written_at_8_bits_with_the_same_values(tmp_path, tiny_models,
                                                                                    monkeypatch):
    """Formats other than PNG have no 2-bit grey: the samples go out scaled to 8 bits (as any viewer
    shows them), 0..3 -> 0, 85, 170, 255."""
    monkeypatch.chdir(tmp_path)
    Path("g.png").write_bytes(pypng_bytes(np.arange(H * W).reshape(H, W, 1) % 4, 2))
    assert run("compress", "g.png", "-q").exit_code == 0
    assert run("decompress", "g.png.pxz", "-o", "g.tif").exit_code == 0
    assert np.array_equal(independent_decode("g.tif"), (np.arange(H * W).reshape(H, W) % 4 * 85).astype(np.uint8))


def test_the_png_writer_deflates_in_blocks_with_the_same_bytes_on_any_thread_count(monkeypatch):
    """The restored PNG is filtered and deflated block by block (memory bounded by the blocks: 50 MP
    decompressed in 6.3 GiB before; blocks deflate in parallel, as pigz): the stream inflates to every row
    filtered at once, for any block height, and its bytes do not depend on the thread count."""
    import zlib
    rng = np.random.default_rng(3)
    for h, w, bpp in ((1, 1, 1), (9, 5, 3), (301, 40, 6)):
        rows = rng.integers(0, 256, (h, w * bpp)).astype(np.uint8)
        rows[:, :w] = (np.arange(w) % 5)[None, :]            # some rows a filter likes
        whole = pngio._filter(rows, bpp)
        for block_bytes in (1, 7 * w * bpp, 1 << 18):         # one row, a few rows, all rows a block
            monkeypatch.setattr(pngio, "BLOCK_BYTES", block_bytes)
            one = pngio._idat(rows, bpp)
            assert zlib.decompress(one) == whole              # zlib checks the Adler-32 too
            assert pngio._idat(rows, bpp, threads=3) == one
    a, b = b"pixzip" * 5000, bytes(range(256)) * 300
    assert pngio._adler32_combine(zlib.adler32(a), zlib.adler32(b), len(b)) == zlib.adler32(a + b)
