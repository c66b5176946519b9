"""Binarized MNIST: test NLL in nats of a 2-level model (float and integer), and the test digits coded
as bilevel (mode 1) files through pixzip, PNG and JPEG XL.

    python3 bench/mnist.py TEST.npy STEM [--json out.json] > table.md

STEM names the checkpoint STEM.pt and the exported model STEM.pxm.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from architectures import code_files, float_bpd   # noqa: E402

from pixzip import bench   # noqa: E402
from pixzip.nets import modelfile   # noqa: E402

PAPER_NATS = 79.20


def png_1bit(a: np.ndarray) -> int:
    buf = io.BytesIO()
    Image.fromarray(a[..., 0] > 0).convert("1").save(buf, "PNG", optimize=True)
    return len(buf.getvalue())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("test")
    ap.add_argument("stem")
    ap.add_argument("--json")
    args = ap.parse_args()
    stack = np.load(args.test)[..., None]
    stem = Path(args.stem)
    m = modelfile.load(stem.with_suffix(".pxm"))
    prov = m.provenance
    dims = stack.shape[1] * stack.shape[2]
    nats = dims * math.log(2)
    t0 = time.perf_counter()
    f_bpd = float_bpd(stem, stack)
    coded = code_files(m, stack, mode="1")
    jxl = bench.codec_table()["jxl9"]()[0]
    refs = {"png (1-bit)": sum(png_1bit(a) for a in stack), "jxl9": sum(len(jxl(a)) for a in stack)}
    r = {"model": stem.name, "id": m.id[:16], "steps": prov.get("steps"), "train_seconds": prov.get("train_seconds"),
         "train_config": prov.get("train_config"), "images": len(stack),
         "float_nats": f_bpd * nats, "int_nats": coded["model_bits"] / len(stack) * math.log(2),
         "file_bits_per_image": 8 * coded["bytes"] / len(stack), "exact": coded["exact"],
         "encode_s": coded["encode_s"], "decode_s": coded["decode_s"],
         "refs_bits_per_image": {k: 8 * v / len(stack) for k, v in refs.items()}, "eval_s": time.perf_counter() - t0}
    tc = prov.get("train_config", {})
    print(f"Binarized MNIST test set ({len(stack)} images). Model {stem.name} ({m.net.cfg.arch}, "
          f"{m.net.cfg.layers} layers, h={m.net.cfg.state_width}, 2 levels): {r['steps']} steps of batch "
          f"{tc.get('batch')} in {r['train_seconds'] / 60:.1f} min on one CPU thread.\n")
    print("| | NLL (nats/image) |\n|---|---|")
    print(f"| paper, Diagonal BiLSTM 7 layers h=16 | {PAPER_NATS:.2f} |")
    print(f"| ours, float model | {r['float_nats']:.2f} |")
    print(f"| ours, integer model (what is coded) | {r['int_nats']:.2f} |\n")
    print("Each test digit coded as its own bilevel file (bits per image, headers included):\n")
    print("| codec | bits/image | exact |\n|---|---|---|")
    print(f"| pixzip ({stem.name}) | {r['file_bits_per_image']:.1f} | {'yes' if r['exact'] else 'NO'} |")
    for k, v in r["refs_bits_per_image"].items():
        print(f"| {k} | {v:.1f} | yes |")
    print(f"\npixzip: {r['encode_s']:.1f} s to encode, {r['decode_s']:.1f} s to decode all {len(stack)} files "
          "(batched, one process).")
    if args.json:
        Path(args.json).write_text(json.dumps(r, indent=1))


if __name__ == "__main__":
    main()
