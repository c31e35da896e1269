import dataclasses
import json

import pytest
import torch

from digitlab.config import FAST_RECIPE, RECIPE, RECIPES, RunConfig
from digitlab.models import DigitRecognitionCNN
from digitlab.train import fit


def test_recipes_are_valid_fit_settings():
    for recipe in (RECIPE, FAST_RECIPE):
        X, y = torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,))
        history = fit(DigitRecognitionCNN(**recipe.settings("model")), (X, y), None, recipe, num_epochs=1,
                      progress=False)
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
    assert c.settings("run") == {"device": "auto", "precision": "auto"}
    parts = [c.settings(p) for p in ("data", "model", "fit", "run")]
    assert sum(len(p) for p in parts) == len(dataclasses.fields(RunConfig))  # every setting in exactly one part
    assert {**parts[0], **parts[1], **parts[2], **parts[3]} == dataclasses.asdict(c)
    assert dict(c) == {**parts[0], **parts[1], **parts[2]}  # what a record saves: the settings that decide numbers
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


def test_device_and_precision_are_checked_and_recorded_but_never_name_a_run():
    c = RunConfig(device="cpu", precision="fp32")
    assert c.device == "cpu" and c.precision == "fp32"
    assert c == RunConfig() and c.key() == RunConfig().key() and "device" not in dict(c)  # same run, anywhere
    assert RunConfig(device="cuda:1").device == "cuda:1"  # a name is checked here; whether it exists, by fit


def test_replace_checks_the_changes_and_names_an_unknown_setting():
    assert RunConfig().replace(lr=0.01, precision="bf16") == RunConfig(lr=0.01)
    with pytest.raises(ValueError, match="'width' is not a setting of a run; the settings are n_train, "):
        RunConfig().replace(width=3)
    with pytest.raises(ValueError, match="'width' is not a setting of a run; the settings are n_train, .*precision"):
        RunConfig(width=3)   # a DigitlabError, not Python's TypeError from a dataclass
    with pytest.raises(ValueError, match="lr must be a positive"):
        RECIPE.replace(lr=-1.0)


def test_the_command_line_recipes_are_the_course_recipes():
    assert RECIPES["default"] == RunConfig() and RECIPES["course"] is RECIPE and RECIPES["course-quick"] is FAST_RECIPE


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
    ({"device": "meta"}, ValueError, "device 'meta' cannot train or run a network"),
    ({"device": "cuda:x"}, ValueError, "device 'cuda:x' cannot train"),
    ({"device": "gpu"}, ValueError, "device 'gpu' cannot train"),
    ({"device": 0}, TypeError, "device must be a name"),
    ({"precision": "fp64"}, ValueError, "precision must be 'auto', 'fp32' or 'bf16', not 'fp64'"),
])
def test_bad_settings_are_refused_when_the_config_is_made(changes, error, message):
    with pytest.raises(error, match=message):
        RunConfig(**changes)


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
