"""Every effort level on one data set beside PNG, WebP and JPEG XL e7/e9, in one run (issue 20's tables).

    PYTHONPATH=$PWD python3 bench/effort_tables.py --data cifar  --jobs 2     # the last 1000 CIFAR rows
    PYTHONPATH=$PWD python3 bench/effort_tables.py --data kinds  --jobs 2     # ../shared/data/kinds, 32 files
    PYTHONPATH=$PWD python3 bench/effort_tables.py --data cbsd68 --jobs 2     # ../shared/data/cbsd68, 68 files
    PYTHONPATH=$PWD python3 bench/effort_tables.py --plot-only                # redraw effort-levels.png

Writes bench/results/effort-<data>.md and .json (or --out PREFIX) and redraws
bench/results/effort-levels.png from whichever effort-*.json exist. One command per data set re-makes
its table: re-run it whenever a level's coding changes (the adaptive stage: levels 4-9).

pixzip: each image is read as `pixzip compress` reads it (formats.images.read_image: P and L stay P and
L; a CIFAR row is first written as its own 32x32 PNG file) and coded as the CLI codes it
(api.compress_many: small images share a batched pass, each file byte for byte what it is alone), once
per level; every file is decoded (api.decompress_many) and its pixels, depth and metadata compared.
"stream bits" are the container's model_bits: the network's ideal code length for statically coded
planes, the coded stream bits for adaptive ones (api._CodedPlane.bits).

The other codecs run once per image, whatever the levels: PNG is Pillow's optimize=True re-save in the
image's own mode; WebP lossless (imagecodecs, method 6, quality 100) and JPEG XL lossless (imagecodecs
libjxl, effort 7 and 9) code L as L (WebP: as RGB, it has no grey), P as RGB, and anything with alpha
or a transparent colour as RGBA. Every one is decoded and compared.

Speed: images are coded in chunks (a chunk is one image, or consecutive small images up to
--chunk-pixels) spread over --jobs processes of --threads threads each (default: the cores shared out;
--jobs 2 on 2 cores gives one thread each). Reported per level: wall MP/s (pixels / the summed wall
seconds of that level's calls, i.e. the speed of one job) and CPU MP/s (pixels / the CPU seconds of the
job's process: one busy core's speed; two idle cores give about twice that where an image has two tiles
or more). The load average is sampled during the run and printed with the table: on a shared machine
the wall figures are what the run saw.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import shlex
import subprocess
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "bench" / "results"
SETS = ("cbsd68", "kinds", "cifar")
OTHERS = ("png", "webp", "jxl7", "jxl9")
CIFAR_HELD_OUT = 1000          # the last rows of train_x_partial.npy, held out from every training
DEFAULT_CHUNK = 1 << 17        # pixels: 128 CIFAR images a chunk, one CBSD68 photo


def parse_levels(text: str) -> list[int]:
    out = []
    for part in text.split(","):
        a, _, b = part.partition("-")
        out += range(int(a), int(b or a) + 1)
    return sorted(set(out))


# -- the images ----------------------------------------------------------------------------------------
def sources(data: str, limit: int, match: str = "") -> list[tuple[str, object]]:
    """(name, source) per image: a file path, or ("cifar", row) for a row of the CIFAR stack."""
    if data == "cifar":
        n = len(np.load(DATA / "cifar10" / "train_x_partial.npy", mmap_mode="r"))
        rows = list(range(n - CIFAR_HELD_OUT, n))
        out = [(f"train_x_partial.npy[{k}]", ("cifar", k)) for k in rows]
    else:
        out = [(f.name, str(f)) for f in sorted((DATA / data).glob("*.png"))]
    out = [(n, s) for n, s in out if match in n]
    return out[:limit] if limit else out


_CIFAR = []


def load(source) -> tuple[bytes, Image.Image]:
    """The image file's bytes (what `pixzip compress` would read) and it opened by Pillow."""
    if isinstance(source, tuple):
        if not _CIFAR:
            _CIFAR.append(np.load(DATA / "cifar10" / "train_x_partial.npy", mmap_mode="r"))
        buf = io.BytesIO()
        Image.fromarray(np.asarray(_CIFAR[0][source[1]], dtype=np.uint8)).save(buf, "PNG")
        raw = buf.getvalue()
    else:
        raw = Path(source).read_bytes()
    pim = Image.open(io.BytesIO(raw))
    pim.load()
    return raw, pim


# -- the other codecs ------------------------------------------------------------------------------------
def codec_array(pim: Image.Image) -> np.ndarray:
    """What WebP and JPEG XL are given: grey as grey, alpha or a transparent colour as RGBA, else RGB."""
    if pim.mode in ("RGBA", "LA", "PA") or "transparency" in pim.info:
        return np.asarray(pim.convert("RGBA"))
    if pim.mode in ("L", "1"):
        return np.asarray(pim.convert("L"))
    if pim.mode not in ("RGB", "P"):
        raise SystemExit(f"{pim.mode} images are not handled by this bench")
    return np.asarray(pim.convert("RGB"))


# each codec: (encode: () -> bytes, decode: bytes -> decoded, same: decoded -> exact?); only the first two timed
def png_codec(pim):
    def enc():
        buf = io.BytesIO()
        pim.save(buf, "PNG", optimize=True)
        return buf.getvalue()

    def dec(blob):
        back = Image.open(io.BytesIO(blob))
        back.load()
        return back

    def same(back):
        return back.mode == pim.mode and np.array_equal(np.asarray(back.convert("RGBA")),
                                                        np.asarray(pim.convert("RGBA")))
    return enc, dec, same


def webp_codec(a):
    import imagecodecs as ic
    fed = np.repeat(a[..., None], 3, axis=2) if a.ndim == 2 else a
    return (lambda: ic.webp_encode(fed, level=100, lossless=True, method=6), ic.webp_decode,
            lambda back: np.array_equal(back, fed))


def jxl_codec(a, effort):
    import imagecodecs as ic
    return (lambda: ic.jpegxl_encode(a, lossless=True, effort=effort), ic.jpegxl_decode,
            lambda back: np.array_equal(np.squeeze(back), np.squeeze(a)))


def timed(fn, *args):
    w, c = time.perf_counter(), time.process_time()
    out = fn(*args)
    return out, time.perf_counter() - w, time.process_time() - c


# -- one chunk, in a worker process ----------------------------------------------------------------------
_THREADS = [1]


def init_worker(threads: int):
    """One process of the pool: its thread count, and the models loaded before any clock starts."""
    import torch
    torch.set_num_threads(threads)
    _THREADS[0] = threads
    from pixzip import api
    from pixzip.formats.images import ImageData
    rng = np.random.default_rng(0)
    for side in (16, 80):                          # the small-image and the photo defaults
        for c, mode in ((3, "RGB"), (1, "L")):
            im = ImageData(mode, side, side, [rng.integers(0, 256, (side, side, c), dtype=np.uint8)])
            for e in (1, 3, 4):                    # single networks, the ensemble, the adaptive stage
                api.decompress(api.compress(im, effort=e, workers=threads)[0], workers=threads)


def run_chunk(items: list, levels: list[int]) -> dict:
    """Code a chunk of images at every level (batched, as the CLI) and with the other codecs (each
    image once); check every round trip."""
    from pixzip import api
    from pixzip.formats import container, images, transforms
    threads = _THREADS[0]
    loaded = [(name, *load(src)) for name, src in items]
    ims = [images.read_image(raw, name) for name, raw, _ in loaded]
    recs = [{"image": name, "mode": im.mode, "width": im.width, "height": im.height, "pixels": im.width * im.height,
             "levels": {}, "others": {}} for (name, _, _), im in zip(loaded, ims)]
    stage_names = {container.STATIC: "static", container.ADAPTIVE: "adaptive", container.STORED: "stored",
                   container.LZ: "LZMA2", container.ADAPTIVE_VALUES: "adaptive (values)"}
    timing = {}
    for e in levels:
        coded, te, ce = timed(lambda: api.compress_many(ims, effort=e, workers=threads))
        back, td, cd = timed(lambda: api.decompress_many([b for b, _ in coded], workers=threads))
        timing[e] = {"encode_s": te, "encode_cpu_s": ce, "decode_s": td, "decode_cpu_s": cd}
        for rec, im, (blob, st), got in zip(recs, ims, coded, back):
            exact = not isinstance(got, Exception) and got[0].pixel_bytes() == im.pixel_bytes() and \
                got[0].metadata == im.metadata and got[0].depth == im.depth and got[0].mode == im.mode
            h = api.read_header(blob)
            rec["subpixels"] = st.subpixels
            rec["levels"][str(e)] = {
                "bytes": len(blob), "stream_bits": st.model_bits, "exact": bool(exact),
                "stages": [stage_names[s] + (f" L{lv}" if s in container.ADAPTIVE_STAGES else "")
                           + (f" ({container.lz_mode_name(m)})" if s == container.LZ else "")
                           for s, lv, m in zip(h.entropy, h.levels, h.lz_modes)],
                "models": [m.name or m.id[:16] for m in h.models],
                "transform": transforms.TransformRecord.from_bytes(h.transform).describe() if h.transform else "none"}
    for rec, (_, _, pim) in zip(recs, loaded):
        a = codec_array(pim)
        codecs = {"png": png_codec(pim), "webp": webp_codec(a), "jxl7": jxl_codec(a, 7), "jxl9": jxl_codec(a, 9)}
        for name, (enc, dec, same) in codecs.items():
            blob, te, ce = timed(enc)
            back, td, cd = timed(dec, blob)
            ok = same(back)
            rec["others"][name] = {"bytes": len(blob), "exact": bool(ok), "encode_s": te, "encode_cpu_s": ce,
                                   "decode_s": td, "decode_cpu_s": cd}
    return {"images": recs, "timing": timing, "pixels": sum(r["pixels"] for r in recs)}


def chunks(srcs: list, pixels_of, budget: int) -> list[list]:
    out, cur, px = [], [], 0
    for item in srcs:
        p = pixels_of(item)
        if cur and px + p > budget:
            out.append(cur)
            cur, px = [], 0
        cur.append(item)
        px += p
    return out + ([cur] if cur else [])


def pixels_of(item) -> int:
    name, src = item
    if isinstance(src, tuple):
        return 32 * 32
    with Image.open(src) as im:
        return im.width * im.height


# -- load average ------------------------------------------------------------------------------------------
class LoadSampler(threading.Thread):
    def __init__(self, every: float = 10.0):
        super().__init__(daemon=True)
        self.every, self.samples, self.stop = every, [], threading.Event()

    def run(self):
        while True:
            self.samples.append(os.getloadavg()[0])
            if self.stop.wait(self.every):
                return

    def summary(self) -> dict:
        s = self.samples or [os.getloadavg()[0]]
        return {"min": min(s), "mean": sum(s) / len(s), "max": max(s), "samples": len(s)}


# -- tables ------------------------------------------------------------------------------------------------
def aggregate(images: list, timing: list, levels: list[int]) -> dict:
    sub = sum(r["subpixels"] for r in images)
    px = sum(r["pixels"] for r in images)
    others = {}
    for c in OTHERS:
        rows = [r["others"][c] for r in images]
        others[c] = {"bytes": sum(x["bytes"] for x in rows), "exact": all(x["exact"] for x in rows),
                     **{k: sum(x[k] for x in rows) for k in ("encode_s", "encode_cpu_s", "decode_s", "decode_cpu_s")}}
        others[c]["bpsp"] = 8 * others[c]["bytes"] / sub
    out = {"images": len(images), "pixels": px, "subpixels": sub, "others": others, "levels": {}}
    for e in levels:
        rows = [r["levels"][str(e)] for r in images]
        t = {k: sum(tm[str(e)][k] for tm in timing) for k in ("encode_s", "encode_cpu_s", "decode_s", "decode_cpu_s")}
        nbytes = sum(x["bytes"] for x in rows)
        stages = {}
        for x in rows:
            for s in x["stages"]:
                stages[s] = stages.get(s, 0) + 1
        larger = [r["image"] for r in images if r["levels"][str(e)]["bytes"] > r["others"]["png"]["bytes"]]
        out["levels"][str(e)] = {
            "bytes": nbytes, "bpsp": 8 * nbytes / sub, "stream_bpsp": sum(x["stream_bits"] for x in rows) / sub,
            "vs_jxl9": nbytes / others["jxl9"]["bytes"], "vs_png": nbytes / others["png"]["bytes"],
            "larger_than_png": larger,
            "larger_than_jxl9": sum(r["levels"][str(e)]["bytes"] > r["others"]["jxl9"]["bytes"] for r in images),
            "exact": all(x["exact"] for x in rows), "stages": stages,
            "transformed": sum(x["transform"] != "none" for x in rows), **t}
    for d in [*out["levels"].values(), *others.values()]:
        for k in ("encode", "decode"):
            d[f"{k}_mp_s"] = px / 1e6 / max(d[f"{k}_s"], 1e-9)
            d[f"{k}_cpu_mp_s"] = px / 1e6 / max(d[f"{k}_cpu_s"], 1e-9)
    return out


DEFAULT_LEVEL = 4


def markdown(meta: dict, agg: dict, images: list) -> str:
    lv = agg["levels"]
    lines = [f"# Effort levels on {meta['title']}", "",
             "Command (re-run it to re-make this file and the plot; levels 4-9 change whenever the adaptive "
             "stage does):", "", f"    {meta['command']}", "",
             f"{meta['when']}; pixzip {meta['git']}; {meta['cpu']}, {meta['cpus']} CPUs; {meta['jobs']} job(s) x "
             f"{meta['threads']} thread(s){', nice ' + str(meta['nice']) if meta['nice'] else ''}; "
             f"load average (1 min) during the run {meta['load']['min']:.1f} / {meta['load']['mean']:.1f} / "
             f"{meta['load']['max']:.1f} (min / mean / max of {meta['load']['samples']} samples): "
             + ("a shared machine, so the wall speeds are what this run saw, not an idle machine's; "
                if meta['load']['max'] > 1.5 * meta['cpus'] / max(meta['jobs'], 1) else "")
             + f"{meta['wall_s'] / 60:.1f} min in all.", "",
             f"{agg['images']} images, {agg['pixels'] / 1e6:.3f} MP, {agg['subpixels']} sub-pixels. "
             "bpsp = 8 x the total bytes / the total sub-pixels (the same denominator for every codec). "
             "Every round trip decoded and compared: " +
             ("all exact." if all(d["exact"] for d in [*lv.values(), *agg["others"].values()]) else "**NOT ALL EXACT**"),
             "",
             "| codec | bpsp (file) | bpsp (streams) | x JXL e9 | x PNG | files > PNG | encode MP/s wall | decode MP/s wall"
             " | encode MP/s CPU | decode MP/s CPU |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for e, d in lv.items():
        name = f"pixzip -e {e}" + (" (default)" if int(e) == DEFAULT_LEVEL else "")
        lines.append(f"| {name} | {d['bpsp']:.4f} | {d['stream_bpsp']:.4f} | {d['vs_jxl9']:.3f} | {d['vs_png']:.3f} | "
                     f"{len(d['larger_than_png'])} | {d['encode_mp_s']:.3f} | {d['decode_mp_s']:.3f} | "
                     f"{d['encode_cpu_mp_s']:.3f} | {d['decode_cpu_mp_s']:.3f} |")
    jx = agg["others"]["jxl9"]["bytes"]
    png = agg["others"]["png"]["bytes"]
    labels = {"png": "PNG (Pillow optimize)", "webp": "WebP lossless m6", "jxl7": "JPEG XL e7", "jxl9": "JPEG XL e9"}
    for c, d in agg["others"].items():
        lines.append(f"| {labels[c]} | {d['bpsp']:.4f} | | {d['bytes'] / jx:.3f} | {d['bytes'] / png:.3f} | | "
                     f"{d['encode_mp_s']:.3f} | {d['decode_mp_s']:.3f} | {d['encode_cpu_mp_s']:.3f} | "
                     f"{d['decode_cpu_mp_s']:.3f} |")
    lines += ["", "bpsp (streams): the container's model bits (the network's ideal code length where a plane is "
              "coded statically, the coded stream bits where adaptively). MP/s wall: the pixels over the summed "
              "wall seconds of the level's calls in one job (one thread each when --jobs 2); MP/s CPU: over the "
              "process's CPU seconds (one busy core). The other codecs ran once per image (imagecodecs "
              f"{meta['imagecodecs']}, Pillow {meta['pillow']}).", ""]
    lines += ["What each level chose (planes by stage; images with a transform):", ""]
    for e, d in lv.items():
        st = ", ".join(f"{k}: {v} plane{'s' if v != 1 else ''}" for k, v in sorted(d["stages"].items()))
        more = f"; larger than PNG: {', '.join(d['larger_than_png'])}" if 0 < len(d["larger_than_png"]) <= 8 else ""
        lines.append(f"- `-e {e}`: {st}; {d['transformed']} transformed; {d['larger_than_jxl9']} files larger "
                     f"than JPEG XL e9{more}")
    if str(DEFAULT_LEVEL) in lv and len(images) <= 100:
        e = str(DEFAULT_LEVEL)
        lines += ["", f"Per file at the default (`-e {e}`), bytes:", "",
                  "| file | mode | size | pixzip | PNG | JXL e9 | x PNG | x JXL e9 | stages | transform |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for r in images:
            x, p, j = r["levels"][e], r["others"]["png"]["bytes"], r["others"]["jxl9"]["bytes"]
            lines.append(f"| {r['image']} | {r['mode']} | {r['width']}x{r['height']} | {x['bytes']} | {p} | {j} | "
                         f"{x['bytes'] / p:.3f} | {x['bytes'] / j:.3f} | {', '.join(x['stages'])} | {x['transform']} |")
    return "\n".join(lines) + "\n"


# -- the plot ----------------------------------------------------------------------------------------------
SHORT = {"cbsd68": "CBSD68 (68 photos)", "kinds": "kinds (32 non-photo images)", "cifar": "CIFAR-10, 1000 held-out 32x32"}


def _merged_run(results: Path, name: str) -> dict:
    """effort-<name>.json with the levels that newer runs re-made (effort-<name>-adaptive*.json: the stage's
    levels re-run alone): each level from the newest run that has it ("when", UTC minutes, sorts as text).
    A level re-made by none of them keeps the base run's figure, so re-run every level a change moves."""
    run = json.loads((results / f"effort-{name}.json").read_text())
    levels = {e: (run["meta"]["when"], v) for e, v in run["aggregate"]["levels"].items()}
    for f in sorted(results.glob(f"effort-{name}-adaptive*.json")):
        other = json.loads(f.read_text())
        for e, v in other["aggregate"]["levels"].items():
            if e not in levels or other["meta"]["when"] >= levels[e][0]:
                levels[e] = (other["meta"]["when"], v)
    run["aggregate"]["levels"] = {e: v for e, (_, v) in sorted(levels.items(), key=lambda kv: int(kv[0]))}
    return run


def plot(results: Path = RESULTS) -> str:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.lines import Line2D
    except ImportError:
        return "matplotlib is not installed: no plot"
    runs = [(s, _merged_run(results, s)) for s in SETS if (results / f"effort-{s}.json").exists()]
    if not runs:
        return "no effort-*.json yet: no plot"
    colours = {"png": "tab:grey", "webp": "tab:green", "jxl7": "tab:orange", "jxl9": "tab:red"}
    labels = {"png": "PNG", "webp": "WebP", "jxl7": "JPEG XL e7", "jxl9": "JPEG XL e9"}
    fig, axes = plt.subplots(2, len(runs), figsize=(5.0 * len(runs), 8.0), dpi=110, squeeze=False)
    for k, (name, run) in enumerate(runs):
        agg = run["aggregate"]
        lv = sorted(agg["levels"], key=int)
        rates = [agg["levels"][e]["bpsp"] for e in lv]
        top = max(max(rates), *(d["bpsp"] for c, d in agg["others"].items() if c != "png"))
        bottom = min(min(rates), min(agg["levels"][e]["stream_bpsp"] for e in lv))
        hi = top + 0.08 * (top - bottom)
        ax = axes[0][k]
        ax.plot([int(e) for e in lv], rates, "o-", color="tab:blue", label="pixzip (file)")
        ax.plot([int(e) for e in lv], [agg["levels"][e]["stream_bpsp"] for e in lv], ".:", color="tab:blue",
                alpha=0.6, label="pixzip (streams)")
        extra = []
        for c, d in agg["others"].items():
            if d["bpsp"] > hi:
                extra.append(Line2D([], [], color=colours[c], ls="--", lw=1,
                                    label=f"{labels[c]} {d['bpsp']:.2f} (above)"))
                continue
            ax.axhline(d["bpsp"], color=colours[c], ls="--", lw=1, label=labels[c])
        ax.set_ylim(bottom - 0.05 * (hi - bottom), hi)
        ax.set_xticks([int(e) for e in lv])
        ax.set_xlabel("effort level (-e)")
        ax.set_ylabel("bits per sub-pixel")
        ax.set_title(SHORT[name])
        ax.grid(alpha=0.3)
        handles, _ = ax.get_legend_handles_labels()
        ax.legend(handles=handles + extra, fontsize=7)
        ax = axes[1][k]
        xs = [agg["levels"][e]["decode_cpu_mp_s"] for e in lv]
        ax.plot(xs, rates, "o-", color="tab:blue", lw=0.8, ms=4, label="pixzip -e 1..9")
        for j, (e, x, y) in enumerate(zip(lv, xs, rates)):
            ax.annotate(e, (x, y), textcoords="offset points", xytext=(3, 3 if j % 2 else -9), fontsize=7,
                        color="tab:blue")
        for c, d in agg["others"].items():
            ax.scatter(d["decode_cpu_mp_s"], d["bpsp"], color=colours[c], marker="s", s=25, label=labels[c])
        ax.set_xscale("log")
        ax.set_xlabel("decode MP/s, one core (CPU time; log)")
        ax.set_ylabel("bits per sub-pixel")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    fig.suptitle("pixzip effort levels against PNG, WebP and JPEG XL, same runs (bench/effort_tables.py)")
    fig.tight_layout()
    out = results / "effort-levels.png"
    fig.savefig(out)
    plt.close(fig)
    return f"wrote {out.relative_to(ROOT)}"


def readme_tables(results: Path = RESULTS) -> str:
    """The compact per-set tables README's "Effort levels" shows, from the effort-*.json present."""
    labels = {"png": "PNG (Pillow optimize)", "webp": "WebP lossless m6", "jxl7": "JPEG XL e7", "jxl9": "JPEG XL e9"}
    out = []
    for name in SETS:
        f = results / f"effort-{name}.json"
        if not f.exists():
            continue
        run = json.loads(f.read_text())
        meta, agg = run["meta"], run["aggregate"]
        load = meta["load"]
        out += [f"**{meta['title']}** (`{meta['command']}`; {meta['when']}, load average {load['min']:.1f}-"
                f"{load['max']:.1f} on {meta['cpus']} cores, {meta['jobs']} job(s) of {meta['threads']} thread(s); "
                f"[bench/results/effort-{name}.md](bench/results/effort-{name}.md)):", "",
                "| `-e` | bpsp (file) | bpsp (streams) | x JPEG XL e9 | files > PNG | encode / decode MP/s (one core, CPU time) |",
                "|---|---|---|---|---|---|"]
        for e, d in sorted(agg["levels"].items(), key=lambda kv: int(kv[0])):
            bold = "**" if int(e) == DEFAULT_LEVEL else ""
            out.append(f"| {bold}{e}{bold} | {bold}{d['bpsp']:.4f}{bold} | {d['stream_bpsp']:.4f} | {d['vs_jxl9']:.3f} | "
                       f"{len(d['larger_than_png'])} | {d['encode_cpu_mp_s']:.3f} / {d['decode_cpu_mp_s']:.3f} |")
        jx = agg["others"]["jxl9"]["bytes"]
        for c, d in agg["others"].items():
            out.append(f"| {labels[c]} | {d['bpsp']:.4f} | | {d['bytes'] / jx:.3f} | | "
                       f"{d['encode_cpu_mp_s']:.3f} / {d['decode_cpu_mp_s']:.3f} |")
        out.append("")
    return "\n".join(out)


# -- main --------------------------------------------------------------------------------------------------
TITLES = {"cbsd68": "CBSD68 (68 photos, 481x321)", "kinds": "kinds (32 non-photo images, own modes)",
          "cifar": f"CIFAR-10, the last {CIFAR_HELD_OUT} rows of train_x_partial.npy (held out), one 32x32 file each"}


def git_rev() -> str:
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True).stdout.strip()
        return rev + (" (+ uncommitted changes)" if dirty else "")
    except OSError:
        return "?"


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", choices=SETS)
    ap.add_argument("--levels", default="1-9", help="e.g. 1-9 or 1,4,9")
    ap.add_argument("--limit", type=int, default=0, help="only the first N images (a quick check)")
    ap.add_argument("--match", default="", help="only the images whose name contains this (a quick check)")
    ap.add_argument("--jobs", type=int, default=1, help="worker processes (each codes whole chunks)")
    ap.add_argument("--threads", type=int, default=0, help="threads per job (default: the cores / jobs)")
    ap.add_argument("--chunk-pixels", type=int, default=DEFAULT_CHUNK)
    ap.add_argument("--out", help="output prefix (default bench/results/effort-<data>; with --limit, /tmp/...)")
    ap.add_argument("--resume", action="store_true", help="reuse the chunks a killed run saved in <out>.partial.jsonl")
    ap.add_argument("--plot-only", action="store_true")
    ap.add_argument("--readme", action="store_true", help="print README's compact tables from the effort-*.json")
    args = ap.parse_args()
    if args.readme:
        print(readme_tables())
        return
    if args.plot_only:
        print(plot())
        return
    if not args.data:
        ap.error("--data is required")
    levels = parse_levels(args.levels)
    quick = bool(args.limit or args.match)
    out = Path(args.out) if args.out else (RESULTS / f"effort-{args.data}" if not quick
                                           else Path(f"/tmp/effort-{args.data}-quick"))
    threads = args.threads or max(1, (os.cpu_count() or 1) // args.jobs)
    srcs = sources(args.data, args.limit, args.match)
    tasks = chunks(srcs, pixels_of, args.chunk_pixels)
    partial = Path(str(out) + ".partial.jsonl")
    done = {}
    if args.resume and partial.exists():
        for line in partial.read_text().splitlines():
            r = json.loads(line)
            if r["levels"] == levels:
                done[r["key"]] = r["result"]
    elif partial.exists():
        partial.unlink()
    key = lambda t: f"{t[0][0]}+{len(t)}"
    todo = sorted((t for t in tasks if key(t) not in done), key=lambda t: -sum(map(pixels_of, t)))
    nice = os.nice(0)
    cmd = " ".join(["PYTHONPATH=$PWD" + (f" nice -n {nice}" if nice else "") + " python3 bench/effort_tables.py"]
                   + [shlex.quote(a) for a in sys.argv[1:]])
    print(f"{cmd}: {len(srcs)} images in {len(tasks)} chunks ({len(done)} reused), levels {levels}, "
          f"{args.jobs} job(s) x {threads} thread(s)", file=sys.stderr, flush=True)
    rev = git_rev()                      # the code that runs (a commit made during the run is not it)
    sampler = LoadSampler()
    sampler.start()
    t0 = time.perf_counter()
    results = dict(done)
    px_total, px_done = sum(pixels_of(s) for s in srcs), 0

    def record(t, r):
        nonlocal px_done
        results[key(t)] = r
        px_done += r["pixels"]
        with partial.open("a") as f:
            f.write(json.dumps({"key": key(t), "levels": levels, "result": r}) + "\n")
        el = time.perf_counter() - t0
        print(f"  {len(results)}/{len(tasks)} chunks, {px_done / 1e6:.2f} of {px_total / 1e6:.2f} MP, "
              f"{el / 60:.1f} min, load {os.getloadavg()[0]:.1f}", file=sys.stderr, flush=True)

    if args.jobs > 1:
        import multiprocessing as mp
        with ProcessPoolExecutor(args.jobs, mp.get_context("spawn"), initializer=init_worker,
                                 initargs=(threads,)) as pool:
            futures = {pool.submit(run_chunk, t, levels): t for t in todo}
            for f in as_completed(futures):
                record(futures[f], f.result())
    else:
        init_worker(threads)
        for t in todo:
            record(t, run_chunk(t, levels))
    wall = time.perf_counter() - t0
    sampler.stop.set()
    sampler.join()
    ordered = [results[key(t)] for t in tasks]
    images = [r for c in ordered for r in c["images"]]
    timing = [{str(k): v for k, v in c["timing"].items()} for c in ordered]
    agg = aggregate(images, timing, levels)
    import imagecodecs
    import PIL
    meta = {"title": TITLES[args.data] + (f", first {args.limit}" if args.limit else "")
            + (f", names containing {args.match!r}" if args.match else ""), "command": cmd,
            "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "git": rev, "cpu": cpu_name(),
            "cpus": os.cpu_count(), "jobs": args.jobs, "threads": threads, "nice": nice,
            "load": sampler.summary(), "wall_s": wall, "levels": levels, "chunk_pixels": args.chunk_pixels,
            "imagecodecs": imagecodecs.__version__, "pillow": PIL.__version__}
    out.parent.mkdir(parents=True, exist_ok=True)
    Path(str(out) + ".json").write_text(json.dumps({"meta": meta, "aggregate": agg, "images": images,
                                                    "timing": timing}, indent=1))
    text = markdown(meta, agg, images)
    Path(str(out) + ".md").write_text(text)
    partial.unlink(missing_ok=True)
    print(text)
    if not quick and out.parent == RESULTS:
        print(plot(), file=sys.stderr)
    bad = [e for e, d in agg["levels"].items() if not d["exact"]] + [c for c, d in agg["others"].items() if not d["exact"]]
    if bad:
        sys.exit(f"round trips NOT exact: {bad}")


if __name__ == "__main__":
    main()
