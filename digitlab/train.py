"""Train, evaluate, predict with and checkpoint a network."""

from __future__ import annotations

import hashlib
import json
import os
import random
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from digitlab import foreign
from digitlab.data import Batches, check_inputs, mnist_splits, normalize
from digitlab.errors import DigitlabError, DivergedError, MissingFileError
from digitlab.files import atomic_path, check_writable
from digitlab.models import DigitRecognitionCNN, eval_mode
from digitlab.settings import MODELS_DIR, cpu_capability, cpu_name

ARCHITECTURES = {"DigitRecognitionCNN": DigitRecognitionCNN}
PRECISIONS = ("fp32", "bf16")  # float32 everywhere, or bfloat16 autocast for the forward pass

# The course's training recipe for the paper's network. Notebooks 03, 05 and 06 share the
# checkpoint it makes (`course_model`); fast mode trains less so that CI stays quick.
# `typed_digits` digits typed in fonts (digitlab.foreign.typed_digits) join the MNIST training images, so that
# the network also reads printed digits (chapter 06); the quick recipe keeps about the same share of them.
# Measured once each (seed 0) on a 2-core AMD EPYC (Zen 3) CPU, torch 2.14: RECIPE trains in 218 s to
# 99.43% test accuracy; FAST_RECIPE in 14 s to 97.78%. benchmarks/RESULTS.md has the benchmark's numbers.
RECIPE = {"num_epochs": 6, "batch_size": 128, "lr": 6e-3, "schedule": "onecycle", "augment": True,
          "typed_digits": 5000}
FAST_RECIPE = {**RECIPE, "num_epochs": 2, "n_train": 10_000, "typed_digits": 1000}
OPTIMIZERS = ("adam", "adamw", "sgd", "adadelta")
# The learning-rate schedules (`make_scheduler` makes them) and when `fit` steps each: after every batch, after
# every epoch, after every epoch given the validation loss, or never.
SCHEDULES = {"none": None, "step": "epoch", "onecycle": "batch", "plateau": "val_loss"}
# Divergence: an epoch's mean loss this many times the first batch's (course runs stay below 1.1 times),
# or, at the end of 2 or more epochs on this many images, training accuracy this close to guessing (10%).
DIVERGED_LOSS_RATIO = 10.0
CHANCE_ACC, CHANCE_MIN_IMAGES = 0.15, 500
SETTINGS = ("batch_size", "lr", "optimizer", "schedule")  # fit's keywords that check_settings checks


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and PyTorch (all devices)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def get_device(name: str = "auto") -> torch.device:
    """`auto` picks CUDA, then Apple MPS, then the CPU; any other name is used as given, if this machine has it."""
    if name != "auto":
        try:
            device = torch.device(name)
        except RuntimeError:
            raise DigitlabError(f"unknown device {name!r}; use auto, cpu, cuda or mps.") from None
        available = {"cuda": torch.cuda.is_available, "mps": torch.backends.mps.is_available}
        if device.type in available and not available[device.type]():
            raise DigitlabError(f"device {name!r} is not available on this machine; use auto or cpu.")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def bf16_supported() -> bool:
    """Whether this CPU computes in bfloat16 natively (AVX-512 BF16 or AMX on x86, BF16 on Arm; Linux only)."""
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.exists():
        return False
    flags = set(cpuinfo.read_text().split())
    return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})


def choose_precision(precision: str = "auto", device: str | torch.device = "cpu") -> str:
    """`fp32` or `bf16`; `auto` is $DIGITLAB_PRECISION if set, else bf16 on CPUs with bf16 units, else fp32."""
    if precision == "auto":
        precision = os.environ.get("DIGITLAB_PRECISION", "").strip().lower() or "auto"
        if precision == "auto":
            return "bf16" if torch.device(device).type == "cpu" and bf16_supported() else "fp32"
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be 'auto', 'fp32' or 'bf16', not {precision!r} "
                         "(check the precision argument and the DIGITLAB_PRECISION environment variable).")
    return precision


def run_info(device: str | torch.device, precision: str) -> dict:
    """What decides a run's numbers besides the code: device, precision, CPU and its vector capability, torch."""
    return {"device": str(device), "precision": precision, "cpu": cpu_name(), "cpu_capability": cpu_capability(),
            "threads": torch.get_num_threads(), "torch": str(torch.__version__)}


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
    raise ValueError(f"optimizer must be {_one_of(OPTIMIZERS)}, not {name!r}.")


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
    raise ValueError(f"schedule must be {_one_of(SCHEDULES)}, not {name!r}.")


def _one_of(names) -> str:
    """'a', 'b' or 'c': the allowed names, for an error message."""
    quoted = [repr(n) for n in names]
    return f"{', '.join(quoted[:-1])} or {quoted[-1]}"


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


def check_settings(num_epochs: int = 1, batch_size: int = 1, lr: float = 1e-3, optimizer: str = "adam",
                   schedule: str = "none") -> None:
    """Refuse settings that cannot train, before any data is loaded or moved."""
    for name, value in [("num_epochs", num_epochs), ("batch_size", batch_size)]:
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise DigitlabError(f"{name} must be a whole number of at least 1, not {value!r}.")
    if not lr > 0:
        raise DigitlabError(f"lr must be a positive number, not {lr!r}.")
    if optimizer not in OPTIMIZERS:
        raise DigitlabError(f"optimizer must be {_one_of(OPTIMIZERS)}, not {optimizer!r}.")
    if schedule not in SCHEDULES:
        raise DigitlabError(f"schedule must be {_one_of(SCHEDULES)}, not {schedule!r}.")


def _check_fit(train: tuple[Tensor, Tensor], val: tuple[Tensor, Tensor] | None, **settings) -> None:
    """Refuse fit's bad settings and inputs up front, before anything is trained."""
    check_settings(**settings)
    check_inputs(*train, "the training set")
    if val is not None:
        check_inputs(*val, "the validation set")


def _check_progress(history: dict[str, list], first_loss: float, n: int, lr: float, last: bool) -> None:
    """Raise DivergedError if the last epoch's loss exploded or, at the end of training, nothing was learnt."""
    epoch, loss, acc = history["epoch"][-1], history["train_loss"][-1], history["train_acc"][-1]
    if loss > DIVERGED_LOSS_RATIO * first_loss:
        raise DivergedError(
            f"The mean loss of epoch {epoch} is {loss:.3g}, {loss / first_loss:.0f} times the first batch's "
            f"({first_loss:.3g}): training diverged. Lower the learning rate (lr={lr}) or check the inputs.")
    if last and epoch >= 2 and n >= CHANCE_MIN_IMAGES and acc < CHANCE_ACC and loss >= 0.9 * first_loss:
        raise DivergedError(
            f"After {epoch} epochs the training accuracy is {acc:.1%}, no better than guessing, and the loss "
            f"({loss:.3g}) has not fallen: training failed. Lower the learning rate (lr={lr}) or check the inputs.")


def fit(net: nn.Module, train: tuple[Tensor, Tensor], val: tuple[Tensor, Tensor] | None = None, *,
        num_epochs: int = 10, lr: float = 1e-3, batch_size: int = 128, optimizer: str = "adam",
        schedule: str = "onecycle", weight_decay: float = 0.0, augment: bool = False,
        seed: int = 0, device: str = "auto", precision: str = "auto", progress: bool = True) -> dict:
    """Train `net` on (X, y); return the per-epoch history and, under "run", where and how it ran.

    `precision` is `fp32`, `bf16` (bfloat16 autocast) or `auto` (see `choose_precision`).
    Ctrl-C stops training and returns the history of the finished epochs.
    """
    _check_fit(train, val, num_epochs=num_epochs, batch_size=batch_size, lr=lr, optimizer=optimizer,
               schedule=schedule)
    device = get_device(device)
    net.to(device, memory_format=torch.channels_last)
    X, y = (t.to(device) for t in train)
    batches = Batches(X, y, batch_size, shuffle=True, augment=augment, seed=seed)
    torch.manual_seed(seed)  # dropout masks
    # bfloat16 halves the memory traffic where the CPU has bf16 units; elsewhere it is emulated and slower.
    precision = choose_precision(precision, device)
    opt = make_optimizer(optimizer, net.parameters(), lr, weight_decay)
    scheduler, step_after = make_scheduler(schedule, opt, num_epochs, len(batches)), SCHEDULES[schedule]
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
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
                    logits = net(to_channels_last(Xb))
                    loss = F.cross_entropy(logits, yb)
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
    history["run"] = run_info(device, precision)
    return history


def _as_images(images) -> Tensor:
    """Check raw images and return them as float pixels in [0, 1], shaped [N, 28, 28]."""
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(images)
    if not isinstance(images, Tensor):
        raise TypeError(f"images must be a torch.Tensor or numpy array, not {type(images).__name__}.")
    shape = tuple(images.shape)
    if images.dim() == 4 and shape[1] == 1:
        images = images[:, 0]
    elif images.dim() == 2:
        images = images[None]
    if images.dim() != 3 or tuple(images.shape[1:]) != (28, 28) or len(images) == 0:
        raise ValueError(
            f"images must be 28x28 pixels shaped [28, 28], [N, 28, 28] or [N, 1, 28, 28]; got {list(shape)}. "
            "For a picture of another size use digitlab.preprocess.to_mnist.")
    if images.dtype == torch.uint8:
        return images.float() / 255
    if not images.is_floating_point():
        raise TypeError(f"images must hold uint8 pixels (0-255) or floats in [0, 1], not {images.dtype}.")
    images = images.float()
    if not torch.isfinite(images).all():
        raise ValueError("images contain NaN or infinite values.")
    lo, hi = images.min().item(), images.max().item()
    if lo < 0 or hi > 1:
        raise ValueError(
            f"float images must hold pixel values in [0, 1]; these range from {lo:.3g} to {hi:.3g}. "
            "Pass raw pixels (uint8 0-255, or floats divided by 255), not normalised ones.")
    return images


def batched_logits(net: nn.Module, X: Tensor, batch_size: int = 1000) -> Tensor:
    """Logits [N, C] of `net` in evaluation mode for normalised inputs X [N, 1, 28, 28], batch by batch, on the CPU."""
    device = next(net.parameters()).device
    with eval_mode(net), torch.inference_mode():
        return torch.cat([net(Xb.to(device)).float().cpu() for Xb, _ in Batches(X, torch.zeros(len(X)), batch_size)])


def predict_proba(net: nn.Module, images, batch_size: int = 1000) -> Tensor:
    """Class probabilities [N, 10] for raw images (uint8 0-255 or float 0-1, 28x28)."""
    return F.softmax(batched_logits(net, normalize(_as_images(images)), batch_size), dim=1)


def predict(net: nn.Module, images, batch_size: int = 1000) -> Tensor:
    """Predicted digit for each raw image (uint8 0-255 or float 0-1, 28x28)."""
    return predict_proba(net, images, batch_size).argmax(1)


def save(net: nn.Module, path: str | Path, **meta) -> Path:
    """Write a checkpoint (architecture, its options, weights, `meta`) atomically to `path`."""
    checkpoint = {"arch": type(net).__name__, "config": getattr(net, "config", {}),
                  "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()},
                  "meta": meta}
    with atomic_path(path) as tmp:
        torch.save(checkpoint, tmp)
    return Path(path)


def load(path: str | Path, device: str = "cpu") -> tuple[nn.Module, dict]:
    """Read a checkpoint written by `save` (or a bare state_dict of the paper's network)."""
    path = Path(path)
    checkpoint = _read_checkpoint(path, device)
    if isinstance(checkpoint, dict) and checkpoint and all(isinstance(v, Tensor) for v in checkpoint.values()):
        checkpoint = {"arch": "DigitRecognitionCNN", "config": {}, "state_dict": checkpoint, "meta": {}}
    if not isinstance(checkpoint, dict) or not {"arch", "state_dict"} <= checkpoint.keys():
        raise DigitlabError(f"{path} is not a digitlab checkpoint: write checkpoints with digitlab.save.")
    arch = checkpoint["arch"]
    if arch not in ARCHITECTURES:
        raise DigitlabError(f"{path} holds a {arch!r}, which digitlab does not know; "
                            f"known architectures: {', '.join(ARCHITECTURES)}.")
    config = checkpoint.get("config", {})
    try:
        net = ARCHITECTURES[arch](**config)
    except TypeError:
        raise DigitlabError(f"{path} is not a checkpoint of this digitlab: its {arch} options {config} are not "
                            f"all options of {arch}.") from None
    try:
        net.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as err:
        raise DigitlabError(f"{path} was saved from a different architecture than {arch}"
                            f"({config}):\n{err}") from err
    return net.to(device).eval(), checkpoint.get("meta", {})


def _read_checkpoint(path: Path, device: str):
    """The object in a checkpoint file, read safely (tensors and plain data only), or a clear error."""
    if not path.exists():
        raise MissingFileError(f"No checkpoint at {path}. Train one with "
                               f"`python -m digitlab train --out {path}`.")
    if path.is_dir():
        raise DigitlabError(f"{path} is a folder, not a checkpoint file.")
    if path.stat().st_size == 0:
        raise DigitlabError(f"{path} is empty (0 bytes): not a digitlab checkpoint. Its writer was "
                            "probably stopped; train it again.")
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except PermissionError:
        raise DigitlabError(f"{path}: permission denied; make it readable (chmod a+r).") from None
    except Exception:  # PyTorch's own message advises weights_only=False: unsafe for a file of unknown origin
        raise DigitlabError(f"{path} is not a digitlab checkpoint: it is not a readable PyTorch checkpoint, or "
                            "it holds more than tensors and plain data, which digitlab never loads.") from None


def training_set(n_train: int | None = None, typed_digits: int = 0) -> tuple[Tensor, Tensor]:
    """`n_train` MNIST training images (None: all 55,000) followed by `typed_digits` typed ones, with labels."""
    return _with_typed(mnist_splits(n_train=n_train)["train"], typed_digits)


def _with_typed(train: tuple[Tensor, Tensor], typed_digits: int) -> tuple[Tensor, Tensor]:
    """Training images and labels with `typed_digits` typed digits appended."""
    X_typed, y_typed = foreign.typed_digits(typed_digits)
    return torch.cat([train[0], X_typed]), torch.cat([train[1], y_typed])


def load_or_train(name: str, num_epochs: int = 10, n_train: int | None = None, seed: int = 0,
                  model_kwargs: dict | None = None, typed_digits: int = 0, models_dir: str | Path = MODELS_DIR,
                  device: str = "auto", progress: bool = True, **fit_kwargs) -> tuple[nn.Module, dict]:
    """Load the checkpoint trained with exactly these settings from `models_dir`, or train and save it.

    It trains on `training_set(n_train, typed_digits)` and validates on MNIST's fixed validation split.
    """
    config = {"num_epochs": num_epochs, "n_train": n_train, "seed": seed,
              "model_kwargs": model_kwargs or {}, **fit_kwargs}
    if typed_digits:  # only then: the settings, and so the file names, of networks trained without stay as they were
        config["typed_digits"] = typed_digits
    key = hashlib.sha1(json.dumps(config, sort_keys=True).encode()).hexdigest()[:8]
    path = Path(models_dir) / f"{name}-{key}.pt"
    if path.exists():
        net, meta = load(path, device=str(get_device(device)))
        return net, meta["history"]
    check_settings(num_epochs=num_epochs, **{k: v for k, v in fit_kwargs.items() if k in SETTINGS})
    check_writable(path)
    set_seed(seed)
    data = mnist_splits(n_train=n_train)  # the fixed split, whatever the training seed
    net = DigitRecognitionCNN(**(model_kwargs or {}))
    history = fit(net, _with_typed(data["train"], typed_digits), data["val"], num_epochs=num_epochs, seed=seed,
                  device=device, progress=progress, **fit_kwargs)
    if len(history["epoch"]) == num_epochs:
        save(net, path, history=history, train_config=config)
    return net, history


def course_model(fast: bool = False, progress: bool = True) -> tuple[nn.Module, dict]:
    """The paper's network trained with the course recipe (FAST_RECIPE if `fast`), cached in models/."""
    return load_or_train("seed", progress=progress, **(FAST_RECIPE if fast else RECIPE))
