"""Which tests and doctests run on which Keras backend (KERAS_BACKEND, default tensorflow).

On TensorFlow everything runs. On the other backends (JAX, PyTorch) only what needs no
TensorFlow, decided by two rules, so that nothing is skipped (a skip would hide a failure):

* a module that cannot be imported without TensorFlow (it imports ``tensorflow`` at module
  level, or a module of this repository that does, read from the source) is not collected,
  and neither is a directory whose ``conftest.py`` is such a module;
* a test marked ``tensorflow`` (it needs TensorFlow when it runs: ``measure``,
  ``VarianceMonitor``, ``tf.distribute``) is deselected (``pytestmark =
  pytest.mark.tensorflow`` marks a whole module).

The report header names the backend and the modules left out. This file sits at the
repository root so that its rules cover the package's doctests as well as ``tests/``.
"""

from __future__ import annotations

import ast
import functools
import os
from pathlib import Path

import pytest

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
BACKEND = os.environ["KERAS_BACKEND"]
ROOT = Path(__file__).resolve().parent
PACKAGES = ("keras_initlab", "tests")  # the top-level names whose modules are read here


def _module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


def _sibling_loaded(node: ast.AST) -> str | None:
    """``"x.py"`` for ``Path(__file__).with_name("x.py")``: a test loading a sibling by path."""
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "with_name"
        and node.args
        and isinstance(node.args[0], ast.Constant)
        and str(node.args[0].value).endswith(".py")
    ):
        return str(node.args[0].value)
    return None


def _imports(path: Path) -> tuple[set[str], set[Path]]:
    """What importing ``path`` imports (outside functions): module names, and the sibling
    files it loads by path."""
    package = _module_name(path.parent / "__init__.py").split(".")
    names: set[str] = set()
    files: set[Path] = set()
    todo = list(ast.parse(path.read_text()).body)
    while todo:
        node = todo.pop()
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package, level - 1 steps up
                base = ".".join([*package[: len(package) - node.level + 1], base]).rstrip(".")
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            todo.extend(node.orelse)  # the body is for type checkers only, never run
        elif not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            sibling = _sibling_loaded(node)
            if sibling is not None:
                files.add(path.with_name(sibling))
            todo.extend(ast.iter_child_nodes(node))
    return names, files


def _module_files(name: str) -> list[Path]:
    """The files of this repository that importing ``name`` runs (its packages' inits too)."""
    parts = name.split(".")
    if parts[0] not in PACKAGES:
        return []
    files = []
    for i in range(1, len(parts) + 1):
        base = ROOT.joinpath(*parts[:i])
        files += [f for f in (base / "__init__.py", base.with_suffix(".py")) if f.is_file()]
    return files


@functools.cache
def _edges(path: Path) -> tuple[bool, tuple[Path, ...]]:
    """Whether ``path`` needs TensorFlow itself, and the repository files importing it runs."""
    names, files = _imports(path)
    module = _module_name(path)
    direct = any(name.split(".")[0] == "tensorflow" for name in names)
    files |= {f for name in [module, *names] for f in _module_files(name) if f.is_file()}
    return direct, tuple(sorted(files - {path}))


def needs_tensorflow(path: Path) -> bool:
    """Whether importing the module at ``path`` imports TensorFlow (through any chain of
    this repository's modules)."""
    seen, todo = {path}, [path]
    while todo:
        direct, files = _edges(todo.pop())
        if direct:
            return True
        new = [f for f in files if f not in seen]
        seen.update(new)
        todo += new
    return False


def _left_out(path: Path) -> bool:
    if path.is_dir():
        path = path / "conftest.py"
    return path.suffix == ".py" and path.is_file() and needs_tensorflow(path.resolve())


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    if BACKEND != "tensorflow" and _left_out(collection_path):
        return True
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if BACKEND == "tensorflow":
        return
    kept = [item for item in items if item.get_closest_marker("tensorflow") is None]
    if len(kept) < len(items):
        config.hook.pytest_deselected(items=[i for i in items if i not in kept])
        items[:] = kept


def pytest_report_header(config: pytest.Config) -> list[str]:
    if BACKEND == "tensorflow":
        return [f"keras backend: {BACKEND} (every test)"]
    paths = [ROOT / p for p in config.getini("testpaths")]
    left = sorted(
        str(p.relative_to(ROOT))
        for top in paths
        for p in [top, *top.rglob("*")]
        if "__pycache__" not in p.parts and _left_out(p) and not _left_out(p.parent)
    )
    return [
        f"keras backend: {BACKEND}; tests marked `tensorflow` deselected; "
        f"{len(left)} paths need TensorFlow to import and are not collected: {', '.join(left)}"
    ]
