"""The layers import one way (domain ← db ← activities ← workflows ← client ← ingress), the edge
has no import cycle, and no function of the edge is longer than a screen (docs/tests.md)."""

import ast
from pathlib import Path

from tests.test_image import imports_of

ROOT = Path(__file__).resolve().parents[2]
# Each layer and the project's layers it may import (itself included).
ALLOWED = {
    "renewals": {"renewals"},
    "db": {"renewals", "db"},
    "activities": {"renewals", "db", "activities"},
    "workflows": {"renewals", "db", "activities", "workflows"},
    "client": {"renewals", "db", "activities", "workflows", "client"},
    # The edge reads its own settings (settings.py: the environment); nothing below it does.
    "ingress": {"renewals", "db", "activities", "workflows", "client", "ingress", "settings"},
}
PROJECT = set(ALLOWED) | {"stack", "bench", "tests", "worker", "starter", "telemetry", "settings"}


def test_every_layer_imports_only_the_layers_below_it():
    wrong = []
    for layer, allowed in ALLOWED.items():
        for path in sorted((ROOT / layer).rglob("*.py")):
            for module in imports_of(path):
                top = module.split(".")[0]
                if top in PROJECT and top not in allowed:
                    wrong.append(f"{path.relative_to(ROOT)} imports {module}")
    assert wrong == []


def test_the_edge_has_no_import_cycle():
    modules = {
        ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): path
        for path in (ROOT / "ingress").rglob("*.py")
    }
    graph = {name: {m for m in imports_of(path) if m in modules and m != name} for name, path in modules.items()}

    def cycle_from(start: str, node: str, seen: tuple[str, ...]) -> tuple[str, ...] | None:
        for nxt in graph[node]:
            if nxt == start:
                return (*seen, nxt)
            if nxt not in seen:
                found = cycle_from(start, nxt, (*seen, nxt))
                if found:
                    return found
        return None

    cycles = [c for name in graph if (c := cycle_from(name, name, (name,)))]
    assert cycles == []


def test_no_function_of_the_edge_is_over_80_lines():
    long = []
    for path in sorted((ROOT / "ingress").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > 80:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({lines} lines)")
    assert long == []
