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
    assert first._measurement._fn._fn.experimental_get_tracing_count() == 1
    # Other settings: a measurement of their own.
    other = VarianceMonitor(alert=False, probe_mode="training")
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


def test_the_probe_is_instantiated_without_grappler_and_later_calls_skip_the_options(
    monkeypatch,
):
    """Grappler's options are set for the first call of each probe shape (when TensorFlow
    instantiates the function) and not for the calls after it, which they would slow."""
    import contextlib

    from keras_initlab import _keras
    from keras_initlab.measurement import Measurement
    from keras_initlab.measurement._probe import NO_GRAPPLER

    set_for: list[int] = []
    calls = [0]
    real = _keras.grappler_options

    @contextlib.contextmanager
    def recording(options):
        set_for.append(calls[0])
        assert options == NO_GRAPPLER
        with real(options):
            yield

    monkeypatch.setattr(_keras, "grappler_options", recording)
    x, y = _data()
    measurement = Measurement(_model())
    for probe in [(x, y), (x, y), (x[:16], y[:16]), (x, y), (x[:16], y[:16])]:
        calls[0] += 1
        measurement(probe)
    assert set_for == [1, 3]  # the first call of each shape
