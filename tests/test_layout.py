"""The layout shows the architecture: subpackages whose imports run one way, from the command line down to the math,
and no import cycle between files. Every import counts, including the ones inside functions (lazy imports keep a
process light, but they are dependencies all the same)."""

import ast
from pathlib import Path

import pytest


PACKAGE = Path(__file__).parent.parent / "hf_progressive"
# each part may import the parts below it, never one above it or beside it (data and training share a level and
# stay apart); the package root only holds the version and the lazy public API
LEVELS = {
    "errors": 0,
    "utils": 1,
    "expansion": 2,
    "models": 3,
    "data": 4,
    "training": 4,
    "family": 5,
    "analysis": 6,
    "hub": 7,
    "cli": 8,
    "__main__": 9,  # `python -m hf_progressive`: the command line's own entry
}


def _module(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """The hf_progressive modules `path` imports (absolute names; `from . import x` resolved to the module x)."""
    module = _module(path)
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("hf_progressive")}
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            if not target.startswith("hf_progressive"):
                continue
            for alias in node.names:
                candidate = f"{target}.{alias.name}"
                found.add(candidate if _exists(candidate) else target)
    return found


def _exists(module: str) -> bool:
    path = PACKAGE.parent / Path(*module.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _part(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None  # None: the package root


GRAPH = {_module(p): _imports(p) for p in sorted(PACKAGE.rglob("*.py")) if "lm_eval_tasks" not in p.parts}


def _violations(graph: dict[str, set[str]]) -> list[str]:
    bad = []
    for module, imports in graph.items():
        here = _part(module)
        for target in imports:
            there = _part(target)
            if here is None or there is None or there == here:
                continue
            if there not in LEVELS or here not in LEVELS or LEVELS[there] >= LEVELS[here]:
                bad.append(f"{module} -> {target}")
    return bad


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    found, state = [], {}

    def visit(node, stack):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in graph or nxt == node:
                continue
            if state.get(nxt) == "open":
                found.append(stack[stack.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt, stack)
        stack.pop()
        state[node] = "done"

    for node in graph:
        if node not in state:
            visit(node, [])
    return found


def test_imports_run_one_way_from_the_cli_down_to_the_math():
    assert set(LEVELS) >= {_part(m) for m in GRAPH if _part(m) and "." in m.removeprefix("hf_progressive.")} - {None}
    assert _violations(GRAPH) == []


def test_no_import_cycle_between_files_nor_between_parts():
    assert _cycles(GRAPH) == []
    parts = {}
    for module, imports in GRAPH.items():
        parts.setdefault(_part(module), set()).update(
            _part(t) for t in imports if _part(t) not in (None, _part(module))
        )
    assert _cycles({k: v for k, v in parts.items() if k}) == []


@pytest.mark.parametrize(
    "graph, expected",
    [
        ({"hf_progressive.expansion.grow": {"hf_progressive.models.llama.configuration_llama"}}, "violation"),
        ({"hf_progressive.data.a": {"hf_progressive.training.b"}}, "violation"),
        ({"hf_progressive.family.a": {"hf_progressive.data.b", "hf_progressive.errors"}}, None),
        (
            {
                "hf_progressive.family.a": {"hf_progressive.family.b"},
                "hf_progressive.family.b": {"hf_progressive.family.a"},
            },
            "cycle",
        ),
    ],
    ids=["upward", "sideways", "downward", "file cycle"],
)
def test_the_checks_themselves_catch_what_they_should(graph, expected):
    found = "violation" if _violations(graph) else "cycle" if _cycles(graph) else None
    assert found == expected


def test_every_subpackage_says_what_it_owns():
    for init in PACKAGE.rglob("__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc and len(doc) > 40, init
