"""One home for what a layer or operation is (`keras_initlab.model`).

* Every class ``keras.layers`` exports is classified by a table of
  `keras_initlab.model.layers` (itself or a base class) or listed in its ``NOT_COVERED``
  with the reason, and never both (the same for every ``Operation`` subclass a public
  ``keras.ops`` function creates: ``tests/propagate/test_ops.py``). CI runs this module
  against the oldest and the newest supported Keras, so a class a new release adds is not
  missed.
* No module outside ``keras_initlab/model/`` names a ``keras.layers`` class in an
  ``isinstance``/``issubclass`` check or in a class tuple (an AST scan; building a layer,
  ``keras.layers.Dense(...)``, and the base class ``keras.layers.Layer`` are fine).
"""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import keras
import pytest

from keras_initlab.model import layers as room

PACKAGE = Path(__file__).resolve().parents[2] / "keras_initlab"
ROOM = PACKAGE / "model"
ALLOWED = {"Layer", "InputSpec"}  # "is this a layer at all", not what a layer is


def _layer_classes() -> list[type]:
    found = {v for v in vars(keras.layers).values() if inspect.isclass(v)}
    return sorted((c for c in found if issubclass(c, keras.Operation)), key=lambda c: c.__name__)


@pytest.mark.parametrize("cls", _layer_classes(), ids=lambda c: c.__name__)
def test_every_keras_layer_is_classified_or_listed_as_not_covered(cls: type) -> None:
    table = room.classified(cls)
    listed = cls.__name__ in room.NOT_COVERED
    assert (table is None) == listed, (
        f"{cls.__name__}: table {table}, NOT_COVERED {room.NOT_COVERED.get(cls.__name__)!r}"
    )


def test_not_covered_layers_exist_and_say_why() -> None:
    names = {c.__name__ for c in _layer_classes()} | {"InputSpec"}
    for name, reason in room.NOT_COVERED.items():
        assert reason, name
        if name not in names:  # a class of another Keras release: fine, but say it
            assert not hasattr(keras.layers, name), name


def _names_of_layers_module(tree: ast.Module) -> tuple[set[str], set[str]]:
    """The aliases of ``keras.layers`` in a module (``L``) and the classes imported from it."""
    aliases, classes = {"keras.layers"}, set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and ast.unparse(node.value) == "keras.layers":
            aliases.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.ImportFrom) and node.module == "keras.layers":
            classes.update(a.asname or a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module == "keras":
            aliases.update(a.asname or a.name for a in node.names if a.name == "layers")
    return aliases, classes


def _layer_class_uses(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    aliases, classes = _names_of_layers_module(tree)

    def is_layer_class(node: ast.AST) -> bool:
        if isinstance(node, ast.Attribute) and ast.unparse(node.value) in aliases:
            return node.attr[:1].isupper() and node.attr not in ALLOWED
        return isinstance(node, ast.Name) and node.id in classes and node.id not in ALLOWED

    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and ast.unparse(node.func) in ("isinstance", "issubclass"):
            checked = node.args[1:] if len(node.args) > 1 else []
            for arg in checked:
                for inner in ast.walk(arg):
                    if is_layer_class(inner):
                        found.append(f"{path.name}:{node.lineno} {ast.unparse(inner)}")
        elif isinstance(node, ast.Tuple | ast.List | ast.Set | ast.Dict):
            items = node.keys if isinstance(node, ast.Dict) else node.elts
            for item in items:
                if item is not None and is_layer_class(item):
                    found.append(f"{path.name}:{node.lineno} {ast.unparse(item)}")
    return found


def test_no_module_outside_the_room_classifies_layers() -> None:
    outside = [p for p in sorted(PACKAGE.rglob("*.py")) if ROOM not in p.parents]
    found = [use for path in outside for use in _layer_class_uses(path)]
    assert not found, found


def test_the_scan_has_teeth(tmp_path: Path) -> None:
    source = tmp_path / "bad.py"
    source.write_text(
        "import keras\nL = keras.layers\nX = (L.Dense, L.Conv2D)\n"
        "def f(x):\n    return isinstance(x, keras.layers.Add)\n"
        "def g():\n    return L.Dense(3), isinstance(3, keras.layers.Layer)\n"
    )
    assert _layer_class_uses(source) == [
        "bad.py:3 L.Dense",
        "bad.py:3 L.Conv2D",
        "bad.py:5 keras.layers.Add",
    ]
