"""The package's import rule, read from the source with ``ast``: a layer imports only the layers
below it, the builders and the device-test tools are never imported by the runtime, no module
imports the package inside a function, and the module graph has no cycle.

Layers, from the bottom (a module may also import its own subpackage)::

    errors, paths, artifacts, proc      (base)
    guest | net                         (peers: neither imports the other)
    qemu
    inject
    judge
    ui                                  (may also use build, to build what a command needs)
    build, devtest                      (tools: may use base … judge, never ui or each other)
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from icevm import paths

PKG = paths.CONTROLLER_DIR
BASE = 0
RANK = {"errors": BASE, "paths": BASE, "artifacts": BASE, "proc": BASE,
        "guest": 1, "net": 1, "qemu": 2, "inject": 3, "judge": 4, "ui": 5}
TOOLS = {"build", "devtest"}


def module_name(path: Path, root: Path = PKG) -> str:
    rel = path.relative_to(root.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def group(module: str) -> str:
    """``icevm.qemu.vm`` → ``qemu``; ``icevm.paths`` → ``paths``; ``icevm`` → ``icevm``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def imports(path: Path, root: Path = PKG) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """The icevm modules ``path`` imports: (at module level, inside a function), with lines."""
    tree = ast.parse(path.read_text(), str(path))
    here = module_name(path, root)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    top: list[tuple[str, int]] = []
    local: list[tuple[str, int]] = []

    def is_module(name: str) -> bool:
        rel = Path(*name.split(".")[1:])
        return (root / rel).with_suffix(".py").is_file() or (root / rel / "__init__.py").is_file()

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            func = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            found: list[str] = []
            if isinstance(child, ast.Import):
                found = [a.name for a in child.names]
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")[: len(package.split(".")) - child.level + 1]
                    mod = ".".join([*base, child.module] if child.module else base)
                else:
                    mod = child.module or ""
                # from a.b import c: c may be a module a.b.c
                found = [f"{mod}.{a.name}" if is_module(f"{mod}.{a.name}") else mod
                         for a in child.names]
            for m in found:
                if m == root.name or m.startswith(root.name + "."):
                    (local if in_function else top).append((m, child.lineno))
            visit(child, func)

    visit(tree, False)
    return top, local


def breaches(root: Path = PKG) -> list[str]:
    """Every import of ``root``'s package that breaks the rule, and every cycle, as text."""
    out: list[str] = []
    graph: dict[str, set[str]] = {}
    for path in sorted(root.rglob("*.py")):
        here = module_name(path, root)
        top, local = imports(path, root)
        for mod, line in local:
            out.append(f"{here}:{line} imports {mod} inside a function")
        graph[here] = {m for m, _ in top}
        if here == root.name:  # the public API re-exports from every runtime layer
            continue
        src = group(here)
        for mod, line in top:
            dst = group(mod)
            if dst == src or mod == root.name:  # the package itself: its public API
                continue
            why = None
            if dst in TOOLS:
                if src != "ui":
                    why = "only the ui may use the builders and tools"
            elif src in TOOLS:
                if dst not in RANK or dst == "ui":
                    why = "the tools use the runtime, not the ui"
            elif src not in RANK or dst not in RANK:
                why = "a module outside the layers"
            elif RANK[dst] > RANK[src]:
                why = "an upward import"
            elif RANK[dst] == RANK[src] and RANK[src] != BASE:
                why = "peers do not import each other"
            if why:
                out.append(f"{here}:{line} imports {mod}: {why}")
    modules = set(graph)

    def resolve(m: str) -> str | None:
        while m and m not in modules:
            m = m.rpartition(".")[0]
        return m or None

    edges = {m: {r for d in ds if (r := resolve(d)) and r != m} for m, ds in graph.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def dfs(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for n in sorted(edges[m]):
            # a package's __init__ importing its own submodules is not a cycle in practice
            if n == root.name or m == root.name:
                continue
            if state.get(n) == 1:
                out.append("cycle: " + " → ".join([*stack[stack.index(n):], n]))
            elif n not in state:
                dfs(n)
        stack.pop()
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            dfs(m)
    return out


def test_the_package_keeps_its_import_rule() -> None:
    assert breaches() == []


def _copy(tmp_path: Path) -> Path:
    dst = tmp_path / "icevm"
    for p in PKG.rglob("*.py"):
        q = dst / p.relative_to(PKG)
        q.parent.mkdir(parents=True, exist_ok=True)
        q.write_text(p.read_text())
    return dst


@pytest.mark.parametrize(("where", "line", "expect"), [
    ("qemu/vm.py", "from icevm.judge import verdicts", "upward import"),
    ("guest/agent.py", "from icevm.net import packets", "peers do not import each other"),
    ("judge/scenarios.py", "from icevm.build import guest_image", "only the ui may use"),
    ("devtest/qtest.py", "from icevm.ui import render", "the tools use the runtime"),
    ("inject/host.py", "def f() -> None:\n    from icevm.qemu import vm", "inside a function"),
    ("net/rss.py", "from icevm.net import pcap", None),
])
def test_a_breach_is_caught(tmp_path: Path, where: str, line: str, expect: str | None) -> None:
    root = _copy(tmp_path)
    p = root / where
    p.write_text(p.read_text() + "\n" + line + "\n")
    found = breaches(root)
    if expect is None:
        assert found == []
    else:
        assert any(expect in b and b.startswith(module_name(p, root)) for b in found), found


def test_a_cycle_is_caught(tmp_path: Path) -> None:
    root = _copy(tmp_path)
    p = root / "net" / "packets.py"
    p.write_text(p.read_text() + "\nfrom icevm.net import rss\n")  # rss imports packets
    assert any(b.startswith("cycle:") and "icevm.net.rss" in b for b in breaches(root))
