"""The notebooks use digitlab only through its documented surface: public names, each with a docstring, from
modules the README's table describes; no internal strings, files or private helpers."""

import ast
import importlib
import inspect
import itertools
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


def is_check(cell: dict) -> bool:
    """A cell that ties the prose to the outputs: tagged `check`, run by the tests, folded and kept off the website."""
    return "check" in cell.get("metadata", {}).get("tags", [])


def assert_lines(cell: dict) -> int:
    return sum(line.lstrip().startswith("assert ") for line in "".join(cell["source"]).splitlines())


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_the_checks_are_out_of_the_reading_path(path):
    """At most 5 assert lines in the code a learner reads; the rest sit in folded check cells (exercises aside)."""
    cells = [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
    read = [c for c in cells if not is_check(c) and "nbgrader" not in c.get("metadata", {})]
    assert sum(map(assert_lines, read)) <= 5
    for cell in filter(is_check, cells):
        assert cell["metadata"].get("jupyter", {}).get("source_hidden"), "a check cell is folded in JupyterLab"
        assert assert_lines(cell) > 0, "a check cell checks something"
        assert not any(o.get("output_type") == "stream" for o in cell.get("outputs", [])), "a check cell prints nothing"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_written_answer_prompts_are_visible_and_only_the_answer_is_folded(path):
    cells = json.loads(path.read_text())["cells"]
    for before, cell in itertools.pairwise(cells):
        if cell["cell_type"] == "markdown" and cell.get("metadata", {}).get("nbgrader", {}).get("solution"):
            label, _, answer = "".join(cell["source"]).strip().partition("\n\n")
            assert re.fullmatch(r"\*\*Answer to exercise \d+\*\*", label), "what the folded cell shows"
            assert answer.startswith("<!-- BEGIN SOLUTION -->") and answer.endswith("<!-- END SOLUTION -->"), \
                "nbgrader's markers as HTML comments, which do not render"
            assert cell["metadata"].get("jupyter", {}).get("source_hidden"), "the model answer is folded"
            assert before["cell_type"] == "markdown" and not before.get("metadata", {}).get("jupyter"), \
                "the question stands visible right above its answer"


WORDS_PER_MINUTE = 120  # careful reading of prose and code, the cells run as you go (notebooks/README.md)


def reading_words(path: Path) -> tuple[int, int]:
    """Words of prose on the chapter's core path, and folded away from it: "Going deeper" sections, hints and
    answers (`<details>`), model answers."""
    core = folded = 0
    deeper_level = None
    for cell in json.loads(path.read_text())["cells"]:
        if cell["cell_type"] != "markdown":
            continue
        text = "".join(cell["source"])
        heading = re.match(r"(#+) ", text)
        if heading:
            level = len(heading.group(1))
            if deeper_level is not None and level <= deeper_level:
                deeper_level = None
            if text[heading.end():].startswith("Going deeper"):
                deeper_level = level
        words = len(text.split())
        if deeper_level is not None or cell.get("metadata", {}).get("jupyter", {}).get("source_hidden"):
            folded += words
        else:
            inside = sum(len(d.split()) for d in re.findall(r"<details>.*?</details>", text, flags=re.S))
            core, folded = core + words - inside, folded + inside
    return core, folded


def minutes(words: int) -> int:
    return max(5, round(words / WORDS_PER_MINUTE / 5) * 5)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_reading_times_come_from_the_word_counts(path):
    guide = (ROOT / "notebooks" / "README.md").read_text().split("# Instructor guide")[0]
    row = next(line for line in guide.splitlines() if line.startswith(f"| {path.stem[:2]} ·"))
    reading = row.split("|")[2]
    core, folded = reading_words(path)
    assert f"about {minutes(core)} min ({round(core, -2):,} words" in reading, (reading, core)
    if folded:
        assert f"plus {minutes(folded)} min folded ({round(folded, -2):,} words" in reading, (reading, folded)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_chapter_cites_the_paper_by_title_author_and_date(path):
    cells = json.loads(path.read_text())["cells"]
    references = next("".join(c["source"]) for c in cells if "".join(c["source"]).startswith("## References"))
    assert "Sharma (2024)" in references
    assert "Convolutional Neural Network for Handwritten Digit Recognition" in references
