#!/bin/sh
# The paper's binarized MNIST benchmark: a Diagonal BiLSTM (7 layers, h=16, 2 levels) trained on
# ../shared/data/binarized_mnist train (validation: its valid split), test NLL in nats, and the test
# digits compressed as bilevel PNG files through pixzip (against PNG, WebP and JPEG XL).
#   sh bench/mnist.sh
set -eu
DATA=${DATA:-../shared/data/binarized_mnist}
OUT=${OUT:-bench/models}
STEPS=${STEPS:-2000}
WORK=${WORK:-/tmp/pixzip-mnist}
mkdir -p "$WORK" "$OUT" bench/results
python3 - "$DATA" "$WORK" <<'PY'
import sys, numpy as np
src, dst = sys.argv[1:]
for split in ("train", "valid", "test"):   # bit-packed rows of 784 -> N x 28 x 28 of 0 / 255
    bits = np.unpackbits(np.load(f"{src}/{split}_bits.npy"), axis=1)[:, :784].reshape(-1, 28, 28)
    np.save(f"{dst}/{split}.npy", bits * np.uint8(255))
PY
[ -f "$OUT/mnist-diagbilstm.pxm" ] || pixzip train "$WORK/train.npy" --val "$WORK/valid.npy" --arch diagbilstm \
    --channels 1 --levels 2 --head softmax --layers 7 --hidden 32 --state 16 --crop 28 --batch 16 --no-flip \
    --steps "$STEPS" --qat-start 0.8 -T 1 --out "$OUT/mnist-diagbilstm.pxm" --checkpoint "$OUT/mnist-diagbilstm.pt"
python3 bench/mnist.py "$WORK/test.npy" "$OUT/mnist-diagbilstm" --json bench/results/mnist.json > bench/results/mnist.md
