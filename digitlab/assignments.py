"""A ready nbgrader course: one assignment per notebook with graded exercises, released, in build/course/.

`python -m digitlab.assignments` (or `make assignments`) builds it; the instructor guide,
notebooks/README.md, shows how to collect, autograde, give feedback and export from there.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
from nbconvert.preprocessors import Preprocessor
from traitlets import Bool

from digitlab import grading, sandbox
from digitlab.checkpoints import course_model
from digitlab.errors import DigitlabError, report_user_errors
from digitlab.files import atomic_path, write_text
from digitlab.settings import BUILD_DIR
from digitlab.student import NOTEBOOKS_DIR, is_exercise, show_solution_cells

COURSE_DIR = BUILD_DIR / "course"
STEPS = ("source", "release", "submitted", "autograded", "feedback")
CELL_TIMEOUT = 600   # seconds per cell; the longest, 04's exercise 2, trains 8 or more small runs when graded
# Each submission's exercise runs go to this file, relative to the notebook's folder in autograded/: a new,
# empty file every time a submission is graded (nbgrader never copies a dot-file from submitted/).
GRADING_RESULTS = ".grading-runs.jsonl"

CONFIG = '''\
"""nbgrader configuration of the digitlab course; written by `make assignments`, rewritten on every build."""

import os

c = get_config()  # noqa: F821 (nbgrader defines it)
ROOT = os.path.dirname(os.path.abspath(__file__))
c.CourseDirectory.root = ROOT                     # gradebook.db and every step folder live here, never elsewhere
c.CourseDirectory.course_id = "digitlab"
c.Exchange.root = os.path.join(ROOT, "exchange")  # used only by release_assignment/collect (JupyterHub courses)
c.Execute.timeout = {timeout}                        # seconds per cell (nbgrader's default is 30)
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback", "{results}"]
# Autograding drops the chapter's own check cells (they test the prose, not the student) and the chapter cells
# its exercises do not need before it runs the notebook; `python -m digitlab.assignments grade` runs it in a
# sandbox (DIGITLAB_SANDBOX=1), nbgrader's own autograde as nbgrader does.
# Everything else is nbgrader's own list of autograde steps, whichever nbgrader version is installed.
from nbgrader.converters import Autograde  # noqa: E402
from nbgrader.preprocessors import Execute  # noqa: E402

EXECUTE = "digitlab.grading.SealedExecute" if os.environ.get("DIGITLAB_SANDBOX") == "1" else Execute
DROP = ["digitlab.grading.DropUngradedCells"] if os.environ.get("DIGITLAB_GRADING", "1") == "1" else []
c.Autograde.autograde_preprocessors = [
    *DROP, *(EXECUTE if step is Execute else step
             for step in Autograde.class_traits()["autograde_preprocessors"].default())]
# Feedback pages show the exercises only: the chapter's own cells ran in fast mode, so their numbers are not
# the ones its prose (written for full mode) quotes.
c.GenerateFeedback.preprocessors = ["nbgrader.preprocessors.GetGrades", "digitlab.assignments.ExercisesOnly",
                                    "nbconvert.preprocessors.CSSHTMLHeaderPreprocessor"]

# What the notebooks need while they are graded: quick mode (small runs) and grading mode (smaller fixed
# validation and test sets), each submission's runs in a file of its own folder, and the MNIST files.
os.environ["DIGITLAB_FAST"] = "1"
os.environ.setdefault("DIGITLAB_GRADING", "1")  # 0: all images and every cell, as grading ran before (benchmarks)
os.environ["DIGITLAB_RESULTS"] = "{results}"
{data}'''


class ExercisesOnly(Preprocessor):
    """Keep a notebook's exercise section only: from the heading before its first nbgrader cell to the next heading."""

    enabled = Bool(True)  # nbconvert runs a registered preprocessor only if it is enabled

    def preprocess(self, nb, resources):
        graded = [i for i, cell in enumerate(nb.cells) if "nbgrader" in cell.metadata] or [len(nb.cells)]
        start = next((i for i in range(graded[0], -1, -1) if i < len(nb.cells) and _is_section(nb.cells[i])),
                     graded[0])
        end = next((i for i in range(graded[-1] + 1, len(nb.cells)) if _is_section(nb.cells[i])), len(nb.cells))
        nb.cells = nb.cells[start:end]
        return nb, resources


def _is_section(cell) -> bool:
    """True for a markdown cell that opens a chapter section (a '## ' heading)."""
    return cell.cell_type == "markdown" and cell.source.startswith("## ")


def assignment_name(notebook: Path) -> str:
    """The assignment id of a notebook: its file name without the chapter number ('error_analysis')."""
    return Path(notebook).stem.split("_", 1)[-1]


def graded_notebooks(notebooks_dir: Path = NOTEBOOKS_DIR) -> list[Path]:
    """The numbered notebooks that hold graded exercises."""
    return [p for p in sorted(Path(notebooks_dir).glob("[0-9]*.ipynb")) if is_exercise(nbformat.read(p, 4))]


def config_text() -> str:
    """The course's nbgrader_config.py; it pins DIGITLAB_DATA if it is set now."""
    data_dir = os.environ.get("DIGITLAB_DATA")
    data = f'os.environ.setdefault("DIGITLAB_DATA", {str(Path(data_dir).resolve())!r})\n' if data_dir else ""
    return CONFIG.format(timeout=CELL_TIMEOUT, results=GRADING_RESULTS, data=data)


def nbgrader(*args: str, course_dir: Path) -> None:
    """Run an nbgrader command in `course_dir` with the jupyter tools of this Python's environment."""
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")}
    command = [sys.executable, "-m", "nbgrader", *args]
    done = subprocess.run(command, cwd=course_dir, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"`nbgrader {' '.join(args)}` failed in {course_dir} (exit {done.returncode}):\n"
                           f"{done.stdout[-3000:]}{done.stderr[-3000:]}\nIs nbgrader installed (the instructor "
                           "extra: pip install -e '.[instructor]')?")


def build_course(course_dir: str | Path = COURSE_DIR, notebooks: list[Path] | None = None) -> dict[str, Path]:
    """Write the course folder (config, source/, empty step folders) and release every assignment into release/."""
    course_dir = Path(course_dir).resolve()
    notebooks = notebooks if notebooks is not None else graded_notebooks()
    if not notebooks:
        raise DigitlabError("No notebook with graded exercises to build a course from.")
    for step in STEPS:
        (course_dir / step).mkdir(parents=True, exist_ok=True)
    write_text(course_dir / "nbgrader_config.py", config_text())
    released = {}
    for path in map(Path, notebooks):
        name = assignment_name(path)
        source = course_dir / "source" / name
        shutil.rmtree(source, ignore_errors=True)
        source.mkdir(parents=True)
        nb = show_solution_cells(nbformat.read(path, as_version=4))
        for cell in nb.cells:  # the source notebook ships without outputs: only the grader's own run is shown
            if cell.cell_type == "code":
                cell.outputs, cell.execution_count = [], None
        with atomic_path(source / path.name) as tmp:
            nbformat.write(nb, tmp)
        nbgrader("generate_assignment", name, "--force", course_dir=course_dir)
        released[name] = course_dir / "release" / name / path.name
    return released


def main(argv: list[str] | None = None) -> None:
    """Command line: build and release the course (the default), grade an assignment, or merge results files."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0].startswith("-") and argv[0] not in ("-h", "--help"):
        argv.insert(0, "build")
    parser = argparse.ArgumentParser(prog="python -m digitlab.assignments", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="build and release the course (what `make assignments` runs)")
    build.add_argument("--out", type=Path, default=COURSE_DIR, help=f"course folder (default: {COURSE_DIR})")
    cores = os.cpu_count() or 1
    grade = commands.add_parser("grade", help="autograde every new or changed submission of an assignment, "
                                "N at a time, each in a sandbox")
    grade.add_argument("assignment", help="the assignment's name, such as training")
    grade.add_argument("--course", type=Path, default=COURSE_DIR, help=f"course folder (default: {COURSE_DIR})")
    grade.add_argument("--workers", type=int, default=cores, help=f"submissions at a time (default: {cores}, "
                       "this machine's cores)")
    grade.add_argument("--shard", help="I/K: grade only the I-th of K slices of the class into a results file of "
                       "its own, for `merge` (one machine or job each)")
    limits = sandbox.Limits()
    grade.add_argument("--cell-timeout", type=int, default=limits.cell_seconds, help="seconds a cell may run "
                       f"(default: {limits.cell_seconds})")
    grade.add_argument("--time-limit", type=int, default=limits.seconds, help="seconds a whole submission may "
                       f"run (default: {limits.seconds})")
    grade.add_argument("--memory-gb", type=float, default=limits.memory_gb, help="memory each process of a "
                       f"submission may allocate (default: {limits.memory_gb:g})")
    grade.add_argument("--processes", type=int, default=limits.processes, help="processes and threads a "
                       f"submission may run (default: {limits.processes})")
    grade.add_argument("--no-sandbox", action="store_true", help="run submissions with your own rights, as plain "
                       "nbgrader does (where no sandbox is available: macOS, Windows)")
    merge = commands.add_parser("merge", help="fold results files (of shards) into the course's gradebook")
    merge.add_argument("results", type=Path, nargs="+", help="results files, such as grading/training.shard-*.jsonl")
    merge.add_argument("--course", type=Path, default=COURSE_DIR, help=f"course folder (default: {COURSE_DIR})")
    args = parser.parse_args(argv)
    if args.command == "build":
        course_model(fast=True, progress=False)  # grading loads it (notebook 05): cache it now, not per submission
        for name, path in build_course(args.out).items():
            print(f"{name:<24} released: {path}")
        print(f"Next: cd {args.out} and follow 'Grading' in notebooks/README.md.")
    elif args.command == "grade":
        if args.workers < 1:
            raise DigitlabError(f"--workers must be at least 1, not {args.workers}.")
        options = grading.Options(workers=args.workers,
                                  limits=sandbox.Limits(args.cell_timeout, args.time_limit, args.memory_gb,
                                                        args.processes),
                                  sandboxed=not args.no_sandbox)
        shard = grading.parse_shard(args.shard) if args.shard else None
        grading.grade(args.course, args.assignment, options, shard)
        if shard:
            print(f"Results in {grading.results_path(args.course.resolve(), args.assignment, shard)}; when every "
                  f"shard is done: python -m digitlab.assignments merge --course {args.course} "
                  f"{args.course}/{grading.GRADING_DIR}/{args.assignment}.shard-*-of-{shard[1]}.jsonl")
    else:
        n = grading.merge(args.course, args.results)
        print(f"{n} submission(s) written into {args.course / 'gradebook.db'}.")


if __name__ == "__main__":
    sys.exit(report_user_errors(main))
