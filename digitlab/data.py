"""MNIST: find, download and verify the original IDX files; split, normalise and batch them."""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from digitlab.errors import DigitlabError, MissingFileError, WrongTypeError
from digitlab.settings import DOWNLOAD_DIR

# MD5 of the uncompressed files, as published with MNIST.
MD5 = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
         "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
SIZES = {"train": 60_000, "test": 10_000}
GZIP_MAGIC = b"\x1f\x8b"

# Mean and standard deviation of the 60,000 training pixels (scaled to [0, 1]);
# `normalization_constants` recomputes them from the data.
MNIST_MEAN = 0.1307
MNIST_STD = 0.3081


class MNISTFileError(DigitlabError):
    """An MNIST file is missing, truncated, corrupted or not the file it claims to be."""


def _uncompressed(path: Path) -> bytes:
    """The bytes of `path`, gunzipped if they are gzipped."""
    try:
        raw = path.read_bytes()
        return gzip.decompress(raw) if raw[:2] == GZIP_MAGIC else raw  # gzipped whatever its name says
    except PermissionError:
        raise MNISTFileError(f"{path}: permission denied. Make it readable (chmod a+r) or set DIGITLAB_DATA "
                             "to a folder with readable copies.") from None
    except (OSError, EOFError, gzip.BadGzipFile) as err:
        raise MNISTFileError(f"{path}: cannot read it ({err}). Delete it and load again.") from err


def read_idx(path: str | Path) -> tuple[np.ndarray, str]:
    """Parse one IDX file (gzipped or not) into a uint8 array, checking its header and size; with the MD5 of its
    uncompressed bytes."""
    data = _uncompressed(Path(path))
    return parse_idx(data, name=str(path)), hashlib.md5(data).hexdigest()


def parse_idx(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Parse the bytes of an uncompressed IDX file into a uint8 array."""
    header, shape = idx_layout(data, name)
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def idx_layout(data: bytes, name: str = "<bytes>") -> tuple[int, tuple[int, ...]]:
    """(header bytes, array shape) of an uncompressed uint8 IDX file, checked against its size."""
    if not data:
        raise MNISTFileError(f"{name}: the file is empty (0 bytes). Delete it and load again.")
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise MNISTFileError(f"{name}: not an IDX file (bad magic number {data[:4].hex()}).")
    if data[2] != 0x08:
        raise MNISTFileError(f"{name}: IDX type code {data[2]:#04x}; MNIST files hold uint8 (0x08).")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise MNISTFileError(f"{name}: truncated header ({len(data)} bytes).")
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected = header + math.prod(shape)   # exact: sizes that overflow 64 bits are simply too big
    if len(data) != expected:
        raise MNISTFileError(
            f"{name}: {len(data)} bytes but the header {shape} needs {expected}: "
            "the file is truncated or corrupted. Delete it and load again.")
    return header, shape


def _candidates(stem: str) -> list[Path]:
    """Every place `stem` may be found, in the order they are tried."""
    dirs = [Path(os.environ["DIGITLAB_DATA"])] if os.environ.get("DIGITLAB_DATA") else []
    if dirs and dirs[0].is_file():
        raise DigitlabError(f"DIGITLAB_DATA={dirs[0]} is a file; set it to the folder that holds the MNIST files.")
    dirs.append(DOWNLOAD_DIR)
    return [d / f"{stem}{ext}" for d in dirs for ext in (".gz", "")]


def _verify(path: Path, stem: str) -> np.ndarray:
    """Read `path` and check that it is the original MNIST file `stem`."""
    array, digest = read_idx(path)
    if digest != MD5[stem]:
        raise MNISTFileError(
            f"{path}: MD5 {digest} does not match the published {MD5[stem]} for {stem}: "
            "the file is corrupted or a different file. Delete it and load again.")
    return array


def _download(stem: str) -> Path:
    """Download `stem`.gz from torchvision's MNIST mirrors; rename it into place once verified."""
    from torchvision.datasets import MNIST
    from torchvision.datasets.utils import download_url

    DOWNLOAD_DIR.mkdir(parents=True, exist_ok=True)
    target = DOWNLOAD_DIR / f"{stem}.gz"
    errors = []
    for mirror in MNIST.mirrors:
        with tempfile.TemporaryDirectory(dir=DOWNLOAD_DIR) as tmp:
            try:
                download_url(mirror + target.name, root=tmp, filename=target.name)
                _verify(Path(tmp) / target.name, stem)
            except Exception as err:  # network errors come in many types
                errors.append(f"{mirror}: {err}")
                continue
            os.replace(Path(tmp) / target.name, target)
            return target
    looked = "\n  ".join(str(p) for p in _candidates(stem))
    raise MissingFileError(
        f"MNIST file {stem} was not found and could not be downloaded.\nLooked in:\n  {looked}\n"
        f"Download errors:\n  " + "\n  ".join(errors) + "\n"
        "Copy the four MNIST IDX files (gzipped or not) into data/MNIST/raw/, "
        "or set DIGITLAB_DATA to the folder that holds them.")


def mnist_file(stem: str, download: bool = True) -> np.ndarray:
    """Return the verified contents of one MNIST file, downloading it if it is nowhere local."""
    for path in _candidates(stem):
        if path.exists():
            return _verify(path, stem)
    if not download:
        looked = "\n  ".join(str(p) for p in _candidates(stem))
        raise MissingFileError(f"MNIST file {stem} not found. Looked in:\n  {looked}")
    return _verify(_download(stem), stem)


def load_mnist(split: str = "train", download: bool = True) -> tuple[Tensor, Tensor]:
    """Load an MNIST split: uint8 images [N, 28, 28] and int64 labels [N]."""
    if split not in FILES:
        raise DigitlabError(f"split must be 'train' or 'test', not {split!r}.")
    images, labels = (mnist_file(stem, download) for stem in FILES[split])
    n = SIZES[split]
    if images.shape != (n, 28, 28) or labels.shape != (n,):
        raise MNISTFileError(f"{split}: expected {n} images of 28x28 and {n} labels, "
                             f"got {images.shape} and {labels.shape}.")
    return torch.from_numpy(images.copy()), torch.from_numpy(labels.astype(np.int64))


def normalization_constants(X: Tensor) -> tuple[float, float]:
    """Mean and standard deviation of uint8 images after scaling to [0, 1]."""
    x = X.double() / 255
    return x.mean().item(), x.std().item()


def normalize(X: Tensor) -> Tensor:
    """Images [N, 28, 28] (uint8 0-255 or float 0-1) -> normalised float32 inputs [N, 1, 28, 28]."""
    x = X.float() / 255 if X.dtype == torch.uint8 else X.float()
    return ((x - MNIST_MEAN) / MNIST_STD).unsqueeze(1)


def check_inputs(X: Tensor, y: Tensor, name: str = "inputs") -> None:
    """Refuse anything but normalised images [N, 1, 28, 28] and int64 labels 0-9 (what fit and evaluate take)."""
    if not isinstance(X, Tensor) or not isinstance(y, Tensor):
        raise WrongTypeError(f"{name}: images and labels must be torch tensors, not {type(X).__name__} "
                             f"and {type(y).__name__}.")
    if X.dim() != 4 or tuple(X.shape[1:]) != (1, 28, 28):
        raise DigitlabError(f"{name}: images must be normalised inputs shaped [N, 1, 28, 28], not {list(X.shape)}. "
                            "Call digitlab.normalize(images) on raw [N, 28, 28] images.")
    if len(X) == 0:
        raise DigitlabError(f"{name}: no images.")
    if len(y) != len(X) or y.dim() != 1:
        raise DigitlabError(f"{name}: {len(X)} images need {len(X)} labels shaped [N]; got {list(y.shape)}.")
    check_normalised(X, name)
    if not torch.isfinite(X).all():
        bad = int((~torch.isfinite(X)).flatten(1).any(1).sum())
        raise DigitlabError(f"{name}: {bad} of {len(X)} images hold NaN or infinite pixels; check how they were made.")
    if y.dtype != torch.int64:
        raise WrongTypeError(f"{name}: labels must be int64 class indices (torch.long), not {y.dtype}.")
    lo, hi = y.min().item(), y.max().item()
    if lo < 0 or hi > 9:
        raise DigitlabError(f"{name}: labels must be digits 0-9; these range from {lo} to {hi}.")


def as_images(images) -> Tensor:
    """Check raw images and return them as float pixels in [0, 1], shaped [N, 28, 28]."""
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(images)
    if not isinstance(images, Tensor):
        raise WrongTypeError(f"images must be a torch.Tensor or numpy array, not {type(images).__name__}.")
    shape = tuple(images.shape)
    if images.dim() == 4 and shape[1] == 1:
        images = images[:, 0]
    elif images.dim() == 2:
        images = images[None]
    if images.dim() != 3 or tuple(images.shape[1:]) != (28, 28) or len(images) == 0:
        raise DigitlabError(
            f"images must be 28x28 pixels shaped [28, 28], [N, 28, 28] or [N, 1, 28, 28]; got {list(shape)}. "
            "For a picture of another size use digitlab.preprocess.to_mnist.")
    if images.dtype == torch.uint8:
        return images.float() / 255
    if not images.is_floating_point():
        raise WrongTypeError(f"images must hold uint8 pixels (0-255) or floats in [0, 1], not {images.dtype}.")
    images = images.float()
    if not torch.isfinite(images).all():
        raise DigitlabError("images contain NaN or infinite values.")
    lo, hi = images.min().item(), images.max().item()
    if lo < 0 or hi > 1:
        raise DigitlabError(
            f"float images must hold pixel values in [0, 1]; these range from {lo:.3g} to {hi:.3g}. "
            "Pass raw pixels (uint8 0-255, or floats divided by 255), not normalised ones.")
    return images


def check_normalised(X: Tensor, name: str = "inputs") -> None:
    """Refuse raw pixels (uint8, or floats in [0, 1] or [0, 255]) where normalised inputs are expected."""
    if not X.is_floating_point():
        raise WrongTypeError(f"{name}: {X.dtype} pixels, not normalised float inputs. "
                             "Call digitlab.normalize(images) first.")
    lo, hi = X.min().item(), X.max().item()
    if (lo >= 0 and hi <= 1) or hi > 10:
        raise DigitlabError(f"{name}: values from {lo:.3g} to {hi:.3g} look like raw pixels, not normalised inputs "
                            f"(MNIST normalised spans about {-MNIST_MEAN / MNIST_STD:.2f} to "
                            f"{(1 - MNIST_MEAN) / MNIST_STD:.2f}). Call digitlab.normalize(images) first.")


def stratified_split(y: Tensor, n: int, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Split indices of `y` into (rest, chosen) with `n` chosen, class proportions kept."""
    if not 0 < n < len(y):
        raise DigitlabError(f"n must be between 1 and {len(y) - 1}, not {n}.")
    g = torch.Generator().manual_seed(seed)
    counts = torch.bincount(y)
    share = counts.double() * n / len(y)
    take = share.floor().long()
    # Hand the remaining places to the classes with the largest fractional parts.
    order = torch.argsort(share - take, descending=True, stable=True)
    take[order[: n - int(take.sum())]] += 1
    chosen = []
    for c in range(len(counts)):
        idx = torch.nonzero(y == c).flatten()
        chosen.append(idx[torch.randperm(len(idx), generator=g)[: take[c]]])
    chosen = torch.cat(chosen).sort().values
    mask = torch.ones(len(y), dtype=torch.bool)
    mask[chosen] = False
    return torch.nonzero(mask).flatten(), chosen


def mnist_splits(n_val: int = 5000, n_train: int | None = None,
                 seed: int = 0) -> dict[str, tuple[Tensor, Tensor]]:
    """Normalised train / val / test tensors; val is a fixed stratified part of the training set."""
    check_split_sizes(n_val, n_train)
    X, y = load_mnist("train")
    train_idx, val_idx = stratified_split(y, n_val, seed)
    if n_train is not None and n_train < len(train_idx):
        _, keep = stratified_split(y[train_idx], n_train, seed)
        train_idx = train_idx[keep]
    X_test, y_test = load_mnist("test")
    return {"train": (normalize(X[train_idx]), y[train_idx]),
            "val": (normalize(X[val_idx]), y[val_idx]),
            "test": (normalize(X_test), y_test)}


def check_split_sizes(n_val: int, n_train: int | None) -> None:
    """Refuse a validation or training part that MNIST's 60,000 training images cannot give."""
    if isinstance(n_val, bool) or not isinstance(n_val, int) or not 0 < n_val < SIZES["train"]:
        raise DigitlabError(f"n_val must be a whole number from 1 to {SIZES['train'] - 1:,}, not {n_val!r}.")
    most = SIZES["train"] - n_val
    if n_train is not None and (isinstance(n_train, bool) or not isinstance(n_train, int) or not 0 < n_train <= most):
        raise DigitlabError(f"n_train must be a whole number from 1 to {most:,} (or None for all), not {n_train!r}.")


def augment(X: Tensor, max_shift: float = 2.0, max_degrees: float = 10.0,
            generator: torch.Generator | None = None) -> Tensor:
    """Shift each image by up to `max_shift` pixels and rotate it by up to `max_degrees`."""
    n = X.shape[0]
    rand = torch.rand(n, 3, generator=generator).to(X.device) * 2 - 1
    angle = rand[:, 0] * max_degrees * torch.pi / 180
    shift = rand[:, 1:] * max_shift * 2 / X.shape[-1]  # affine_grid uses [-1, 1] coordinates
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1),
                         torch.stack([sin, cos, shift[:, 1]], 1)], 1).to(X.dtype)
    grid = F.affine_grid(theta, list(X.shape), align_corners=False)
    background = X.amin(dim=(1, 2, 3), keepdim=True)  # pad with the (normalised) background
    return F.grid_sample(X - background, grid, align_corners=False) + background


class Batches:
    """Iterate over in-memory tensors (X, y) in mini-batches, optionally shuffled and augmented."""

    def __init__(self, X: Tensor, y: Tensor, batch_size: int, shuffle: bool = False,
                 augment: bool = False, seed: int = 0):
        if len(X) != len(y):
            raise DigitlabError(f"X has {len(X)} items but y has {len(y)}.")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer) or batch_size < 1:
            raise DigitlabError(f"batch_size must be a whole number of at least 1, not {batch_size!r}.")
        self.X, self.y, self.batch_size = X, y, batch_size
        self.shuffle, self.augment = shuffle, augment
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return -(-len(self.X) // self.batch_size)

    def __iter__(self):
        n = len(self.X)
        order = torch.randperm(n, generator=self.generator) if self.shuffle else None
        for i in range(0, n, self.batch_size):
            if order is None:
                Xb, yb = self.X[i: i + self.batch_size], self.y[i: i + self.batch_size]
            else:
                idx = order[i: i + self.batch_size].to(self.X.device)
                Xb, yb = self.X[idx], self.y[idx]
            if self.augment:
                Xb = augment(Xb, generator=self.generator)
            yield Xb, yb


class MNISTDataset(torch.utils.data.Dataset):
    """MNIST as a map-style Dataset of (normalised image [1, 28, 28], label), for a DataLoader."""

    def __init__(self, split: str = "train", transform=None):
        self.images, self.labels = load_mnist(split)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        x = self.images[i]
        x = self.transform(x) if self.transform else normalize(x[None])[0]
        return x, int(self.labels[i])
