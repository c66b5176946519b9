"""Mutation fuzzing of the adaptive stage's tile decoder (csrc/adaptive.c through the wavefront walk in
csrc/adaptive_tiles.c, in one thread or several), called directly: no container in front, so every mutated byte
reaches the binary arithmetic decoder, the context tables and the mixers. Run it on the sanitizer build:

    python3 fuzz/run_sanitized.py --target adaptive --seconds 3600

(fuzz/run_sanitized.py passes `--target adaptive` here). Seeds: tiles of smooth and noisy images, 1x1 to
40x40, coded with the shipped colour and grey defaults at every adaptive level (LEVELS, 1 to 18: counters and
mixers, the residual and least-squares predictors, the vote, the shifted table, the values as contexts, the median
predictor in the network's place, a bilevel coder's templates, the match model and its value as the centre, a value's
own bits as the decisions), fresh and chained
states, and levels planes coded in value space (entropy stage 4: a value map, a channel of one value among them). Mutations: bit
flips, byte runs set to extremes, truncations, extensions with random bytes,
random streams of plausible length; and a wrong tile size for a valid stream. Decoding must return
pixels or raise ValueError (the stream does not decode exactly to its end); a crash or a sanitizer
report is a finding, as is any other exception.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
import traceback
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pixzip import zoo  # noqa: E402
from pixzip.backends import native  # noqa: E402
from pixzip.entropy.adaptive import LEVELS  # noqa: E402
from pixzip.entropy.value_map import ValueMap  # noqa: E402


def seed_tiles(rng: np.random.Generator) -> list[tuple]:
    """(model, level, pixels, stream, chained-from pixels or None, value map or None) for the mutations to start
    from."""
    seeds = []
    for channels in (3, 1):
        model = zoo.default_model(channels, 256 * 256, 1).net
        for h, w in ((1, 1), (2, 9), (17, 5), (24, 24), (40, 33)):
            yy, xx = np.mgrid[0:h, 0:w]
            smooth = (np.stack([xx * 7 + yy * 3, yy * 5, (xx + yy) * 3], -1) % 256)[..., :channels]
            noisy = rng.integers(0, 256, (h, w, channels))
            for pixels in (smooth.astype(np.uint8), noisy.astype(np.uint8)):
                for level in LEVELS:
                    seeds.append((model, level, pixels, native.encode_tile_adaptive(model, pixels, level), None, None))
            # a levels plane in value space: 32 levels (the last channel one), ranks coded, values to the network
            tables = [np.arange(0, 256, 8)] * (channels - 1) + [np.array([77])]
            vmap = ValueMap.of(tables)
            ranks = np.stack([rng.integers(0, len(t), (h, w)) for t in tables], -1).astype(np.uint8)
            for level in (7, 9, 11, 17):
                seeds.append((model, level, ranks, native.encode_tile_adaptive(model, ranks, level, vmap=vmap), None,
                              vmap))
        for level in (1, max(LEVELS)):                                     # a chain of two tiles
            first = rng.integers(0, 256, (8, 8, channels), dtype=np.uint8)
            state = native.AdaptiveState(level, 2 * first.size)
            native.encode_tile_adaptive(model, first, level, state)
            second = np.ascontiguousarray(first[::-1])
            seeds.append((model, level, second, native.encode_tile_adaptive(model, second, level, state), first, None))
    return seeds


def mutate(stream: bytes, r: random.Random) -> bytes:
    b = bytearray(stream)
    for _ in range(r.randint(1, 3)):
        kind = r.randrange(6)
        at = r.randrange(len(b) + 1)
        if kind == 0 and b:
            b[min(at, len(b) - 1)] ^= 1 << r.randrange(8)
        elif kind == 1:
            n = r.randint(1, 8)
            b[at:at + n] = bytes([r.choice((0, 0xFF, 0x7F, 0x80))]) * n
        elif kind == 2:
            del b[at:]
        elif kind == 3:
            b += r.randbytes(r.randint(1, 64))
        elif kind == 4:
            b = bytearray(r.randbytes(max(0, len(stream) + r.randint(-8, 8))))
        elif kind == 5 and b:
            del b[at:at + r.randint(1, 8)]
    return bytes(b)


def decode_once(seed: tuple, stream: bytes, r: random.Random) -> str:
    model, level, pixels, _, chained_from, vmap = seed
    h, w, _ = pixels.shape
    if r.random() < 0.1:                      # the right stream for a tile of another size
        h, w = max(1, h + r.randint(-2, 2)), max(1, w + r.randint(-2, 2))
    state = None
    if chained_from is not None:
        state = native.AdaptiveState(level, 2 * chained_from.size)
        native.encode_tile_adaptive(model, chained_from, level, state)
    threads = r.choice((1, 1, 2, 3))          # the walk's rows split between threads, too (adaptive_tiles.c, walk_adaptive)
    try:
        native.decode_tile_adaptive(model, stream, h, w, level, state, vmap, threads)
    except ValueError:
        return "refused"
    return "decoded"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--executions", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--findings", type=Path, default=ROOT / "build" / "fuzz-findings")
    args = ap.parse_args(argv)
    if not native.adaptive_available():
        print("the compiled coder with the adaptive stage is not available", file=sys.stderr)
        return 2
    args.findings.mkdir(parents=True, exist_ok=True)
    r = random.Random(args.seed)
    seeds = seed_tiles(np.random.default_rng(args.seed))
    counts = {"decoded": 0, "refused": 0}
    findings, start = 0, time.monotonic()
    current = args.findings / "current-adaptive.bin"
    while time.monotonic() - start < args.seconds and not (args.executions and sum(counts.values()) >= args.executions):
        seed = r.choice(seeds)
        stream = mutate(seed[3], r)
        current.write_bytes(stream)
        try:
            counts[decode_once(seed, stream, r)] += 1
        except Exception:
            findings += 1
            saved = args.findings / f"adaptive-finding-{findings}.bin"
            saved.write_bytes(stream)
            print(f"FINDING {saved}:\n{traceback.format_exc()}", file=sys.stderr)
    current.unlink(missing_ok=True)
    seconds = time.monotonic() - start
    total = sum(counts.values())
    lib = native._LIB
    print(f"coder: {lib._name}")
    print(f"{total} adaptive tile decodes ({counts['refused']} refused, {counts['decoded']} decoded), {len(seeds)} seeds, "
          f"{seconds:.0f} s, {total / max(seconds, 1e-9):.0f} exec/s, {findings} findings")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
