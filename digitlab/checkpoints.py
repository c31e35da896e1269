"""Save and load networks, and train the one a run config describes once: the course network and its kin."""

from __future__ import annotations

import io
from pathlib import Path

import torch
from torch import Tensor, nn

from digitlab.config import FAST_RECIPE, RECIPE, RunConfig
from digitlab.data import mnist_splits
from digitlab.errors import DigitlabError, MissingFileError
from digitlab.files import atomic_path, check_writable
from digitlab.models import DigitRecognitionCNN
from digitlab.non_mnist import typed_digits
from digitlab.settings import MODELS_DIR
from digitlab.train import fit, get_device, require_finished, set_seed

ARCHITECTURES = {"DigitRecognitionCNN": DigitRecognitionCNN}


def save(net: nn.Module, path: str | Path, **meta) -> Path:
    """Write a checkpoint (architecture, its options, weights, `meta`) atomically to `path`."""
    state = {k: v.detach().cpu() for k, v in net.state_dict().items()}
    check_finite(state, f"cannot save {path}")
    checkpoint = {"arch": type(net).__name__, "config": getattr(net, "config", {}), "state_dict": state, "meta": meta}
    buffer = io.BytesIO()   # written whole below, so that a full disk is a plain OSError, not torch's zip writer's
    torch.save(checkpoint, buffer)
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(buffer.getvalue())
    return Path(path)


def check_finite(state_dict: dict[str, Tensor], what: str) -> None:
    """Refuse weights or buffers that hold NaN or infinity; `what` starts the message (the file, or the action)."""
    broken = [name for name, t in state_dict.items() if t.is_floating_point() and not torch.isfinite(t).all()]
    if broken:
        raise DigitlabError(f"{what}: the network's weights are not finite numbers (NaN or infinity), in "
                            f"{', '.join(broken[:3])}: its training diverged. Train it again, with a lower "
                            "learning rate.")


def load(path: str | Path, device: str = "cpu") -> tuple[nn.Module, dict]:
    """Read a checkpoint written by `save` (or a bare state_dict of the paper's network)."""
    path = Path(path)
    get_device(device)   # a device this machine lacks is named as such, not taken for an unreadable file
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
    if not isinstance(config, dict):
        raise DigitlabError(f"{path} is not a digitlab checkpoint: its options are a {type(config).__name__}, "
                            "not a dict. Write checkpoints with digitlab.save.")
    try:
        net = ARCHITECTURES[arch](**config)
    except TypeError:
        raise DigitlabError(f"{path} is not a checkpoint of this digitlab: its {arch} options {config} are not "
                            f"all options of {arch}.") from None
    except ValueError as err:
        raise DigitlabError(f"{path} holds impossible {arch} options {config}: {err}.") from None
    if not isinstance(checkpoint["state_dict"], dict) or not isinstance(checkpoint.get("meta", {}), dict):
        raise DigitlabError(f"{path} is not a digitlab checkpoint: its weights or its record are not what "
                            "digitlab.save writes. Write checkpoints with digitlab.save.")
    if any(isinstance(t, Tensor) and t.is_meta for t in checkpoint["state_dict"].values()):
        raise DigitlabError(f"{path} holds no weights: its tensors are on PyTorch's 'meta' device, which keeps "
                            "shapes only. Save the network after its weights are loaded or trained.")
    try:
        net.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as err:
        raise DigitlabError(f"{path} was saved from a different architecture than {arch}"
                            f"({config}):\n{err}") from err
    check_finite(net.state_dict(), str(path))
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


def checkpoint_path(name: str, config: RunConfig, seed: int = 0, models_dir: str | Path = MODELS_DIR) -> Path:
    """Where `load_or_train` keeps the network `config` trains with `seed`: the file name holds the config's key."""
    return Path(models_dir) / f"{name}-{config.key()}-seed{seed}.pt"


HISTORY_KEYS = {"epoch", "train_loss", "train_acc", "val_loss", "val_acc"}   # per epoch, in what fit returns


def load_or_train(name: str, config: RunConfig, seed: int = 0, models_dir: str | Path = MODELS_DIR,
                  progress: bool = True) -> tuple[nn.Module, dict]:
    """Load the network trained with exactly `config` and `seed` from `models_dir`, or train and save it.

    It trains as `train_network` does, on `config`'s device. Ctrl-C during training raises TrainingInterrupted:
    a half-trained network is neither saved nor returned.
    """
    path = checkpoint_path(name, config, seed, models_dir)
    if path.exists():
        net, meta = load(path, device=str(get_device(config.device)))
        history = meta.get("history")
        if not isinstance(history, dict) or not HISTORY_KEYS <= set(history) or \
                any(len(history[k]) != config.num_epochs for k in HISTORY_KEYS):
            raise DigitlabError(f"{path} does not hold the history of a finished {config.num_epochs}-epoch run; it "
                                "was not written by load_or_train. Delete it, and it will be trained again.")
        return net, history
    check_writable(path)
    net, history = train_network(config, seed, progress)
    save(net, path, history=history, config=dict(config), seed=seed)
    return net, history


def training_set(config: RunConfig, splits: dict | None = None) -> tuple[Tensor, Tensor]:
    """The images and labels `config` trains on: its MNIST training images (from `splits` if given), then its
    typed digits."""
    X, y = (splits or mnist_splits(n_train=config.n_train))["train"]
    X_typed, y_typed = typed_digits(config.typed_digits)
    return torch.cat([X, X_typed]), torch.cat([y, y_typed])


def train_network(config: RunConfig, seed: int = 0, progress: bool = True) -> tuple[nn.Module, dict]:
    """The paper's network trained with `config` and `seed` on `training_set(config)`, validated on MNIST's fixed
    validation split after every epoch; raises TrainingInterrupted if training was stopped."""
    set_seed(seed)
    splits = mnist_splits(n_train=config.n_train)  # the fixed split, whatever the training seed
    net = DigitRecognitionCNN(**config.settings("model"))
    history = fit(net, training_set(config, splits), splits["val"], config, seed=seed, progress=progress)
    require_finished(history, "nothing was saved")
    return net, history


def course_model(fast: bool = False, progress: bool = True) -> tuple[nn.Module, dict]:
    """The paper's network trained with the course recipe (FAST_RECIPE if `fast`), cached in models/."""
    return load_or_train("course", FAST_RECIPE if fast else RECIPE, progress=progress)
