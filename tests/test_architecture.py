"""The package's import graph has no cycles, and its functions stay small.

Every module of ``geogan/`` is parsed (no import runs); each ``import``/``from ... import`` anywhere in it
(module level, inside functions, under ``TYPE_CHECKING``) is an edge to the geogan module it names. A
function-level import hides a cycle from Python's import machinery but not from a reader: it is counted.

Size rule (outside ``geogan/models`` and ``geogan/training``): no function over ``MAX_LINES`` lines, no
parameter list over ``MAX_PARAMS`` (:func:`oversized`, which says exactly how both are counted).
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "geogan"


def _modules(package: Path) -> dict[str, tuple[Path, bool]]:
    """Dotted module name -> (file, is a package's ``__init__``)."""
    out = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        is_init = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_init else parts)] = (path, is_init)
    return out


def _owner(name: str, modules: dict) -> str | None:
    """The module ``name`` lives in (``geogan.a.b.func`` -> ``geogan.a.b``), None outside the package."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def _imported_names(node: ast.AST, package: str) -> list[str]:
    """Dotted names one import statement refers to (``from a import b`` -> ``a`` and ``a.b``)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    if node.level:
        parts = package.split(".")
        base = ".".join(parts[:len(parts) - node.level + 1] + ([node.module] if node.module else []))
    else:
        base = node.module or ""
    return [base] + [f"{base}.{alias.name}" for alias in node.names]


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """Module -> the package modules it imports, at any depth of its code."""
    modules = _modules(package)
    graph: dict[str, set[str]] = {}
    for name, (path, is_init) in modules.items():
        here = name if is_init else name.rpartition(".")[0]
        edges = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            for target in _imported_names(node, here):
                owner = _owner(target, modules)
                if owner is not None and owner != name:
                    edges.add(owner)
        graph[name] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
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

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_geogan_has_no_import_cycle():
    graph = import_graph()
    found = cycles(graph)
    detail = "; ".join(" <-> ".join(c) + " (" + ", ".join(f"{a} -> {sorted(graph[a] & set(c))}" for a in c) + ")"
                       for c in found)
    assert not found, f"import cycles among geogan modules: {detail}"


def test_the_graph_sees_relative_package_and_function_level_imports(tmp_path):
    """The checker itself: a cycle hidden in a function of a subpackage is found; plain imports are not cycles."""
    pkg = tmp_path / "geogan"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from .b import thing\n")
    (pkg / "a.py").write_text("import os\nfrom geogan.sub import b\n")
    (pkg / "sub" / "b.py").write_text("def thing():\n    from ..a import x\n    return x\n")
    (pkg / "c.py").write_text("from . import a\n")
    graph = import_graph(pkg)
    assert graph["geogan.a"] == {"geogan.sub", "geogan.sub.b"}
    assert graph["geogan.sub.b"] == {"geogan.a"}
    assert graph["geogan.c"] == {"geogan", "geogan.a"}
    assert cycles(graph) == [["geogan.a", "geogan.sub", "geogan.sub.b"]]
    (pkg / "sub" / "b.py").write_text("def thing():\n    return 1\n")
    assert cycles(import_graph(pkg)) == []


# ---------------------------------------------------------------- function size
MAX_LINES = 60
MAX_PARAMS = 12
SIZE_EXEMPT_DIRS = ("models", "training")  # network definitions and training loops: their own rules


def _parameter_count(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Every name in the signature: positional-only, ordinary and keyword-only ones, ``*args`` and ``**kw``
    (``self`` included)."""
    a = fn.args
    return len(a.posonlyargs) + len(a.args) + len(a.kwonlyargs) + (a.vararg is not None) + (a.kwarg is not None)


def _is_command_registration(call: ast.AST) -> bool:
    """``<anything>.command(...)`` or ``<anything>.callback(...)``: typer's (and click's) way to declare one."""
    return (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)
            and call.func.attr in ("command", "callback"))


def typer_commands(tree: ast.Module) -> set[ast.AST]:
    """The typer command functions of one module: decorated with ``<app>.command(...)`` or
    ``<app>.callback(...)``, or registered in the module as ``<app>.command(...)(<function name>)``."""
    registered = {node.args[0].id for node in ast.walk(tree)
                  if isinstance(node, ast.Call) and _is_command_registration(node.func)
                  and len(node.args) == 1 and isinstance(node.args[0], ast.Name)}
    return {node for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and (node.name in registered or any(_is_command_registration(d) for d in node.decorator_list))}


def oversized(package: Path = PACKAGE) -> list[str]:
    """Functions (methods and nested functions too) over the size rule, as ``path:line name: why``.

    A function's lines run from its ``def`` line to its last line (decorators not counted; a nested
    function's lines count in the function around it too). A typer command's signature is its option
    declarations, so for a command only the body counts (first statement to last line) and its parameters
    do not count at all.
    """
    found = []
    for path in sorted(package.rglob("*.py")):
        if path.relative_to(package).parts[0] in SIZE_EXEMPT_DIRS:
            continue
        tree = ast.parse(path.read_text(), filename=str(path))
        commands = typer_commands(tree)
        functions = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
        for fn in sorted(functions, key=lambda n: n.lineno):
            first = fn.body[0].lineno if fn in commands else fn.lineno
            lines, params = fn.end_lineno - first + 1, _parameter_count(fn)
            where = f"{path.relative_to(package.parent)}:{fn.lineno} {fn.name}"
            if lines > MAX_LINES:
                found.append(f"{where}: {lines} lines (at most {MAX_LINES})")
            if params > MAX_PARAMS and fn not in commands:
                found.append(f"{where}: {params} parameters (at most {MAX_PARAMS})")
    return found


def test_no_function_over_60_lines_or_12_parameters():
    found = oversized()
    assert not found, "functions over the size rule (split them; group parameters into settings values):\n" + \
        "\n".join(found)


def _statements(n: int, indent: str = "    ") -> str:
    return "".join(f"{indent}x{i} = {i}\n" for i in range(n))


def test_the_size_checker_counts_lines_and_parameters_and_exempts_typer_options(tmp_path):
    """The checker itself: 60 lines and 12 parameters pass, one more fails; methods and nested functions are
    seen; typer commands (decorated or registered) count their body only; models/ is not checked."""
    pkg = tmp_path / "geogan"
    (pkg / "models").mkdir(parents=True)
    twelve = ", ".join(f"p{i}" for i in range(MAX_PARAMS))
    options = "".join(f"    p{i}=typer.Option({i}),\n" for i in range(MAX_LINES))
    (pkg / "a.py").write_text(
        f"def fits():\n{_statements(MAX_LINES - 1)}"
        f"def too_long():\n{_statements(MAX_LINES)}"
        f"def too_many({twelve}, *, q):\n    pass\n"
        f"def twelve(a, b, *args, c, d, e, f, g, h, i, j, **kw):\n    pass\n"
        f"class C:\n    def method(self, {twelve}):\n        pass\n"
        f"@app.command('x')\ndef cmd(\n{options}):\n{_statements(MAX_LINES)}"
        f"def serve(\n{options}):\n    pass\n"
        f"def register(app):\n    app.command('serve')(serve)\n"
        f"def outer():\n    @app.callback()\n    def main(\n{options}):\n{_statements(MAX_LINES + 1, ' ' * 8)}")
    (pkg / "models" / "m.py").write_text(f"def huge({twelve}, q):\n{_statements(2 * MAX_LINES)}")
    found = [line.split(" ", 1)[1] for line in oversized(pkg)]
    assert found == [f"too_long: {MAX_LINES + 1} lines (at most {MAX_LINES})",
                     f"too_many: {MAX_PARAMS + 1} parameters (at most {MAX_PARAMS})",
                     f"method: {MAX_PARAMS + 1} parameters (at most {MAX_PARAMS})",
                     f"outer: {2 * MAX_LINES + 5} lines (at most {MAX_LINES})",
                     f"main: {MAX_LINES + 1} lines (at most {MAX_LINES})"]
