#!/usr/bin/env bash
# Reproduces the shipped default models (models/README.md). CPU, one thread each, both at once:
# ~45 min (RGB) and ~30 min (grey) on a 2-core machine. Checkpoints: models/*.pxm.ckpt (--resume continues).
set -euo pipefail
cd "$(dirname "$0")/.."
D=${DATA:-../shared/data}
common=(--batch 16 --crop 32 --hidden 48 --blocks 4 --head laplace --skip-kernel 5 --qat-start 0.6
        --lr 3e-3 --jpeg-downsample 3 --seed 0 --val-every 500 -T 1 --val "$D/cbsd68")
nice -n 5 pixzip train "$D/photos" "$D/urban100" --channels 3 --steps 14000 "${common[@]}" \
    --checkpoint runs/rgb.pt --out models/pcnn-rgb-v1.pxm &
nice -n 5 pixzip train "$D/photos" "$D/urban100" --channels 1 --steps 10000 "${common[@]}" \
    --checkpoint runs/gray.pt --out models/pcnn-gray-v1.pxm &
wait
