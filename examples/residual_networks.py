"""Start a deep residual network without normalization: He alone explodes, `auto` does not.

Each residual sum adds the branch's variance to the stream's. Under He a branch
``Dense(relu(Dense(x)))`` has twice the stream's variance, so 32 blocks grow the stream
about 3**32-fold. ``keras_initlab.residual_blocks`` finds the sums and their branches;
``initialize(model, "auto")`` sets every layer's scale from the predicted propagation so the
stream stays bounded, and ``initialize(model, "he_normal", residual="zero")`` starts each
block as the identity (Goyal et al. 2017). ``keras_initlab.measure`` checks each on data.

Run: python examples/residual_networks.py
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np

import keras_initlab
from keras_initlab.compare.residual import build_residual_mlp

BLOCKS = 32


def stream_growth(model, x):
    """The last residual sum's activation variance over the stem's, measured on ``x``."""
    names = ["stem", f"block_{BLOCKS}_add"]
    records = {r["layer"]: r for r in keras_initlab.measure(model, x, layers=names)}
    return records[names[1]]["activation_var"] / records["stem"]["activation_var"]


if __name__ == "__main__":
    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).standard_normal((256, 64)).astype("float32")
    model = build_residual_mlp(64, 10, blocks=BLOCKS, width=64)
    blocks = keras_initlab.residual_blocks(model)
    print(f"{len(blocks)} residual blocks; the first: {blocks[0]}")
    assert len(blocks) == BLOCKS

    keras_initlab.initialize(model, "he_normal", seed=0)
    he = stream_growth(model, x)
    keras_initlab.initialize(model, "auto", seed=0)
    auto = stream_growth(model, x)
    report = keras_initlab.initialize(model, "he_normal", seed=0, residual="zero", report=True)
    zero = stream_growth(model, x)
    print(
        f"stream growth over {BLOCKS} blocks: he_normal {he:.3g}x, auto {auto:.3g}x, "
        f"he_normal + residual='zero' {zero:.3g}x"
    )
    print(report.residual)
    assert he > 100.0  # ~3**32 in expectation
    assert 1 / 3 <= auto <= 3
    assert zero == 1.0  # x + 0 is x: exactly the stem's variance
