"""Shared fixtures: small MNIST subsets, the quick-mode course network (made once per session), fake records, and
the website pad's runtime (npm ci)."""

import shutil
import subprocess
from pathlib import Path

import pytest

from digitlab.ablation import make_config
from digitlab.checkpoints import course_model
from digitlab.data import load_mnist, mnist_splits

PAD = Path(__file__).resolve().parent.parent / "book" / "pad"


@pytest.fixture(scope="session")
def pad_runtime() -> Path:
    """book/pad/node_modules as package-lock.json pins it (`npm ci` where missing or stale), for the website's
    drawing pad; skips where Node.js is missing."""
    if not shutil.which("node") or not shutil.which("npm"):
        pytest.skip("the website's drawing pad needs Node.js and npm (ONNX Runtime Web, installed by npm ci)")
    stamp = PAD / "node_modules" / ".package-lock.json"
    if not stamp.exists() or stamp.stat().st_mtime < (PAD / "package-lock.json").stat().st_mtime:
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=PAD, check=True, capture_output=True, timeout=600)
    return PAD


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
