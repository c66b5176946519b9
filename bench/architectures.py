"""Evaluate trained architectures on held-out images: float, integer and actual-file bits/dim.

    python3 bench/architectures.py VAL.npy STEM... [--json out.json] > table.md

Each STEM names a checkpoint STEM.pt (the float model) and its export STEM.pxm (the integer model).
Every image is coded as its own .pxz file (header included) through the library's batched path
(`api.compress_many`: batching never changes a file's bytes, tests/test_engine.py proves it), decoded
back (`api.decompress_many`) and compared; PNG, WebP and JPEG XL code the same images in the same run.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from pixzip import api, bench
from pixzip.formats.images import ImageData
from pixzip.nets import modelfile
from pixzip.spec.config import ModelConfig
from pixzip.training.loop import load_checkpoint, load_weights
from pixzip.training.registry import build_model


def float_bpd(stem: Path, stack: np.ndarray) -> float:
    state = load_checkpoint(stem.with_suffix(".pt"))
    cfg = ModelConfig.from_dict(state["model_config"])
    model = build_model(cfg)
    load_weights(model, state["model"])
    model.set_quantize(True)
    model.eval()
    total = 0.0
    with torch.no_grad():
        for i in range(0, len(stack), 50):
            x = torch.from_numpy(np.ascontiguousarray(stack[i:i + 50].transpose(0, 3, 1, 2)))
            total += float(model.bits(x)) * len(x)
    return total / len(stack)


def as_images(stack: np.ndarray, mode: str) -> list[ImageData]:
    return [ImageData(mode, a.shape[1], a.shape[0], [np.ascontiguousarray(a)]) for a in stack]


def code_files(model, stack: np.ndarray, mode: str = "RGB") -> dict:
    """Every image its own file: sizes, ideal bits, exactness and times (batched, one process)."""
    ims = as_images(stack, mode)
    t0 = time.perf_counter()
    coded = api.compress_many(ims, [model])
    t1 = time.perf_counter()
    back = api.decompress_many([data for data, _ in coded], [model])
    t2 = time.perf_counter()
    exact = all(not isinstance(b, Exception) and np.array_equal(b[0].planes[0], im.planes[0])
                for b, im in zip(back, ims))
    return {"bytes": sum(len(d) for d, _ in coded), "model_bits": sum(s.model_bits for _, s in coded),
            "exact": exact, "encode_s": t1 - t0, "decode_s": t2 - t1}


def reference_codecs(stack: np.ndarray, names=("png", "webp", "jxl9")) -> dict:
    """Bits/dim of the classic codecs on the same images (each its own file, round trips checked)."""
    items = [(str(k), a) for k, a in enumerate(stack)]
    return {r.codec: r.bpsp if r.exact else float("nan") for r in bench.run(items, list(names))}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("val")
    ap.add_argument("stems", nargs="+")
    ap.add_argument("--json")
    ap.add_argument("--mode", default="RGB")
    args = ap.parse_args()
    stack = np.load(args.val)
    if stack.ndim == 3:
        stack = stack[..., None]
    rows = []
    for stem in map(Path, args.stems):
        m = modelfile.load(stem.with_suffix(".pxm"))
        prov = m.provenance
        r = {"model": stem.name, "arch": m.net.cfg.arch, "id": m.id[:16], "steps": prov.get("steps"),
             "train_seconds": prov.get("train_seconds"), "float_bpd": float_bpd(stem, stack),
             **code_files(m, stack, args.mode)}
        r["int_bpd"] = r["model_bits"] / stack.size
        r["file_bpd"] = 8 * r["bytes"] / stack.size
        rows.append(r)
    refs = reference_codecs(stack)
    print(f"{len(stack)} held-out images ({stack.shape[1]}x{stack.shape[2]}), each coded as its own file "
          f"(headers included). Machine: {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}.\n")
    print("| model | arch | steps | train time | float bits/dim | integer bits/dim | file bits/dim | exact | "
          "encode s/image | decode s/image |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['arch']} | {r['steps']} | {r['train_seconds'] / 60:.1f} min | "
              f"{r['float_bpd']:.4f} | {r['int_bpd']:.4f} | {r['file_bpd']:.4f} | {'yes' if r['exact'] else 'NO'} | "
              f"{r['encode_s'] / len(stack):.3f} | {r['decode_s'] / len(stack):.3f} |")
    print("\nSame images, same run: " + ", ".join(f"{k.upper()} {v:.4f}" for k, v in refs.items()) + " bits/dim.")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "references": refs, "images": len(stack)}, indent=1))


if __name__ == "__main__":
    main()
