"""The unit roundoff ``u`` of each floating dtype: half the gap between 1 and the next
number, the largest relative error of one rounding (``fl(x) = x (1 + d)``, ``|d| <= u``;
Higham 2002, ch. 2). The measurement's error bounds and propagate's saturation test read
it from here.

Example:
>>> UNIT_ROUNDOFF["float32"] == 2.0**-24
True
"""

from __future__ import annotations

UNIT_ROUNDOFF = {
    "float16": 2.0**-11,
    "bfloat16": 2.0**-8,
    "float32": 2.0**-24,
    "float64": 2.0**-53,
}
