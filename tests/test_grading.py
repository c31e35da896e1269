"""Grading a class: shards, results files, resuming, merging into the gradebook, refusing what is wrong.

The grading of real submissions (in parallel, sealed off, killed and resumed, sharded, against nbgrader's own
autograde) is tested on the built course in tests/test_assignments.py.
"""

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from digitlab import cells, grading
from digitlab.errors import DigitlabError

pytest.importorskip("nbgrader")
from nbgrader.api import Gradebook  # noqa: E402


def test_parse_shard():
    assert grading.parse_shard("2/8") == (2, 8)
    for bad in ("0/3", "4/3", "2", "a/b", "1/0"):
        with pytest.raises(DigitlabError, match="--shard"):
            grading.parse_shard(bad)


def test_shards_cover_the_class_once():
    students = [f"s{i:02}" for i in range(11)]
    parts = [grading.in_shard(students, (i, 3)) for i in (1, 2, 3)]
    assert sorted(sum(parts, [])) == students and max(map(len, parts)) - min(map(len, parts)) <= 1
    assert grading.in_shard(students, None) == students


def record(student: str, graded_at: str, score: float = 1.0, assignment: str = "a") -> dict:
    return {"assignment": assignment, "student": student, "digest": "d", "graded_at": graded_at,
            "notebooks": {"nb": {"grades": {"ex1-check": score}, "comments": {}, "late_penalty": None}},
            "timestamp": None, "score": score, "max_score": 2.0, "problems": [], "seconds": 1.0}


def test_results_file_keeps_the_latest_record_and_survives_a_cut_off_line(tmp_path):
    path = tmp_path / "a.jsonl"
    grading.append_record(path, record("ann", "2026-01-01T10:00", 1.0))
    grading.append_record(path, record("ann", "2026-01-02T10:00", 2.0))
    grading.append_record(path, record("bob", "2026-01-01T11:00"))
    with open(path, "a") as f:
        f.write('{"assignment": "a", "student": "cy')  # a grader killed while appending
    latest = grading.latest(grading.read_records(path))
    assert sorted(latest) == [("a", "ann"), ("a", "bob")] and latest["a", "ann"]["score"] == 2.0


def test_a_damaged_line_in_the_middle_is_refused_with_its_number(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text(json.dumps(record("ann", "t")) + "\nnot json\n" + json.dumps(record("bob", "t")) + "\n")
    with pytest.raises(DigitlabError, match="line 2"):
        grading.read_records(path)
    path.write_text(json.dumps({"student": "ann"}) + "\n")
    with pytest.raises(DigitlabError, match="line 1: not a grading record"):
        grading.read_records(path)


def test_digest_changes_with_the_submission_and_with_the_checks(tmp_path):
    for folder in ("source/a", "submitted/ann/a"):
        (tmp_path / folder).mkdir(parents=True)
        (tmp_path / folder / "nb.ipynb").write_text("{}")
    first = grading.digest(tmp_path, "a", "ann")
    assert grading.digest(tmp_path, "a", "ann") == first
    (tmp_path / "submitted/ann/a/nb.ipynb").write_text('{"changed": 1}')
    second = grading.digest(tmp_path, "a", "ann")
    (tmp_path / "source/a/nb.ipynb").write_text('{"fixed test": 1}')
    assert len({first, second, grading.digest(tmp_path, "a", "ann")}) == 3


def make_gradebook(course):
    """A new gradebook in `course` that knows assignment 'a' (notebook 'nb': a 2-point check, a written answer)."""
    course.mkdir(parents=True, exist_ok=True)
    (course / "gradebook.db").unlink(missing_ok=True)
    with Gradebook(grading.gradebook_url(course / "gradebook.db"), grading.COURSE_ID) as gb:
        gb.add_assignment("a")
        gb.add_notebook("nb", "a")
        gb.add_grade_cell("ex1-check", "nb", "a", max_score=2, cell_type="code")
        gb.add_grade_cell("ex2-answer", "nb", "a", max_score=1, cell_type="markdown")
        gb.add_solution_cell("ex2-answer", "nb", "a")
    return course


@pytest.fixture
def gradebook(tmp_path, monkeypatch):
    # nbgrader sets up a new gradebook with the `alembic` tool of this environment
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    return make_gradebook(tmp_path / "course")


def scores(course, student: str) -> dict:
    with Gradebook(grading.gradebook_url(course / "gradebook.db"), grading.COURSE_ID) as gb:
        nb = gb.find_submission_notebook("nb", "a", student)
        return {g.name: (g.auto_score, g.manual_score, g.needs_manual_grade) for g in nb.grades}


def test_merge_writes_grades_as_autograde_does_and_keeps_manual_scores(gradebook, tmp_path):
    rec = record("ann", "2026-01-01T10:00", 2.0)
    rec["notebooks"]["nb"]["grades"]["ex2-answer"] = None  # a written answer: left to the grader
    path = tmp_path / "a.jsonl"
    grading.append_record(path, rec)
    assert grading.merge(gradebook, [path]) == 1
    assert scores(gradebook, "ann") == {"ex1-check": (2.0, None, False), "ex2-answer": (None, None, True)}
    with Gradebook(grading.gradebook_url(gradebook / "gradebook.db"), grading.COURSE_ID) as gb:
        gb.find_grade("ex2-answer", "nb", "a", "ann").manual_score = 1.0
        gb.db.commit()
    grading.merge(gradebook, [path])  # merged again (a resumed or repeated merge): nothing lost
    assert scores(gradebook, "ann") == {"ex1-check": (2.0, None, False), "ex2-answer": (None, 1.0, True)}


def test_merge_of_two_shards_equals_merge_of_one_file(gradebook, tmp_path):
    recs = [record(s, f"2026-01-01T1{k}:00", float(k % 3)) for k, s in enumerate(["ann", "bob", "cy", "di"])]
    for k, rec in enumerate(recs):
        grading.append_record(tmp_path / f"a.shard-{k % 2 + 1}-of-2.jsonl", rec)
        grading.append_record(tmp_path / "all.jsonl", rec)
    grading.merge(gradebook, sorted(tmp_path.glob("a.shard-*.jsonl")))
    sharded = {s: scores(gradebook, s) for s in ("ann", "bob", "cy", "di")}
    make_gradebook(gradebook)
    grading.merge(gradebook, [tmp_path / "all.jsonl"])
    assert {s: scores(gradebook, s) for s in sharded} == sharded
    assert sharded["bob"]["ex1-check"][0] == 1.0


def test_a_second_grader_on_the_same_results_is_refused(tmp_path):
    lock = tmp_path / "a.lock"
    with grading.exclusive(lock, "grading a"):
        probe = subprocess.run([sys.executable, "-c", "from pathlib import Path; from digitlab import grading\n"
                                f"with grading.exclusive(Path({str(lock)!r}), 'grading a'): pass"],
                               capture_output=True, text=True)
        assert probe.returncode != 0 and "another grader is grading a" in probe.stderr
    with grading.exclusive(lock, "grading a"):  # free again once the first one is done
        pass


def test_check_cells_and_cells_the_exercises_do_not_need_are_dropped_before_grading():
    skip = {"tags": [cells.SKIP_TAG]}
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("x = 1"), nbformat.v4.new_code_cell("assert x == 1", metadata={"tags": ["check"]}),
        nbformat.v4.new_code_cell("z = x + 1", metadata=skip), nbformat.v4.new_markdown_cell("text", metadata=skip),
        nbformat.v4.new_code_cell("y = 2", metadata={"nbgrader": {"grade": True, "grade_id": "c", "points": 1}})])
    kept, _ = grading.DropUngradedCells().preprocess(copy.deepcopy(nb), {})
    assert [c.source for c in kept.cells] == ["x = 1", "text", "y = 2"]
    nb.cells[-1].source = "y = z"   # an answer that reads what the skipped cell binds: that cell runs
    kept, _ = grading.DropUngradedCells().preprocess(nb, {})
    assert [c.source for c in kept.cells] == ["x = 1", "z = x + 1", "text", "y = z"]


def test_the_command_refuses_what_is_not_a_course_or_an_assignment(tmp_path):
    def run(*args):
        return subprocess.run([sys.executable, "-m", "digitlab.assignments", *args], capture_output=True, text=True)

    done = run("grade", "training", "--course", str(tmp_path))
    assert done.returncode == 2 and "is not a built course" in done.stderr and "Traceback" not in done.stderr
    for name in ("gradebook.db", "nbgrader_config.py"):
        (tmp_path / name).write_text("")
    (tmp_path / "release" / "training").mkdir(parents=True)
    done = run("grade", "trainin", "--course", str(tmp_path))
    assert done.returncode == 2 and "no assignment 'trainin'" in done.stderr and "training" in done.stderr
    done = run("grade", "training", "--course", str(tmp_path), "--shard", "3/2")
    assert done.returncode == 2 and "--shard" in done.stderr


# A one-exercise assignment that grades in seconds, for what does not need a chapter: parallel, killed, sharded.
TINY = "tiny"
TINY_ANSWERS = {"model": "answer = 42", "alternative": "answer = 6 * 7", "wrong": "answer = 41", "blank": None}
TINY_POINTS = {s: {"ex1-check": 0.0 if s in ("wrong", "blank") else 2.0} for s in TINY_ANSWERS}


def tiny_notebook(folder: Path) -> Path:
    """A chapter-like notebook with one graded exercise: `answer` must be 42 (2 points)."""
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("## Exercises"),
        nbformat.v4.new_code_cell("### BEGIN SOLUTION\nanswer = 42\n### END SOLUTION", metadata={
            "nbgrader": {"solution": True, "grade": False, "locked": False, "grade_id": "ex1-solution",
                         "schema_version": 3}}),
        nbformat.v4.new_code_cell("import time\ntime.sleep(1)\nassert answer == 42", metadata={
            "nbgrader": {"solution": False, "grade": True, "locked": True, "points": 2, "grade_id": "ex1-check",
                         "schema_version": 3}})])
    path = folder / "01_tiny.ipynb"
    nbformat.write(nb, path)
    return path


@pytest.fixture(scope="module")
def tiny_course(tmp_path_factory):
    """A built course with TINY and one submission per kind of answer (none graded yet)."""
    from digitlab import assignments

    root = tmp_path_factory.mktemp("tiny")
    course = root / "course"
    release = assignments.build_course(course, [tiny_notebook(root)])[TINY]
    for student, answer in TINY_ANSWERS.items():
        nb = nbformat.read(release, 4)
        if answer is not None:  # the blank one stays as it was handed out
            nb.cells[1].source = nb.cells[1].source.replace("raise NotImplementedError()", answer)
        folder = course / "submitted" / student / TINY
        folder.mkdir(parents=True)
        nbformat.write(nb, folder / release.name)
    return course


def tiny_grades(course) -> dict:
    with Gradebook(grading.gradebook_url(course / "gradebook.db"), grading.COURSE_ID) as gb:
        return {s: {g.name: g.auto_score for nb in gb.find_submission(TINY, s).notebooks for g in nb.grades}
                for s in TINY_ANSWERS}


def copy_of(course, tmp_path, name: str) -> Path:
    import shutil

    return Path(shutil.copytree(course, tmp_path / name))


def test_two_workers_give_the_scores_of_nbgraders_serial_autograde(tiny_course, tmp_path):
    # (one worker: the shards below; the chapters' own assignments: tests/test_assignments.py)
    from digitlab import assignments

    serial = copy_of(tiny_course, tmp_path, "serial")
    assignments.nbgrader("autograde", TINY, "--force", course_dir=serial)
    assert tiny_grades(serial) == TINY_POINTS
    course = copy_of(tiny_course, tmp_path, "two-workers")
    records = grading.grade(course, TINY, grading.Options(workers=2), progress=False)
    assert sorted(r["student"] for r in records) == sorted(TINY_ANSWERS) and not any(r["problems"] for r in records)
    assert tiny_grades(course) == TINY_POINTS


def test_a_killed_grader_resumes_and_two_shards_merge_into_the_same_gradebook(tiny_course, tmp_path):
    import signal
    import time

    course = copy_of(tiny_course, tmp_path, "sharded")
    command = [sys.executable, "-m", "digitlab.assignments", "grade", TINY, "--course", str(course), "--workers", "1"]
    first = grading.results_path(course, TINY, (1, 2))
    grader = subprocess.Popen([*command, "--shard", "1/2"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not (first.exists() and first.read_text().count("\n") >= 1) and time.monotonic() < deadline:
        time.sleep(0.05)
    grader.send_signal(signal.SIGKILL)  # while it grades its second submission
    grader.wait()
    (done,) = grading.read_records(first)
    time.sleep(1)
    left = [p for p in Path("/proc").glob("[0-9]*/cmdline") if str(course).encode() in p.read_bytes()]
    assert not left, "a process of the killed grader is still running"
    for shard in ("1/2", "2/2"):  # run again: the finished one is kept, the rest graded
        subprocess.run([*command, "--shard", shard], check=True, capture_output=True)
    records = [r for path in sorted(course.glob("grading/*.jsonl")) for r in grading.read_records(path)]
    assert sorted(r["student"] for r in records) == sorted(TINY_ANSWERS)  # each graded once in the end
    assert done in records  # not graded again
    merged = subprocess.run([sys.executable, "-m", "digitlab.assignments", "merge", "--course", str(course),
                             *map(str, sorted(course.glob("grading/*.shard-*.jsonl")))], capture_output=True, text=True)
    assert merged.returncode == 0 and "4 submission(s) written" in merged.stdout
    assert tiny_grades(course) == TINY_POINTS  # as serial nbgrader and two workers give them (the test above)
