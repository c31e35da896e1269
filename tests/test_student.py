import os
import re

import nbformat
import pytest
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from digitlab import grading, student

NB04 = student.NOTEBOOKS_DIR / "04_overfitting_ablations.ipynb"
WITH_EXERCISES = [path for path in sorted(student.NOTEBOOKS_DIR.glob("[0-9]*.ipynb"))
                  if any(c.metadata.get("nbgrader", {}).get("solution") for c in nbformat.read(path, 4).cells)]
# How JupyterLab stores a folded cell (it shows "..." until the learner unfolds it); it adds "collapsed" to a code
# cell whose outputs are folded, so a code cell without it would be marked modified as soon as it is opened.
FOLDED = {"code": {"collapsed": True, "jupyter": {"source_hidden": True, "outputs_hidden": True}},
          "markdown": {"jupyter": {"source_hidden": True}}}


def folded(cell) -> bool:
    return all(cell.metadata.get(key) == value for key, value in FOLDED[cell.cell_type].items())
REGION = re.compile(r"### BEGIN (SOLUTION|HIDDEN TESTS)\n(.*?)### END \1", re.S)


def nbgrader(**meta):
    return {"nbgrader": {"schema_version": 3, "locked": False, "task": False, "grade": False, **meta}}


def hidden_lines(nb) -> set[str]:
    """Lines that appear only inside solution or hidden-test regions of `nb`."""
    inside = {line.strip() for c in nb.cells for m in REGION.finditer(c.source) for line in m.group(2).splitlines()}
    outside = {line.strip() for c in nb.cells for line in REGION.sub("", c.source).splitlines()}
    return {line for line in inside - outside if line}


def test_student_version_of_a_small_notebook():
    nb = new_notebook(cells=[
        new_code_cell("x = 1\n### BEGIN SOLUTION\nanswer = 42\n### END SOLUTION\nprint(answer)",
                      metadata=nbgrader(grade_id="sol", solution=True),
                      outputs=[new_output("stream", text="42\n")], execution_count=3),
        new_code_cell("assert answer == 42\n### BEGIN HIDDEN TESTS\nassert answer > 0\n### END HIDDEN TESTS",
                      metadata=nbgrader(grade_id="check", grade=True, points=1, locked=True)),
        new_markdown_cell("Why?\n### BEGIN SOLUTION\nBecause.\n### END SOLUTION",
                          metadata=nbgrader(grade_id="why", grade=True, points=1, solution=True)),
    ], metadata={"kernelspec": {"name": "python3", "language": "python", "display_name": "Python 3"}})
    for i in (0, 2):
        nb.cells[i].metadata.update(FOLDED[nb.cells[i].cell_type])
    out = student.student_version(nb)
    assert not folded(out.cells[0]) and not folded(out.cells[2]), "a student sees the cells to answer in, unfolded"
    assert folded(nb.cells[0]) and folded(nb.cells[2])
    assert out.cells[0].source == "x = 1\n# YOUR CODE HERE\nraise NotImplementedError()\nprint(answer)"
    assert out.cells[0].outputs == [] and out.cells[0].execution_count is None
    assert out.cells[1].source == "assert answer == 42"
    assert "Because" not in out.cells[2].source and "YOUR ANSWER HERE" in out.cells[2].source
    assert nb.cells[0].outputs, "the instructor notebook itself is left as it was"


def test_solution_markers_without_metadata_are_refused():
    nb = new_notebook(cells=[new_code_cell("### BEGIN HIDDEN TESTS\nassert True\n### END HIDDEN TESTS")],
                      metadata={"kernelspec": {"name": "python3", "language": "python", "display_name": "Python 3"}})
    with pytest.raises(RuntimeError, match="Hidden test region"):  # nbgrader's own check
        student.student_version(nb)


@pytest.mark.parametrize("source_path", WITH_EXERCISES, ids=lambda p: p.stem)
def test_learners_meet_each_exercise_before_its_solution(source_path):
    cells = nbformat.read(source_path, 4).cells
    hidden = [i for i, c in enumerate(cells) if folded(c)]
    solutions = [i for i, c in enumerate(cells) if student.is_solution(c)]
    assert hidden == solutions, (f"{source_path.name}: fold every solution cell (code and model answer), and only "
                                 f"those, with the metadata {FOLDED}; folded {hidden}, solutions {solutions}")


def test_the_course_has_exercises():
    assert NB04 in WITH_EXERCISES and len(WITH_EXERCISES) >= 2


@pytest.mark.parametrize("source_path", WITH_EXERCISES, ids=lambda p: p.stem)
def test_no_solution_text_survives(tmp_path, capsys, source_path):
    student.main([str(source_path), "--out", str(tmp_path)])
    assert "(exercises)" in capsys.readouterr().out
    source = nbformat.read(source_path, as_version=4)
    nb = nbformat.read(tmp_path / source_path.name, as_version=4)
    lines = {line.strip() for c in nb.cells for line in c.source.splitlines()}
    secret = hidden_lines(source)
    assert len(secret) > 5
    assert not secret & lines
    stubs = [c for c in nb.cells if c.cell_type == "code" and "raise NotImplementedError()" in c.source]
    solutions = [c for c in source.cells if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("solution")]
    assert len(stubs) == len(solutions) >= 2
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in nb.cells if c.cell_type == "code")


@pytest.mark.parametrize("source_path", WITH_EXERCISES, ids=lambda p: p.stem)
def test_student_notebook_runs_with_errors_only_in_exercises(tmp_path, monkeypatch, source_path):
    monkeypatch.setenv("DIGITLAB_FAST", "1")  # the kernel inherits it
    [path] = student.write_student_versions([source_path], tmp_path)
    # The chapter cells the exercises do not need run as in the source notebook (nbval runs those): left out here,
    # as grading leaves them out.
    nb, _ = grading.DropUngradedCells().preprocess(nbformat.read(path, as_version=4), {})
    NotebookClient(nb, timeout=600, kernel_name="python3", allow_errors=True,
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    raised = {}
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            if out.output_type == "error":
                raised[i] = out.ename
    exercise_cells = {i for i, c in enumerate(nb.cells) if c.cell_type == "code" and "nbgrader" in c.metadata}
    solutions = {i for i in exercise_cells if nb.cells[i].metadata.nbgrader.get("solution")}
    checks = {i for i in exercise_cells if nb.cells[i].metadata.nbgrader.get("grade")}
    assert {i: e for i, e in raised.items() if i not in exercise_cells} == {}, "a cell outside the exercises failed"
    assert all(raised.get(i) == "NotImplementedError" for i in solutions)
    assert set(raised) == solutions | checks  # every unanswered exercise fails its check
    assert os.environ["DIGITLAB_FAST"] == "1"


@pytest.mark.parametrize("path", sorted(student.NOTEBOOKS_DIR.glob("[0-9]*.ipynb")), ids=lambda p: p.stem)
def test_notebooks_open_unmodified_in_jupyterlab(path):
    # JupyterLab rewrites any other display name of the ipykernel kernel and marks the notebook as changed.
    assert nbformat.read(path, 4).metadata.kernelspec.display_name == "Python 3 (ipykernel)"


def test_the_tool_never_writes_over_a_notebook_and_refuses_what_is_not_one(tmp_path, capsys):
    source = tmp_path / "course.ipynb"
    nbformat.write(new_notebook(cells=[new_code_cell("### BEGIN SOLUTION\nx = 1\n### END SOLUTION",
                                                     metadata=nbgrader(grade_id="a", solution=True))]), source)
    before = source.read_bytes()
    broken = tmp_path / "broken.ipynb"
    broken.write_text('{"cells": "not a list"}')
    cases = [([str(source), "--out", str(tmp_path)], "written over the notebook itself"),
             ([str(source), "--out", str(tmp_path / ".." / tmp_path.name)], "written over the notebook itself"),
             ([str(source), str(broken), "--out", str(tmp_path / "out")], "broken.ipynb is not a Jupyter notebook"),
             ([str(tmp_path / "missing.ipynb"), "--out", str(tmp_path / "out")], "no notebook at")]
    for argv, message in cases:
        assert student.report_user_errors(lambda argv=argv: student.main(argv)) == 2
        assert message in capsys.readouterr().err
    assert source.read_bytes() == before and not (tmp_path / "out").exists()   # nothing written, nothing lost
