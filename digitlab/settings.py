"""Where the course keeps its files, and whether it runs in quick mode or grading mode (from the environment)."""

from __future__ import annotations

import os
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
