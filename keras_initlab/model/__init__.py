"""The one home for reading a Keras model: what each layer and operation is, and the graph.

Every feature (``initialize``, ``audit``, ``lsuv``, ``propagate``, ``measure``, AutoInit,
the residual rules, the depth rule's main path, the alerts and the plots) asks these
modules what a layer is; none keeps a class list of its own
(``tests/model_reading/test_classification.py`` checks it).

* ``layers``: one table per question a feature asks of a layer (does it hold a kernel and
  with which layout, is it an activation, a normalization, a merge, a one-off change, a
  known container...), every class of ``keras.layers`` classified or listed as not covered.
* ``operations``: the same for every ``keras.ops`` operation a graph can record.
* ``trace``: the graph inside a subclassed layer or model, traced on KerasTensors, so a
  user's residual block is read like a Functional graph, on every backend.
* ``registry``: what a custom layer is, as its user tells it (`register_layer`), with
  built-in entries for the custom layers of Keras' own model code.
* ``tree``: the layers of a model as a tree, and the one name the package gives a layer
  (its path, ``"encoder/block_1/dense"``).
* ``weights``: every kernel, recurrent kernel, embedding and bias with its true layout.
* ``path``: the main path of a model's graph (the depth rule judges it).
* ``resets``: whether a layer no table classifies (keras_hub's RMS norms) resets the scale
  of its input, read from what it computes.
* ``residual``: the residual blocks (skip and branch of every residual sum).
* ``legacy``: Keras 2 (tf_keras) objects told apart by their classes' modules and refused
  (`check_not_keras2`), with what works there instead.

``propagate``'s walk and ``measure``'s selection read a model through these.
"""
