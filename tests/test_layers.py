"""The package's layers point one way and no module imports itself back through others.

Every `import` of an echopulse module counts, at module level or inside a function (a lazy import is still
a dependency). Run it alone as the check anyone can repeat: `pytest tests/test_layers.py -q`.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "echopulse"

LAYERS: dict[str, int] = {
    "errors": 0, "version": 0, "ecg": 0, "sample": 0,
    "ingest": 1, "preprocess": 1,
    "echo": 2, "drawing": 2,
    "generator": 3,
    "pipeline": 4,
    "video": 5, "outputs": 5, "plot": 5, "evaluation": 5,
    "cli": 6, "streaming": 6, "batch": 6,
}  # fmt: skip
"""Top-level module or package → layer; a module may import its own layer's or lower ones', never higher.
The package's `__init__` (the public API) and `__main__` sit above everything and nothing imports them."""

APART = [{"ingest", "preprocess"}, {"video", "outputs", "plot", "evaluation"}, {"cli", "streaming", "batch"}]
"""Parts of one layer that must not import each other: readers and preprocessing meet only in `ecg`;
sinks and evaluation are side by side; the three front ends share the pipeline, never each other."""
ALLOWED_SIDEWAYS = {("outputs", "plot"), ("video", "plot"), ("cli", "streaming"), ("cli", "batch")}
"""Sinks may share the ECG plot; the `echopulse` command launches the service and the pipeline (`serve`,
`stream`, `batch`), while they never import the command's code."""


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The echopulse modules `path` imports; `from pkg import sub` names the submodule when it is one."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "echopulse"}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.split(".")[0] != "echopulse":
                continue
            subs = {f"{node.module}.{a.name}" for a in node.names} & modules
            names = [a.name for a in node.names if f"{node.module}.{a.name}" not in modules]
            found |= subs
            if names:
                found.add(node.module)
    return found & modules


def graph() -> dict[str, set[str]]:
    paths = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: imports_of(path, set(paths)) - {name} for name, path in paths.items()}


def part(module: str) -> str:
    return module.split(".")[1] if "." in module else ""


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_every_part_of_the_package_has_a_layer() -> None:
    unplaced = {part(m) for m in graph()} - set(LAYERS) - {"", "__main__"}
    assert not unplaced, f"give these a layer in LAYERS: {sorted(unplaced)}"


def test_no_import_cycle_between_modules() -> None:
    assert cycles(graph()) == []


def test_no_module_imports_a_layer_above_its_own_or_a_part_it_must_stay_apart_from() -> None:
    wrong = []
    for module, targets in graph().items():
        source = part(module)
        if source in ("", "__main__"):
            continue
        for target in targets:
            other = part(target)
            if other == source:
                continue
            if other in ("", "__main__"):
                wrong.append(f"{module} imports the public API {target} (import from the module holding it)")
            elif LAYERS[other] > LAYERS[source]:
                wrong.append(f"{module} (layer {LAYERS[source]}) imports {target} (layer {LAYERS[other]})")
            elif (source, other) not in ALLOWED_SIDEWAYS and any({source, other} <= group for group in APART):
                wrong.append(f"{module} imports {target}: {source} and {other} stay apart")
    assert wrong == []


@pytest.mark.parametrize(
    ("edges", "expected"),
    [({"a": {"b"}, "b": {"c"}, "c": {"a"}}, [["a", "b", "c"]]), ({"a": {"b"}, "b": set()}, [])],
)
def test_the_cycle_finder_finds_cycles(edges, expected) -> None:
    assert cycles(edges) == expected


def test_lazy_imports_count(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from echopulse.generator import echo_generator\n")
    assert imports_of(module, {"echopulse.generator", "echopulse.generator.echo_generator"}) == {
        "echopulse.generator.echo_generator"
    }
