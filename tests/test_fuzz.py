"""Property-based fuzzing of the decoder: truncated, bit-flipped, spliced and random inputs must end in a
PixzipError (a clear message), never another exception, and never in wrong pixels. A longer run:

    PIXZIP_FUZZ_EXAMPLES=20000 python3 -m pytest tests/test_fuzz.py -q
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from pixzip import api
from pixzip.errors import PixzipError
from pixzip.formats import images
from pixzip.nets import modelfile

GOLDEN = Path(__file__).resolve().parent / "golden"
EXAMPLES = int(os.environ.get("PIXZIP_FUZZ_EXAMPLES", "150"))
MODELS = [modelfile.load(GOLDEN / f) for f in ("golden-rgb.pxm", "golden-gray.pxm", "golden-rgb16.pxm", "golden-gray16.pxm")]
SEEDS = {p.name: p.read_bytes() for p in sorted(GOLDEN.glob("*.pxz"))}
ORIGINALS = {name: api.decompress(data, MODELS)[0].pixel_bytes() for name, data in SEEDS.items()}
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))


def check(data: bytes, original: bytes | None):
    """Decoding either fails cleanly or returns exactly the original pixels."""
    try:
        image, _ = api.decompress(data, MODELS, max_pixels=1 << 16)
    except PixzipError:
        return
    assert original is not None and image.pixel_bytes() == original


seed_names = st.sampled_from(sorted(SEEDS))


@FUZZ
@given(seed_names, st.data())
def test_truncation(name, data):
    blob = SEEDS[name]
    cut = data.draw(st.integers(0, len(blob) - 1))
    check(blob[:cut], None)


@FUZZ
@given(seed_names, st.data())
def test_bit_flips(name, data):
    blob = bytearray(SEEDS[name])
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(blob) - 1))
        blob[pos] ^= 1 << data.draw(st.integers(0, 7))
    check(bytes(blob), ORIGINALS[name])


@FUZZ
@given(seed_names, seed_names, st.data())
def test_splices(a, b, data):
    x, y = SEEDS[a], SEEDS[b]
    i = data.draw(st.integers(0, len(x)))
    j = data.draw(st.integers(0, len(y)))
    blob = x[:i] + y[j:]
    check(blob, next((ORIGINALS[n] for n, d in SEEDS.items() if d == blob), None))


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes(blob):
    check(blob, None)
    check(b"\x89PXZ\r\n\x1a\n" + blob, None)


@FUZZ
@given(st.integers(1, 12), st.integers(1, 12), st.sampled_from(["L", "LA", "RGB", "RGBA", "P", "1"]),
       st.integers(0, 2 ** 32 - 1))
def test_odd_images_round_trip(h, w, mode, seed):
    rng = np.random.default_rng(seed)
    im = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    im = im.quantize(colors=int(rng.integers(1, 256))) if mode == "P" else im.convert(mode)
    d = images.split(im)
    used = [m for m in MODELS[:2] if any(p.shape[2] == m.channels for p in d.planes)]
    data, _ = api.compress(d, used, tile=int(rng.integers(0, 9)))
    out, _ = api.decompress(data, MODELS)
    assert out.pixel_bytes() == d.pixel_bytes()
    assert np.array_equal(np.asarray(images.merge(out)), np.asarray(im))
