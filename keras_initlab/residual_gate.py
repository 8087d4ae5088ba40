"""``ResidualGate``: a learnable scalar that multiplies a residual branch (SkipInit).

SkipInit (De and Smith 2020, "Batch normalization biases residual blocks towards the
identity function in deep networks") puts one learnable scalar ``alpha`` at the end of each
residual branch, ``y = x + alpha * f(x)``, initialized to 0, so that every block starts as
the identity and deep unnormalized networks train. A Keras 3 graph has no such weight unless
the model holds one: this layer is it. Put it last on each branch, right before the Add;
``initialize(model, scheme, residual="skipinit")`` sets every gate to 0 (and finds the
gates a model already has: a BatchNormalization or ConvNeXt's LayerScale ending a branch).
"""

from __future__ import annotations

from typing import Any

import keras

from keras_initlab._validation import check_finite

__all__ = ["ResidualGate"]


@keras.saving.register_keras_serializable(package="keras_initlab")
class ResidualGate(keras.layers.Layer):
    """Multiply the input by one learnable scalar: ``y = alpha * x``.

    Args:
        initial_value: the value of ``alpha`` when the layer is built; 0 is SkipInit's
            (the branch starts switched off).
        **kwargs: base layer arguments (``name``, ``dtype``, ``trainable``).

    Example:
    >>> import keras
    >>> x = keras.Input((4,))
    >>> branch = ResidualGate(name="gate")(keras.layers.Dense(4)(x))
    >>> model = keras.Model(x, keras.layers.Add()([x, branch]))
    >>> float(model.get_layer("gate").alpha.numpy())
    0.0
    """

    def __init__(self, initial_value: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.initial_value = check_finite("initial_value", initial_value)
        self.alpha: Any = None

    def build(self, input_shape: Any) -> None:
        self.alpha = self.add_weight(
            shape=(),
            initializer=keras.initializers.Constant(self.initial_value),
            trainable=True,
            name="alpha",
        )

    def call(self, inputs: Any) -> Any:
        return inputs * keras.ops.cast(self.alpha, inputs.dtype)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "initial_value": self.initial_value}
