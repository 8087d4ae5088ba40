"""The devices a property runs on: every CPU and GPU the Keras backend lists.

A property written as ``for device in each_device(): ...`` runs its body once per device,
under that device's scope, so a GPU machine runs every check on the GPU as well. The scope is
Keras' own ``keras.device(name)`` (``tf.device`` on TensorFlow, ``jax.default_device`` on
JAX, the default torch device on PyTorch). The backend library is imported only when a
function here is called, so ``keras_initlab.testing`` imports without TensorFlow.

Device names are the backend's: TensorFlow's logical device names
(``/job:localhost/replica:0/task:0/device:CPU:0``); ``cpu:0`` and ``gpu:0``, ... on JAX and
PyTorch (the strings ``keras.device`` takes; a CUDA device is ``gpu:i``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import keras

DEVICE_TYPES = ("CPU", "GPU")  # device types the properties run on, in this order


def devices() -> list[str]:
    """The names of the CPU and GPU devices of the Keras backend, CPU first.

    Example:
    >>> devices()[0].upper().endswith("CPU:0")
    True
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        found = [d for d in tf.config.list_logical_devices() if d.device_type in DEVICE_TYPES]
        found.sort(key=lambda d: DEVICE_TYPES.index(d.device_type))
        return [d.name for d in found]
    if backend == "jax":
        import jax

        return [
            f"{platform}:{d.id}" for platform in ("cpu", "gpu") for d in _jax_devices(jax, platform)
        ]
    if backend == "torch":
        import torch

        return ["cpu:0"] + [f"gpu:{i}" for i in range(torch.cuda.device_count())]
    raise NotImplementedError(
        f"keras_initlab.testing lists devices on the tensorflow, jax and torch backends. "
        f"Received: backend={backend!r}"
    )


def _jax_devices(jax: Any, platform: str) -> list[Any]:
    """JAX's devices of ``platform``; none when JAX has no such backend."""
    try:
        return list(jax.devices(platform))
    except RuntimeError:  # "Unknown backend gpu" on a machine without one
        return []


def each_device() -> Iterator[str]:
    """Yield each device name of ``devices()`` with ``keras.device(name)`` active.

    Example:
    >>> import keras
    >>> for device in each_device():
    ...     x = keras.ops.ones((2,))
    ...     assert on_device(x, device)
    """
    for name in devices():
        with keras.device(name):
            yield name


def on_device(tensor: Any, name: str) -> bool:
    """Whether ``tensor`` lives on the device ``name`` (type and index).

    Example:
    >>> import keras
    >>> on_device(keras.ops.ones((2,)), devices()[0])
    True
    """
    want = _type_and_index(name)
    backend = keras.backend.backend()
    if backend == "tensorflow":
        return _type_and_index(tensor.device) == want
    if backend == "jax":
        return {(d.platform.upper(), d.id) for d in tensor.devices()} == {want}
    device = tensor.device  # torch
    return (device.type.upper().replace("CUDA", "GPU"), device.index or 0) == want


def _type_and_index(name: str) -> tuple[str, int]:
    """``("CPU", 0)`` for ``cpu:0``, ``cpu``, ``/device:CPU:0`` and TensorFlow's full names."""
    last = name.rsplit("/", 1)[-1].removeprefix("device:").upper().replace("CUDA", "GPU")
    kind, _, index = last.partition(":")
    return kind, int(index or 0)
