#!/usr/bin/env bash
# Reproduces the v2 default models (models/README.md): the v1 models fine-tuned with a 16-bit residual
# stream (--stream-bits 16: the int8 stream alone cost the v1 RGB model 0.17 bits/dim) and, for the
# colour models, a trimmed decode wavefront slope (--slope 2: 382 instead of 636 sequential steps per
# 128-pixel tile). Every stage is quantisation-aware throughout (--qat-start 0) and starts from the
# previous stage's float checkpoint (--init; masks come from the new config, the new quantisers observe
# their ranges on the first batches). CPU, one thread per training; runs/ holds the checkpoints
# (--resume continues an interrupted stage).
set -euo pipefail
cd "$(dirname "$0")/.."
D=${DATA:-../shared/data}
W=${WORK:-/tmp/pixzip-cifar}
mkdir -p runs "$W"
arch=(--hidden 48 --blocks 4 --head laplace --skip-kernel 5 --stream-bits 16)
photos=("$D/photos" "$D/urban100" --batch 16 --crop 32 --jpeg-downsample 3 --val-every 500 -T 1 --val "$D/cbsd68")

# RGB photos, stage A: 16-bit stream (3000 steps); stage B: slope 2 (4000 steps)
nice -n 5 pixzip train "${photos[@]}" "${arch[@]}" --channels 3 --steps 3000 --lr 1e-3 --qat-start 0 --seed 0 \
    --init models/checkpoints/pcnn-rgb-v1.pt --checkpoint runs/rgb-v2a.pt --out runs/rgb-v2a.pxm &
# grey photos: 16-bit stream (3000 steps); the square kernels' slope (one channel: no R/G/B steps)
nice -n 5 pixzip train "${photos[@]}" "${arch[@]}" --channels 1 --steps 3000 --lr 1e-3 --qat-start 0 --seed 0 \
    --init models/checkpoints/pcnn-gray-v1.pt --checkpoint models/checkpoints/pcnn-gray-v2.pt \
    --out models/pcnn-gray-v2.pxm &
wait
nice -n 5 pixzip train "${photos[@]}" "${arch[@]}" --channels 3 --slope 2 --steps 4000 --lr 5e-4 --qat-start 0 \
    --seed 1 --init runs/rgb-v2a.pt --checkpoint models/checkpoints/pcnn-rgb-v2.pt --out models/pcnn-rgb-v2.pxm &

# small RGB images: the v1 small-image model (CIFAR-10 fine-tune) with both changes, on CIFAR-10
# (rows 0..7067 of train_x_partial.npy; the last 1000 rows are held out and only monitored)
python3 -c "import numpy as np; a = np.load('$D/cifar10/train_x_partial.npy'); np.save('$W/train.npy', a[:-1000]); np.save('$W/val.npy', a[-1000:])"
nice -n 5 pixzip train "$W/train.npy" --val "$W/val.npy" "${arch[@]}" --channels 3 --slope 2 --batch 16 --crop 32 \
    --steps 4000 --lr 5e-4 --qat-start 0 --seed 2 --val-every 500 -T 1 \
    --init models/checkpoints/pcnn-rgb-small-v1.pt --checkpoint models/checkpoints/pcnn-rgb-small-v2.pt \
    --out models/pcnn-rgb-small-v2.pxm &
wait
