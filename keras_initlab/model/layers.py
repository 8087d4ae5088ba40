"""What each Keras layer is: one table per question a feature asks of a layer.

Every module of the package that needs to know what a layer does asks here; none keeps its
own class list (``tests/model_reading/test_classification.py`` checks both: every class
``keras.layers`` exports is in a table below or in `NOT_COVERED` with the reason, and no
module outside ``keras_initlab/model/`` names a ``keras.layers`` class in an ``isinstance``
check or a class tuple). The tables are built from class *names* for the installed Keras,
so a class a Keras release lacks (``RMSNormalization`` before 3.9) is left out, and a
subclass of a listed class (keras_hub's ``ReversibleEmbedding`` of ``Embedding``) is what
its base is. A layer a user defines is read through its traced ``call``
(`keras_initlab.model.trace`) or told through `keras_initlab.register_layer`.

The questions:

* **Kernels** (`DENSE`, `EINSUM_DENSE`, `CONVS`, `TRANSPOSED_CONVS`, `DEPTHWISE_CONVS`,
  `SEPARABLE_CONVS`, `EMBEDDINGS`, `RECURRENT_GATES`): which layers hold a kernel, and its
  layout (the layout gives the true fans, `keras_initlab.fans`). `KERNEL_LAYERS`: the
  feed-forward kernels whose output variance a scale sets (LSUV, AutoInit).
* **Recurrent** (`RECURRENT`, `RNN`): whole recurrent layers; `RNN` is walked as one layer.
* **Activations** (`ACTIVATION_LAYERS`, `ACTIVATION_NAMES`): separate activation layers and
  the function each applies.
* **Normalizations** (`NORMALIZATION_LAYERS`: their weights are not kernels;
  `ALWAYS_NORMALIZING`: they reset their output's scale in any mode; `BATCH_NORMALIZATION`:
  only in training mode).
* **Merges** (`MERGE_LAYERS`; `SUMS`: the residual sum).
* **One-off changes** (`ONE_OFF_LAYERS`): pooling, re-layout, padding, cropping, upsampling,
  dropout and noise: they change a variance where they sit, not per layer of depth.
* **Pass-throughs at initialization** (`PASS_THROUGH`): elementwise affine maps in
  inference mode (AutoInit looks past them to the activation that follows a kernel).
* **Per position** (`PER_POSITION`): a gradient common to all positions stays common.
* **Known containers** (`KNOWN_CONTAINERS`): layers holding sub-layers as parts of one
  known computation (attention, RNN wrappers), not a hidden graph.
* The propagation rules' groups (`POOLING_*`, `RELAYOUT`, `PADDING`, `CROPPING`,
  `UPSAMPLING`, `DROPOUT`, `UNCHANGED`, ...).

Example:
>>> import keras
>>> isinstance(keras.layers.Conv2D(4, 3), CONVS), isinstance(keras.layers.Add(), SUMS)
(True, True)
>>> ACTIVATION_NAMES[keras.layers.ReLU]
'relu'
"""

from __future__ import annotations

from typing import Any

import keras

from keras_initlab._keras import child_layers, is_functional

__all__ = [
    "ACTIVATION_LAYERS",
    "ACTIVATION_NAMES",
    "ALWAYS_NORMALIZING",
    "ATTENTION",
    "AVERAGE",
    "BATCH_NORMALIZATION",
    "BIDIRECTIONAL",
    "CONCATENATE",
    "CONVS",
    "CROPPING",
    "DENSE",
    "DEPTHWISE_CONVS",
    "DROPOUT",
    "EINSUM_DENSE",
    "EMBEDDINGS",
    "GAUSSIAN_DROPOUT",
    "GAUSSIAN_NOISE",
    "GROUP_NORMALIZATION",
    "INPUT_LAYER",
    "INPUT_NORMALIZATION",
    "KERNEL_LAYERS",
    "KNOWN_CONTAINERS",
    "LAYER_NORMALIZATION",
    "LSTM_CELLS",
    "MERGE_LAYERS",
    "MULTIPLY",
    "NORMALIZATION_LAYERS",
    "NOT_COVERED",
    "ONE_OFF_LAYERS",
    "PADDING",
    "PASS_THROUGH",
    "PERMUTE",
    "PER_POSITION",
    "POOLING_AVERAGE",
    "POOLING_GLOBAL_AVERAGE",
    "POOLING_GLOBAL_MAXIMUM",
    "POOLING_MAXIMUM",
    "RECURRENT",
    "RECURRENT_GATES",
    "RELAYOUT",
    "REPEAT_VECTOR",
    "RESCALING",
    "RMS_NORMALIZATION",
    "RNN",
    "SEPARABLE_CONVS",
    "SUBTRACT",
    "SUMS",
    "TRANSPOSED_CONVS",
    "UNCHANGED",
    "UPSAMPLING",
    "activation_kind",
    "activation_name",
    "classified",
    "is_opaque",
    "is_sum",
    "score_inputs",
    "score_sublayers",
]


def _present(*names: str) -> tuple[Any, ...]:
    """The ``keras.layers`` classes of ``names`` that the installed Keras has."""
    return tuple(getattr(keras.layers, n) for n in names if hasattr(keras.layers, n))


def _nd(*stems: str, dims: tuple[int, ...] = (1, 2, 3)) -> tuple[str, ...]:
    """``"Conv"`` -> ``("Conv1D", "Conv2D", "Conv3D")``; a stem may hold ``{}`` for the rank."""
    return tuple((s if "{}" in s else s + "{}D").format(d) for s in stems for d in dims)


# ---------------------------------------------------------------- kernels and their layouts
DENSE = _present("Dense")
EINSUM_DENSE = _present("EinsumDense")
CONVS = _present(*_nd("Conv"))
TRANSPOSED_CONVS = _present(*_nd("Conv{}DTranspose"))
DEPTHWISE_CONVS = _present(*_nd("DepthwiseConv", dims=(1, 2)))
SEPARABLE_CONVS = _present(*_nd("SeparableConv", dims=(1, 2)))
EMBEDDINGS = _present("Embedding")
# Recurrent cells and their gates (each gate's kernel is a slice with its own fans).
RECURRENT_GATES: dict[Any, int] = {
    c: g for c, g in zip(_present("LSTMCell", "GRUCell", "SimpleRNNCell"), (4, 3, 1), strict=True)
}
LSTM_CELLS = _present("LSTMCell")  # unit_forget_bias: the forget gate's bias starts at 1
KERNEL_LAYERS = (
    *DENSE,
    *EINSUM_DENSE,
    *CONVS,
    *TRANSPOSED_CONVS,
    *DEPTHWISE_CONVS,
    *SEPARABLE_CONVS,
)
ATTENTION = _present("MultiHeadAttention")

# ---------------------------------------------------------------- recurrent
RECURRENT = _present("SimpleRNN", "LSTM", "GRU")
RNN = _present("RNN")  # every recurrent layer: walked and measured as one
BIDIRECTIONAL = _present("Bidirectional")

# ---------------------------------------------------------------- activations
ACTIVATION_NAMES: dict[Any, str] = dict(
    zip(
        _present("ReLU", "LeakyReLU", "ELU", "PReLU", "Softmax"),
        ("relu", "leaky_relu", "elu", "prelu", "softmax"),
        strict=True,
    )
)
_ACTIVATION = _present("Activation")
ACTIVATION_LAYERS = (*_ACTIVATION, *ACTIVATION_NAMES)

# ---------------------------------------------------------------- normalizations
BATCH_NORMALIZATION = _present("BatchNormalization")
LAYER_NORMALIZATION = _present("LayerNormalization")
RMS_NORMALIZATION = _present("RMSNormalization")
GROUP_NORMALIZATION = _present("GroupNormalization")
# Normalization layers: their scales, offsets and statistics are not kernels.
NORMALIZATION_LAYERS = (
    *BATCH_NORMALIZATION,
    *LAYER_NORMALIZATION,
    *GROUP_NORMALIZATION,
    *_present("UnitNormalization"),
    *RMS_NORMALIZATION,
    *_present("SpectralNormalization"),
)
# They set their output's scale whatever their input's, in any mode.
ALWAYS_NORMALIZING = (
    *LAYER_NORMALIZATION,
    *GROUP_NORMALIZATION,
    *RMS_NORMALIZATION,
    *_present("UnitNormalization"),
)
INPUT_NORMALIZATION = _present("Normalization")  # fixed statistics adapted to data
RESCALING = _present("Rescaling")

# ---------------------------------------------------------------- merges
SUMS = _present("Add")
SUBTRACT = _present("Subtract")
AVERAGE = _present("Average")
MULTIPLY = _present("Multiply")
CONCATENATE = _present("Concatenate")
MERGE_LAYERS = (
    *SUMS,
    *SUBTRACT,
    *MULTIPLY,
    *AVERAGE,
    *_present("Maximum", "Minimum"),
    *CONCATENATE,
    *_present("Dot"),
)

# ---------------------------------------------------------------- structure
POOLING_AVERAGE = _present(*_nd("AveragePooling"))
POOLING_MAXIMUM = _present(*_nd("MaxPooling"))
POOLING_GLOBAL_AVERAGE = _present(*_nd("GlobalAveragePooling"))
POOLING_GLOBAL_MAXIMUM = _present(*_nd("GlobalMaxPooling"))
PERMUTE = _present("Permute")
RELAYOUT = (*_present("Flatten", "Reshape"), *PERMUTE)
REPEAT_VECTOR = _present("RepeatVector")
PADDING = _present(*_nd("ZeroPadding"))
CROPPING = _present(*_nd("Cropping"))
UPSAMPLING = _present(*_nd("UpSampling"))
DROPOUT = _present("Dropout", *_nd("SpatialDropout"))
GAUSSIAN_DROPOUT = _present("GaussianDropout")
GAUSSIAN_NOISE = _present("GaussianNoise")
ALPHA_DROPOUT = _present("AlphaDropout")
UNCHANGED = _present("Identity", "Masking", "ActivityRegularization", "InputLayer")
INPUT_LAYER = _present("InputLayer")

# Weightless layers that move, reduce or repeat values: their change of a variance happens
# once where they sit, not once per layer of depth; and noise that training adds and
# inference removes (dropout scales the kept values by 1 / (1 - rate), which inflates the
# second moment at every dropout layer in training mode, x1.43 at rate 0.3, without
# changing the signal the weights carry).
ONE_OFF_LAYERS = (
    *POOLING_AVERAGE,
    *POOLING_MAXIMUM,
    *POOLING_GLOBAL_AVERAGE,
    *POOLING_GLOBAL_MAXIMUM,
    *UPSAMPLING,
    *PADDING,
    *CROPPING,
    *RELAYOUT,
    *REPEAT_VECTOR,
    *DROPOUT,
    *GAUSSIAN_DROPOUT,
    *GAUSSIAN_NOISE,
    *ALPHA_DROPOUT,
)
# Elementwise affine maps at initialization in inference mode (the mode AutoInit targets).
PASS_THROUGH = (
    *BATCH_NORMALIZATION,
    *DROPOUT,
    *GAUSSIAN_NOISE,
    *GAUSSIAN_DROPOUT,
    *ALPHA_DROPOUT,
    *_present("ActivityRegularization"),
)
# Layers that act on each position alone with the same map at every position: a gradient
# common to all positions stays common (PReLU's slopes differ per position: not listed).
PER_POSITION = (
    *DENSE,
    *EINSUM_DENSE,
    *LAYER_NORMALIZATION,
    *BATCH_NORMALIZATION,
    *SUMS,
    *SUBTRACT,
    *AVERAGE,
    *DROPOUT,
    *_present("Activation", "ReLU", "LeakyReLU", "ELU"),
    *RESCALING,
    *ATTENTION,  # its value path averages a common gradient into a common one
)
# Layers that hold sub-layers as parts of one known computation, not a hidden graph.
# A wrapper that calls its layer on each step of the first axis after the batch.
TIME_DISTRIBUTED = _present("TimeDistributed")
KNOWN_CONTAINERS = (*ATTENTION, *RNN, *BIDIRECTIONAL, *TIME_DISTRIBUTED)

# ---------------------------------------------------------------- not covered
_PREPROCESSING = "preprocessing or augmentation: runs on the data, not part of the network"
NOT_COVERED: dict[str, str] = {
    **{
        name: _PREPROCESSING
        for name in (
            "AugMix",
            "AutoContrast",
            "CategoryEncoding",
            "CenterCrop",
            "ContrastLimitedAdaptiveHistogramEqualization",
            "CutMix",
            "Discretization",
            "Equalization",
            "HashedCrossing",
            "Hashing",
            "IntegerLookup",
            "MaxNumBoundingBoxes",
            "MelSpectrogram",
            "MixUp",
            "Pipeline",
            "RandAugment",
            "Resizing",
            "STFTSpectrogram",
            "Solarization",
            "StringLookup",
            "TextVectorization",
            *(n for n in dir(keras.layers) if n.startswith("Random")),
        )
    },
    **{
        name: "adaptive pooling: windows depend on the input size; no rule yet"
        for name in _nd("AdaptiveAveragePooling") + _nd("AdaptiveMaxPooling")
    },
    "AdditiveAttention": "dot-product attention layer without projections: no rule yet",
    "Attention": "dot-product attention layer without projections: no rule yet",
    "GroupedQueryAttention": "grouped-query attention: no rule yet (its projections are "
    "EinsumDense kernels, read for fans)",
    "Lambda": "an arbitrary function: read through its traced call",
    "Layer": "the base class: a user's layer is read through its traced call or registry",
    "Wrapper": "the base class of wrappers",
    "StackedRNNCells": "cells stacked inside an RNN: the RNN is read as a whole",
    "JaxLayer": "a JAX function: opaque to the other backends",
    "FlaxLayer": "a Flax module: opaque to the other backends",
    "TorchModuleWrapper": "a PyTorch module: opaque to the other backends",
    "TFSMLayer": "a TensorFlow SavedModel: opaque",
    "InputSpec": "not a layer",
}


def is_sum(operation: object) -> bool:
    """Whether ``operation`` is an elementwise sum of tensors: an ``Add`` layer, or the
    ``keras.ops`` ``Add`` operation a graph records for ``x + y``.

    Example:
    >>> import keras
    >>> is_sum(keras.layers.Add()), is_sum(keras.layers.Dense(2))
    (True, False)
    """
    if isinstance(operation, SUMS):
        return True
    return not isinstance(operation, keras.layers.Layer) and type(operation).__name__ == "Add"


def score_inputs(operation: object, inputs: list[Any]) -> list[Any]:
    """The inputs of ``operation`` whose values reach its output only through attention
    scores (a softmax of their products): all of a softmax's (the layer, an ``Activation``
    holding it, ``keras.ops.softmax``), the query and key of ``keras.ops``'
    ``dot_product_attention``; none of any other operation's.

    Example:
    >>> import keras
    >>> score_inputs(keras.layers.Softmax(), ["scores"]), score_inputs(keras.layers.ReLU(), ["x"])
    (['scores'], [])
    """
    name = type(operation).__name__
    if isinstance(operation, keras.layers.Layer):
        softmax = activation_kind(operation) is not None and activation_name(operation) == "softmax"
        return list(inputs) if softmax else []
    if name == "Softmax":
        return list(inputs)
    return list(inputs[:2]) if name == "DotProductAttention" else []


def score_sublayers(layer: Any) -> tuple[Any, ...]:
    """The sub-layers of a known attention layer that project its attention scores' operands
    (``MultiHeadAttention`` and its subclasses: the query and key projections), or ().

    Example:
    >>> import keras
    >>> attention = keras.layers.MultiHeadAttention(2, 4)
    >>> attention.build((None, 3, 8), (None, 3, 8))
    >>> [sub.name for sub in score_sublayers(attention)]
    ['query', 'key']
    """
    if isinstance(layer, ATTENTION):
        return (layer.query_dense, layer.key_dense)
    return ()


def is_opaque(layer: Any) -> bool:
    """Whether ``layer`` hides its graph: a subclassed model, or a custom layer that holds
    sub-layers (not one of `KNOWN_CONTAINERS`). Its graph is read through its traced
    ``call`` (`keras_initlab.model.trace`) where the trace succeeds.

    Example:
    >>> import keras
    >>> is_opaque(keras.layers.Dense(2)), is_opaque(keras.layers.MultiHeadAttention(2, 4))
    (False, False)
    """
    if not isinstance(layer, keras.layers.Layer):
        return False  # a keras.ops call
    if isinstance(layer, keras.Sequential) or is_functional(layer):
        return False
    if isinstance(layer, keras.Model):
        return True
    return not isinstance(layer, KNOWN_CONTAINERS) and bool(child_layers(layer))


def activation_kind(layer: Any) -> str | None:
    """What an activation layer applies: its function's name for the layers of
    `ACTIVATION_NAMES` (``"relu"``, ``"leaky_relu"``, ``"elu"``, ``"prelu"``,
    ``"softmax"``), ``"activation"`` for ``keras.layers.Activation`` (the function it holds),
    None for any other layer.

    Example:
    >>> import keras
    >>> [activation_kind(x) for x in (keras.layers.ReLU(), keras.layers.Activation("tanh"))]
    ['relu', 'activation']
    """
    for cls, name in ACTIVATION_NAMES.items():
        if isinstance(layer, cls):
            return name
    return "activation" if isinstance(layer, _ACTIVATION) else None


def activation_name(layer: Any) -> str | None:
    """The name of the function applied last by ``layer`` (``"relu"``, ``"tanh"``,
    ``"softmax"``, ...): an activation layer's (`activation_kind`), else the function its
    ``activation`` holds (a recurrent layer's cell's), else None.

    Example:
    >>> import keras
    >>> [activation_name(x) for x in (keras.layers.Softmax(), keras.layers.Dense(2, "tanh"))]
    ['softmax', 'tanh']
    """
    kind = activation_kind(layer)
    if kind not in (None, "activation"):
        return kind
    owner = layer.cell if isinstance(layer, RNN) and hasattr(layer, "cell") else layer
    name = getattr(getattr(owner, "activation", None), "__name__", None)
    return str(name) if name is not None else None


def classified(cls: type) -> str | None:
    """The first table (its name: ``"CONVS"``, ...) that holds ``cls`` or one of its bases,
    or None: what ``isinstance`` against the tables makes of a layer of class ``cls``.

    Example:
    >>> import keras
    >>> classified(keras.layers.Conv2D), classified(keras.layers.Lambda)
    ('CONVS', None)
    """
    for table, value in globals().items():
        if table.lstrip("_").isupper() and table != "NOT_COVERED":
            classes = tuple(value) if isinstance(value, dict | tuple) else ()
            if any(isinstance(c, type) and issubclass(cls, c) for c in classes):
                return table.lstrip("_")
    return None
