"""Measuring this machine: its CPU (read once), the record of where a run ran, threads, timing, the matrix-multiply
peak and a network's multiply-adds. Training code, the benchmarks and chapter 07 take their measurements here."""

from __future__ import annotations

import contextlib
import copy
import functools
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

CPUINFO = Path("/proc/cpuinfo")
BF16_FLAGS = {"avx512_bf16", "amx_bf16", "bf16"}   # x86's AVX-512 BF16 and AMX, Arm's BF16


def parse_cpuinfo(text: str) -> dict:
    """The CPU's model name and feature flags from the text of Linux's /proc/cpuinfo (x86 `flags`, Arm
    `Features`); the name is empty where the file gives none."""
    fields = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip(), value.strip())
    flags = fields.get("flags", fields.get("Features", ""))
    return {"name": fields.get("model name", ""), "flags": frozenset(flags.split())}


@functools.cache
def cpu_info() -> dict:
    """`parse_cpuinfo` of this machine, read once (an empty name and no flags where there is no such file)."""
    try:
        return parse_cpuinfo(CPUINFO.read_text())
    except OSError:
        return parse_cpuinfo("")


def cpu_name() -> str:
    """The CPU's model name (from /proc/cpuinfo where there is one)."""
    return cpu_info()["name"] or platform.processor() or platform.machine()


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags as Linux lists them (none where there is no /proc/cpuinfo)."""
    return cpu_info()["flags"]


def cpu_capability() -> str:
    """The vector instruction set PyTorch's CPU kernels use here: AVX2, AVX512, NO AVX, ... (CPU kernels differ)."""
    return torch.backends.cpu.get_cpu_capability()


def bf16_supported() -> bool:
    """Whether this CPU computes in bfloat16 natively (AVX-512 BF16 or AMX on x86, BF16 on Arm; Linux only)."""
    return bool(cpu_flags() & BF16_FLAGS)


def machine() -> dict[str, str]:
    """This machine and the versions that decide its numbers: CPU, architecture, cores, threads, Python, torch."""
    info = {"cpu": cpu_name(), "arch": platform.machine(), "cores": str(os.cpu_count()),
            "cpu_capability": cpu_capability(), "threads": str(torch.get_num_threads()),
            "python": platform.python_version(), "torch": str(torch.__version__)}
    with contextlib.suppress(ImportError):
        import onnxruntime

        info["onnxruntime"] = onnxruntime.__version__
    return info


def describe(info: dict[str, str]) -> str:
    """`machine()` in one line: CPU, cores, vector instructions, then the library versions."""
    parts = [f"{info['cpu']}, {info['cores']} cores, {info['cpu_capability']}", f"Python {info['python']}",
             f"torch {info['torch']}"]
    return "; ".join(parts + ([f"onnxruntime {info['onnxruntime']}"] if "onnxruntime" in info else []))


def run_record(device: str | torch.device, precision: str) -> dict:
    """Where and how a run ran, which decides its numbers besides the code: device, precision, CPU and its vector
    capability, threads, torch."""
    return {"device": str(device), "precision": precision, "cpu": cpu_name(), "cpu_capability": cpu_capability(),
            "threads": torch.get_num_threads(), "torch": str(torch.__version__)}


@contextlib.contextmanager
def torch_threads(n: int | None):
    """Run PyTorch's CPU kernels with `n` threads inside the block (None: as many as now), then restore them."""
    before = torch.get_num_threads()
    if n is None or n == before:  # nothing to change (setting it is not free in every torch version)
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def call_times(run: Callable, x, n: int) -> list[float]:
    """Wall times in seconds of `n` calls of `run(x)`, one by one."""
    times = []
    for _ in range(n):
        start = time.perf_counter()
        run(x)
        times.append(time.perf_counter() - start)
    return times


def matmul_gflops(threads: int | None = None, n: int = 1024, repeats: int = 20) -> float:
    """Float32 matrix-multiply speed of this CPU in GFLOP/s: a practical ceiling for a network's arithmetic."""
    A = torch.randn(n, n)
    with torch_threads(threads), torch.inference_mode():
        A @ A
        start = time.perf_counter()
        for _ in range(repeats):
            A @ A
        seconds = time.perf_counter() - start
    return 2 * n ** 3 * repeats / seconds / 1e9


PEAK_ROUNDS = 3  # matrix-multiply measurements of which the machine's peak is the best


def peak_gflops(rounds: int = PEAK_ROUNDS, repeats: int = 20) -> float:
    """This machine's float32 matrix-multiply rate with all PyTorch threads: the best of `rounds` measurements."""
    return max(matmul_gflops(repeats=repeats) for _ in range(rounds))


def peak_share(images_per_s: float, flop_per_image: float, gflops: float) -> float:
    """The share of a `gflops` arithmetic rate that work at `images_per_s` uses."""
    return images_per_s * flop_per_image / (gflops * 1e9)


def multiply_adds(net: nn.Module) -> int:
    """Multiply-adds of the conv and linear layers for one 28x28 image (the arithmetic a CPU must do)."""
    total = 0

    def count(module, inputs, output):
        nonlocal total
        if isinstance(module, nn.Conv2d):
            per_output = module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
            total += output[0].numel() * per_output
        elif isinstance(module, nn.Linear):
            total += module.in_features * module.out_features

    net = copy.deepcopy(net).cpu().eval()
    for m in net.modules():
        m.register_forward_hook(count)
    with torch.inference_mode():
        net(torch.zeros(1, 1, 28, 28))
    return total
