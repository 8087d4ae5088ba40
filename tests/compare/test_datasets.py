"""Datasets of `keras-initlab compare`: embedded, generated, user files; standardization."""

from __future__ import annotations

import numpy as np
import pytest

from keras_initlab.compare.datasets import (
    DatasetUnavailable,
    check_dataset_name,
    load_dataset,
)


def test_digits_is_embedded_split_and_standardized():
    data = load_dataset("digits", seed=0)
    assert data.num_features == 64
    assert data.num_classes == 10
    assert len(data.y_train) + len(data.y_test) == 1797
    # training features have mean 0 and std 1 (constant pixels: std 0) to float32 rounding
    std = data.x_train.std(axis=0)
    assert np.allclose(data.x_train.mean(axis=0), 0.0, atol=1e-5)
    assert np.all(np.isclose(std, 1.0, atol=1e-4) | (std == 0.0))


def test_split_is_seeded():
    a, b, c = (load_dataset("spirals", seed=s) for s in (1, 1, 2))
    assert np.array_equal(a.x_train, b.x_train)
    assert not np.array_equal(a.x_train, c.x_train)


@pytest.mark.parametrize(("name", "classes"), [("circles", 2), ("spirals", 3)])
def test_toy_sets(name, classes):
    data = load_dataset(name)
    assert data.num_features == 2
    assert data.num_classes == classes
    assert sorted(set(data.y_train.tolist())) == list(range(classes))


def test_user_npz_with_x_and_y(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "mine.npz"
    np.savez(path, x=rng.normal(size=(50, 3, 2)), y=np.arange(50) % 4)
    data = load_dataset(str(path))
    assert data.num_features == 6
    assert data.num_classes == 4
    assert len(data.y_test) == 10


def test_user_npz_with_float_labels_that_are_not_classes(tmp_path):
    path = tmp_path / "bad.npz"
    np.savez(path, x=np.zeros((4, 2)), y=np.array([0.5, 1, 0, 1]))
    with pytest.raises(DatasetUnavailable, match="integer class labels"):
        load_dataset(str(path))


def test_unknown_name_suggests():
    with pytest.raises(ValueError, match="Did you mean 'spirals'"):
        check_dataset_name("spiral")
