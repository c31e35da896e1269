"""Shared fixtures, made once per test session: small MNIST subsets and the quick-mode course network."""

import pytest

from digitlab.data import load_mnist, mnist_splits
from digitlab.train import course_model


@pytest.fixture(scope="session")
def small_splits():
    """2,000 training images, with the fixed validation and test sets."""
    return mnist_splits(n_train=2000)


@pytest.fixture(scope="session")
def test_images():
    """The first 500 test images (uint8) and their labels."""
    X, y = load_mnist("test")
    return X[:500], y[:500]


@pytest.fixture(scope="session")
def fast_net():
    """The quick-mode course network (`course_model(fast=True)`): trained once, then loaded from models/."""
    return course_model(fast=True, progress=False)[0]
