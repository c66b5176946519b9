"""Per-file encode CPU time of small images, where the transform estimate's fixed costs show: 100 CIFAR
held-out rows (32x32 RGB) at -e 4 and -e 1 (no transforms), transforms.choose alone, and two CBSD68
photos (481x321) at -e 4. Process CPU time, best of 3, one thread.

    PYTHONPATH=$PWD nice python3 bench/estimate_speed.py

Run it in a checkout of another commit for the comparison (same machine, same minutes: quote the load
average it prints)."""
import os
import time
from pathlib import Path

import numpy as np

from pixzip import api
from pixzip.formats import images, transforms
from pixzip.formats.images import ImageData

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"        # as bench/effort_tables.py


def best(fn, ims, reps=3) -> float:
    """Milliseconds of process CPU time per image, the best of `reps` passes."""
    times = []
    for _ in range(reps):
        t0 = time.process_time()
        for im in ims:
            fn(im)
        times.append((time.process_time() - t0) / len(ims))
    return min(times) * 1e3


def main():
    rows = np.load(DATA / "cifar10" / "train_x_partial.npy", mmap_mode="r")[-1000:][:100]
    cifar = [ImageData("RGB", 32, 32, [np.ascontiguousarray(r, dtype=np.uint8)]) for r in rows]
    api.compress(cifar[0], effort=4)                        # imports, model loading
    print("load average", os.getloadavg())
    print(f"CIFAR row -e 4: {best(lambda im: api.compress(im, effort=4), cifar):.2f} ms")
    print(f"CIFAR row -e 1: {best(lambda im: api.compress(im, effort=1), cifar):.2f} ms")
    print(f"CIFAR row transforms.choose alone: {best(transforms.choose, cifar):.2f} ms")
    for name in ("101085", "102061"):
        photo = images.read_image(DATA / "cbsd68" / f"{name}.png", name)
        print(f"CBSD68 {name} ({len(transforms.candidates(photo))} candidates) -e 4: "
              f"{best(lambda im: api.compress(im, effort=4), [photo]):.1f} ms, "
              f"transforms.choose alone {best(transforms.choose, [photo]):.1f} ms")
    print("load average", os.getloadavg())


if __name__ == "__main__":
    main()
