"""The shape of the code: small modules and functions, one-way imports, a light `import tfl`.

These are the rules of "How tfl is built" in the README, checked on the source text:

- no module over `MAX_MODULE_LINES` lines and no function over `MAX_FUNCTION_LINES` lines of
  code (docstrings, comments and blank lines not counted);
- no module imports another module's private (`_name`) names;
- the model and data layers never import the run layer (config, run, cli, studies);
- `import tfl` does not load export or LiteRT, and no tfl module imports matplotlib until it
  draws.
"""

import ast
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "tfl"
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 80
# Layers that must not reach up into the run layer (DESIGN: models and data know nothing of
# configs, files or the command line).
LOWER = ("tfl.backbones", "tfl.heads", "tfl.models", "tfl.freezing", "tfl.data")
RUN_LAYER = ("tfl.config", "tfl.run", "tfl.runner", "tfl.cli", "tfl.studies", "tfl.predict")


def _modules():
    for path in sorted(ROOT.rglob("*.py")):
        name = ".".join(path.relative_to(ROOT.parent).with_suffix("").parts)
        yield name.removesuffix(".__init__"), path


def _code_lines(node: ast.AST, source_lines: list[str]) -> int:
    """Lines of `node` that hold code: no docstrings, comments or blank lines."""
    skip = set()
    for inner in ast.walk(node):
        body = getattr(inner, "body", None)
        if (
            isinstance(inner, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Module)
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(getattr(body[0], "value", None), ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            skip.update(range(body[0].lineno, body[0].end_lineno + 1))
    count = 0
    for number in range(node.lineno, node.end_lineno + 1):
        text = source_lines[number - 1].strip()
        if number not in skip and text and not text.startswith("#"):
            count += 1
    return count


def _functions(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield node


def test_modules_and_functions_stay_small():
    too_long = []
    for name, path in _modules():
        source = path.read_text(encoding="utf-8")
        lines = source.splitlines()
        if len(lines) > MAX_MODULE_LINES:
            too_long.append(f"{name}: {len(lines)} lines (module)")
        for function in _functions(ast.parse(source)):
            size = _code_lines(function, lines)
            if size > MAX_FUNCTION_LINES:
                too_long.append(f"{name}.{function.name}: {size} lines of code")
    assert not too_long, "Split these:\n" + "\n".join(too_long)


def _imports(tree, module: str):
    """(imported module, names) for every import in `tree`, relative imports resolved."""
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = module.split(".")[: -node.level]
                base = ".".join(parent + ([base] if base else []))
            yield base, [alias.name for alias in node.names]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, []


def _is_module(package: str, name: str) -> bool:
    """`from tfl import _runtime_env`: a private module of the package, not a private name."""
    folder = ROOT.parent.joinpath(*package.split("."))
    return (folder / f"{name}.py").is_file() or (folder / name / "__init__.py").is_file()


def test_no_module_imports_another_modules_private_names():
    found = []
    for name, path in _modules():
        for imported, names in _imports(ast.parse(path.read_text(encoding="utf-8")), name):
            if not imported.startswith("tfl") or imported == name:
                continue
            private = [
                n
                for n in names
                if n.startswith("_") and not n.startswith("__") and not _is_module(imported, n)
            ]
            if private:
                found.append(f"{name} imports {', '.join(private)} from {imported}")
    assert not found, "\n".join(found)


def test_models_and_data_never_import_the_run_layer():
    found = []
    for name, path in _modules():
        if not name.startswith(LOWER):
            continue
        for imported, _ in _imports(ast.parse(path.read_text(encoding="utf-8")), name):
            if imported.startswith(RUN_LAYER):
                found.append(f"{name} imports {imported}")
    assert not found, "\n".join(found)


def test_import_tfl_does_not_load_export_or_litert():
    heavy = ["tfl.export", "ai_edge_litert", "tfl.studies", "tfl.run"]
    code = f"import sys, tfl; print([m for m in {heavy!r} if m in sys.modules])"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]", f"import tfl loaded {out.stdout}"


def test_tfl_imports_matplotlib_only_where_it_draws():
    """No tfl module imports matplotlib at import time (Keras itself loads it, for
    keras.visualization; tfl's plots import it inside the functions that draw)."""
    found = []
    for name, path in _modules():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for imported, _ in _imports(
            ast.Module(body=_run_at_import(tree.body), type_ignores=[]), name
        ):
            if imported.split(".")[0] == "matplotlib":
                found.append(f"{name} imports {imported} at import time")
    assert not found, "\n".join(found)


def _run_at_import(body: list) -> list:
    """The statements of `body` that run when the module is imported (not inside functions or
    classes), descending into if / try / with blocks."""
    statements = []
    for node in body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            continue
        if isinstance(node, ast.If | ast.Try | ast.With):
            inner = node.body + getattr(node, "orelse", []) + getattr(node, "finalbody", [])
            inner += [s for handler in getattr(node, "handlers", []) for s in handler.body]
            statements += _run_at_import(inner)
        else:
            statements.append(node)
    return statements
