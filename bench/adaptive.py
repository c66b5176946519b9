"""The adaptive entropy stage (issue 20) against today's static rANS lanes: real stream bytes per effort
level, how adaptive state is shared across tiles, and speeds with the network, on the native coder.

    PYTHONPATH=$PWD python3 bench/adaptive.py --data cbsd68 --out bench/results/adaptive-cbsd68.md
    PYTHONPATH=$PWD python3 bench/adaptive.py --data kinds --out bench/results/adaptive-kinds.md
    PYTHONPATH=$PWD python3 bench/adaptive.py --data cifar --out bench/results/adaptive-cifar.md

Per image: the plane is cut into tiles (`--tile`, 256 by default, tile_grid); each tile is coded
(1) with today's rANS lanes (native.encode_tile, the stream of format v3: packed lane states + words) and
(2) with the adaptive stage at each level (native.encode_tile_adaptive), every stream decoded back and
compared. Bytes are the tiles' streams only (the container's header and framing are the same for both).
State sharing (`--chains`): `tile` = a fresh state per tile (tiles stay independent: the default),
`row` = one state carried along each row of tiles, `image` = one state through all tiles in raster order.
Speeds: images coded one after another, their tiles in `--threads` threads (wall clock, MP/s), and the
CPU time per tile summed over threads (MP/s per core); best of `--repeat` runs. The machine is shared:
read the per-core figures, and the wall figures only as what this run saw.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from pixzip import zoo
from pixzip.backends import native
from pixzip.entropy.lanes import pack_states
from pixzip.formats.tiles import lanes_per_tile, tile_grid

DATA = Path(os.environ.get("PIXZIP_DATA", "/work/shared/data"))


def load_images(which: str) -> list[tuple[str, np.ndarray]]:
    if which == "cbsd68":
        return [(Path(f).stem, np.asarray(Image.open(f).convert("RGB"))) for f in sorted(glob.glob(str(DATA / "cbsd68/*.png")))]
    if which == "kinds":        # the RGB images only: this bench runs the RGB model (L and P are the codec's)
        out = []
        for f in sorted(glob.glob(str(DATA / "kinds/*.png"))):
            im = Image.open(f)
            if im.mode == "RGB":
                out.append((Path(f).stem, np.asarray(im)))
        return out
    if which == "cifar":        # the last 200 rows of the partial training set, one image each
        rows = np.load(DATA / "cifar10/train_x_partial.npy")[-200:]
        return [(f"cifar-{k}", np.ascontiguousarray(r)) for k, r in enumerate(rows)]
    raise SystemExit(f"unknown data {which!r}")


def tiles_of(img: np.ndarray, tile: int):
    return [np.ascontiguousarray(img[y:y + h, x:x + w]) for y, x, h, w in tile_grid(*img.shape[:2], tile)]


def timed(f):
    """(result, CPU seconds of this thread)"""
    t = time.thread_time()
    r = f()
    return r, time.thread_time() - t


def rans_image(model, tiles, pool):
    def enc(t):
        states, words, _, _ = native.encode_tile(model, t, lanes_per_tile(*t.shape[:2], model.slope))
        return states, words, 4 * len(pack_states(states)) + 4 * len(words)

    def dec(args):
        t, (states, words, _) = args
        out = native.decode_tile(model, states.copy(), words, *t.shape[:2])
        assert np.array_equal(out, t)

    return _run(pool, tiles, enc, dec, lambda r: r[2])


def adaptive_image(model, tiles, pool, level):
    def enc(t):
        return native.encode_tile_adaptive(model, t, level)

    def dec(args):
        t, data = args
        assert np.array_equal(native.decode_tile_adaptive(model, data, *t.shape[:2], level), t)

    return _run(pool, tiles, enc, dec, len)


def _run(pool, tiles, enc, dec, size):
    t0 = time.perf_counter()
    coded = list(pool.map(lambda t: timed(lambda: enc(t)), tiles))
    t1 = time.perf_counter()
    dec_cpu = list(pool.map(lambda a: timed(lambda: dec(a))[1], zip(tiles, [c for c, _ in coded])))
    t2 = time.perf_counter()
    return dict(bytes=sum(size(c) for c, _ in coded), enc_wall=t1 - t0, dec_wall=t2 - t1,
                enc_cpu=sum(s for _, s in coded), dec_cpu=sum(dec_cpu))


def chained_bytes(model, img, tile, level, chains):
    """Stream bytes with one state per chain of tiles (encode only: the decoder follows the same chain,
    tests/test_adaptive.py checks that chains decode)."""
    grid = tile_grid(*img.shape[:2], tile)
    groups: dict = {}
    for y, x, h, w in grid:
        groups.setdefault(y if chains == "row" else 0, []).append((y, x, h, w))
    total = 0
    for group in groups.values():
        state = native.AdaptiveState(level, sum(h * w * img.shape[2] for _, _, h, w in group))
        for y, x, h, w in group:
            total += len(native.encode_tile_adaptive(model, np.ascontiguousarray(img[y:y + h, x:x + w]), state=state))
    return total


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="cbsd68", choices=["cbsd68", "kinds", "cifar"])
    ap.add_argument("--model", default="pcnn-rgb-v7")
    ap.add_argument("--tile", type=int, default=256)
    ap.add_argument("--levels", default="1,2")
    ap.add_argument("--chains", default="tile,row,image", help="state sharing to measure (rates); tile is timed")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=1, help="timing runs (best of)")
    ap.add_argument("--limit", type=int, default=0, help="first N images only")
    ap.add_argument("--out", default="")
    a = ap.parse_args()
    model = zoo.load_model(a.model).net
    if not native.adaptive_available() or not native.supports(model):
        raise SystemExit("needs the compiled coder with the adaptive stage and a model it runs")
    images = load_images(a.data)[: a.limit or None]
    levels = [int(v) for v in a.levels.split(",")]
    chains = [c for c in a.chains.split(",") if c]
    subpixels = sum(img.size for _, img in images)
    mp = subpixels / 3 / 1e6
    rows, per_image = [], {}
    with ThreadPoolExecutor(a.threads) as pool:
        runs = [("rANS (static, format v3)", lambda img: rans_image(model, tiles_of(img, a.tile), pool))]
        runs += [(f"adaptive level {lv}", (lambda lv: lambda img: adaptive_image(model, tiles_of(img, a.tile), pool, lv))(lv))
                 for lv in levels]
        for name, run in runs:
            best = None
            for _ in range(a.repeat):
                tot = dict(bytes=0, enc_wall=0.0, dec_wall=0.0, enc_cpu=0.0, dec_cpu=0.0)
                for key, img in images:
                    r = run(img)
                    per_image.setdefault(key, {})[name] = r["bytes"]
                    for k in tot:
                        tot[k] += r[k]
                best = tot if best is None else {k: (tot[k] if k == "bytes" else min(best[k], tot[k])) for k in tot}
            rows.append((name, best))
            print(f"{name}: {8 * best['bytes'] / subpixels:.4f} bpsp, wall enc/dec {mp / best['enc_wall']:.3f} / "
                  f"{mp / best['dec_wall']:.3f} MP/s ({a.threads} threads), per core {mp / best['enc_cpu']:.3f} / "
                  f"{mp / best['dec_cpu']:.3f} MP/s", flush=True)
    chain_rows = []
    for lv in levels:
        for c in chains:
            if c == "tile":
                b = next(r for n, r in rows if n == f"adaptive level {lv}")["bytes"]
            else:
                b = sum(chained_bytes(model, img, a.tile, lv, c) for _, img in images)
            chain_rows.append((lv, c, b))
            print(f"level {lv}, state per {c}: {8 * b / subpixels:.4f} bpsp", flush=True)
    static = rows[0][1]["bytes"]
    lines = [f"# Adaptive stage vs static rANS: {a.data} ({len(images)} images, {subpixels} sub-pixels, model "
             f"{a.model}, tile {a.tile})", "",
             f"Command: `PYTHONPATH=$PWD python3 bench/adaptive.py {' '.join(sys.argv[1:])}`  ",
             f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; kernel {native.kernel()}; load average at "
             f"the end {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (shared machine: wall speeds are what this "
             f"run saw, per-core speeds are CPU time per tile summed over threads); best of {a.repeat}.", "",
             "| coder | bpsp (streams) | vs static | encode MP/s wall | decode MP/s wall | encode MP/s/core | decode MP/s/core |",
             "|---|---|---|---|---|---|---|"]
    for name, r in rows:
        lines.append(f"| {name} | {8 * r['bytes'] / subpixels:.4f} | {r['bytes'] / static:.4f} | {mp / r['enc_wall']:.3f} | "
                     f"{mp / r['dec_wall']:.3f} | {mp / r['enc_cpu']:.3f} | {mp / r['dec_cpu']:.3f} |")
    lines += ["", "State sharing across tiles (rates; `tile` = fresh per tile, `row` = chained along each row of "
              "tiles, `image` = one chain in raster order):", "", "| level | state | bpsp | vs static |", "|---|---|---|---|"]
    for lv, c, b in chain_rows:
        lines.append(f"| {lv} | {c} | {8 * b / subpixels:.4f} | {b / static:.4f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if a.out:
        Path(a.out).write_text(text)
        Path(a.out).with_suffix(".json").write_text(json.dumps(per_image, indent=0))


if __name__ == "__main__":
    main()
