"""Installed size of pixzip's core install (issue 21): pixzip itself and its core dependencies, no torch.

Builds the wheel offline (`pip wheel --no-deps --no-build-isolation --no-index .`), installs it with
`--no-deps` into a fresh venv that sees this interpreter's packages (`--system-site-packages`, so no
package index is needed), checks that the installed `pixzip` compresses and decompresses a photo with
torch made unimportable, and sums the installed files (each distribution's RECORD, as pip installed
them) of pixzip and of the core dependencies pyproject.toml names, with theirs, transitively.
torch's own installed size (the build on this machine) is printed beside it.

    python3 bench/install_size.py [--out bench/results/install-size.md]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import tomllib
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from startup import NO_TORCH  # noqa: E402  (the one prelude that makes torch unimportable)


def requirement_name(req: str) -> str:
    return re.split(r"[\s<>=!~;\[(]", req.strip(), maxsplit=1)[0]


def dist_size(dist: metadata.Distribution) -> int:
    total = 0
    for f in dist.files or ():
        p = Path(dist.locate_file(f))
        if p.is_file():
            total += p.stat().st_size
    return total


def closure(names: list[str]) -> dict[str, metadata.Distribution]:
    """The distributions of `names` and, transitively, of their unconditional requirements."""
    seen: dict[str, metadata.Distribution] = {}
    todo = list(names)
    while todo:
        name = todo.pop()
        key = name.lower().replace("_", "-")
        if key in seen:
            continue
        dist = metadata.distribution(name)
        seen[key] = dist
        for req in dist.requires or ():
            if ";" in req and "extra" in req.split(";", 1)[1]:
                continue
            if ";" in req:          # an environment marker: honour it
                from packaging.markers import Marker
                if not Marker(req.split(";", 1)[1]).evaluate():
                    continue
            todo.append(requirement_name(req))
    return seen


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    core = [requirement_name(r) for r in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PIXZIP_MODELS")}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        wheel_cmd = [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "--no-index",
                     "-q", "-w", str(tmp / "dist")]
        subprocess.run(wheel_cmd, check=True, env=env)
        (wheel,) = (tmp / "dist").glob("pixzip-*.whl")
        venv = tmp / "venv"
        subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)], check=True)
        python = str(venv / "bin" / "python")
        subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], check=True, env=env)
        block = tmp / "block"
        block.mkdir()
        (block / "sitecustomize.py").write_text(NO_TORCH)
        run_env = {**env, "PYTHONPATH": str(block), "PATH": f"{venv / 'bin'}{os.pathsep}{env['PATH']}"}
        work = tmp / "work"
        work.mkdir()
        (work / "sample.png").write_bytes((ROOT / "docs" / "sample.png").read_bytes())
        for step in ("pixzip compress sample.png -o s.pxz -q", "pixzip decompress s.pxz -o back.png -q"):
            subprocess.run(["bash", "-c", step], cwd=work, env=run_env, check=True)
        code = ("import json, sys; from importlib import metadata; d = metadata.distribution('pixzip'); "
                "print(json.dumps([str(d.locate_file(f)) for f in d.files]))")
        import json
        files = json.loads(subprocess.run([python, "-c", code], env=env, capture_output=True, text=True,
                                          check=True).stdout)
        pixzip_size = sum(Path(f).stat().st_size for f in files if Path(f).is_file())
        wheel_size = wheel.stat().st_size
    deps = closure(core)
    rows = [("pixzip (installed from the wheel)", pixzip_size)]
    rows += sorted(((f"{d.metadata['Name']} {d.version}", dist_size(d)) for d in deps.values()),
                   key=lambda r: -r[1])
    total = sum(s for _, s in rows)
    try:
        torch = metadata.distribution("torch")
        torch_row = f"torch {torch.version} (not installed by the core; this machine's build) | {dist_size(torch) / 1e6:.1f}"
    except metadata.PackageNotFoundError:
        torch_row = "torch: not installed here | -"
    lines = ["| distribution | MB installed |", "|---|---|"]
    lines += [f"| {name} | {size / 1e6:.1f} |" for name, size in rows]
    lines += [f"| **core install, total** | **{total / 1e6:.1f}** |", f"| {torch_row} |"]
    table = "\n".join(lines)
    print(table)
    print(f"\nwheel: {wheel_size / 1e6:.2f} MB; `{' '.join(['pip', 'wheel', '.', *wheel_cmd[5:9]])}`")
    if args.out:
        args.out.write_text(table + "\n")


if __name__ == "__main__":
    main()
