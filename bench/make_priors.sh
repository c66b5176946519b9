#!/bin/sh
# Every prior of the adaptive stage's levels (entropy/adaptive.py LEVELS[...].priors), from training data only:
# the photo and grey networks on Urban100 and the reduced wallpaper photographs (2 tiles of 256 each), the
# small-image network on 1 500 CIFAR-10 training rows, the ensemble on the photographs (1 tile each).
#   sh bench/make_priors.sh ../shared/data          (LEVELS="9 10" sh ... for some levels only)
# A prior serves every network of its shape (prior_key) and is fixed by its SHA-256 (adaptive_priors.py): the
# shipped ones were made with pcnn-rgb-v7, pcnn-rgb-mix-v1 and pcnn-gray-v2 and also serve pcnn-rgb-v8, pcnn-rgb-mix-v2
# and pcnn-gray-v4.
set -e
D=${1:-../shared/data}
P=pixzip/entropy/priors
M=pixzip/models
mk() { python3 -m pixzip.training.adaptive_prior "$@"; }
for L in ${LEVELS:-3 4 5 6 7 8 9 10 11 12}; do
  mk --level $L --model $M/pcnn-rgb-v7.pxm --out $P/level$L-c3-h48-b4.npy $D/urban100 $D/photos
  mk --level $L --model $M/pcnn-rgb-small-v5.pxm --out $P/level$L-c3-h96-b8.npy $D/cifar10/train_x_partial.npy
  mk --level $L --model $M/pcnn-gray-v2.pxm --out $P/level$L-c1-h48-b4.npy $D/urban100 $D/photos
done
for L in ${LEVELS:-3 4 5 6 7 8 9 10 11 12}; do
  case $L in 4|6|8|10|12) mk --level $L --model $M/pcnn-rgb-mix-v1.pxm --per-image 1 --out $P/level$L-c3-h48-b4+c3-h96-b8.npy $D/urban100 $D/photos;; esac
done
# the three-member ensemble (session 30): the levels -e 7..9 run it at (10, 8 for a plane of one tile, 12 for values)
for L in ${LEVELS:-8 10 12}; do
  case $L in 8|10|12) mk --level $L --model $M/pcnn-rgb-mix-v5.pxm --per-image 1 --out $P/level$L-c3-h48-b4+c3-h96-b8+c3-h96-b8.npy $D/urban100 $D/photos;; esac
done
# levels 17 and 18 (session 33): palette index planes, the grey network only (plane_options.photo_palette), from the
# first 50 Urban100 images (the last ten held out for measuring them) and the photographs, each tile quantised
for L in ${LEVELS:-17 18}; do
  case $L in 17|18) mk --level $L --model $M/pcnn-gray-v4.pxm --palettes --images 50 --out $P/level$L-c1-h48-b4.npy $D/urban100 $D/photos;; esac
done
