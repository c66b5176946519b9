#!/usr/bin/env bash
# pcnn-rgb-v7 (the colour default since session 9): pcnn-rgb-v6 continued on the 2-core CPU machine
# (no GPU in that session) with the same data as bench/train_cpu_v6.sh (photos, Urban100, the CIFAR-10
# training rows three times), crops of 32x32, quantisation-aware throughout, half v6's learning rate.
#
#   bench/train_cpu_v7.sh DATA RUNS      DATA: bench/prepare_gpu_data.py's folder (pack, then unpack)
#
# Run on 2026-11-23: 110 minutes, 14 801 steps, one thread at nice 10 beside the native decoder's
# development and tests; monitoring crops (8 CBSD68 images, 32x32) 3.1094 -> 3.1014 (integer).
# Log: bench/results/train-pcnn-rgb-v7.log. Results in models/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
D=$1 R=$2
mkdir -p "$R"
C="$D/cifar_train.npy"
nice -n 10 pixzip train "$D/photos" "$D/urban100h" "$C" "$C" "$C" --val "$D/cbsd68v" --channels 3 --hidden 48 \
    --blocks 4 --slope 2 --stream-bits 16 --head laplace --skip-kernel 5 --batch 16 --crop 32 --lr 1.5e-4 \
    --qat-start 0 --init models/checkpoints/pcnn-rgb-v6.pt --minutes 110 --steps 1000000 --val-every 500 -T 1 \
    --seed 12 --out "$R/pcnn-rgb-v7.pxm" --checkpoint "$R/pcnn-rgb-v7.pt"
