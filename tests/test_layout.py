"""The package's layering (docs/ARCHITECTURE.md): no import cycles, no import that goes up a layer,
every module claimed by a layer, no torch in the torch-free layers, no module too long to read.
Imports are read with `ast`, those inside functions included, so a lazy import cannot hide a cycle."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "pixzip"
MAP = ROOT / "docs" / "ARCHITECTURE.md"


def layer_table() -> list[tuple[str, int, str, bool]]:
    """(module prefix, rank, layer, torch allowed) rows of the map page's layer table."""
    text = MAP.read_text()
    block = re.search(r"<!-- layers:.*?-->(.*?)<!-- /layers -->", text, re.S)
    assert block, "docs/ARCHITECTURE.md lost its layer table"
    rows = []
    for line in block.group(1).splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 4 or not cells[0].isdigit():
            continue
        rank, layer, modules, torch_cell = cells
        for prefix in re.findall(r"`([\w.]+)`", modules):
            rows.append((prefix, int(rank), layer, torch_cell == "yes"))
    assert rows, "the layer table has no rows"
    return rows


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports(name: str, path: Path, known: set[str]) -> list[tuple[str, int]]:
    """(imported name, line) of every import in a module, anywhere in it; relative imports resolved,
    `from X import y` naming the module X.y where that is a module of the package."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            for a in node.names:
                sub = f"{base}.{a.name}"
                found.append((sub if sub in known else base, node.lineno))
    return found


def owner(name: str, table) -> tuple[str, int, str, bool] | None:
    """The table row with the longest prefix of `name` (a whole dotted component)."""
    rows = [r for r in table if name == r[0] or name.startswith(r[0] + ".")]
    return max(rows, key=lambda r: len(r[0]), default=None)


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    edges = {}
    for name, path in mods.items():
        edges[name] = {target for target, _ in imports(name, path, known) if target in known and target != name}
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), or with a self-loop."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles():
    assert cycles(graph()) == []


def test_every_module_has_a_layer():
    table = layer_table()
    assert [name for name in modules() if owner(name, table) is None] == []


def test_imports_go_down_the_layers():
    table = layer_table()
    wrong = []
    for name, targets in graph().items():
        mine = owner(name, table)
        for target in targets:
            theirs = owner(target, table)
            if theirs[1] > mine[1]:
                wrong.append(f"{name} ({mine[2]}) imports {target} ({theirs[2]})")
    assert wrong == []


def test_torch_free_layers_do_not_import_torch():
    table = layer_table()
    mods = modules()
    pulled = [f"{name}:{line} imports {target}"
              for name, path in mods.items() if not owner(name, table)[3]
              for target, line in imports(name, path, set(mods)) if target.split(".")[0] == "torch"]
    assert pulled == []


MAX_LINES = 600


def test_no_module_is_too_long_to_read_in_one_sitting():
    """Issue 19: no Python module over MAX_LINES lines; split a longer one where its jobs divide."""
    long = {f"{path.relative_to(ROOT)} ({n} lines)" for path in sorted(PACKAGE.rglob("*.py"))
            if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {', '.join(sorted(long))}"


@pytest.mark.parametrize("case", ["cycle", "upward", "torch", "long"])
def test_the_checks_catch_what_they_are_for(case, tmp_path, monkeypatch):
    """The checks above on a made-up package: a cycle through a function-level import, an import from
    a lower layer up into a higher one, torch in a torch-free layer."""
    pkg = tmp_path / "pixzip"
    for sub in ("spec", "nets"):
        (pkg / sub).mkdir(parents=True)
        (pkg / sub / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "nets" / "a.py").write_text("from . import b\n")
    (pkg / "nets" / "b.py").write_text("def f():\n    from .a import x\n" if case == "cycle" else "")
    (pkg / "spec" / "c.py").write_text({"upward": "from ..nets import a\n", "torch": "import torch\n",
                                        "long": "x = 1\n" * (MAX_LINES + 1)}.get(case, ""))
    monkeypatch.setitem(globals(), "ROOT", tmp_path)
    monkeypatch.setitem(globals(), "PACKAGE", pkg)
    monkeypatch.setitem(globals(), "layer_table", lambda: [("pixzip.spec", 1, "spec", False),
                                                          ("pixzip.nets", 3, "nets", True), ("pixzip", 6, "top", True)])
    check = {"cycle": test_no_import_cycles, "upward": test_imports_go_down_the_layers,
             "torch": test_torch_free_layers_do_not_import_torch,
             "long": test_no_module_is_too_long_to_read_in_one_sitting}[case]
    with pytest.raises(AssertionError):
        check()
