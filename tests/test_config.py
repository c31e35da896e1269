import dataclasses
import json

import pytest
import torch

from digitlab import config
from digitlab.config import FAST_RECIPE, RECIPE, RunConfig
from digitlab.models import DigitRecognitionCNN
from digitlab.train import fit


def test_recipes_are_valid_fit_settings():
    for recipe in (RECIPE, FAST_RECIPE):
        X, y = torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,))
        history = fit(DigitRecognitionCNN(**recipe.settings("model")), (X, y), progress=False,
                      **{**recipe.settings("fit"), "num_epochs": 1})
        assert history["epoch"] == [1]
    assert FAST_RECIPE.n_train < 55_000 and FAST_RECIPE.num_epochs < RECIPE.num_epochs
    # the quick recipe keeps about the full recipe's share of typed digits
    shares = [r.typed_digits / ((r.n_train or 55_000) + r.typed_digits) for r in (RECIPE, FAST_RECIPE)]
    assert shares[0] == pytest.approx(shares[1], abs=0.01)


def test_settings_split_a_config_into_its_parts():
    c = RunConfig(n_train=500, typed_digits=3, batch_norm=False, lr=0.01, augment=True)
    assert c.settings("data") == {"n_train": 500, "typed_digits": 3}
    assert c.settings("model") == {"batch_norm": False, "dropout1": 0.25, "dropout2": 0.5}
    assert c.settings("fit") == {"num_epochs": 10, "batch_size": 128, "lr": 0.01, "optimizer": "adam",
                                 "schedule": "onecycle", "weight_decay": 0.0, "augment": True,
                                 "label_smoothing": 0.0}
    parts = [c.settings(p) for p in ("data", "model", "fit")]
    assert sum(len(p) for p in parts) == len(dataclasses.fields(RunConfig))  # every setting in exactly one part
    assert {**parts[0], **parts[1], **parts[2]} == dataclasses.asdict(c)
    DigitRecognitionCNN(**c.settings("model"))  # the parts are what the network and fit take


def test_key_names_the_settings_whatever_their_spelling():
    assert RunConfig(lr=1e-3, dropout1=0).key() == RunConfig(dropout1=0.0).key()  # defaults and 0 == 0.0 alike
    assert RunConfig(n_train=55_000) == RunConfig() and RunConfig(n_train=55_000).key() == RunConfig().key()
    keys = {RunConfig(**{name: value}).key() for name, value in
            [("n_train", 10), ("typed_digits", 1), ("batch_norm", False), ("dropout1", 0.1), ("dropout2", 0.1),
             ("num_epochs", 1), ("batch_size", 64), ("lr", 0.1), ("optimizer", "sgd"), ("schedule", "none"),
             ("weight_decay", 0.1), ("augment", True), ("label_smoothing", 0.1)]}
    assert len(keys | {RunConfig().key()}) == 14  # every setting changes the key
    assert len(RunConfig().key()) == 10 and RunConfig().key() == RunConfig().key()
    assert isinstance(RunConfig().lr, float) and isinstance(RunConfig(dropout2=0).dropout2, float)


@pytest.mark.parametrize(("changes", "error", "message"), [
    ({"batch_norm": "no"}, TypeError, "batch_norm must be True or False"),
    ({"num_epochs": 2.5}, TypeError, "num_epochs must be a whole number"),
    ({"augment": 1}, TypeError, "augment must be True or False"),
    ({"lr": True}, TypeError, "lr must be a number"),
    ({"n_train": 0}, ValueError, "n_train must be a whole number from 1 to 55,000"),
    ({"n_train": 60_000}, ValueError, "n_train must be"),
    ({"n_train": 10.0}, ValueError, "n_train must be"),
    ({"typed_digits": -1}, ValueError, "typed_digits must be 0 or more"),
    ({"dropout1": 1.0}, ValueError, "dropout1 must be a probability"),
    ({"weight_decay": -0.1}, ValueError, "weight_decay must be a finite number, 0 or more"),
    ({"weight_decay": float("nan")}, ValueError, "weight_decay must be a finite number, 0 or more, not nan"),
    ({"weight_decay": float("inf")}, ValueError, "weight_decay must be a finite number"),
    ({"label_smoothing": 1.0}, ValueError, "label_smoothing must be a share from 0 to below 1"),
    ({"label_smoothing": -0.1}, ValueError, "label_smoothing must be a share from 0 to below 1"),
    ({"num_epochs": 0}, ValueError, "num_epochs must be a whole number of at least 1"),
    ({"batch_size": -1}, ValueError, "batch_size must be"),
    ({"lr": 0.0}, ValueError, "lr must be a positive, finite number"),
    ({"lr": float("inf")}, ValueError, "lr must be a positive, finite number, not inf"),
    ({"lr": float("nan")}, ValueError, "lr must be a positive, finite number, not nan"),
    ({"optimizer": 3}, TypeError, "optimizer must be a name"),
    ({"optimizer": "rmsprop"}, ValueError, "optimizer must be 'adam', 'adamw', 'sgd' or 'adadelta'"),
    ({"schedule": "cosine"}, ValueError, "schedule must be 'none', 'step', 'onecycle' or 'plateau'"),
])
def test_bad_settings_are_refused_when_the_config_is_made(changes, error, message):
    with pytest.raises(error, match=message):
        RunConfig(**changes)


def test_training_set_appends_the_typed_digits(monkeypatch):
    g = torch.Generator().manual_seed(0)
    splits = {"train": (torch.randn(64, 1, 28, 28, generator=g), torch.randint(0, 10, (64,), generator=g))}
    X, y = config.training_set(RunConfig(n_train=64, typed_digits=12), splits)
    assert X.shape == (76, 1, 28, 28) and y[64:].tolist() == [i % 10 for i in range(12)]
    assert torch.equal(X[:64], splits["train"][0]) and torch.equal(y[:64], splits["train"][1])
    X, y = config.training_set(RunConfig(n_train=64), splits)
    assert torch.equal(X, splits["train"][0])
    monkeypatch.setattr(config, "mnist_splits", lambda n_train=None: {"train": (X[:n_train], y[:n_train])})
    assert len(config.training_set(RunConfig(n_train=10, typed_digits=2))[1]) == 12  # reads MNIST itself if need be


def test_a_config_reads_like_the_dict_it_is_saved_as():
    c = RunConfig(n_train=500, lr=0.01)
    saved = json.loads(json.dumps(dict(c)))  # as a results file or checkpoint holds it
    assert saved == c and c == saved and RunConfig(**saved) == c  # equal either way round
    assert c["lr"] == c.lr == 0.01 and c.get("augment") is False and "schedule" in c and len(c) == 13
    assert {**c, "lr": 0.1} == RunConfig(n_train=500, lr=0.1)  # a changed copy, as with a dict
    assert c != RunConfig(n_train=500) and saved != RunConfig(n_train=500)
    assert len({c, RunConfig(**saved), RunConfig()}) == 2  # hashable: equal configs are one set member
    with pytest.raises(KeyError, match="'width' is not a setting"):
        c["width"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.lr = 0.1  # a config cannot change under a saved run
