"""The package layout shows the architecture: the inference path (asr/*.py) imports no training or command
code, and no modules import each other in a cycle (function-level imports included)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "asr"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _without_type_checking(tree: ast.Module) -> ast.Module:
    """`if TYPE_CHECKING:` imports exist for annotations only; they are not dependencies at run time."""
    for node in ast.walk(tree):
        for field in ("body", "orelse"):
            block = getattr(node, field, None)
            if isinstance(block, list):
                setattr(node, field, [n for n in block if not (isinstance(n, ast.If) and isinstance(n.test, ast.Name)
                                                               and n.test.id == "TYPE_CHECKING")])
    return tree


def import_graph() -> dict[str, set[str]]:
    """{module: asr modules it imports anywhere in its body}."""
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges: set[str] = set()
        for node in ast.walk(_without_type_checking(ast.parse(path.read_text(), str(path)))):
            if isinstance(node, ast.Import):
                edges |= {a.name for a in node.names if a.name.split(".")[0] == "asr"}
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                    base = f"{base}.{node.module}" if node.module else base
                else:
                    base = node.module or ""
                if base.split(".")[0] != "asr":
                    continue
                # `from .training import lm` imports the module asr.training.lm
                subs = {f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in files}
                edges |= subs or {base}
        graph[name] = {e for e in edges if e in files and e != name}
    return graph


def forbidden_imports(graph: dict[str, set[str]]) -> dict[str, list[str]]:
    """Inference modules (asr/*.py) that import training or command code."""
    # asr/__main__.py is `python -m asr`: the command line's entry point, not part of the inference path
    inference = [m for m in graph if (m.count(".") == 1 or m == "asr") and m != "asr.__main__"]
    bad = {m: sorted(e for e in graph[m] if e.startswith(("asr.training", "asr.apps"))) for m in inference}
    return {m: e for m, e in bad.items() if e}


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    cycles, state = [], {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    # The package's __init__ re-exporting its public API is not a cycle of the code's dependencies.
    return [c for c in cycles if "asr" not in c]


def test_inference_path_imports_no_training_benchmark_or_cli_code():
    graph = import_graph()
    assert {"asr.audio", "asr.features", "asr.model", "asr.decoding", "asr.streaming", "asr.transcribe"} <= set(graph)
    assert not forbidden_imports(graph), "inference modules must not import training/app code"


def test_no_import_cycles():
    cycles = find_cycles(import_graph())
    assert not cycles, f"import cycles: {[' -> '.join(c) for c in cycles]}"


def test_the_checks_see_cycles_and_forbidden_imports(tmp_path, monkeypatch):
    """A fake package with a cycle through a function-level import, from an inference module into training."""
    fake = tmp_path / "asr"
    (fake / "training").mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "training" / "__init__.py").write_text("")
    (fake / "a.py").write_text("def f():\n    from .training import t\n")
    (fake / "training" / "t.py").write_text("from typing import TYPE_CHECKING\nfrom ..a import f\n"
                                            "if TYPE_CHECKING:\n    from . import u\n")
    (fake / "training" / "u.py").write_text("")
    monkeypatch.setattr(__import__(__name__), "PACKAGE", fake)
    graph = import_graph()
    assert graph["asr.a"] == {"asr.training.t"} and graph["asr.training.t"] == {"asr.a"}
    assert find_cycles(graph) == [["asr.a", "asr.training.t", "asr.a"]]
    assert forbidden_imports(graph) == {"asr.a": ["asr.training.t"]}
