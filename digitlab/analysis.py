"""Error analysis: confusion matrix, per-class metrics, mistakes, calibration and saliency."""

from __future__ import annotations

import hashlib

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from digitlab.errors import DigitlabError, WrongTypeError
from digitlab.models import eval_mode


def weights_digest(net: nn.Module, length: int = 12) -> str:
    """A short fingerprint (hex) of every parameter and buffer of `net`: equal digests mean equal weights."""
    h = hashlib.sha1()
    for name, tensor in net.state_dict().items():
        tensor = tensor.detach().cpu().contiguous()
        h.update(f"{name}:{list(tensor.shape)}:{tensor.dtype};".encode())
        h.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:length]


def _check_labels(y: Tensor, n: int, num_classes: int, name: str) -> None:
    """Raise a clear error unless `y` is n integer labels in [0, num_classes)."""
    if y.dim() != 1 or len(y) != n:
        raise DigitlabError(f"{name} must be a 1-D tensor of {n} labels, got shape {list(y.shape)}.")
    if y.is_floating_point() or y.is_complex():
        raise WrongTypeError(f"{name} must hold integer class labels, not {y.dtype}.")
    if n and (y.min() < 0 or y.max() >= num_classes):
        raise DigitlabError(f"{name} must hold labels in 0..{num_classes - 1}; "
                         f"found {y.min().item()}..{y.max().item()}.")


def _check_probs(probs: Tensor, y: Tensor, name: str = "probs") -> None:
    """Raise a clear error unless `probs` is [N, C] scores for the N labels `y`."""
    if probs.dim() != 2 or len(probs) != len(y):
        raise DigitlabError(f"{name} must be [N, classes] with N = {len(y)} (one row per label), "
                         f"got shape {list(probs.shape)}.")
    _check_labels(y, len(probs), probs.shape[1], "y")


def confusion_matrix(y_true: Tensor, y_pred: Tensor, num_classes: int = 10) -> Tensor:
    """Counts [C, C]: row = true class, column = predicted class."""
    _check_labels(y_true, len(y_true), num_classes, "y_true")
    _check_labels(y_pred, len(y_true), num_classes, "y_pred")
    flat = y_true.long() * num_classes + y_pred.long()
    return torch.bincount(flat, minlength=num_classes ** 2).reshape(num_classes, num_classes)


def per_class_metrics(cm: Tensor) -> dict[str, Tensor]:
    """Precision, recall, F1 and support of each class from a confusion matrix (0 where undefined)."""
    cm = cm.double()
    hits = cm.diag()
    predicted, support = cm.sum(0), cm.sum(1)
    precision = torch.where(predicted > 0, hits / predicted.clamp(min=1), 0.0)
    recall = torch.where(support > 0, hits / support.clamp(min=1), 0.0)
    total = precision + recall
    f1 = torch.where(total > 0, 2 * precision * recall / total.clamp(min=1e-12), 0.0)
    return {"precision": precision, "recall": recall, "f1": f1, "support": support.long()}


def metrics_table(cm: Tensor):
    """Per-class precision, recall, F1 and support as a pandas DataFrame, one row per class."""
    import pandas as pd

    metrics = per_class_metrics(cm)
    table = pd.DataFrame({k: v.numpy() for k, v in metrics.items()})
    table.index.name = "class"
    return table


def top_confusions(cm: Tensor, k: int | None = 5) -> list[tuple[int, int, int]]:
    """The k most frequent mistakes as (true, predicted, count), largest first; k=None gives all."""
    off = cm.clone()
    off.fill_diagonal_(0)
    counts, order = off.flatten().sort(descending=True, stable=True)
    n = cm.shape[1]
    pairs = [(i // n, i % n, c) for i, c in zip(order.tolist(), counts.tolist(), strict=True) if c > 0]
    return pairs if k is None else pairs[:k]


def find_mistakes(probs: Tensor, y: Tensor, true: int | None = None, pred: int | None = None) -> Tensor:
    """Indices of misclassified items (optionally of one true and/or predicted class), most confident first."""
    _check_probs(probs, y)
    confidence, predicted = probs.max(1)
    keep = predicted != y
    if true is not None:
        keep &= y == true
    if pred is not None:
        keep &= predicted == pred
    idx = torch.nonzero(keep).flatten()
    return idx[confidence[idx].argsort(descending=True, stable=True)]


def least_confident_correct(probs: Tensor, y: Tensor, k: int = 10) -> Tensor:
    """Indices of the k correctly classified items with the lowest confidence, least confident first."""
    _check_probs(probs, y)
    confidence, predicted = probs.max(1)
    idx = torch.nonzero(predicted == y).flatten()
    return idx[confidence[idx].argsort(stable=True)][:k]


def reliability(probs: Tensor, y: Tensor, n_bins: int = 15) -> dict[str, Tensor]:
    """Reliability diagram data: per confidence bin (lo, hi], its count, mean confidence and accuracy."""
    _check_probs(probs, y)
    if n_bins < 1:
        raise DigitlabError(f"n_bins must be at least 1, not {n_bins}.")
    confidence, predicted = probs.double().max(1)
    correct = (predicted == y).double()
    edges = torch.arange(n_bins + 1, dtype=torch.float64) / n_bins
    bins = torch.bucketize(confidence, edges[1:-1])  # bin i holds edges[i] < confidence <= edges[i + 1]
    count = torch.bincount(bins, minlength=n_bins)
    safe = count.clamp(min=1).double()
    mean_conf = torch.bincount(bins, weights=confidence, minlength=n_bins) / safe
    accuracy = torch.bincount(bins, weights=correct, minlength=n_bins) / safe
    return {"edges": edges, "count": count, "confidence": mean_conf, "accuracy": accuracy}


def expected_calibration_error(probs: Tensor, y: Tensor, n_bins: int = 15) -> float:
    """ECE: the count-weighted mean gap between accuracy and confidence over the confidence bins."""
    rel = reliability(probs, y, n_bins)
    weights = rel["count"].double() / len(y)
    return (weights * (rel["accuracy"] - rel["confidence"]).abs()).sum().item()


def fit_temperature(logits: Tensor, y: Tensor, max_iter: int = 100) -> float:
    """The temperature T > 0 that minimises the cross-entropy of softmax(logits / T) on (logits, y)."""
    _check_probs(logits, y, "logits")
    logits = logits.detach().double()
    if (logits.argmax(1) == y).all():
        raise DigitlabError("Every prediction in the fitting set is right, so the cross-entropy keeps falling as "
                            "T -> 0 and there is no best temperature. Fit on more data, one that holds some mistakes "
                            "(the whole validation split).")
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)  # optimise log T so that T stays positive
    opt = torch.optim.LBFGS([log_t], lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp(), y)
        loss.backward()
        return loss

    opt.step(closure)
    return log_t.exp().item()


def saliency(net: nn.Module, X: Tensor, target: Tensor | None = None) -> Tensor:
    """|d logit[target] / d input| for each image of X [N, 1, 28, 28] -> [N, 28, 28]; target: the prediction."""
    device = next(net.parameters()).device
    X = X.detach().to(device).clone().requires_grad_(True)
    with eval_mode(net), torch.enable_grad():
        logits = net(X)
        if target is None:
            target = logits.argmax(1)
        target = torch.as_tensor(target, device=device).long().reshape(-1)
        if len(target) == 1:
            target = target.expand(len(X))
        _check_labels(target.cpu(), len(X), logits.shape[1], "target")
        (grad,) = torch.autograd.grad(logits.gather(1, target[:, None]).sum(), X)
    return grad.abs().amax(1).cpu()
