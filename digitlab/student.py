"""Student versions of the notebooks: nbgrader's preprocessors strip solutions, hidden tests and outputs.

`python -m digitlab.student` (or `make student`) writes them to build/student/.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

from digitlab.errors import DigitlabError, report_user_errors
from digitlab.files import atomic_path
from digitlab.settings import BUILD_DIR, NOTEBOOKS_DIR

OUT_DIR = BUILD_DIR / "student"
LEFTOVERS = ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS")


def _preprocessors() -> list:
    """nbgrader's ClearSolutions, ClearHiddenTests and ClearOutput, in that order."""
    try:
        from nbgrader.preprocessors import ClearHiddenTests, ClearOutput, ClearSolutions
    except ImportError as err:
        raise ImportError("Student versions need nbgrader, the instructor extra: "
                          "pip install -e '.[instructor]' (make setup installs it).") from err
    return [ClearSolutions(), ClearHiddenTests(), ClearOutput()]


def is_solution(cell: nbformat.NotebookNode) -> bool:
    """True for an exercise's solution cell: model code or a model answer."""
    return bool(cell.metadata.get("nbgrader", {}).get("solution", False))


def show_solution_cells(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Unfold the solution cells (folded for learners in the course notebooks) so students see where to answer."""
    for cell in nb.cells:
        if is_solution(cell):
            cell.metadata.pop("jupyter", None)
            cell.metadata.pop("collapsed", None)
    return nb


def student_version(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A copy of `nb` with each solution replaced by a stub, hidden tests removed and outputs cleared."""
    nb = nbformat.from_dict(nb)  # a deep copy: the preprocessors edit cells in place
    resources = {}
    for preprocessor in _preprocessors():
        nb, resources = preprocessor.preprocess(nb, resources)
    show_solution_cells(nb)
    for i, cell in enumerate(nb.cells):
        left = [word for word in LEFTOVERS if word in cell.source]
        if left:
            raise DigitlabError(f"Cell {i} still holds {left} after nbgrader's preprocessors: give that cell "
                             "nbgrader metadata (a solution or graded test cell) or remove the markers.")
    return nb


def is_exercise(nb: nbformat.NotebookNode) -> bool:
    """True if any cell of `nb` carries nbgrader metadata."""
    return any("nbgrader" in cell.metadata for cell in nb.cells)


def read_notebook(path: Path) -> nbformat.NotebookNode:
    """The notebook at `path`, or a DigitlabError saying it is missing or not a notebook."""
    if not path.is_file():
        raise DigitlabError(f"no notebook at {path}: give the path of a Jupyter notebook (.ipynb).")
    try:
        return nbformat.read(path, as_version=4)
    except Exception as err:  # nbformat raises JSON, Unicode, schema and attribute errors alike
        raise DigitlabError(f"{path} is not a Jupyter notebook ({type(err).__name__}: {str(err)[:120]}); "
                            "give an .ipynb file saved by Jupyter.") from None


def write_student_versions(notebooks: list[Path] | None = None, out_dir: str | Path = OUT_DIR) -> list[Path]:
    """Write the student version of each notebook (default: all numbered ones) into `out_dir`.

    Every notebook is read before anything is written, and none is ever written over: a DigitlabError says so.
    """
    paths = list(map(Path, notebooks if notebooks is not None else sorted(NOTEBOOKS_DIR.glob("[0-9]*.ipynb"))))
    out_dir = Path(out_dir)
    versions = {}
    for path in paths:
        target = out_dir / path.name
        if target.exists() and target.resolve() == path.resolve():
            raise DigitlabError(f"the student version of {path} would be written over the notebook itself; "
                                "choose another --out folder.")
        versions[target] = student_version(read_notebook(path))
    out_dir.mkdir(parents=True, exist_ok=True)
    for target, nb in versions.items():
        with atomic_path(target) as tmp:
            nbformat.write(nb, tmp)
    return list(versions)


def main(argv: list[str] | None = None) -> None:
    """Command line: write student versions and say which hold exercises."""
    parser = argparse.ArgumentParser(prog="python -m digitlab.student", description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="notebooks to convert (default: all in notebooks/)")
    parser.add_argument("--out", type=Path, default=OUT_DIR, help=f"output folder (default: {OUT_DIR})")
    args = parser.parse_args(argv)
    for path in write_student_versions(args.notebooks or None, args.out):
        kind = "exercises" if is_exercise(read_notebook(path)) else "outputs cleared"
        print(f"{path}  ({kind})")


if __name__ == "__main__":
    sys.exit(report_user_errors(main))
