#!/usr/bin/env bash
# pcnn-rgb-v6 (the colour default since session 8): pcnn-rgb-v5 fine-tuned on the 2-core CPU machine
# (no GPU in that session) on the photos *and* CIFAR-10, crops of 32x32, quantisation-aware throughout.
#
#   bench/train_cpu_v6.sh DATA RUNS      DATA: bench/prepare_gpu_data.py's folder (pack, then unpack)
#
# Why: session 7 found the CIFAR-trained large network coding CBSD68 better than every photo-trained
# model; pcnn-rgb-small-v3 (this architecture, CIFAR only) was also better than pcnn-rgb-v5 on the
# first 20 CBSD68 photos (2.7174 against 2.7269). So the 7 068 CIFAR training rows are listed three
# times (crops are drawn in proportion to area: CIFAR ~43 % of them, photos and Urban100 the rest).
# Run on 2026-11-23: 105 minutes, 20 460 steps (the budget re-fits the steps; other work shared the
# machine), monitoring crops (8 CBSD68 images, 32x32) 3.157 -> 3.109. Results in models/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
D=$1 R=$2
mkdir -p "$R"
C="$D/cifar_train.npy"
nice -n 10 pixzip train "$D/photos" "$D/urban100h" "$C" "$C" "$C" --val "$D/cbsd68v" --channels 3 --hidden 48 \
    --blocks 4 --slope 2 --stream-bits 16 --head laplace --skip-kernel 5 --batch 16 --crop 32 --lr 3e-4 \
    --qat-start 0 --init models/checkpoints/pcnn-rgb-v5.pt --minutes 105 --steps 1000000 --val-every 500 -T 2 \
    --seed 11 --out "$R/pcnn-rgb-v6.pxm" --checkpoint "$R/pcnn-rgb-v6.pt"
