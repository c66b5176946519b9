#!/bin/sh
# Issue 3's architecture benchmark: PixelCNN, Row LSTM and Diagonal BiLSTM trained with the same budget
# (steps x batch of 32x32 crops, same optimiser and schedule) on CIFAR-10 rows of
# ../shared/data/cifar10/train_x_partial.npy, evaluated on the last 1000 rows (held out from training).
#   sh bench/architectures.sh            # trains (CPU, one thread each), then evaluates
set -eu
DATA=${DATA:-../shared/data/cifar10/train_x_partial.npy}
OUT=${OUT:-bench/models}
STEPS=${STEPS:-1200}
WORK=${WORK:-/tmp/pixzip-cifar}
mkdir -p "$WORK" "$OUT" bench/results
python3 -c "import numpy as np; a = np.load('$DATA'); np.save('$WORK/train.npy', a[:-1000]); np.save('$WORK/val.npy', a[-1000:])"
for arch in pixelcnn rowlstm diagbilstm; do
    [ -f "$OUT/cifar-$arch.pxm" ] && continue
    pixzip train "$WORK/train.npy" --val "$WORK/val.npy" --arch $arch --layers 4 --hidden 48 --steps "$STEPS" \
        --batch 16 --crop 32 -T 1 --out "$OUT/cifar-$arch.pxm" --checkpoint "$OUT/cifar-$arch.pt"
done
python3 bench/architectures.py "$WORK/val.npy" "$OUT/cifar-pixelcnn" "$OUT/cifar-rowlstm" "$OUT/cifar-diagbilstm" \
    --json bench/results/architectures.json > bench/results/architectures.md
