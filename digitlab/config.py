"""What a training run is: its settings (`RunConfig`), the course's recipes, and the images they train on."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from digitlab import foreign
from digitlab.data import mnist_splits
from digitlab.errors import DigitlabError, WrongTypeError

OPTIMIZERS = ("adam", "adamw", "sgd", "adadelta")
# The learning-rate schedules (`train.make_scheduler` makes them) and when `fit` steps each: after every batch,
# after every epoch, after every epoch given the validation loss, or never.
SCHEDULES = {"none": None, "step": "epoch", "onecycle": "batch", "plateau": "val_loss"}


KINDS = {bool: "True or False", int: "a whole number", float: "a number", str: "a name"}  # for error messages


def _setting(part: str, default):
    """A RunConfig field that belongs to `part`: the data, the model or fit."""
    return field(default=default, metadata={"part": part})


@dataclass(frozen=True, eq=False)
class RunConfig(Mapping):
    """Everything that decides a training run's numbers except the seed: its data, model and fit settings.

    It reads like the dict it is saved as, too: `config["lr"]`, `{**config, "lr": 0.01}`, and it equals a
    record's config with the same settings.
    """

    n_train: int | None = _setting("data", None)   # MNIST training images (None: all 55,000)
    typed_digits: int = _setting("data", 0)        # typed digits appended to them (`foreign.typed_digits`)
    batch_norm: bool = _setting("model", True)
    dropout1: float = _setting("model", 0.25)
    dropout2: float = _setting("model", 0.5)
    num_epochs: int = _setting("fit", 10)
    batch_size: int = _setting("fit", 128)
    lr: float = _setting("fit", 1e-3)
    optimizer: str = _setting("fit", "adam")
    schedule: str = _setting("fit", "onecycle")
    weight_decay: float = _setting("fit", 0.0)
    augment: bool = _setting("fit", False)
    label_smoothing: float = _setting("fit", 0.0)  # the share of each target spread over the other digits

    def __post_init__(self):
        check_config(self)

    def __getitem__(self, name: str):
        if name not in self.__dataclass_fields__:
            raise KeyError(f"{name!r} is not a setting of a RunConfig; its settings are {list(self)}.")
        return getattr(self, name)

    def __iter__(self) -> Iterator[str]:
        return iter(self.__dataclass_fields__)

    def __len__(self) -> int:
        return len(self.__dataclass_fields__)

    def __hash__(self) -> int:
        return hash(tuple(self.values()))

    def settings(self, part: str) -> dict:
        """The settings of one part, `data`, `model` (the network's options) or `fit` (its keyword arguments)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.metadata["part"] == part}

    def key(self) -> str:
        """A short hash of every setting, defaults included, that names the run's records and checkpoints."""
        return hashlib.sha1(json.dumps(dict(self), sort_keys=True).encode()).hexdigest()[:10]


def check_config(config: RunConfig) -> None:
    """Refuse settings that cannot train, and write each value one way (0.0, not 0) so that equal configs hash
    alike."""
    for f in dataclasses.fields(config):
        value, kind = getattr(config, f.name), type(f.default)
        if f.name == "n_train":
            continue
        allowed = (int, float) if kind is float else kind
        if isinstance(value, bool) != (kind is bool) or not isinstance(value, allowed):
            raise WrongTypeError(f"{f.name} must be {KINDS[kind]}, not {value!r}.")
        object.__setattr__(config, f.name, kind(value))
    n = config.n_train
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or not 0 < n <= 55_000):
        raise DigitlabError(f"n_train must be a whole number from 1 to 55,000 (or None for all), not {n!r}.")
    if n == 55_000:
        object.__setattr__(config, "n_train", None)
    if config.typed_digits < 0:
        raise DigitlabError(f"typed_digits must be 0 or more, not {config.typed_digits}.")
    for name in ("dropout1", "dropout2"):
        if not 0 <= getattr(config, name) < 1:
            raise DigitlabError(f"{name} must be a probability from 0 to below 1, not {getattr(config, name)}.")
    check_settings(**{k: getattr(config, k) for k in ("num_epochs", "batch_size", "lr", "optimizer", "schedule",
                                                      "weight_decay", "label_smoothing")})


def check_settings(num_epochs: int = 1, batch_size: int = 1, lr: float = 1e-3, optimizer: str = "adam",
                   schedule: str = "none", weight_decay: float = 0.0, label_smoothing: float = 0.0) -> None:
    """Refuse fit settings that cannot train, before any data is loaded or moved."""
    for name, value in [("num_epochs", num_epochs), ("batch_size", batch_size)]:
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise DigitlabError(f"{name} must be a whole number of at least 1, not {value!r}.")
    if isinstance(lr, bool) or not isinstance(lr, int | float | np.number) or not 0 < lr < math.inf:
        raise DigitlabError(f"lr must be a positive, finite number, not {lr!r}.")
    if isinstance(weight_decay, bool) or not isinstance(weight_decay, int | float | np.number) or \
            not 0 <= weight_decay < math.inf:
        raise DigitlabError(f"weight_decay must be a finite number, 0 or more, not {weight_decay!r}.")
    if optimizer not in OPTIMIZERS:
        raise DigitlabError(f"optimizer must be {one_of(OPTIMIZERS)}, not {optimizer!r}.")
    if schedule not in SCHEDULES:
        raise DigitlabError(f"schedule must be {one_of(SCHEDULES)}, not {schedule!r}.")
    if not 0 <= label_smoothing < 1:
        raise DigitlabError(f"label_smoothing must be a share from 0 to below 1 (0.1 is usual), "
                            f"not {label_smoothing!r}.")


def one_of(names) -> str:
    """'a', 'b' or 'c': the allowed names, for an error message."""
    quoted = [repr(n) for n in names]
    return f"{', '.join(quoted[:-1])} or {quoted[-1]}"


# The course's training recipe for the paper's network. Notebooks 03, 05 and 06 share the network it trains
# (`checkpoints.course_model`); fast mode trains less so that CI stays quick. 5,000 digits typed in fonts join
# the MNIST training images, so that the network also reads printed digits (chapter 06); the quick recipe keeps
# about the same share of them. Measured once each (seed 0) on a 2-core AMD EPYC (Zen 3) CPU, torch 2.14: RECIPE
# trains in 218 s to 99.43% test accuracy; FAST_RECIPE in 14 s to 97.78%.
RECIPE = RunConfig(typed_digits=5000, num_epochs=6, batch_size=128, lr=6e-3, schedule="onecycle", augment=True)
FAST_RECIPE = dataclasses.replace(RECIPE, n_train=10_000, typed_digits=1000, num_epochs=2)


def training_set(config: RunConfig, splits: dict | None = None) -> tuple[Tensor, Tensor]:
    """The images and labels `config` trains on: its MNIST training images (from `splits` if given), then its
    typed digits."""
    X, y = (splits or mnist_splits(n_train=config.n_train))["train"]
    X_typed, y_typed = foreign.typed_digits(config.typed_digits)
    return torch.cat([X, X_typed]), torch.cat([y, y_typed])
