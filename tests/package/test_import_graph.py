"""The package's import graph has no cycle, counting the imports inside functions too (a cycle
hidden by a function-local import is still a cycle: the two modules cannot be read apart)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "probattr_monitor"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in PACKAGE.rglob("*.py")}


def _type_checking_only(node: ast.AST, parents: dict) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return True
    return False


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The package modules ``name`` imports (module level and inside functions; not the ones under
    ``if TYPE_CHECKING:``, which never run). ``from pkg import sub`` counts as importing ``pkg.sub``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    here = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if _type_checking_only(node, parents):
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in known)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = here.split(".")[: len(here.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                target = f"{base}.{alias.name}"
                found.add(target if target in known else base)
    return {target for target in found if target in known and target != name}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component of more than one module (Tarjan)."""
    index, low, stack, on_stack, out, counter = {}, {}, [], set(), [], [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return out


def graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imports_of(name, path, set(found)) for name, path in found.items()}


def test_the_walk_sees_function_local_imports():
    edges = graph()
    assert "probattr_monitor.api.inputs" in edges["probattr_monitor.callbacks.probattr_callback"]  # in a method
    assert cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]


def test_no_import_cycle_in_the_package():
    assert cycles(graph()) == []


def test_the_probes_import_nothing_of_the_monitor():
    """``probes/`` is the science: it may use the errors module (a leaf) and itself, nothing else."""
    allowed = ("probattr_monitor.probes", "probattr_monitor.errors")
    for name, targets in graph().items():
        if name.startswith("probattr_monitor.probes"):
            assert all(t.startswith(allowed) for t in targets), (name, sorted(targets))


MAX_LINES = 300
REASON = "Longer than 300 lines because"


def test_no_module_is_over_300_lines_without_its_reason():
    """A module over ~300 lines says why in its docstring (a sentence starting with REASON)."""
    unexplained = []
    for name, path in modules().items():
        text = path.read_text(encoding="utf-8")
        if text.count("\n") > MAX_LINES and REASON not in (ast.get_docstring(ast.parse(text)) or ""):
            unexplained.append(f"{name} ({text.count(chr(10))} lines)")
    assert unexplained == []


def test_every_public_function_and_method_has_a_docstring():
    """The contract (or the formula) of every public name is written where it is defined; the
    Trainer's event hooks (``on_*``), whose contract is transformers', and ``@overload`` stubs aside."""
    missing = []
    for name, path in modules().items():
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            members = [node] + ([m for m in node.body] if isinstance(node, ast.ClassDef) else [])
            for member in members:
                if not isinstance(member, (ast.FunctionDef, ast.ClassDef)) or member.name.startswith(("_", "on_")):
                    continue
                if any("overload" in ast.unparse(d) for d in member.decorator_list):
                    continue
                if not ast.get_docstring(member):
                    missing.append(f"{name}.{member.name}")
    assert missing == []
