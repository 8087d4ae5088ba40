"""LSUV: layer-sequential unit-variance initialization (Mishkin & Matas 2015).

``lsuv(model, x)`` gives every Dense, EinsumDense, ConvND, ConvNDTranspose, DepthwiseConvND
and SeparableConvND layer of a built model an orthonormal kernel, then walks those layers in
the order the forward pass calls them and rescales each kernel until the variance of the
layer's own output on the batch ``x`` is within ``tol`` of 1:

    z_l = W_l * h_(l-1) + b_l              (the layer's output, before any fused activation)
    W_l <- W_l / sqrt(Var(z_l))            until |Var(z_l) - 1| <= tol, or max_iter times

``Var`` is the population variance over every element of the batch output (all samples,
positions and channels). With ``center=True`` the bias is also set so that every channel of
``z_l`` has mean 0 on ``x``.

**Pre-activation, for fused activations.** For ``Dense(64, activation="relu")`` LSUV
normalizes ``z_l``, the output *before* the activation, for three reasons:

* it makes ``Dense(64, activation="relu")`` and ``Dense(64)`` followed by
  ``Activation("relu")`` the same network with the same initialization (with a separate
  activation layer the Dense layer's own output is the pre-activation);
* unit variance after the activation is unreachable for bounded activations (the output of
  a sigmoid has variance at most 1/4, of a tanh less than 1), so a post-activation target
  would fail or saturate exactly where initialization matters most;
* the kernel scale acts linearly on ``z_l`` (``Var(s z) = s**2 Var(z)``), so one rescaling
  reaches the target up to rounding and every iteration is one forward pass.

**Cost.** The model is called once inside a single ``tf.function`` that returns, for every
LSUV layer, the variance and channel means of its output (scalars and one small vector per
layer, reduced on the device). It is traced once per ``lsuv`` call and then run once per
iteration: about ``1 + number of layers`` compiled forward passes in all, no model is
rebuilt, and nothing is kept after the call (the layers' ``call`` is wrapped only while
``lsuv`` runs). On backends other than TensorFlow the same function runs eagerly.

**Failure.** A layer whose output is all zeros (a dead ReLU before it, an all-zero input)
or not finite cannot be normalized: it keeps finite weights, its row of the report says
why, and an ``LSUVWarning`` names it. Bad arguments (x of the wrong shape, an empty x, an
unbuilt model) raise before anything is assigned; any error during the iterations restores
every weight ``lsuv`` had touched.

Layers LSUV does not normalize (Embedding, recurrent cells, normalization layers, custom
layers' own weights) keep their weights; the report lists every such weighted layer under
``skipped``, with the reason in ``skip_reasons``.

**Unbuilt models.** LSUV is given data, so a model that is not built yet (a Sequential
without an ``Input``) is built by calling it once on ``x``.

Reference: D. Mishkin and J. Matas, "All you need is a good init", ICLR 2016
(arXiv:1511.06422).
"""

from keras_initlab.lsuv._algorithm import DEFAULT_MAX_ITER as DEFAULT_MAX_ITER
from keras_initlab.lsuv._algorithm import DEFAULT_TOL as DEFAULT_TOL
from keras_initlab.lsuv._algorithm import lsuv
from keras_initlab.lsuv._report import STATUSES as STATUSES
from keras_initlab.lsuv._report import LSUVLayer, LSUVReport, LSUVWarning
from keras_initlab.lsuv._scheme import LSUV
from keras_initlab.lsuv._targets import LSUV_LAYERS as LSUV_LAYERS

__all__ = ["LSUV", "LSUVLayer", "LSUVReport", "LSUVWarning", "lsuv"]
