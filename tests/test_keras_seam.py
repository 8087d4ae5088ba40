"""`keras_initlab._keras`: each use of a Keras internal still does what the package needs.

These are the tests CI runs against the oldest and the newest supported Keras: a Keras
release that changes one of the internals fails here, by name.
"""

from __future__ import annotations

import logging

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_initlab import _keras

L = keras.layers


def small_model() -> keras.Model:
    inner = keras.Sequential([keras.Input((4,)), L.Dense(4, name="d")], name="inner")
    x = keras.Input((4,))
    out = L.Dense(3, activation="softmax", name="head")(inner(x))
    model = keras.Model(x, out, name="outer")
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def test_layers_and_their_own_variables():
    model = small_model()
    inner = model.get_layer("inner")
    assert [layer.name for layer in _keras.child_layers(model)][-2:] == ["inner", "head"]
    assert _keras.child_layers(inner)[-1].name == "d"
    assert {layer.name for layer in _keras.all_layers(model)} >= {"outer", "inner", "d", "head"}
    head = model.get_layer("head")
    assert [v.name for v in _keras.own_variables(head)] == ["kernel", "bias"]
    assert _keras.own_variables(inner) == []  # its weights belong to its Dense


def test_compute_loss_is_the_training_loss_and_leaves_the_trackers_alone():
    model = small_model()
    x = np.random.default_rng(0).standard_normal((8, 4)).astype("float32")
    y = np.arange(8) % 3
    _keras.symbolic_build(model, (x, y))
    assert _keras.is_built(model)
    assert _keras.compiled_loss(model) is not None
    before = [v.numpy().copy() for v in model.metrics_variables]
    loss = _keras.compute_loss(model, x, y, model(x), None, training=False)
    expected = keras.losses.SparseCategoricalCrossentropy()(y, model(x))
    assert float(loss) == pytest.approx(float(expected), rel=1e-6)
    assert all(
        np.array_equal(a, v.numpy()) for a, v in zip(before, model.metrics_variables, strict=False)
    )


def test_fit_batch_is_found_inside_fit_only():
    model = small_model()
    x = np.ones((8, 4), "float32")
    y = np.zeros(8, "int64")
    seen = []
    hook = keras.callbacks.LambdaCallback(
        on_train_begin=lambda logs: seen.append(_keras.fit_batch())
    )
    model.fit(x, y, batch_size=4, epochs=1, verbose=0, callbacks=[hook])
    assert _keras.fit_batch() is None
    batch_x, batch_y = seen[0]
    assert tuple(batch_x.shape) == (4, 4)
    assert tuple(batch_y.shape) == (4,)


def test_a_batch_hook_on_the_instance_makes_keras_call_it():
    calls = []
    callback = keras.callbacks.Callback()
    _keras.add_batch_hook(
        callback, "on_train_batch_end", lambda batch, logs=None: calls.append(batch)
    )
    model = small_model()
    model.fit(np.ones((8, 4)), np.zeros(8), batch_size=4, verbose=0, callbacks=[callback])
    assert calls == [0, 1]


def test_softmax_outputs_carry_their_logits():
    out = keras.activations.softmax(tf.constant([[1.0, 2.0]]))
    assert _keras.logits_of(out) is not None
    other = tf.constant([1.0])
    _keras.set_logits(other, out)
    assert _keras.logits_of(other) is out
    assert not _keras.is_graph_tensor(out)
    assert tf.function(lambda t: tf.constant(_keras.is_graph_tensor(t)))(other).numpy()


def test_patch_call_wraps_and_restores_a_users_own_call():
    layer = L.Dense(2)
    layer.build((None, 3))
    own = lambda *a, **k: "own"  # noqa: E731
    object.__setattr__(layer, "call", own)
    _keras.patch_call(layer, lambda call: lambda *a, **k: ("wrapped", call(*a, **k)), "t")
    assert layer.call(None) == ("wrapped", "own")
    assert _keras.is_patched(layer, "t")
    # A second patch by the same owner (a run that was interrupted) does not stack.
    _keras.patch_call(layer, lambda call: lambda *a, **k: ("again", call(*a, **k)), "t")
    assert layer.call(None) == ("again", "own")
    _keras.restore_call(layer, "other")  # not its patch: nothing happens
    assert layer.call(None) == ("again", "own")
    _keras.restore_call(layer, "t")
    assert layer.call is own


def test_patch_train_step_puts_back_the_compiled_function():
    model = small_model()
    x, y = np.ones((8, 4), "float32"), np.zeros(8, "int64")
    model.fit(x, y, verbose=0)
    plain = model.train_function
    before = _keras.patch_train_step(model, lambda step: step)
    assert before is plain
    assert model.train_function is not plain
    _keras.restore_train_step(model, before)
    assert model.train_function is plain
    assert "train_step" not in vars(model)


def test_retracing_filter_is_installed_once():
    logger = tf.get_logger()
    name = "make_probe_function_of_this_test"
    _keras.quiet_retracing_warnings(name)
    _keras.quiet_retracing_warnings(name)
    ours = [f for f in logger.filters if name in getattr(f, "names", ())]
    assert len(ours) == 1
    message = f"5 out of the last 5 calls to <function {name}.<locals>.probe> triggered retracing"
    record = logging.LogRecord("tf", logging.WARNING, "", 0, message, None, None)
    assert not ours[0].filter(record)
    other = logging.LogRecord("tf", logging.WARNING, "", 0, "retracing of user_fn", None, None)
    assert ours[0].filter(other)


def test_grappler_call_options_apply_to_the_calls_of_the_block_and_are_put_back_exactly():
    from tensorflow.core.protobuf import config_pb2, rewriter_config_pb2
    from tensorflow.python.eager import context

    ctx = context.context()
    before = tf.config.optimizer.get_experimental_options()
    assert "constant_folding" not in before  # left at its default, which the getter omits
    own = ctx.function_call_options
    options = _keras.grappler_call_options({"constant_folding": False})
    assert tf.config.optimizer.get_experimental_options() == before
    assert ctx.function_call_options is own
    rewrite = config_pb2.ConfigProto.FromString(options.config_proto_serialized)
    assert (
        rewrite.graph_options.rewrite_options.constant_folding
        == rewriter_config_pb2.RewriterConfig.OFF
    )

    @tf.function(autograph=False)
    def double(x):
        return x * tf.constant(2.0)

    with _keras.calling_with(options):
        assert ctx.function_call_options is options
        assert double(tf.constant(1.5)).numpy() == 3.0  # called with them
    assert ctx.function_call_options is own
    with pytest.raises(RuntimeError), _keras.calling_with(options):
        raise RuntimeError("inside")
    assert ctx.function_call_options is own
    assert tf.config.optimizer.get_experimental_options() == before


def test_is_watched_tells_what_the_training_tape_reaches():
    """In a traced training step, an input-side tensor is off the tape, one that depends on a
    trainable weight is on it (so its gradient is taken), outside any tape nothing is."""
    model = small_model()
    found = {}

    @tf.function(autograph=False)
    def step(x):
        with tf.GradientTape():
            scaled = x * 2.0
            out = model(scaled)
            found["input"], found["output"] = _keras.is_watched(scaled), _keras.is_watched(out)
        found["after"] = _keras.is_watched(out)
        return out

    step(tf.ones((2, 4)))
    assert found == {"input": False, "output": True, "after": False}


def test_public_operations_are_the_classes_keras_ops_calls_record():
    ops = _keras.public_operations()
    assert all(issubclass(c, keras.Operation) for c in ops.values())
    modules = {c.__module__.rsplit(".", 1)[-1] for c in ops.values()}
    assert modules >= {"numpy", "nn", "math", "core", "linalg", "image"}
    x, image = keras.Input((4, 6)), keras.Input((4, 4, 3))
    outputs = [
        x + 3.0,
        keras.ops.relu6(x),
        keras.ops.mean(x, axis=-1),
        x[:, 1:],
        keras.ops.erf(x),
        keras.ops.cast(x, "float16"),
        keras.ops.norm(x, axis=-1),
        keras.ops.image.resize(image, (2, 2)),
        keras.ops.einsum("bij,bkj->bik", x, x),
    ]
    model = keras.Model([x, image], outputs)
    recorded = {type(c.operation) for c in _keras.functional_calls(model)}
    assert len(recorded) == len(outputs)
    assert recorded <= set(ops.values())


def test_a_missing_internal_is_a_clear_error():
    class Stranger:
        pass

    with pytest.raises(_keras.KerasInternalsError, match=r"_flatten_layers.*Supported Keras"):
        _keras.child_layers(Stranger())
