"""The inference benchmark: latency, throughput and accuracy of every backend of `digitlab.infer`.

`python -m digitlab.infer_bench` measures every backend against eager PyTorch on this machine and
writes benchmarks/INFERENCE.md; `--smoke` runs a tiny version of it.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from digitlab.errors import DigitlabError, report_user_errors
from digitlab.files import write_text
from digitlab.infer import BACKENDS, INT8_TOLERANCE, Runner, make_runner
from digitlab.measure import call_times, describe, machine, torch_threads
from digitlab.settings import BENCHMARKS_DIR

REPORT = BENCHMARKS_DIR / "INFERENCE.md"
# The course's inference targets: p50 latency for one image (ms), batch throughput (images/s), and the accuracy a
# backend may lose against eager PyTorch (points; the tolerance `Predictor` allows int8).
TARGETS = {"latency": 0.1, "throughput": 20_000, "accuracy": 100 * INT8_TOLERANCE}


def latency_ms(run: Runner, x: Tensor, repeats: int = 2000, warmup: int = 100) -> tuple[float, float]:
    """Median (p50) and 99th-percentile wall time of `run(x)` in milliseconds."""
    for _ in range(warmup):
        run(x)
    p50, p99 = np.percentile(call_times(run, x, repeats), [50, 99])
    return float(p50 * 1e3), float(p99 * 1e3)


def benchmark(net: nn.Module, test: tuple[Tensor, Tensor], calibration: Tensor, backends=BACKENDS,
              threads: int | None = None, batch_size: int = 256, repeats: int = 2000, rounds: int = 4,
              progress: bool = True) -> list[dict]:
    """Single-image p50/p99 latency (1 thread), batch throughput (`threads`) and test accuracy of each backend.

    The backends take turns: in each of `rounds` rounds, every backend makes `repeats // rounds` timed
    single-image calls and one pass over the test images in batches. A change in the machine's load
    (another program starting or stopping) then affects all backends alike rather than the one measured
    at that moment. p50 and p99 are over all of a backend's calls; its throughput is its best pass.

    Every row carries its ratios to the eager row, which must come first. A backend that cannot run here
    (an optional package missing) gets a row with the reason instead of numbers.
    """
    threads = threads or torch.get_num_threads()
    if backends[0] != "eager":
        raise DigitlabError("the first backend must be 'eager', the reference the others are compared with.")
    X, y = test
    one = X[:1].clone()
    batches = [X[i: i + batch_size].contiguous() for i in range(0, len(X), batch_size)]
    runners, skipped = {}, {}
    for backend in backends:  # build and warm up every backend first (compiling, calibrating, exporting)
        try:
            with torch_threads(1):
                single = make_runner(net, backend, threads=1, calibration=calibration)
                for _ in range(max(1, repeats // 10)):
                    single(one)
            with torch_threads(threads):
                batched = make_runner(net, backend, threads=threads, calibration=calibration)
                batched(batches[0])
        except ModuleNotFoundError as err:
            skipped[backend] = str(err)
            continue
        runners[backend] = (single, batched)
    times = {backend: [] for backend in runners}
    passes = {backend: [] for backend in runners}
    accuracy = {}
    for _ in range(rounds):
        for backend, (single, batched) in runners.items():
            with torch_threads(1):
                times[backend] += call_times(single, one, max(1, repeats // rounds))
            with torch_threads(threads):
                start = time.perf_counter()
                predictions = torch.cat([batched(Xb).argmax(1) for Xb in batches])
                passes[backend].append(time.perf_counter() - start)
            accuracy[backend] = (predictions == y).float().mean().item()
    rows = []
    for backend in backends:
        if backend in skipped:
            rows.append({"backend": backend, "skipped": skipped[backend]})
            if progress:
                print(f"{backend:<17} skipped: {skipped[backend]}")
            continue
        p50, p99 = (float(t) * 1e3 for t in np.percentile(times[backend], [50, 99]))
        images_per_s, acc = len(X) / min(passes[backend]), accuracy[backend]
        row = {"backend": backend, "p50_ms": p50, "p99_ms": p99, "images_per_s": images_per_s, "accuracy": acc}
        ref = rows[0] if rows else row
        row["latency_speedup"] = ref["p50_ms"] / p50
        row["throughput_speedup"] = images_per_s / ref["images_per_s"]
        row["accuracy_change"] = 100 * (acc - ref["accuracy"])
        rows.append(row)
        if progress:
            print(f"{backend:<17} p50 {p50:.3f} ms  p99 {p99:.3f} ms  {images_per_s:,.0f} images/s  "
                  f"accuracy {100 * acc:.2f}%")
    return rows


def format_table(rows: list[dict]) -> str:
    """The benchmark rows as a Markdown table."""
    lines = ["| backend | p50 latency (ms) | p99 latency (ms) | images/s | test accuracy (%) | "
             "p50 speed-up | throughput speed-up | accuracy change (points) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        if "skipped" in r:
            lines.append(f"| {r['backend']} | skipped: {r['skipped']} |||||||")
            continue
        lines.append(f"| {r['backend']} | {r['p50_ms']:.3f} | {r['p99_ms']:.3f} | {r['images_per_s']:,.0f} | "
                     f"{100 * r['accuracy']:.2f} | {r['latency_speedup']:.2f}x | {r['throughput_speedup']:.2f}x | "
                     f"{r['accuracy_change']:+.2f} |")
    return "\n".join(lines)


def target_text(name: str, value: float) -> str:
    """How a target of TARGETS reads, e.g. 'p50 <= 0.1 ms'."""
    return {"latency": f"p50 <= {value:g} ms", "throughput": f">= {value:,.0f} images/s",
            "accuracy": f"accuracy within {value:g} points"}[name]


def targets_met(rows: list[dict], targets: dict[str, float] = TARGETS) -> dict[str, list[str]]:
    """The backends that meet each target, keyed as `targets`: latency, throughput, accuracy kept."""
    done = [r for r in rows if "skipped" not in r]
    return {"latency": [r["backend"] for r in done if r["p50_ms"] <= targets["latency"]],
            "throughput": [r["backend"] for r in done if r["images_per_s"] >= targets["throughput"]],
            "accuracy": [r["backend"] for r in done if r["accuracy_change"] >= -targets["accuracy"]]}


def write_report(rows: list[dict], path: str | Path = REPORT, command: str = "python -m digitlab.infer_bench",
                 threads: int | None = None, batch_size: int = 256) -> Path:
    """Write the benchmark table, the machine and the targets met to a Markdown file (atomically)."""
    met = targets_met(rows)
    text = "\n".join([
        "# Inference benchmark",
        "",
        f"Machine: {describe(machine())}.",
        f"Command: `{command}`; run on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        "",
        "Latency: one normalised 28x28 image through the network, 1 thread (p50 and p99 of many calls, "
        f"preprocessing excluded). Throughput: the test set in batches of {batch_size} with "
        f"{threads or torch.get_num_threads()} threads, the best of several passes. The backends take turns, "
        "so that a change in the machine's load affects all of them alike. Accuracy: the same passes over "
        "the MNIST test set. Ratios are to eager PyTorch in the same run. Every backend computes in float32 "
        "except the int8 ones (8-bit integer weights and activations).",
        "",
        format_table(rows),
        "",
        "Targets and the backends that meet them:",
        "",
        *[f"- {target_text(name, TARGETS[name])}: {', '.join(backends) or 'none'}" for name, backends in met.items()],
        "",
    ])
    write_text(path, text)
    return Path(path)


def main(argv: list[str] | None = None) -> None:
    """Command line: the inference benchmark on the course model."""
    parser = argparse.ArgumentParser(prog="python -m digitlab.infer_bench", description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a tiny benchmark (1,000 test images, few repeats)")
    parser.add_argument("--fast", action="store_true", help="use the fast-mode course model")
    parser.add_argument("--out", type=Path, default=REPORT, help=f"benchmark report (default {REPORT})")
    args = parser.parse_args(argv)
    from digitlab.checkpoints import course_model
    from digitlab.data import mnist_splits

    net, _ = course_model(fast=args.fast)
    data = mnist_splits()
    n_test, repeats = (1000, 200) if args.smoke else (None, 2000)
    X, y = data["test"]
    rows = benchmark(net, (X[:n_test], y[:n_test]), data["train"][0][:1000], repeats=repeats)
    if not args.smoke:
        flags = " --fast" if args.fast else ""
        print(write_report(rows, args.out, command=f"python -m digitlab.infer_bench{flags}"))


if __name__ == "__main__":
    sys.exit(report_user_errors(main))
