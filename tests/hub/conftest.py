"""keras_hub's models are tested where keras_hub is installed (the ``hub`` extra, in the
README's set-up: CI's newest-Keras TensorFlow environment, which checks that it imports).
keras_hub needs Keras >= 3.15, so the oldest-Keras environment and the JAX and PyTorch
environments, which do not install it, do not collect these tests."""

import importlib.util

collect_ignore_glob = [] if importlib.util.find_spec("keras_hub") else ["test_*.py", "models.py"]
