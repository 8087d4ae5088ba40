"""The logical devices a property runs on: every CPU and GPU TensorFlow lists.

This is the one TensorFlow-specific module of ``keras_initlab.testing``: it places work with
``tf.device``. A property written as ``for device in each_device(): ...`` runs its body once
per device, under that device's scope, so a GPU machine runs every check on the GPU as well.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import tensorflow as tf

DEVICE_TYPES = ("CPU", "GPU")  # logical device types the properties run on


def devices() -> list[str]:
    """The names of the logical CPU and GPU devices, CPU first.

    Example:
    >>> devices()[0].endswith("CPU:0")
    True
    """
    found = [d for d in tf.config.list_logical_devices() if d.device_type in DEVICE_TYPES]
    return [d.name for d in sorted(found, key=lambda d: DEVICE_TYPES.index(d.device_type))]


def each_device() -> Iterator[str]:
    """Yield each device name of ``devices()`` with ``tf.device(name)`` active.

    Example:
    >>> import keras
    >>> for device in each_device():
    ...     x = keras.ops.ones((2,))
    ...     assert on_device(x, device)
    """
    for name in devices():
        with tf.device(name):
            yield name


def on_device(tensor: Any, name: str) -> bool:
    """Whether ``tensor`` lives on the device ``name`` (type and index)."""
    have = tf.DeviceSpec.from_string(tensor.device)
    want = tf.DeviceSpec.from_string(name)
    return (have.device_type, have.device_index) == (want.device_type, want.device_index)
