"""The notebooks use digitlab only through its documented surface: public names, each with a docstring, from
modules the README's table describes; no internal strings, files or private helpers."""

import ast
import importlib
import inspect
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9]*.ipynb"))


def readme_modules() -> set[str]:
    """The modules the README's table of the helper package describes."""
    return set(re.findall(r"^\| `(digitlab\.\w+)` \|", (ROOT / "README.md").read_text(), re.M))


def digitlab_names(path: Path) -> set[tuple[str, str]]:
    """(module, name) for every digitlab name a notebook's code imports or reads as `module.name`."""
    used, modules = set(), {}
    for cell in json.loads(path.read_text())["cells"]:
        if cell["cell_type"] != "code":
            continue
        source = "\n".join(line for line in "".join(cell["source"]).splitlines() if not line.startswith(("%", "!")))
        tree = ast.parse(source)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("digitlab"):
                for alias in node.names:
                    try:
                        importlib.import_module(f"{node.module}.{alias.name}")
                        modules[alias.asname or alias.name] = f"{node.module}.{alias.name}"
                    except ModuleNotFoundError:
                        used.add((node.module, alias.name))
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in modules:
                used.add((modules[node.value.id], node.attr))
    return used


def test_the_readme_describes_every_module():
    table = readme_modules()
    package = {f"digitlab.{p.stem}" for p in (ROOT / "digitlab").glob("*.py") if not p.stem.startswith("_")}
    assert table == package


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebooks_use_only_public_documented_names(path):
    table = readme_modules()
    used = digitlab_names(path)
    assert used, "the notebook uses digitlab"
    for module_name, name in sorted(used):
        module = importlib.import_module(module_name)
        assert module_name == "digitlab" or module_name in table, module_name
        assert not name.startswith("_"), f"{path.name} uses the private {module_name}.{name}"
        obj = getattr(module, name)  # it exists
        if inspect.isfunction(obj) or inspect.isclass(obj):
            assert inspect.getdoc(obj), f"{module_name}.{name} has no docstring"
