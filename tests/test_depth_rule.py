"""The depth rule (`keras_initlab.depth_rule`) against closed forms and a brute-force reference."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from keras_initlab.depth_rule import judge
from keras_initlab.model.path import ModelPath


def _rows(activation, gradient=None):
    gradient = [1.0] * len(activation) if gradient is None else gradient
    return [
        {"layer": f"h{i}", "activation_var": a, "gradient_var": g}
        for i, (a, g) in enumerate(zip(activation, gradient, strict=True))
    ]


@pytest.mark.parametrize("gain", [0.5, 0.9, 1.3, 2.0])
def test_a_geometric_profile_gives_its_total_and_per_layer_gain(gain):
    depth = 12
    judgement = judge(_rows([gain**i for i in range(depth)]), factor=10.0)
    direction = "grows" if gain > 1 else "shrinks"
    change = judgement.change("activation_var", direction)
    assert change is not None
    assert change.factor == pytest.approx(max(gain, 1 / gain) ** (depth - 1), rel=1e-9)
    assert change.per_layer == pytest.approx(max(gain, 1 / gain), rel=1e-9)
    assert (change.start, change.end, change.layers) == ("h0", f"h{depth - 1}", depth - 1)
    expected = "ok" if change.factor <= 10 else ("exploding" if gain > 1 else "vanishing")
    assert judgement.verdict == expected


def test_the_factor_is_the_boundary():
    assert judge(_rows([1.0, 1.0, 1.0, 9.99]), factor=10.0).verdict == "ok"
    assert judge(_rows([1.0, 1.0, 1.0, 10.01]), factor=10.0).verdict == "exploding"
    assert judge(_rows([1.0, 1.0, 1.0, 1 / 10.01]), factor=10.0).verdict == "vanishing"


def test_a_change_over_fewer_than_three_steps_is_one_off():
    assert judge(_rows([1.0, 1e3, 1e6])).verdict == "ok"
    assert judge(_rows([1.0, 1e3, 1e6, 1e9])).verdict == "exploding"


def test_gradients_are_judged_backward():
    # The gradient grows towards the input: exploding backward, start at the output side.
    rows = _rows([1.0] * 6, [100.0, 30.0, 10.0, 3.0, 1.0, 0.3])
    change = judge(rows).change("gradient_var", "grows")
    assert change is not None
    assert change.exceeds
    assert (change.start, change.end) == ("h5", "h0")
    assert judge(rows).verdict == "exploding"


def test_without_sums_the_reported_change_is_the_largest_ratio_over_pairs():
    rng = np.random.default_rng(0)
    for _ in range(20):
        values = np.exp(rng.normal(0.0, 1.5, size=9))
        judgement = judge(_rows(list(values)), factor=10.0)
        pairs = [(i, j) for i, j in itertools.combinations(range(9), 2) if j - i >= 3]
        rise = max(values[j] / values[i] for i, j in pairs)
        fall = max(values[i] / values[j] for i, j in pairs)
        grows = judgement.change("activation_var", "grows")
        shrinks = judgement.change("activation_var", "shrinks")
        assert grows is not None
        assert shrinks is not None
        assert grows.factor == pytest.approx(rise, rel=1e-12)
        assert shrinks.factor == pytest.approx(fall, rel=1e-12)


def _stream(values, gradient=None):
    """A residual stream: a stem, then one sum per value."""
    names = ["stem"] + [f"add{k}" for k in range(1, len(values))]
    path = ModelPath(
        nodes=[*names, "head"],
        sums=set(names[1:]),
        forks=set(names[:-1]),
        weighted={"stem", "head"},
        outputs={"head"},
    )
    gradient = [1.0] * len(values) if gradient is None else gradient
    rows = [
        {"layer": n, "activation_var": v, "gradient_var": g}
        for n, v, g in zip(names, values, gradient, strict=True)
    ]
    return [*rows, {"layer": "head", "activation_var": 1.0, "gradient_var": 1.0}], path


def test_a_sum_of_normalized_branches_grows_linearly_and_is_allowed():
    rows, path = _stream([1.0 + k for k in range(25)], [1.0 + (24 - k) for k in range(25)])
    judgement = judge(rows, path=path)
    assert judgement.verdict == "ok"
    assert judgement.faults == []
    # Forward the stem's own row maps the input (rule 1): the stream is judged from the
    # first sum, x12.5 over 23 sums against 10 * (1 + 10 * 23); the pair closest to its
    # threshold spans the fewest steps allowed (x2.5 over 3 sums against 10 * (1 + 30)).
    change = judgement.change("activation_var", "grows")
    assert change is not None
    assert (change.start, change.end, change.sums) == ("add1", "add4", 3)
    assert change.factor == pytest.approx(2.5)
    assert change.threshold == pytest.approx(310.0)


def test_a_stream_that_compounds_is_found_despite_the_allowance():
    rows, path = _stream([3.0**k for k in range(25)])
    change = judge(rows, path=path).faults[0]
    assert change.direction == "grows"
    assert (change.start, change.end) == ("add1", "add24")
    assert change.factor == pytest.approx(3.0**23)
    assert change.sums == 23
    assert change.threshold == pytest.approx(10.0 * (1 + 10.0 * 23))


def test_a_pre_norm_stream_from_a_small_embedding_is_not_compounding():
    """Pre-norm sums (`ModelPath.normalized_sums`) each add a unit-variance branch to a
    stream that starts at an embedding of variance 1e-4: forward it grows 1e4-fold over
    the first sum and then linearly; backward each fork's gradient gains ``1 / v`` of the
    stream's variance before it (the normalization's backward factor), 1e4-fold at the
    first. Without the marks the rule sees 1e4 over 3 sums (allowed 310); with them the
    change across each marked sum is divided out and the rest is judged as measured."""
    depth = 8
    variances = [1e-4, 1e-4, *[1e-4 + k for k in range(1, depth + 1)]]
    names = ["stem", "embed", *[f"add{k}" for k in range(1, depth + 1)]]
    gradient = [1.0] * len(names)
    for i in range(len(names) - 2, -1, -1):  # backward from the last sum
        gain = 1.0 + 1.0 / variances[i] if names[i + 1].startswith("add") else 1.0
        gradient[i] = gradient[i + 1] * gain
    rows = [
        {"layer": n, "activation_var": v, "gradient_var": g}
        for n, v, g in zip(names, variances, gradient, strict=True)
    ]
    plain = ModelPath(
        nodes=names,
        sums=set(names[2:]),
        forks=set(names[1:-1]),
        weighted={"stem"},
    )
    assert {(c.key, c.direction) for c in judge(rows, path=plain).faults} == {
        ("activation_var", "grows"),
        ("gradient_var", "grows"),
    }
    marked = ModelPath(**{**vars(plain), "normalized_sums": set(names[2:])})
    judgement = judge(rows, path=marked)
    assert judgement.verdict == "ok"
    change = judgement.change("activation_var", "grows")
    assert change is not None
    assert change.factor == pytest.approx(1.0)
    # Sums after them that are not pre-norm are judged as measured: 4 more, each 5x the
    # stream, 625-fold over 4 sums against 10 * (1 + 10 * 4).
    more = [f"late{k}" for k in range(1, 5)]
    tail = [
        {"layer": n, "activation_var": variances[-1] * 5.0**k, "gradient_var": 1.0}
        for k, n in enumerate(more, start=1)
    ]
    longer = ModelPath(**{**vars(marked), "nodes": names + more, "sums": marked.sums | set(more)})
    fault = judge([*rows, *tail], path=longer).faults[0]
    assert (fault.direction, fault.start, fault.end) == ("grows", "add8", "late4")
    assert fault.factor == pytest.approx(625.0)


def test_off_path_rows_the_output_and_normalized_rows_are_not_judged():
    path = ModelPath(
        nodes=["a", "bn", "b", "out"],
        normalized={"a"},
        weighted={"a", "b", "out"},
        outputs={"out"},
    )
    rows = [
        {"layer": "a", "activation_var": 1e6, "gradient_var": 1.0},  # reset by bn
        {"layer": "bn", "activation_var": 1.0, "gradient_var": 1.0},
        {"layer": "inside", "activation_var": 1e-9, "gradient_var": 1e-9},  # off the path
        {"layer": "b", "activation_var": 2.0, "gradient_var": 1.0},
        {"layer": "out", "activation_var": 1e4, "gradient_var": 1.0},  # the task's scale
    ]
    assert judge(rows, path=path).verdict == "ok"
    assert judge(rows).verdict != "ok"  # as a plain chain every row counts


def test_one_off_factors_are_divided_out():
    rows = _rows([1.0, 1.0, 1.0, 1.0 / 64, 1.0 / 64, 1.0 / 64])
    nodes = ["h0", "h1", "h2", "pool", "h3", "h4", "h5"]
    path = ModelPath(nodes=nodes, one_off={"pool"}, weighted={"h0"})
    assert judge(rows, path=path).verdict == "vanishing"
    factors = {n: (1.0 if i < 3 else 1 / 64, 1.0) for i, n in enumerate(nodes)}
    assert judge(rows, path=path, structural=factors).verdict == "ok"


def test_zero_and_non_finite_values_have_their_own_findings():
    zero = judge(_rows([1.0] * 4, [1.0, 1.0, 0.0, 0.0]))
    assert zero.verdict == "vanishing"
    assert zero.zero_gradient == ("h3", "h2")
    nan = judge(_rows([1.0, math.nan, 1.0]))
    assert nan.verdict == "exploding"
    assert nan.non_finite == (("activation_var", "h1"),)


@pytest.mark.parametrize("factor", [1.0, 0.5, -3.0])
def test_a_factor_not_above_one_is_named(factor):
    with pytest.raises(ValueError, match=rf"`factor`.*greater than 1.*factor={factor}"):
        judge(_rows([1.0, 2.0]), factor=factor)
