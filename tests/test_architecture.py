"""The package's structure rules, checked on its source.

* Only `keras_initlab/_keras.py` touches private parts of Keras and TensorFlow: any
  ``obj._name`` outside it must name something the package defines itself.
* Importing the initializers or `initialize` (and what they import from the package) never
  imports TensorFlow, so they work when Keras runs on another backend.
* Importing the package has no side effects on the environment or on TensorFlow's logger.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "keras_initlab"
SEAM = PACKAGE / "_keras.py"
SOURCES = sorted(p for p in PACKAGE.rglob("*.py"))


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def _defined_names() -> set[str]:
    """Every name the package defines: functions, classes, assignments, attributes of self."""
    names: set[str] = set()
    for path in SOURCES:
        for node in ast.walk(_tree(path)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                names.add(node.attr)
            elif isinstance(node, ast.alias):
                names.add((node.asname or node.name).split(".")[0])
    return names


def _private_uses(path: Path, defined: set[str]) -> list[str]:
    found = []
    for node in ast.walk(_tree(path)):
        if isinstance(node, ast.Attribute):
            name = node.attr
            private = name.startswith("_") and not name.startswith("__")
            if private and name not in defined:
                found.append(f"{path.name}:{node.lineno} .{name}")
            untracked = name in ("__setattr__", "__delattr__") and (
                isinstance(node.value, ast.Name) and node.value.id == "object"
            )
            if name == "__internal__" or untracked:
                found.append(f"{path.name}:{node.lineno} .{name}")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("keras.src"):
            found.append(f"{path.name}:{node.lineno} from {node.module}")
        elif isinstance(node, ast.Import) and any(
            a.name.startswith("keras.src") for a in node.names
        ):
            found.append(f"{path.name}:{node.lineno} import keras.src")
    return found


def test_only_the_seam_uses_keras_internals() -> None:
    defined = _defined_names()
    uses = [u for p in SOURCES if p != SEAM for u in _private_uses(p, defined)]
    assert uses == []


def test_the_seam_is_where_the_internals_are() -> None:
    # The rule above has teeth: the seam itself trips it.
    assert _private_uses(SEAM, _defined_names() - {"_flatten_layers"}) != []


def _imports(path: Path) -> set[str]:
    """The modules ``path`` imports when it is imported (module level, not in functions)."""
    modules = set()
    for node in _tree(path).body:
        if isinstance(node, ast.Import):
            modules.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            base = node.module
            modules.add(base)
            modules.update(f"{base}.{a.name}" for a in node.names)
    return modules


def _module_path(module: str) -> Path | None:
    parts = module.split(".")
    if parts[0] != "keras_initlab":
        return None
    base = PACKAGE.joinpath(*parts[1:])
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


def _closure(start: str) -> dict[str, set[str]]:
    """Per package module reachable from ``start``, the modules it imports."""
    seen: dict[str, set[str]] = {}
    todo = [start]
    while todo:
        module = todo.pop()
        path = _module_path(module)
        if path is None or module in seen:
            continue
        seen[module] = _imports(path)
        todo += [m for m in seen[module] if m.startswith("keras_initlab")]
    return seen


@pytest.mark.parametrize(
    "module",
    [
        "keras_initlab.initializers",
        "keras_initlab.initialize",
        "keras_initlab.measurement",
        "keras_initlab.callbacks",
    ],
)
def test_backend_neutral_modules_never_import_tensorflow(module: str) -> None:
    closure = _closure(module)
    assert len(closure) > 3  # the walk followed the package's imports
    assert {m: i for m, i in closure.items() if any(x.startswith("tensorflow") for x in i)} == {}


def test_the_tensorflow_rule_has_teeth() -> None:
    # The TensorFlow probe (tape, strategies, in-step taps) does import it, at module level.
    assert any("tensorflow" in i for i in _closure("keras_initlab.measurement._probe").values())


@pytest.mark.tensorflow  # (its subprocess checks TensorFlow's logging too)
def test_import_has_no_side_effects() -> None:
    code = (
        "import logging, os, sys\n"
        "before = dict(os.environ)\n"
        "import keras, keras_initlab\n"
        "from keras_initlab import HeNormal, callbacks, measure\n"
        "import tensorflow as tf\n"
        "assert dict(os.environ) == before, set(os.environ.items()) ^ set(before.items())\n"
        "assert tf.get_logger().filters == [], tf.get_logger().filters\n"
        "print('ok')\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False
    )
    assert out.stdout.strip().endswith("ok"), out.stderr[-2000:]


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _import_graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports (at module level or in a function; not
    under ``if TYPE_CHECKING``). ``from pkg import name`` is an edge to ``pkg.name`` when
    that is a module, else to ``pkg``. The root package, whose public names load lazily, is
    left out."""
    modules = {_module_name(p): p for p in SOURCES}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        skipped: set[int] = set()
        tree = _tree(path)
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                skipped.update(id(n) for n in ast.walk(node))
        edges: set[str] = set()
        for node in ast.walk(tree):
            if id(node) in skipped:
                continue
            if isinstance(node, ast.Import):
                edges.update(a.name for a in node.names if a.name in modules)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                for alias in node.names:
                    sub = f"{node.module}.{alias.name}"
                    edges.add(sub if sub in modules else node.module)
        graph[name] = {e for e in edges if e in modules and e != "keras_initlab" and e != name}
    graph.pop("keras_initlab", None)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_package_has_no_import_circle() -> None:
    """No module reaches itself through the package's imports (deferred imports included:
    a circle broken only by importing inside a function is still a circle)."""
    assert _cycles(_import_graph()) == []


def test_the_circle_finder_has_teeth() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]
