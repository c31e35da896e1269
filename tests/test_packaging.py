"""pyproject.toml, environment.yml and constraints.txt must agree; the learner's lab config covers nbgrader."""

import json
import re
import sys
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
