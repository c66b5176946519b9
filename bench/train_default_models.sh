#!/usr/bin/env bash
# Reproduces the shipped default models (models/README.md). CPU; the two trainings run side by side,
# one thread each (2-core machine: ~60 min for RGB, ~45 min for grey), then each is fine-tuned with
# learned activation scales (LSQ) and wide skip weights, and exported. Checkpoints go to runs/
# (--resume continues an interrupted stage).
# Note: the shipped weights' stage 1 ran at commit 242d480, whose quantisation-aware phase used
# max-observed activation scales and int8 skip weights; with today's code stage 1 already uses learned
# scales and wide skip weights, so a rerun gives similar, not identical, weights.
set -euo pipefail
cd "$(dirname "$0")/.."
D=${DATA:-../shared/data}
mkdir -p runs
arch=(--hidden 48 --blocks 4 --head laplace --skip-kernel 5)
common=("${arch[@]}" --batch 16 --crop 32 --jpeg-downsample 3 --seed 0 --val-every 500 -T 1 --val "$D/cbsd68")
# stage 1: float training, quantisation-aware for the last 40 %
nice -n 5 pixzip train "$D/photos" "$D/urban100" --channels 3 --steps 14000 --lr 3e-3 --qat-start 0.6 \
    "${common[@]}" --checkpoint runs/rgb.pt --out runs/rgb-stage1.pxm &
nice -n 5 pixzip train "$D/photos" "$D/urban100" --channels 1 --steps 10000 --lr 3e-3 --qat-start 0.6 \
    "${common[@]}" --checkpoint runs/gray.pt --out runs/gray-stage1.pxm &
wait
# stage 2: quantisation-aware fine-tuning with learned scales
pixzip train "$D/photos" "$D/urban100" --channels 3 --steps 1500 --lr 3e-4 --qat-start 0 --init runs/rgb.pt \
    "${common[@]}" --checkpoint runs/rgb-ft.pt --out models/pcnn-rgb-v1.pxm &
pixzip train "$D/photos" "$D/urban100" --channels 1 --steps 1500 --lr 3e-4 --qat-start 0 --init runs/gray.pt \
    "${common[@]}" --checkpoint runs/gray-ft.pt --out models/pcnn-gray-v1.pxm &
wait
