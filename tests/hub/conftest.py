"""keras_hub's models are tested where keras_hub is installed: CI's newest-Keras TensorFlow
environment (the ``hub`` extra, in the README's set-up, which CI checks imports) and its JAX
environment (the README's "Other backends" line: keras-hub without its TensorFlow
dependencies, ``hub-jax``). keras_hub needs Keras >= 3.15, so the oldest-Keras environment
does not install it, and the PyTorch environment does not either: neither collects these
tests."""

import importlib.util

collect_ignore_glob = [] if importlib.util.find_spec("keras_hub") else ["test_*.py", "models.py"]
