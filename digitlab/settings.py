"""Where the course keeps its files, whether it runs in quick mode, and which machine it runs on."""

from __future__ import annotations

import contextlib
import os
import platform
from pathlib import Path

from digitlab.errors import DigitlabError

PROJECT_DIR = Path(__file__).resolve().parent.parent
NOTEBOOKS_DIR = PROJECT_DIR / "notebooks"
MODELS_DIR = PROJECT_DIR / "models"           # trained networks (course_model, load_or_train)
RESULTS_DIR = PROJECT_DIR / "results"         # the ablation grid's runs
BENCHMARKS_DIR = PROJECT_DIR / "benchmarks"   # the benchmarks' reports
BUILD_DIR = PROJECT_DIR / "build"             # everything made from the notebooks: student versions, course, book
DOWNLOAD_DIR = PROJECT_DIR / "data" / "MNIST" / "raw"   # where MNIST is downloaded if DIGITLAB_DATA has no copy

def switch(name: str) -> bool:
    """An on/off setting from the environment: 1, true, yes, on or 0, false, no, off (any case; unset is off)."""
    value = os.environ.get(name, "").strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise DigitlabError(f"{name}={os.environ[name]!r} is neither on (1, true, yes, on) nor off (0, false, no, off); "
                        f"set it to 1 or 0, or unset it.")


# Quick mode (DIGITLAB_FAST=1 in the environment before Python starts) shrinks data and epochs, so that
# every notebook runs in minutes (CI runs them so). Every notebook reads it from here.
FAST = switch("DIGITLAB_FAST")
# Grading mode (DIGITLAB_GRADING=1; the course's nbgrader_config.py sets it with quick mode): the ablation runs
# of notebook 04's exercises are scored on fixed stratified parts of GRADING_IMAGES validation and test images, so
# that a submission is graded in a fraction of the time. Every check recomputes its answer from the same runs, so
# the same answers earn the same points; such runs never count as runs of full or quick mode (ablation.code_version).
GRADING = switch("DIGITLAB_GRADING")
GRADING_IMAGES = 2000


def cpu_name() -> str:
    """The CPU's model name (from /proc/cpuinfo where there is one)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def cpu_capability() -> str:
    """The vector instruction set PyTorch's CPU kernels use here: AVX2, AVX512, NO AVX, ... (CPU kernels differ)."""
    import torch

    return torch.backends.cpu.get_cpu_capability()


def cpu_flags() -> set[str]:
    """The CPU's feature flags as Linux lists them in /proc/cpuinfo (an empty set where there is no such file)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return set()
    return next((set(line.split(":", 1)[1].split()) for line in lines if line.startswith("flags")), set())


def machine() -> dict[str, str]:
    """This machine and the versions that decide its numbers: CPU, architecture, cores, threads, Python, torch."""
    import torch

    info = {"cpu": cpu_name(), "arch": platform.machine(), "cores": str(os.cpu_count()),
            "cpu_capability": cpu_capability(), "threads": str(torch.get_num_threads()),
            "python": platform.python_version(), "torch": str(torch.__version__)}
    with contextlib.suppress(ImportError):
        import onnxruntime

        info["onnxruntime"] = onnxruntime.__version__
    return info
