#!/usr/bin/env bash
# Reproduces models/pcnn-rgb-small-v1.pxm, the default for RGB images up to 64x64 pixels (models/README.md):
# the photo model's architecture, initialised from its float checkpoint, fine-tuned on CIFAR-10 images
# (rows 0..7067 of ../shared/data/cifar10/train_x_partial.npy; the last 1000 rows are held out and only
# monitored). CPU, one thread.
set -euo pipefail
cd "$(dirname "$0")/.."
D=${DATA:-../shared/data}
W=${WORK:-/tmp/pixzip-cifar}
STEPS=${STEPS:-12000}
mkdir -p "$W"
python3 -c "import numpy as np; a = np.load('$D/cifar10/train_x_partial.npy'); np.save('$W/train.npy', a[:-1000]); np.save('$W/val.npy', a[-1000:])"
pixzip train "$W/train.npy" --val "$W/val.npy" --channels 3 --hidden 48 --blocks 4 --head laplace --skip-kernel 5 \
    --batch 16 --crop 32 --steps "$STEPS" --lr 2e-3 --qat-start 0.7 --seed 0 --val-every 500 -T 1 \
    --init models/checkpoints/pcnn-rgb-v1.pt --checkpoint models/checkpoints/pcnn-rgb-small-v1.pt \
    --out models/pcnn-rgb-small-v1.pxm
# stage 2: quantisation-aware throughout (stage 1's QAT phase started from the photo model's learned
# activation scales, stale after the float phase: +0.2 bits/dim), lower learning rate
cp models/checkpoints/pcnn-rgb-small-v1.pt "$W/small-stage1.pt"
pixzip train "$W/train.npy" --val "$W/val.npy" --channels 3 --hidden 48 --blocks 4 --head laplace --skip-kernel 5 \
    --batch 16 --crop 32 --steps 2000 --lr 5e-4 --qat-start 0 --seed 1 --val-every 500 -T 2 \
    --init "$W/small-stage1.pt" --checkpoint models/checkpoints/pcnn-rgb-small-v1.pt --out models/pcnn-rgb-small-v1.pxm
