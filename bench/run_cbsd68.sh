#!/usr/bin/env bash
# Rates and speeds on CBSD68 (68 photos, 481x321), pixzip's default models against PNG, WebP,
# JPEG XL e7/e9, JPEG 2000, JPEG-LS and QOI, all in one run, every round trip checked; then `-e 2`
# against JPEG XL e9, and one plot of both runs. Writes bench/results/cbsd68{,-grey,-effort2}.{md,json}
# and bench/results/cbsd68.png.
# Do not time while a training runs (2 cores: any other busy process slows everything 2-5x).
set -euo pipefail
cd "$(dirname "$0")/.."
D=${DATA:-../shared/data}
mkdir -p bench/results
C=pixzip,png,webp,jxl7,jxl9,jpeg2000,jpegls,qoi
pixzip bench "$D/cbsd68" --codecs $C --json bench/results/cbsd68.json -q | tee bench/results/cbsd68.md
pixzip bench "$D/cbsd68" --codecs $C --grey --json bench/results/cbsd68-grey.json -q | tee bench/results/cbsd68-grey.md
pixzip bench "$D/cbsd68" --codecs pixzip,jxl9 -e 2 --json bench/results/cbsd68-effort2.json -q | tee bench/results/cbsd68-effort2.md
python3 bench/plot_results.py bench/results/cbsd68.json bench/results/cbsd68-effort2.json -o bench/results/cbsd68.png \
    --title "CBSD68: 68 photos (481x321), 2-core CPU"
