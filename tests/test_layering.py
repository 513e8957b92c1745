"""The package's shape: its import graph (every module, function-local imports included,
parsed from the source, nothing imported) has no cycle and points one way,

    launch -> parties -> mpcrt -> protocols -> kernels   (mpcrt.errors: a leaf anyone may import),

and no source file is over 700 lines. The reference is the check in the session's
before-stop hook; the only module allowed to import upward is mpcrt.__main__ (the
command line's entry).
"""
from __future__ import annotations

import ast
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = {"mpcrt": "mpcrt", "mpcrt.protocols": "protocols", "mpcrt.kernels": "kernels",
            "mpcrt.parties": "parties", "mpcrt.launch": "launch"}
LAYERS = {"mpcrt.kernels": 0, "mpcrt.protocols": 1, "mpcrt": 2, "mpcrt.parties": 3, "mpcrt.launch": 4}
LEAVES = {"mpcrt.errors"}  # imported from every layer
MAX_LINES = 700
LINE_CHECKED = ["mpcrt", "protocols", "kernels", "parties", "launch", "benchmarks"]

# By design: the command line (`python -m mpcrt`, `mpcrt ...`) starts parties, the dealer and launchers.
UPWARD_OK = {"mpcrt.__main__"}


def _modules() -> dict[str, pathlib.Path]:
    mods = {}
    for pkg, d in PACKAGES.items():
        for path in sorted((ROOT / d).rglob("*.py")):
            rel = path.relative_to(ROOT / d).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            name = ".".join([pkg, *parts]) if parts else pkg
            mods.setdefault(name, path)
    return mods


def _edges(mods: dict[str, pathlib.Path]) -> dict[str, set[str]]:
    """Module -> the package modules it imports anywhere in its source (the root package
    itself only where a name is taken from it)."""
    edges: dict[str, set[str]] = {m: set() for m in mods}
    for m, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                targets = [f"{node.module}.{a.name}" for a in node.names]
                targets = [t if t in mods else node.module for t in targets]
            else:
                continue
            for t in targets:
                while t and t not in mods:
                    t = t.rpartition(".")[0]
                if t and t != m and not m.startswith(t + ".") and t not in LEAVES:
                    edges[m].add(t)
    return edges


def _layer(m: str) -> int:
    best = max((p for p in LAYERS if m == p or m.startswith(p + ".")), key=len)
    return LAYERS[best]


def _reach(graph: dict[str, set[str]], a: str) -> set[str]:
    seen, todo = set(), [a]
    while todo:
        for w in graph[todo.pop()]:
            if w not in seen:
                seen.add(w)
                todo.append(w)
    return seen


def _in_cycles(edges: dict[str, set[str]]) -> set[str]:
    """Modules that reach themselves. Edges to the root package (a name taken from
    mpcrt/__init__.py, which re-exports Runtime, SharedTensor, ...) do not count here,
    as in the hook: the layering test checks them."""
    graph = {m: {t for t in ts if t != "mpcrt"} for m, ts in edges.items()}
    return {m for m in graph if m in _reach(graph, m)}


def _upward(edges: dict[str, set[str]]) -> set[tuple[str, str]]:
    return {(m, t) for m, ts in edges.items() for t in ts
            if _layer(t) > _layer(m) and m not in UPWARD_OK}


def _long_files() -> set[str]:
    out = set()
    for d in LINE_CHECKED:
        for path in (ROOT / d).rglob("*.py"):
            if len(path.read_text().splitlines()) > MAX_LINES:
                out.add(path.relative_to(ROOT).as_posix())
    return out


@pytest.fixture(scope="module")
def graph():
    mods = _modules()
    return mods, _edges(mods)


def test_the_graph_sees_the_packages_and_their_edges(graph):
    """The checker itself: it finds the modules and known edges (a broken parse would pass vacuously)."""
    mods, edges = graph
    assert {"mpcrt.tensor", "mpcrt.protocols.shared", "mpcrt.kernels.ring", "mpcrt.parties.dealer"} <= set(mods)
    assert "mpcrt.protocols.shared" in edges["mpcrt.tensor"]
    assert "mpcrt.kernels.ring" in edges["mpcrt.protocols.shared"]
    assert "mpcrt.correlations" in edges["mpcrt.parties.dealer"]


def test_no_import_cycles(graph):
    _, edges = graph
    cyclic = _in_cycles(edges)
    assert cyclic == set(), f"modules in import cycles (function-local imports count): {sorted(cyclic)}"


def test_imports_point_one_way(graph):
    """launch -> parties -> mpcrt -> protocols -> kernels; no edge up (mpcrt.errors is a leaf)."""
    _, edges = graph
    up = _upward(edges)
    assert up == set(), f"imports against the layering: {sorted(up)}"


def test_protocols_and_kernels_never_import_mpcrt_modules(graph):
    """The protocol layer sees the runtime only as the `rt` it is passed (mpcrt.errors aside)."""
    _, edges = graph
    bad = {(m, t) for m, ts in edges.items() for t in ts if _layer(m) <= 1 and _layer(t) >= 2}
    assert bad == set()


def test_no_source_file_over_700_lines():
    long = _long_files()
    assert long == set(), f"source files over {MAX_LINES} lines: {sorted(long)}"


DOC_FIELDS = ("Rounds:", "Bytes per element per peer:", "Dealer words per element:", "Error:", "Reference:")


def test_protocol_modules_state_their_costs():
    """Every protocol module's docstring says what it computes, then Rounds, Bytes per
    element per peer, Dealer words per element, Error and Reference, in that order, and
    cites the project's own design document (not a file a clone lacks)."""
    missing = {}
    for path in sorted((ROOT / "protocols").glob("*.py")):
        if path.name == "__init__.py":
            continue
        doc = ast.get_docstring(ast.parse(path.read_text())) or ""
        at = [m.start() if (m := re.search("^" + re.escape(f), doc, re.M)) else -1 for f in DOC_FIELDS]
        if doc.count("\n") < 2 or min(at) <= 0 or at != sorted(at) or "DESIGN.md" in doc:
            missing[path.name] = [f for f, i in zip(DOC_FIELDS, at) if i <= 0]
    assert not missing, f"protocol module docstrings without the fixed fields (in order): {missing}"


def test_tensor_methods_come_from_one_table_with_the_protocols_docstrings():
    """mpcrt.tensor attaches every METHODS entry to SharedTensor as the protocol function
    itself (so its docstring is the protocol's own), and every entry has one."""
    from mpcrt.protocols.shared import SharedTensor
    from mpcrt.tensor import METHODS

    for name, m in METHODS.items():
        assert getattr(SharedTensor, name) is m.fn, name
        assert (m.fn.__doc__ or "").strip(), f"{name}: {m.fn.__module__}.{m.fn.__qualname__} has no docstring"
        assert m.fn.__module__.startswith("mpcrt.protocols."), name


def test_methods_with_torch_names_take_x_and_their_params():
    """An entry with torch names is called as fn(x, **params) by model import: its function
    takes x, then `params` in that order, then only parameters with defaults (mpcrt's own,
    like argmax's one_hot). Operators like lt take a second operand and carry no torch names."""
    import inspect

    from mpcrt.tensor import METHODS

    for name, m in METHODS.items():
        if not m.torch:
            continue
        rest = list(inspect.signature(m.fn).parameters.values())[1:]
        names = [p.name for p in rest]
        assert names[: len(m.params)] == list(m.params), f"{name}: {m.fn.__qualname__} takes {names}, not {m.params}"
        extra = [p.name for p in rest[len(m.params):] if p.default is inspect.Parameter.empty]
        assert not extra, f"{name}: {m.fn.__qualname__} needs {extra} beyond its torch params"
