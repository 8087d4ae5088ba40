"""AutoInit: signal-preserving initialization from the propagated moments of the graph.

``initialize(model, "auto")`` (or ``autoinit(model)``) draws every kernel from LeCun normal
on its true fans (``keras_initlab.initialize``: ``Var(W) = 1 / fan_in``, biases from the
layer's own initializer), then walks the graph once in execution order with the rules of
``keras_initlab.propagate``. Just before a kernel layer's rule runs, the walk knows the
moments of the input the layer is about to receive, and multiplies its kernel by the ``c``
that gives the layer's output the target variance ``T`` (``input_var``), so that every
layer after it sees the rescaled signal: one pass, ``O(layers)`` (Bingham and Miikkulainen
2022, "AutoInit: Analytic Signal-Preserving Weight Initialization for Neural Networks";
this is an implementation of the idea on this package's rules, not of their code).

For a Dense or conv layer on inputs of mean ``m`` and variance ``v`` (``E[x^2] = m^2 + v``)
the result is, in expectation over the draw,

    Var(W) = T' / (fan_in * E[x^2])

on the layer's true fans (depthwise, separable: the pointwise kernel, transposed, grouped,
EinsumDense), where ``T'`` is the pre-activation variance that makes the variance of what
follows equal ``T``: the layer's own activation, or an activation layer reached through
BatchNormalization (inference mode) and dropout layers. For a ReLU ``T' = T / (1/2 -
1/(2 pi)) = 2.93 T``, so the *post*-activation variance is preserved; the rule is solved on
the actual moments (per channel and border position, a conv's ``same`` padding included),
not on this closed form (``_solve``). Bounded activations (tanh, sigmoid), which cannot
reach ``T``, get ``T' = T``.

* **Residual sums** (``keras_initlab.residual_blocks``): the identity skip carries the
  stream unchanged, so sums can only add variance. Each of the ``n`` residual branches that
  add to one stream (a projection shortcut starts a new one) gets ``f T`` at its output (its
  last kernel), ``f = (sqrt(1 + 4 n) - 1) / (2 n)``, so the stream goes from ``T`` to ``T /
  f``: the branch ends and the stream's end equally far from ``T`` on a log scale, within
  ``[T/4, 4 T]``; a stream of more than 11 sums, which cannot keep both there, gets ``f =
  1/n`` and stays within ``2 T`` (``_plan``); a branch is still alive (a zero-initialized
  branch would start with no gradient through its earlier layers' sum). Sums AutoInit
  cannot resolve as residual keep ``T`` per input (``n T``).
* **Gates.** A kernel whose activation is bounded with ``f(0) != 0`` (sigmoid, hard
  sigmoid), its own or an activation layer's after affine layers, and whose output
  multiplies another tensor (a ``Multiply`` layer or ``keras.ops.multiply``: a
  squeeze-and-excitation gate) gets a pre-activation variance of ``GATE_VAR = 0.1``, not
  the target: the gate starts near ``f(0)`` for every sample. At unit variance a gate
  passes more of a sample the larger that sample is (``E[e^2]`` has elasticity 0.2 in the
  sample's scale for a sigmoid, 0.024 at ``GATE_VAR``), and over a stack of gated blocks
  the samples' energies spread apart: EfficientNetB1's standard deviation of log per-sample
  energy at ``block6d_add`` goes from 3.6 to 1.6 (``_solve.solve_gate``). The gated
  product then has about ``f(0)^2 = 1/4`` of the other operand's variance, so the operand
  (a kernel whose output, or whose activation's, multiplies such a gate) gets the variance
  that puts the chain's two ends equally far inside the band: its pre-activation times
  the product's variance is ``T^2`` (before a SiLU layer: output 1.16 ``T``,
  pre-activation 3.4 ``T``, product 0.30 ``T``; with its own activation, whose
  pre-activation no layer outputs, about ``2 T`` and ``T/2``; ``_solve.solve_operand``).
  At the target the product sat at ``T/4``, on the band's edge: EfficientNetV2M's and
  V2L's ``se_excite`` rows measured 0.23-0.25.
* **Expansive activations: the target holds on average, not for each sample.** The
  variance AutoInit sets is the mean over samples. One sample whose scale is ``s`` times
  the others' reaches a layer ``s^2``-fold in mean square and leaves its activation
  ``s^(2 slope)``-fold (`AutoInitRow.slope`, the elasticity of ``E[f^2]``; the next kernel
  passes mean squares on), whatever the kernel's scale. A rectifier has slope 1, ELU,
  SELU, tanh and softplus below 1 (they pull the samples together); SiLU (1.10-1.17),
  GELU, hard swish and mish above 1, so along a chain of them with nothing that
  normalizes each sample in between (LayerNormalization does; BatchNormalization in
  inference mode does not) the samples' scales spread apart geometrically: every scale's
  fixed point is unstable, and no data-free kernel scale holds the target for every
  sample (a bias variance, which does not scale with the sample, is what makes such a
  fixed point stable: Poole et al. 2016, Hayou et al. 2019). The report flags those
  kernels (``AutoInitReport.expansive``, ``"expansive: slope 1.13"`` in the note); it
  states the activation's property, and whether a chain compounds it is the graph's
  (ConvNeXt's GELUs are flagged, and its LayerNormalizations reset every block).
  Measured (``benchmarks/bench_expansive.py``: 40 Dense layers of width 256, 2048
  Gaussian samples): after SiLU the batch variance at the 37th layer is 49
  (AutoInit predicts 1), the median sample's mean square 0.001 and the standard deviation
  of the log of the samples' mean squares 7.9 (0.19 at the first); GELU 2.0, 0.40 and
  6.1; ReLU 1.00, 1.4 and 0.39; ELU 0.95, 0.99 and 0.19. In EfficientNetB1-B7, whose
  BatchNormalization is the identity in inference mode, the same spread and the drift it
  amplifies put 13-42% of the layers above 4 (a ReLU EfficientNetB1: 0.4-4%).
* **Normalization.** AutoInit targets **inference mode** (what ``measure()``, ``propagate``
  and a model called with ``training=False`` give at initialization): BatchNormalization
  with its moving statistics is an affine map (the identity at initialization) that the
  scales pass through. In training mode it standardizes each channel with its batch
  statistics, so the kernel's scale before it cancels and its output has variance
  ``gamma^2``: the same weights are bounded in both modes. LayerNormalization resets the
  variance of each position in both modes; the next kernel reads its output's moments.
  Normalization weights are not changed.
* **MultiHeadAttention**: the query and key projections get unit variance (attention
  logits of unit variance, whatever ``input_var``), the value projection ``T``, the output
  projection ``T`` (or the residual share) from the attended values the attention rule
  predicts.

* **Embedding**: its own draw (the table has no fan-in) scaled so that the lookup's output has
  the target, as a kernel with no activation; a table that can be called reversed as the
  output projection (its ``call`` takes ``reverse``: keras_hub's ``ReversibleEmbedding``)
  keeps its draw, since its scale is the logits' too (an embedding at std 1 with tied
  logits makes the initial logits' std ``sqrt(d)`` times the final features').
* **A custom layer's own kernel**: where a ``keras.ops`` contraction in its traced call reads
  it with a tensor (``x @ self.w``), the contraction's output is brought to the target.

Layers with kernels the walk does not scale (recurrent layers, a layer inside one the walk
reads as a whole, such as a block whose ``call`` it cannot trace) keep the LeCun draw, and
a tied embedding table keeps its layer's own draw. The report says so for every kernel
(`AutoInitRow.kernel`: ``"scaled"``, ``"drawn"``, ``"kept"``): a kernel inside a layer read
as a whole gets a row of its own after that layer's, with its std and no moments.

Example:
>>> import keras, keras_initlab
>>> model = keras.Sequential([keras.Input((32,)),
...     keras.layers.Dense(32, activation="relu", name="d0"),
...     keras.layers.Dense(32, activation="relu", name="d1")])
>>> report = keras_initlab.initialize(model, "auto", seed=0, report=True)
>>> [round(r.activation_var, 3) for r in report]
[1.0, 1.0]
"""

from keras_initlab.autoinit._algorithm import AutoInit, autoinit
from keras_initlab.autoinit._report import AutoInitReport, AutoInitRow
from keras_initlab.autoinit._solve import MAX_PRE as MAX_PRE

__all__ = ["AutoInit", "AutoInitReport", "AutoInitRow", "autoinit"]
