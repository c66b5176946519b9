"""Mutation fuzzing of every decoder through the calls `pixzip decompress` makes (api.decompress: the
container and metadata parsers, format v1/v2 through constriction, v3 through the rANS lanes and the
native coder), and of the encoder on odd images. Meant to run on the sanitizer build of the native
coder (fuzz/sanitized_build.py), where an out-of-bounds access or undefined behaviour aborts the process:

    python3 fuzz/harness.py --seconds 60             # plain build
    python3 fuzz/run_sanitized.py --seconds 3600     # ASan + UBSan build (builds it first)

Seeds: the golden files of every format version (tiny test models) and files made at start-up with the
shipped models at every effort, in every mode, at several tile sizes. Each execution takes a seed,
applies one to three mutations (truncation, bit flips, byte runs set to extremes, splices of two seeds,
a header varint replaced by an extreme value, random bytes behind a valid header, insertions,
deletions) and, most of the time, recomputes the file's checksums so that the mutation reaches the
parsers and the coder behind them instead of stopping at the CRC. Decoding must end in a PixzipError or
in pixels that pass the file's pixel checksum; anything else (another exception, a crash, a sanitizer
report) is a finding. Before each execution the input is written to <findings>/current.pxz, so the
input of a crash survives it; findings of the other kinds are saved as <findings>/finding-N.pxz.

Exit status: 0 no finding; 1 a finding (the report on stderr); the sanitizer's own codes on a report.
"""

from __future__ import annotations

import argparse
import random
import struct
import sys
import time
import traceback
import zlib
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pixzip import api  # noqa: E402
from pixzip.formats import container, images  # noqa: E402
from pixzip.formats.varint import varint  # noqa: E402
from pixzip.nets import modelfile  # noqa: E402
from pixzip.errors import PixzipError  # noqa: E402

GOLDEN = ROOT / "tests" / "golden"
MAX_PIXELS = 1 << 16          # keeps every execution small: a mutated size field is refused, not decoded
EXTREMES = (0, 1, 0x7F, 0x80, 0xFF, 0xFFFF, (1 << 31) - 1, 1 << 31, (1 << 32) - 1, (1 << 63) - 1)


def golden_models() -> list:
    return [modelfile.load(GOLDEN / f) for f in ("golden-rgb.pxm", "golden-gray.pxm", "golden-rgb16.pxm")]


def test_images(rng: np.random.Generator) -> list[images.ImageData]:
    """Small images in every mode, smooth and noisy, odd sizes."""
    from PIL import Image
    out = []
    for h, w in ((1, 1), (3, 17), (19, 23), (33, 9)):
        yy, xx = np.mgrid[0:h, 0:w]
        smooth = np.stack([xx * 7, yy * 5, (xx + yy) * 3], -1) % 256
        noisy = rng.integers(0, 256, (h, w, 3))
        for pixels in (smooth, noisy):
            im = Image.fromarray(pixels.astype(np.uint8))
            for mode in ("RGB", "RGBA", "L", "LA", "1"):
                out.append(images.split(im.convert(mode)))
            out.append(images.split(im.quantize(colors=int(rng.integers(2, 64)))))
    return out


def make_seeds(rng: np.random.Generator) -> list[bytes]:
    """Golden files of every version, and fresh files from the shipped models at both efforts."""
    seeds = [p.read_bytes() for p in sorted(GOLDEN.rglob("*.pxz"))]
    ims = test_images(rng)
    # static rANS (1), transforms (2), the adaptive stage at both levels with stored tiles (4, 5), the
    # ensemble (3, slow to encode under ASan: a quarter of the images); v3 files too
    for effort, every in ((1, 1), (2, 2), (3, 4), (4, 1), (5, 2)):
        for tile in (0, 8):
            for im in ims[::every]:
                seeds.append(api.compress(im, tile=tile, effort=effort)[0])
    seeds += [api.compress(im, tile=8, effort=1, version=3)[0] for im in ims[::3]]
    return seeds


def coder_in_use() -> str:
    """Which native library decodes, and whether it carries AddressSanitizer's instrumentation."""
    from pixzip.backends import native
    lib = native._LIB
    if lib is None:
        return "none (torch path)"
    try:
        lib.__asan_report_load1
        instrumented = "yes"
    except AttributeError:
        instrumented = "no"
    return f"{lib._name} (ASan instrumented: {instrumented})"


def header_end(blob: bytes) -> int:
    """Where the header body ends (its CRC follows), from the preamble; 0 if it does not parse."""
    if len(blob) < 12 or blob[:8] != container.MAGIC:
        return 0
    pos, length, shift = 10, 0, 0
    while pos < len(blob) and shift < 63:
        byte = blob[pos]
        length |= (byte & 0x7F) << shift
        pos, shift = pos + 1, shift + 7
        if not byte & 0x80:
            break
    return pos + length if pos + length + 4 <= len(blob) else 0


def fix_checksums(blob: bytearray) -> bytearray:
    """Recompute the CRCs of a file whose preamble still parses (versions 1-3: the header's CRC sits
    right after the header body)."""
    end = header_end(blob)
    if not end:
        return blob
    version = blob[8]
    if version == 1:
        crc = zlib.crc32(bytes(blob[:end]))
    else:
        crc = zlib.crc32(bytes(blob[end + 4:]), zlib.crc32(bytes(blob[:end])))
    blob[end:end + 4] = struct.pack("<I", crc)
    return blob


def mutate(blob: bytes, seeds: list[bytes], r: random.Random) -> bytearray:
    """Half the time the compressed streams alone (the coder's input), else anywhere."""
    start = header_end(blob) + 4
    if start > 4 and start < len(blob) and r.random() < 0.5:
        # the stream table fixes the streams' lengths: keep them, so the damage reaches the coder
        payload = mutate_anywhere(blob[start:], seeds, r, len(blob), kinds=(1, 2, 8))
        return fix_checksums(bytearray(blob[:start]) + payload)
    return mutate_anywhere(blob, seeds, r, 160)


def mutate_anywhere(blob: bytes, seeds: list[bytes], r: random.Random, hot: int,
                    kinds: tuple = tuple(range(9))) -> bytearray:
    """One to three mutations of the given kinds, most of them in the first `hot` bytes (where the
    fields are)."""
    b = bytearray(blob)
    hot_end = min(len(b), r.randrange(1, hot + 1))
    for _ in range(r.randint(1, 3)):
        kind = r.choice(kinds)
        at = r.randrange(max(1, hot_end if r.random() < 0.6 else len(b)))
        if kind == 0 and b:
            del b[r.randrange(len(b)):]                                      # truncation
        elif kind == 1 and b:
            b[min(at, len(b) - 1)] ^= 1 << r.randrange(8)                    # bit flip
        elif kind == 2:
            n = min(r.randint(1, 8), len(b) - at)                            # a run set to an extreme
            b[at:at + n] = bytes([r.choice((0, 0xFF, 0x7F, 0x80))]) * n
        elif kind == 3:
            other = r.choice(seeds)                                          # splice
            b = b[:at] + bytearray(other[r.randrange(len(other) + 1):])
        elif kind == 4:
            old_len = r.randint(1, 9)                                        # varint field -> extreme
            b[at:at + old_len] = varint(r.choice(EXTREMES))
        elif kind == 5:
            b[at:] = r.randbytes(r.randrange(0, 200))                        # random bytes behind a header
        elif kind == 6:
            b[at:at] = r.randbytes(r.randint(1, 16))                         # insertion
        elif kind == 7 and b:
            del b[at:at + r.randint(1, 16)]                                  # deletion
        elif kind == 8 and len(b) >= 4:
            pos = r.randrange(len(b) - 3)                                    # a 32-bit word -> extreme
            b[pos:pos + 4] = struct.pack("<I", r.choice(EXTREMES) & 0xFFFFFFFF)
    return fix_checksums(b) if r.random() < 0.85 else b


def decode_once(blob: bytes, models: list) -> str:
    """'ok' or 'refused'; raises on anything else."""
    try:
        api.decompress(blob, models, max_pixels=MAX_PIXELS)
    except PixzipError:
        return "refused"
    return "ok"


def encode_once(im: images.ImageData, r: random.Random, models: list) -> None:
    """A random image coded and decoded back: exact, or a finding."""
    data, _ = api.compress(im, tile=r.choice((0, 1, 5, 8, 256)), effort=r.randint(1, 6))
    out, _ = api.decompress(data, models)
    if out.pixel_bytes() != im.pixel_bytes():
        raise AssertionError("round trip changed the pixels")


def random_image(r: random.Random) -> images.ImageData:
    from PIL import Image
    h, w = r.randint(1, 40), r.randint(1, 40)
    rng = np.random.default_rng(r.randrange(1 << 32))
    im = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    mode = r.choice(("RGB", "RGBA", "L", "LA", "1", "P"))
    return images.split(im.quantize(colors=r.randint(1, 256)) if mode == "P" else im.convert(mode))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=30.0, help="stop after this long (default 30)")
    ap.add_argument("--executions", type=int, default=0, help="or after this many decodes (0: no limit)")
    ap.add_argument("--seed", type=int, default=0, help="random seed (the run is reproducible from it)")
    ap.add_argument("--findings", type=Path, default=ROOT / "build" / "fuzz-findings")
    ap.add_argument("--encode-every", type=int, default=50, help="one encoder round trip per N decodes")
    args = ap.parse_args(argv)
    args.findings.mkdir(parents=True, exist_ok=True)
    r = random.Random(args.seed)
    models = golden_models()
    seeds = make_seeds(np.random.default_rng(args.seed))
    counts = {"ok": 0, "refused": 0, "encodes": 0}
    current = args.findings / "current.pxz"
    findings = 0
    start = time.monotonic()
    while time.monotonic() - start < args.seconds and not (args.executions and
                                                             counts["ok"] + counts["refused"] >= args.executions):
        blob = bytes(mutate(r.choice(seeds), seeds, r))
        current.write_bytes(blob)
        try:
            counts[decode_once(blob, models)] += 1
            if args.encode_every and (counts["ok"] + counts["refused"]) % args.encode_every == 0:
                encode_once(random_image(r), r, models)
                counts["encodes"] += 1
        except Exception:
            findings += 1
            saved = args.findings / f"finding-{findings}.pxz"
            saved.write_bytes(blob)
            print(f"FINDING {saved}:\n{traceback.format_exc()}", file=sys.stderr)
    current.unlink(missing_ok=True)
    seconds = time.monotonic() - start
    total = counts["ok"] + counts["refused"]
    print(f"coder: {coder_in_use()}")
    print(f"{total} decodes ({counts['refused']} refused, {counts['ok']} decoded), {counts['encodes']} encoder "
          f"round trips, {len(seeds)} seeds, {seconds:.0f} s, {total / max(seconds, 1e-9):.0f} exec/s, "
          f"{findings} findings")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
