"""Print README.md's Quick start commands, one per line: the ```sh blocks of that section, in order.
.ci/run runs what this prints and tests/test_package.py checks it, so README and CI cannot drift."""

import re
import sys
from pathlib import Path

QUICK_START = re.compile(r"^## Quick start\n(.*?)^## ", re.S | re.M)
SH_BLOCK = re.compile(r"^```sh\n(.*?)^```", re.S | re.M)


def quick_start_commands(readme: str) -> list[str]:
    section = QUICK_START.search(readme)
    if section is None:
        raise SystemExit("README.md has no '## Quick start' section")
    return [block.strip() for block in SH_BLOCK.findall(section.group(1))]


if __name__ == "__main__":
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[1] / "README.md"
    print("\n".join(quick_start_commands(path.read_text())))
