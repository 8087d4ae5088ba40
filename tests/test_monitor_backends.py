"""`VarianceMonitor` on every backend: training unchanged, records of the batches trained on.

Runs on TensorFlow, JAX and PyTorch alike (the suite's backend). The TensorFlow-only parts
(in-step taps inside the step, distribution strategies, TensorBoard) are tested in
tests/callbacks.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

import keras_initlab
from keras_initlab import _keras
from keras_initlab.callbacks import VarianceMonitor

BACKEND = keras.backend.backend()
BATCH, STEPS = 16, 6


def _model(dropout=False):
    """A small classifier; with ``dropout``, an unseeded Dropout after its hidden layer
    (Keras on PyTorch draws its mask from torch's global generator), its seed state the
    same in every model built (Keras' global seed set first)."""
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    model = keras.Sequential(
        [
            keras.Input((12,)),
            keras.layers.Dense(24, activation="tanh", name="hidden"),
            *([keras.layers.Dropout(0.25, name="drop")] if dropout else []),
            keras.layers.BatchNormalization(name="bn"),
            keras.layers.Dense(3, activation="softmax", name="out"),
        ]
    )
    model.set_weights([rng.standard_normal(w.shape) * 0.3 for w in model.get_weights()])
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
    return model


def _data():
    rng = np.random.default_rng(1)
    return (
        rng.standard_normal((BATCH * STEPS, 12)).astype("float32"),
        rng.integers(0, 3, BATCH * STEPS),
    )


def _weights(model):
    return [np.array(keras.ops.convert_to_numpy(v.value)) for v in model.variables]


def test_a_fit_with_the_monitor_gives_the_same_weights():
    """Records every batch (outside the training step on every backend) and at epoch ends,
    its probe in training mode (dropout drawn, BatchNorm on batch statistics): the weights
    after two epochs are bit-identical to a fit without the monitor (on PyTorch the probe
    puts torch's global generator back: the unseeded dropout draws from it)."""
    x, y = _data()
    plain = _model(dropout=True)  # each built just before its fit: the same global states
    plain.fit(x, y, batch_size=BATCH, epochs=2, shuffle=False, verbose=0)
    watched = _model(dropout=True)
    monitor = VarianceMonitor((x[:BATCH], y[:BATCH]), every_n_batches=1, in_step=False)
    watched.fit(x, y, batch_size=BATCH, epochs=2, shuffle=False, verbose=0, callbacks=[monitor])
    assert all(
        np.array_equal(a, b) for a, b in zip(_weights(plain), _weights(watched), strict=True)
    )
    events = {(r["event"], r["source"]) for r in monitor.records}
    assert events == {("train_begin", "probe"), ("batch", "probe"), ("epoch_end", "probe")}
    assert {r["layer"] for r in monitor.records} == {"hidden", "bn", "out"}


@pytest.mark.skipif(
    BACKEND == "tensorflow",
    reason="TensorFlow's in-step records come from taps inside the step (tests/callbacks)",
)
def test_in_step_records_are_of_the_batch_each_step_trained_on():
    """JAX and PyTorch: ``every_n_batches=1`` records, after each step, the batch that step
    trained on, in training mode: the same records as `measure` on that slice of the data
    (shuffle off) with the weights after the step; and training is unchanged."""
    x, y = _data()
    model, plain = _model(), _model()
    plain.fit(x, y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0)
    expected: list[list[dict]] = []

    class Reference(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            _keras.sync_state(self.model)
            part = slice(batch * BATCH, (batch + 1) * BATCH)
            expected.append(keras_initlab.measure(self.model, (x[part], y[part]), mode="training"))

    monitor = VarianceMonitor(every_n_batches=1)
    model.fit(
        x, y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0, callbacks=[monitor, Reference()]
    )
    batch_records = [r for r in monitor.records if r["event"] == "batch"]
    assert {r["source"] for r in batch_records} == {"in_step"}
    assert {r["mode"] for r in batch_records} == {"training"}
    by_step: dict[int, list[dict]] = {}
    for r in batch_records:
        by_step.setdefault(r["step"], []).append(r)
    # The last step's batch record gives way to the epoch-end record at that step.
    assert sorted(by_step) == list(range(1, STEPS))
    for step, rows in by_step.items():
        reference = expected[step - 1]
        for got, want in zip(rows, reference, strict=True):
            for key in ("activation_var", "gradient_var", "weight_grad_var"):
                assert got[key] == want[key], (step, got["layer"], key)
    assert all(np.array_equal(a, b) for a, b in zip(_weights(plain), _weights(model), strict=True))


def test_tensorboard_needs_tensorflow():
    """``log_dir`` writes with tf.summary: accepted on TensorFlow, a clear error elsewhere."""
    if BACKEND == "tensorflow":
        assert VarianceMonitor(log_dir="logs").log_dir == "logs"
        return
    with pytest.raises(ValueError, match="`log_dir` needs the TensorFlow backend"):
        VarianceMonitor(log_dir="logs")


@pytest.mark.skipif(
    BACKEND == "tensorflow", reason="tf.distribute strategies are measured (tests/callbacks)"
)
def test_distributed_training_on_jax_or_torch_is_refused_clearly():
    """A `keras.distribution` (JAX) or a torch process group: measure says it measures
    single-device training only on this backend, and the model is untouched."""
    model = _model()
    x, y = _data()
    if BACKEND == "jax":
        from keras import distribution

        distribution.set_distribution(distribution.DataParallel())
        try:
            with pytest.raises(NotImplementedError, match=r"keras\.distribution"):
                keras_initlab.measure(model, (x[:BATCH], y[:BATCH]))
        finally:
            distribution.set_distribution(None)
    else:
        import torch.distributed as dist

        dist.init_process_group("gloo", init_method="tcp://127.0.0.1:29533", rank=0, world_size=1)
        try:
            with pytest.raises(NotImplementedError, match=r"torch\.distributed"):
                keras_initlab.measure(model, (x[:BATCH], y[:BATCH]))
        finally:
            dist.destroy_process_group()
    assert keras_initlab.measure(model, (x[:BATCH], y[:BATCH]))  # and afterwards it measures
