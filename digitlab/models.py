"""The seed paper's CNN for MNIST, and a layer-by-layer summary of any network."""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn


class DigitRecognitionCNN(nn.Module):
    """Two conv blocks (32, 64 channels: conv, BatchNorm, ReLU, 2x2 max-pool, dropout), then fc 3136-128-10.

    The defaults are the seed paper's network; `batch_norm=False` or a dropout rate of 0
    removes that technique for ablations. Attribute names match the paper's class, so its
    state_dict loads as is.
    """

    def __init__(self, batch_norm: bool = True, dropout1: float = 0.25, dropout2: float = 0.5):
        super().__init__()
        self.config = {"batch_norm": batch_norm, "dropout1": dropout1, "dropout2": dropout2}
        self.conv1 = nn.Conv2d(1, 32, kernel_size=3, padding=1)
        self.bn1 = nn.BatchNorm2d(32) if batch_norm else nn.Identity()
        self.conv2 = nn.Conv2d(32, 64, kernel_size=3, padding=1)
        self.bn2 = nn.BatchNorm2d(64) if batch_norm else nn.Identity()
        self.pool = nn.MaxPool2d(2)
        self.dropout1 = nn.Dropout(dropout1)
        self.dropout2 = nn.Dropout(dropout2)
        self.fc1 = nn.Linear(64 * 7 * 7, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dropout1(self.pool(F.relu(self.bn1(self.conv1(x)))))   # [N, 32, 14, 14]
        x = self.dropout2(self.pool(F.relu(self.bn2(self.conv2(x)))))   # [N, 64, 7, 7]
        x = torch.flatten(x, 1)                                          # [N, 3136]
        return self.fc2(F.relu(self.fc1(x)))                             # [N, 10] logits


def count_parameters(net: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad)


@contextlib.contextmanager
def eval_mode(net: nn.Module):
    """Evaluation mode inside the block (dropout off, BatchNorm's running statistics), the earlier mode after it."""
    was_training = net.training
    net.eval()
    try:
        yield net
    finally:
        net.train(was_training)


def summary(net: nn.Module, input_shape: tuple[int, ...] = (1, 1, 28, 28)) -> str:
    """A table of each layer's output shape and parameter count, for one forward pass."""
    rows, hooks = [], []
    for name, module in net.named_modules():
        if name and not list(module.children()):
            n = sum(p.numel() for p in module.parameters(recurse=False))
            hooks.append(module.register_forward_hook(
                lambda m, i, out, name=name, n=n: rows.append((name, type(m).__name__, list(out.shape), n))))
    try:
        with eval_mode(net), torch.no_grad():
            net(torch.zeros(input_shape, device=next(net.parameters()).device))
    finally:
        for h in hooks:
            h.remove()
    lines = [f"{'layer':<10}{'type':<13}{'output shape':<20}{'parameters':>11}", "-" * 54]
    lines += [f"{name:<10}{kind:<13}{str(shape):<20}{n:>11,}" for name, kind, shape, n in rows]
    lines += ["-" * 54, f"{'total':<43}{count_parameters(net):>11,}"]
    return "\n".join(lines)
