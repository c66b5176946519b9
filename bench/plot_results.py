"""One rate-against-decode-speed plot from several `pixzip bench --json` runs on the same images (for
instance the default models' run and the `-e 2` run): every result of the first file, then those of
the later files whose label (codec, and pixzip's models) is new.

    python3 bench/plot_results.py bench/results/cbsd68.json bench/results/cbsd68-effort2.json \\
        -o bench/results/cbsd68.png --title "CBSD68: 68 photos"
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pixzip import bench  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", help="JSON files written by pixzip bench --json")
    ap.add_argument("-o", "--out", required=True)
    ap.add_argument("--title", default="")
    args = ap.parse_args()
    results, seen = [], set()
    for run in args.runs:
        for row in json.loads(Path(run).read_text())["results"]:
            r = bench.Result.from_row(row)
            if r.label not in seen:
                seen.add(r.label)
                results.append(r)
    bench.plot(results, Path(args.out), args.title)


if __name__ == "__main__":
    main()
