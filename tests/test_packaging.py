"""pyproject.toml, environment.yml and constraints.txt must agree; the learner's lab config covers nbgrader.

The floors must be true: the oldest matplotlib bundles every font the foreign-digit bench types in, the
notebooks that need fonts or ONNX run in `make test-oldest`, and the package builds without a deprecation warning.
"""

import json
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import tomllib
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
CONDA_NAMES = {"pytorch": "torch"}


def names(requirements) -> set[str]:
    return {re.split(r"[<>=! \[]", r.strip(), maxsplit=1)[0].lower() for r in requirements}


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = names(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        wanted |= names(extra)
    conda = set()
    text = (ROOT / "environment.yml").read_text()
    for line in text.split("dependencies:", 1)[1].splitlines():
        match = re.match(r"^  - ([A-Za-z0-9_.-]+)", line) or re.match(r"^      - ([A-Za-z][A-Za-z0-9_.-]*)", line)
        if match and match.group(1) not in {"python", "pip"}:  # conda-forge's, or PyPI's in the pip section
            conda.add(CONDA_NAMES.get(match.group(1), match.group(1)).lower())
    assert conda == wanted


def read_pins(name: str) -> dict[str, str]:
    """The `package==version` lines of a constraints file, by canonical package name."""
    pins = {}
    for line in (ROOT / name).read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            package, version = line.split("==")
            pins[canonicalize_name(package)] = version.strip()
    return pins


def test_environment_yml_uses_conda_forge_only():
    text = (ROOT / "environment.yml").read_text()
    channels = re.search(r"^channels:\n((?:  - .+\n)+)", text, re.M).group(1)
    assert [line.strip("- ").strip() for line in channels.splitlines()] == ["conda-forge"]


def test_constraints_pin_every_dependency_within_pyproject_ranges():
    """constraints.txt holds the exact versions CI tested; each must satisfy pyproject.toml's range."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = [Requirement(r) for r in project["dependencies"]]
    requirements += [Requirement(r) for extra in project["optional-dependencies"].values() for r in extra]
    pins = read_pins("constraints.txt")
    for requirement in requirements:
        name = canonicalize_name(requirement.name)
        assert name in pins, f"constraints.txt does not pin {name}"
        assert requirement.specifier.contains(pins[name]), f"{name}=={pins[name]} is outside {requirement}"
    assert canonicalize_name("digitlab") not in pins


def test_oldest_constraints_are_pyprojects_lower_bounds():
    """constraints-oldest.txt (make test-oldest) pins each dependency at exactly its lower bound in pyproject.toml."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = [Requirement(r) for r in project["dependencies"]]
    requirements += [Requirement(r) for extra in project["optional-dependencies"].values() for r in extra]
    lower = {canonicalize_name(r.name): next(s.version for s in r.specifier if s.operator == ">=")
             for r in requirements}
    assert read_pins("constraints-oldest.txt") == lower


def test_learners_lab_turns_off_every_nbgrader_server_extension_installed():
    installed = Path(sys.prefix) / "etc" / "jupyter" / "jupyter_server_config.d" / "nbgrader.json"
    if not installed.exists():
        pytest.skip("nbgrader's server extensions are not installed in this environment")
    enabled = json.loads(installed.read_text())["ServerApp"]["jpserver_extensions"]
    learner = json.loads((ROOT / "jupyter" / "jupyter_server_config.json").read_text())
    assert learner["ServerApp"]["jpserver_extensions"] == {name: False for name in enabled}
    page = json.loads((ROOT / "jupyter" / "labconfig" / "page_config.json").read_text())
    assert page["disabledExtensions"]["@jupyter/nbgrader"] is True
    assert "JUPYTER_CONFIG_PATH=$(CURDIR)/jupyter" in (ROOT / "Makefile").read_text()


# The floors hold what the course relies on

OLDEST_FONTS = ROOT / "tests" / "oldest_fonts.txt"


def oldest_fonts() -> tuple[str, list[str]]:
    """The matplotlib version tests/oldest_fonts.txt was recorded from, and the font files it lists."""
    lines = [line.strip() for line in OLDEST_FONTS.read_text().splitlines()]
    lines = [line for line in lines if line and not line.startswith("#")]
    package, version = lines[0].split("==")
    assert canonicalize_name(package) == "matplotlib", f"{OLDEST_FONTS.name} must begin with matplotlib==VERSION"
    return version, lines[1:]


def test_oldest_fonts_were_recorded_from_the_oldest_matplotlib():
    """Change constraints-oldest.txt's matplotlib, and tests/oldest_fonts.txt must be recorded again."""
    version, _ = oldest_fonts()
    assert version == read_pins("constraints-oldest.txt")["matplotlib"], (
        f"{OLDEST_FONTS.name} lists matplotlib {version}'s fonts, but constraints-oldest.txt pins another "
        "matplotlib: record its fonts again (the file's header says how)")


def test_the_oldest_matplotlib_bundles_every_font_the_foreign_bench_uses():
    from digitlab.non_mnist import FONTS

    version, bundled = oldest_fonts()
    used = FONTS["tune"] + FONTS["report"]
    missing = sorted(set(used) - set(bundled))
    assert not missing, f"matplotlib {version}, the oldest allowed, does not bundle {missing}"
    assert not set(FONTS["tune"]) & set(FONTS["report"])


def test_oldest_fonts_list_matches_the_installed_oldest_matplotlib():
    """In .venv-oldest (make test-oldest) the recorded list must be the real folder's."""
    import matplotlib

    version, bundled = oldest_fonts()
    if matplotlib.__version__ != version:
        pytest.skip(f"matplotlib {matplotlib.__version__} is installed, not the oldest allowed ({version})")
    folder = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    assert sorted(path.name for path in folder.glob("*.ttf")) == sorted(bundled)


def test_make_test_oldest_runs_every_notebook_that_needs_fonts_or_onnx():
    """A floor that breaks a chapter (fonts, ONNX export) must fail `make test-oldest`, not only a learner."""
    uses = re.compile(r"\b(foreign_bench|typed_digits|load_font|font_path|export_onnx|onnxruntime|import onnx)\b")
    needing = set()
    for notebook in sorted((ROOT / "notebooks").glob("[0-9]*.ipynb")):
        cells = json.loads(notebook.read_text())["cells"]
        if any(cell["cell_type"] == "code" and uses.search("".join(cell["source"])) for cell in cells):
            needing.add(f"notebooks/{notebook.name}")
    listed = re.search(r"^OLDEST_NOTEBOOKS :=(.*)$", (ROOT / "Makefile").read_text(), re.M).group(1).split()
    assert needing and needing <= set(listed), f"add {sorted(needing - set(listed))} to OLDEST_NOTEBOOKS"
    assert all((ROOT / name).exists() for name in listed)


def test_python_floor_agrees():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    conda = re.search(r"^  - python>=([0-9.]+)$", (ROOT / "environment.yml").read_text(), re.M).group(1)
    assert project["requires-python"] == f">={conda}"


# The build: an SPDX licence, a setuptools that reads it, and no deprecation warning

def test_build_requires_a_setuptools_that_reads_an_spdx_license():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert pyproject["project"]["license"] == "MIT"
    assert pyproject["project"]["license-files"] == ["LICENSE"]
    setuptools = next(Requirement(r) for r in pyproject["build-system"]["requires"]
                      if canonicalize_name(Requirement(r).name) == "setuptools")
    assert setuptools.specifier.contains("77.0.0") and not setuptools.specifier.contains("76.1.0")


OFFLINE = ("No matching distribution found for setuptools", "Could not find a version that satisfies the requirement",
           "Failed to establish a new connection", "Temporary failure in name resolution", "Network is unreachable")


def test_wheel_builds_without_a_deprecation_warning(tmp_path):
    """pip builds the wheel as an install does (isolated, the newest setuptools allowed): the log stays clean."""
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "digitlab", source / "digitlab", ignore=shutil.ignore_patterns("__pycache__"))
    run = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", str(source), "-w", str(tmp_path)],
                         capture_output=True, text=True, timeout=600)
    log = run.stdout + run.stderr
    if run.returncode != 0 and any(sign in log for sign in OFFLINE):
        pytest.skip("pip cannot reach a package index for the build requirements (setuptools)")
    assert run.returncode == 0, log
    warnings = [line for line in log.splitlines() if re.search(r"[Dd]eprecat|DEPRECAT|[A-Za-z]Warning\b", line)]
    assert not warnings, "the build printed:\n" + "\n".join(warnings)
    wheel = next(tmp_path.glob("digitlab-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata = archive.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode().splitlines()
    assert "License-Expression: MIT" in metadata and "License-File: LICENSE" in metadata
    assert not any(line.startswith("License:") for line in metadata)
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
