"""What each ``keras.ops`` operation is, for a walk through a model's graph.

A Functional graph (or a traced ``call``) records every ``keras.ops`` call as an instance of
an ``Operation`` subclass (``x + 3.0``: ``Add`` with the arguments ``(x, 3.0)``). This table
says, by class name, what each one is for a propagation of moments:

* `Activation`: an elementwise activation, ``keras.activations.<function>(x, **options)``
  with the options read from the operation's attributes (``LeakyRelu``: ``negative_slope``).
* `Function`: an elementwise math function, ``keras.ops.<function>(x, **options)``;
  ``smooth`` (a continuous derivative) and ``lower`` (the argument must stay above it: the
  function or its derivative is not finite below, ``sqrt``, ``log``).
* `Affine`: ``scale * x`` (``negative``, ``deg2rad``).
* `Arithmetic`: an elementwise function of two operands, ``keras.ops.<function>(x1, x2)``,
  each a tensor or a constant (``add``, ``multiply``, ``power``, ``maximum``).
* `Relayout`: every output element is a copy of one input element or a constant (reshape,
  transpose, slicing, concatenation, padding, splitting, tiling).
* `Reduction`: ``mean``, ``sum``, ``max`` or ``min`` over some axes.
* `Contraction`: ``matmul`` or ``einsum``, sums of products of the operands' elements.
* `Attention`: ``dot_product_attention``, the fused softmax attention.
* `Unchanged`: the values pass through (copies, float casts); ``gradient=False`` where the
  gradient is stopped.

`NOT_COVERED` lists every other operation a public ``keras.ops`` function creates
(`keras_initlab._keras.public_operations`), each with the reason it has no rule; ``propagate``
marks them assumed with that reason. Classes of every supported Keras release are listed
(a name a release lacks is simply never met).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = [
    "NOT_COVERED",
    "OPERATIONS",
    "Activation",
    "Affine",
    "Arithmetic",
    "Attention",
    "Contraction",
    "Function",
    "Kind",
    "Reduction",
    "Relayout",
    "Unchanged",
]


@dataclass(frozen=True)
class Activation:
    """``keras.activations.<function>(x, **{keyword: op.<attribute>})``, element by element."""

    function: str
    options: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Function:
    """``keras.ops.<function>(x, **{keyword: op.<attribute>})``, element by element.

    ``smooth``: a continuous derivative (Gauss-Hermite quadrature converges fast); ``lower``:
    the argument must stay above it (the function or its derivative is not finite there).
    """

    function: str
    options: Mapping[str, str] = field(default_factory=dict)
    smooth: bool = True
    lower: float | None = None


@dataclass(frozen=True)
class Affine:
    """``scale * x``."""

    scale: float


@dataclass(frozen=True)
class Arithmetic:
    """``keras.ops.<function>(x1, x2)`` element by element; either operand may be a constant."""

    function: str
    smooth: bool = True


@dataclass(frozen=True)
class Relayout:
    """Each output element is a copy of one input element, or a constant (padding)."""


@dataclass(frozen=True)
class Reduction:
    """``function`` (``"mean"``, ``"sum"``, ``"max"``, ``"min"``) over the ``axis`` attribute."""

    function: str


@dataclass(frozen=True)
class Contraction:
    """``"matmul"`` or ``"einsum"``: each output element a sum of products of the operands'."""

    function: str


@dataclass(frozen=True)
class Attention:
    """``dot_product_attention(query, key, value, ...)``: a softmax over keys of the
    query-key products, averaging the values."""


@dataclass(frozen=True)
class Filled:
    """A tensor of the input's shape whose values do not depend on the input's
    (``zeros_like``, ``ones_like``, ``full_like``): the same in every sample."""


@dataclass(frozen=True)
class Select:
    """``where(condition, x1, x2)``: each element from ``x1`` where the condition holds, else
    from ``x2``; read where the condition's value is known (a mask computed from a
    sequence length, a constant)."""


@dataclass(frozen=True)
class Unchanged:
    """The values pass through; ``gradient=False``: none flows back."""

    gradient: bool = True


Kind = (
    Activation
    | Function
    | Affine
    | Arithmetic
    | Relayout
    | Reduction
    | Contraction
    | Attention
    | Filled
    | Select
    | Unchanged
)

_SLOPE = {"negative_slope": "negative_slope"}
_ALPHA = {"alpha": "alpha"}
_THRESHOLD = {"threshold": "threshold"}

OPERATIONS: dict[str, Kind] = {
    # activations (keras.src.ops.nn, and numpy's tanh)
    "Relu": Activation("relu"),
    "Relu6": Activation("relu6"),
    "Sigmoid": Activation("sigmoid"),
    "SparseSigmoid": Activation("sparse_sigmoid"),
    "HardSigmoid": Activation("hard_sigmoid"),
    "HardSilu": Activation("hard_silu"),
    "Silu": Activation("silu"),
    "Gelu": Activation("gelu", {"approximate": "approximate"}),
    "Tanh": Activation("tanh"),
    "TanhShrink": Activation("tanh_shrink"),
    "HardTanh": Activation("hard_tanh"),
    "Softplus": Activation("softplus"),
    "SparsePlus": Activation("sparse_plus"),
    "Softsign": Activation("softsign"),
    "Squareplus": Activation("squareplus", {"b": "b"}),
    "LogSigmoid": Activation("log_sigmoid"),
    "LeakyRelu": Activation("leaky_relu", _SLOPE),
    "Elu": Activation("elu", _ALPHA),
    "Celu": Activation("celu", _ALPHA),
    "Selu": Activation("selu"),
    "SoftShrink": Activation("soft_shrink", _THRESHOLD),
    "HardShrink": Activation("hard_shrink", _THRESHOLD),
    "Threshold": Activation(
        "threshold", {"threshold": "threshold", "default_value": "default_value"}
    ),
    "Softmax": Activation("softmax", {"axis": "axis"}),
    # elementwise math functions
    "Abs": Function("absolute", smooth=False),
    "Absolute": Function("absolute", smooth=False),
    "Fabs": Function("absolute", smooth=False),
    "Square": Function("square"),
    "Sqrt": Function("sqrt", lower=0.0),
    # the input's shape, not its values; an elementwise choice by a known condition
    "ZerosLike": Filled(),
    "OnesLike": Filled(),
    "FullLike": Filled(),
    "Where": Select(),
    # A pole at 0: an argument above 0 (a Gaussian far from it, or a positive statistic, the
    # mean of squares an RMS normalization divides by).
    "Rsqrt": Function("rsqrt", lower=0.0),
    "Reciprocal": Function("reciprocal", lower=0.0),
    "Exp": Function("exp"),
    "Exp2": Function("exp2"),
    "Expm1": Function("expm1"),
    "Log": Function("log", lower=0.0),
    "Log2": Function("log2", lower=0.0),
    "Log10": Function("log10", lower=0.0),
    "Log1p": Function("log1p", lower=-1.0),
    "Sin": Function("sin"),
    "Cos": Function("cos"),
    "Sinh": Function("sinh"),
    "Cosh": Function("cosh"),
    "Arctan": Function("arctan"),
    "Arcsinh": Function("arcsinh"),
    "Arccosh": Function("arccosh", lower=1.0),
    "Erf": Function("erf"),
    "Erfc": Function("erfc"),
    "Sinc": Function("sinc"),
    "I0": Function("i0"),
    "Sign": Function("sign", smooth=False),
    "Floor": Function("floor", smooth=False),
    "Ceil": Function("ceil", smooth=False),
    "Round": Function("round", smooth=False),
    "Trunc": Function("trunc", smooth=False),
    "Clip": Function("clip", {"x_min": "x_min", "x_max": "x_max"}, smooth=False),
    "Negative": Affine(-1.0),
    "Deg2rad": Affine(math.pi / 180.0),
    "Rad2deg": Affine(180.0 / math.pi),
    # two operands
    "Add": Arithmetic("add"),
    "Subtract": Arithmetic("subtract"),
    "Multiply": Arithmetic("multiply"),
    "Divide": Arithmetic("divide"),
    "TrueDivide": Arithmetic("divide"),
    "DivideNoNan": Arithmetic("divide"),
    "Power": Arithmetic("power"),
    "Maximum": Arithmetic("maximum", smooth=False),
    "Minimum": Arithmetic("minimum", smooth=False),
    "Fmax": Arithmetic("maximum", smooth=False),
    "Fmin": Arithmetic("minimum", smooth=False),
    "Hypot": Arithmetic("hypot"),
    "Arctan2": Arithmetic("arctan2"),
    "Logaddexp": Arithmetic("logaddexp"),
    "Logaddexp2": Arithmetic("logaddexp2"),
    # copies of elements
    **dict.fromkeys(
        (
            "Reshape",
            "Ravel",
            "Transpose",
            "Moveaxis",
            "Swapaxes",
            "ExpandDims",
            "Squeeze",
            "Concatenate",
            "Append",
            "Stack",
            "Hstack",
            "Vstack",
            "Dstack",
            "Split",
            "ArraySplit",
            "Hsplit",
            "Vsplit",
            "Dsplit",
            "Unstack",
            "Slice",
            "GetItem",
            "Take",
            "TakeAlongAxis",
            "Flip",
            "Fliplr",
            "Flipud",
            "Roll",
            "Rot90",
            "Tile",
            "Repeat",
            "BroadcastTo",
            "Pad",
            "Diag",
            "Diagflat",
            "Diagonal",
            "Tril",
            "Triu",
            "Rearrange",
            "DepthToSpace",
            "SpaceToDepth",
            "CropImages",
            "PadImages",
            "ExtractPatches",
            "ExtractPatches3D",
            "ExtractSequences",
            "Unfold",
        ),
        Relayout(),
    ),
    # reductions (the NaN-ignoring variants compute the same on finite values)
    "Mean": Reduction("mean"),
    "Nanmean": Reduction("mean"),
    "Average": Reduction("mean"),
    "Sum": Reduction("sum"),
    "Nansum": Reduction("sum"),
    "Max": Reduction("max"),
    "Amax": Reduction("max"),
    "Nanmax": Reduction("max"),
    "Min": Reduction("min"),
    "Amin": Reduction("min"),
    "Nanmin": Reduction("min"),
    "Matmul": Contraction("matmul"),
    "Einsum": Contraction("einsum"),
    "DotProductAttention": Attention(),
    "Copy": Unchanged(),
    "ConvertToTensor": Unchanged(),
    "Cast": Unchanged(),
    "SaturateCast": Unchanged(),
    "Conj": Unchanged(),
    "Conjugate": Unchanged(),
    "Real": Unchanged(),
    "NanToNum": Unchanged(),
    "StopGradient": Unchanged(gradient=False),
}


def _reasons(reason: str, *names: str) -> dict[str, str]:
    return dict.fromkeys(names, reason)


NOT_COVERED: dict[str, str] = {
    **_reasons(
        "a boolean or integer output: no moments or gradient to carry",
        *("All", "Any", "AllClose", "Isclose", "IsIn", "Isreal", "Signbit"),
        *("Equal", "NotEqual", "Greater", "GreaterEqual", "Less", "LessEqual"),
        *("Isfinite", "Isinf", "Isnan", "Isneginf", "Isposinf"),
        *("LogicalAnd", "LogicalNot", "LogicalOr", "LogicalXor"),
        *("BitwiseAnd", "BitwiseInvert", "BitwiseNot", "BitwiseOr", "BitwiseXor"),
        *("BitwiseLeftShift", "BitwiseRightShift", "LeftShift", "RightShift", "Gcd", "Lcm"),
        *("Argmax", "Argmin", "Nanargmax", "Nanargmin", "Argpartition", "Argsort"),
        *("Nonzero", "CountNonzero", "SearchSorted", "Digitize", "Bincount", "Histogram"),
        *("Ndim", "Size", "InTopK", "UnravelIndex", "OneHot", "MultiHot", "MatrixRank"),
    ),
    **_reasons(
        "a constant: the input's values do not enter the output",
        *("Arange", "Array", "Full", "EmptyLike"),
        *("Linspace", "Logspace", "Geomspace", "Meshgrid", "Vander"),
        *("Bartlett", "Blackman", "Hamming", "Hanning", "Kaiser"),
    ),
    **_reasons(
        "runs a user function or control flow: no rule reads it",
        *("Cond", "Switch", "WhileLoop", "ForiLoop", "Scan", "AssociativeScan"),
        *("Map", "VectorizedMap", "JVP"),
    ),
    **_reasons(
        "selects or writes elements by data-dependent indices or a condition",
        *("Select", "Scatter", "ScatterUpdate", "SliceUpdate", "Unique", "TopK"),
        *("SegmentSum", "SegmentMax", "SegmentMin", "SegmentProd", "SegmentReduction"),
    ),
    **_reasons(
        "an order statistic of many elements: no rule",
        *("Sort", "Median", "Nanmedian", "Quantile", "Nanquantile"),
        *("Percentile", "Nanpercentile", "Ptp"),
    ),
    **_reasons(
        "a second-order statistic across elements (its fluctuation has no rule)",
        *("Var", "Nanvar", "Std", "Nanstd", "Moments", "Norm", "Normalize", "Corrcoef"),
        "CDist",
    ),
    **_reasons(
        "a product or running total along an axis: its outputs are correlated, no rule",
        *("Prod", "Nanprod", "Cumprod", "Nancumprod", "Cumsum", "Nancumsum"),
        *("Logsumexp", "Trace", "Trapezoid", "Diff", "Correlate", "Cross", "Fold"),
    ),
    **_reasons(
        "no rule for this contraction (matmul and einsum have one)",
        *("Dot", "Tensordot", "Inner", "Outer", "Kron", "Vdot"),
    ),
    **_reasons(
        "a matrix decomposition, inverse or determinant: no rule",
        *("Cholesky", "CholeskyInverse", "Det", "Eig", "Eigh", "Inv", "Lstsq"),
        *("LuFactor", "Pinv", "Qr", "SVD", "Solve", "SolveTriangular", "Slogdet", "Logdet"),
    ),
    **_reasons(
        "complex values: no rule",
        *("FFT", "FFT2", "IFFT2", "RFFT", "IRFFT", "STFT", "ISTFT"),
        *("ViewAsComplex", "ViewAsReal", "Polar", "Angle", "Imag"),
    ),
    **_reasons(
        "no rule for the operation (its layer has one)",
        *("Conv", "ConvTranspose", "DepthwiseConv", "SeparableConv"),
        *("AveragePool", "MaxPool", "AdaptiveAveragePool", "AdaptiveMaxPool"),
        *("BatchNorm", "LayerNorm", "RMSNorm"),
    ),
    **_reasons(
        "not elementwise (mixes the elements of an axis): no rule",
        *("Glu", "LogSoftmax", "Sparsemax"),
    ),
    **_reasons(
        "a loss or a metric",
        *("BinaryCrossentropy", "CategoricalCrossentropy", "SparseCategoricalCrossentropy"),
        *("CTCLoss", "CTCDecode", "PSNR", "SSIM"),
    ),
    **_reasons(
        "an image transform that interpolates or mixes pixels: no rule",
        *("AffineTransform", "ElasticTransform", "GaussianBlur", "MapCoordinates"),
        *("PerspectiveTransform", "Resize", "ScaleAndTranslate", "SobelEdges"),
        *("HSVToRGB", "RGBToHSV", "RGBToGrayscale"),
    ),
    **_reasons(
        "a pole or an infinite derivative at 0, where a Gaussian argument has mass",
        *("Cbrt", "Tan"),
    ),
    **_reasons(
        "defined on [-1, 1] only: a Gaussian argument leaves it",
        *("Arcsin", "Arccos", "Arctanh", "Erfinv"),
    ),
    **_reasons(
        "a remainder, integer division or step: discontinuous, no rule",
        *("Mod", "Fmod", "FloorDivide", "Heaviside", "Ldexp", "Nextafter"),
    ),
    "View": "reinterprets the bytes of the values: no rule",
}
