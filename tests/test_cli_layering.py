"""The command line sits on top: no mpcrt module but __main__ imports mpcrt.launch, and no
import cycle runs through a launch module (function-local imports count)."""
from __future__ import annotations

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGES = {"mpcrt": "mpcrt", "protocols": "mpcrt.protocols", "kernels": "mpcrt.kernels",
            "parties": "mpcrt.parties", "launch": "mpcrt.launch"}


def _modules() -> dict[str, pathlib.Path]:
    out = {}
    for d, pkg in PACKAGES.items():
        for f in (ROOT / d).rglob("*.py"):
            rel = f.relative_to(ROOT / d).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            out[".".join([pkg, *parts])] = f
    return out


def _imports(path: pathlib.Path, name: str, known: set[str]) -> set[str]:
    """The package modules `path` imports anywhere in it (module level or inside functions)."""
    found = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            targets = [f"{base}.{a.name}" for a in node.names] + [base]
        for t in targets:
            while t and t not in known:
                t = t.rpartition(".")[0]
            if t and t != name and t != "mpcrt":
                found.add(t)
    return found


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    return {m: _imports(p, m, set(mods)) for m, p in mods.items()}


def test_only_mpcrt_main_imports_launch():
    bad = {m: sorted(d for d in deps if d.startswith("mpcrt.launch"))
           for m, deps in _graph().items()
           if not m.startswith("mpcrt.launch") and m != "mpcrt.__main__"}
    assert {m: d for m, d in bad.items() if d} == {}


def test_no_import_cycle_through_launch():
    g = _graph()
    for start in (m for m in g if m.startswith("mpcrt.launch") or m in ("mpcrt.cli", "mpcrt.config")):
        seen, stack = set(), [(start, [start])]
        while stack:
            m, path = stack.pop()
            for d in g.get(m, ()):
                assert d != start, " -> ".join(path + [d])
                if d not in seen:
                    seen.add(d)
                    stack.append((d, path + [d]))
