"""What the monitor leaves traced: one probe trace per model, no training-step retrace after.

Tracing a deep model's probe or training step costs seconds, so traces are counted, not
timed: the probe's `tf.function.experimental_get_tracing_count`, and the Python calls of
`train_step` (one per trace of the training function; eager calls never happen here).
"""

from __future__ import annotations

import keras
import numpy as np

from keras_initlab.callbacks import VarianceMonitor

L = keras.layers


class Counting(keras.Sequential):
    """Counts the traces of its training step."""

    traces = 0

    def train_step(self, data):
        type(self).traces += 1
        return super().train_step(data)


def _model(cls=keras.Sequential) -> keras.Model:
    model = cls([keras.Input((6,)), L.Dense(8, activation="relu", name="h"), L.Dense(3)])
    model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(True))
    return model


def _data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.normal(size=(32, 6)).astype("float32"), rng.integers(0, 3, 32)


class _TrainFunction(keras.callbacks.Callback):
    """The training function a fit runs, at each epoch end."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[object] = []

    def on_epoch_end(self, epoch, logs=None):
        self.seen.append(self.model.train_function)


def _fit(model, callbacks=(), epochs=1):
    x, y = _data()
    model.fit(x, y, batch_size=8, epochs=epochs, verbose=0, callbacks=list(callbacks))


def test_monitors_and_fits_of_one_model_share_one_probe_trace():
    model = _model()
    first, second = VarianceMonitor(alert=False), VarianceMonitor(alert=False)
    _fit(model, [first])
    _fit(model, [second], epochs=2)
    assert first._measurement is second._measurement
    assert first._measurement._fn._pass._fn.experimental_get_tracing_count() == 1
    # Other settings: a measurement of their own.
    other = VarianceMonitor(alert=False, probe_mode="inference")
    _fit(model, [other])
    assert other._measurement is not first._measurement
    assert len(second.records) == 3 * 2  # step 0 and two epoch ends, two layers


def test_in_step_fit_traces_the_step_once_and_leaves_the_plain_function():
    Counting.traces = 0
    model = _model(Counting)
    _fit(model)  # a plain fit traces the plain step
    plain = model.train_function
    assert Counting.traces == 1
    during = _TrainFunction()
    for k in range(2):
        _fit(model, [VarianceMonitor(every_n_batches=1, alert=False), during], epochs=2)
        # The monitored fit ran one function of its own, traced once for both epochs.
        f1, f2 = during.seen[-2:]
        assert f1 is f2 is not plain
        assert Counting.traces == 2 + k
        # Afterwards the model has its plain function back: the next fit does not trace.
        assert model.train_function is plain
        _fit(model)
        assert model.train_function is plain
        assert Counting.traces == 2 + k


def test_a_first_fit_with_in_step_records_leaves_the_plain_function_untraced():
    Counting.traces = 0
    model = _model(Counting)
    _fit(model, [VarianceMonitor(every_n_batches=1, alert=False)])
    assert Counting.traces == 1
    plain = model.train_function
    _fit(model)  # the plain step's own first trace, then none
    _fit(model)
    assert model.train_function is plain
    assert Counting.traces == 2


def test_every_probe_call_carries_the_call_options_it_was_instantiated_with(monkeypatch):
    """TensorFlow instantiates a function once per input signature and per call options
    (they travel with each call): every call of the traced probe (every call of a
    `Measurement`) carries the same ones, Grappler off, so it is
    instantiated once per probe shape and never again with Grappler on; the thread's own
    call options and TensorFlow's global options are left as they were."""
    import tensorflow as tf
    from tensorflow.core.protobuf import config_pb2
    from tensorflow.python.eager import context

    from keras_initlab.measurement import Measurement

    carried: list[bytes] = []
    real = context.Context.call_function

    def recording(self, name, tensor_inputs, num_outputs):
        if b"probe" in name:
            carried.append(self.function_call_options.config_proto_serialized)
        return real(self, name, tensor_inputs, num_outputs)

    monkeypatch.setattr(context.Context, "call_function", recording)
    ctx = context.context()
    own, options = ctx.function_call_options, tf.config.optimizer.get_experimental_options()
    x, y = _data()
    measurement = Measurement(_model())
    for probe in [(x, y), (x, y), (x[:16], y[:16]), (x, y), (x[:16], y[:16])]:
        measurement(probe)
    assert len(carried) == 5
    assert len(set(carried)) == 1
    config = config_pb2.ConfigProto.FromString(carried[0])
    assert config.graph_options.rewrite_options.disable_meta_optimizer
    assert ctx.function_call_options is own
    assert tf.config.optimizer.get_experimental_options() == options


def test_a_one_shot_measurement_runs_eagerly_and_equals_the_traced_one(monkeypatch):
    """A one-shot `measure` runs its pass eagerly (it never traces: a trace costs several
    passes), a `Measurement` through the traced probe from its first call (an eager first
    pass before the trace cost more in all); on a small CNN with BatchNormalization, in
    both modes, the two give the same records to the last bit (the same ops, Grappler off
    in the trace)."""
    from tensorflow.python.eager import context

    from keras_initlab.measurement import Measurement, measure

    called: list[bytes] = []
    real = context.Context.call_function

    def recording(self, name, tensor_inputs, num_outputs):
        called.append(name)
        return real(self, name, tensor_inputs, num_outputs)

    monkeypatch.setattr(context.Context, "call_function", recording)
    model = keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            L.Conv2D(6, 3, name="c"),
            L.BatchNormalization(name="bn"),
            L.Activation("relu", name="r"),
            L.GlobalAveragePooling2D(),
            L.Dense(3, name="out"),
        ]
    )
    model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(True))
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(16, 8, 8, 3)).astype("float32"), rng.integers(0, 3, 16)
    for mode in ("inference", "training"):
        eager = measure(model, (x, y), mode=mode)
        assert not any(b"probe" in name for name in called)
        traced = Measurement(model, mode=mode)((x, y))
        assert any(b"probe" in name for name in called)
        called.clear()
        assert [r["layer"] for r in eager] == ["c", "bn", "r", "out"]
        for one, other in zip(eager, traced, strict=True):
            numbers = {k: v for k, v in one.items() if isinstance(v, float)}
            assert numbers == {k: other[k] for k in numbers}, one["layer"]
