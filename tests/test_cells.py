"""The names a cell binds and reads, and when a graded run may leave cells out."""

import nbformat
import pytest

from digitlab.cells import SKIP_TAG, cell_names, cells_to_skip, safe_to_skip
from digitlab.student import NOTEBOOKS_DIR


def test_names_follow_the_order_and_the_scopes_of_a_cell():
    names = cell_names("import torch\nx = 1\nx = x + v\nfor i in range(3):\n    y = i\nprint(i)\n"
                       "def f():\n    return z\nw = [k for k in range(3)]\nwith open(p) as fh:\n    q = fh.read()\n")
    assert names.surely == {"torch", "x", "f", "w"}
    assert names.maybe == names.surely | {"i", "y", "fh", "q"}
    assert names.reads == {"v", "range", "print", "i", "open", "p"}   # `i` after the loop may come from before
    assert names.late == {"z"}
    assert cell_names("x = (") is None


@pytest.mark.parametrize(("sources", "skip", "safe"), [
    (["x = 1", "y = 2", "print(x)"], [False, True, False], True),
    (["x = 1", "x = 2", "print(x)"], [False, True, False], False),               # the value would differ
    (["x = 1", "if c:\n    x = 2", "x = 3", "print(x)"], [False, True, False, False], True),
    (["if c:\n    x = 1", "x = 2", "print(x)"], [False, True, False], False),   # `x` may not exist at all
    (["def f():\n    return g", "g = 1", "f()"], [False, True, False], False),  # read when f is called
    (["i = 1", "for i in range(2):\n    print(i)"], [True, False], True),
    (["x = 1", "print(globals())"], [True, False], False),
    (["x = (", "print(1)"], [True, False], False),                              # unreadable: run everything
])
def test_safe_to_skip(sources, skip, safe):
    assert safe_to_skip(sources, skip) is safe


def test_only_the_cells_a_kept_cell_needs_run_again():
    sources = ["a = 1", "def helper():\n    return a", "slow = sum(range(10**6))", "print(helper())"]
    assert cells_to_skip(sources, [True, True, True, False]) == [False, False, True, False]   # helper and its `a`
    assert cells_to_skip(sources, [False, False, True, False]) == [False, False, True, False]
    assert cells_to_skip(sources + ["print(_)"], [True, True, True, False, False]) == [False] * 5


@pytest.mark.parametrize("path", sorted(NOTEBOOKS_DIR.glob("0*.ipynb")), ids=lambda p: p.stem)
def test_the_chapters_cells_marked_for_skipping_are_safe_to_skip(path):
    code = [c for c in nbformat.read(path, 4).cells
            if c.cell_type == "code" and "check" not in c.metadata.get("tags", [])]   # as graded: checks dropped
    skip = [SKIP_TAG in c.metadata.get("tags", []) for c in code]
    assert not any(s and "nbgrader" in c.metadata for s, c in zip(skip, code, strict=True))  # exercises always run
    assert safe_to_skip([c.source for c in code], skip)
