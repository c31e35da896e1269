"""Shared fixtures: small MNIST subsets and the quick-mode course network (made once per session), fake records."""


import pytest

from digitlab.ablation import make_config
from digitlab.checkpoints import course_model
from digitlab.data import load_mnist, mnist_splits


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


@pytest.fixture
def fake_record():
    """A function that makes the record of a config's run with the given final accuracies, as a grid saves it."""
    def make(config, seed: int, test_acc: float, train_acc: float = 1.0, val_acc: float = 0.9) -> dict:
        final = {"train_acc": train_acc, "val_acc": val_acc, "gap": train_acc - val_acc, "test_acc": test_acc,
                 "train_loss": 0.0, "val_loss": 0.3}
        return {"config": dict(make_config(config)), "seed": seed, "final": final,
                "history": {"val_loss": [0.5, 0.4, 0.3]}}

    return make
