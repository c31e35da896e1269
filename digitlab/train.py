"""Train a network, evaluate it and predict with it."""

from __future__ import annotations

import contextlib
import math
import os
import random
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from digitlab.config import OPTIMIZERS, SCHEDULES, RunConfig, check_device_name, check_precision, one_of
from digitlab.data import Batches, as_images, check_inputs, normalize
from digitlab.errors import DigitlabError, DivergedError, TrainingInterrupted
from digitlab.measure import bf16_supported, run_record
from digitlab.models import eval_mode

# Divergence: an epoch's mean loss this many times the first batch's (course runs stay below 1.1 times),
# or, at the end of 2 or more epochs on this many images, training accuracy this close to guessing (10%).
DIVERGED_LOSS_RATIO = 10.0
MAX_WEIGHT = 1e3   # a trained weight (or BatchNorm statistic) larger than this has exploded (the course network: 8.6)
CHANCE_ACC, CHANCE_MIN_IMAGES = 0.15, 500


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and PyTorch (all devices)."""
    check_seed(seed)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def get_device(name: str = "auto") -> torch.device:
    """`auto` picks CUDA, then Apple MPS, then the CPU; any other name is used as given, if this machine has it."""
    check_device_name(name)
    if name != "auto":
        device = torch.device(name)
        available = {"cuda": torch.cuda.is_available, "mps": torch.backends.mps.is_available,
                     "xpu": lambda: hasattr(torch, "xpu") and torch.xpu.is_available()}
        if device.type in available and not available[device.type]():
            raise DigitlabError(f"device {name!r} is not available on this machine; use auto or cpu.")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def choose_precision(precision: str = "auto", device: str | torch.device = "cpu") -> str:
    """`fp32` or `bf16`; `auto` is $DIGITLAB_PRECISION if set, else bf16 on CPUs with bf16 units, else fp32."""
    check_precision(precision)
    if precision == "auto":
        precision = os.environ.get("DIGITLAB_PRECISION", "").strip().lower() or "auto"
        check_precision(precision, "the DIGITLAB_PRECISION environment variable")
        if precision == "auto":
            return "bf16" if torch.device(device).type == "cpu" and bf16_supported() else "fp32"
    return precision


def autocast(device: torch.device, precision: str):
    """The forward pass's precision: bfloat16 autocast for `bf16`; for `fp32` nothing changes."""
    return torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()


def make_optimizer(name: str, params, lr: float, weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """`adam`, `adamw`, `sgd` (Nesterov momentum 0.9) or `adadelta`."""
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True, weight_decay=weight_decay)
    if name == "adadelta":
        return torch.optim.Adadelta(params, lr=lr, weight_decay=weight_decay)
    raise DigitlabError(f"optimizer must be {one_of(OPTIMIZERS)}, not {name!r}.")


def make_scheduler(name: str, optimizer: torch.optim.Optimizer, num_epochs: int,
                   steps_per_epoch: int):
    """`none`, `step` (x0.1 every third of training), `onecycle` or `plateau` (halve on a stalled val loss)."""
    if name == "none":
        return None
    if name == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=max(1, num_epochs // 3), gamma=0.1)
    if name == "onecycle":
        max_lr = optimizer.param_groups[0]["lr"]
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=max_lr, total_steps=num_epochs * steps_per_epoch)
    if name == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=1)
    raise DigitlabError(f"schedule must be {one_of(SCHEDULES)}, not {name!r}.")


def lr_schedule(schedule: str, lr: float, num_epochs: int, steps_per_epoch: int) -> list[float]:
    """The learning rate at every optimisation step of `digitlab.fit`'s `schedule` (without `plateau`)."""
    opt = make_optimizer("sgd", [torch.zeros(1, requires_grad=True)], lr)
    scheduler, step_after = make_scheduler(schedule, opt, num_epochs, steps_per_epoch), SCHEDULES[schedule]
    if step_after == "val_loss":
        raise DigitlabError(f"the {schedule!r} schedule depends on the validation loss: plot history['lr'] instead.")
    lrs = []
    for _ in range(num_epochs):  # stepped as fit steps it
        for _ in range(steps_per_epoch):
            lrs.append(opt.param_groups[0]["lr"])
            opt.step()
            if step_after == "batch":
                scheduler.step()
        if step_after == "epoch":
            scheduler.step()
    return lrs


def evaluate(net: nn.Module, X: Tensor, y: Tensor, batch_size: int = 1000) -> tuple[float, float]:
    """Mean cross-entropy loss and accuracy of `net` on normalised inputs X and labels y."""
    check_inputs(X, y, "evaluate")
    device = next(net.parameters()).device
    loss, correct = torch.zeros((), device=device), torch.zeros((), device=device, dtype=torch.long)
    with eval_mode(net), torch.inference_mode():
        for Xb, yb in Batches(X, y, batch_size):
            Xb, yb = to_channels_last(Xb.to(device)), yb.to(device)
            logits = net(Xb)
            loss += F.cross_entropy(logits, yb, reduction="sum")
            correct += (logits.argmax(1) == yb).sum()
    return loss.item() / len(y), correct.item() / len(y)


def to_channels_last(X: Tensor) -> Tensor:
    """Images [N, C, H, W] stored channels-last (pixel by pixel), the layout fastest for CPU convolutions."""
    return X.contiguous(memory_format=torch.channels_last)


def check_seed(seed: int) -> None:
    """Refuse a seed that NumPy and PyTorch cannot both take: a whole number from 0 to 2**32 - 1."""
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or not 0 <= seed < 2**32:
        raise DigitlabError(f"a seed must be a whole number from 0 to {2**32 - 1}, not {seed!r}.")


def _check_fit(train: tuple[Tensor, Tensor], val: tuple[Tensor, Tensor] | None, seed: int) -> None:
    """Refuse fit's bad inputs up front, before anything is trained (RunConfig checked its settings)."""
    check_seed(seed)
    check_inputs(*train, "the training set")
    if val is not None:
        check_inputs(*val, "the validation set")


def fit_config(config: RunConfig | None, changes: dict) -> RunConfig:
    """`config` (default: `RunConfig()`) with fit's keyword changes, which may only be fit and run settings."""
    config = config if config is not None else RunConfig()
    if not isinstance(config, RunConfig):
        raise DigitlabError(f"fit's config must be a RunConfig, not a {type(config).__name__}; pass settings as "
                            "keywords: fit(net, train, val, lr=0.01).")
    other = [name for name in changes if name in RunConfig.names("data", "model")]
    if other:
        raise DigitlabError(f"{other[0]!r} is not a setting of fit: fit trains the network and images it is given "
                            f"(its settings: {', '.join(RunConfig.names('fit', 'run'))}).")
    return config.replace(**changes)


def _check_weights(net: nn.Module, lr: float) -> None:
    """Raise DivergedError if training left weights that are not finite or that exploded (the last step is seen
    by no loss when there is no validation set)."""
    largest = max((t.detach().abs().max().item() for t in net.state_dict().values() if t.is_floating_point()),
                  default=0.0)
    if not largest <= MAX_WEIGHT:
        raise DivergedError(f"After training the largest weight is {largest:.3g}: the weights exploded and training "
                            f"diverged. Lower the learning rate (lr={lr}) or check the inputs.")


def _check_progress(history: dict[str, list], first_loss: float, n: int, lr: float, last: bool) -> None:
    """Raise DivergedError if the last epoch's loss exploded or, at the end of training, nothing was learnt."""
    epoch, loss, acc = history["epoch"][-1], history["train_loss"][-1], history["train_acc"][-1]
    val_loss, val_acc = history["val_loss"][-1], history["val_acc"][-1]
    if not math.isnan(val_acc) and not val_loss <= DIVERGED_LOSS_RATIO * first_loss:  # validated: a finite loss
        raise DivergedError(
            f"After epoch {epoch} the validation loss is {val_loss:.3g}, the first batch's was {first_loss:.3g}: "
            f"the weights exploded and training diverged. Lower the learning rate (lr={lr}) or check the inputs.")
    if loss > DIVERGED_LOSS_RATIO * first_loss:
        raise DivergedError(
            f"The mean loss of epoch {epoch} is {loss:.3g}, {loss / first_loss:.0f} times the first batch's "
            f"({first_loss:.3g}): training diverged. Lower the learning rate (lr={lr}) or check the inputs.")
    if last and epoch >= 2 and n >= CHANCE_MIN_IMAGES and acc < CHANCE_ACC and loss >= 0.9 * first_loss:
        raise DivergedError(
            f"After {epoch} epochs the training accuracy is {acc:.1%}, no better than guessing, and the loss "
            f"({loss:.3g}) has not fallen: training failed. Lower the learning rate (lr={lr}) or check the inputs.")


def fit(net: nn.Module, train: tuple[Tensor, Tensor], val: tuple[Tensor, Tensor] | None = None,
        config: RunConfig | None = None, *, seed: int = 0, progress: bool = True, **settings) -> dict:
    """Train `net` on (X, y) as `config` says (default: `RunConfig()`), changed by any fit or run setting given
    as a keyword (`fit(net, train, val, lr=0.01, precision="fp32")`); return the per-epoch history and, under
    "run", where and how it ran.

    Ctrl-C stops training and returns the history of the finished epochs, with `history["run"]["interrupted"]`.
    """
    config = fit_config(config, settings)
    _check_fit(train, val, seed)
    device = get_device(config.device)
    net.to(device, memory_format=torch.channels_last)
    X, y = (t.to(device) for t in train)
    batches = Batches(X, y, config.batch_size, shuffle=True, augment=config.augment, seed=seed)
    torch.manual_seed(seed)  # dropout masks
    # bfloat16 halves the memory traffic where the CPU has bf16 units; elsewhere it is emulated and slower.
    precision = choose_precision(config.precision, device)
    lr, num_epochs = config.lr, config.num_epochs
    opt = make_optimizer(config.optimizer, net.parameters(), lr, config.weight_decay)
    scheduler, step_after = make_scheduler(config.schedule, opt, num_epochs, len(batches)), SCHEDULES[config.schedule]
    keys = ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds"]
    history = {k: [] for k in keys}
    first_loss = 0.0  # the first batch's loss: the yardstick of divergence
    bar = tqdm(total=num_epochs * len(batches), unit="batch", disable=not progress)
    try:
        for epoch in range(1, num_epochs + 1):
            bar.set_description(f"epoch {epoch}/{num_epochs}")
            net.train()
            start, loss_sum, correct = time.perf_counter(), 0.0, 0
            for i, (Xb, yb) in enumerate(batches):
                with autocast(device, precision):
                    logits = net(to_channels_last(Xb))
                    loss = F.cross_entropy(logits, yb, label_smoothing=config.label_smoothing)
                if not torch.isfinite(loss):
                    raise DivergedError(
                        f"The loss became {loss.item()} at epoch {epoch}, batch {i + 1}: training "
                        f"diverged. Lower the learning rate (lr={lr}) or check the inputs.")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if step_after == "batch":
                    scheduler.step()
                loss_sum += loss.item() * len(yb)
                first_loss = first_loss or loss.item()
                correct += (logits.argmax(1) == yb).sum().item()
                bar.update()
            seconds = time.perf_counter() - start
            val_loss, val_acc = evaluate(net, *val) if val is not None else (float("nan"),) * 2
            if step_after == "epoch":
                scheduler.step()
            elif step_after == "val_loss":
                scheduler.step(val_loss if val is not None else loss_sum / len(y))
            for k, v in zip(keys, [epoch, loss_sum / len(y), correct / len(y), val_loss, val_acc,
                                   opt.param_groups[0]["lr"], seconds], strict=True):
                history[k].append(v)
            _check_progress(history, first_loss, len(y), lr, last=epoch == num_epochs)
            bar.set_postfix(loss=f"{loss_sum / len(y):.4f}", val_acc=f"{val_acc:.4f}")
    except KeyboardInterrupt:
        print(f"Interrupted: returning the history of the {len(history['epoch'])} finished epoch(s).")
    finally:
        bar.close()
    net.eval()
    _check_weights(net, lr)
    history["run"] = {**run_record(device, precision), "interrupted": len(history["epoch"]) < num_epochs}
    return history


def require_finished(history: dict, what: str) -> None:
    """Raise TrainingInterrupted if `fit` was stopped (Ctrl-C) before its last epoch; `what` says what is lost."""
    if history["run"].get("interrupted"):
        raise TrainingInterrupted(f"training stopped after {len(history['epoch'])} epoch(s); {what}. "
                                  "Run it again to train from the start.")


def batched_logits(net: nn.Module, X: Tensor, batch_size: int = 1000) -> Tensor:
    """Logits [N, C] of `net` in evaluation mode for normalised inputs X [N, 1, 28, 28], batch by batch, on the CPU."""
    device = next(net.parameters()).device
    with eval_mode(net), torch.inference_mode():
        return torch.cat([net(Xb.to(device)).float().cpu() for Xb, _ in Batches(X, torch.zeros(len(X)), batch_size)])


def predict_proba(net: nn.Module, images, batch_size: int = 1000) -> Tensor:
    """Class probabilities [N, 10] for raw images (uint8 0-255 or float 0-1, 28x28)."""
    return F.softmax(batched_logits(net, normalize(as_images(images)), batch_size), dim=1)


def predict(net: nn.Module, images, batch_size: int = 1000) -> Tensor:
    """Predicted digit for each raw image (uint8 0-255 or float 0-1, 28x28)."""
    return predict_proba(net, images, batch_size).argmax(1)


