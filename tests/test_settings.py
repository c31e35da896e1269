import os
import subprocess
import sys

import pytest

from digitlab import settings


@pytest.mark.parametrize(("value", "fast"), [("1", True), ("0", False), ("", False), (None, False), ("true", True),
                                             (" Yes ", True), ("ON", True), ("False", False), ("off", False)])
def test_quick_mode_is_read_once_from_the_environment(value, fast):
    env = {k: v for k, v in os.environ.items() if k != "DIGITLAB_FAST"}
    if value is not None:
        env["DIGITLAB_FAST"] = value
    code = "import digitlab, digitlab.settings; print(digitlab.FAST, digitlab.settings.FAST)"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split() == [str(fast)] * 2


@pytest.mark.parametrize("name", ["DIGITLAB_FAST", "DIGITLAB_GRADING"])
def test_an_on_off_setting_that_is_neither_is_refused(name):
    env = {**os.environ, name: "fast"}
    done = subprocess.run([sys.executable, "-c", "import digitlab.settings"], env=env, capture_output=True, text=True)
    assert done.returncode != 0 and f"{name}='fast' is neither on (1, true, yes, on) nor off" in done.stderr
    done = subprocess.run([sys.executable, "-m", "digitlab", "data"], env=env, capture_output=True, text=True)
    assert done.returncode == 1 and done.stderr.startswith(f"error: {name}='fast'") and "Traceback" not in done.stderr


def test_the_paths_are_the_projects_folders():
    assert (settings.PROJECT_DIR / "pyproject.toml").exists()
    assert sorted(settings.NOTEBOOKS_DIR.glob("0[1-7]_*.ipynb"))
    for folder in (settings.MODELS_DIR, settings.RESULTS_DIR, settings.BENCHMARKS_DIR, settings.BUILD_DIR):
        assert folder.parent == settings.PROJECT_DIR
