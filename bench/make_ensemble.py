"""Build an ensemble model file from member model files (pixzip.nets.ensemble.IntEnsemble): the equal-weight
mixture of their distributions, coded by the native CPU coder only.

    python3 bench/make_ensemble.py pixzip/models/pcnn-rgb-v8.pxm pixzip/models/pcnn-rgb-large-v7.pxm \
        pixzip/models/pcnn-rgb-large-v7b.pxm -o pixzip/models/pcnn-rgb-mix-v5.pxm
    (pcnn-rgb-mix-v4, session 29's: the first two alone; pcnn-rgb-mix-v3, session 28's: pcnn-rgb-large-v6.pxm in place of pcnn-rgb-large-v7.pxm;
    pcnn-rgb-mix-v2, the ensemble of sessions 18-27: pcnn-rgb-small-v5.pxm in place of pcnn-rgb-large-v7.pxm;
    pcnn-rgb-mix-v1, before session 18: pcnn-rgb-v7.pxm and pcnn-rgb-small-v5.pxm)

The members' integers are copied unchanged; the provenance names them (name and identity). A shipped
model file never changes once released: a new ensemble gets a new name.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pixzip.nets import modelfile  # noqa: E402
from pixzip.nets.ensemble import IntEnsemble  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("members", nargs="+", help="member .pxm files (2 to 4 PixelCNNs)")
    ap.add_argument("-o", "--out", required=True)
    args = ap.parse_args()
    members = [modelfile.load(Path(p)) for p in args.members]
    net = IntEnsemble([m.net for m in members])
    provenance = {"ensemble_of": [{"name": m.name, "id": m.id} for m in members],
                  "mixture": "equal weights, each member's table scaled to 2^24 first"}
    print(modelfile.save(net, Path(args.out), provenance))


if __name__ == "__main__":
    main()
