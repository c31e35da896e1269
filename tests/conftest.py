"""Shared fixtures: small MNIST subsets, loaded once per test session."""

import pytest

from digitlab.data import mnist_splits


@pytest.fixture(scope="session")
def small_splits():
    """2,000 training images, with the fixed validation and test sets."""
    return mnist_splits(n_train=2000)
