"""The library path of the main job: run_comparison on a 2-D set, then write_report."""

from __future__ import annotations

import json

from keras_initlab.compare import CompareConfig, load_dataset, run_comparison, write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_two_dimensional_report_has_decision_boundaries(tmp_path):
    data = load_dataset("circles")
    config = CompareConfig(
        dataset="circles",
        schemes=("zeros", "he_normal"),
        depth=2,
        width=8,
        epochs=1,
        contrast_activation=None,
        train_limit=64,
        test_limit=32,
    )
    result = run_comparison(config, data=data, progress=None)
    xs, ys, classes = result.schemes["he_normal"].boundary
    assert classes.shape == (len(ys), len(xs))
    assert set(classes.ravel().tolist()) <= {0, 1}
    paths = write_report(result, tmp_path, data)
    assert paths["decision_boundaries.png"].read_bytes()[:8] == PNG_MAGIC
    saved = json.loads(paths["results.json"].read_text())
    assert saved["dataset"] == "circles"
    assert saved["contrast"] == {"activation": None, "schemes": {}}
    assert "![decision_boundaries.png](decision_boundaries.png)" in paths["summary.md"].read_text()


def test_deep_profiles_get_thinned_layer_ticks():
    from matplotlib.figure import Figure

    from keras_initlab.compare.models import OUTPUT_NAME, hidden_names
    from keras_initlab.compare.report import MAX_TICKS, _layer_ticks

    layers = [*hidden_names(500), OUTPUT_NAME]
    ax = Figure().subplots()
    _layer_ticks(ax, layers, 1)
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert len(labels) <= MAX_TICKS + 1
    assert labels[0] == "1"
    assert labels[-1] == OUTPUT_NAME
    positions = list(ax.get_xticks())
    assert positions == sorted(positions)
    assert positions[-1] == len(layers)
    # a short profile keeps a label per layer
    _layer_ticks(ax, layers[-5:], 1)
    assert len(ax.get_xticklabels()) == 5


def test_a_seed_trained_in_a_stack_equals_it_trained_alone():
    # Each tower gets the gradient of its own loss only: seed 0 inside a stack of three
    # follows the same path as seed 0 trained alone (same batches, same initial weights).
    data = load_dataset("circles")
    base = {
        "dataset": "circles",
        "schemes": ("he_normal",),
        "depth": 2,
        "width": 8,
        "epochs": 2,
        "contrast_activation": None,
        "train_limit": 64,
        "test_limit": 32,
        "check_widths": (),
    }
    alone = run_comparison(CompareConfig(**base, seeds=1), data=data).schemes["he_normal"]
    stack = run_comparison(CompareConfig(**base, seeds=3), data=data).schemes["he_normal"]
    assert stack.seeds == [0, 1, 2]
    first, single = stack.runs[0], alone.runs[0]
    assert first.activation_var == single.activation_var  # same weights: same forward pass
    # the other towers add exact zeros to this tower's gradients: bit-identical training
    assert first.loss == single.loss
    assert first.test_accuracy == single.test_accuracy
    assert stack.runs[1].activation_var != single.activation_var  # another seed, other weights
