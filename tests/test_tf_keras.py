"""Keras 2 (tf_keras, or tf.keras under TF_USE_LEGACY_KERAS=1): what works and what is refused.

keras_initlab reads Keras 3 models. In tf_keras its initializer objects work, given to a layer
(checked here against the closed-form variance with ``keras_initlab.testing`` and against the
same initializer in a Keras 3 layer); string names do not, and a saved config loads only with
the class in ``custom_objects`` (pinned below, as the README says); every model-level function
and ``VarianceMonitor`` refuse a tf_keras model or layer with one TypeError that names Keras 2
(``keras_initlab.model.legacy``), before touching it. The check imports neither TensorFlow nor
tf_keras.

tf_keras is installed with ``pip install --no-deps "tf-keras==2.21.*"`` (the version of the
installed TensorFlow; without ``--no-deps`` pip would pull a TensorFlow of its own).
"""

from __future__ import annotations

import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow  # noqa: F401  (tf_keras runs on it: the other backends leave this module out)

import keras_initlab as ki
from keras_initlab import testing as kt
from keras_initlab.callbacks import VarianceMonitor, plot_signal
from keras_initlab.callbacks._signal_plot import signal_series
from keras_initlab.diagnosis import diagnose
from keras_initlab.model.legacy import check_not_keras2, keras2_base

tf_keras = pytest.importorskip("tf_keras")

FAN = 512  # a 512 x 512 kernel: 262,144 draws, enough for a 5% variance error (checked)
KERAS2_MESSAGE = r"Argument `{}` must be a Keras 3 object, not a Keras 2 one \(tf_keras"


class _Subclassed(tf_keras.Model):
    """A user's tf_keras model: recognised through its base class."""

    def __init__(self) -> None:
        super().__init__()
        self.hidden = tf_keras.layers.Dense(8, activation="relu")
        self.out = tf_keras.layers.Dense(2)

    def call(self, x):
        return self.out(self.hidden(x))


def _x() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.normal(size=(16, 4)).astype("float32"), rng.normal(size=(16, 2)).astype("float32")


def _sequential():
    return tf_keras.Sequential(
        [
            tf_keras.Input((4,)),
            tf_keras.layers.Dense(8, activation="relu"),
            tf_keras.layers.Dense(2),
        ]
    )


def _functional():
    x = tf_keras.Input((4,))
    h = tf_keras.layers.Dense(4, activation="relu")(x)
    y = tf_keras.layers.Dense(2)(tf_keras.layers.Add()([x, h]))
    return tf_keras.Model(x, y)


def _subclassed():
    model = _Subclassed()
    model(_x()[0])
    return model


def _layer():
    layer = tf_keras.layers.Dense(3)
    layer.build((None, 4))
    return layer


MODELS = {"sequential": _sequential, "functional": _functional, "subclassed": _subclassed}


@pytest.fixture(scope="module")
def keras3_records():
    """Probe records of a Keras 3 model: what ``plot_signal`` reads beside its ``model``."""
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    model.compile(loss="mse")
    return ki.measure(model, _x())


def _entry_points(keras3_records):
    """Every model-level entry point, called on ``model`` as a user would."""
    x, y = _x()
    return {
        "initialize": lambda m: ki.initialize(m, "he_normal", seed=0),
        "initialize_auto": lambda m: ki.initialize(m, "auto", seed=0),
        "initialize_residual": lambda m: ki.initialize(m, "he_normal", residual="zero"),
        "initialize_lsuv": lambda m: ki.initialize(m, ki.LSUV(x)),
        "autoinit": lambda m: ki.autoinit(m),
        "audit": lambda m: ki.audit(m),
        "lsuv": lambda m: ki.lsuv(m, x),
        "propagate": lambda m: ki.propagate(m),
        "measure": lambda m: ki.measure(m, (x, y)),
        "Measurement": lambda m: ki.Measurement(m),
        "Measurement.shared": lambda m: ki.Measurement.shared(m),
        "residual_blocks": lambda m: ki.residual_blocks(m),
        "diagnose": lambda m: diagnose(m, x),
        "plot_signal": lambda m: plot_signal(keras3_records, m),
        "signal_series": lambda m: signal_series(keras3_records, m),
        "VarianceMonitor.set_model": lambda m: VarianceMonitor().set_model(m),
    }


ENTRY_POINTS = list(_entry_points(None))


def _weights(model):
    return [np.array(w) for w in model.get_weights()]


@pytest.mark.parametrize("kind", list(MODELS))
@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_every_model_level_function_refuses_a_tf_keras_model_naming_keras_2(
    entry, kind, keras3_records
):
    model = MODELS[kind]()
    before = _weights(model)
    with pytest.raises(TypeError, match=KERAS2_MESSAGE.format("model")) as error:
        _entry_points(keras3_records)[entry](model)
    message = str(error.value)
    assert "Keras 3 models only" in message  # what is supported
    assert "initializer objects work" in message
    assert f"Received: model=<{type(model).__module__}.{type(model).__qualname__}" in message
    if kind == "subclassed":
        assert "a subclass of tf_keras.src.engine.training.Model" in message
    for old, new in zip(before, _weights(model), strict=True):  # refused before touching it
        np.testing.assert_array_equal(old, new)


@pytest.mark.parametrize("entry", ["initialize", "audit", "lsuv", "residual_blocks"])
def test_functions_that_take_a_layer_refuse_a_tf_keras_layer(entry, keras3_records):
    with pytest.raises(TypeError, match=KERAS2_MESSAGE.format("model")) as error:
        _entry_points(keras3_records)[entry](_layer())
    assert "Received: model=<tf_keras.src.layers.core.dense.Dense name='dense" in str(error.value)


def test_an_unbuilt_tf_keras_model_is_refused_as_keras_2_not_as_unbuilt():
    with pytest.raises(TypeError, match=KERAS2_MESSAGE.format("model")):
        ki.audit(tf_keras.Sequential([tf_keras.layers.Dense(2)]))


def test_variance_monitor_in_a_tf_keras_fit_raises_before_the_first_step():
    model = _sequential()
    model.compile("sgd", "mse")
    before = _weights(model)
    with pytest.raises(TypeError, match=KERAS2_MESSAGE.format("model")):
        model.fit(*_x(), epochs=1, verbose=0, callbacks=[VarianceMonitor()])
    for old, new in zip(before, _weights(model), strict=True):
        np.testing.assert_array_equal(old, new)


def test_keras_3_objects_pass_the_check():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    for value in (model, model.layers[0], VarianceMonitor(), None, "model", np.ones(2)):
        check_not_keras2("model", value)
        assert keras2_base(value) is None


def test_the_check_recognises_keras_2_by_module_without_a_false_match():
    # Keras 3's own `keras.src.legacy` and a module merely named like tf_keras are not Keras 2.
    for module, keras2 in [
        ("tf_keras", True),
        ("tf_keras.src.engine.training", True),
        ("keras.engine.training", True),
        ("keras.src.engine.training", True),
        ("tensorflow.python.keras.engine.training", True),
        ("keras.src.legacy.layers", False),
        ("keras.src.models.model", False),
        ("tf_keras_extras.models", False),
        ("my_project.models", False),
    ]:
        cls = type("Model", (), {"__module__": module})
        assert (keras2_base(cls()) is cls) is keras2, module


@pytest.mark.parametrize(
    ("initializer", "variance", "family"),
    [
        (ki.HeNormal, 2.0 / FAN, "truncated_normal"),
        (ki.GlorotUniform, 2.0 / (FAN + FAN), "uniform"),
        (ki.LecunNormal, 1.0 / FAN, "truncated_normal"),
    ],
)
def test_initializer_objects_work_in_a_tf_keras_dense_layer(initializer, variance, family):
    layer = tf_keras.layers.Dense(FAN, kernel_initializer=initializer(seed=7))
    layer.build((None, FAN))
    kernel = layer.kernel.numpy()
    assert kernel.shape == (FAN, FAN)
    assert kernel.dtype == np.float32
    assert kt.detectable_variance_error(kernel.size, family=family) <= 0.05
    kt.assert_variance(kernel, variance, family=family)
    kt.assert_support(kernel, variance=variance, family=family)
    # An int seed gives the same values on every call: the same as in a Keras 3 layer.
    reference = keras.layers.Dense(FAN, kernel_initializer=initializer(seed=7))
    reference.build((None, FAN))
    np.testing.assert_array_equal(kernel, keras.ops.convert_to_numpy(reference.kernel))


def test_a_tf_keras_model_built_with_keras_initlab_initializers_runs():
    model = tf_keras.Sequential(
        [
            tf_keras.Input((4,)),
            tf_keras.layers.Dense(8, activation="relu", kernel_initializer=ki.HeNormal(seed=0)),
            tf_keras.layers.Dense(2, kernel_initializer=ki.Orthogonal(seed=1)),
        ]
    )
    assert np.all(np.isfinite(model(_x()[0]).numpy()))


def test_string_names_do_not_work_in_tf_keras_and_configs_need_custom_objects():
    # What the README says does not work, pinned: if tf_keras starts to resolve these, the
    # README's paragraph on tf_keras must change with this test.
    with pytest.raises(ValueError, match="Unknown initializer"):
        tf_keras.layers.Dense(4, kernel_initializer="keras_initlab>HeNormal")
    # A bare class name resolves to tf_keras' own initializer, not keras_initlab's.
    same_name = tf_keras.layers.Dense(4, kernel_initializer="HeNormal").kernel_initializer
    assert not isinstance(same_name, ki.HeNormal)
    layer = tf_keras.layers.Dense(4, kernel_initializer=ki.HeNormal(seed=0))
    with pytest.warns(UserWarning, match="should only be used for objects of type"):
        config = layer.get_config()
    with pytest.raises(TypeError, match="Error when deserializing class 'Dense'"):
        tf_keras.layers.Dense.from_config(config)
    # With the class in `custom_objects` (as `load_model(path, custom_objects=...)`) it loads.
    with tf_keras.utils.custom_object_scope({"HeNormal": ki.HeNormal}):
        loaded = tf_keras.layers.Dense.from_config(config).kernel_initializer
    assert isinstance(loaded, ki.HeNormal)
    assert loaded.get_config() == ki.HeNormal(seed=0).get_config()


_NO_TENSORFLOW = """
import sys
from keras_initlab.model.legacy import check_not_keras2
Sequential = type("Sequential", (), {"__module__": "tf_keras.src.engine.sequential"})
try:
    check_not_keras2("model", Sequential())
except TypeError as error:
    print("refused", "Keras 2" in str(error))
print(*(m in sys.modules for m in ("tensorflow", "tf_keras", "keras")))
"""

_LEGACY_TF_KERAS = """
import numpy as np
import tensorflow as tf
import keras_initlab
model = tf.keras.Sequential([tf.keras.Input((4,)), tf.keras.layers.Dense(2)])
print(type(model).__module__)
try:
    keras_initlab.audit(model)
except TypeError as error:
    print(str(error).split(":")[0])
"""


def _run(code: str, **env: str) -> list[str]:
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **env},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout.splitlines()


def test_the_keras_2_check_imports_neither_tensorflow_nor_tf_keras():
    assert _run(_NO_TENSORFLOW) == ["refused True", "False False False"]


def test_tf_keras_under_tf_use_legacy_keras_is_refused():
    lines = _run(_LEGACY_TF_KERAS, TF_USE_LEGACY_KERAS="1")
    assert lines[0].startswith("tf_keras.")
    assert lines[1] == (
        "Argument `model` must be a Keras 3 object, not a Keras 2 one (tf_keras, or tf.keras "
        "under TF_USE_LEGACY_KERAS=1)"
    )
