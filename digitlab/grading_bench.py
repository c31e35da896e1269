"""The grading benchmark: a generated class graded as nbgrader grades it, and with 1 and 2 sealed workers.

`python -m digitlab.grading_bench` (`make bench-grading`) builds a course in build/grading-bench, hands in
submissions of every assignment (the model answer, correct answers other than the model's, wrong ones and
blank ones, from tests/test_assignments.py), grades one of each assignment as plain nbgrader did before grading
mode (serial, unsealed, every image and cell), then the whole class with `grading.grade` and 1 and 2 workers,
checks every score, and writes benchmarks/GRADING.md.
"""

from __future__ import annotations

import argparse
import importlib
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import nbformat

from digitlab import assignments, grading, sandbox
from digitlab.errors import report_user_errors
from digitlab.files import write_text
from digitlab.measure import machine
from digitlab.settings import BENCHMARKS_DIR, BUILD_DIR, PROJECT_DIR

REPORT = BENCHMARKS_DIR / "GRADING.md"
KINDS = ("model", "odd-wrong", "even-wrong", "blank")  # cycled through for each assignment's submissions


def sample_answers():
    """The test suite's answer bank (tests/test_assignments.py): alternatives, wrong answers, expected points."""
    sys.path.insert(0, str(PROJECT_DIR / "tests"))
    return importlib.import_module("test_assignments")


def hand_in(course: Path, per_assignment: int) -> dict[tuple[str, str], dict]:
    """Submit `per_assignment` submissions of each assignment; return the expected points of each."""
    bank = sample_answers()
    expected = {}
    for release_path in sorted(course.glob("release/*/*.ipynb")):
        assignment = release_path.parent.name
        release = nbformat.read(release_path, 4)
        for k in range(per_assignment):
            kind = KINDS[k % len(KINDS)]
            given = {"model": bank.model_answers(course, assignment), "blank": {}}.get(kind)
            nb = bank.submission(release, given if given is not None else bank.answers(assignment, kind))
            student = f"{kind}-{k:02}"
            bank.submit(course, assignment, student, nb, release_path.name)
            expected[assignment, student] = bank.expected_scores(assignment, kind)
    return expected


def scores(course: Path, assignment: str, student: str, checks: set[str]) -> dict[str, float]:
    """The automatic points of a submission's graded checks, from the gradebook."""
    from nbgrader.api import Gradebook

    with Gradebook(grading.gradebook_url(course / "gradebook.db"), grading.COURSE_ID) as gb:
        sub = gb.find_submission(assignment, student)
        return {g.name: g.auto_score for nb in sub.notebooks for g in nb.grades if g.name in checks}


def baseline(course: Path, students: dict[str, str]) -> dict[str, float]:
    """Seconds per submission of plain serial `nbgrader autograde` as before grading mode, one per assignment."""
    env = {**os.environ, "DIGITLAB_GRADING": "0", "DIGITLAB_SANDBOX": "0",
           "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")}
    seconds = {}
    for assignment, student in students.items():
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "nbgrader", "autograde", assignment, "--student", student, "--force"],
                       cwd=course, env=env, check=True, capture_output=True)
        seconds[assignment] = time.perf_counter() - start
    return seconds


def sandbox_startup(repeats: int = 3) -> tuple[float, float]:
    """Median seconds to run a one-cell notebook sealed off and as nbgrader does: the sandbox's own cost."""
    from nbgrader.preprocessors import Execute

    scratch = BUILD_DIR / "grading-bench" / "startup"
    files = scratch / "files"
    files.mkdir(parents=True, exist_ok=True)
    sealed, plain = [], []
    for _ in range(repeats):
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("pass")])
        start = time.perf_counter()
        sandbox.execute(nb, files, scratch / "home")
        sealed.append(time.perf_counter() - start)
        start = time.perf_counter()
        Execute(timeout=60).preprocess(nb, {"metadata": {"path": str(files)}})
        plain.append(time.perf_counter() - start)
    return statistics.median(sealed), statistics.median(plain)


def grade_class(course: Path, workers: int) -> tuple[float, list[dict]]:
    """Grade every assignment of the class with `workers` workers from scratch; wall seconds and records."""
    shutil.rmtree(course / grading.GRADING_DIR, ignore_errors=True)
    start = time.perf_counter()
    records = []
    for assignment in sorted(p.name for p in (course / "release").iterdir()):
        records += grading.grade(course, assignment, grading.Options(workers=workers))
    return time.perf_counter() - start, records


def report(info: dict, n: int, base: dict[str, float], runs: dict[int, tuple[float, list[dict]]],
           startup: tuple[float, float], wrong: list[str]) -> str:
    """benchmarks/GRADING.md."""
    cores = int(info["cores"])
    lines = ["# Grading benchmark", "",
             f"Machine: {info['cpu']}, {cores} cores, {info['cpu_capability']}; Python {info['python']}, "
             f"torch {info['torch']}. Written by `make bench-grading` (`python -m digitlab.grading_bench`).", "",
             f"{n} generated submissions ({', '.join(KINDS)}, in turn) of each of the "
             f"{len(base)} assignments: {n * len(base)} in all.", "",
             "## Before: nbgrader's serial autograde, unsealed, every image and every cell", "",
             "| assignment | seconds per submission |", "|---|---:|",
             *[f"| {a} | {s:.1f} |" for a, s in sorted(base.items())], ""]
    lines += ["## Now: `python -m digitlab.assignments grade`, each submission sealed off, grading mode", "",
              "| workers | wall time (s) | seconds per submission (wall / submissions) | median per submission (s) "
              "| slowest (s) | speed-up over 1 worker |", "|---:|---:|---:|---:|---:|---:|"]
    one = runs[min(runs)][0]
    for workers, (wall, records) in sorted(runs.items()):
        each = [r["seconds"] for r in records]
        lines.append(f"| {workers} | {wall:.0f} | {wall / len(records):.1f} | {statistics.median(each):.1f} | "
                     f"{max(each):.1f} | {one / wall:.2f} |")
    per_assignment = {}
    for record in runs[min(runs)][1]:
        per_assignment.setdefault(record["assignment"], []).append(record["seconds"])
    lines += ["", "Per assignment, 1 worker (median seconds per submission), against before:", "",
              "| assignment | before (s) | now, 1 worker (s) | before / now |", "|---|---:|---:|---:|"]
    for assignment, secs in sorted(per_assignment.items()):
        now = statistics.median(secs)
        lines.append(f"| {assignment} | {base[assignment]:.1f} | {now:.1f} | {base[assignment] / now:.2f} |")
    before_mean = statistics.mean(base.values())
    now_mean = statistics.mean(statistics.median(s) for s in per_assignment.values())
    best_wall, best_records = runs[max(runs)]
    per_sub = best_wall / len(best_records)
    sealed, plain = startup
    lines += ["", f"Mean over the assignments: {before_mean:.1f} s per submission before, {now_mean:.1f} s now with "
              f"1 worker ({before_mean / now_mean:.2f} times as fast); with {max(runs)} workers the class took "
              f"{per_sub:.1f} s of wall time per submission ({before_mean / per_sub:.2f} times as fast as before).",
              "",
              f"Sandbox start-up: a one-cell notebook takes {sealed:.1f} s sealed off and {plain:.1f} s as nbgrader "
              f"runs it (median of 3): the sandbox adds {sealed - plain:.1f} s, "
              f"{(sealed - plain) / statistics.median(r['seconds'] for r in runs[min(runs)][1]):.0%} of the median "
              "submission's time with 1 worker.", "",
              "Scores: " + ("every submission got the points expected of its answers, the same with 1 and 2 "
                            "workers." if not wrong else f"NOT AS EXPECTED: {', '.join(wrong)}."),
              "", "## What a class costs", "",
              f"A class of 300 submissions of one assignment, at the {max(runs)}-worker rate measured here "
              f"({per_sub:.1f} s per submission on {cores} cores): {300 * per_sub / 60:.0f} minutes. On 16 cores "
              f"(16 workers, one core each), if each core grades as fast as here: "
              f"about {300 * per_sub * cores / 16 / 60:.0f} minutes; with `--shard I/K`, K such machines take a "
              "K-th of that.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Command line: build, hand in, grade before and now, write the report."""
    parser = argparse.ArgumentParser(prog="python -m digitlab.grading_bench", description=__doc__.splitlines()[0])
    parser.add_argument("--per-assignment", type=int, default=10, help="submissions of each assignment (10)")
    parser.add_argument("--out", type=Path, default=REPORT, help=f"report (default {REPORT})")
    args = parser.parse_args(argv)
    sandbox.refuse_unless_available(unsafe=False)
    course = BUILD_DIR / "grading-bench" / "course"
    shutil.rmtree(course.parent, ignore_errors=True)
    assignments.build_course(course)
    expected = hand_in(course, args.per_assignment)
    base = baseline(course, {a: s for a, s in sorted(expected) if s.startswith("odd-wrong")})
    startup = sandbox_startup()
    runs = {workers: grade_class(course, workers) for workers in (1, 2)}
    wrong = [f"{a}/{s}" for (a, s), points in expected.items() if scores(course, a, s, set(points)) != points]
    by_run = [{(r["assignment"], r["student"]): r["score"] for r in records} for _, records in runs.values()]
    wrong += [] if by_run[0] == by_run[1] else ["the scores of 1 and 2 workers differ"]
    text = report(machine(), args.per_assignment, base, runs, startup, wrong)
    write_text(args.out, text)
    print(text)


if __name__ == "__main__":
    sys.exit(report_user_errors(main))
