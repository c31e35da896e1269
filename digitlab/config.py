"""What a training run is: its settings (`RunConfig`), checked when made, and the course's recipes."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np

from digitlab.errors import DigitlabError, WrongTypeError

OPTIMIZERS = ("adam", "adamw", "sgd", "adadelta")
# The learning-rate schedules (`train.make_scheduler` makes them) and when `fit` steps each: after every batch,
# after every epoch, after every epoch given the validation loss, or never.
SCHEDULES = {"none": None, "step": "epoch", "onecycle": "batch", "plateau": "val_loss"}
PRECISIONS = ("fp32", "bf16")  # float32 everywhere, or bfloat16 autocast for the forward pass
DEVICE_TYPES = ("cpu", "cuda", "mps", "xpu")  # what can train a network ('meta' keeps shapes only)

PARTS = ("data", "model", "fit", "run")  # a run's settings: what it trains on, the network, fit, where and how
KINDS = {bool: "True or False", int: "a whole number", float: "a number", str: "a name"}  # for error messages


def _setting(part: str, default, help: str):
    """A RunConfig field of `part` (data, model, fit, or run: where and how, which never changes its key)."""
    return field(default=default, metadata={"part": part, "help": help})


@dataclass(frozen=True, eq=False, init=False)
class RunConfig(Mapping):
    """Every setting of a training run except the seed: its data, model and fit settings, which decide its numbers,
    and where and how it runs (device, precision), which do not name it.

    It reads like the dict it is saved as, too: `config["lr"]`, `{**config, "lr": 0.01}`, and it equals a
    record's config with the same settings. The dict holds the settings that decide the numbers, not the device
    or precision (`settings("run")`).
    """

    n_train: int | None = _setting("data", None, "MNIST training images: a stratified subset this large (all 55,000)")
    typed_digits: int = _setting("data", 0, "digits typed in fonts added to the training images")
    batch_norm: bool = _setting("model", True, "batch normalisation after each convolution")
    dropout1: float = _setting("model", 0.25, "dropout rate after the convolution blocks")
    dropout2: float = _setting("model", 0.5, "dropout rate before the last layer")
    num_epochs: int = _setting("fit", 10, "passes over the training images")
    batch_size: int = _setting("fit", 128, "images per optimisation step")
    lr: float = _setting("fit", 1e-3, "learning rate (the peak rate of one-cycle)")
    optimizer: str = _setting("fit", "adam", "the optimiser")
    schedule: str = _setting("fit", "onecycle", "how the learning rate changes during training")
    weight_decay: float = _setting("fit", 0.0, "L2 penalty on the weights")
    augment: bool = _setting("fit", False, "shift, rotate and scale each training image a little, anew each epoch")
    label_smoothing: float = _setting("fit", 0.0, "the share of each target spread over the other digits")
    device: str = _setting("run", "auto", "auto (CUDA, then Apple MPS, then the CPU), cpu, cuda, cuda:1 or mps")
    precision: str = _setting("run", "auto", "fp32, bf16 (bfloat16 autocast) or auto: $DIGITLAB_PRECISION if set, "
                                             "else bf16 on CPUs with bf16 units, else fp32")

    def __init__(self, **settings):
        """Any settings by name (the others keep their defaults); an unknown name is refused with the list."""
        unknown = [name for name in settings if name not in self.names(*PARTS)]
        if unknown:
            raise DigitlabError(f"{unknown[0]!r} is not a setting of a run; the settings are "
                                f"{', '.join(self.names(*PARTS))}.")
        for f in dataclasses.fields(self):
            object.__setattr__(self, f.name, settings.get(f.name, f.default))
        check_config(self)

    def __getitem__(self, name: str):
        if name not in self.names():
            raise KeyError(f"{name!r} is not a setting of a RunConfig's record; its settings are {list(self)}.")
        return getattr(self, name)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def __hash__(self) -> int:
        return hash(tuple(self.values()))

    @classmethod
    def names(cls, *parts: str) -> list[str]:
        """The settings of `parts` (default: data, model and fit, the ones that decide a run's numbers)."""
        parts = parts or ("data", "model", "fit")
        return [f.name for f in dataclasses.fields(cls) if f.metadata["part"] in parts]

    def settings(self, *parts: str) -> dict:
        """The settings of `parts`: `data`, `model` (the network's options), `fit` or `run` (device, precision)."""
        return {name: getattr(self, name) for name in self.names(*parts)}

    def replace(self, **changes) -> RunConfig:
        """A copy with `changes`, checked like a new config; an unknown setting is refused by name."""
        return RunConfig(**{**self.settings(*PARTS), **changes})

    def key(self) -> str:
        """A short hash of every setting that decides the numbers, defaults included: it names the run's records
        and checkpoints (the device and precision are recorded beside it)."""
        return hashlib.sha1(json.dumps(dict(self), sort_keys=True).encode()).hexdigest()[:10]


def check_config(config: RunConfig) -> None:
    """Refuse settings that cannot train, and write each value one way (0.0, not 0) so that equal configs hash
    alike."""
    for f in dataclasses.fields(config):
        value, kind = getattr(config, f.name), type(f.default)
        if f.name == "n_train":
            continue
        allowed = (int, float, np.integer, np.floating) if kind is float else (int, np.integer) if kind is int \
            else kind
        if isinstance(value, bool | np.bool_) != (kind is bool) or not isinstance(value, allowed):
            raise WrongTypeError(f"{f.name} must be {KINDS[kind]}, not {value!r}.")
        object.__setattr__(config, f.name, kind(value))
    n = config.n_train
    if n is not None and (isinstance(n, bool) or not isinstance(n, int | np.integer) or not 0 < n <= 55_000):
        raise DigitlabError(f"n_train must be a whole number from 1 to 55,000 (or None for all), not {n!r}.")
    object.__setattr__(config, "n_train", None if n in (None, 55_000) else int(n))
    if config.typed_digits < 0:
        raise DigitlabError(f"typed_digits must be 0 or more, not {config.typed_digits}.")
    for name in ("dropout1", "dropout2"):
        if not 0 <= getattr(config, name) < 1:
            raise DigitlabError(f"{name} must be a probability from 0 to below 1, not {getattr(config, name)}.")
    for name in ("num_epochs", "batch_size"):
        if getattr(config, name) < 1:
            raise DigitlabError(f"{name} must be a whole number of at least 1, not {getattr(config, name)}.")
    if not 0 < config.lr < math.inf:
        raise DigitlabError(f"lr must be a positive, finite number, not {config.lr!r}.")
    if not 0 <= config.weight_decay < math.inf:
        raise DigitlabError(f"weight_decay must be a finite number, 0 or more, not {config.weight_decay!r}.")
    if config.optimizer not in OPTIMIZERS:
        raise DigitlabError(f"optimizer must be {one_of(OPTIMIZERS)}, not {config.optimizer!r}.")
    if config.schedule not in SCHEDULES:
        raise DigitlabError(f"schedule must be {one_of(SCHEDULES)}, not {config.schedule!r}.")
    if not 0 <= config.label_smoothing < 1:
        raise DigitlabError(f"label_smoothing must be a share from 0 to below 1 (0.1 is usual), "
                            f"not {config.label_smoothing!r}.")
    check_device_name(config.device)
    check_precision(config.precision)


def check_device_name(name: str) -> None:
    """Refuse a device name that names no device that can train: `auto`, cpu, cuda, cuda:1, mps, xpu."""
    if name == "auto":
        return
    kind = name.split(":")[0]
    index = name[len(kind) + 1:]
    if kind not in DEVICE_TYPES or (":" in name and not index.isdigit()):
        raise DigitlabError(f"device {name!r} cannot train or run a network; use auto, cpu, cuda (cuda:1, ...) "
                            "or mps.")


def check_precision(precision: str, where: str = "the precision setting") -> None:
    """Refuse a precision other than auto, fp32 or bf16; `where` says where it was read."""
    if precision not in ("auto", *PRECISIONS):
        raise DigitlabError(f"precision must be 'auto', 'fp32' or 'bf16', not {precision!r} (check {where}).")


def one_of(names) -> str:
    """'a', 'b' or 'c': the allowed names, for an error message."""
    quoted = [repr(n) for n in names]
    return f"{', '.join(quoted[:-1])} or {quoted[-1]}"


# The course's training recipe for the paper's network (benchmarks/README.md says how it was chosen). Notebooks
# 03, 05 and 06 share the network it trains (`checkpoints.course_model`); 5,000 digits typed in fonts join the
# MNIST training images, so that the network also reads printed digits (chapter 06). Quick mode trains the quick
# recipe, with about the same share of typed digits, so that CI stays quick.
RECIPE = RunConfig(typed_digits=5000, num_epochs=6, batch_size=128, lr=6e-3, schedule="onecycle", augment=True)
FAST_RECIPE = RECIPE.replace(n_train=10_000, typed_digits=1000, num_epochs=2)
# What `python -m digitlab train --recipe NAME` starts from; its other options change single settings.
RECIPES = {"default": RunConfig(), "course": RECIPE, "course-quick": FAST_RECIPE}
