"""Training speed on this machine: the standard input pipeline, and a plain training loop with each technique of the
fast path switched on (`digitlab.measure` has the machine's own matrix-multiply rate to compare them with)."""

from __future__ import annotations

import time
from functools import partial

import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from digitlab.data import MNIST_MEAN, MNIST_STD, Batches, load_mnist, mnist_splits, stratified_split
from digitlab.measure import bf16_supported, torch_threads
from digitlab.models import DigitRecognitionCNN
from digitlab.train import autocast, fit, set_seed, to_channels_last


class PILDigits(torch.utils.data.Dataset):
    """MNIST as torchvision serves it: each item a PIL image, transformed one at a time."""

    def __init__(self, images: Tensor, labels: Tensor, transform):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        return self.transform(Image.fromarray(self.images[i].numpy())), int(self.labels[i])


def reference_loader(n_train: int | None = None, batch_size: int = 64) -> torch.utils.data.DataLoader:
    """The standard PyTorch MNIST example's input pipeline: Dataset + DataLoader, ToTensor + Normalize."""
    from torchvision import transforms

    X, y = load_mnist("train")
    train_idx, _ = stratified_split(y, 5000)  # the same 55,000 images digitlab trains on
    if n_train is not None:
        train_idx = train_idx[:n_train]
    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((MNIST_MEAN,), (MNIST_STD,))])
    return torch.utils.data.DataLoader(PILDigits(X[train_idx], y[train_idx], transform),
                                       batch_size=batch_size, shuffle=True)


def reference_train(loader, num_batches: int | None = None, warmup: int = 5,
                    seed: int = 0) -> tuple[DigitRecognitionCNN, float]:
    """Train the paper's network the reference way (NCHW float32, Adadelta lr 1.0); images per second."""
    set_seed(seed)
    net = DigitRecognitionCNN().train()
    opt = torch.optim.Adadelta(net.parameters(), lr=1.0)
    scheduler = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.7)
    seen, start = 0, time.perf_counter()
    for i, (X, y) in enumerate(loader):
        if i == warmup:  # time from here: the first batches set up kernels
            seen, start = 0, time.perf_counter()
        loss = F.cross_entropy(net(X), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        seen += len(y)
        if num_batches is not None and i + 1 == warmup + num_batches:
            break
    scheduler.step()
    return net.eval(), seen / (time.perf_counter() - start)


def digitlab_images_per_second(X: Tensor, y: Tensor, batch_size: int = 64, seed: int = 0, **model) -> float:
    """Images per second of `fit`'s default path on (X, y), after a short warm-up run; `model` are the network's
    options (`dropout1=0.0`, ...)."""
    set_seed(seed)
    net = DigitRecognitionCNN(**model)
    fit(net, (X[: 5 * batch_size], y[: 5 * batch_size]), num_epochs=1, batch_size=batch_size, progress=False)
    history = fit(net, (X, y), num_epochs=1, batch_size=batch_size, lr=1e-3, seed=seed, progress=False)
    return len(y) / history["seconds"][0]


def endless(batches: Batches):
    """Yield the batches of `batches` over and over, reshuffled each pass."""
    while True:
        yield from batches


def train_speed(X: Tensor, y: Tensor, batch_size: int = 64, channels_last: bool = True, bf16: bool = False,
                compiled: bool = False, threads: int | None = None, num_batches: int = 30, repeats: int = 1,
                seed: int = 0) -> float:
    """Images per second of a plain training loop over in-memory tensors, with the given techniques on."""
    with torch_threads(threads):
        set_seed(seed)
        net = DigitRecognitionCNN()
        if channels_last:
            net = net.to(memory_format=torch.channels_last)
        model = torch.compile(net) if compiled else net
        opt = torch.optim.Adam(net.parameters(), lr=1e-3)
        stream = endless(Batches(X, y, batch_size, shuffle=True, seed=seed))
        best = 0.0
        for _ in range(repeats):
            for i in range(3 + num_batches):  # 3 warm-up batches, then the timed ones
                if i == 3:
                    start = time.perf_counter()
                Xb, yb = next(stream)
                if channels_last:
                    Xb = to_channels_last(Xb)
                with autocast(torch.device("cpu"), "bf16" if bf16 else "fp32"):
                    loss = F.cross_entropy(model(Xb), yb)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            best = max(best, num_batches * batch_size / (time.perf_counter() - start))
        return best


# The rows of `techniques`: a name to look each up by, and what it measures.
TECHNIQUES = {
    "reference": "reference: Dataset of PIL images, per-image ToTensor + Normalize, DataLoader",
    "in_memory": "whole dataset in memory as one tensor, batched by index",
    "channels_last": "+ channels-last memory layout",
    "batch_128": "channels-last, batch 128 instead of 64",
    "batch_256": "channels-last, batch 256 instead of 64",
    "one_thread": "channels-last, 1 thread instead of all",
    "bf16": "channels-last, bfloat16 autocast",
    "compile": "channels-last, torch.compile (compile time not counted)",
}


def techniques(n_train: int | None = None, num_batches: int = 30, repeats: int = 1,
               compiled: bool = False) -> dict[str, float]:
    """Images per second as each technique of the fast path is switched on, one at a time, keyed as in TECHNIQUES.

    The first three rows add one technique each to the row before; every later row changes one thing
    from the third (in-memory tensors, channels-last, batch 64, all threads, float32), as its name says.
    `one_thread` is measured only with more than one thread, `compile` only if `compiled`.
    The rows take turns, `repeats` rounds of one measurement each, and each keeps its fastest: other
    programs only ever slow a measurement down, and taking turns spreads their effect over all rows."""
    X, y = mnist_splits(n_train=n_train)["train"]
    speed = partial(train_speed, X, y, num_batches=num_batches)
    loader = reference_loader(n_train=n_train)
    measures = {"reference": lambda: reference_train(loader, num_batches=num_batches)[1],
                "in_memory": partial(speed, channels_last=False), "channels_last": speed,
                "batch_128": partial(speed, batch_size=128), "batch_256": partial(speed, batch_size=256),
                "one_thread": partial(speed, threads=1), "bf16": partial(speed, bf16=True),
                "compile": partial(speed, compiled=True)}
    if torch.get_num_threads() == 1:
        del measures["one_thread"]
    if not compiled:
        del measures["compile"]
    best = dict.fromkeys(measures, 0.0)
    for _ in range(repeats):
        for name, measure in measures.items():
            best[name] = max(best[name], measure())
    return best


def techniques_table(speeds: dict[str, float]) -> str:
    """Markdown table of `techniques` rows, with each one's speed relative to the reference."""
    def describe(name: str) -> str:
        if name == "one_thread":
            return f"channels-last, 1 thread instead of {torch.get_num_threads()}"
        return TECHNIQUES[name] + (" (no bf16 units on this CPU: emulated)" if name == "bf16" and not bf16_supported()
                                   else "")

    lines = ["| technique | images/s | x reference |", "|---|---:|---:|"]
    lines += [f"| {describe(name)} | {ips:,.0f} | {ips / speeds['reference']:.2f} |" for name, ips in speeds.items()]
    return "\n".join(lines)
