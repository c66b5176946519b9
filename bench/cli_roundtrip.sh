#!/usr/bin/env bash
# Issue 2's acceptance check through the real CLI: compress every image of a folder with the default
# models, decompress to new names, compare pixels and mode, and collect `pixzip info`'s bits/sub-pixel.
#   bench/cli_roundtrip.sh ../shared/data/cbsd68 > bench/results/cbsd68-cli.txt
set -euo pipefail
src=$(cd "${1:?usage: cli_roundtrip.sh IMAGE_DIR}" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp "$src"/*.png "$work"/
cd "$work"
start=$(date +%s.%N)
pixzip compress -q *.png
mid=$(date +%s.%N)
mkdir out
for f in *.png.pxz; do pixzip decompress -q "$f" -o "out/${f%.pxz}"; done
end=$(date +%s.%N)
python3 - "$src" <<'PY'
import subprocess, sys
from pathlib import Path
import numpy as np
from PIL import Image
src = Path(sys.argv[1])
rows, exact = [], 0
for f in sorted(src.glob("*.png")):
    a, b = Image.open(f), Image.open(Path("out") / f.name)
    same = a.mode == b.mode and np.array_equal(np.asarray(a), np.asarray(b))
    exact += same
    info = subprocess.run(["pixzip", "info", f.name + ".pxz"], capture_output=True, text=True, check=True).stdout
    bpsp = float(next(l for l in info.splitlines() if l.startswith("bits/sub-pixel")).split()[-1])
    rows.append((f.name, bpsp, same))
print(f"images: {len(rows)}, identical after decompress: {exact}")
print(f"bits/sub-pixel from pixzip info: mean {np.mean([r[1] for r in rows]):.4f}, "
      f"max {max(r[1] for r in rows):.4f} ({max(rows, key=lambda r: r[1])[0]}), "
      f"min {min(r[1] for r in rows):.4f}")
total_bits = sum(8 * Path(f.name + ".pxz").stat().st_size for f in sorted(src.glob("*.png")))
subpixels = sum(np.asarray(Image.open(f)).size for f in sorted(src.glob("*.png")))
print(f"all files together: {total_bits / subpixels:.4f} bits/sub-pixel")
for name, bpsp, same in rows:
    print(f"  {name} {bpsp:.4f} {'ok' if same else 'MISMATCH'}")
PY
python3 -c "import sys; s,m,e=map(float,sys.argv[1:4]); n=int(sys.argv[4]); print(f'wall time: compress {m-s:.1f} s ({(m-s)/n:.2f} s/image, one process for all), decompress {e-m:.1f} s ({(e-m)/n:.2f} s/image, one process each)')" "$start" "$mid" "$end" "$(ls *.png | wc -l)"
