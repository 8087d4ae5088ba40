"""The one seam to Keras' (and TensorFlow's) private parts.

Every use of a Keras attribute that is not public API lives here, one small function per
need, so that a Keras release that changes one of them fails in one place with a clear
`KerasInternalsError` instead of deep inside a fit. `SUPPORTED_KERAS` is the range the
package declares (pyproject.toml) and CI tests at both ends; `CHECKED_ON` the releases each
helper was read against.

The private uses, and why no public API does the job:

* ``Layer._flatten_layers``: the direct sub-layers of any layer (Sequential, Functional,
  subclassed models, wrappers, RNN cells) in tracking order; ``Model.layers`` misses the
  sub-layers of plain layers and of wrappers.
* ``Layer._trainable_variables`` / ``_non_trainable_variables``: the variables a layer created
  itself (``layer.weights`` includes its sub-layers').
* ``Model._compile_loss`` and its ``_metrics``: the compiled loss and its per-output loss
  trackers, swapped for None while the monitor evaluates the loss (Keras skips a tracker
  that is None), so a probe does not update the loss metrics.
* ``Model._compute_loss``: `compute_loss` with the ``training`` argument Keras adds for
  overrides written before Keras 3.3.
* ``Model._symbolic_build``: builds the model, compiled loss and metrics from one batch, as
  `fit` does on the first step (needed before step 0 is recorded).
* ``epoch_iterator`` in the frame of `Model.fit` and its ``data_adapter``: the training data
  of the running `fit` (Keras does not hand it to callbacks), for the default probe.
* ``keras.src.utils.python_utils.is_default``: Keras dispatches batch hooks asynchronously
  unless a callback overrides them; a callback that needs them only sometimes assigns the
  hook on the instance (`add_batch_hook`).
* The ``_keras_logits`` attribute Keras' TensorFlow backend sets on softmax/sigmoid outputs
  (and the graph op type it falls back to): the cross-entropies read the logits there.
* ``Functional._nodes_by_depth`` (and ``keras.src.models.functional.Functional``): the calls of
  a Functional graph with their arguments, for ``propagate``; ``model.layers`` and
  ``layer.input`` do not say which tensor feeds which argument of a layer called more than
  once or of a ``keras.ops`` call.
* The ``keras.src.ops`` modules behind ``keras.ops`` (found from the ``__module__`` of its
  functions) and the ``Operation`` subclasses they define: the classes a graph records for
  ``keras.ops`` calls (`public_operations`), which ``keras_initlab.model.operations``
  classifies; ``keras.ops`` exports the functions only.
* ``keras.src.backend.common.global_state`` (the ``global_seed_generator`` attribute): the
  seed generator Keras draws from when a random op gets no seed (`untouched_random_state`).
* ``keras.src.ops.function.Function`` and the ``_inbound_nodes``/``_outbound_nodes`` of
  layers: the graph of a subclassed layer's ``call`` traced on KerasTensors
  (`traced_call`), ordered as a Functional model's, and the nodes the trace adds taken off
  again; no public API returns the graph of a layer's ``call``.
* ``keras.src.applications.convnext``: the custom layer classes Keras' application code
  defines that the layer registry covers (`application_layers`; they are not exported).
* ``MultiHeadAttention._softmax``: its Softmax sublayer (the dense sublayers are public).
* ``tf.__internal__.EagerTensor``: telling an eager tensor from a graph tensor.
* TensorFlow's ``record.should_record_backprop``: whether the gradient tape of the step
  being traced records ops on a tensor (`is_watched`); Keras' training tape watches only the
  trainable variables, and no public API says which tensors it will differentiate.
* The eager context's ``_optimizer_experimental_options`` and ``_thread_local_data``
  (TensorFlow): the call options of a `tf.function` built under other Grappler options
  (`grappler_call_options`) and put in place for a block of calls
  (`calling_with`), the previous ones put back exactly; the public ``tf.config.optimizer``
  setter only adds options and its getter omits those left at their default, so it cannot
  put back what was there.
* Instance attributes set with ``object.__setattr__`` (``call``, ``train_step``,
  ``activation``, the per-model cache of traced measurements): Keras' attribute tracking
  must not see them.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import keras

__all__ = [
    "CHECKED_ON",
    "SUPPORTED_KERAS",
    "GraphCall",
    "KerasInternalsError",
    "Trace",
    "add_batch_hook",
    "all_layers",
    "application_layers",
    "attention_softmax",
    "calling_with",
    "child_layers",
    "compiled_loss",
    "compute_loss",
    "fit_batch",
    "functional_calls",
    "grappler_call_options",
    "instance_cache",
    "is_built",
    "is_functional",
    "is_graph_tensor",
    "is_patched",
    "is_watched",
    "logits_of",
    "own_variables",
    "patch_call",
    "patch_train_step",
    "public_operations",
    "quiet_retracing_warnings",
    "restore_call",
    "restore_train_step",
    "set_logits",
    "swapped_attribute",
    "symbolic_build",
    "traced_call",
]

SUPPORTED_KERAS = ">=3.12,<3.16"  # as in pyproject.toml
CHECKED_ON = ("3.12.0", "3.15.1")

_MISSING = object()
_SAVED = "_keras_initlab_saved"  # on a wrapper: what the instance attribute was before it
_OWNER = "_keras_initlab_owner"  # on a wrapper: who installed it


class KerasInternalsError(RuntimeError):
    """A private part of Keras that keras_initlab relies on is missing or changed."""


def _internal(owner: Any, name: str, what: str) -> Any:
    """``getattr(owner, name)``, or a `KerasInternalsError` that says what is needed."""
    try:
        return getattr(owner, name)
    except AttributeError:
        raise KerasInternalsError(
            f"keras_initlab needs {what} (`{name}`), which Keras {keras.__version__} does not "
            f"have. Supported Keras versions: {SUPPORTED_KERAS} (checked on "
            f"{', '.join(CHECKED_ON)}); install one of them."
        ) from None


# ----------------------------------------------------------------------------- layers
def child_layers(layer: Any) -> list[Any]:
    """The direct sub-layers of ``layer`` in Keras' tracking order (empty for a leaf)."""
    flatten = _internal(layer, "_flatten_layers", "a layer's tracked sub-layers")
    return list(flatten(include_self=False, recursive=False))


def all_layers(model: Any) -> list[Any]:
    """``model`` and every layer below it, parents before children, each once."""
    flatten = _internal(model, "_flatten_layers", "a layer's tracked sub-layers")
    return list(flatten(include_self=True, recursive=True))


def seed_generators(model: Any) -> list[Any]:
    """The `keras.random.SeedGenerator`s the layers of ``model`` draw with (dropout,
    noise, augmentation), each once."""
    found: dict[int, Any] = {}
    for layer in all_layers(model):
        for generator in _internal(layer, "_seed_generators", "a layer's seed generators"):
            found.setdefault(id(generator), generator)
    return list(found.values())


def own_variables(layer: Any) -> list[Any]:
    """The variables ``layer`` created itself (not those of its sub-layers)."""
    trainable = _internal(layer, "_trainable_variables", "a layer's own variables")
    return list(trainable) + list(
        _internal(layer, "_non_trainable_variables", "a layer's own variables")
    )


def einsum_dense_draws_on_its_axes() -> bool:
    """Whether this Keras' EinsumDense draws a VarianceScaling kernel on the einsum's own
    input and output axes (its true fans, Keras 3.13 and later) rather than on the shape."""
    return hasattr(keras.layers.EinsumDense, "_update_kernel_initializer")


def build_shapes(layer: Any) -> dict[str, Any]:
    """The shapes ``layer`` was built with, by its ``build`` argument's name (``{}`` when
    Keras did not record them)."""
    return dict(getattr(layer, "_build_shapes_dict", None) or {})


def is_built(model: Any) -> bool:
    """Whether every layer of ``model`` and its compiled loss (if any) are built."""
    loss = compiled_loss(model)
    return all(layer.built for layer in all_layers(model)) and (loss is None or loss.built)


# ----------------------------------------------------------------------------- instance patches
def _patch(obj: Any, name: str, make: Callable[[Any], Any], owner: str) -> None:
    """Replace ``obj.<name>`` on the instance by ``make(current)``; `_restore` undoes it.

    The one rule for an instance attribute that is already there (a user's own, or another
    owner's wrapper): it is what gets wrapped and what comes back on restore. A wrapper of
    the same ``owner`` left behind by an interrupted run is unwrapped first, so one owner's
    patches never stack up.
    """
    saved = vars(obj).get(name, _MISSING)
    if getattr(saved, _OWNER, None) == owner:
        saved = getattr(saved, _SAVED)
    if saved is _MISSING:
        with contextlib.suppress(AttributeError):
            object.__delattr__(obj, name)
    else:
        object.__setattr__(obj, name, saved)
    wrapper = make(getattr(obj, name))
    if inspect.ismethod(wrapper):  # a bound method cannot carry the marks: wrap it
        wrapper = functools.partial(wrapper)
    setattr(wrapper, _SAVED, saved)
    setattr(wrapper, _OWNER, owner)
    object.__setattr__(obj, name, wrapper)


def _restore(obj: Any, name: str, owner: str) -> None:
    current = vars(obj).get(name, _MISSING)
    if getattr(current, _OWNER, None) != owner:
        return
    saved = getattr(current, _SAVED)
    if saved is _MISSING:
        object.__delattr__(obj, name)
    else:
        object.__setattr__(obj, name, saved)


def patch_call(
    layer: Any, make: Callable[[Callable[..., Any]], Callable[..., Any]], owner: str
) -> None:
    """Make ``layer`` run ``make(call)`` instead of its ``call``, until `restore_call`.

    Args:
        layer: a Keras layer.
        make: given the ``call`` the layer has now, returns the one to run.
        owner: who patches (``"measurement"``, ``"lsuv"``): each restores only its own.

    Example:
    >>> layer = keras.layers.Dense(2)
    >>> patch_call(layer, lambda call: lambda *a, **k: 2 * call(*a, **k), owner="doc")
    >>> restore_call(layer, owner="doc"); "call" in vars(layer)
    False
    """
    _patch(layer, "call", make, owner)


def restore_call(layer: Any, owner: str) -> None:
    """Undo ``owner``'s `patch_call` (nothing to do when it did not patch ``layer``)."""
    _restore(layer, "call", owner)


def is_patched(layer: Any, owner: str) -> bool:
    """Whether ``layer``'s ``call`` is ``owner``'s patch."""
    return getattr(vars(layer).get("call"), _OWNER, None) == owner


@contextlib.contextmanager
def swapped_attribute(obj: Any, name: str, value: Any) -> Iterator[None]:
    """Set ``obj.<name> = value`` on the instance for the ``with`` block, untracked by Keras."""
    saved = vars(obj).get(name, _MISSING)
    object.__setattr__(obj, name, value)
    try:
        yield
    finally:
        if saved is _MISSING:
            object.__delattr__(obj, name)
        else:
            object.__setattr__(obj, name, saved)


@contextlib.contextmanager
def untouched_torch_generator() -> Iterator[None]:
    """Run the block and put PyTorch's global generators (CPU and CUDA) back as they were;
    nothing on another backend.

    Keras on PyTorch draws an unseeded layer's dropout mask (``Dropout(rate)`` without a
    ``seed``) from torch's global generator, not from the layer's `SeedGenerator`, so a
    probe pass in training mode would move the masks of every later training step.
    """
    if keras.backend.backend() != "torch":
        yield
        return
    import torch

    cpu = torch.random.get_rng_state()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    try:
        yield
    finally:
        torch.random.set_rng_state(cpu)
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)


@contextlib.contextmanager
def untouched_random_state() -> Iterator[None]:
    """Run the block and put every global random state back as it was.

    For code that builds layers or draws weights on a copy of a model (the checked fixes of
    an alert): a new layer draws its default seed from Python's `random`, Keras' unseeded
    random ops advance the global `SeedGenerator`, and NumPy's global generator may be read.
    All three are restored, and PyTorch's global generators (`untouched_torch_generator`),
    so the user's later draws are those they would have been.

    Example:
    >>> import random
    >>> state = random.getstate()
    >>> with untouched_random_state():
    ...     _ = random.random()
    >>> random.getstate() == state
    True
    """
    import random

    import numpy as np
    from keras.src.backend.common import global_state

    # The user's legacy global NumPy state is what is saved, so the legacy API it is.
    python_state, numpy_state = random.getstate(), np.random.get_state()  # noqa: NPY002
    generator = global_state.get_global_attribute("global_seed_generator")
    seed_state = None if generator is None else generator.state.numpy().copy()
    try:
        with untouched_torch_generator():
            yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)  # noqa: NPY002
        if generator is None:
            global_state.set_global_attribute("global_seed_generator", None)
        else:
            global_state.set_global_attribute("global_seed_generator", generator)
            generator.state.assign(seed_state)


@contextlib.contextmanager
def kept_state(layer: Any) -> Iterator[None]:
    """Run the block and put back what calling ``layer`` (a layer or model) may change: its
    non-trainable variables (moving statistics, seed states, a custom layer's counters) and
    every global random state (`untouched_random_state`)."""
    variables = list(layer.non_trainable_variables)
    saved = [keras.ops.copy(v.value) for v in variables]
    try:
        with untouched_random_state():
            yield
    finally:
        for variable, value in zip(variables, saved, strict=True):
            variable.assign(value)


@contextlib.contextmanager
def wrapped_methods(
    layers: list[Any], name: str, wrap: Callable[[Any, Callable[..., Any]], Callable[..., Any]]
) -> Iterator[None]:
    """Within the block, each layer of ``layers`` runs ``wrap(layer, method)`` as its method
    ``name`` (``method`` its class's, bound to it); the class's own is back after (an
    instance attribute set and removed: Keras looks the method up at each call).

    Example:
    >>> layer = keras.layers.ReLU()
    >>> with wrapped_methods([layer], "call", lambda _, call: lambda x: call(x) + 1.0):
    ...     inside = float(layer(keras.ops.zeros(())))
    >>> inside, float(layer(keras.ops.zeros(())))
    (1.0, 0.0)
    """
    try:
        for layer in layers:
            method = getattr(type(layer), name).__get__(layer)
            object.__setattr__(layer, name, wrap(layer, method))
        yield
    finally:
        for layer in layers:
            vars(layer).pop(name, None)


def explicit_attention(layers: list[Any]) -> contextlib.AbstractContextManager[None]:
    """Within the block, each ``MultiHeadAttention`` of ``layers`` computes its weights with
    its softmax layer (the path it takes to return attention scores) instead of the fused
    ``keras.ops.dot_product_attention`` it takes without dropout (Keras 3.5+,
    ``_compute_attention``, a private method): the same output up to float rounding, and
    the scores and mask pass through ``layer._softmax``. A layer with flash attention on
    cannot return its scores and is left fused."""

    def explicit(layer: Any, compute: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(compute)

        def scores_kept(*args: Any, **kwargs: Any) -> Any:
            bound = signature.bind(*args, **kwargs)
            bound.arguments["return_attention_scores"] = True
            return compute(*bound.args, **bound.kwargs)

        return scores_kept

    chosen = [
        layer
        for layer in layers
        if not getattr(layer, "_flash_attention", False)
        and "return_attention_scores"
        in inspect.signature(type(layer)._compute_attention).parameters
    ]
    return wrapped_methods(chosen, "_compute_attention", explicit)


@contextlib.contextmanager
def recorded_fused_attention(record: Callable[[str, dict[str, Any]], None]) -> Iterator[None]:
    """Within the block, each eager call of ``keras.ops.dot_product_attention`` (the fused
    attention keras_hub's decoders take on JAX and PyTorch) also hands ``record`` the path of
    the layer calling it (Keras' name scope, private: ``keras.src.backend.common.name_scope``)
    and its arguments by name, defaults filled in. Every loaded module that exports the
    function (``keras.ops``, ``keras.ops.nn``, ``keras.src.ops`` ...: callers look it up
    there at each call) holds the recording one until the block ends; not thread-safe.

    Example:
    >>> seen = []
    >>> q = keras.ops.ones((1, 3, 2, 4))
    >>> with recorded_fused_attention(lambda path, args: seen.append(args["is_causal"])):
    ...     out = keras.ops.dot_product_attention(q, q, q, is_causal=True)
    >>> seen, tuple(out.shape)
    ([True], (1, 3, 2, 4))
    """
    from keras.src.backend.common.name_scope import current_path
    from keras.src.ops import nn

    original = nn.dot_product_attention
    signature = inspect.signature(original)

    @functools.wraps(original)
    def recording(*args: Any, **kwargs: Any) -> Any:
        output = original(*args, **kwargs)
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        record(current_path(), dict(bound.arguments))
        return output

    holders = [
        module
        for module in list(sys.modules.values())
        if getattr(module, "dot_product_attention", None) is original
    ]
    try:
        for module in holders:
            setattr(module, "dot_product_attention", recording)  # noqa: B010
        yield
    finally:
        for module in holders:
            setattr(module, "dot_product_attention", original)  # noqa: B010


def instance_cache(obj: Any, name: str) -> dict[Any, Any]:
    """A dict kept on ``obj`` itself (untracked by Keras, not saved), created on first use.

    What it holds lives as long as ``obj`` and no longer (a reference cycle through ``obj``
    is collected with it), unlike a global cache keyed on ``obj``.
    """
    cache = vars(obj).get(name)
    if cache is None:
        cache = {}
        object.__setattr__(obj, name, cache)
    return cache


def patch_train_step(model: Any, make: Callable[[Callable[..., Any]], Callable[..., Any]]) -> Any:
    """Train ``model`` with ``make(train_step)`` until `restore_train_step`.

    The compiled training function is rebuilt with the new step (one trace); the one it had
    is returned, for `restore_train_step` to put back, so a later `fit` without the patch
    does not trace again.
    """
    before = model.train_function
    _patch(model, "train_step", make, "train_step")
    model.make_train_function(force=True)
    return before


def restore_train_step(model: Any, train_function: Any) -> None:
    """Undo `patch_train_step`, putting back the compiled function it returned."""
    _restore(model, "train_step", "train_step")
    if train_function is not None:
        model.train_function = train_function
    else:
        model.make_train_function(force=True)


def add_batch_hook(callback: Any, name: str, hook: Callable[..., Any]) -> None:
    """Give ``callback`` a batch hook (e.g. ``"on_train_batch_end"``) on the instance.

    Keras runs batch hooks synchronously, and dispatches nothing per batch, only for
    callbacks whose hook is not its ``@default`` no-op; a callback that needs the hook only
    in some configurations sets it on the instance, so the others keep the fast path.
    """
    object.__setattr__(callback, name, hook)


def sync_state(model: Any) -> None:
    """Put the state a running `fit` holds back into the model's variables (JAX keeps it
    outside them between epochs; the other backends train the variables themselves)."""
    sync = getattr(model, "jax_state_sync", None)
    if callable(sync):
        sync()


def capture_train_batches(model: Any, keep: Callable[[Any], None]) -> Any:
    """Hand every batch ``model.train_function`` trains on to ``keep``, outside its jit.

    JAX's train function takes ``(state, iterator)`` and draws its batches with ``next``: the
    iterator is wrapped; PyTorch's takes a list of one batch (``steps_per_execution`` is 1
    there). Returns the function it wrapped, for
    `restore_train_function`. The batches are the ones training draws: nothing reads the
    data again.
    """
    original = model.train_function
    if original is None:
        raise ValueError("The model has no train function yet (called before `fit` made it)")
    if keras.backend.backend() == "jax":

        class Recording:
            def __init__(self, iterator: Any) -> None:
                self.iterator = iterator

            def __iter__(self) -> Any:
                return self

            def __next__(self) -> Any:
                batch = next(self.iterator)
                keep(batch)
                return batch

        def train_function(*args: Any) -> Any:
            state, iterator = args
            return original(state, Recording(iterator))

    else:

        def train_function(*args: Any) -> Any:
            (data,) = args
            keep(data[0])
            return original(data)

    model.train_function = train_function
    return original


def restore_train_function(model: Any, original: Any) -> None:
    """Undo `capture_train_batches`."""
    model.train_function = original


# ----------------------------------------------------------------------------- loss and build
def compiled_loss(model: Any) -> Any:
    """The model's compiled loss (a `CompileLoss`), or None before `compile(loss=...)`."""
    return getattr(model, "_compile_loss", None)


def compute_loss(
    model: Any, x: Any, y: Any, y_pred: Any, sample_weight: Any, training: bool
) -> Any:
    """The loss `train_step` differentiates, without updating the compiled loss trackers.

    ``model.compute_loss`` (the compiled loss with its reductions and loss weights, plus
    ``model.losses``; or the model's own override), called as `train_step` calls it.
    `CompileLoss` skips a loss tracker that is None, so the trackers are swapped for Nones
    during the call.
    """
    loss = compiled_loss(model)
    trackers = None if loss is None else _internal(loss, "_metrics", "the compiled loss trackers")
    call = _internal(model, "_compute_loss", "`compute_loss` with a training argument")
    if trackers is None:
        return call(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=training)
    with swapped_attribute(loss, "_metrics", [None] * len(trackers)):
        return call(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=training)


_CROSS_ENTROPIES = ("categorical_crossentropy", "sparse_categorical_crossentropy")


def cross_entropy_from_logits(model: Any) -> bool | None:
    """For a model compiled with one (sparse) categorical cross-entropy: whether it reads
    its output as logits (``from_logits=True``); None for any other loss, or none."""
    user = getattr(compiled_loss(model), "_user_loss", None)
    if isinstance(user, str):
        return False if user in _CROSS_ENTROPIES else None
    name = getattr(getattr(user, "fn", user), "__name__", "")
    if name not in _CROSS_ENTROPIES:
        return None
    return bool(dict(getattr(user, "_fn_kwargs", None) or {}).get("from_logits", False))


def call_has_training_arg(model: Any) -> bool:
    """Whether ``model.call`` takes a ``training`` argument."""
    return bool(_internal(model, "_call_has_training_arg", "whether `call` takes `training`"))


@contextlib.contextmanager
def losses_override(model: Any, losses: list[Any]) -> Iterator[None]:
    """``model.losses`` reads ``losses`` (a stateless pass's, as Keras' JAX trainer hands
    them to `compute_loss`) for the ``with`` block; nothing to do for no losses."""
    if not losses:
        yield
        return
    _internal(model, "_losses_override", "the losses of a stateless pass")
    with swapped_attribute(model, "_losses_override", list(losses)):
        yield


def symbolic_build(model: Any, batch: Any) -> None:
    """Build ``model``, its compiled loss and metrics from ``batch`` as `fit` does."""
    _internal(model, "_symbolic_build", "the symbolic build of `fit`")(data_batch=batch)


def fit_batch() -> Any:
    """A batch of the training data of the `fit` call running now, or None.

    Found through the ``epoch_iterator`` of the `fit` frame on the call stack; a fresh batch
    is drawn from its data adapter when that re-iterates without consuming data (arrays,
    `tf.data` datasets). None for other data (generators, PyDataset) or outside `fit`.
    """
    frame = inspect.currentframe()
    while frame is not None:
        iterator = frame.f_locals.get("epoch_iterator")
        if iterator is not None and hasattr(iterator, "data_adapter"):
            adapter = iterator.data_adapter
            if type(adapter).__name__ not in ("ArrayDataAdapter", "TFDatasetAdapter"):
                return None
            tf_data = keras.backend.backend() == "tensorflow" or type(adapter).__name__ != (
                "ArrayDataAdapter"
            )
            batches = adapter.get_tf_dataset() if tf_data else adapter.get_numpy_iterator()
            batch = next(iter(batches))
            return tuple(batch) if isinstance(batch, (tuple, list)) else batch
        frame = frame.f_back
    return None


# ----------------------------------------------------------------------------- tensors
def logits_of(y: Any) -> Any:
    """The logits Keras' cross-entropies read instead of ``y`` (a softmax/sigmoid), or None."""
    return getattr(y, "_keras_logits", None)


def set_logits(y: Any, logits: Any) -> None:
    """Make Keras' cross-entropies read ``logits`` for output ``y`` (see `logits_of`)."""
    y._keras_logits = logits


def is_graph_tensor(y: Any) -> bool:
    """Whether ``y`` is a TensorFlow graph tensor (has a producing op) rather than eager."""
    import tensorflow as tf

    return getattr(y, "op", None) is not None and not isinstance(y, tf.__internal__.EagerTensor)


def is_watched(t: Any) -> bool:
    """Whether a gradient tape active now records the ops that read ``t`` (while a training
    step is traced: whether ``t`` depends on a trainable variable, so that the step's
    gradient reaches it)."""
    from tensorflow.python.eager import record

    should_record = _internal(record, "should_record_backprop", "TensorFlow's tape query")
    return bool(should_record([t]))


# ----------------------------------------------------------------------------- logging
class _OwnRetracingFilter(logging.Filter):
    """Drop TensorFlow's "frequent retracing" warning about keras_initlab's own functions.

    Each monitor traces its probe (and ring-buffer reader) once per model. TensorFlow keys
    its detector on the Python code object, so fitting a few monitored models in one process
    reads to it like a `tf.function` created in a loop, and it would tell the user to fix
    code that is not theirs.
    """

    def __init__(self, names: tuple[str, ...]) -> None:
        super().__init__()
        self.names = names

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return "retracing" not in message or not any(n in message for n in self.names)


def quiet_retracing_warnings(*names: str) -> None:
    """Silence TensorFlow's retracing warning for functions named ``names`` (idempotent)."""
    import tensorflow as tf

    logger = tf.get_logger()
    for existing in logger.filters:
        if isinstance(existing, _OwnRetracingFilter) and set(names) <= set(existing.names):
            return
    logger.addFilter(_OwnRetracingFilter(tuple(names)))


# Keras' TensorFlow backend runs a grouped convolution (ConvNeXt's depthwise ``Conv2D``)
# through a `tf.function` it creates at every call (``conv.<locals>._conv_xla``): run
# eagerly, each call traces it anew, and TensorFlow blames the caller for the retracing.
KERAS_PER_CALL_FUNCTIONS = ("_conv_xla",)


@contextlib.contextmanager
def keras_retracing_quiet() -> Iterator[None]:
    """Within: TensorFlow's retracing warning about `KERAS_PER_CALL_FUNCTIONS` dropped (an
    eager pass of the model triggers it in Keras' own code)."""
    import tensorflow as tf

    quiet = _OwnRetracingFilter(KERAS_PER_CALL_FUNCTIONS)
    logger = tf.get_logger()
    logger.addFilter(quiet)
    try:
        yield
    finally:
        logger.removeFilter(quiet)


def grappler_call_options(options: dict[str, Any]) -> Any:
    """TensorFlow's call options for `tf.function` calls under Grappler's ``options``.

    A function is instantiated, and optimized, once per input signature *and* per call
    options, which travel with every call (its ``config_proto``): a function first called
    with these options must be called with the same ones afterwards, or its next call
    instantiates it again under the others. Building them costs about 0.35 ms, so they are
    built once and put in place for each call by `calling_with`. TensorFlow's global options
    and this thread's call options are left as they were.
    """
    from tensorflow.python.eager import context

    ctx = context.context()
    current = _internal(ctx, "_optimizer_experimental_options", "TensorFlow's optimizer options")
    local = _thread_local(ctx)
    saved, own = dict(current), local.function_call_options
    ctx.set_optimizer_experimental_options(options)
    try:
        return ctx.function_call_options
    finally:
        current.clear()
        ctx.set_optimizer_experimental_options(saved)
        local.function_call_options = own


@contextlib.contextmanager
def calling_with(call_options: Any) -> Iterator[None]:
    """``call_options`` (from `grappler_call_options`) for the `tf.function` calls this
    thread makes in the block; the previous ones (exactly) after it."""
    from tensorflow.python.eager import context

    ctx = context.context()
    local = _thread_local(ctx)
    saved = local.function_call_options
    ctx.function_call_options = call_options
    try:
        yield
    finally:
        local.function_call_options = saved


def _thread_local(ctx: Any) -> Any:
    """The eager context's per-thread data, which holds this thread's call options."""
    return _internal(ctx, "_thread_local_data", "TensorFlow's per-thread eager context")


# ----------------------------------------------------------------------------- graph (propagate)
@dataclass(frozen=True)
class GraphCall:
    """One call of an operation in a Functional graph.

    Attributes:
        operation: the layer, nested model or ``keras.ops`` operation called.
        args: the positional arguments, KerasTensors where the graph feeds them.
        kwargs: the keyword arguments, the same.
        inputs: the KerasTensors it reads, flattened, in argument order.
        outputs: the KerasTensors it produces, flattened.
    """

    operation: Any
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    inputs: tuple[Any, ...]
    outputs: tuple[Any, ...]


def is_functional(model: Any) -> bool:
    """Whether ``model`` is a Functional graph (a Sequential model is not, for this)."""
    from keras.src.models.functional import Functional

    return isinstance(model, Functional)


def functional_calls(model: Any) -> list[GraphCall]:
    """The calls of a Functional model in an order that computes every input first.

    Keras 3 keeps them in ``model._nodes_by_depth`` (depth 0: the outputs), each node with
    its ``operation``, ``arguments`` (``args``/``kwargs``), ``input_tensors`` and
    ``outputs``; input nodes are left out.
    """
    by_depth = _internal(model, "_nodes_by_depth", "a Functional model's graph nodes")
    calls = []
    for depth in sorted(by_depth, reverse=True):
        for node in by_depth[depth]:
            if not node.operation or node.is_input:
                continue
            calls.append(
                GraphCall(
                    node.operation,
                    tuple(node.arguments.args),
                    dict(node.arguments.kwargs),
                    tuple(node.input_tensors),
                    tuple(node.outputs),
                )
            )
    return calls


def attention_softmax(layer: Any) -> Any:
    """The Softmax sublayer of a MultiHeadAttention (Keras keeps it as ``_softmax``)."""
    return _internal(layer, "_softmax", "a MultiHeadAttention's softmax sublayer")


def public_operations() -> dict[str, type]:
    """Every ``Operation`` subclass a public ``keras.ops`` function can create, by class name.

    The modules behind ``keras.ops`` (``keras.src.ops.numpy``, ``nn``, ``math``, ``core``,
    ``linalg``, ``image``, ...) are the ``__module__`` of the functions ``keras.ops`` and its
    public submodules (``keras.ops.image``) export; listed are the classes those modules
    define that subclass ``keras.Operation`` (a few only as the base of others).

    Example:
    >>> ops = public_operations()
    >>> ops["Relu6"].__module__, issubclass(ops["Add"], keras.Operation)
    ('keras.src.ops.nn', True)
    """
    import sys
    import types

    modules: set[str] = set()
    pending, seen = [keras.ops], {keras.ops.__name__}
    while pending:
        namespace = pending.pop()
        for name in dir(namespace):
            value = getattr(namespace, name)
            if isinstance(value, types.ModuleType):
                if value.__name__.startswith("keras.") and value.__name__ not in seen:
                    seen.add(value.__name__)
                    pending.append(value)
            elif not name.startswith("_") and callable(value):
                module = getattr(value, "__module__", None) or ""
                if module.startswith("keras."):
                    modules.add(module)
    found: dict[str, type] = {}
    for module in sorted(modules):
        for name, value in vars(sys.modules[module]).items():
            if not (isinstance(value, type) and value.__module__ == module):
                continue
            if issubclass(value, keras.Operation) and found.setdefault(name, value) is not value:
                raise KerasInternalsError(f"two keras.ops modules define an operation {name}")
    if not found:
        raise KerasInternalsError(
            f"keras_initlab finds no Operation class behind keras.ops in Keras "
            f"{keras.__version__}. Supported Keras versions: {SUPPORTED_KERAS}."
        )
    return found


@dataclass(frozen=True)
class Trace:
    """The graph of one call of a layer's ``call``, traced on KerasTensors.

    Attributes:
        inputs: the fresh KerasTensors the trace was called on, in the order given.
        outputs: the KerasTensors it returned, flattened.
        calls: its calls (`GraphCall`), every input computed first.
        returned: what ``call`` returned (the nest of ``outputs``).
    """

    inputs: tuple[Any, ...]
    outputs: tuple[Any, ...]
    calls: tuple[GraphCall, ...]
    returned: Any = None


def _unknown(tensors: Any) -> bool:
    """Whether a KerasTensor among ``tensors`` has an unknown size beyond the batch axis."""
    return any(
        isinstance(t, keras.KerasTensor) and None in tuple(t.shape)[1:]
        for t in keras.tree.flatten(tensors)
    )


def _spec_from_call(layer: Any) -> Callable[..., Any]:
    """``layer``'s ``compute_output_spec``, falling back on the base `keras.layers.Layer`'s
    (its ``call`` traced on placeholders) where its own rejects the call's arguments, or
    loses a size its inputs know (``EinsumDense``'s configured ``output_shape`` keeps a
    sequence length None: a later ``reshape`` to the input's shape would lose it)."""
    own = layer.compute_output_spec

    def spec(*args: Any, **kwargs: Any) -> Any:
        try:
            out = own(*args, **kwargs)
        except TypeError:
            return keras.layers.Layer.compute_output_spec(layer, *args, **kwargs)
        if _unknown(out) and not _unknown((args, kwargs)):
            from keras.src.backend import compute_output_spec

            try:  # its call on placeholders (the base Layer's spec reads its output shape)
                return compute_output_spec(layer.call, *args, **kwargs)
            except Exception:  # whatever its call raises on placeholders: its own spec stands
                return out
        return out

    return spec


class ConstantCall(TypeError):
    """A traced call whose outputs do not depend on its inputs' values, only (at most) on
    their shapes: a learned or fixed position embedding. ``values``: the outputs as NumPy
    arrays, computed at the traced shapes."""

    def __init__(self, outputs: tuple[Any, ...]) -> None:
        super().__init__("its output is computed from its inputs' shapes alone")
        self.values = [keras.ops.convert_to_numpy(t) for t in outputs]


@contextlib.contextmanager
def _nodes_without_none() -> Iterator[None]:
    """Within the block, a node Keras records for an operation's call keeps its tensor
    outputs and leaves out ``None`` (``keras.src.ops.node.Node``, private, raises on any
    output that is not a tensor): an operation that returns ``None`` beside its tensors
    (keras_hub's GPT-NeoX attention without a cache: ``(output, None)``) is traced, its
    caller still receiving the ``None``."""
    from keras.src.ops.node import Node

    original = Node.__init__

    def init(
        node: Any,
        operation: Any,
        call_args: Any = None,
        call_kwargs: Any = None,
        outputs: Any = None,
    ) -> None:
        if outputs is not None:
            outputs = [x for x in keras.tree.flatten(outputs) if x is not None]
        original(node, operation, call_args, call_kwargs, outputs)

    setattr(Node, "__init__", init)  # noqa: B010
    try:
        yield
    finally:
        setattr(Node, "__init__", original)  # noqa: B010


@contextlib.contextmanager
def _keras_tensors_defer_to_arrays() -> Iterator[None]:
    """Within the block, an array's operator with a KerasTensor (``array * x``) defers to
    the KerasTensor's (``x.__rmul__``: a Keras operation, recorded), on JAX as on the
    other backends: a JAX array first asks the KerasTensor for ``__jax_array__``, which
    raises, and defers only to an operand without it (keras_hub's Falcon multiplies a JAX
    array of ALiBi slopes by a tensor of its positions). The method is off the class for
    the block."""
    method = vars(keras.KerasTensor).get("__jax_array__")
    if method is None:
        yield
        return
    delattr(keras.KerasTensor, "__jax_array__")
    try:
        yield
    finally:
        setattr(keras.KerasTensor, "__jax_array__", method)  # noqa: B010


def traced_call(layer: Any, inputs: list[Any], args: Any, kwargs: dict[str, Any]) -> Trace:
    """Trace ``layer.call(*args, **kwargs)`` on the KerasTensors ``inputs`` (placed in
    ``args``/``kwargs`` by the caller): every sub-layer and ``keras.ops`` call records a
    node, backend-neutrally, and ``keras.src.ops.function.Function`` orders them as a
    Functional model's. The nodes the trace adds to the layer's sub-layers are taken off
    again (``_inbound_nodes``/``_outbound_nodes``), so the model is left as it was.
    Raises whatever the call raises on KerasTensors (Python control flow on values,
    backend ops): the caller treats the layer as opaque; `ConstantCall` where no output
    depends on the inputs' values. ``None`` among a call's outputs (a cache it does not
    use) is left out of the trace's outputs and nodes. A sub-layer whose own
    ``compute_output_spec`` does not take every argument its ``call`` takes (keras_hub's
    ``CachedMultiHeadAttention``: ``cache=``, on ``MultiHeadAttention``'s spec) gets its
    output spec from its ``call`` on placeholders, as Keras' base ``Layer`` computes it.
    """
    from keras.src.ops.function import Function

    layers = [layer, *all_layers(layer)]
    saved = [
        (lay, name, len(nodes))
        for lay in layers
        for name in ("_inbound_nodes", "_outbound_nodes")
        if isinstance(nodes := getattr(lay, name, None), list)
    ]
    try:
        with contextlib.ExitStack() as stack:
            stack.enter_context(_nodes_without_none())
            stack.enter_context(_keras_tensors_defer_to_arrays())
            for sub in layers[1:]:
                spec = _spec_from_call(sub)
                stack.enter_context(swapped_attribute(sub, "compute_output_spec", spec))
            returned = layer.call(*args, **kwargs)
        outputs = tuple(t for t in keras.tree.flatten(returned) if t is not None)
        if outputs and not any(isinstance(t, keras.KerasTensor) for t in outputs):
            raise ConstantCall(outputs)
        if not outputs or not all(isinstance(t, keras.KerasTensor) for t in outputs):
            raise TypeError("its output is not computed from its inputs")
        graph = Function(list(inputs), list(outputs))
        calls = tuple(functional_calls(graph))
    finally:
        for lay, name, n in saved:
            del getattr(lay, name)[n:]
    # The trace's operations are new objects whose automatic names count every operation
    # ever made; name them by class and order within this call, so a name is the same at
    # every trace ("block3/add").
    counts: dict[str, int] = {}
    for call in calls:
        if not isinstance(call.operation, keras.layers.Layer):
            base = re.sub(r"(?<!^)(?=[A-Z])", "_", type(call.operation).__name__).lower()
            n = counts[base] = counts.get(base, -1) + 1
            call.operation.name = base if n == 0 else f"{base}_{n}"
    return Trace(tuple(inputs), outputs, calls, returned)


def application_layers() -> dict[str, type]:
    """The custom layer classes of Keras' application code that the layer registry covers
    (``keras.src.applications``: ConvNeXt's ``LayerScale`` and ``StochasticDepth``), by
    class name; those a Keras release lacks are left out. (Inception-ResNet's
    ``CustomScaleLayer`` needs no entry: its ``call`` is traced.)"""
    try:
        from keras.src.applications import convnext
    except ImportError:
        return {}
    names = ("LayerScale", "StochasticDepth")
    return {n: getattr(convnext, n) for n in names if hasattr(convnext, n)}
