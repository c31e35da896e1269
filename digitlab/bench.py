"""Training benchmark: digitlab's default path against the standard PyTorch MNIST recipe.

`python -m digitlab.bench` (or `make bench`) measures, in one run on this machine, the reference's and
digitlab's training speed for the paper's network and the share of the machine's float32 matrix-multiply
rate each uses, the time to 99.0% test accuracy and the best accuracy within 5 minutes, and writes
benchmarks/RESULTS.md. It takes about 25 minutes: run it on a quiet machine.
`python -m digitlab.bench --smoke` runs a tiny version in seconds (what CI runs).
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import sys
import time
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from digitlab.data import MNIST_MEAN, MNIST_STD, Batches, load_mnist, mnist_splits, stratified_split
from digitlab.errors import report_user_errors
from digitlab.files import write_text
from digitlab.infer_bench import matmul_gflops, multiply_adds
from digitlab.models import DigitRecognitionCNN
from digitlab.settings import BENCHMARKS_DIR, PROJECT_DIR, machine
from digitlab.train import (
    bf16_supported,
    choose_precision,
    evaluate,
    fit,
    get_device,
    run_info,
    set_seed,
    to_channels_last,
)

RESULTS = BENCHMARKS_DIR / "RESULTS.md"
SEEDS = (0, 1, 2)
# The recipes the targets are measured with: the paper's network, unchanged, trained by `fit`.
# Time to 99.0%: one-cycle runs of 1, 2, 3 epochs, the shortest whose mean test accuracy reaches 99.0%.
SPRINT = {"batch_size": 64, "lr": 6e-3, "schedule": "onecycle"}
SPRINT_EPOCHS = (1, 2, 3)
LONG = {"num_epochs": 8, "batch_size": 128, "lr": 6e-3, "schedule": "onecycle", "augment": True}  # 5 minutes
# A training step costs about 3 forward passes per image (the backward pass about twice the forward), each 2 FLOP
# per multiply-add.
TRAIN_FLOP_PER_MULTIPLY_ADD = 3 * 2
PEAK_ROUNDS = 3  # matrix-multiply measurements of which the machine's peak is the best
TARGETS = {"speedup": 5.0, "sprint_seconds": 30.0, "sprint_acc": 0.990, "long_seconds": 300.0, "long_acc": 0.995}


def setup() -> dict[str, str]:
    """This machine (`settings.machine()`), the training device and fit's default precision on it."""
    device = get_device()
    return {**machine(), **{k: str(v) for k, v in run_info(device, choose_precision("auto", device)).items()}}


def peak_gflops(rounds: int = PEAK_ROUNDS, repeats: int = 20) -> float:
    """This machine's float32 matrix-multiply rate with all PyTorch threads: the best of `rounds` measurements."""
    return max(matmul_gflops(repeats=repeats) for _ in range(rounds))


def peak_share(images_per_s: float, flop_per_image: float, gflops: float) -> float:
    """The share of a `gflops` arithmetic rate that training at `images_per_s` uses."""
    return images_per_s * flop_per_image / (gflops * 1e9)


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


def digitlab_images_per_second(X: Tensor, y: Tensor, batch_size: int = 64, seed: int = 0) -> float:
    """Images per second of `fit`'s default path on (X, y), after a short warm-up run."""
    set_seed(seed)
    net = DigitRecognitionCNN()
    fit(net, (X[: 5 * batch_size], y[: 5 * batch_size]), num_epochs=1, batch_size=batch_size, progress=False)
    history = fit(net, (X, y), num_epochs=1, batch_size=batch_size, lr=1e-3, seed=seed, progress=False)
    return len(y) / history["seconds"][0]


def train_runs(data: dict, recipe: dict, seeds=SEEDS) -> list[dict[str, float]]:
    """Train the paper's network with `recipe` once per seed; training seconds and test accuracy of each."""
    runs = []
    for seed in seeds:
        set_seed(seed)
        net = DigitRecognitionCNN()
        history = fit(net, data["train"], seed=seed, progress=False, **recipe)
        runs.append({"seed": seed, "seconds": sum(history["seconds"]),
                     "test_acc": evaluate(net, *data["test"])[1]})
    return runs


def spread(values: list[float]) -> tuple[float, float]:
    """Mean and (sample) standard deviation; 0 spread for a single value."""
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def endless(batches: Batches):
    """Yield the batches of `batches` over and over, reshuffled each pass."""
    while True:
        yield from batches


def train_speed(X: Tensor, y: Tensor, batch_size: int = 64, channels_last: bool = True, bf16: bool = False,
                compiled: bool = False, threads: int | None = None, num_batches: int = 30, repeats: int = 1,
                seed: int = 0) -> float:
    """Images per second of a plain training loop over in-memory tensors, with the given techniques on."""
    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads or old_threads)
    try:
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
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    loss = F.cross_entropy(model(Xb), yb)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            best = max(best, num_batches * batch_size / (time.perf_counter() - start))
        return best
    finally:
        torch.set_num_threads(old_threads)


def techniques(n_train: int | None = None, num_batches: int = 30, repeats: int = 1,
               compiled: bool = False) -> list[tuple[str, float]]:
    """Images per second as each technique of the fast path is switched on, one at a time.

    The first three rows add one technique each to the row before; every later row changes one thing
    from the third (in-memory tensors, channels-last, batch 64, all threads, float32), as its name says.
    The rows take turns, `repeats` rounds of one measurement each, and each keeps its fastest: other
    programs only ever slow a measurement down, and taking turns spreads their effect over all rows."""
    X, y = mnist_splits(n_train=n_train)["train"]
    speed = partial(train_speed, X, y, num_batches=num_batches)
    loader = reference_loader(n_train=n_train)
    bf16_note = "" if bf16_supported() else " (no bf16 units on this CPU: emulated)"
    threads = torch.get_num_threads()
    configs = [("reference: Dataset of PIL images, per-image ToTensor + Normalize, DataLoader",
                lambda: reference_train(loader, num_batches=num_batches)[1]),
               ("whole dataset in memory as one tensor, batched by index", partial(speed, channels_last=False)),
               ("+ channels-last memory layout", speed),
               ("channels-last, batch 128 instead of 64", partial(speed, batch_size=128)),
               ("channels-last, batch 256 instead of 64", partial(speed, batch_size=256))]
    if threads > 1:
        configs.append((f"channels-last, 1 thread instead of {threads}", partial(speed, threads=1)))
    configs.append((f"channels-last, bfloat16 autocast{bf16_note}", partial(speed, bf16=True)))
    if compiled:
        configs.append(("channels-last, torch.compile (compile time not counted)", partial(speed, compiled=True)))
    best = dict.fromkeys((name for name, _ in configs), 0.0)
    for _ in range(repeats):
        for name, measure in configs:
            best[name] = max(best[name], measure())
    return list(best.items())


def techniques_table(rows: list[tuple[str, float]]) -> str:
    """Markdown table of `techniques` rows, with each one's speed relative to the reference."""
    lines = ["| technique | images/s | x reference |", "|---|---:|---:|"]
    lines += [f"| {name} | {ips:,.0f} | {ips / rows[0][1]:.2f} |" for name, ips in rows]
    return "\n".join(lines)


def run(smoke: bool = False) -> dict:
    """Measure everything; `smoke` shrinks every part to a few seconds."""
    n_train = 1024 if smoke else None
    seeds = SEEDS[:1] if smoke else SEEDS
    data = mnist_splits(n_train=n_train)
    results = {"machine": setup(), "date": datetime.datetime.now(datetime.timezone.utc)
               .strftime("%Y-%m-%d %H:%M UTC"), "smoke": smoke, "n_train": len(data["train"][1])}

    loader = reference_loader(n_train=n_train)
    _, results["reference_ips"] = reference_train(loader, num_batches=5 if smoke else 200)
    X, y = data["train"]
    results["digitlab_ips"] = digitlab_images_per_second(X[:12_800], y[:12_800])
    results["speedup"] = results["digitlab_ips"] / results["reference_ips"]
    results["peak_gflops"] = peak_gflops(repeats=3 if smoke else 20)
    results["flop_per_image"] = TRAIN_FLOP_PER_MULTIPLY_ADD * multiply_adds(DigitRecognitionCNN())
    # One whole epoch each, for the accuracy comparison.
    start = time.perf_counter()
    net, _ = reference_train(loader, warmup=0)
    results["reference_epoch"] = {"seconds": time.perf_counter() - start, "test_acc": evaluate(net, *data["test"])[1]}
    results["digitlab_epoch"] = train_runs(data, {"num_epochs": 1, "batch_size": 64, "schedule": "none"}, [0])[0]

    results["sprint"] = {}
    for num_epochs in SPRINT_EPOCHS[:1] if smoke else SPRINT_EPOCHS:
        runs = results["sprint"][num_epochs] = train_runs(data, {**SPRINT, "num_epochs": num_epochs}, seeds)
        if statistics.mean(r["test_acc"] for r in runs) >= TARGETS["sprint_acc"]:
            break
    results["long"] = train_runs(data, {**LONG, "num_epochs": 1} if smoke else LONG, seeds)
    return results


def time_to_99(results: dict) -> tuple[int, list[dict]] | None:
    """The shortest sprint (epochs, runs) whose mean test accuracy reached the target, or None."""
    for num_epochs, runs in results["sprint"].items():
        if statistics.mean(r["test_acc"] for r in runs) >= TARGETS["sprint_acc"]:
            return num_epochs, runs
    return None


def targets(results: dict) -> list[tuple[str, str, bool]]:
    """Each target of the issue, what was measured, and whether it holds."""
    t = TARGETS
    reached = time_to_99(results)
    if reached is None:
        best = max(results["sprint"].values(), key=lambda runs: statistics.mean(r["test_acc"] for r in runs))
        sprint = (f"not reached: at best {statistics.mean(r['test_acc'] for r in best):.2%} in "
                  f"{statistics.mean(r['seconds'] for r in best):.1f} s", False)
    else:
        seconds = statistics.mean(r["seconds"] for r in reached[1])
        sprint = f"reached in {seconds:.1f} s ({reached[0]} epoch(s))", seconds <= t["sprint_seconds"]
    long_s, _ = spread([r["seconds"] for r in results["long"]])
    long_acc, _ = spread([r["test_acc"] for r in results["long"]])
    same_acc = results["digitlab_epoch"]["test_acc"] >= results["reference_epoch"]["test_acc"]
    return [
        (f"digitlab at least {t['speedup']:.0f}x the reference's images/s, accuracy not worse",
         f"{results['speedup']:.2f}x", results["speedup"] >= t["speedup"] and same_acc),
        (f"{t['sprint_acc']:.1%} test accuracy (mean of the seeds) within {t['sprint_seconds']:.0f} s of training",
         *sprint),
        (f"at least {t['long_acc']:.1%} test accuracy (mean of the seeds) within {t['long_seconds'] / 60:.0f} min",
         f"{long_acc:.2%} in {long_s:.0f} s (mean of {len(results['long'])})",
         long_acc >= t["long_acc"] and long_s <= t["long_seconds"]),
    ]


def runs_table(runs: list[dict]) -> list[str]:
    """Markdown rows: one per seed, then mean and standard deviation."""
    mean_s, sd_s = spread([r["seconds"] for r in runs])
    mean_acc, sd_acc = spread([r["test_acc"] for r in runs])
    return (["| seed | training s | test accuracy |", "|---:|---:|---:|"]
            + [f"| {r['seed']} | {r['seconds']:.1f} | {r['test_acc']:.2%} |" for r in runs]
            + [f"| **mean ± sd** | **{mean_s:.1f} ± {sd_s:.1f}** | **{mean_acc:.2%} ± {sd_acc:.2%}** |", ""])


def report(results: dict) -> str:
    """The results as a Markdown document: machine, date, the measurements and the targets."""
    m = results["machine"]
    command = "python -m digitlab.bench" + (" --smoke" if results["smoke"] else "")
    lines = ["# Training benchmark", ""]
    if results["smoke"]:
        lines += ["**Smoke run: a check that the benchmark works, on tiny data. Not a measurement.**", ""]
    lines += [f"Measured {results['date']} by `{command}` on {m['cpu']}, {m['cores']} cores "
              f"({m['threads']} PyTorch threads, {m['cpu_capability']}), torch {m['torch']}, Python {m['python']}; "
              f"training device: {m['device']}, precision {m['precision']} (fit's default on this machine).", "",
              "## Images per second, the paper's network (DigitRecognitionCNN, 421,834 parameters)", "",
              "| training path | images/s |", "|---|---:|",
              f"| reference: Dataset of PIL images + ToTensor + Normalize, DataLoader batch 64, NCHW float32, "
              f"Adadelta | {results['reference_ips']:,.0f} |",
              f"| digitlab `fit` default: in-memory tensors batched by index, channels-last, batch 64 "
              f"| {results['digitlab_ips']:,.0f} |",
              f"| **ratio** | **{results['speedup']:.2f}x** |", ""]
    flop, gflops = results["flop_per_image"], results["peak_gflops"]
    lines += [f"Against the hardware: a training step does about {flop:,} FLOP per image "
              f"({TRAIN_FLOP_PER_MULTIPLY_ADD} per multiply-add: the forward pass and a backward pass twice its cost). "
              f"This machine multiplies float32 matrices at {gflops:.0f} GFLOP/s with {m['threads']} threads "
              f"(the best of {PEAK_ROUNDS} measurements), so the reference uses "
              f"{peak_share(results['reference_ips'], flop, gflops):.1%} of that rate and digitlab's default path "
              f"{peak_share(results['digitlab_ips'], flop, gflops):.1%}.", ""]
    ref, own = results["reference_epoch"], results["digitlab_epoch"]
    lines += [f"One whole epoch ({results['n_train']:,} images), seed 0:", "",
              "| | training s | test accuracy |", "|---|---:|---:|",
              f"| reference (Adadelta lr 1.0, batch 64) | {ref['seconds']:.1f} | {ref['test_acc']:.2%} |",
              f"| digitlab `fit` (Adam lr 1e-3, no schedule, batch 64) | {own['seconds']:.1f} "
              f"| {own['test_acc']:.2%} |", ""]
    lines += ["## Time to 99.0% test accuracy", "",
              f"Recipe `{SPRINT}`, one-cycle over 1, 2, 3 epochs until the mean test accuracy reaches 99.0%.", ""]
    for num_epochs, runs in results["sprint"].items():
        lines += [f"{num_epochs} epoch(s):", ""] + runs_table(runs)
    lines += ["## Best accuracy in 5 minutes", "", f"Recipe `{LONG}`"
              + (" (shrunk to 1 epoch)" if results["smoke"] else "") + ".", ""] + runs_table(results["long"])
    lines += ["## Targets", "", "| target | measured | holds |", "|---|---|---|"]
    lines += [f"| {name} | {measured} | {'yes' if ok else '**no**'} |" for name, measured, ok in targets(results)]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m digitlab.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a tiny run in seconds, to check that it works")
    parser.add_argument("--out", type=Path, default=None,
                        help=f"where to write the Markdown results (default {RESULTS.relative_to(PROJECT_DIR)}; "
                             "--smoke writes only when given --out)")
    args = parser.parse_args(argv)
    text = report(run(smoke=args.smoke))
    print(text)
    out = args.out or (None if args.smoke else RESULTS)
    if out is not None:
        write_text(out, text)
        print(f"Wrote {out}")


if __name__ == "__main__":
    sys.exit(report_user_errors(main))
